"""What the user sees of autoscaling: status.py's scaling and alarm sections, and the plan's cost range.

status reads Application Auto Scaling and CloudWatch directly (deployer/observe.py): the scalable target,
its policies and its last activities, and the deployment alarms the state records. The scalable target and
its policy are made here with the calls deployer/steps/scaling.py makes (the step itself is not imported).
moto does not implement DescribeScalingActivities: `answer_activities` has the shared emulation answer it as AWS
does (Application Auto Scaling API reference, DescribeScalingActivities, "Sample Response":
https://docs.aws.amazon.com/autoscaling/application/APIReference/API_DescribeScalingActivities.html).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.config import Config

from deployer import cli, cost, observe, runner, views
from deployer import clients as clients_module
from deployer.clients import AwsClients, build_clients
from deployer.probe import UrlAnswer
from deployer.settings import Names, Settings
from deployer.steps.base import StepContext
from tests import aas_emulation
from tests.conftest import REGION, CallLog
from tests.faults import inject_errors

if TYPE_CHECKING:
    from mypy_boto3_application_autoscaling.literals import MetricTypeType
    from mypy_boto3_cloudwatch.literals import StateValueType

SERVICE = "service/test-site-cluster/test-site-web"
NAMES = Names("test-site", REGION)
DENIED = "User: arn:aws:iam::123456789012:user/deployer is not authorized to perform this action"
# Two activities as AWS words them for an ECS service scaled by a target-tracking policy (API reference above).
ACTIVITIES = [
    {
        "ActivityId": "4d759079-a31f-4d0c-8468-504c56e2eecf",
        "ServiceNamespace": "ecs",
        "ResourceId": SERVICE,
        "ScalableDimension": "ecs:service:DesiredCount",
        "Description": "Setting desired count to 3.",
        "Cause": "monitor alarm TargetTracking-service/test-site-cluster/test-site-web-AlarmHigh-d4f0770c in state "
        "ALARM triggered policy test-site-cpu",
        "StartTime": datetime(2026, 11, 30, 19, 50, 1, tzinfo=UTC),
        "EndTime": datetime(2026, 11, 30, 19, 51, 20, tzinfo=UTC),
        "StatusCode": "Successful",
        "StatusMessage": "Successfully set desired count to 3. Change successfully fulfilled by ecs.",
    },
    {
        "ActivityId": "90aff0eb-dd6a-443c-889b-b809e78061c1",
        "ServiceNamespace": "ecs",
        "ResourceId": SERVICE,
        "ScalableDimension": "ecs:service:DesiredCount",
        "Description": "Setting desired count to 4.",
        "Cause": "monitor alarm TargetTracking-service/test-site-cluster/test-site-web-AlarmHigh-d4f0770c in state "
        "ALARM triggered policy test-site-cpu",
        "StartTime": datetime(2026, 11, 30, 20, 5, 0, tzinfo=UTC),
        "StatusCode": "Failed",
        "StatusMessage": "Failed to set desired count to 4. Reason: the service is being deleted",
    },
]


def answer_activities(client: Any, activities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """DescribeScalingActivities on `client` answers `activities` (the shared emulation, tests/aas_emulation.py,
    filters them as AWS does); returns the list of the requests' parameters."""
    requests: list[dict[str, Any]] = []

    def keep(params: dict[str, Any], **_: Any) -> None:
        requests.append(dict(params))

    aas_emulation.of(client).activities = activities
    client.meta.events.register("before-parameter-build.application-auto-scaling.DescribeScalingActivities", keep)
    return requests


@pytest.fixture
def provisioned(ctx: StepContext, monkeypatch: pytest.MonkeyPatch, calls: CallLog) -> StepContext:
    """A whole stack in moto; its service reports 1 of 1 task running; scaling activities answered (none yet)."""
    monkeypatch.setenv("MOTO_ECS_SERVICE_RUNNING", "1")
    runner.provision(ctx, wait=False)
    calls.clear()
    return ctx


