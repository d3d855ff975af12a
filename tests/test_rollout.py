"""Done means serving; a failed rollout fails fast and says why; redeploy and rollback are verified the same way."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from deployer import runner
from deployer.errors import DeployerError, WaitTimeoutError
from deployer.rollout import DeploymentFailedError
from deployer.runner import provision_step
from deployer.stack import steps_by_name
from deployer.steps.alarms import AlarmStep
from deployer.steps.base import StepContext
from tests.conftest import CallLog, FakeClock, FakeSite, RecordingOutput
from tests.rollouts import Rollout
from tests.steps_helpers import provision_through


def test_provision_waits_until_the_site_is_served_and_shows_new_events(
    ctx: StepContext, serving: Rollout, clock: FakeClock, output: RecordingOutput
) -> None:
    said = output.lines
    serving.polls_until_done = 3
    serving.events = ["(service test-site-web) has started 1 tasks: (task abc)."]
    runner.provision(ctx)
    assert any("rollout IN_PROGRESS" in line for line in said)
    assert ctx.state.outputs["serving_revision"] == ctx.ids("task-definition")["arn"]
    assert "rollback_revision" not in ctx.state.outputs


def test_a_site_that_does_not_answer_is_not_done(
    ctx: StepContext, serving: Rollout, clock: FakeClock, site: FakeSite
) -> None:
    site.status = 503
    ctx = replace(ctx, settings=replace(ctx.settings, service_wait_timeout=60))
    with pytest.raises(WaitTimeoutError, match="answers 503"):
        runner.provision(ctx)
    assert "serving_revision" not in ctx.state.outputs


def test_unhealthy_targets_are_not_done(ctx: StepContext, clock: FakeClock, site: FakeSite) -> None:
    rollout = Rollout()
    rollout.install(ctx.clients.ecs, ctx.clients.elbv2)
    ctx.clients.elbv2.meta.events.register(
        "after-call.elastic-load-balancing-v2.DescribeTargetHealth",
        lambda parsed, **_: parsed.update(TargetHealthDescriptions=[{"TargetHealth": {"State": "unhealthy"}}]),
    )
    site.status = 200
    ctx = replace(ctx, settings=replace(ctx.settings, service_wait_timeout=60))
    with pytest.raises(WaitTimeoutError, match="unhealthy"):
        runner.provision(ctx)


def test_failed_task_launches_fail_fast_with_the_reason(
    ctx: StepContext, clock: FakeClock, output: RecordingOutput
) -> None:
    rollout = Rollout(failed_tasks=3, stopped_reason="Essential container in task exited")
    rollout.install(ctx.clients.ecs, ctx.clients.elbv2)
    said = output.lines
    with pytest.raises(DeploymentFailedError) as failure:
        runner.provision(ctx)
    message = failure.value.message
    assert "3 task launches failed (max_failed_tasks is 3)" in message
    assert "Essential container in task exited (web: exit code 3)" in message
    assert failure.value.exit_code == 1
    assert any("task stopped" in line for line in said)
    assert clock.time < 60, "it stopped waiting at once"


def test_a_circuit_breaker_rollback_is_a_failure_that_names_the_running_revision(
    ctx: StepContext, serving: Rollout, clock: FakeClock
) -> None:
    runner.provision(ctx)
    first = ctx.ids("task-definition")["arn"]
    ctx = replace(ctx, settings=replace(ctx.settings, image="example.com/broken:2"))
    serving.roll_back_to = first
    with pytest.raises(DeploymentFailedError) as failure:
        runner.provision(ctx)
    assert "circuit breaker rolled the service back" in failure.value.message
    assert f"now runs {first.rsplit('/', 1)[-1]}" in failure.value.message
    assert ctx.state.outputs["serving_revision"] == first


def test_redeploy_then_rollback_to_the_last_good_revision(ctx: StepContext, serving: Rollout, clock: FakeClock) -> None:
    runner.provision(ctx)
    first = ctx.ids("task-definition")["arn"]
    ctx = replace(ctx, settings=replace(ctx.settings, image="example.com/site:2"))
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


def _load_balancer_states(ctx: StepContext, states: list[str]) -> None:
    """DescribeLoadBalancers answers these states in turn (moto reports `active` at once)."""

    def rewrite(parsed: dict[str, Any], **_: Any) -> None:
        for balancer in parsed.get("LoadBalancers", []):
            code = states.pop(0) if states else "active"
            balancer["State"] = (
                {"Code": code, "Reason": "subnet has no capacity"} if code == "failed" else {"Code": code}
            )

    ctx.clients.elbv2.meta.events.register("after-call.elastic-load-balancing-v2.DescribeLoadBalancers", rewrite)


def test_the_load_balancer_wait_polls_until_active(ctx: StepContext, clock: FakeClock, output: RecordingOutput) -> None:
    provision_through(ctx, "load-balancer")
    said = output.lines
    _load_balancer_states(ctx, ["provisioning", "provisioning", "provisioning"])
    step = steps_by_name()["load-balancer"]
    step.wait(ctx, ctx.ids("load-balancer"))
    assert clock.time == 3 * ctx.poll_seconds
    assert any("load balancer to be active: provisioning" in line for line in said)


def test_a_failed_load_balancer_fails_at_once(ctx: StepContext, clock: FakeClock) -> None:
    provision_through(ctx, "load-balancer")
    _load_balancer_states(ctx, ["provisioning", "failed"])
    step = steps_by_name()["load-balancer"]
    with pytest.raises(DeployerError, match="failed: subnet has no capacity"):
        step.wait(ctx, ctx.ids("load-balancer"))
    assert clock.time == ctx.poll_seconds


def test_an_alarm_rollback_is_a_failure_that_names_the_alarm_and_its_reason(
    ctx: StepContext, serving: Rollout, calls: CallLog
) -> None:
    runner.provision(ctx)
    provision_step(ctx, AlarmStep("unhealthy"))
    first = ctx.ids("task-definition")["arn"]
    ctx = replace(ctx, settings=replace(ctx.settings, image="example.com/unhealthy:2"))
    reason = (
        "Threshold Crossed: 3 out of the last 5 datapoints [1.0 (30/11/26 20:14:00), 1.0 (30/11/26 20:13:00), "
        "1.0 (30/11/26 20:12:00)] were greater than the threshold (0.0) (minimum 3 datapoints for OK -> ALARM "
        "transition)."
    )
    serving.roll_back_to = first
    serving.alarm = ("test-site-unhealthy-targets", reason)
    with pytest.raises(DeploymentFailedError) as failure:
        runner.provision(ctx)
    message = failure.value.message
    assert f"the deployment alarm test-site-unhealthy-targets fired ({reason}) and ECS rolled" in message
    assert "circuit breaker" not in message
    assert "Why the tasks stopped" not in message
    assert f"now runs {first.rsplit('/', 1)[-1]}" in message
    assert failure.value.exit_code == 1
    assert ("cloudwatch", "DescribeAlarms") in calls.calls


def _update_requests(ctx: StepContext) -> list[dict[str, Any]]:
    """The UpdateService requests the tool sends from now on, as built (before they go out)."""
    sent: list[dict[str, Any]] = []
    ctx.clients.ecs.meta.events.register(
        "provide-client-params.ecs.UpdateService", lambda params, **_: sent.append(dict(params))
    )
    return sent


def _desired(ctx: StepContext) -> int:
    ids = ctx.ids("service")
    service = ctx.clients.ecs.describe_services(cluster=ids["cluster"], services=[ids["name"]])["services"][0]
    return service["desiredCount"]


def test_a_count_the_scaler_chose_stays_through_a_redeploy_and_a_rollback(ctx: StepContext, serving: Rollout) -> None:
    ctx = replace(ctx, settings=replace(ctx.settings, min_tasks=2, max_tasks=6))
    runner.provision(ctx)
    assert _desired(ctx) == 2
    ids = ctx.ids("service")
    ctx.clients.ecs.update_service(cluster=ids["cluster"], service=ids["name"], desiredCount=4)  # the scaler
    sent = _update_requests(ctx)

    ctx = replace(ctx, settings=replace(ctx.settings, image="example.com/site:2"))
    runner.provision(ctx)
    assert _desired(ctx) == 4
    runner.rollback(ctx)
    assert _desired(ctx) == 4

    assert [("taskDefinition" in request, "desiredCount" in request) for request in sent] == [
        (True, False),
        (True, False),
    ]


def test_without_autoscaling_a_redeploy_sets_the_fixed_count(ctx: StepContext, serving: Rollout) -> None:
    runner.provision(ctx)
    ctx = replace(ctx, settings=replace(ctx.settings, desired_count=3, image="example.com/site:2"))
    sent = _update_requests(ctx)
    runner.provision(ctx)
    assert _desired(ctx) == 3
    assert [request.get("desiredCount") for request in sent] == [3]
