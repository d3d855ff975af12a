"""The local record of what exists: `state.json`.

The file holds identifiers only (never credentials or tokens): a schema version,
the stack, region and account it belongs to, the resources in creation order, and
the outputs. It is rewritten atomically after every change (temporary file in the
same folder, fsync, `os.replace`), so a crash leaves either the old or the new
file, never a torn one; the previous version is kept as `<name>.bak`, and both are
readable by their owner only. A file that cannot be read, has an unknown schema
version, or belongs to another stack, region or account is refused and never
overwritten; files of older schema versions are upgraded in memory on load.

A lock file (`<name>.lock`, holding the owner's pid, host and start time) keeps two
runs from writing the same state; a lock whose process is gone is taken over, and a run
waits up to `lock_timeout` seconds for a live one.

`--state-file s3://BUCKET/KEY` keeps the same document in S3 instead (deployer/s3state.py);
both are a `StateStore`, which is all the commands see.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from deployer.errors import StateFileError
from deployer.processes import process_alive

# 1: the first format. 2: adds `updated_at`, the time of the last save (UTC).
SCHEMA_VERSION = 2
Ids = dict[str, str]


@dataclass
class ResourceRecord:
    step: str
    ids: Ids


@dataclass
class State:
    stack: str
    region: str
    account_id: str
    resources: list[ResourceRecord] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)

    def get(self, step: str) -> Ids | None:
        for record in list(self.resources):  # a copy: another step's thread may be recording meanwhile
            if record.step == step:
                return dict(record.ids)
        return None

    def record(self, step: str, ids: Ids, order: Sequence[str] = ()) -> bool:
        """Set a step's identifiers, keeping its place; True if anything changed.

        A new step goes at the end, or, given the stack's `order`, before the first recorded step that comes
        after it there: steps that run at once finish in any order, and the file stays the same whatever it was.
        """
        for record in self.resources:
            if record.step == step:
                if record.ids == ids:
                    return False
                record.ids = dict(ids)
                return True
        rank = {name: index for index, name in enumerate(order)}
        place = len(self.resources)
        if step in rank:
            later = (index for index, record in enumerate(self.resources) if rank.get(record.step, -1) > rank[step])
            place = next(later, place)
        self.resources.insert(place, ResourceRecord(step, dict(ids)))
        return True

    def forget(self, step: str) -> None:
        self.resources = [record for record in self.resources if record.step != step]

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "stack": self.stack,
            "region": self.region,
            "account_id": self.account_id,
            "resources": [{"step": r.step, "ids": r.ids} for r in self.resources],
            "outputs": self.outputs,
        }


class CorruptStateError(ValueError):
    """A document that is not a state this tool can read; the message says why."""


def decode_state(raw: bytes) -> State:
    """A state document's bytes as a `State` (older schema versions upgraded), or `CorruptStateError`."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptStateError("it is not UTF-8 text") from exc
    try:
        return _parse(json.loads(text))
    except KeyError as exc:
        raise CorruptStateError(f"missing key {exc}") from exc
    except (ValueError, TypeError) as exc:
        raise CorruptStateError(str(exc)) from exc


def state_bytes(state: State) -> bytes:
    """The document a store writes: the same in a file and in S3."""
    return (json.dumps(state.to_json(), indent=2) + "\n").encode()


class StateStore(Protocol):
    """Where a stack's state lives: a local file (`StateFile`) or an S3 object (deployer/s3state.py)."""

    @property
    def where(self) -> str: ...

    def load(self) -> State | None: ...

    def save(self, state: State) -> None: ...

    def locked(self, command: str, say: Callable[[str], None]) -> AbstractContextManager[None]: ...

    def delete(self) -> None: ...

    def unlock(self, confirm: Callable[[str], bool]) -> str: ...


class StateFile:
    """Reads and atomically writes one state file."""

    def __init__(self, path: Path, lock_timeout: float = 0.0, sleep: Callable[[float], None] = time.sleep) -> None:
        self.path = path
        self.lock_timeout = lock_timeout
        self.sleep = sleep

    @property
    def where(self) -> str:
        return str(self.path)

    def load(self) -> State | None:
        """The recorded state, or None when there is no file yet."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._refuse(f"cannot be read ({exc.strerror})") from exc
        try:
            return decode_state(raw)
        except CorruptStateError as exc:
            raise self._refuse(f"is corrupt or not a state file ({exc})") from exc

    @property
    def backup_path(self) -> Path:
        return self.path.with_name(self.path.name + ".bak")

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    def save(self, state: State) -> None:
        """Keep the previous version as the backup, then replace the file atomically."""
        try:
            previous = self.path.read_bytes()
        except FileNotFoundError:
            previous = None
        if previous is not None:
            _write_atomically(self.backup_path, previous)
        _write_atomically(self.path, state_bytes(state))

    @contextmanager
    def locked(self, command: str, say: Callable[[str], None]) -> Iterator[None]:
        """Hold the state's lock for the duration of a run, waiting up to `lock_timeout` for a live holder."""
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                _acquire(self.lock_path, command, say)
                break
            except LockHeldError as held:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise held.error from None
                self.sleep(min(1.0, remaining))
        try:
            yield
        finally:
            self.lock_path.unlink(missing_ok=True)

    def unlock(self, confirm: Callable[[str], bool]) -> str:
        """Show the lock, ask, and delete it: for a lock whose holder is known to be gone."""
        if not self.lock_path.exists():
            return f"there is no lock at {self.lock_path}"
        holder = _read_lock(self.lock_path)
        who = f"{holder.get('command', 'a run')} (pid {holder.get('pid')} on {holder.get('host')}, started " + (
            f"{holder.get('started_at')})"
        )
        if not confirm(f"Remove the lock held by {who}?"):
            raise StateFileError(
                "The lock was left in place",
                where=str(self.lock_path),
                todo="Run again and answer 'yes' once you are sure that run is over",
            )
        self.lock_path.unlink(missing_ok=True)
        return f"removed the lock held by {who}"

    def delete(self) -> None:
        """After a complete teardown: nothing is left to record, and the backup would only mislead."""
        self.path.unlink(missing_ok=True)
        self.backup_path.unlink(missing_ok=True)

    def _refuse(self, problem: str) -> StateFileError:
        return StateFileError(
            f"The state file {problem}; it was left exactly as it is",
            where=str(self.path),
            todo="Restore it from a backup or version control, or pass --state-file with another path; "
            "do not delete it while its resources exist, or they will have to be found by hand",
        )