def scale(clients: AwsClients, low: int = 1, high: int = 4, memory: bool = False) -> None:
    """The scalable target and target-tracking policies deployer/steps/scaling.py makes."""
    clients.autoscaling.register_scalable_target(
        ServiceNamespace="ecs",
        ResourceId=SERVICE,
        ScalableDimension="ecs:service:DesiredCount",
        MinCapacity=low,
        MaxCapacity=high,
    )
    metrics: dict[str, tuple[MetricTypeType, float]] = {"cpu": ("ECSServiceAverageCPUUtilization", 60.0)}
    if memory:
        metrics["memory"] = ("ECSServiceAverageMemoryUtilization", 75.0)
    for kind, (metric, target) in metrics.items():
        clients.autoscaling.put_scaling_policy(
            PolicyName=f"test-site-{kind}",
            ServiceNamespace="ecs",
            ResourceId=SERVICE,
            ScalableDimension="ecs:service:DesiredCount",
            PolicyType="TargetTrackingScaling",
            TargetTrackingScalingPolicyConfiguration={
                "TargetValue": target,
                "PredefinedMetricSpecification": {"PredefinedMetricType": metric},
                "ScaleOutCooldown": 60,
                "ScaleInCooldown": 300,
            },
        )


def add_alarms(ctx: StepContext, *, states: dict[str, StateValueType]) -> None:
    """The deployment alarms in CloudWatch, in the given states (moto starts an alarm in OK; AWS in
    INSUFFICIENT_DATA, which no test here relies on), recorded as the alarm steps record them."""
    for step, name in (("unhealthy-alarm", NAMES.unhealthy_alarm), ("shortfall-alarm", NAMES.shortfall_alarm)):
        ctx.clients.cloudwatch.put_metric_alarm(
            AlarmName=name,
            Namespace="AWS/NetworkELB",
            MetricName="UnHealthyHostCount",
            Statistic="Maximum",
            Period=60,
            EvaluationPeriods=2,
            Threshold=0,
            ComparisonOperator="GreaterThanThreshold",
        )
        if name in states:
            ctx.clients.cloudwatch.set_alarm_state(
                AlarmName=name, StateValue=states[name], StateReason=f"Threshold Crossed: set to {states[name]}"
            )
        arn = ctx.clients.cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["AlarmArn"]
        ctx.state.record(step, {"name": name, "arn": arn})
    ctx.ledger.save()


def status(ctx: StepContext) -> observe.StatusReport:
    return observe.collect_status(ctx.clients, ctx.state, lambda url: UrlAnswer(url, status=200, seconds=0.01))


# ---------------------------------------------------------------- status: autoscaling


def test_status_shows_the_range_the_policies_and_the_last_activities(provisioned: StepContext) -> None:
    scale(provisioned.clients, memory=True)
    requests = answer_activities(provisioned.clients.autoscaling, ACTIVITIES)
    report = status(provisioned)
    scaling = report.scaling
    assert scaling is not None and scaling.error is None
    assert (scaling.enabled, scaling.min_tasks, scaling.max_tasks, scaling.resource_id) == (True, 1, 4, SERVICE)
    assert [
        (p.name, p.metric, p.target_value, p.scale_out_cooldown, p.scale_in_cooldown) for p in scaling.policies
    ] == [
        ("test-site-cpu", "ECSServiceAverageCPUUtilization", 60.0, 60, 300),
        ("test-site-memory", "ECSServiceAverageMemoryUtilization", 75.0, 60, 300),
    ]
    assert [(a.start, a.status) for a in scaling.activities] == [  # newest first
        ("2026-11-30T20:05:00Z", "Failed"),
        ("2026-11-30T19:50:01Z", "Successful"),
    ]
    assert requests == [
        {
            "ServiceNamespace": "ecs",
            "ResourceId": SERVICE,
            "ScalableDimension": "ecs:service:DesiredCount",
            "MaxResults": observe.ACTIVITIES_SHOWN,
        }
    ]

    text = "\n".join(views.render_status(report))
    assert "Autoscaling: 1..4 tasks, now 1 desired / 1 running\n" in text
    assert (
        "  policy           test-site-cpu: ECSServiceAverageCPUUtilization at 60, scale-out cooldown 60 s, "
        "scale-in cooldown 300 s\n"
    ) in text
    assert "  activity         2026-11-30T20:05:00Z Failed: Setting desired count to 4.\n" in text
    assert "Failed to set desired count to 4. Reason: the service is being deleted" in text  # why it failed
    assert "Successfully set desired count to 3" not in text  # a success needs no message
    assert "triggered policy test-site-cpu" in text  # the cause


