"""`provision.py --dry-run`: per step create / update (with the difference) / unchanged, from read calls only."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from deployer import cli, cost, runner
from deployer.clients import AwsClients
from deployer.steps.base import StepContext
from tests.conftest import IMAGE, CallLog, MotoServer, RunScript, planning
from tests.inventory import inventory
from tests.steps_helpers import wanted_steps


def test_plan_of_an_empty_account_creates_everything_and_changes_nothing(ctx: StepContext, calls: CallLog) -> None:
    before = inventory(ctx.clients)
    calls.clear()
    report = runner.plan(planning(ctx))
    assert [line.outcome for line in report.steps] == ["create"] * len(wanted_steps(ctx.settings))
    assert calls.changing() == []
    assert inventory(ctx.clients) == before


def test_plan_shows_the_difference_and_makes_only_read_calls(
    ctx: StepContext, calls: CallLog, state_path: Path
) -> None:
    runner.provision(ctx, wait=False)
    on_disk = state_path.read_bytes()
    snapshot = inventory(ctx.clients)
    ctx.clients.logs.put_retention_policy(logGroupName="/ecs/test-site", retentionInDays=3)  # changed by hand
    ctx = planning(replace(ctx, settings=replace(ctx.settings, cpu=512, memory=1024, desired_count=2)))
    calls.clear()
    report = runner.plan(ctx)
    outcomes = {line.step: (line.outcome, line.detail) for line in report.steps}
    assert outcomes["log-group"] == ("update", "retention 3 -> 14 days")
    assert outcomes["task-definition"] == ("update", "new revision (cpu, memory changed)")
    assert outcomes["service"][0] == "update"
    assert "desired count 1 -> 2" in outcomes["service"][1]
    assert "(next revision)" in outcomes["service"][1]
    assert {outcome for step, (outcome, _) in outcomes.items()
            if step not in ("log-group", "task-definition", "service")} == {"unchanged"}  # fmt: skip
    assert calls.changing() == [], "a plan makes read calls only"
    assert state_path.read_bytes() == on_disk
    assert inventory(ctx.clients) == snapshot


def test_cost_estimate_follows_the_settings(ctx: StepContext) -> None:
    small = cost.total(cost.estimate(ctx.settings))
    bigger = cost.total(cost.estimate(replace(ctx.settings, cpu=1024, memory=2048, desired_count=3)))
    assert 30 < small < 60
    assert bigger > small * 2


def test_dry_run_from_the_command_line(server: MotoServer, run_script: RunScript, tmp_path: Path) -> None:
    result = run_script("provision.py", "--image", "example.com/site:1", "--dry-run", server=server)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(" create ") == len(wanted_steps())
    assert "Estimated monthly cost (an estimate" in result.stdout and "total" in result.stdout
    assert not (tmp_path / "state.json").exists()


def test_dry_run_with_autoscaling_prices_the_task_range(
    aws: AwsClients, state_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The plan's estimate names min..max tasks where it named the count, and prices the lines they grow."""
    flags = ["--image", IMAGE, "--dry-run", "--min-tasks", "1", "--max-tasks", "4", "--state-file", str(state_path)]
    assert cli.provision_main(flags) == 0
    assert "1..4 task(s) x 0.25 vCPU x $0.04048/h" in capsys.readouterr().out
    assert cli.provision_main([*flags, "--output", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    vcpu = next(line for line in document["cost"]["lines"] if line["item"] == "Fargate vCPU")
    assert vcpu["monthly_usd_max"] == pytest.approx(4 * vcpu["monthly_usd"])
    assert isinstance(document["cost"]["monthly_usd"], float)
    assert not state_path.exists()
