"""The showing half of status.py and logs.py: text and JSON from what deployer/observe.py read.

The commands' entry points live here, as thin glue: `show_status` and `show_logs` ask
deployer/observe.py for the report or the events (every AWS read, the state file and
the identity check happen there) and hand the result to the one terminal writer,
`Output.result`: the JSON document as it is, or the text lines built here
(`render_status`, `format_event`). Only the two entry points reach deployer/observe.py;
the rendering reads nothing, so it can be tested from a hand-made `StatusReport` alone.

status: text is the resources with a live column for the parts that can be unwell,
the service's details, its autoscaling (min..max, policies, last activities), the
deployment alarms' states, and the site URL's answer; JSON is the `StatusReport` as a
document (`asdict`).

plan: the cost estimate's text (`render_cost`) and JSON (`cost_document`) for provision.py
--dry-run; under autoscaling a line that grows with the tasks shows its figure at min_tasks..max_tasks.

logs: text is one line an event (time in UTC, stream, message); with --output json,
one document `{"log_group": …, "events": […]}`, or with --follow one JSON object a
line as the events arrive (a document at the end would never come).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from deployer import cost
from deployer.clients import Connection
from deployer.observe import (
    AlarmStatus,
    LoadBalancerStatus,
    ScalingPolicyStatus,
    ScalingStatus,
    ServiceStatus,
    StatusReport,
    TargetHealth,
    read_logs,
    read_status,
)
from deployer.output import Output
from deployer.probe import Probe, UrlAnswer
from deployer.settings import Settings
from deployer.state import StateStore

if TYPE_CHECKING:
    from mypy_boto3_logs.type_defs import FilteredLogEventTypeDef

ID_COLUMN = 40  # longer identifiers (ARNs) overflow the column rather than push the live column far right
COST_ITEM_COLUMN = 24


def show_status(store: StateStore, aws: Connection | None, output: Output, probe: Probe | None = None) -> int:
    """status.py: the report as text lines or one JSON document."""
    report = read_status(store, aws, probe)
    output.result(asdict(report), render_status(report))
    return 0


def show_logs(
    store: StateStore,
    aws: Connection | None,
    since: str,
    follow: bool,
    output: Output,
    *,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], float] = time.time,
) -> int:
    """logs.py: events as text lines; with --output json one document (or, with --follow, one object a line)."""
    events: list[dict[str, object]] = []

    def write(event: FilteredLogEventTypeDef) -> None:
        if output.mode == "json" and not follow:
            events.append(event_json(event))
        elif output.mode == "json":
            output.result(event_json(event))
        else:
            output.result({}, [format_event(event)], quiet=format_event(event))

    group = read_logs(store, aws, since, follow=follow, write=write, sleep=sleep, now=now)
    if output.mode == "json" and not follow:
        output.result({"log_group": group, "events": events})
    return 0


# ---------------------------------------------------------------- status


def render_status(report: StatusReport) -> list[str]:
    """The text form: the resources with a live column where it matters, then the service's details."""
    live: dict[str, str] = {}
    if report.load_balancer is not None:
        live["load-balancer"] = _balancer_line(report.load_balancer)
    if report.target_health is not None:
        live["target-group"] = _targets_line(report.target_health)
    if report.service is not None:
        live["service"] = report.service.error or _service_line(report.service)
    width = max((len(line.id) for line in report.resources if len(line.id) <= ID_COLUMN), default=0)
    lines = [f"Stack '{report.stack}' in {report.region} (account {report.account_id})", ""]
    if not report.resources:
        lines.append("  The state file records no resources.")
    for line in report.resources:
        lines.append(f"  {line.step:<22} {line.id:<{width}}  {live.get(line.step, '')}".rstrip())
    if report.service is not None and report.service.error is None:
        lines += ["", *_service_details(report.service)]
    if report.scaling is not None:
        lines += ["", *_scaling_lines(report.scaling, report.service)]
    if report.alarms or report.alarms_error is not None:
        lines += ["", *_alarm_lines(report)]
    if report.certificate is not None or report.certificate_error is not None:
        lines += ["", _certificate_line(report)]
    if report.url is not None:
        lines += ["", f"Site {report.url.url}: {_url_line(report.url)}"]
    return lines