def test_status_without_a_scalable_target_says_autoscaling_is_off(provisioned: StepContext, calls: CallLog) -> None:
    report = status(provisioned)
    assert report.scaling == observe.ScalingStatus(resource_id=SERVICE)
    assert "Autoscaling: off (no scalable target: the service keeps its desired count)" in views.render_status(report)
    operations = [operation for service, operation in calls.calls if service == "application-autoscaling"]
    assert operations == ["DescribeScalableTargets"]  # no policies or activities to read without a target
    # The deployment alarms are there without autoscaling: the stack makes them for every rollout.
    assert [alarm.name for alarm in report.alarms] == [NAMES.unhealthy_alarm, NAMES.shortfall_alarm]
    assert report.alarms_error is None


def test_status_with_no_activity_yet(provisioned: StepContext) -> None:
    scale(provisioned.clients, low=1, high=6)
    answer_activities(provisioned.clients.autoscaling, [])
    lines = views.render_status(status(provisioned))
    assert "Autoscaling: 1..6 tasks, now 1 desired / 1 running" in lines
    assert "  activities       none in the last six weeks" in lines


def test_status_names_suspended_scaling(provisioned: StepContext) -> None:
    scale(provisioned.clients)
    provisioned.clients.autoscaling.register_scalable_target(  # by hand: scale-in suspended
        ServiceNamespace="ecs",
        ResourceId=SERVICE,
        ScalableDimension="ecs:service:DesiredCount",
        SuspendedState={"DynamicScalingInSuspended": True},
    )
    answer_activities(provisioned.clients.autoscaling, [])
    report = status(provisioned)
    assert report.scaling is not None and report.scaling.suspended == ["DynamicScalingInSuspended"]
    assert "Autoscaling: 1..4 tasks, now 1 desired / 1 running; suspended: DynamicScalingInSuspended" in (
        views.render_status(report)
    )


@pytest.mark.parametrize(
    ("operation", "shown"),
    [
        ("DescribeScalableTargets", f"Autoscaling: unknown (AccessDeniedException: {DENIED})"),
        ("DescribeScalingPolicies", f"  policies         unknown (AccessDeniedException: {DENIED})"),
        ("DescribeScalingActivities", f"  activities       unknown (AccessDeniedException: {DENIED})"),
    ],
)
def test_a_refused_scaling_read_is_unknown_and_the_rest_is_shown(
    provisioned: StepContext, operation: str, shown: str
) -> None:
    """A policy without one of the Describe actions: that part says so, the report goes on."""
    scale(provisioned.clients)
    answer_activities(provisioned.clients.autoscaling, ACTIVITIES)
    inject_errors(provisioned.clients.autoscaling, operation, "AccessDeniedException", DENIED)  # answers first
    report = status(provisioned)
    lines = views.render_status(report)
    assert shown in lines
    assert report.service is not None and report.service.running == 1  # the rest is still read
    assert report.scaling is not None
    if operation != "DescribeScalableTargets":
        assert "Autoscaling: 1..4 tasks, now 1 desired / 1 running" in lines
    if operation == "DescribeScalingPolicies":
        assert [a.status for a in report.scaling.activities] == ["Failed", "Successful"]
    if operation == "DescribeScalingActivities":
        assert [p.name for p in report.scaling.policies] == ["test-site-cpu"]


# ---------------------------------------------------------------- status: deployment alarms


