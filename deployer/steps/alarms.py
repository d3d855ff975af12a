"""The service's deployment alarms: CloudWatch alarms ECS watches while it rolls a deployment out.

ECS sets a deployment FAILED, and rolls it back, when an alarm named in the service's
`deploymentConfiguration.alarms` goes into ALARM during the rollout or its bake time
("How CloudWatch alarms detect Amazon ECS deployment failures",
https://docs.aws.amazon.com/AmazonECS/latest/developerguide/deployment-alarm-failure.html). ECS only
reads their state (it polls DescribeAlarms); the alarm's own ALARM action is for people: it opens an OpsItem
in Systems Manager OpsCenter (severity 2, category Availability), where the console lists what went wrong and
when. An alarm nobody is told about is Prowler's high-severity `cloudwatch_alarm_actions_alarm_state_configured`
FAIL (Security Hub's CloudWatch.15), and an OpsItem needs no resource of the stack (no topic to subscribe,
encrypt and delete). The action ARN is the documented `arn:aws:ssm:region:account-id:opsitem:severity#CATEGORY=
category-name` (PutMetricAlarm's AlarmActions, botocore's cloudwatch model). CloudWatch acts through its
service-linked role AWSServiceRoleForCloudWatchAlarms_ActionSSM, which PutMetricAlarm creates on an account's
first such alarm with the caller's iam:CreateServiceLinkedRole (the same model's PutMetricAlarm documentation);
like ECS's role it is the account's, shared, and teardown leaves it. Two alarms:

* `unhealthy-alarm`: the site's target group has an unhealthy target (AWS/NetworkELB
  UnHealthyHostCount), which the circuit breaker does not see while the tasks stay up;
* `shortfall-alarm` (only with Container Insights, which publishes the task counts): the service
  runs fewer tasks than it wants (ECS/ContainerInsights DesiredTaskCount - RunningTaskCount).

The numbers keep a rollout's normal moments quiet, because an alarm that fires on them rolls back
good deployments, and one already in ALARM when a deployment starts does not guard it (ECS ignores
the alarm-based rollback then: Copilot's note on its rollback alarms, aws/copilot-cli#4512):

* unhealthy: 3 of 5 one-minute periods with an unhealthy target. A new task's target is `initial`
  during its first checks and an old task's `draining` while it drains, neither of them the
  `unhealthy` state the metric counts ("Target health status", https://docs.aws.amazon.com/
  elasticloadbalancing/latest/network/target-group-health-checks.html); a site slow to listen can
  still turn `unhealthy` after 2 failed checks and back after 2 good ones (10 s apart: well under a
  minute, touching at most two periods). A broken revision that ECS keeps replacing shows an unhealthy target in
  most minutes, hence 3 of 5 rather than 3 in a row. Missing data (no target registered) is not
  breaching.
* shortfall: 5 one-minute periods in a row short of tasks. A Fargate task takes a minute or two
  from placement to RUNNING (image pull included); a rolling update at minimumHealthyPercent 100
  keeps the old tasks until the new ones run, so only a task that cannot start keeps the service
  short for five minutes.

ECS computes the bake time from the alarms' configuration (the page above): these periods add a
few minutes after the new tasks run before the rollout is COMPLETED (service_wait_timeout, 20 minutes
by default, covers it).

With a domain, port 80's redirect target group is not watched: the same container serves both ports,
the redirect only sends visitors to the site's port, and a revision whose redirect fails while the
site serves is not worth rolling back; the site's own target group is what the rollout must keep healthy.

PutMetricAlarm creates or replaces an alarm's whole definition; its Tags apply only when it creates
the alarm ("If you are using this operation to update an existing alarm, any tags you specify in this
parameter are ignored", PutMetricAlarm, botocore's cloudwatch model / the API reference,
https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html), and tagging
at creation needs cloudwatch:TagResource.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deployer.settings import Settings
from deployer.state import Ids
from deployer.steps import tags
from deployer.steps.aws import absent_if
from deployer.steps.base import Converged, Existing, Step, StepContext

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch.type_defs import (
        DimensionTypeDef,
        MetricAlarmTypeDef,
        MetricDataQueryTypeDef,
        PutMetricAlarmInputTypeDef,
    )

# The stack's alarm steps, in stack order (deployer/stack.py).
KINDS = ("unhealthy", "shortfall")
PERIOD = 60
UNHEALTHY_PERIODS, UNHEALTHY_DATAPOINTS = 5, 3
SHORTFALL_PERIODS = 5
# The OpsItem an alarm opens: severity 1 (critical) to 4 (low); OpsCenter's categories include Availability.
OPSITEM_SEVERITY, OPSITEM_CATEGORY = "2", "Availability"
# The fields of an alarm's definition that PutMetricAlarm sets and DescribeAlarms reports.
DEFINITION = (
    "Namespace",
    "MetricName",
    "Dimensions",
    "Statistic",
    "Period",
    "Metrics",
    "EvaluationPeriods",
    "DatapointsToAlarm",
    "Threshold",
    "ComparisonOperator",
    "TreatMissingData",
    "AlarmActions",
)


def deployment_alarms(settings: Settings) -> list[str]:
    """The names of the alarms these settings want, for the service's deploymentConfiguration.alarms."""
    return [AlarmStep(kind).alarm_name(settings) for kind in KINDS if AlarmStep(kind).wanted(settings)]


