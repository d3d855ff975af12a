"""Steps a setting turns off (`Step.wanted`): skipped while off, removed when turned off, never left behind."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from deployer import runner
from deployer.settings import Settings
from deployer.stack import build_steps
from deployer.state import Ids
from deployer.steps.base import Existing, Step, StepContext
from tests.conftest import planning
from tests.rollouts import Rollout

EXTRA = "/test/extra"


class ExtraLogGroup(Step[Ids]):
    """A real resource (a log group) wanted only while the stack keeps logs for 30 days."""

    name = "extra"
    resource = "extra log group"

    def wanted(self, settings: Settings) -> bool:
        return settings.log_retention_days == 30

    def find_recorded(self, ctx: StepContext, ids: Ids) -> Existing[Ids] | None:
        return self.find_unrecorded(ctx)

    def find_unrecorded(self, ctx: StepContext) -> Existing[Ids] | None:
        groups = ctx.clients.logs.describe_log_groups(logGroupNamePrefix=EXTRA)["logGroups"]
        return Existing({"name": EXTRA}, {"name": EXTRA}) if groups else None

    def create(self, ctx: StepContext) -> Ids:
        ctx.clients.logs.create_log_group(logGroupName=EXTRA)
        return {"name": EXTRA}

    def delete(self, ctx: StepContext, ids: Ids) -> None:
        ctx.clients.logs.delete_log_group(logGroupName=ids["name"])


@pytest.fixture(autouse=True)
def extra_step(monkeypatch: pytest.MonkeyPatch) -> None:
    steps = [*build_steps(), ExtraLogGroup()]
    monkeypatch.setattr(runner, "build_steps", lambda: list(steps))
    monkeypatch.setattr(runner, "steps_by_name", lambda: {step.name: step for step in steps})


def exists(ctx: StepContext) -> bool:
    return bool(ctx.clients.logs.describe_log_groups(logGroupNamePrefix=EXTRA)["logGroups"])


def outcomes(report: runner.RunReport) -> dict[str, Any]:
    return {line.step: line.outcome for line in report.steps}


def test_an_unwanted_step_is_skipped(ctx: StepContext, serving: Rollout) -> None:
    report = runner.provision(ctx)
    assert "extra" not in outcomes(report)
    assert ctx.state.get("extra") is None
    assert not exists(ctx)


def test_turning_a_step_off_removes_its_resource_after_the_others_converged(ctx: StepContext, serving: Rollout) -> None:
    on = replace(ctx, settings=replace(ctx.settings, log_retention_days=30))
    assert outcomes(runner.provision(on))["extra"] == "created"
    assert exists(ctx)

    off = replace(ctx, settings=replace(ctx.settings, log_retention_days=14))
    plan = runner.plan(planning(off))
    assert outcomes(plan)["extra"] == "remove"
    assert exists(ctx), "a dry run removes nothing"

    report = runner.provision(off)
    assert report.steps[-1].step == "extra"
    assert report.steps[-1].outcome == "removed"
    assert ctx.state.get("extra") is None
    assert not exists(ctx)
    assert "extra" not in outcomes(runner.provision(off))


def test_teardown_deletes_a_recorded_step_whatever_the_settings(ctx: StepContext, serving: Rollout) -> None:
    runner.provision(replace(ctx, settings=replace(ctx.settings, log_retention_days=30)))
    report = runner.teardown(ctx)  # teardown's settings are the defaults: the step is not wanted
    assert outcomes(report)["extra"] == "deleted"
    assert not exists(ctx)
    assert ctx.state.resources == []