def test_status_shows_the_deployment_alarms_states(provisioned: StepContext) -> None:
    add_alarms(provisioned, states={NAMES.unhealthy_alarm: "ALARM", NAMES.shortfall_alarm: "OK"})
    report = status(provisioned)
    assert [(alarm.name, alarm.state, alarm.error) for alarm in report.alarms] == [
        (NAMES.unhealthy_alarm, "ALARM", None),
        (NAMES.shortfall_alarm, "OK", None),
    ]
    assert all(re_utc(alarm.since) for alarm in report.alarms)
    lines = views.render_status(report)
    start = lines.index("Deployment alarms:")
    unhealthy, shortfall = lines[start + 1], lines[start + 2]
    assert unhealthy.startswith(f"  {NAMES.unhealthy_alarm}  ALARM since ")
    assert unhealthy.endswith(": Threshold Crossed: set to ALARM")
    assert shortfall.startswith(f"  {NAMES.shortfall_alarm:<{len(NAMES.unhealthy_alarm)}}  OK since ")
    assert "Threshold" not in shortfall  # an OK alarm's reason is noise


def re_utc(text: str) -> bool:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").year > 2000


def test_a_deployment_alarm_deleted_by_hand_is_not_found(provisioned: StepContext) -> None:
    add_alarms(provisioned, states={NAMES.unhealthy_alarm: "INSUFFICIENT_DATA"})
    provisioned.clients.cloudwatch.delete_alarms(AlarmNames=[NAMES.shortfall_alarm])
    report = status(provisioned)
    assert [(alarm.name, alarm.state, alarm.error) for alarm in report.alarms] == [
        (NAMES.unhealthy_alarm, "INSUFFICIENT_DATA", None),
        (NAMES.shortfall_alarm, "", "not found"),
    ]
    width = len(NAMES.unhealthy_alarm)
    assert f"  {NAMES.shortfall_alarm:<{width}}  not found" in views.render_status(report)


def test_a_refused_alarm_read_is_unknown(provisioned: StepContext) -> None:
    add_alarms(provisioned, states={})
    inject_errors(provisioned.clients.cloudwatch, "DescribeAlarms", "AccessDenied", DENIED)
    report = status(provisioned)
    assert (report.alarms, report.alarms_error) == ([], f"AccessDenied: {DENIED}")
    assert f"Deployment alarms: unknown (AccessDenied: {DENIED})" in views.render_status(report)


# ---------------------------------------------------------------- status.py, JSON


@pytest.fixture
def scaling_commands(monkeypatch: pytest.MonkeyPatch, calls: CallLog) -> None:
    """The clients status_main builds record their calls, and answer DescribeScalingActivities."""

    def build(session: boto3.Session, config: Config | None = None) -> AwsClients:
        clients = build_clients(session, config)
        for client in clients.every():
            client.meta.events.register("before-call", calls.record)
        aas_emulation.install(clients.autoscaling)
        answer_activities(clients.autoscaling, ACTIVITIES)
        return clients

    monkeypatch.setattr(clients_module, "build_clients", build)


def test_status_json_adds_scaling_and_alarms_and_keeps_every_key(
    provisioned: StepContext,
    state_path: Path,
    scaling_commands: None,
    calls: CallLog,
    capsys: pytest.CaptureFixture[str],
) -> None:
    scale(provisioned.clients)
    add_alarms(provisioned, states={NAMES.unhealthy_alarm: "OK", NAMES.shortfall_alarm: "INSUFFICIENT_DATA"})
    calls.clear()
    probe: Callable[[str], UrlAnswer] = lambda url: UrlAnswer(url, status=200, seconds=0.01)  # noqa: E731
    assert cli.status_main(["--state-file", str(state_path), "--output", "json"], probe=probe) == 0
    report = json.loads(capsys.readouterr().out)  # one document
    assert list(report) == [
        "stack",
        "region",
        "account_id",
        "resources",
        "service",
        "target_health",
        "load_balancer",
        "certificate",
        "certificate_error",
        "url",
        "scaling",
        "alarms",
        "alarms_error",
    ]
    assert (report["service"]["running"], report["service"]["desired"], report["service"]["pending"]) == (1, 1, 0)
    scaling = report["scaling"]
    assert (scaling["enabled"], scaling["min_tasks"], scaling["max_tasks"]) == (True, 1, 4)
    assert scaling["policies"] == [
        {
            "name": "test-site-cpu",
            "policy_type": "TargetTrackingScaling",
            "metric": "ECSServiceAverageCPUUtilization",
            "target_value": 60.0,
            "scale_out_cooldown": 60,
            "scale_in_cooldown": 300,
            "scale_in_disabled": False,
            "alarms": scaling["policies"][0]["alarms"],
        }
    ]
    assert scaling["activities"][0] == {
        "start": "2026-11-30T20:05:00Z",
        "end": "",
        "status": "Failed",
        "description": "Setting desired count to 4.",
        "cause": ACTIVITIES[1]["Cause"],
        "message": ACTIVITIES[1]["StatusMessage"],
    }
    assert (scaling["error"], scaling["policies_error"], scaling["activities_error"]) == (None, None, None)
    assert [(alarm["name"], alarm["state"]) for alarm in report["alarms"]] == [
        (NAMES.unhealthy_alarm, "OK"),
        (NAMES.shortfall_alarm, "INSUFFICIENT_DATA"),
    ]
    assert report["alarms_error"] is None

    scaling_reads = {call for call in calls.calls if call[0] in ("application-autoscaling", "cloudwatch")}
    assert scaling_reads == {
        ("application-autoscaling", "DescribeScalableTargets"),
        ("application-autoscaling", "DescribeScalingPolicies"),
        ("application-autoscaling", "DescribeScalingActivities"),
        ("cloudwatch", "DescribeAlarms"),
    }
    assert calls.changing() == [], "status makes read calls only"


