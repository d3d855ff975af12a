"""The real scripts as a user runs them, against a moto server on 127.0.0.1 (AWS_ENDPOINT_URL)."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from deployer.clients import AwsClients, build_clients
from tests.conftest import IMAGE, PROJECT_DIR, REGION, MotoServer, RunScript, script_env
from tests.inventory import added, inventory
from tests.steps_helpers import wanted_steps


def server_clients(server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> AwsClients:
    """Clients for looking at the server's inventory (boto3 reads AWS_ENDPOINT_URL when a client is built)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    return build_clients(boto3.Session(region_name=REGION))


def test_provision_rerun_teardown(
    server: MotoServer, run_script: RunScript, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clients = server_clients(server, monkeypatch)
    before = inventory(clients)

    first = run_script("provision.py", "--stack", "script-site", "--image", IMAGE, "--no-wait", server=server)
    assert first.returncode == 0, first.stderr
    state = json.loads((tmp_path / "state.json").read_text())
    assert [r["step"] for r in state["resources"]] == [s.name for s in wanted_steps()]
    assert (state["stack"], state["region"], state["account_id"]) == ("script-site", REGION, "123456789012")
    url = state["outputs"]["url"]
    assert url.startswith("http://script-site-nlb-") and url in first.stdout
    assert len(added(before, inventory(clients))["load_balancers"]) == 1

    second = run_script("provision.py", "--image", IMAGE, "--no-wait", server=server)  # stack and region: the state
    assert second.returncode == 0, second.stderr
    assert second.stdout.count(" unchanged ") == len(wanted_steps())
    assert json.loads((tmp_path / "state.json").read_text()) == state

    down = run_script("teardown.py", "--yes", server=server)
    assert down.returncode == 0, down.stderr
    assert inventory(clients) == before
    assert not (tmp_path / "state.json").exists()


def test_teardown_asks_on_a_terminal(server: MotoServer, run_script: RunScript, tmp_path: Path) -> None:
    assert run_script("provision.py", "--image", IMAGE, "--no-wait", server=server).returncode == 0
    answer_no = _on_terminal(["teardown.py"], "no\n", server, tmp_path)
    assert answer_no[0] == 2 and "cancelled" in answer_no[1]
    assert (tmp_path / "state.json").exists()
    answer_yes = _on_terminal(["teardown.py"], "yes\n", server, tmp_path)
    assert answer_yes[0] == 0, answer_yes[1]
    assert not (tmp_path / "state.json").exists()


def test_provision_waits_for_the_site_and_gives_up_at_the_timeout(
    server: MotoServer, run_script: RunScript, tmp_path: Path
) -> None:
    """Without --no-wait it waits for healthy targets (moto registers none) and says so, up to the timeout."""
    (tmp_path / "deploy.toml").write_text("service_wait_timeout = 2\n")
    result = run_script("provision.py", "--image", IMAGE, server=server)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "waiting for flask-site-web to serve the new revision: targets not registered yet" in result.stdout
    assert "Gave up waiting" in result.stderr and "Traceback" not in result.stderr
    assert json.loads((tmp_path / "state.json").read_text())["resources"][-1]["step"] == "service"


def _on_terminal(args: list[str], typed: str, server: MotoServer, cwd: Path) -> tuple[int, str]:
    """Run a script with a pseudo-terminal as its stdin, type `typed`, return (exit code, all output)."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, str(PROJECT_DIR / args[0]), *args[1:]],
        cwd=cwd,
        env=script_env(server, cwd),
        stdin=follower,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    os.close(follower)
    os.write(leader, typed.encode())
    output, _ = process.communicate(timeout=120)
    os.close(leader)
    return process.returncode, output
