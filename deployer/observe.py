"""The reading half of status.py and logs.py: AWS reads and the reports they fill.

Nothing here writes to the terminal; deployer/views.py turns what these functions
return into text or JSON, and holds the two commands' entry points. The flow of both:

    cli.py (flags) -> views.show_status / views.show_logs (glue)
        -> observe.read_status / observe.read_logs (this module: state file, identity, AWS reads)
        -> views.render_status / views.format_event (text) or the JSON document -> Output

Both reads start the same way: load the state file (a missing or unreadable one is
refused with exit 2, as teardown refuses it), build clients for the region it
records, and check that the credentials belong to its account and the file to
its stack (`check_identity`). Neither takes the state's lock nor writes the
state, so both can run while provision or teardown holds it, and neither makes
a changing AWS call (only Describe*, Get* and FilterLogEvents). An AWS refusal
or a lost connection becomes a `DeployerError` saying what to check (`_aws_answers`).

status: `collect_status` lists every recorded resource (step, primary identifier),
then reads how the parts that can be unwell are doing: the ECS service (counts, the
task-definition revision it runs, that revision's image, the digest the state
recorded for the image, and its deployments with their rollout state), the target
group's target health, the load balancer's state, and the answer of the site URL to
one GET (deployer/probe.py); with a domain, the TLS listener's certificate (status, expiry,
how many resources use it); the service's autoscaling (`_scaling_status`: the scalable
target's min..max, its policies and the last scaling activities, from Application Auto
Scaling) and the state of the deployment alarms the state records (`_read_alarms`). A part
that cannot be read (deleted by hand, no permission) is recorded as such in its part of the
`StatusReport` instead of ending the report, because that is exactly when a status is wanted.

logs: `tail` runs FilterLogEvents over the log group the state records, from `--since`
on (`parse_since`), every page (`log_events`), and hands each event to a `write`
callback. With `follow` it then polls every few seconds. CloudWatch can accept an
event after a later one, so each poll re-reads the last 30 seconds and skips the
event ids already written; Ctrl-C ends it (exit 0, see cli.logs_main).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from botocore.exceptions import BotoCoreError, ClientError

from deployer.clients import AwsClients, Connection, connect, error_code, error_message
from deployer.errors import AwsSetupError, DeployerError, SettingsError, StateFileError
from deployer.probe import Probe, UrlAnswer
from deployer.probe import probe as probe_url
from deployer.runner import primary
from deployer.state import Ids, State, StateStore, check_identity
from deployer.steps.certificates import CertificateStatus, certificate_status

if TYPE_CHECKING:
    from mypy_boto3_application_autoscaling.type_defs import ScalingActivityTypeDef, ScalingPolicyTypeDef
    from mypy_boto3_logs import CloudWatchLogsClient
    from mypy_boto3_logs.type_defs import FilteredLogEventTypeDef, PaginatorConfigTypeDef

DEFAULT_SINCE = "10m"
FOLLOW_SECONDS = 3.0
LATE_EVENT_MS = 30_000  # how far back each --follow poll re-reads, for events CloudWatch accepts late
SINCE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# An ECS service's scalable target in Application Auto Scaling: namespace, dimension, and the resource id
# service/<cluster>/<service> (Application Auto Scaling API reference, RegisterScalableTarget:
# https://docs.aws.amazon.com/autoscaling/application/APIReference/API_RegisterScalableTarget.html).
ECS_NAMESPACE: Final = "ecs"
DESIRED_COUNT: Final = "ecs:service:DesiredCount"
ACTIVITIES_SHOWN = 5
# The steps (deployer/steps/alarms.py) whose CloudWatch alarms ECS watches during a rollout.
DEPLOYMENT_ALARM_STEPS = ("unhealthy-alarm", "shortfall-alarm")


def open_stack(store: StateStore, aws: Connection | None, purpose: str) -> tuple[State, AwsClients]:
    """The recorded state and clients for its region (the S3 state's connection when it is that region's),
    checked against the account; no lock, no write."""
    state = store.load()
    if state is None:
        raise StateFileError(
            f"There is no state file, so there is no stack to {purpose}",
            where=store.where,
            todo="Run provision.py first, or pass --state-file with the path (or s3:// URL) of the stack's state",
        )
    if aws is None or aws.clients.region != state.region:
        aws = connect(state.region)
    check_identity(state, state.stack, aws.clients.region, aws.account_id, store.where)
    return state, aws.clients


@contextmanager
def _aws_answers(operation: str, where: str) -> Iterator[None]:
    """Turn an AWS refusal or a lost connection into a message saying what to check.

    Not runner._explained: that one names the step and its resource (`AwsCallError`);
    here there is no step, and a missing resource means "provision again".
    """
    try:
        yield
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            raise DeployerError(
                f"AWS says the resource does not exist: {error_message(exc)}",
                where=where,
                todo="Run provision.py to create it again (the state file records it), or check --state-file",
            ) from exc
        raise DeployerError(
            f"AWS refused {operation} ({error_code(exc)}): {error_message(exc)}",
            where=where,
            todo=f"Check that the credentials allow {operation}, then run again",
        ) from exc
    except BotoCoreError as exc:
        raise AwsSetupError(
            f"The AWS call failed before AWS answered: {exc}",
            where=where,
            todo="Check the network (or the emulator at AWS_ENDPOINT_URL), then run again",
        ) from exc


# ---------------------------------------------------------------- status


@dataclass
class Deployment:
    id: str
    status: str  # PRIMARY (the newest), ACTIVE (being replaced)
    rollout_state: str  # IN_PROGRESS, COMPLETED, FAILED
    rollout_reason: str
    task_definition: str  # family:revision
    running: int
    desired: int
    pending: int
    failed: int


@dataclass
class ServiceStatus:
    name: str
    cluster: str
    status: str = ""
    running: int = 0
    desired: int = 0
    pending: int = 0
    task_definition: str = ""  # family:revision
    image: str = ""  # as the task definition's container names it
    digest: str | None = None  # from the state's image record; absent for an image given with --image
    recorded_image: str | None = None
    deployments: list[Deployment] = field(default_factory=list)
    error: str | None = None

    @property
    def image_differs(self) -> bool:
        """The service runs an image the state does not record (for example after a rollback)."""
        return bool(self.image and self.recorded_image and self.image != self.recorded_image)


@dataclass
class TargetHealth:
    target_group: str
    counts: dict[str, int] = field(default_factory=dict)  # state -> targets: healthy, unhealthy, initial, …
    reasons: list[str] = field(default_factory=list)  # why targets are not healthy, as ELB words it
    error: str | None = None


@dataclass
class LoadBalancerStatus:
    name: str
    state: str = ""  # provisioning, active, active_impaired, failed
    reason: str = ""
    dns_name: str = ""
    error: str | None = None


@dataclass
class ScalingPolicyStatus:
    name: str
    policy_type: str  # TargetTrackingScaling for the stack's own policies
    metric: str  # the predefined metric type (ECSServiceAverageCPUUtilization, ...) or a custom metric's name
    target_value: float | None = None
    scale_out_cooldown: int | None = None  # seconds; None when the policy sets none (AWS's default applies)
    scale_in_cooldown: int | None = None
    scale_in_disabled: bool = False
    alarms: list[str] = field(default_factory=list)  # what Application Auto Scaling made for it (high, low)


@dataclass
class ScalingActivity:
    start: str  # ISO 8601, UTC
    end: str  # empty while it runs
    status: str  # Pending, InProgress, Successful, Overridden, Unfulfilled, Failed
    description: str  # e.g. "Setting desired count to 3."
    cause: str  # e.g. "monitor alarm ... in state ALARM triggered policy ..."
    message: str


@dataclass
class ScalingStatus:
    """The service's autoscaling: `enabled` with a scalable target registered, else the count is fixed."""

    resource_id: str
    enabled: bool = False
    min_tasks: int | None = None
    max_tasks: int | None = None
    suspended: list[str] = field(default_factory=list)  # DynamicScalingInSuspended, ... when set
    policies: list[ScalingPolicyStatus] = field(default_factory=list)
    activities: list[ScalingActivity] = field(default_factory=list)  # newest first
    error: str | None = None  # the scalable target could not be read: whether it scales is unknown
    policies_error: str | None = None
    activities_error: str | None = None