# ---------------------------------------------------------------- the plan's cost estimate


def test_without_autoscaling_the_estimate_is_one_figure(settings: Settings) -> None:
    fixed = replace(settings, min_tasks=3, max_tasks=3)
    lines = cost.estimate(fixed)
    assert all(line.monthly_usd_max is None for line in lines)
    assert cost.total_range(lines) == (cost.total(lines), cost.total(lines))
    vcpu = next(line for line in lines if line.item == "Fargate vCPU")
    assert vcpu.basis == "3 task(s) x 0.25 vCPU x $0.04048/h"
    assert vcpu.monthly_usd == pytest.approx(3 * 0.25 * cost.FARGATE_VCPU_HOUR * cost.HOURS_PER_MONTH)
    assert "Scaling policies' alarms" not in [line.item for line in lines]
    assert cost.total(lines) == pytest.approx(cost.total(cost.estimate(replace(settings, desired_count=3))))


def test_with_autoscaling_the_lines_that_grow_with_the_tasks_are_a_range(settings: Settings) -> None:
    scaling = replace(settings, min_tasks=1, max_tasks=4)
    lines = {line.item: line for line in cost.estimate(scaling)}
    at_one = {line.item: line for line in cost.estimate(replace(settings, desired_count=1))}
    at_four = {line.item: line for line in cost.estimate(replace(settings, desired_count=4))}
    for item in ("Fargate vCPU", "Fargate memory", "Public IPv4 addresses", "CloudWatch Logs", "Container Insights"):
        assert lines[item].monthly_usd == pytest.approx(at_one[item].monthly_usd), item
        assert lines[item].monthly_usd_max == pytest.approx(at_four[item].monthly_usd), item
    assert lines["Fargate vCPU"].basis == "1..4 task(s) x 0.25 vCPU x $0.04048/h"
    assert lines["CloudWatch Logs"].basis.startswith("assumes 0.5..2 GB/month ingested")
    for item in ("Network Load Balancer", "ECR storage", "Deployment alarms"):
        assert lines[item].monthly_usd_max is None, item  # not per task
    low, high = cost.total_range(list(lines.values()))
    assert low == pytest.approx(cost.total(list(at_one.values())) + lines["Scaling policies' alarms"].monthly_usd)
    assert high == pytest.approx(cost.total(list(at_four.values())) + lines["Scaling policies' alarms"].monthly_usd)


def test_a_private_stack_scales_its_nat_traffic_not_its_addresses(settings: Settings) -> None:
    lines = {line.item: line for line in cost.estimate(replace(settings, network="private", min_tasks=2, max_tasks=6))}
    assert lines["Public IPv4 addresses"].monthly_usd_max is None  # the tasks have no public address
    nat = lines["NAT gateway"]
    assert nat.monthly_usd_max == pytest.approx(nat.monthly_usd + 4 * cost.ASSUMED_NAT_GB_PER_TASK_MONTH * 0.045)


