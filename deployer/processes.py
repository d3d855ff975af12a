"""Whether a process id names a live process on this machine.

Two callers: the state file's lock (deployer/state.py, which first decides whether the
lock's host is this machine at all: another machine's lock is respected unchecked) and
local mode's emulator (deployer/local.py, before reusing or stopping it).
"""

from __future__ import annotations

import os
from pathlib import Path


def process_alive(pid: int) -> bool:
    """Running here and not a zombie (a reparented zombie may never be reaped in a container).

    A process of another user counts as alive (kill(2) answers EPERM); pids of 0 and below
    name process groups, never one process, so they are not alive.
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (or it just exited): kill said it exists
    return stat.rpartition(")")[2].split()[0] != "Z"