@dataclass
class AlarmStatus:
    name: str
    state: str = ""  # OK, ALARM, INSUFFICIENT_DATA
    reason: str = ""
    since: str = ""  # when the state last changed, ISO 8601 UTC
    error: str | None = None  # "not found" when CloudWatch has no alarm of that name


@dataclass
class ResourceLine:
    step: str
    id: str


@dataclass
class StatusReport:
    stack: str
    region: str
    account_id: str
    resources: list[ResourceLine]
    service: ServiceStatus | None = None
    target_health: TargetHealth | None = None
    load_balancer: LoadBalancerStatus | None = None
    certificate: CertificateStatus | None = None
    certificate_error: str | None = None
    url: UrlAnswer | None = None
    scaling: ScalingStatus | None = None
    alarms: list[AlarmStatus] = field(default_factory=list)  # the deployment alarms the state records
    alarms_error: str | None = None


def read_status(store: StateStore, aws: Connection | None, probe: Probe | None = None) -> StatusReport:
    """status.py's report: the state file's stack, read from AWS; `probe` asks the site URL (default: one GET)."""
    state, clients = open_stack(store, aws, "show")
    with _aws_answers("the Describe calls of status.py", f"stack '{state.stack}' in {state.region}"):
        return collect_status(clients, state, probe or probe_url)