@pytest.mark.parametrize(
    ("given", "metrics", "policies"),
    [
        ({}, 3, 0),  # unhealthy targets (1 metric) + task shortfall (metric math over 2)
        ({"container_insights": False}, 1, 0),  # no shortfall alarm without Container Insights
        ({"min_tasks": 1, "max_tasks": 4}, 3, 1),  # CPU policy
        ({"min_tasks": 1, "max_tasks": 4, "scale_memory_percent": 70}, 3, 2),  # and memory
    ],
)
def test_alarms_are_priced_per_metric_they_read(
    settings: Settings, given: dict[str, Any], metrics: int, policies: int
) -> None:
    lines = {line.item: line for line in cost.estimate(replace(settings, **given))}
    assert lines["Deployment alarms"].monthly_usd == pytest.approx(metrics * 0.10)
    assert lines["Deployment alarms"].basis.startswith(f"{metrics} alarm metric(s) x $0.10/month")
    if policies:
        own = lines["Scaling policies' alarms"]
        assert own.monthly_usd == pytest.approx(policies * 2 * 0.10)
        assert own.basis.startswith(f"{policies} target-tracking policy(ies) x 2 alarms made by Application Auto")
    else:
        assert "Scaling policies' alarms" not in lines


def test_the_cost_text_without_autoscaling_is_as_before(settings: Settings) -> None:
    lines = cost.estimate(settings)
    assert views.render_cost(settings, lines) == [
        f"\nEstimated monthly cost (an estimate: {cost.PRICES_SOURCE}; data transfer, free tiers and taxes left out):",
        *(f"  {line.item:<24} ${line.monthly_usd:>8.2f}   {line.basis}" for line in lines),
        f"  {'total':<24} ${cost.total(lines):>8.2f}",
    ]


def test_the_cost_text_shows_ranges_and_the_total_range(settings: Settings) -> None:
    scaling = replace(settings, min_tasks=1, max_tasks=4)
    lines = cost.estimate(scaling)
    text = views.render_cost(scaling, lines)
    low, high = cost.total_range(lines)
    vcpu = next(line for line in text if line.startswith("  Fargate vCPU"))
    balancer = next(line for line in text if line.startswith("  Network Load Balancer"))
    assert "$    7.39..$29.55   1..4 task(s) x 0.25 vCPU" in vcpu
    assert vcpu.index("1..4 task(s)") == balancer.index("730 h")  # the basis column lines up
    assert text[-1] == (
        f"  {'total':<24} ${low:>8.2f}..${high:.2f}   at 1..4 tasks: what a month costs depends on how long "
        "autoscaling runs each count"
    )


def test_the_cost_document_keeps_its_keys_and_adds_the_range(settings: Settings) -> None:
    fixed = views.cost_document(settings, cost.estimate(settings))
    assert list(fixed) == ["source", "lines", "monthly_usd", "monthly_usd_max", "tasks"]
    assert fixed["monthly_usd"] == fixed["monthly_usd_max"] == round(cost.total(cost.estimate(settings)), 2)
    assert fixed["tasks"] == {"min": 1, "max": 1}
    scaling = replace(settings, min_tasks=2, max_tasks=5)
    lines = cost.estimate(scaling)
    document = json.loads(json.dumps(views.cost_document(scaling, lines)))
    low, high = cost.total_range(lines)
    assert (document["monthly_usd"], document["monthly_usd_max"]) == (round(low, 2), round(high, 2))
    assert document["tasks"] == {"min": 2, "max": 5}
    vcpu = next(line for line in document["lines"] if line["item"] == "Fargate vCPU")
    assert list(vcpu) == ["item", "monthly_usd", "basis", "monthly_usd_max"]
    assert vcpu["monthly_usd_max"] == pytest.approx(vcpu["monthly_usd"] * 5 / 2)
    balancer = next(line for line in document["lines"] if line["item"] == "Network Load Balancer")
    assert balancer["monthly_usd_max"] == balancer["monthly_usd"]  # a number in every line, never null
