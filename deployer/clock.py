"""Time as the tool sees it: one object for "now" and "sleep", passed in.

Waits and retry budgets are measured with `now()` and paced with `sleep()`; tests hand
in a fake clock whose `sleep` advances `now`, so a wait that reaches its budget ends in
milliseconds instead of busy-polling the emulator for minutes.
"""

from __future__ import annotations

import time


class Clock:
    """The real clock: monotonic seconds, and a real sleep."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


SYSTEM_CLOCK = Clock()
