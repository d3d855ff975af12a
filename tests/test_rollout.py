"""Done means serving; a failed rollout fails fast and says why; redeploy and rollback are verified the same way."""

from __future__ import annotations

from dataclasses import replace

import pytest

from deployer import runner
from deployer.errors import DeployerError, WaitTimeoutError
from deployer.rollout import DeploymentFailedError
from deployer.steps.base import StepContext
from tests.rollouts import Rollout


@pytest.fixture
def fake_time(ctx: StepContext) -> list[float]:
    now = [0.0]
    ctx.clock = lambda: now[0]
    ctx.sleep = lambda seconds: now.__setitem__(0, now[0] + seconds)
    return now


def test_provision_waits_until_the_site_is_served_and_shows_new_events(
    ctx: StepContext, serving: Rollout, fake_time: list[float]
) -> None:
    said: list[str] = []
    ctx.say = said.append
    serving.polls_until_done = 3
    serving.events = ["(service test-site-web) has started 1 tasks: (task abc)."]
    runner.provision(ctx)
    assert any("rollout IN_PROGRESS" in line for line in said)
    assert ctx.state.outputs["serving_revision"] == ctx.ids("task-definition")["arn"]
    assert "rollback_revision" not in ctx.state.outputs


def test_a_site_that_does_not_answer_is_not_done(ctx: StepContext, serving: Rollout, fake_time: list[float]) -> None:
    ctx.probe = lambda _url: 503
    ctx.settings = replace(ctx.settings, service_wait_timeout=60)
    with pytest.raises(WaitTimeoutError, match="answers 503"):
        runner.provision(ctx)
    assert "serving_revision" not in ctx.state.outputs


def test_unhealthy_targets_are_not_done(ctx: StepContext, fake_time: list[float]) -> None:
    rollout = Rollout()
    rollout.install(ctx.clients.ecs, ctx.clients.elbv2)
    ctx.clients.elbv2.meta.events.register(
        "after-call.elastic-load-balancing-v2.DescribeTargetHealth",
        lambda parsed, **_: parsed.update(TargetHealthDescriptions=[{"TargetHealth": {"State": "unhealthy"}}]),
    )
    ctx.probe = lambda _url: 200
    ctx.settings = replace(ctx.settings, service_wait_timeout=60)
    with pytest.raises(WaitTimeoutError, match="unhealthy"):
        runner.provision(ctx)


def test_failed_task_launches_fail_fast_with_the_reason(ctx: StepContext, fake_time: list[float]) -> None:
    rollout = Rollout(failed_tasks=3, stopped_reason="Essential container in task exited")
    rollout.install(ctx.clients.ecs, ctx.clients.elbv2)
    said: list[str] = []
    ctx.say = said.append
    with pytest.raises(DeploymentFailedError) as failure:
        runner.provision(ctx)
    message = failure.value.message
    assert "3 task launches failed (max_failed_tasks is 3)" in message
    assert "Essential container in task exited (web: exit code 3)" in message
    assert failure.value.exit_code == 1
    assert any("task stopped" in line for line in said)
    assert fake_time[0] < 60, "it stopped waiting at once"


def test_a_circuit_breaker_rollback_is_a_failure_that_names_the_running_revision(
    ctx: StepContext, serving: Rollout, fake_time: list[float]
) -> None:
    runner.provision(ctx)
    first = ctx.ids("task-definition")["arn"]
    ctx.settings = replace(ctx.settings, image="example.com/broken:2")
    serving.roll_back_to = first
    with pytest.raises(DeploymentFailedError) as failure:
        runner.provision(ctx)
    assert "circuit breaker rolled the service back" in failure.value.message
    assert f"now runs {first.rsplit('/', 1)[-1]}" in failure.value.message
    assert ctx.state.outputs["serving_revision"] == first


def test_redeploy_then_rollback_to_the_last_good_revision(
    ctx: StepContext, serving: Rollout, fake_time: list[float]
) -> None:
    runner.provision(ctx)
    first = ctx.ids("task-definition")["arn"]
    ctx.settings = replace(ctx.settings, image="example.com/site:2")
    report = runner.provision(ctx)
    second = ctx.ids("task-definition")["arn"]
    assert second != first
    assert {line.step: line.outcome for line in report.steps}["service"] == "updated"
    assert ctx.state.outputs["serving_revision"] == second
    assert ctx.state.outputs["rollback_revision"] == first

    runner.rollback(ctx)
    service = ctx.clients.ecs.describe_services(cluster="test-site-cluster", services=["test-site-web"])["services"][0]
    assert service["taskDefinition"] == first
    assert ctx.state.outputs["serving_revision"] == first
    assert ctx.state.outputs["rollback_revision"] == second


def test_rollback_without_a_verified_earlier_revision_is_refused(ctx: StepContext, serving: Rollout) -> None:
    runner.provision(ctx)
    with pytest.raises(DeployerError, match="nothing to roll back to"):
        runner.rollback(ctx)