def _scaling_lines(scaling: ScalingStatus, service: ServiceStatus | None) -> list[str]:
    """Autoscaling's range (beside the service's counts), policies and last activities; "unknown" with the
    refusal where a read failed."""
    if scaling.error is not None:
        return [f"Autoscaling: unknown ({scaling.error})"]
    if not scaling.enabled:
        return ["Autoscaling: off (no scalable target: the service keeps its desired count)"]
    suspended = f"; suspended: {', '.join(scaling.suspended)}" if scaling.suspended else ""
    now = (
        f", now {service.desired} desired / {service.running} running"
        if service is not None and service.error is None
        else ""
    )
    lines = [f"Autoscaling: {scaling.min_tasks}..{scaling.max_tasks} tasks{now}{suspended}"]
    if scaling.policies_error is not None:
        lines.append(f"  policies         unknown ({scaling.policies_error})")
    elif not scaling.policies:
        lines.append("  policies         none (the count stays where it is)")
    lines += [f"  policy           {_policy_line(policy)}" for policy in scaling.policies]
    if scaling.activities_error is not None:
        lines.append(f"  activities       unknown ({scaling.activities_error})")
    elif not scaling.activities:
        lines.append("  activities       none in the last six weeks")
    for activity in scaling.activities:
        lines.append(f"  activity         {activity.start} {activity.status}: {activity.description}")
        lines.append(f"                   {activity.cause}")
        if activity.status not in ("Successful", "Pending", "InProgress") and activity.message:
            lines.append(f"                   {activity.message}")
    return lines


def _policy_line(policy: ScalingPolicyStatus) -> str:
    if policy.target_value is None:
        return f"{policy.name}: {policy.policy_type}"
    cooldowns = ", ".join(
        f"scale-{way} cooldown {'AWS default' if seconds is None else f'{seconds} s'}"
        for way, seconds in (("out", policy.scale_out_cooldown), ("in", policy.scale_in_cooldown))
    )
    scale_in = ", scale-in disabled" if policy.scale_in_disabled else ""
    return f"{policy.name}: {policy.metric} at {policy.target_value:g}, {cooldowns}{scale_in}"


def _alarm_lines(report: StatusReport) -> list[str]:
    if report.alarms_error is not None:
        return [f"Deployment alarms: unknown ({report.alarms_error})"]
    width = max(len(alarm.name) for alarm in report.alarms)
    return ["Deployment alarms:", *(f"  {alarm.name:<{width}}  {_alarm_state(alarm)}" for alarm in report.alarms)]


def _alarm_state(alarm: AlarmStatus) -> str:
    if alarm.error is not None:
        return alarm.error
    since = f" since {alarm.since}" if alarm.since else ""
    reason = f": {alarm.reason}" if alarm.state != "OK" and alarm.reason else ""
    return f"{alarm.state}{since}{reason}"


def _certificate_line(report: StatusReport) -> str:
    certificate = report.certificate
    if certificate is None:
        return f"Certificate: {report.certificate_error}"
    expiry = f", expires {certificate.not_after}" if certificate.not_after else ""
    failure = f" ({certificate.failure_reason})" if certificate.failure_reason else ""
    return (
        f"Certificate for {certificate.domain}: {certificate.status}{failure}{expiry}, "
        f"used by {certificate.in_use_by} resource(s)"
    )


def _service_line(service: ServiceStatus) -> str:
    return f"{service.status}, {service.running} running / {service.desired} desired / {service.pending} pending"


