"""Lost state: provision adopts what exists, and `teardown.py --sweep` finds and deletes it all."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import boto3
import pytest

from deployer import runner
from deployer.clients import build_clients
from deployer.settings import Settings
from deployer.steps.base import StepContext
from tests.conftest import IMAGE, REGION, CallLog, MotoServer, RunScript, lost_state
from tests.inventory import inventory
from tests.steps_helpers import wanted_steps


def test_provision_with_a_lost_state_file_adopts_everything(ctx: StepContext, calls: CallLog) -> None:
    runner.provision(ctx, wait=False)
    snapshot = inventory(ctx.clients)
    ctx = lost_state(ctx)  # the file is gone
    calls.clear()
    report = runner.provision(ctx, wait=False)
    assert inventory(ctx.clients) == snapshot
    assert [line.step for line in report.steps if line.outcome == "created"] == ["image"]  # not an AWS resource
    assert not [op for _, op in calls.changing() if op.startswith(("Create", "Register"))]


def test_discover_finds_the_whole_stack_in_creation_order(ctx: StepContext) -> None:
    before = inventory(ctx.clients)
    runner.provision(ctx, wait=False)
    recorded = {r.step: r.ids for r in ctx.state.resources}
    ctx = lost_state(ctx)
    runner.discover(ctx)
    assert [r.step for r in ctx.state.resources] == [s.name for s in wanted_steps() if s.name != "image"]
    for record in ctx.state.resources:
        for key in ("id", "arn", "name"):
            if key in record.ids:
                assert record.ids[key] == recorded[record.step][key]
    runner.teardown(ctx)
    assert inventory(ctx.clients) == before  # including the VPC's original main route table made main again


def test_sweep_of_another_stack_finds_nothing(ctx: StepContext) -> None:
    runner.provision(ctx, wait=False)
    ctx = replace(lost_state(ctx, "other-site"), settings=Settings(stack="other-site", region=REGION, image=IMAGE))
    runner.discover(ctx)
    assert ctx.state.resources == []


def test_sweep_from_the_command_line(
    server: MotoServer, run_script: RunScript, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    clients = build_clients(boto3.Session(region_name=REGION))
    before = inventory(clients)
    assert run_script("provision.py", "--stack", "swept", "--image", IMAGE, "--no-wait", server=server).returncode == 0
    (tmp_path / "state.json").unlink()
    (tmp_path / "state.json.bak").unlink()

    listed = run_script("teardown.py", "--sweep", "--stack", "swept", "--dry-run", server=server)
    assert listed.returncode == 0, listed.stderr
    assert f"Found {len(wanted_steps()) - 1} resources of stack 'swept'" in listed.stdout  # all but the image
    assert "Dry run: nothing was deleted." in listed.stdout
    assert inventory(clients) != before
    assert not (tmp_path / "state.json").exists()

    swept = run_script("teardown.py", "--sweep", "--stack", "swept", "--yes", server=server)
    assert swept.returncode == 0, swept.stderr
    assert inventory(clients) == before
    assert not (tmp_path / "state.json").exists()

    refused = run_script("teardown.py", "--sweep", server=server)
    assert refused.returncode == 2 and "--stack" in refused.stderr
