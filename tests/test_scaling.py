"""Service autoscaling: the scalable target and its target-tracking policies (deployer/steps/scaling.py).

moto's Application Auto Scaling is made to answer as AWS does by tests/aas_emulation.py (installed on every
recorded client): tags, the policies a deregistration deletes, ObjectNotFoundException, one alarm pair per policy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from deployer import runner
from deployer.errors import DeployerError, ForeignResourceError
from deployer.settings import Settings, validate
from deployer.steps.base import StepContext
from deployer.steps.scaling import (
    DIMENSION,
    LINKED_ROLE,
    LINKED_ROLE_SERVICE,
    ScalableTargetStep,
    ScalingPolicyStep,
)
from tests import aas_emulation
from tests.conftest import ACCOUNT, CallLog, FakeClock, MotoServer, lost_state, planning
from tests.faults import inject_errors
from tests.rollouts import Rollout
from tests.steps_helpers import provision_through

RESOURCE = "service/test-site-cluster/test-site-web"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/{LINKED_ROLE_SERVICE}/{LINKED_ROLE}"
# RegisterScalableTarget while the service-linked role is missing or new (aws-samples/amazon-bedrock-samples#253).
NOT_ASSUMABLE = ("ValidationException", f"Unable to assume IAM role: {ROLE_ARN}")
DENIED = (
    "User: arn:aws:iam::123456789012:user/dev is not authorized to perform: iam:CreateServiceLinkedRole on resource: "
    f"{ROLE_ARN} because no identity-based policy allows the iam:CreateServiceLinkedRole action"
)
TARGET, CPU, MEMORY = ScalableTargetStep(), ScalingPolicyStep("cpu"), ScalingPolicyStep("memory")


def scaled(ctx: StepContext, **settings: Any) -> StepContext:
    """The same run with other settings (by default 1..4 tasks, which turns autoscaling on)."""
    changed = replace(ctx.settings, **{"min_tasks": 1, "max_tasks": 4, **settings})
    validate(changed)
    return replace(ctx, settings=changed)


def target(ctx: StepContext) -> dict[str, Any] | None:
    found = ctx.clients.autoscaling.describe_scalable_targets(
        ServiceNamespace="ecs", ResourceIds=[RESOURCE], ScalableDimension=DIMENSION
    )["ScalableTargets"]
    return dict(found[0]) if found else None


def policies(ctx: StepContext) -> dict[str, dict[str, Any]]:
    found = ctx.clients.autoscaling.describe_scaling_policies(ServiceNamespace="ecs", ResourceId=RESOURCE)
    return {p["PolicyName"]: dict(p) for p in found["ScalingPolicies"]}


def alarms(ctx: StepContext) -> list[str]:
    answer = ctx.clients.cloudwatch.describe_alarms(AlarmNamePrefix="TargetTracking-")
    return sorted(alarm["AlarmName"] for alarm in answer["MetricAlarms"])


def desired(ctx: StepContext) -> int:
    (service,) = ctx.clients.ecs.describe_services(cluster="test-site-cluster", services=["test-site-web"])["services"]
    return int(service["desiredCount"])


@pytest.fixture
def scaling(ctx: StepContext, serving: Rollout) -> StepContext:
    """A served stack with autoscaling 1..4 on CPU: the service, its scalable target and the CPU policy."""
    provision_through(ctx, "service")
    on = scaled(ctx)
    for step in (TARGET, CPU):
        assert runner.provision_step(on, step)[0] == "created"
    return on


# ---------------------------------------------------------------- created


def test_the_service_is_registered_tagged_and_tracks_cpu(scaling: StepContext) -> None:
    ctx = scaling
    live = target(ctx)
    assert live is not None and (live["MinCapacity"], live["MaxCapacity"]) == (1, 4)
    assert ctx.ids("scalable-target") == {"resource_id": RESOURCE, "arn": live["ScalableTargetARN"]}
    found_tags = ctx.clients.autoscaling.list_tags_for_resource(ResourceARN=live["ScalableTargetARN"])["Tags"]
    assert found_tags["deployer:stack"] == "test-site" and found_tags["deployer:step"] == "scalable-target"
    (policy,) = policies(ctx).values()
    assert policy["PolicyName"] == "test-site-cpu" and policy["PolicyType"] == "TargetTrackingScaling"
    config = policy["TargetTrackingScalingPolicyConfiguration"]
    assert config["PredefinedMetricSpecification"] == {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"}
    assert (config["TargetValue"], config["ScaleOutCooldown"], config["ScaleInCooldown"]) == (60.0, 60, 300)
    assert ctx.ids("cpu-scaling") == {"name": "test-site-cpu", "arn": policy["PolicyARN"], "resource_id": RESOURCE}
    assert len(alarms(ctx)) == 2  # Application Auto Scaling's own high/low pair


def test_a_rerun_makes_no_changing_call(scaling: StepContext, calls: CallLog) -> None:
    calls.clear()
    for step in (TARGET, CPU):
        assert runner.provision_step(scaling, step)[0] == "unchanged"
    assert calls.changing() == []


def test_the_steps_are_wanted_only_with_autoscaling(ctx: StepContext) -> None:
    fixed = ctx.settings  # min = max = desired_count
    assert not any(step.wanted(fixed) for step in (TARGET, CPU, MEMORY))
    assert TARGET.wanted(scaled(ctx).settings) and CPU.wanted(scaled(ctx).settings)
    assert not MEMORY.wanted(scaled(ctx).settings) and MEMORY.wanted(scaled(ctx, scale_memory_percent=70).settings)


# ---------------------------------------------------------------- converged


def test_a_new_range_is_registered_and_the_count_moves_into_it(scaling: StepContext, calls: CallLog) -> None:
    wider = scaled(scaling, min_tasks=2, max_tasks=6)
    calls.clear()
    outcome, _, changes = runner.provision_step(wider, TARGET)
    assert outcome == "updated" and changes[0].startswith("tasks 1..4 -> 2..6")
    assert calls.changing() == [("application-autoscaling", "RegisterScalableTarget")]
    live = target(wider)
    assert live is not None and (live["MinCapacity"], live["MaxCapacity"]) == (2, 6)
    assert desired(wider) == 2  # AWS moves a count below the new minimum up at once (emulated)
    found_tags = wider.clients.autoscaling.list_tags_for_resource(ResourceARN=live["ScalableTargetARN"])["Tags"]
    assert found_tags["deployer:stack"] == "test-site"  # kept by the update


def test_a_new_target_value_replaces_the_policy_and_its_alarms(scaling: StepContext, calls: CallLog) -> None:
    before = alarms(scaling)
    hotter = scaled(scaling, scale_cpu_percent=75)
    calls.clear()
    outcome, ids, changes = runner.provision_step(hotter, CPU)
    assert outcome == "updated" and changes == ["target tracking TargetValue changed"]
    assert calls.changing() == [("application-autoscaling", "PutScalingPolicy")]
    policy = policies(hotter)["test-site-cpu"]
    assert policy["TargetTrackingScalingPolicyConfiguration"]["TargetValue"] == 75.0
    assert ids["arn"] == policy["PolicyARN"] == hotter.ids("cpu-scaling")["arn"]
    after = alarms(hotter)
    assert len(after) == 2 and set(after).isdisjoint(before)  # one pair per policy, as AWS keeps it


def test_a_policy_changed_by_hand_is_put_back(scaling: StepContext) -> None:
    scaling.clients.autoscaling.put_scaling_policy(
        PolicyName="test-site-cpu",
        ServiceNamespace="ecs",
        ResourceId=RESOURCE,
        ScalableDimension=DIMENSION,
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": 60.0,
            "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageMemoryUtilization"},
            "ScaleOutCooldown": 0,
            "ScaleInCooldown": 300,
            "DisableScaleIn": True,
        },
    )
    outcome, _, changes = runner.provision_step(scaling, CPU)
    assert outcome == "updated" and changes == ["target tracking metric, ScaleOutCooldown, DisableScaleIn changed"]
    config = policies(scaling)["test-site-cpu"]["TargetTrackingScalingPolicyConfiguration"]
    assert config["PredefinedMetricSpecification"]["PredefinedMetricType"] == "ECSServiceAverageCPUUtilization"
    assert (config["ScaleOutCooldown"], config["DisableScaleIn"]) == (60, False)


def test_the_memory_policy_is_added_and_removed_by_the_runner(
    ctx: StepContext, serving: Rollout, calls: CallLog
) -> None:
    with_memory = scaled(ctx, scale_memory_percent=70)
    report = runner.provision(with_memory)
    created = [line.step for line in report.steps if line.step.endswith(("scaling", "target"))]
    assert created == ["scalable-target", "cpu-scaling", "memory-scaling"]
    config = policies(ctx)["test-site-memory"]["TargetTrackingScalingPolicyConfiguration"]
    assert config["PredefinedMetricSpecification"]["PredefinedMetricType"] == "ECSServiceAverageMemoryUtilization"
    assert config["TargetValue"] == 70.0 and len(alarms(ctx)) == 4

    report = runner.provision(scaled(ctx))  # scale_memory_percent unset again
    assert [line.step for line in report.steps if line.outcome == "removed"] == ["memory-scaling"]
    assert set(policies(ctx)) == {"test-site-cpu"} and len(alarms(ctx)) == 2
    assert ctx.state.get("memory-scaling") is None

    calls.clear()
    report = runner.provision(scaled(ctx))
    assert {line.outcome for line in report.steps if line.step.endswith(("scaling", "target"))} == {"unchanged"}
    assert [call for call in calls.changing() if call[0] == "application-autoscaling"] == []


def test_going_back_to_a_fixed_count_removes_the_scaling(ctx: StepContext, serving: Rollout, calls: CallLog) -> None:
    runner.provision(scaled(ctx, scale_memory_percent=70))
    ctx.clients.ecs.update_service(
        cluster=ctx.ids("cluster")["name"], service=ctx.ids("service")["name"], desiredCount=3
    )
    calls.clear()
    report = runner.provision(ctx)  # min = max: no autoscaling
    removed = [line.step for line in report.steps if line.outcome == "removed"]
    assert removed == ["memory-scaling", "cpu-scaling", "scalable-target"]  # policies first, as teardown goes
    assert target(ctx) is None and policies(ctx) == {} and alarms(ctx) == []
    assert all(ctx.state.get(step) is None for step in removed)
    # The scaler is gone before the service is set to the fixed count: nothing can change the count after it.
    changing = [operation for _service, operation in calls.changing()]
    assert changing.index("DeregisterScalableTarget") < changing.index("UpdateService")
    assert [line.step for line in report.steps][:3] == removed
    service = ctx.clients.ecs.describe_services(
        cluster=ctx.ids("cluster")["name"], services=[ctx.ids("service")["name"]]
    )
    assert service["services"][0]["desiredCount"] == 1


# ---------------------------------------------------------------- dry run


def test_the_dry_run_plans_the_scaling_and_changes_nothing(ctx: StepContext, serving: Rollout, calls: CallLog) -> None:
    runner.provision(ctx)
    calls.clear()
    report = runner.plan(planning(scaled(ctx, scale_memory_percent=70)))
    planned = {line.step: line.outcome for line in report.steps if line.step.endswith(("scaling", "target"))}
    assert planned == {"scalable-target": "create", "cpu-scaling": "create", "memory-scaling": "create"}
    assert calls.changing() == [] and target(ctx) is None


def test_the_dry_run_describes_a_new_range_and_target_without_changing_them(
    scaling: StepContext, calls: CallLog
) -> None:
    plan = planning(scaled(scaling, min_tasks=2, max_tasks=8, scale_cpu_percent=40))
    calls.clear()
    assert runner.provision_step(plan, TARGET)[2] == [
        "tasks 1..4 -> 2..8 (a count outside the range moves into it at once)"
    ]
    assert runner.provision_step(plan, CPU)[2] == ["target tracking TargetValue changed"]
    assert calls.changing() == []
    live = target(scaling)
    assert live is not None and (live["MinCapacity"], live["MaxCapacity"]) == (1, 4)


# ---------------------------------------------------------------- delete


def test_deregistering_the_target_leaves_no_policy_or_alarm(scaling: StepContext) -> None:
    ctx = scaled(scaling, scale_memory_percent=70)
    runner.provision_step(ctx, MEMORY)
    assert len(alarms(ctx)) == 4
    TARGET.delete(ctx, ctx.ids("scalable-target"))  # AWS deletes the policies with the target (emulated)
    assert target(ctx) is None and policies(ctx) == {} and alarms(ctx) == []
    for step in (MEMORY, CPU, TARGET):  # already gone counts as deleted (ObjectNotFoundException)
        step.delete(ctx, ctx.ids(step.name))


def test_deleting_each_policy_deletes_its_alarms(scaling: StepContext) -> None:
    CPU.delete(scaling, scaling.ids("cpu-scaling"))
    assert policies(scaling) == {} and alarms(scaling) == []
    TARGET.delete(scaling, scaling.ids("scalable-target"))
    assert target(scaling) is None


def test_teardown_removes_the_scaling_before_the_service(ctx: StepContext, serving: Rollout) -> None:
    runner.provision(scaled(ctx))
    order = [line.step for line in runner.teardown(ctx).steps]
    assert order.index("cpu-scaling") < order.index("scalable-target") < order.index("service")
    assert target(ctx) is None and policies(ctx) == {} and alarms(ctx) == []


# ---------------------------------------------------------------- lost state


def test_a_lost_state_adopts_the_tagged_target_and_its_policies(ctx: StepContext, serving: Rollout) -> None:
    on = scaled(ctx, scale_memory_percent=70)
    runner.provision(on)
    recorded = {step: on.ids(step) for step in ("scalable-target", "cpu-scaling", "memory-scaling")}
    lost = lost_state(on)
    assert runner.discover(lost) == []
    assert {step: lost.state.get(step) for step in recorded} == recorded
    outcomes = {line.step: line.outcome for line in runner.provision(lost).steps}
    assert [outcomes[step] for step in recorded] == ["unchanged"] * 3


def foreign_target(ctx: StepContext, stack_tag: str | None) -> str:
    """Someone registers our service with Application Auto Scaling by hand (tagged as another stack's, or not)."""
    scaling = ctx.clients.autoscaling
    if stack_tag is None:
        return scaling.register_scalable_target(
            ServiceNamespace="ecs", ResourceId=RESOURCE, ScalableDimension=DIMENSION, MinCapacity=1, MaxCapacity=10
        )["ScalableTargetARN"]
    return scaling.register_scalable_target(
        ServiceNamespace="ecs",
        ResourceId=RESOURCE,
        ScalableDimension=DIMENSION,
        MinCapacity=1,
        MaxCapacity=10,
        Tags={"deployer:stack": stack_tag},
    )["ScalableTargetARN"]


@pytest.mark.parametrize("stack_tag", [None, "other-site"])
def test_a_target_on_our_service_that_is_not_ours_is_refused(
    ctx: StepContext, serving: Rollout, calls: CallLog, stack_tag: str | None
) -> None:
    provision_through(ctx, "service")
    foreign_target(ctx, stack_tag)
    calls.clear()
    with pytest.raises(ForeignResourceError) as refused:
        runner.provision_step(scaled(ctx), TARGET)
    assert refused.value.exit_code == 2 and calls.changing() == []
    message = refused.value.message
    assert "already registered with Application Auto Scaling" in message and "deregister-scalable-target" in message
    assert ("without the deployer:stack tag" if stack_tag is None else "tagged deployer:stack=other-site") in message
    live = target(ctx)
    assert live is not None and live["MaxCapacity"] == 10  # untouched


def test_a_lost_state_leaves_an_untagged_target_alone_and_provision_refuses_it(
    ctx: StepContext, serving: Rollout
) -> None:
    provision_through(ctx, "service")
    foreign_target(ctx, None)
    lost = lost_state(scaled(ctx))
    (skipped,) = runner.discover(lost)
    assert skipped.step == "scalable-target" and lost.state.get("scalable-target") is None
    with pytest.raises(DeployerError) as refused:
        runner.provision(lost)
    assert refused.value.exit_code == 2 and "not adopted" in refused.value.message


def test_a_foreign_target_is_refused_before_anything_changes(
    ctx: StepContext, serving: Rollout, calls: CallLog
) -> None:
    runner.provision(ctx)
    foreign_target(ctx, None)
    calls.clear()
    with pytest.raises(ForeignResourceError):
        runner.provision(scaled(ctx, log_retention_days=30))  # the log group's retention would change first
    assert calls.changing() == []


def test_a_policy_is_looked_for_only_on_our_target(ctx: StepContext, serving: Rollout) -> None:
    provision_through(ctx, "service")
    assert CPU.find_unrecorded(scaled(ctx)) is None  # no target recorded: no policy of ours can exist


# ---------------------------------------------------------------- the service-linked role


@pytest.fixture
def served(ctx: StepContext, serving: Rollout) -> StepContext:
    provision_through(ctx, "service")
    return scaled(ctx)


def test_the_first_registration_waits_for_the_service_linked_role(
    served: StepContext, calls: CallLog, clock: FakeClock
) -> None:
    refused = inject_errors(served.clients.autoscaling, "RegisterScalableTarget", *NOT_ASSUMABLE, times=3)
    calls.clear()
    assert runner.provision_step(served, TARGET)[0] == "created"
    assert refused.served == 3 and len(clock.slept) == 2  # the first refusal checks the role, two retries wait
    assert calls.calls.count(("iam", "GetRole")) == 1
    assert calls.calls.count(("iam", "CreateServiceLinkedRole")) == 1  # made on the first refusal, once
    assert target(served) is not None


def test_a_role_that_exists_already_is_only_waited_for(served: StepContext, calls: CallLog) -> None:
    inject_errors(served.clients.autoscaling, "RegisterScalableTarget", *NOT_ASSUMABLE, times=2)
    inject_errors(
        served.clients.iam,
        "CreateServiceLinkedRole",
        "InvalidInput",
        f"Service role name {LINKED_ROLE} has been taken in this account, please try a different suffix.",
    )
    assert runner.provision_step(served, TARGET)[0] == "created"


def test_a_role_these_credentials_may_not_create_fails_at_once(served: StepContext, clock: FakeClock) -> None:
    refused = inject_errors(served.clients.autoscaling, "RegisterScalableTarget", *NOT_ASSUMABLE, times=100)
    inject_errors(served.clients.iam, "CreateServiceLinkedRole", "AccessDenied", DENIED)
    with pytest.raises(DeployerError) as failed:
        runner.provision_step(served, TARGET)
    assert refused.served == 1 and clock.slept == []  # no waiting out the budget
    message = failed.value.message
    assert failed.value.exit_code == 2
    assert "iam:CreateServiceLinkedRole" in message and LINKED_ROLE_SERVICE in message and LINKED_ROLE in message
    assert "aws iam create-service-linked-role --aws-service-name ecs.application-autoscaling.amazonaws.com" in message
    assert target(served) is None


def test_a_registration_refused_for_the_role_permission_is_explained(served: StepContext, calls: CallLog) -> None:
    inject_errors(served.clients.autoscaling, "RegisterScalableTarget", "AccessDeniedException", DENIED)
    calls.clear()
    with pytest.raises(DeployerError) as failed:
        runner.provision_step(served, TARGET)
    assert failed.value.exit_code == 2 and "iam:CreateServiceLinkedRole" in failed.value.message
    assert "Grant iam:CreateServiceLinkedRole" in failed.value.message
    assert not [call for call in calls.calls if call[0] == "iam"]


def test_a_service_made_a_moment_ago_is_waited_for_without_touching_iam(served: StepContext, calls: CallLog) -> None:
    missing = f"ECS service doesn't exist: {RESOURCE}"
    refused = inject_errors(served.clients.autoscaling, "RegisterScalableTarget", "ValidationException", missing, 2)
    calls.clear()
    assert runner.provision_step(served, TARGET)[0] == "created" and refused.served == 2
    assert not [call for call in calls.calls if call[0] == "iam"]


def test_a_bad_registration_fails_at_once(served: StepContext, clock: FakeClock) -> None:
    inject_errors(
        served.clients.autoscaling, "RegisterScalableTarget", "ValidationException", "Maximum capacity cannot be less"
    )
    with pytest.raises(ClientError):
        runner.provision_step(served, TARGET)
    assert clock.slept == []


# ---------------------------------------------------------------- transient answers to the policies


def test_a_policy_right_after_its_new_target_waits_for_it(served: StepContext, clock: FakeClock) -> None:
    runner.provision_step(served, TARGET)
    not_yet = inject_errors(served.clients.autoscaling, "PutScalingPolicy", "ObjectNotFoundException", "No target", 2)
    busy = inject_errors(served.clients.autoscaling, "PutScalingPolicy", "ConcurrentUpdateException", "pending", 1)
    assert runner.provision_step(served, CPU)[0] == "created"
    assert (not_yet.served, busy.served, len(clock.slept)) == (2, 1, 3)


def test_a_missing_target_is_not_waited_for_when_it_is_not_new(scaling: StepContext, clock: FakeClock) -> None:
    later = replace(scaling, _created={})  # the next run: the target was made by an earlier one
    CPU.delete(later, later.ids("cpu-scaling"))
    scaling.clients.autoscaling.deregister_scalable_target(
        ServiceNamespace="ecs", ResourceId=RESOURCE, ScalableDimension=DIMENSION
    )
    with pytest.raises(ClientError) as failed:
        CPU.create(later)
    assert failed.value.response["Error"]["Code"] == "ObjectNotFoundException" and clock.slept == []


def test_alarms_out_of_reach_for_a_moment_are_waited_out(scaling: StepContext, clock: FakeClock) -> None:
    hotter = scaled(scaling, scale_cpu_percent=80)
    inject_errors(
        hotter.clients.autoscaling,
        "PutScalingPolicy",
        "FailedResourceAccessException",
        "User: arn:aws:sts::123456789012:assumed-role/AWSServiceRoleForApplicationAutoScaling_ECSService/AutoScaling "
        "is not authorized to perform: cloudwatch:DescribeAlarms",
        times=2,
    )
    assert runner.provision_step(hotter, CPU)[0] == "updated" and len(clock.slept) == 2


# ---------------------------------------------------------------- the emulation itself


@pytest.fixture
def fresh_target(served: StepContext) -> Iterator[StepContext]:
    runner.provision_step(served, TARGET)
    yield served


def test_scaling_activities_are_what_a_test_sets(fresh_target: StepContext) -> None:
    scaling_client = fresh_target.clients.autoscaling
    assert scaling_client.describe_scaling_activities(ServiceNamespace="ecs")["ScalingActivities"] == []
    activity = {
        "ActivityId": "a1",
        "ServiceNamespace": "ecs",
        "ResourceId": RESOURCE,
        "ScalableDimension": DIMENSION,
        "Description": "Setting desired count to 3.",
        "Cause": "monitor alarm TargetTracking-… in state ALARM triggered policy test-site-cpu",
        "StartTime": "2026-11-30T20:00:00Z",
        "StatusCode": "Successful",
    }
    aas_emulation.of(scaling_client).activities.append(activity)
    (answered,) = scaling_client.describe_scaling_activities(ServiceNamespace="ecs", ResourceId=RESOURCE)[
        "ScalingActivities"
    ]
    assert answered["Description"] == "Setting desired count to 3."


def test_tags_of_a_missing_target_are_refused(fresh_target: StepContext) -> None:
    missing: Callable[[], object] = lambda: fresh_target.clients.autoscaling.list_tags_for_resource(  # noqa: E731
        ResourceARN=f"arn:aws:application-autoscaling:us-east-1:{ACCOUNT}:scalable-target/0123abcd"
    )
    with pytest.raises(ClientError) as refused:
        missing()
    assert refused.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_the_emulation_works_against_a_moto_server_across_processes(server: MotoServer, tmp_path: Path) -> None:
    """As a script subprocess would install it: on a client of the server, its tags kept in a file."""

    def client(service: str) -> Any:
        session: Any = boto3.Session(region_name="us-east-1")
        return session.client(service, endpoint_url=server.url)

    ecs, tags_file = client("ecs"), tmp_path / "aas-tags.json"
    ecs.create_cluster(clusterName="c")
    ecs.register_task_definition(family="f", containerDefinitions=[{"name": "w", "image": "x", "memory": 128}])
    ecs.create_service(cluster="c", serviceName="s", taskDefinition="f", desiredCount=1)
    first = client("application-autoscaling")
    aas_emulation.install(first, tags_file)
    arn = first.register_scalable_target(
        ServiceNamespace="ecs",
        ResourceId="service/c/s",
        ScalableDimension=DIMENSION,
        MinCapacity=2,
        MaxCapacity=3,
        Tags={"deployer:stack": "s"},
    )["ScalableTargetARN"]
    assert ecs.describe_services(cluster="c", services=["s"])["services"][0]["desiredCount"] == 2
    first.put_scaling_policy(
        PolicyName="p",
        ServiceNamespace="ecs",
        ResourceId="service/c/s",
        ScalableDimension=DIMENSION,
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration=CPU.configuration(Settings()),
    )
    second = client("application-autoscaling")  # another process: a new client, a new emulation, the same file
    aas_emulation.install(second, tags_file)
    assert second.list_tags_for_resource(ResourceARN=arn)["Tags"] == {"deployer:stack": "s"}
    second.deregister_scalable_target(ServiceNamespace="ecs", ResourceId="service/c/s", ScalableDimension=DIMENSION)
    assert second.describe_scaling_policies(ServiceNamespace="ecs")["ScalingPolicies"] == []
    assert client("cloudwatch").describe_alarms()["MetricAlarms"] == []
