"""The stack as a graph: each step and the steps it needs (`Step.needs`), forwards and reversed.

A step's `needs` names every step whose identifiers or resource it relies on when it is created,
converged, waited for or deleted, and the steps AWS requires to exist first (deployer/stack.py and
each step's `needs` comment say which). From that:

* provision: a step may start once every step it needs has finished (`Graph.order`, `Graph.levels`,
  `Graph.earliest_starts`, `Graph.schedule`);
* teardown: the same graph reversed (`Graph.reversed`): a resource is deleted once every step that
  needs it is gone, so what nothing needs (roles, log groups, alarms) goes while the network waits;
* checking a run: `Graph.violations` (an order of steps), `Graph.started_early` (start and finish events
  of a parallel run).

`restricted` keeps the steps a run walks (the wanted ones; the recorded ones at teardown), passing a need on a
step left out on to what that step needs.

The graph is checked when it is built (`graph_of`, `build`): a need that names no step, a step that
needs itself, two steps of one name, and a cycle are refused with `GraphError`, naming the step (or the
cycle). Those are mistakes in the tool's code, never in the user's settings, so `GraphError` is not a
`DeployerError` (deployer/errors.py: anything else is a bug and keeps its traceback); building the graph
before any AWS call makes the refusal happen at start-up.

Pure functions over names: no AWS, no clock, no threads. Ties are broken in the stack's order (the order
of deployer/stack.py, reversed for teardown), so every answer is deterministic.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from deployer.settings import Settings
from deployer.stack import build_steps
from deployer.steps.base import Step


class GraphError(Exception):
    """The steps' `needs` do not form a graph the runner can walk (a bug in the tool, refused at start-up)."""


@dataclass(frozen=True)
class CriticalPath:
    """The chain of steps that decides the total time: each starts the moment the one before it finishes."""

    seconds: float
    steps: tuple[str, ...]


