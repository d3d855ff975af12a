"""What a run changes: the state, and how each change reaches the disk.

A run is given its settings, clients and output (`StepContext`, frozen); everything it
changes goes through one `Ledger`: a step's identifiers recorded or forgotten, and the
outputs. Each change is saved at once (under a lock, since the image step records from
the threads of steps running at once, deployer/parallel.py), so a crash cannot lose a created
resource.

A dry run gets a scratch ledger over a copy of the state whose saves go nowhere: the
plan is a mode the runner is given, not a switch flipped on a live context.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Sequence

from deployer.state import Ids, State


class Ledger:
    """The state of one run and the function that persists it."""

    def __init__(self, state: State, persist: Callable[[State], None]) -> None:
        self.state = state
        self._persist = persist
        self._lock = threading.Lock()

    @classmethod
    def scratch(cls, state: State) -> Ledger:
        """A copy to plan on: records what would be created, saves nothing."""
        return cls(copy.deepcopy(state), lambda _state: None)

    def record(self, step: str, ids: Ids, order: Sequence[str] = ()) -> None:
        """Set a step's identifiers (a new one in its place in `order`, see State.record) and save at once if
        they changed."""
        with self._lock:
            if self.state.record(step, ids, order):
                self._persist(self.state)

    def forget(self, step: str) -> None:
        """A deleted resource leaves the state (saved at once, so a resumed teardown skips it)."""
        with self._lock:
            self.state.forget(step)
            self._persist(self.state)

    def set_outputs(self, outputs: dict[str, str]) -> None:
        with self._lock:
            if self.state.outputs != outputs:
                self.state.outputs = dict(outputs)
                self._persist(self.state)

    def save(self) -> None:
        with self._lock:
            self._persist(self.state)
