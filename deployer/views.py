"""The showing half of status.py and logs.py: text and JSON from what deployer/observe.py read.

The commands' entry points live here, as thin glue: `show_status` and `show_logs` ask
deployer/observe.py for the report or the events (every AWS read, the state file and
the identity check happen there) and hand the result to the one terminal writer,
`Output.result`: the JSON document as it is, or the text lines built here
(`render_status`, `format_event`). Only the two entry points reach deployer/observe.py;
the rendering reads nothing, so it can be tested from a hand-made `StatusReport` alone.

status: text is the resources with a live column for the parts that can be unwell,
the service's details, and the site URL's answer; JSON is the `StatusReport` as a
document (`asdict`).

logs: text is one line an event (time in UTC, stream, message); with --output json,
one document `{"log_group": …, "events": […]}`, or with --follow one JSON object a
line as the events arrive (a document at the end would never come).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from deployer.observe import LoadBalancerStatus, ServiceStatus, StatusReport, TargetHealth, read_logs, read_status
from deployer.output import Output
from deployer.probe import Probe, UrlAnswer

if TYPE_CHECKING:
    from mypy_boto3_logs.type_defs import FilteredLogEventTypeDef

ID_COLUMN = 40  # longer identifiers (ARNs) overflow the column rather than push the live column far right


def show_status(path: Path | None, output: Output, probe: Probe | None = None) -> int:
    """status.py: the report as text lines or one JSON document."""
    report = read_status(path, probe)
    output.result(asdict(report), render_status(report))
    return 0


def show_logs(
    path: Path | None,
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

    group = read_logs(path, since, follow=follow, write=write, sleep=sleep, now=now)
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
    if report.certificate is not None or report.certificate_error is not None:
        lines += ["", _certificate_line(report)]
    if report.url is not None:
        lines += ["", f"Site {report.url.url}: {_url_line(report.url)}"]
    return lines


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