@dataclass(frozen=True)
class Graph:
    """Steps by name, in the stack's order, each with the steps it needs (all among `names`).

    Build one with `build` or `graph_of`, which check it; the constructor checks nothing.
    """

    names: tuple[str, ...]
    needs: Mapping[str, tuple[str, ...]]
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {name: index for index, name in enumerate(self.names)})

    def dependents(self) -> dict[str, tuple[str, ...]]:
        """For each step, the steps that need it (in the graph's order)."""
        found: dict[str, list[str]] = {name: [] for name in self.names}
        for name in self.names:
            for need in self.needs[name]:
                found[need].append(name)
        return {name: tuple(users) for name, users in found.items()}

    def reversed(self) -> Graph:
        """The teardown graph: each step "needs" every step that needs it to be gone first. Its order is the
        stack's reversed, so ties go as today's teardown goes (deployer/runner.py teardown_order)."""
        users = self.dependents()
        return Graph(tuple(reversed(self.names)), {name: users[name] for name in self.names})

    def restricted(self, keep: Iterable[str]) -> Graph:
        """The graph of only the steps in `keep` (the wanted ones, or the recorded ones at teardown).

        A need on a step left out is replaced by what that step needs, transitively: when a partial teardown
        already deleted the route table, the service must still go before the internet gateway it reached
        through that table. Names in `keep` that are not steps are refused.
        """
        kept = set(keep)
        unknown = sorted(kept - set(self.names))
        if unknown:
            raise GraphError(f"Not steps of the graph: {', '.join(unknown)}")
        memo: dict[str, tuple[str, ...]] = {}

        def nearest_kept(name: str) -> tuple[str, ...]:
            """The kept steps `name` needs, looking through the ones left out."""
            if name not in memo:
                found: dict[str, None] = {}
                for need in self.needs[name]:
                    for reached in (need,) if need in kept else nearest_kept(need):
                        found[reached] = None
                memo[name] = tuple(sorted(found, key=self._index.__getitem__))
            return memo[name]

        names = tuple(name for name in self.names if name in kept)
        return Graph(names, {name: nearest_kept(name) for name in names})

    def order(self) -> list[str]:
        """Every step after all it needs; among steps ready at once, the earlier in the graph's order first."""
        return _topological(self.names, self.needs, self._index)

    def violations(self, sequence: Sequence[str]) -> list[tuple[str, str]]:
        """The (step, need) pairs that `sequence` (steps in the order they ran) puts the wrong way round: the
        step before its need, or without it. Empty when the sequence respects every need of its steps."""
        position = {name: index for index, name in enumerate(sequence)}
        return [
            (name, need)
            for name in sequence
            for need in self.needs.get(name, ())
            if position.get(need, math.inf) > position[name]
        ]

    def started_early(self, events: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        """For a run recorded as ("start" | "finish", step) events in the order they happened: the (step, need)
        pairs where the step started before its need had finished (or without it finishing at all)."""
        finished: set[str] = set()
        early: list[tuple[str, str]] = []
        for event, name in events:
            if event == "finish":
                finished.add(name)
            elif event == "start":
                early.extend((name, need) for need in self.needs.get(name, ()) if need not in finished)
            else:
                raise ValueError(f"An event is 'start' or 'finish', not {event!r}")
        return early

    def levels(self) -> list[list[str]]:
        """The steps by depth: level 0 needs nothing, level n needs a step of level n-1 (and none deeper).
        All steps of one level could run at once; the number of levels is the longest chain of needs."""
        depth: dict[str, int] = {}
        for name in self.order():
            depth[name] = 1 + max((depth[need] for need in self.needs[name]), default=-1)
        grouped: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
        for name in self.names:
            grouped[depth[name]].append(name)
        return grouped

    def earliest_starts(self, durations: Mapping[str, float]) -> dict[str, float]:
        """When each step could start at the earliest, every step taking its duration and any number running
        at once: the latest finish among what it needs (0 for a step that needs nothing)."""
        return self.schedule(durations, math.inf)

    def schedule(self, durations: Mapping[str, float], slots: float) -> dict[str, float]:
        """Start times with at most `slots` steps running at once: whenever a slot is free, the ready step
        earliest in the graph's order starts (a list scheduler, as a bounded runner would go).

        With unbounded slots this is `earliest_starts`. Durations must name every step, and not be negative.
        """
        _check_durations(self.names, durations)
        if slots < 1:
            raise ValueError(f"slots must be at least 1, not {slots}")
        waiting = {name: len(self.needs[name]) for name in self.names}
        users = self.dependents()
        ready = [self._index[name] for name in self.names if waiting[name] == 0]
        heapq.heapify(ready)
        running: list[tuple[float, int]] = []  # (finish, index)
        starts: dict[str, float] = {}
        now = 0.0
        while ready or running:
            while ready and len(running) < slots:
                name = self.names[heapq.heappop(ready)]
                starts[name] = now
                heapq.heappush(running, (now + durations[name], self._index[name]))
            now = running[0][0]
            while running and running[0][0] == now:  # every step finishing now frees its slot before any starts
                _, index = heapq.heappop(running)
                for user in users[self.names[index]]:
                    waiting[user] -= 1
                    if waiting[user] == 0:
                        heapq.heappush(ready, self._index[user])
        return starts

    def critical_path(self, durations: Mapping[str, float], tails: Mapping[str, float] | None = None) -> CriticalPath:
        """The longest chain of needs, weighted by duration: no schedule finishes sooner than its seconds.

        `tails` are the parts of steps that the steps needing them do not wait for (a deferred wait: the NLB
        turning active, the alias reaching every name server, the service's rollout); they count toward the
        end of the run only. From the step that ends last, back through the need that finished latest (ties:
        the later in the graph's order), to a step that needs nothing.
        """
        if not self.names:
            return CriticalPath(0.0, ())
        starts = self.earliest_starts(durations)
        extra = tails or {}

        def finish(name: str) -> float:
            return starts[name] + durations[name]

        def end(name: str) -> float:
            return finish(name) + extra.get(name, 0.0)

        chain = [max(self.names, key=lambda name: (end(name), self._index[name]))]
        while self.needs[chain[-1]]:
            chain.append(max(self.needs[chain[-1]], key=lambda name: (finish(name), self._index[name])))
        return CriticalPath(end(chain[0]), tuple(reversed(chain)))


def build(needs: Iterable[tuple[str, Iterable[str]]]) -> Graph:
    """A checked graph from (step, its needs) pairs in the stack's order.

    Refused with GraphError: two steps of one name, a step that needs itself, a need that names no step,
    and a cycle (the message names its steps in the order each needs the next).
    """
    pairs = [(name, tuple(wanted)) for name, wanted in needs]
    names = tuple(name for name, _ in pairs)
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise GraphError(f"Two steps are named {', '.join(duplicates)}: a step's name must be unique")
    known = set(names)
    for name, wanted in pairs:
        if name in wanted:
            raise GraphError(f"Step '{name}' needs itself")
        unknown = [need for need in wanted if need not in known]
        if unknown:
            raise GraphError(
                f"Step '{name}' needs {', '.join(repr(need) for need in unknown)}, which no step of the stack "
                f"is named (the steps: {', '.join(names)})"
            )
    graph = Graph(names, {name: tuple(dict.fromkeys(wanted)) for name, wanted in pairs})
    graph.order()  # refuses a cycle
    return graph


def graph_of(steps: Sequence[Step[Any]]) -> Graph:
    """The checked graph of these steps (their `needs`), in their order."""
    return build((step.name, step.needs) for step in steps)


def stack_graph() -> Graph:
    """The whole stack's graph, every step wanted or not: the one to check at start-up."""
    return graph_of(build_steps())


def provision_graph(steps: Sequence[Step[Any]], settings: Settings) -> Graph:
    """What a provision walks: the graph of all `steps`, restricted to those the settings want (`Step.wanted`)."""
    return graph_of(steps).restricted(step.name for step in steps if step.wanted(settings))


def teardown_graph(steps: Sequence[Step[Any]], recorded: Iterable[str]) -> Graph:
    """What a teardown walks: the recorded steps, each deleted once every recorded step needing it is gone."""
    return graph_of(steps).restricted(recorded).reversed()


def _topological(names: Sequence[str], needs: Mapping[str, Sequence[str]], index: Mapping[str, int]) -> list[str]:
    """Kahn's algorithm, the ready step earliest in `names` first; a cycle is refused, naming it."""
    waiting = {name: len(needs[name]) for name in names}
    users: dict[str, list[str]] = {name: [] for name in names}
    for name in names:
        for need in needs[name]:
            users[need].append(name)
    ready = [index[name] for name in names if waiting[name] == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        name = names[heapq.heappop(ready)]
        order.append(name)
        for user in users[name]:
            waiting[user] -= 1
            if waiting[user] == 0:
                heapq.heappush(ready, index[user])
    if len(order) < len(names):
        cycle = _cycle([name for name in names if waiting[name] > 0], needs)
        raise GraphError(f"The steps' needs form a cycle: {' -> '.join(cycle)} (each needs the next)")
    return order


def _cycle(stuck: Sequence[str], needs: Mapping[str, Sequence[str]]) -> list[str]:
    """One cycle among the steps Kahn's algorithm could not order, first step repeated at the end.

    Every stuck step needs a stuck step (else it would have been ordered), so following stuck needs from
    the first stuck step must come back to a step already on the path.
    """
    left = set(stuck)
    path = [stuck[0]]
    while True:
        following = next(need for need in needs[path[-1]] if need in left)
        if following in path:
            return [*path[path.index(following) :], following]
        path.append(following)


def _check_durations(names: Sequence[str], durations: Mapping[str, float]) -> None:
    missing = [name for name in names if name not in durations]
    if missing:
        raise ValueError(f"No duration for {', '.join(missing)}")
    negative = [name for name in names if durations[name] < 0]
    if negative:
        raise ValueError(f"Negative duration for {', '.join(negative)}")