def collect_status(clients: AwsClients, state: State, probe: Probe) -> StatusReport:
    """Read calls only; the parts the state does not record (a partial provision) are left out."""
    report = StatusReport(
        stack=state.stack,
        region=state.region,
        account_id=state.account_id,
        resources=[ResourceLine(record.step, primary(record.ids)) for record in state.resources],
    )
    service = state.get("service")
    if service is not None:
        report.service = _service_status(clients, service, state.get("image") or {})
        report.scaling = _scaling_status(clients, f"service/{service['cluster']}/{service['name']}")
    _read_alarms(clients, state, report)
    target_group = state.get("target-group")
    if target_group is not None:
        report.target_health = _target_health(clients, target_group)
    balancer = state.get("load-balancer")
    if balancer is not None:
        report.load_balancer = _load_balancer_status(clients, balancer)
    _read_certificate(clients, state, report)
    url = state.outputs.get("url")
    if url:
        report.url = probe(url)
    return report


def _service_status(clients: AwsClients, ids: Ids, image_record: Ids) -> ServiceStatus:
    status = ServiceStatus(
        name=ids["name"],
        cluster=ids["cluster"],
        digest=image_record.get("digest"),
        recorded_image=image_record.get("uri"),
    )
    try:
        answer = clients.ecs.describe_services(cluster=ids["cluster"], services=[ids["name"]])
        if not answer["services"]:
            reasons = ", ".join(failure.get("reason", "?") for failure in answer.get("failures", []))
            status.error = f"not found ({reasons or 'no answer'})"
            return status
        live = answer["services"][0]
        status.status = live.get("status", "")
        status.running, status.desired = live.get("runningCount", 0), live.get("desiredCount", 0)
        status.pending = live.get("pendingCount", 0)
        arn = live.get("taskDefinition", "")
        status.task_definition = _revision(arn)
        status.deployments = [
            Deployment(
                id=deployment.get("id", ""),
                status=deployment.get("status", ""),
                rollout_state=deployment.get("rolloutState", ""),
                rollout_reason=deployment.get("rolloutStateReason", ""),
                task_definition=_revision(deployment.get("taskDefinition", "")),
                running=deployment.get("runningCount", 0),
                desired=deployment.get("desiredCount", 0),
                pending=deployment.get("pendingCount", 0),
                failed=deployment.get("failedTasks", 0),
            )
            for deployment in live.get("deployments", [])
        ]
        if arn:
            definition = clients.ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]
            containers = definition.get("containerDefinitions", [])
            status.image = containers[0].get("image", "") if containers else ""
    except ClientError as exc:
        status.error = _refusal(exc)
    return status


def _target_health(clients: AwsClients, ids: Ids) -> TargetHealth:
    health = TargetHealth(target_group=ids["name"])
    try:
        targets = clients.elbv2.describe_target_health(TargetGroupArn=ids["arn"])["TargetHealthDescriptions"]
    except ClientError as exc:
        health.error = _refusal(exc)
        return health
    states = [target.get("TargetHealth", {}) for target in targets]
    health.counts = dict(sorted(Counter(state.get("State", "unknown") for state in states).items()))
    health.reasons = sorted(
        {state["Reason"] for state in states if state.get("State") != "healthy" and state.get("Reason")}
    )
    return health


def _load_balancer_status(clients: AwsClients, ids: Ids) -> LoadBalancerStatus:
    status = LoadBalancerStatus(name=ids["name"])
    try:
        balancers = clients.elbv2.describe_load_balancers(LoadBalancerArns=[ids["arn"]])["LoadBalancers"]
    except ClientError as exc:
        status.error = _refusal(exc)
        return status
    if not balancers:
        status.error = "not found"
        return status
    live = balancers[0].get("State", {})
    status.state, status.reason = live.get("Code", ""), live.get("Reason", "")
    status.dns_name = balancers[0].get("DNSName", "")
    return status