def arn_suffix(arn: str) -> str:
    """An ELB ARN's resource part as CloudWatch's dimensions spell it: `targetgroup/<name>/<id>` for a target
    group, `net/<name>/<id>` for a load balancer (without `loadbalancer/`; "CloudWatch metrics for your Network
    Load Balancer", https://docs.aws.amazon.com/elasticloadbalancing/latest/network/load-balancer-cloudwatch-metrics.html)."""
    return arn.split(":", 5)[5].removeprefix("loadbalancer/")


def opsitem_action(ctx: StepContext) -> str:
    """The alarm action that opens an OpsItem in the stack's account and region (see the module docstring)."""
    return (
        f"arn:{ctx.partition}:ssm:{ctx.clients.region}:{ctx.account_id}:opsitem:{OPSITEM_SEVERITY}"
        f"#CATEGORY={OPSITEM_CATEGORY}"
    )


class AlarmStep(Step["MetricAlarmTypeDef"]):
    """`AlarmStep("unhealthy")` or `AlarmStep("shortfall")`; ids {"name", "arn"}."""

    resource = "CloudWatch alarm"

    def __init__(self, kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(kind)
        self.kind = kind
        self.name = f"{kind}-alarm"
        # The unhealthy alarm's dimensions are the target group's and the NLB's; the shortfall alarm's are
        # names from the settings.
        self.needs = ("target-group", "load-balancer") if kind == "unhealthy" else ()

    def wanted(self, settings: Settings) -> bool:
        """The shortfall alarm reads Container Insights' task counts: only with container_insights."""
        return self.kind == "unhealthy" or settings.container_insights

    def alarm_name(self, settings: Settings) -> str:
        return settings.names.unhealthy_alarm if self.kind == "unhealthy" else settings.names.shortfall_alarm

    def find_recorded(self, ctx: StepContext, ids: Ids) -> Existing[MetricAlarmTypeDef] | None:
        return self._describe(ctx, ids["name"])

    def find_unrecorded(self, ctx: StepContext) -> Existing[MetricAlarmTypeDef] | None:
        name = self.alarm_name(ctx.settings)
        found = self._describe(ctx, name)
        if found is None:
            return None
        answer = ctx.clients.cloudwatch.list_tags_for_resource(ResourceARN=found.ids["arn"])
        return tags.adopt(ctx, self, found, name, tags.tag_map(answer.get("Tags")), global_=False)

    def _describe(self, ctx: StepContext, name: str) -> Existing[MetricAlarmTypeDef] | None:
        # AlarmNames is an exact match; without AlarmTypes, DescribeAlarms answers metric alarms only.
        alarms = ctx.clients.cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"]
        if not alarms:
            return None
        return Existing({"name": name, "arn": alarms[0]["AlarmArn"]}, alarms[0])

    def create(self, ctx: StepContext) -> Ids:
        request = self.definition(ctx)
        request["Tags"] = [
            {"Key": key, "Value": value} for key, value in tags.stack_tags(ctx.settings, self.name).items()
        ]
        ctx.clients.cloudwatch.put_metric_alarm(**request)
        # PutMetricAlarm answers nothing: the ARN is the documented pattern (CloudWatch's "Actions, resources,
        # and condition keys": arn:${Partition}:cloudwatch:${Region}:${Account}:alarm:${AlarmName}).
        arn = f"arn:{ctx.partition}:cloudwatch:{ctx.clients.region}:{ctx.account_id}:alarm:{request['AlarmName']}"
        return {"name": request["AlarmName"], "arn": arn}

    def converge(self, ctx: StepContext, existing: Existing[MetricAlarmTypeDef]) -> Converged:
        """PutMetricAlarm again (the whole definition; the tags stay) when a field of the definition differs."""
        wanted = self.definition(ctx)
        differing = [key for key in DEFINITION if _value(existing.live, key) != _value(wanted, key)]
        changes: list[str] = []
        if differing:
            ctx.change(
                changes,
                f"definition ({', '.join(differing)} changed)",
                lambda: ctx.clients.cloudwatch.put_metric_alarm(**wanted),
            )
        return Converged(existing.ids, changes)

    def delete(self, ctx: StepContext, ids: Ids) -> None:
        # DeleteAlarms deletes the names that exist; its model lists ResourceNotFound for the others.
        absent_if(lambda: ctx.clients.cloudwatch.delete_alarms(AlarmNames=[ids["name"]]), "ResourceNotFound")

    def definition(self, ctx: StepContext) -> PutMetricAlarmInputTypeDef:
        """The PutMetricAlarm request the settings ask for, without tags."""
        settings = ctx.settings
        common: PutMetricAlarmInputTypeDef = {
            "AlarmName": self.alarm_name(settings),
            "Threshold": 0.0,
            "ComparisonOperator": "GreaterThanThreshold",
            "TreatMissingData": "notBreaching",
            "AlarmActions": [opsitem_action(ctx)],
        }
        if self.kind == "unhealthy":
            return {
                **common,
                "AlarmDescription": f"{settings.stack}: a target of the site's target group is unhealthy "
                "(ECS rolls a deployment back on it)",
                "Namespace": "AWS/NetworkELB",
                "MetricName": "UnHealthyHostCount",
                "Dimensions": [
                    {"Name": "TargetGroup", "Value": arn_suffix(ctx.ids("target-group")["arn"])},
                    {"Name": "LoadBalancer", "Value": arn_suffix(ctx.ids("load-balancer")["arn"])},
                ],
                "Statistic": "Maximum",
                "Period": PERIOD,
                "EvaluationPeriods": UNHEALTHY_PERIODS,
                "DatapointsToAlarm": UNHEALTHY_DATAPOINTS,
            }
        service: list[DimensionTypeDef] = [
            {"Name": "ClusterName", "Value": settings.names.cluster},
            {"Name": "ServiceName", "Value": settings.names.service},
        ]
        metrics: list[MetricDataQueryTypeDef] = [
            {
                "Id": metric,
                "MetricStat": {
                    "Metric": {"Namespace": "ECS/ContainerInsights", "MetricName": name, "Dimensions": service},
                    "Period": PERIOD,
                    "Stat": "Average",
                },
                "ReturnData": False,
            }
            for metric, name in (("desired", "DesiredTaskCount"), ("running", "RunningTaskCount"))
        ]
        metrics.append(
            {"Id": "shortfall", "Expression": "desired - running", "Label": "tasks short", "ReturnData": True}
        )
        return {
            **common,
            "AlarmDescription": f"{settings.stack}: the service runs fewer tasks than it wants "
            "(ECS rolls a deployment back on it)",
            "Metrics": metrics,
            "EvaluationPeriods": SHORTFALL_PERIODS,
            "DatapointsToAlarm": SHORTFALL_PERIODS,
        }


def _value(alarm: Any, key: str) -> Any:
    """A definition field comparably: absent and empty lists alike (moto answers [] for fields not set),
    numbers as floats, Dimensions in order, metric queries without the empty fields."""
    value = alarm.get(key)
    if value in (None, []):
        return None
    if key == "Threshold":
        return float(value)
    if key == "Dimensions":
        return sorted((d["Name"], d["Value"]) for d in value)
    if key == "Metrics":
        return [repr(_query(query)) for query in value]
    return value


def _query(query: Any) -> Any:
    """A metric query with its dimensions sorted and no empty values."""
    if isinstance(query, dict):
        cleaned = {k: _query(v) for k, v in query.items() if v not in (None, [], {})}
        if "Dimensions" in cleaned:
            cleaned["Dimensions"] = sorted((d["Name"], d["Value"]) for d in query["Dimensions"])
        return dict(sorted(cleaned.items()))
    return query
