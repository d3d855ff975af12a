"""Issue 14's team state through the real scripts: `--state-file s3://BUCKET/KEY` against a moto server.

Each "machine" is a folder of its own that the scripts run in; what they share is only the S3 URL. moto
runs no task, so provision runs with --no-wait (as in tests/test_scripts.py). moto's S3 is made to answer
like AWS where the state depends on it (tests/s3_emulation.py, installed by the `moto_server` fixture).
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from getpass import getuser
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError

from deployer.clients import AwsClients
from tests.conftest import ACCOUNT, IMAGE, PROJECT_DIR, REGION, MotoServer, script_env
from tests.inventory import EXPECTED_COUNTS, added, inventory
from tests.steps_helpers import wanted_steps
from tests.test_bad_input import assert_refused
from tests.test_scripts import _on_terminal, server_clients

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

STACK = "team-site"
BUCKET = "team-deploy-state"
KEY = f"sites/{STACK}/state.json"
LOCK_KEY = f"{KEY}.lock"
URL = f"s3://{BUCKET}/{KEY}"
PROVISION = ("provision.py", "--stack", STACK, "--image", IMAGE, "--no-wait")
# Another machine's lock, as deployer/s3state.py writes one.
OTHER_HOLDER = {
    "user": "ci",
    "host": "ci-runner-7",
    "pid": 4242,
    "command": "provision.py",
    "started_at": "2026-01-02T03:04:05+00:00",
    "lease_seconds": 120,
}


@dataclass
class Machine:
    """A working directory of its own: what one laptop (or CI runner) of the team has, besides the S3 URL."""

    folder: Path
    server: MotoServer
    env: dict[str, str] = field(default_factory=dict)

    def command(self, script: str, *args: str) -> list[str]:
        config = self.folder / "deploy.toml"
        if not config.exists():
            config.write_text("")
        flags = ["--config", str(config)] if script == "provision.py" and "--config" not in args else []
        return [sys.executable, str(PROJECT_DIR / script), *flags, *args]

    def environment(self) -> dict[str, str]:
        return {**script_env(self.server, self.folder), **self.env}

    def run(self, script: str, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a script to its end, with no terminal (stdin empty)."""
        return subprocess.run(
            self.command(script, *args),
            cwd=self.folder,
            env=self.environment(),
            input="",
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def start(self, script: str, *args: str) -> subprocess.Popen[str]:
        """Start a script and leave it running (its stdout and stderr piped)."""
        return subprocess.Popen(
            self.command(script, *args),
            cwd=self.folder,
            env=self.environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def local_states(self) -> list[str]:
        """Every state file (or lock, backup, temporary file of one) in this machine's folder."""
        return sorted(path.name for path in self.folder.rglob("state.json*"))


def machine(tmp_path: Path, server: MotoServer, name: str, **env: str) -> Machine:
    folder = tmp_path / name
    folder.mkdir()
    return Machine(folder, server, dict(env))


def s3_of(server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> tuple[AwsClients, S3Client]:
    clients = server_clients(server, monkeypatch)
    return clients, clients.s3


def body(s3: S3Client, key: str = KEY) -> bytes | None:
    """The object's content, or None when it (or its bucket) does not exist."""
    try:
        return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("NoSuchKey", "NoSuchBucket"):
            return None
        raise


def versions(s3: S3Client, key: str = KEY) -> list[str]:
    """Every version of `key`, delete markers too: the bucket keeps one for every write (versioning)."""
    answer = s3.list_object_versions(Bucket=BUCKET, Prefix=key)
    found = [*answer.get("Versions", []), *answer.get("DeleteMarkers", [])]
    return sorted(entry["VersionId"] for entry in found if entry["Key"] == key)


def recorded(s3: S3Client) -> list[str]:
    """The steps the state object records."""
    return [entry["step"] for entry in json.loads(body(s3) or b"null")["resources"]]


def buckets(s3: S3Client) -> list[str]:
    return [b["Name"] for b in s3.list_buckets().get("Buckets", [])]


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.stdout + result.stderr


def assert_steps(result: subprocess.CompletedProcess[str], outcome: str) -> None:
    """Every step of the stack is listed with `outcome` ("create" in a plan, "unchanged")."""
    for step in wanted_steps():
        assert f"{step.name:<22} {outcome} " in result.stdout, f"{step.name} not {outcome}\n{result.stdout}"


def test_team_state_from_first_provision_to_teardown_on_another_machine(
    server: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clients, s3 = s3_of(server, monkeypatch)
    before = inventory(clients)
    laptop, other = machine(tmp_path, server, "laptop"), machine(tmp_path, server, "other-laptop")

    plan = laptop.run(*PROVISION, "--state-file", URL, "--dry-run")
    assert_ok(plan)
    assert_steps(plan, "create")
    assert buckets(s3) == [], "a dry run creates no bucket"

    first = laptop.run(*PROVISION, "--state-file", URL)
    assert_ok(first)
    assert f"The state bucket {BUCKET} does not exist: creating it in {REGION}" in first.stdout, first.stdout
    assert s3.get_bucket_versioning(Bucket=BUCKET)["Status"] == "Enabled"
    assert all(s3.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"].values())
    assert "aws:SecureTransport" in s3.get_bucket_policy(Bucket=BUCKET)["Policy"]
    state = json.loads(body(s3) or b"null")
    assert recorded(s3) == [s.name for s in wanted_steps()]
    assert (state["stack"], state["region"], state["account_id"]) == (STACK, REGION, ACCOUNT)
    assert body(s3, LOCK_KEY) is None, "the lock is released"
    written, locks = versions(s3), versions(s3, LOCK_KEY)
    assert written and locks, "a state and a lock were written (versioning keeps both)"

    again = laptop.run(*PROVISION, "--state-file", URL)
    assert_ok(again)
    assert_steps(again, "unchanged")
    assert "creating it" not in again.stdout
    assert versions(s3) == written, "a run that changes nothing writes no new version of the state"
    locks = versions(s3, LOCK_KEY)

    replan = other.run(*PROVISION, "--state-file", URL, "--dry-run")
    assert_ok(replan)
    assert_steps(replan, "unchanged")
    assert (versions(s3), versions(s3, LOCK_KEY)) == (written, locks), "a dry run writes nothing, not even a lock"

    status = other.run("status.py", "--state-file", URL)
    assert_ok(status)
    assert f"Stack '{STACK}' in {REGION}" in status.stdout and state["outputs"]["url"] in status.stdout, status.stdout
    assert_ok(other.run("logs.py", "--state-file", URL))  # moto runs no task: no events, and that is no error

    down = other.run("teardown.py", "--state-file", URL, "--yes")
    assert_ok(down)
    assert f"the state bucket {BUCKET} is left as it is" in down.stdout, down.stdout
    assert f"{URL} is removed" in down.stdout
    assert inventory(clients) == before, f"left behind: {added(before, inventory(clients))}"
    assert (body(s3), body(s3, LOCK_KEY)) == (None, None)
    assert buckets(s3) == [BUCKET]
    assert laptop.local_states() == [] and other.local_states() == []


def test_state_file_in_deploy_toml_works_like_the_flag(
    server: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clients, s3 = s3_of(server, monkeypatch)
    before = inventory(clients)
    laptop = machine(tmp_path, server, "laptop")
    (laptop.folder / "deploy.toml").write_text(f'state_file = "{URL}"\n')

    first = laptop.run(*PROVISION)
    assert_ok(first)
    assert f"The state bucket {BUCKET} does not exist" in first.stdout
    assert recorded(s3) == [s.name for s in wanted_steps()]
    written = versions(s3)

    again = laptop.run(*PROVISION)
    assert_ok(again)
    assert_steps(again, "unchanged")
    assert versions(s3) == written
    assert laptop.local_states() == []

    down = machine(tmp_path, server, "ci").run("teardown.py", "--state-file", URL, "--yes")
    assert_ok(down)
    assert inventory(clients) == before and body(s3) is None


# ------------------------------------------------------------------ the lock


def put_lock(s3: S3Client) -> bytes:
    """Another machine's run holds the lock (and made the bucket, on its first run)."""
    if BUCKET not in buckets(s3):
        s3.create_bucket(Bucket=BUCKET)
    data = json.dumps(OTHER_HOLDER).encode()
    s3.put_object(Bucket=BUCKET, Key=LOCK_KEY, Body=data, IfNoneMatch="*")
    return data


OTHER_NAMED = "provision.py by ci on ci-runner-7 (pid 4242)"


def test_a_held_lock_refuses_at_once_and_is_waited_for_with_a_timeout(
    server: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clients, s3 = s3_of(server, monkeypatch)
    before = inventory(clients)
    laptop = machine(tmp_path, server, "laptop")
    lock = put_lock(s3)

    refused = laptop.run(*PROVISION, "--state-file", URL)
    assert_refused(refused, f"The state is locked by {OTHER_NAMED}", f"Where: {URL}.lock", "--lock-timeout")
    assert inventory(clients) == before
    assert (body(s3), body(s3, LOCK_KEY)) == (None, lock), "nothing written, the other run's lock left alone"

    # With --lock-timeout it waits; once it says so, the other run ends (its lock goes), and this one runs.
    waiting = laptop.start(*PROVISION, "--state-file", URL, "--lock-timeout", "60")
    said = read_until(waiting, "Waiting up to 60 s for the state's lock")
    assert OTHER_NAMED in said
    s3.delete_object(Bucket=BUCKET, Key=LOCK_KEY)
    rest, errors = waiting.communicate(timeout=300)
    assert waiting.returncode == 0, errors
    assert "Site URL" in rest and recorded(s3) == [s.name for s in wanted_steps()]
    assert body(s3, LOCK_KEY) is None


def read_until(process: subprocess.Popen[str], text: str) -> str:
    """A running script's stdout, line by line, until a line holds `text` (the script flushes every line)."""
    assert process.stdout is not None
    seen = ""
    for line in process.stdout:
        seen += line
        if text in line:
            return seen
    process.wait(timeout=60)
    raise AssertionError(f"the script ended (exit {process.returncode}) without saying {text!r}:\n{seen}")


def test_two_provisions_at_once_one_runs_and_the_other_names_it(
    server: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both start together: the winner holds the lock for its whole run (seconds of AWS calls), the loser asks
    for it within the difference of their start-ups (the default --lock-timeout 0: it refuses at once)."""
    clients, s3 = s3_of(server, monkeypatch)
    before = inventory(clients)
    runs = [machine(tmp_path, server, name).start(*PROVISION, "--state-file", URL) for name in ("laptop", "ci")]
    ended = [(run, *run.communicate(timeout=300)) for run in runs]

    assert sorted(run.returncode for run in runs) == [0, 2], [(r.returncode, out, err) for r, out, err in ended]
    (winner, *_), (_, loser_out, loser_err) = sorted(ended, key=lambda item: item[0].returncode)
    assert_refused(
        subprocess.CompletedProcess([], 2, loser_out, loser_err),
        f"The state is locked by provision.py by {getuser()} on {socket.gethostname()} (pid {winner.pid})",
    )
    assert {kind: len(ids) for kind, ids in added(before, inventory(clients)).items()} == EXPECTED_COUNTS
    assert body(s3, LOCK_KEY) is None


def test_a_lock_left_by_a_killed_run_is_taken_over_after_its_lease(
    server: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first run is killed (SIGKILL: no clean-up at all) while it holds the lock: all its resources are
    created and it waits for the service (moto never makes targets healthy)."""
    clients, s3 = s3_of(server, monkeypatch)
    before = inventory(clients)
    lease = {"DEPLOYER_LOCK_LEASE_SECONDS": "2"}
    crashed = machine(tmp_path, server, "laptop", **lease).start(*PROVISION[:-1], "--state-file", URL)
    read_until(crashed, f"waiting for {STACK}-web to serve the new revision")
    crashed.send_signal(signal.SIGKILL)
    crashed.communicate(timeout=60)
    held = json.loads(body(s3, LOCK_KEY) or b"null")
    assert (held["pid"], held["lease_seconds"]) == (crashed.pid, 2), "the dead run's lock is still there"

    later = machine(tmp_path, server, "ci", **lease).run(*PROVISION, "--state-file", URL, "--lock-timeout", "60")
    assert_ok(later)
    assert f"Taking over the state's lock from provision.py by {getuser()}" in later.stdout, later.stdout
    assert f"(pid {crashed.pid})" in later.stdout
    assert_steps(later, "unchanged")
    assert {kind: len(ids) for kind, ids in added(before, inventory(clients)).items()} == EXPECTED_COUNTS
    assert body(s3, LOCK_KEY) is None


def test_unlock_shows_the_lock_and_asks(server: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, s3 = s3_of(server, monkeypatch)
    laptop = machine(tmp_path, server, "laptop")
    lock = put_lock(s3)
    unlock = ["teardown.py", "--state-file", URL, "--unlock"]

    code, said = _on_terminal(unlock, "no\n", server, laptop.folder)
    assert code == 2 and f"Remove the lock held by {OTHER_NAMED}" in said, said
    assert "The lock was left in place" in said
    assert body(s3, LOCK_KEY) == lock

    code, said = _on_terminal(unlock, "yes\n", server, laptop.folder)
    assert code == 0 and f"removed the lock held by {OTHER_NAMED}" in said, said
    assert body(s3, LOCK_KEY) is None

    put_lock(s3)
    removed = laptop.run("provision.py", "--state-file", URL, "--unlock", "--yes")
    assert_ok(removed)
    assert f"removed the lock held by {OTHER_NAMED}" in removed.stdout
    assert body(s3, LOCK_KEY) is None
    assert laptop.local_states() == []


# ------------------------------------------------------------------ moving a local state into S3


def content(document: bytes | None) -> dict[str, Any]:
    """A state document but its `updated_at`, which every write stamps anew (the import too)."""
    state: dict[str, Any] = json.loads(document or b"null")
    state.pop("updated_at")
    return state


def test_import_moves_a_local_state_into_s3_once(
    server: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, s3 = s3_of(server, monkeypatch)
    laptop = machine(tmp_path, server, "laptop")
    assert_ok(laptop.run(*PROVISION))
    local = (laptop.folder / "state.json").read_bytes()

    moved = laptop.run("provision.py", "--state-file", URL, "--import-state", "state.json")
    assert_ok(moved)
    assert f"Imported state.json into {URL}" in moved.stdout, moved.stdout
    assert content(body(s3)) == content(local)
    # The local provision's backup stays; no provision reads a .bak (deployer/state.py).
    assert laptop.local_states() == ["state.json.bak", "state.json.imported"]
    assert (laptop.folder / "state.json.imported").read_bytes() == local
    written = versions(s3)

    (laptop.folder / "state.json").write_bytes(local)  # someone imports the same state again
    twice = laptop.run("provision.py", "--state-file", URL, "--import-state", "state.json")
    assert_refused(twice, f"{URL} already exists", "nothing was changed")
    assert versions(s3) == written
    assert (laptop.folder / "state.json").read_bytes() == local, "a refused import leaves the local file"
    (laptop.folder / "state.json").unlink()

    again = laptop.run(*PROVISION, "--state-file", URL)
    assert_ok(again)
    assert_steps(again, "unchanged")
    assert versions(s3) == written
    assert laptop.local_states() == ["state.json.bak", "state.json.imported"]
