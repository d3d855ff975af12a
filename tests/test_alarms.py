"""The deployment alarms: created tagged, found again, converged, adopted or refused, deleted, planned."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from deployer.errors import ForeignResourceError
from deployer.runner import provision_step
from deployer.steps.alarms import AlarmStep, arn_suffix, deployment_alarms
from deployer.steps.base import StepContext
from tests.conftest import ACCOUNT, REGION, CallLog, planning
from tests.steps_helpers import provision_through

UNHEALTHY = "test-site-unhealthy-targets"
SHORTFALL = "test-site-task-shortfall"


def alarm(ctx: StepContext, name: str) -> Any:
    alarms = ctx.clients.cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"]
    return alarms[0] if alarms else None


def alarm_tags(ctx: StepContext, name: str) -> dict[str, str]:
    arn = f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{name}"
    return {t["Key"]: t["Value"] for t in ctx.clients.cloudwatch.list_tags_for_resource(ResourceARN=arn)["Tags"]}


def by_hand(ctx: StepContext, step: AlarmStep, **changes: Any) -> None:
    """PutMetricAlarm as someone does in the console: the stack's definition with these fields changed."""
    request: Any = {**step.definition(ctx), **changes}
    ctx.clients.cloudwatch.put_metric_alarm(**request)


@pytest.fixture
def ready(ctx: StepContext) -> StepContext:
    """The steps before the alarms: the target group and load balancer they watch."""
    provision_through(ctx, "task-definition")
    return ctx


