"""The state file can be trusted: atomic, backed up, private, versioned, and locked against a second run."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deployer.errors import StateFileError
from deployer.state import SCHEMA_VERSION, State, StateFile
from tests.conftest import IMAGE, PROJECT_DIR, MotoServer, RunScript, script_env


def sample_state() -> State:
    state = State(stack="test-site", region="us-east-1", account_id="123456789012")
    state.record("vpc", {"id": "vpc-1"})
    return state


def test_save_keeps_a_private_backup_of_the_previous_version(tmp_path: Path) -> None:
    state_file = StateFile(tmp_path / "state.json")
    state = sample_state()
    state_file.save(state)
    first = state_file.path.read_bytes()
    assert not state_file.backup_path.exists()
    state.record("subnet-1", {"id": "subnet-1"})
    state_file.save(state)
    assert state_file.backup_path.read_bytes() == first
    for path in (state_file.path, state_file.backup_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_version_1_file_is_upgraded_on_load(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(
        json.dumps(
            {
                "schema_version": 1,
                "stack": "test-site",
                "region": "us-east-1",
                "account_id": "123456789012",
                "resources": [{"step": "vpc", "ids": {"id": "vpc-1"}}],
                "outputs": {"url": "http://x"},
            }
        )
    )
    state = StateFile(path).load()
    assert state is not None and state.get("vpc") == {"id": "vpc-1"}
    StateFile(path).save(state)
    assert json.loads(path.read_text())["schema_version"] == SCHEMA_VERSION


def test_an_unknown_version_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    text = json.dumps({"schema_version": 99, "stack": "x", "region": "y", "account_id": "z", "resources": []})
    path.write_text(text)
    with pytest.raises(StateFileError, match="schema_version 99 is unknown"):
        StateFile(path).load()
    assert path.read_text() == text


def test_a_live_lock_refuses_with_the_holders_pid_and_start_time(tmp_path: Path) -> None:
    state_file = StateFile(tmp_path / "state.json")
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        state_file.lock_path.write_text(
            json.dumps(
                {
                    "pid": holder.pid,
                    "host": socket.gethostname(),
                    "command": "provision.py",
                    "started_at": "2026-11-26T10:00:00",
                }
            )
        )
        with pytest.raises(StateFileError) as refused, state_file.locked("teardown.py", print):
            pass
        assert f"pid {holder.pid}" in refused.value.message
        assert "2026-11-26T10:00:00" in refused.value.message
        assert state_file.lock_path.exists()
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    state_file = StateFile(tmp_path / "state.json")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    state_file.lock_path.write_text(
        json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started_at": "2026-11-26T09:00:00"})
    )
    said: list[str] = []
    with state_file.locked("provision.py", said.append):
        assert json.loads(state_file.lock_path.read_text())["pid"] == os.getpid()
    assert any(f"pid {dead.pid}" in line for line in said)
    assert not state_file.lock_path.exists(), "released at the end"


def test_a_second_provision_is_refused_while_the_first_runs(
    server: MotoServer, run_script: RunScript, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _start_provision_that_waits(server, tmp_path, monkeypatch)
    try:
        second = run_script("provision.py", "--image", IMAGE, "--no-wait", server=server)
        assert second.returncode == 2
        assert f"pid {first.pid}" in second.stderr and "Traceback" not in second.stderr
        third = run_script("teardown.py", "--yes", server=server)
        assert third.returncode == 2 and "in use by provision.py" in third.stderr
    finally:
        first.kill()
        first.wait()


def test_ctrl_c_during_the_wait_saves_and_says_how_to_continue(
    server: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _start_provision_that_waits(server, tmp_path, monkeypatch)
    first.send_signal(signal.SIGINT)
    output, _ = first.communicate(timeout=60)
    assert first.returncode == 130
    assert "interrupted" in output and "run the same command again" in output.lower()
    assert "Traceback" not in output
    state = StateFile(tmp_path / "state.json").load()
    assert state is not None and state.get("service") is not None
    assert not (tmp_path / "state.json.lock").exists()


def _start_provision_that_waits(
    server: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> subprocess.Popen[str]:
    """A provision whose service never becomes stable (moto runs no task): it waits until stopped."""
    process = subprocess.Popen(
        [sys.executable, str(PROJECT_DIR / "provision.py"), "--image", IMAGE],
        cwd=tmp_path,
        env=script_env(server, tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    assert process.stdout is not None
    for line in process.stdout:
        if "waiting for" in line:
            return process
        if time.monotonic() > deadline:
            break
    process.kill()
    pytest.fail("provision never started waiting for the service")


def test_a_state_file_in_a_missing_folder_is_refused_before_anything(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "state.json"
    with (
        pytest.raises(StateFileError, match="folder of the state file does not exist"),
        StateFile(missing).locked("teardown.py", lambda _line: None),
    ):
        pass
    assert not (tmp_path / "no").exists()