def _service_details(service: ServiceStatus) -> list[str]:
    image = service.image or "?"
    if service.image_differs:
        image += f"  (the state records {service.recorded_image})"
    lines = [
        f"Service {service.name} in cluster {service.cluster}: {_service_line(service)}",
        f"  task definition  {service.task_definition or '?'}",
        f"  image            {image}",
        f"  digest           {service.digest or 'not recorded (an image given with --image runs as named)'}",
    ]
    if not service.deployments:
        lines.append("  deployments      none reported")
    for deployment in service.deployments:
        failed = f", {deployment.failed} failed" if deployment.failed else ""
        lines.append(
            f"  deployment       {deployment.status:<8} {deployment.task_definition}  "
            f"{deployment.rollout_state or '?'}: {deployment.running} running / {deployment.desired} desired / "
            f"{deployment.pending} pending{failed}"
        )
        if deployment.rollout_state == "FAILED" and deployment.rollout_reason:
            lines.append(f"                   {deployment.rollout_reason}")
    return lines


def _targets_line(health: TargetHealth) -> str:
    if health.error:
        return health.error
    if not health.counts:
        return "no targets registered"
    counts = ", ".join(f"{count} {state}" for state, count in health.counts.items())
    return f"targets: {counts}" + (f" ({'; '.join(health.reasons)})" if health.reasons else "")


def _balancer_line(balancer: LoadBalancerStatus) -> str:
    if balancer.error:
        return balancer.error
    return balancer.state + (f" ({balancer.reason})" if balancer.reason else "")


def _url_line(answer: UrlAnswer) -> str:
    if answer.status is not None:
        return f"HTTP {answer.status} in {answer.seconds:.2f} s"
    return f"no answer: {answer.error}"


# ---------------------------------------------------------------- plan


def render_cost(settings: Settings, lines: list[cost.CostLine]) -> list[str]:
    """The estimate as text: one line an item, then the total; a range low..high where the tasks scale."""
    tasks = cost.Tasks(settings)
    low, high = cost.total_range(lines)
    figures = [_figure(line.monthly_usd, line.high) for line in lines]
    total = _figure(low, high)
    width = max(len(figure) for figure in (*figures, total))
    scaling = (
        f"   at {tasks.text()} tasks: what a month costs depends on how long autoscaling runs each count"
        if tasks.scaling
        else ""
    )
    return [
        f"\nEstimated monthly cost (an estimate: {cost.PRICES_SOURCE}; data transfer, free tiers and taxes left out):",
        *(
            f"  {line.item:<{COST_ITEM_COLUMN}} {figure:<{width}}   {line.basis}"
            for line, figure in zip(lines, figures, strict=True)
        ),
        f"  {'total':<{COST_ITEM_COLUMN}} {total:<{width}}{scaling}".rstrip(),
    ]


def _figure(low: float, high: float) -> str:
    figure = f"${low:>8.2f}"
    return figure if round(high, 2) == round(low, 2) else f"{figure}..${high:.2f}"


def cost_document(settings: Settings, lines: list[cost.CostLine]) -> dict[str, object]:
    """The estimate as JSON: `monthly_usd` at min_tasks (the whole figure without autoscaling) and
    `monthly_usd_max` at max_tasks, for each line and the total; `tasks` the counts they are priced at."""
    tasks = cost.Tasks(settings)
    low, high = cost.total_range(lines)
    return {
        "source": cost.PRICES_SOURCE,
        "lines": [
            {"item": line.item, "monthly_usd": line.monthly_usd, "basis": line.basis, "monthly_usd_max": line.high}
            for line in lines
        ],
        "monthly_usd": round(low, 2),
        "monthly_usd_max": round(high, 2),
        "tasks": {"min": tasks.low, "max": tasks.high},
    }


# ---------------------------------------------------------------- logs


def format_event(event: FilteredLogEventTypeDef) -> str:
    stamp = datetime.fromtimestamp(0, UTC) + timedelta(milliseconds=event.get("timestamp", 0))
    when = stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"
    return f"{when} {event.get('logStreamName', '-')} {event.get('message', '').rstrip()}"


def event_json(event: FilteredLogEventTypeDef) -> dict[str, object]:
    return {
        "timestamp": event.get("timestamp", 0),
        "stream": event.get("logStreamName", ""),
        "message": event.get("message", "").rstrip(),
        "id": event.get("eventId", ""),
    }
