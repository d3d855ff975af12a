"""Every command in every output mode: `--output json` leaves exactly one JSON document on stdout, `--quiet`
leaves stdout empty (or, for provision and its rollback, the site URL alone).

The commands run in-process through their real entry points against moto; each starts
from a provisioned stack. The rollback and the site probe are the only parts emulated:
moto runs no task, so the rollout hooks of tests/rollouts.py complete it, and the URL
(a fake load balancer name) is never fetched.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from deployer import cli
from deployer.clients import AwsClients
from deployer.probe import UrlAnswer
from deployer.state import StateFile
from deployer.steps.base import StepContext
from tests.conftest import IMAGE, FakeClock
from tests.rollouts import Rollout

Main = Callable[[list[str]], int]


def _status(argv: list[str]) -> int:
    return cli.status_main(argv, probe=lambda url: UrlAnswer(url, status=200, seconds=0.01))


COMMANDS: dict[str, tuple[Main, list[str]]] = {
    "provision": (cli.provision_main, ["--image", IMAGE, "--no-wait"]),
    "provision --dry-run": (cli.provision_main, ["--image", IMAGE, "--dry-run"]),
    "provision --rollback": (cli.provision_main, ["--rollback"]),
    "teardown": (cli.teardown_main, ["--yes"]),
    "teardown --sweep --dry-run": (cli.teardown_main, ["--sweep", "--stack", "test-site", "--dry-run"]),
    "teardown --sweep": (cli.teardown_main, ["--sweep", "--stack", "test-site", "--yes"]),
    "status": (_status, []),
    "logs": (cli.logs_main, ["--since", "1h"]),
}
URL_COMMANDS = {"provision", "provision --rollback"}


@pytest.fixture
def stack(aws: AwsClients, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """A provisioned stack whose state names a rollback target; returns the flags every command shares."""
    config = tmp_path / "deploy.toml"
    config.write_text('stack = "test-site"\n')
    state_path = tmp_path / "state.json"
    assert (
        cli.provision_main(["--config", str(config), "--state-file", str(state_path), *COMMANDS["provision"][1]]) == 0
    )
    state_file = StateFile(state_path)
    state = state_file.load()
    assert state is not None
    task_definition = state.get("task-definition")
    assert task_definition is not None
    state.outputs["rollback_revision"] = task_definition["arn"]
    state_file.save(state)
    real_open = cli.open_context

    def emulated(*args: Any, **kwargs: Any) -> StepContext:
        """The CLI's own context, with the rollout emulated and the site answering."""
        ctx = real_open(*args, **kwargs)
        Rollout().install(ctx.clients.ecs, ctx.clients.elbv2)
        return replace(ctx, probe=lambda _url, _via: 200, clock=FakeClock())

    monkeypatch.setattr(cli, "open_context", emulated)
    yield ["--state-file", str(state_path)]


def run(command: str, mode: list[str], shared: list[str], config: Path) -> int:
    main, flags = COMMANDS[command]
    extra = ["--config", str(config)] if main is cli.provision_main else []
    return main([*flags, *extra, *shared, *mode])


@pytest.mark.parametrize("command", list(COMMANDS))
def test_json_output_is_one_document_on_stdout(
    command: str, stack: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert run(command, ["--output", "json"], stack, tmp_path / "deploy.toml") == 0
    captured = capsys.readouterr()
    document = json.loads(captured.out)  # exactly one document: json.loads refuses trailing data
    assert isinstance(document, dict) and document, captured.out
    assert "Traceback" not in captured.err


@pytest.mark.parametrize("command", list(COMMANDS))
def test_quiet_prints_nothing_but_the_url(
    command: str, stack: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert run(command, ["--quiet"], stack, tmp_path / "deploy.toml") == 0
    captured = capsys.readouterr()
    if command in URL_COMMANDS:
        assert len(captured.out.splitlines()) == 1 and captured.out.startswith("http://"), captured.out
    elif command == "logs":
        assert captured.out == ""  # no events were written; events are the result, not progress
    else:
        assert captured.out == "", captured.out
    assert captured.err == "", "quiet shows errors only"
