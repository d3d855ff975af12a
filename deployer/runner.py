"""Provision and teardown: walk the steps, save the state after each one, report.

provision: for each step in order, `find` the resource; `create` it if nothing
was found, else `converge` it; record its identifiers (saved at once); `wait`
unless told not to. A step the settings turn off (`Step.wanted`) is skipped on the
way, and if the state records its resource (a setting changed since), that resource
is deleted at the end, in teardown order, once everything else has converged away from it
and the site serves (e.g. the NAT gateway after the tasks moved to public subnets).
Then record the site URL.

teardown: for each resource the state records, in the stack's order reversed
(`teardown_order`), `delete` it and forget it (saved at once), so an interrupted
teardown resumes where it stopped.

Any AWS refusal becomes an `AwsCallError` naming the step and the resource.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from deployer.clients import error_code, error_message
from deployer.errors import AwsCallError, AwsSetupError, DeployerError, ForeignResourceError
from deployer.stack import build_steps, steps_by_name
from deployer.state import Ids, ResourceRecord, State
from deployer.steps.base import PLANNED, SUPERSEDED, PlannedDependencyError, Step, StepContext
from deployer.steps.ecs import ServiceStep
from deployer.steps.loadbalancer import site_url

# Where the time of a deploy goes, as a user asks it: each step belongs to one phase, and
# the wait for the site to serve is the "health" phase.
PHASES = {
    "network": (
        "vpc",
        "default-security-group",
        "subnet-1",
        "subnet-2",
        "internet-gateway",
        "route-table",
        "private-subnet-1",
        "private-subnet-2",
        "nat-address",
        "nat-gateway",
        "private-route-table",
        "network-acl",
        "default-network-acl",
        "nlb-security-group",
        "task-security-group",
    ),
    "IAM and logs": (
        "log-key",
        "log-group",
        "flow-log-group",
        "flow-logs-role",
        "flow-log",
        "execution-role",
        "task-role",
    ),
    "registry and image": ("repository", "image"),
    "load balancer": (
        "target-group",
        "redirect-target-group",
        "load-balancer",
        "listener",
        "https-listener",
    ),
    "certificate and DNS": ("certificate", "validation-record", "dns-alias"),
    "service rollout": ("cluster", "task-definition", "service"),
    "alarms and scaling": ("unhealthy-alarm", "shortfall-alarm", "scalable-target", "cpu-scaling", "memory-scaling"),
}
HEALTH_PHASE = "health"
# In the outputs with `certificate_arn`: the DNS record to create where the domain's DNS is managed.
DNS_RECORD = "dns_record"


@dataclass
class StepReport:
    step: str
    outcome: str
    seconds: float
    detail: str = ""
    wait_seconds: float = 0.0


@dataclass
class RunReport:
    steps: list[StepReport] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)

    def timings(self) -> dict[str, float]:
        """Seconds per phase; the service's wait counts as health, the load balancer's as load balancer."""
        phase_of = {step: phase for phase, steps in PHASES.items() for step in steps}
        totals = dict.fromkeys([*PHASES, HEALTH_PHASE], 0.0)
        for line in self.steps:
            phase = phase_of.get(line.step, "service rollout")
            if line.step == "service":
                totals[phase] += line.seconds - line.wait_seconds
                totals[HEALTH_PHASE] += line.wait_seconds
            else:
                totals[phase] += line.seconds
        return totals

    def to_json(self) -> dict[str, Any]:
        return {
            "steps": [vars(line) for line in self.steps],
            "outputs": self.outputs,
            "timings": {phase: round(seconds, 3) for phase, seconds in self.timings().items()},
        }


def provision(ctx: StepContext, wait: bool = True, parallel: bool = True) -> RunReport:
    """All steps in order; with `parallel`, a background step (the image) runs beside the others until a
    step needs it, and deferred waits (load balancer active, site serving) run last, where they overlap
    the rollout instead of holding up the steps after them.

    An interrupt or a failure while the background step runs ends the run at once: the background step
    is told to stop (nothing is pushed after it) and is not waited for (its thread is a daemon).
    """
    check_zones(ctx)
    steps = [step for step in build_steps() if step.wanted(ctx.settings)]
    check_steps(ctx, steps)
    lines: dict[str, StepReport] = {}
    deferred: list[tuple[Step[Any], Ids]] = []
    background: dict[str, Background] = {}
    removed = _remove_unwanted(ctx, first=True)
    try:
        for step in steps:
            for name in step.needs:
                if name in background:
                    lines[name] = _announce(ctx, background.pop(name).result())
            _raise_background_failure(background)
            if parallel and step.background:
                background[step.name] = Background(partial(_run_step, ctx, step, wait), step.name)
                continue
            if parallel and wait and step.wait_deferred:
                line, ids = _run_step(ctx, step, wait=False)
                deferred.append((step, ids))
            else:
                line, ids = _run_step(ctx, step, wait)
            lines[step.name] = _announce(ctx, line)
        for name, running in background.items():
            lines[name] = _announce(ctx, running.result())
    except BaseException:
        if background and ctx.images is not None:
            ctx.images.cancel()
        raise
    for step, ids in deferred:
        lines[step.name] = _finish_wait(ctx, step, ids, lines[step.name])
    report = RunReport(steps=[*removed, *(lines[step.name] for step in steps)])
    report.steps.extend(_remove_unwanted(ctx))
    report.steps.extend(_retire_superseded(ctx, steps))
    outputs = {key: value for key, value in ctx.state.outputs.items() if key != DNS_RECORD}
    outputs["url"] = site_url(ctx)
    if ctx.settings.certificate_arn is not None:  # DNS managed elsewhere: the record the user creates
        outputs[DNS_RECORD] = (
            f"{ctx.settings.domain} CNAME {ctx.ids('load-balancer')['dns_name']} (at a zone's apex, where no CNAME "
            "may stand: an ALIAS or ANAME record, if the DNS provider has one)"
        )
    if wait and ctx.settings.desired_count > 0:  # a parked stack (0 tasks) was not verified serving
        outputs = _served(outputs, ctx.ids("task-definition")["arn"])
    ctx.ledger.set_outputs(outputs)
    report.outputs = dict(ctx.state.outputs)
    return report


class Background:
    """One step running in a daemon thread: an interrupt never waits for it (a ThreadPoolExecutor would be
    joined before the interrupt got out, and again at interpreter exit)."""

    def __init__(self, work: Callable[[], tuple[StepReport, Ids]], name: str) -> None:
        self._work = work
        self._done = threading.Event()
        self._line: StepReport | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"deployer-background-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._line = self._work()[0]
        except BaseException as exc:  # handed to the main thread, which raises it
            self._error = exc
        finally:
            self._done.set()

    @property
    def failed(self) -> bool:
        return self._done.is_set() and self._error is not None

    def result(self) -> StepReport:
        """Wait for the step; a Ctrl-C meanwhile reaches the main thread at once (the wait polls)."""
        while not self._done.wait(0.1):
            pass
        if self._error is not None:
            raise self._error
        assert self._line is not None
        return self._line


def _raise_background_failure(background: dict[str, Background]) -> None:
    """A background step that failed is reported now, not when a later step would need it."""
    for running in background.values():
        if running.failed:
            running.result()


def _run_step(ctx: StepContext, step: Step[Any], wait: bool) -> tuple[StepReport, Ids]:
    started = ctx.clock.now()
    waited = 0.0
    with _explained(step, ctx.state):
        outcome, ids, changes = provision_step(ctx, step)
        if wait:
            wait_started = ctx.clock.now()
            step.wait(ctx, ids)
            waited = ctx.clock.now() - wait_started
    return StepReport(step.name, outcome, ctx.clock.now() - started, "; ".join(changes) or primary(ids), waited), ids


def _finish_wait(ctx: StepContext, step: Step[Any], ids: Ids, line: StepReport) -> StepReport:
    started = ctx.clock.now()
    with _explained(step, ctx.state):
        step.wait(ctx, ids)
    waited = ctx.clock.now() - started
    ctx.say(f"{step.name:<22} {'ready':<9} ({waited:.1f}s waiting)")
    return StepReport(line.step, line.outcome, line.seconds + waited, line.detail, line.wait_seconds + waited)


def _announce(ctx: StepContext, line: StepReport) -> StepReport:
    ctx.say(f"{line.step:<22} {line.outcome:<9} {line.detail} ({line.seconds:.1f}s)")
    return line


def _served(outputs: dict[str, str], revision: str) -> dict[str, str]:
    """Remember a revision that was verified serving; the one before it becomes the rollback target."""
    if outputs.get("serving_revision") == revision:
        return outputs
    previous = outputs.get("serving_revision")
    updated = {**outputs, "serving_revision": revision}
    if previous:
        updated["rollback_revision"] = previous
    return updated


def rollback(ctx: StepContext) -> RunReport:
    """Return the service to the last revision that served (pinned by digest; nothing is built) and verify it."""
    target = ctx.state.outputs.get("rollback_revision")
    if not target:
        raise DeployerError(
            "There is no earlier revision that was verified serving, so there is nothing to roll back to",
            where="state file, outputs.rollback_revision",
            todo="A revision becomes a rollback target once a later deploy has been verified (provision.py without "
            "--no-wait)",
        )
    step = ServiceStep()
    started = ctx.clock.now()
    with _explained(step, ctx.state):
        step.roll_to(ctx, ctx.ids("service"), target)
    ctx.ledger.set_outputs(_served(ctx.state.outputs, target))
    report = RunReport(outputs=dict(ctx.state.outputs))
    report.steps.append(StepReport("service", "rolled back", ctx.clock.now() - started, target))
    return report


def provision_step(ctx: StepContext, step: Step[Any]) -> tuple[str, Ids, list[str]]:
    """Find, then create or converge, one step; returns its outcome, identifiers and changes."""
    existing = step.find(ctx, ctx.state.get(step.name))
    if existing is None:
        ids = step.create(ctx)
        ctx.mark_created(step.name)
        ctx.remember(step.name, ids)
        return "created", ids, []
    ctx.remember(step.name, existing.ids)
    converged = step.converge(ctx, existing)
    ctx.remember(step.name, converged.ids)
    return ("updated" if converged.changes else "unchanged"), converged.ids, converged.changes


def _unwanted(ctx: StepContext) -> list[Step[Any]]:
    """Steps whose resource the state records but the settings no longer want, in teardown order."""
    known = steps_by_name()
    return [
        known[record.step]
        for record in teardown_order(ctx.state)
        if record.step in known and not known[record.step].wanted(ctx.settings)
    ]


def teardown_order(state: State) -> list[ResourceRecord]:
    """The recorded resources in the order they are deleted: the stack's order reversed (dependents first).

    Not the reverse of creation order: a resource added to an existing stack (the certificate when a domain
    is set, the redirect target group) is recorded after those that use it (the service, the listener).
    A step this version does not know goes first, where teardown refuses it before deleting anything.
    """
    order = {step.name: index for index, step in enumerate(build_steps())}
    return sorted(state.resources, key=lambda record: order.get(record.step, len(order)), reverse=True)


def _remove_unwanted(ctx: StepContext, first: bool = False) -> list[StepReport]:
    """Delete what a changed setting turned off (outcome "removed"), forgetting each as it goes: with `first`
    only the steps removed before the others run (`Step.removed_first`), else every one left."""
    removed: list[StepReport] = []
    for step in _unwanted(ctx):
        if first and not step.removed_first:
            continue
        ids = ctx.ids(step.name)
        started = ctx.clock.now()
        with _explained(step, ctx.state):
            step.delete(ctx, ids)
        ctx.ledger.forget(step.name)
        removed.append(_announce(ctx, StepReport(step.name, "removed", ctx.clock.now() - started, primary(ids))))
    return removed


def _retire_superseded(ctx: StepContext, steps: list[Step[Any]]) -> list[StepReport]:
    """Delete what replaced resources replaced (e.g. the certificate of the previous domain), in teardown order,
    now that nothing uses it any more (outcome "retired")."""
    retired: list[StepReport] = []
    for step in reversed(steps):
        ids = ctx.recorded(step.name)
        if ids is None or SUPERSEDED not in ids:
            continue
        started = ctx.clock.now()
        with _explained(step, ctx.state):
            ctx.remember(step.name, step.retire(ctx, ids))
        line = StepReport(step.name, "retired", ctx.clock.now() - started, _superseded_text(ids[SUPERSEDED]))
        retired.append(_announce(ctx, line))
    return retired


def _superseded_text(value: str) -> str:
    """What was retired, for the report: ARNs as recorded, or the names of a JSON list of records."""
    if not value.startswith("["):
        return value
    return ", ".join(primary(record) for record in json.loads(value))


def check_steps(ctx: StepContext, steps: list[Step[Any]]) -> None:
    """Each wanted step's own look before anything changes (Step.check), its failures named like a step's."""
    for step in steps:
        with _explained(step, ctx.state):
            step.check(ctx)


def check_zones(ctx: StepContext) -> None:
    """Before anything is created: zones named in the settings must exist in the region and run Fargate,
    and without them the region must have two zones to choose (deployer/zones.py). A stack whose subnets
    exist and that names no zones needs no look."""
    if ctx.settings.availability_zones or any(ctx.recorded(name) is None for name in ("subnet-1", "subnet-2")):
        with _explained(steps_by_name()["subnet-1"], ctx.state):
            ctx.availability_zones()


def discover(ctx: StepContext) -> list[ForeignResourceError]:
    """Add to the state every resource of the stack found by name or tags (in memory; the caller saves).

    For a lost state file: the resources end up in creation order, as provision would have recorded them.
    Every step is looked for, wanted or not: a resource a setting has since turned off is recorded too, so
    provision removes it and teardown deletes it. A resource with one of the stack's names but without its
    tags is not the stack's: it is skipped (never recorded, so never deleted) and reported; the skipped ones
    are returned.
    """
    steps = build_steps()
    skipped: list[ForeignResourceError] = []
    for step in steps:
        if ctx.state.get(step.name) is None:
            try:
                with _explained(step, ctx.state):
                    found = step.find_unrecorded(ctx)
            except ForeignResourceError as foreign:
                skipped.append(foreign)
                ctx.output.warn(f"not this stack's, left alone: {foreign.resource} {foreign.name} ({foreign.what})")
                continue
            if found is not None:
                ctx.state.record(step.name, found.ids)
    order = {step.name: index for index, step in enumerate(steps)}
    ctx.state.resources.sort(key=lambda record: order.get(record.step, len(order)))
    return skipped


def plan(ctx: StepContext) -> RunReport:
    """The dry run: what provision would do, per step, from read calls only.

    `ctx` is a dry-run context over a scratch ledger (see deployer/ledger.py): steps are
    found as usual and converge only describes; a step that is missing, or that needs a
    resource which would first be created, is planned as "create".
    """
    if not ctx.dry_run:
        raise RuntimeError("plan() needs a dry-run context")
    check_zones(ctx)
    wanted = [step for step in build_steps() if step.wanted(ctx.settings)]
    check_steps(ctx, wanted)
    report = RunReport()
    for step in wanted:
        with _explained(step, ctx.state):
            outcome, detail = _plan_step(ctx, step)
        report.steps.append(StepReport(step.name, outcome, 0.0, detail))
        ctx.say(f"{step.name:<22} {outcome:<9} {detail}")
    for step in _unwanted(ctx):
        detail = primary(ctx.state.get(step.name))
        report.steps.append(StepReport(step.name, "remove", 0.0, detail))
        ctx.say(f"{step.name:<22} {'remove':<9} {detail}")
    return report


def _plan_step(ctx: StepContext, step: Step[Any]) -> tuple[str, str]:
    try:
        existing = step.find(ctx, ctx.state.get(step.name))
        if existing is None:
            ctx.ledger.record(step.name, {PLANNED: "create"})
            return "create", step.resource
        converged = step.converge(ctx, existing)
    except PlannedDependencyError as planned:
        ctx.ledger.record(step.name, {PLANNED: "create"})
        return "create", f"{step.resource} (needs the new {planned.step})"
    ctx.ledger.record(step.name, converged.ids)
    if converged.changes:
        return "update", "; ".join(converged.changes)
    return "unchanged", primary(converged.ids)


def teardown(ctx: StepContext) -> RunReport:
    report = RunReport()
    known = steps_by_name()
    for record in teardown_order(ctx.state):
        step = known.get(record.step)
        if step is None:
            raise DeployerError(
                f"The state file records a step '{record.step}' this version does not know",
                where="state file, resources",
                todo="Use the version of the tool that wrote the state file, or delete that resource by hand "
                "and remove its entry",
            )
        started = ctx.clock.now()
        with _explained(step, ctx.state):
            outcome = step.delete(ctx, record.ids) or "deleted"
        ctx.ledger.forget(record.step)
        line = StepReport(step.name, outcome, ctx.clock.now() - started, primary(record.ids))
        report.steps.append(line)
        ctx.say(f"{line.step:<22} {line.outcome:<9} {line.detail} ({line.seconds:.1f}s)")
    return report


@contextmanager
def _explained(step: Step[Any], state: State) -> Iterator[None]:
    """Turn AWS and transport failures inside a step into a message naming the step and its resource.

    The identifiers are read from the state after the failure: a step may have created
    and recorded its resource before a later call of the same step failed.
    """
    try:
        yield
    except ClientError as exc:
        resource = f"{step.resource} {primary(state.get(step.name))}".strip()
        raise AwsCallError(step.name, resource, exc.operation_name, error_code(exc), error_message(exc)) from exc
    except BotoCoreError as exc:
        raise AwsSetupError(
            f"The AWS call failed before AWS answered: {exc}",
            where=f"step '{step.name}', {step.resource}",
            todo="Check the network (or the emulator at AWS_ENDPOINT_URL), then run the same command again",
        ) from exc


def primary(ids: Ids | None) -> str:
    if not ids:
        return ""
    for key in ("id", "name", "uri", "arn"):
        if key in ids:
            return ids[key]
    return next(iter(ids.values()), "")
