"""The local record of what exists: `state.json`.

The file holds identifiers only (never credentials or tokens): a schema version,
the stack, region and account it belongs to, the resources in creation order, and
the outputs. It is rewritten atomically after every change (temporary file in the
same folder, fsync, `os.replace`), so a crash leaves either the old or the new
file, never a torn one. A file that cannot be read or belongs to another stack,
region or account is refused and never overwritten.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deployer.errors import StateFileError

SCHEMA_VERSION = 1
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
        for record in self.resources:
            if record.step == step:
                return dict(record.ids)
        return None

    def record(self, step: str, ids: Ids) -> bool:
        """Set a step's identifiers, keeping its place in creation order; True if anything changed."""
        for record in self.resources:
            if record.step == step:
                if record.ids == ids:
                    return False
                record.ids = dict(ids)
                return True
        self.resources.append(ResourceRecord(step, dict(ids)))
        return True

    def forget(self, step: str) -> None:
        self.resources = [record for record in self.resources if record.step != step]

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "stack": self.stack,
            "region": self.region,
            "account_id": self.account_id,
            "resources": [{"step": r.step, "ids": r.ids} for r in self.resources],
            "outputs": self.outputs,
        }


class StateFile:
    """Reads and atomically writes one state file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def exists(self) -> bool:
        return self.path.exists()

    def load(self) -> State | None:
        """The recorded state, or None when there is no file yet."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._refuse(f"cannot be read ({exc.strerror})") from exc
        except UnicodeDecodeError as exc:
            raise self._refuse("is corrupt: it is not UTF-8 text") from exc
        try:
            return _parse(json.loads(text))
        except KeyError as exc:
            raise self._refuse(f"is corrupt or not a state file (missing key {exc})") from exc
        except (ValueError, TypeError) as exc:
            raise self._refuse(f"is corrupt or not a state file ({exc})") from exc

    def save(self, state: State) -> None:
        text = json.dumps(state.to_json(), indent=2, sort_keys=False) + "\n"
        folder = self.path.parent
        folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                stream.write(text)
                stream.flush()
                os.fsync(stream.fileno())
            os.chmod(temporary, 0o600)
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        _fsync_folder(folder)

    def delete(self) -> None:
        self.path.unlink(missing_ok=True)

    def _refuse(self, problem: str) -> StateFileError:
        return StateFileError(
            f"The state file {problem}; it was left exactly as it is",
            where=str(self.path),
            todo="Restore it from a backup or version control, or pass --state-file with another path; "
            "do not delete it while its resources exist, or they will have to be found by hand",
        )


def check_identity(state: State, stack: str, region: str, account_id: str, path: Path) -> None:
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
                where=str(path),
                todo=f"Run with the {what} the file records, or use another --state-file for this one",
            )


def _parse(data: Any) -> State:
    if not isinstance(data, dict):
        raise TypeError("the top level is not an object")
    version = data["schema_version"]
    if version != SCHEMA_VERSION:
        raise ValueError(f"schema_version {version!r} is not {SCHEMA_VERSION}")
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