def _read_certificate(clients: AwsClients, state: State, report: StatusReport) -> None:
    """The TLS listener's certificate: the stack's (recorded), or a `certificate_arn` of the user's, which the
    state does not record and the listener names."""
    try:
        arn = (state.get("certificate") or {}).get("arn") or _listener_certificate(clients, state.get("https-listener"))
        if arn:
            report.certificate = certificate_status(clients, arn)
    except ClientError as exc:
        report.certificate_error = _refusal(exc)


def _listener_certificate(clients: AwsClients, listener: Ids | None) -> str:
    if listener is None:
        return ""
    listeners = clients.elbv2.describe_listeners(ListenerArns=[listener["arn"]])["Listeners"]
    certificates = listeners[0].get("Certificates", []) if listeners else []
    return certificates[0].get("CertificateArn", "") if certificates else ""


def _scaling_status(clients: AwsClients, resource_id: str) -> ScalingStatus:
    """The scalable target of the service (none: autoscaling is off), then its policies and last activities.

    Each of the three reads can be refused on its own (a policy granting some Describe actions only), so each
    records its own refusal and the others are still shown.
    """
    scaling = ScalingStatus(resource_id=resource_id)
    try:
        targets = clients.autoscaling.describe_scalable_targets(
            ServiceNamespace=ECS_NAMESPACE, ResourceIds=[resource_id], ScalableDimension=DESIRED_COUNT
        )["ScalableTargets"]
    except ClientError as exc:
        scaling.error = _refusal(exc)
        return scaling
    if not targets:
        return scaling
    target = targets[0]
    scaling.enabled, scaling.min_tasks, scaling.max_tasks = True, target["MinCapacity"], target["MaxCapacity"]
    scaling.suspended = sorted(kind for kind, suspended in target.get("SuspendedState", {}).items() if suspended)
    try:
        scaling.policies = [_policy(policy) for policy in _scaling_policies(clients, resource_id)]
    except ClientError as exc:
        scaling.policies_error = _refusal(exc)
    try:
        scaling.activities = _scaling_activities(clients, resource_id)
    except ClientError as exc:
        scaling.activities_error = _refusal(exc)
    return scaling


def _scaling_policies(clients: AwsClients, resource_id: str) -> list[ScalingPolicyTypeDef]:
    pages = clients.autoscaling.get_paginator("describe_scaling_policies").paginate(
        ServiceNamespace=ECS_NAMESPACE, ResourceId=resource_id, ScalableDimension=DESIRED_COUNT
    )
    return [policy for page in pages for policy in page["ScalingPolicies"]]


def _policy(policy: ScalingPolicyTypeDef) -> ScalingPolicyStatus:
    tracking = policy.get("TargetTrackingScalingPolicyConfiguration")
    status = ScalingPolicyStatus(
        name=policy["PolicyName"],
        policy_type=policy["PolicyType"],
        metric="",
        alarms=[alarm["AlarmName"] for alarm in policy.get("Alarms", [])],
    )
    if tracking is not None:
        predefined = tracking.get("PredefinedMetricSpecification")
        custom = tracking.get("CustomizedMetricSpecification")
        status.metric = (
            predefined["PredefinedMetricType"] if predefined else (custom or {}).get("MetricName", "custom metric")
        )
        status.target_value = tracking["TargetValue"]
        status.scale_out_cooldown = tracking.get("ScaleOutCooldown")
        status.scale_in_cooldown = tracking.get("ScaleInCooldown")
        status.scale_in_disabled = tracking.get("DisableScaleIn", False)
    return status


def _scaling_activities(clients: AwsClients, resource_id: str) -> list[ScalingActivity]:
    """The last ACTIVITIES_SHOWN activities (AWS keeps six weeks of them), newest first.

    One page of ACTIVITIES_SHOWN: the API reference does not state the order of the answer, so the page is
    sorted by start time here (https://docs.aws.amazon.com/autoscaling/application/APIReference/
    API_DescribeScalingActivities.html). Activities that did not scale (IncludeNotScaledActivities) are left
    out: at min_tasks with a quiet site they would repeat and push the real ones off the list.
    """
    answer = clients.autoscaling.describe_scaling_activities(
        ServiceNamespace=ECS_NAMESPACE,
        ResourceId=resource_id,
        ScalableDimension=DESIRED_COUNT,
        MaxResults=ACTIVITIES_SHOWN,
    )
    activities = sorted(answer["ScalingActivities"], key=lambda activity: activity["StartTime"], reverse=True)
    return [_activity(activity) for activity in activities]


def _activity(activity: ScalingActivityTypeDef) -> ScalingActivity:
    end = activity.get("EndTime")
    return ScalingActivity(
        start=_utc(activity["StartTime"]),
        end=_utc(end) if end is not None else "",
        status=activity["StatusCode"],
        description=activity["Description"],
        cause=activity["Cause"],
        message=activity.get("StatusMessage", ""),
    )