def check_identity(state: State, stack: str, region: str, account_id: str, where: str) -> None:
    """Refuse to act on a state file that describes another stack, region or account."""
    for what, recorded, current in (
        ("stack", state.stack, stack),
        ("region", state.region, region),
        ("account", state.account_id, account_id),
    ):
        if recorded != current:
            raise StateFileError(
                f"The state file belongs to {what} '{recorded}', but this run uses {what} '{current}'; "
                "nothing was changed",
                where=where,
                todo=f"Run with the {what} the file records, or use another --state-file for this one",
            )


def _upgrade_from_1(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "schema_version": 2, "updated_at": ""}


# How to bring a file of each older version one version forward.
UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _upgrade_from_1}


def _upgraded(data: dict[str, Any]) -> dict[str, Any]:
    version = data["schema_version"]
    while version != SCHEMA_VERSION:
        if version not in UPGRADES:
            raise ValueError(
                f"schema_version {version!r} is unknown to this version of the tool (it reads 1 to {SCHEMA_VERSION}); "
                "a newer version of the tool probably wrote it"
            )
        data = UPGRADES[version](data)
        version = data["schema_version"]
    return data


def _parse(data: Any) -> State:
    if not isinstance(data, dict):
        raise TypeError("the top level is not an object")
    data = _upgraded(data)
    resources = []
    for entry in data["resources"]:
        ids = entry["ids"] if isinstance(entry, dict) else None
        if (
            not isinstance(ids, dict)
            or not isinstance(entry["step"], str)
            or not all(isinstance(v, str) for v in ids.values())
        ):
            raise TypeError("a resource entry is malformed")
        resources.append(ResourceRecord(entry["step"], dict(ids)))
    outputs = data.get("outputs", {})
    if not isinstance(outputs, dict):
        raise TypeError("outputs is not an object")
    return State(
        stack=_text(data, "stack"),
        region=_text(data, "region"),
        account_id=_text(data, "account_id"),
        resources=resources,
        outputs={str(k): str(v) for k, v in outputs.items()},
    )


def _text(data: dict[str, Any], key: str) -> str:
    value = data[key]
    if not isinstance(value, str) or not value:
        raise TypeError(f"'{key}' is not a non-empty string")
    return value


def _write_atomically(path: Path, content: bytes) -> None:
    """Temporary file in the same folder, fsync, rename: readers see the old or the new file, never half."""
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(content)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_folder(folder)


class LockHeldError(Exception):
    """A live run holds the lock; `error` says who, for when waiting is over."""

    def __init__(self, error: StateFileError) -> None:
        super().__init__(error.message)
        self.error = error


def _acquire(lock: Path, command: str, say: Callable[[str], None]) -> None:
    """Create the lock file exclusively; take it over only if its process is gone."""
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if not lock.parent.is_dir():
        raise StateFileError(
            "The folder of the state file does not exist",
            where=str(lock.parent),
            todo="Create the folder, or pass --state-file with a path in an existing folder",
        )
    for _attempt in range(2):
        try:
            descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            holder = _read_lock(lock)
            if _alive(holder):
                raise LockHeldError(
                    StateFileError(
                        f"The state file is in use by {holder.get('command', 'another run')} "
                        f"(pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started_at')})",
                        where=str(lock),
                        todo="Wait for that run to finish (or pass --lock-timeout SECONDS to wait for it); if that "
                        "process no longer exists, remove the lock with teardown.py --unlock",
                    )
                ) from None
            say(
                f"Taking over a lock left by pid {holder.get('pid')} (started {holder.get('started_at')}), "
                "whose process is gone"
            )
            lock.unlink(missing_ok=True)
            continue
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            json.dump(record, stream)
        return
    raise StateFileError(
        "Another run took the state file's lock at the same moment",
        where=str(lock),
        todo="Run again once it has finished",
    )


def _read_lock(lock: Path) -> dict[str, Any]:
    try:
        holder = json.loads(lock.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # unreadable or half-written: its writer died between create and write
    return holder if isinstance(holder, dict) else {}


def _alive(holder: dict[str, Any]) -> bool:
    """Whether the lock's process still runs (only checkable on the host that wrote it)."""
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    if holder.get("host") != socket.gethostname():
        return True  # another machine's run: cannot tell, so respect it
    return process_alive(pid)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