def test_unhealthy_alarm_watches_the_target_group_and_is_tagged(ready: StepContext, calls: CallLog) -> None:
    calls.clear()
    outcome, ids, _ = provision_step(ready, AlarmStep("unhealthy"))
    assert outcome == "created"
    assert ids == {"name": UNHEALTHY, "arn": f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{UNHEALTHY}"}
    assert calls.changing() == [("cloudwatch", "PutMetricAlarm")]
    live = alarm(ready, UNHEALTHY)
    assert (live["Namespace"], live["MetricName"], live["Statistic"]) == (
        "AWS/NetworkELB",
        "UnHealthyHostCount",
        "Maximum",
    )
    target_group, balancer = ready.ids("target-group")["arn"], ready.ids("load-balancer")["arn"]
    assert {d["Name"]: d["Value"] for d in live["Dimensions"]} == {
        "TargetGroup": target_group.split(":")[-1],
        "LoadBalancer": balancer.split(":loadbalancer/")[-1],
    }
    assert (live["Period"], live["EvaluationPeriods"], live["DatapointsToAlarm"]) == (60, 5, 3)
    assert (live["Threshold"], live["ComparisonOperator"], live["TreatMissingData"]) == (
        0.0,
        "GreaterThanThreshold",
        "notBreaching",
    )
    # PutMetricAlarm's documented SSM action: arn:aws:ssm:region:account-id:opsitem:severity#CATEGORY=category-name
    assert live["AlarmActions"] == [f"arn:aws:ssm:{REGION}:{ACCOUNT}:opsitem:2#CATEGORY=Availability"]
    assert alarm_tags(ready, UNHEALTHY)["deployer:stack"] == "test-site"
    assert alarm_tags(ready, UNHEALTHY)["deployer:step"] == "unhealthy-alarm"


def test_arn_suffix_is_the_dimension_value() -> None:
    assert arn_suffix("arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/tg/abc") == "targetgroup/tg/abc"
    assert arn_suffix("arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/net/lb/def") == "net/lb/def"


def test_shortfall_alarm_is_desired_minus_running_from_container_insights(ready: StepContext) -> None:
    provision_step(ready, AlarmStep("shortfall"))
    live = alarm(ready, SHORTFALL)
    queries = {query["Id"]: query for query in live["Metrics"]}
    assert queries["shortfall"]["Expression"] == "desired - running"
    assert queries["shortfall"]["ReturnData"] is True
    for query, metric in (("desired", "DesiredTaskCount"), ("running", "RunningTaskCount")):
        stat = queries[query]["MetricStat"]
        assert stat["Metric"]["Namespace"] == "ECS/ContainerInsights"
        assert stat["Metric"]["MetricName"] == metric
        assert {d["Name"]: d["Value"] for d in stat["Metric"]["Dimensions"]} == {
            "ClusterName": "test-site-cluster",
            "ServiceName": "test-site-web",
        }
        assert (stat["Period"], queries[query]["ReturnData"]) == (60, False)
    assert (live["EvaluationPeriods"], live["DatapointsToAlarm"], live["Threshold"]) == (5, 5, 0.0)
    assert live["AlarmActions"] == [f"arn:aws:ssm:{REGION}:{ACCOUNT}:opsitem:2#CATEGORY=Availability"]


def test_the_shortfall_alarm_is_wanted_only_with_container_insights(ctx: StepContext) -> None:
    without = replace(ctx.settings, container_insights=False)
    assert not AlarmStep("shortfall").wanted(without)
    assert AlarmStep("unhealthy").wanted(without)
    assert deployment_alarms(ctx.settings) == [UNHEALTHY, SHORTFALL]
    assert deployment_alarms(without) == [UNHEALTHY]


@pytest.mark.parametrize("kind", ["unhealthy", "shortfall"])
def test_a_rerun_changes_nothing(ready: StepContext, calls: CallLog, kind: str) -> None:
    step = AlarmStep(kind)
    created = provision_step(ready, step)[1]
    calls.clear()
    assert provision_step(ready, step) == ("unchanged", created, [])
    assert calls.changing() == []


def test_a_definition_changed_by_hand_is_put_back_and_keeps_its_tags(ready: StepContext, calls: CallLog) -> None:
    step = AlarmStep("unhealthy")
    provision_step(ready, step)
    by_hand(ready, step, EvaluationPeriods=1, DatapointsToAlarm=1)
    calls.clear()

    outcome, _, changes = provision_step(ready, step)

    assert (outcome, changes) == ("updated", ["definition (EvaluationPeriods, DatapointsToAlarm changed)"])
    assert calls.changing() == [("cloudwatch", "PutMetricAlarm")]
    assert (alarm(ready, UNHEALTHY)["EvaluationPeriods"], alarm(ready, UNHEALTHY)["DatapointsToAlarm"]) == (5, 3)
    assert alarm_tags(ready, UNHEALTHY)["deployer:stack"] == "test-site"
    calls.clear()
    assert provision_step(ready, step)[0] == "unchanged"


@pytest.mark.parametrize("kind", ["unhealthy", "shortfall"])
def test_an_alarm_without_its_opsitem_action_gets_it_back(ready: StepContext, kind: str) -> None:
    """An alarm made before the action existed (or with it removed by hand) is put back with it: an alarm that
    tells nobody is Prowler's high cloudwatch_alarm_actions_alarm_state_configured FAIL."""
    step = AlarmStep(kind)
    provision_step(ready, step)
    by_hand(ready, step, AlarmActions=[])
    name = step.alarm_name(ready.settings)
    assert alarm(ready, name)["AlarmActions"] == []

    assert provision_step(ready, step)[2] == ["definition (AlarmActions changed)"]
    assert alarm(ready, name)["AlarmActions"] == [f"arn:aws:ssm:{REGION}:{ACCOUNT}:opsitem:2#CATEGORY=Availability"]


def test_a_metric_math_query_changed_by_hand_is_put_back(ready: StepContext) -> None:
    step = AlarmStep("shortfall")
    provision_step(ready, step)
    wanted = step.definition(ready)
    changed = [dict(query) for query in wanted["Metrics"]]
    changed[-1]["Expression"] = "running - desired"
    by_hand(ready, step, Metrics=changed)

    assert provision_step(ready, step)[2] == ["definition (Metrics changed)"]
    expression = next(q for q in alarm(ready, SHORTFALL)["Metrics"] if q["Id"] == "shortfall")["Expression"]
    assert expression == "desired - running"


def test_a_lost_state_adopts_our_alarm(ready: StepContext, calls: CallLog) -> None:
    step = AlarmStep("unhealthy")
    created = provision_step(ready, step)[1]
    ready.state.forget(step.name)
    calls.clear()
    assert provision_step(ready, step) == ("unchanged", created, [])
    assert calls.changing() == []


def test_an_alarm_of_the_name_without_our_tags_is_refused(ready: StepContext, calls: CallLog) -> None:
    step = AlarmStep("unhealthy")
    by_hand(ready, step, Tags=[{"Key": "deployer:stack", "Value": "other"}])
    calls.clear()
    with pytest.raises(ForeignResourceError, match="deployer:stack=other"):
        provision_step(ready, step)
    assert calls.changing() == []


def test_delete_removes_the_alarm_and_a_second_delete_is_fine(ready: StepContext) -> None:
    step = AlarmStep("unhealthy")
    ids = provision_step(ready, step)[1]
    step.delete(ready, ids)
    assert alarm(ready, UNHEALTHY) is None
    step.delete(ready, ids)


def test_a_dry_run_describes_and_changes_nothing(ready: StepContext, calls: CallLog) -> None:
    step = AlarmStep("unhealthy")
    calls.clear()
    assert step.find(planning(ready), None) is None  # planned as "create" (runner.plan)
    assert calls.changing() == []

    provision_step(ready, step)
    by_hand(ready, step, Period=120)
    calls.clear()
    _, _, changes = provision_step(planning(ready), step)
    assert changes == ["definition (Period changed)"]
    assert calls.changing() == []
    assert alarm(ready, UNHEALTHY)["Period"] == 120