def _read_alarms(clients: AwsClients, state: State, report: StatusReport) -> None:
    """The deployment alarms the state records: ECS rolls a rollout back while one of them is in ALARM."""
    names = [ids["name"] for step in DEPLOYMENT_ALARM_STEPS if (ids := state.get(step)) is not None]
    if not names:
        return
    try:
        alarms = clients.cloudwatch.describe_alarms(AlarmNames=names)["MetricAlarms"]  # metric alarms by default
    except ClientError as exc:
        report.alarms_error = _refusal(exc)
        return
    found = {alarm["AlarmName"]: alarm for alarm in alarms}
    for name in names:
        alarm = found.get(name)
        if alarm is None:
            report.alarms.append(AlarmStatus(name, error="not found"))
            continue
        updated = alarm.get("StateUpdatedTimestamp")
        report.alarms.append(
            AlarmStatus(
                name,
                state=alarm.get("StateValue", ""),
                reason=alarm.get("StateReason", ""),
                since=_utc(updated) if updated is not None else "",
            )
        )


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _revision(task_definition_arn: str) -> str:
    return task_definition_arn.rsplit("/", 1)[-1]


def _refusal(exc: ClientError) -> str:
    return f"{error_code(exc)}: {error_message(exc)}"


# ---------------------------------------------------------------- logs


def read_logs(
    store: StateStore,
    aws: Connection | None,
    since: str,
    *,
    follow: bool,
    write: Callable[[FilteredLogEventTypeDef], None],
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], float] = time.time,
) -> str:
    """logs.py's events, each handed to `write` (with `follow`, until interrupted); returns the log group's name."""
    start = parse_since(since, now())  # a bad --since is refused before any AWS call
    state, clients = open_stack(store, aws, "read the logs of")
    group = state.get("log-group")
    if group is None:
        raise StateFileError(
            "The state file records no log group",
            where=store.where,
            todo="Run provision.py to create the stack's log group",
        )
    with _aws_answers("logs:FilterLogEvents", f"log group {group['name']}"):
        tail(clients.logs, group["name"], start, follow=follow, write=write, sleep=sleep, now=now)
    return group["name"]


def parse_since(text: str, now: float) -> int:
    """`--since` as epoch milliseconds: a duration back from `now`, or an ISO time (UTC when it has no offset)."""
    duration = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", text)
    if duration is not None:
        seconds = int(duration.group(1)) * SINCE_UNITS[duration.group(2)]
        return max(0, int((now - seconds) * 1000))
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise SettingsError(
            f"--since '{text}' is neither a duration nor an ISO time",
            where="logs.py's command line",
            todo="Write a duration such as 30s, 10m, 2h, 1d or 1w, or a time such as 2025-01-31T09:00:00Z",
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0, int(moment.timestamp() * 1000))


def log_events(
    logs: CloudWatchLogsClient, group: str, start_ms: int, page_size: int | None = None
) -> Iterator[FilteredLogEventTypeDef]:
    """Every event of the group from `start_ms` on, page after page, each page in time order."""
    config: PaginatorConfigTypeDef = {"PageSize": page_size} if page_size else {}
    for page in logs.get_paginator("filter_log_events").paginate(
        logGroupName=group, startTime=start_ms, PaginationConfig=config
    ):
        # AWS interleaves the streams; moto returns them one after another unless asked.
        yield from sorted(page.get("events", []), key=lambda event: event.get("timestamp", 0))


def tail(
    logs: CloudWatchLogsClient,
    group: str,
    start_ms: int,
    *,
    follow: bool,
    write: Callable[[FilteredLogEventTypeDef], None],
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], float] = time.time,
    poll_seconds: float = FOLLOW_SECONDS,
    page_size: int | None = None,
) -> None:
    """Write the events from `start_ms` on; with `follow`, poll until interrupted, each event once."""
    printed: dict[str, int] = {}  # event id -> timestamp, for the events the next poll can return again
    window = start_ms
    while True:
        asked_at = int(now() * 1000)
        for event in log_events(logs, group, window, page_size):
            key = event.get("eventId") or f"{event.get('logStreamName')}/{event.get('timestamp')}"
            if key in printed:
                continue
            printed[key] = event.get("timestamp", 0)
            write(event)
        if not follow:
            return
        window = max(start_ms, asked_at - LATE_EVENT_MS)
        printed = {key: stamp for key, stamp in printed.items() if stamp >= window}
        sleep(poll_seconds)
