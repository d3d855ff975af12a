"""Provision and teardown: walk the stack's graph, save the state after each step, report.

provision: the graph of the wanted steps (deployer/graph.py, checked before any AWS call) is walked by
deployer/parallel.py: every step whose needs have finished starts, up to `Scheduler.slots` at once. Each step
`find`s its resource, `create`s it if nothing was found, else `converge`s it, records its identifiers (saved at
once, one save at a time, each in its place in the stack's order), and `wait`s unless told not to; a deferred
wait (`Step.wait_deferred`) runs beside the steps after it. Before the walk, what a setting turned off and must
go first (`Step.removed_first`) is removed; after it, the rest of what the settings turned off (in teardown
order, once everything has converged away from it and the site serves, e.g. the NAT gateway after the tasks
moved to public subnets), then what replaced resources replaced (`Step.retire`). Then the site URL.

teardown: the recorded resources' graph reversed: each resource is deleted once every recorded step that
needs it is gone, several at once, and forgotten (saved at once), so an interrupted teardown resumes where it
stopped.

Any AWS refusal becomes an `AwsCallError` naming the step and the resource; several failing steps of one run
become one `StepsFailedError` naming each.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from deployer import parallel
from deployer.clients import error_code, error_message, refused_once_stopped
from deployer.errors import AwsCallError, AwsSetupError, DeployerError, ForeignResourceError
from deployer.graph import Graph, provision_graph, teardown_graph
from deployer.parallel import DEFAULT_SCHEDULER, Scheduler
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


def provision(ctx: StepContext, wait: bool = True, scheduler: Scheduler = DEFAULT_SCHEDULER) -> RunReport:
    """Every wanted step once its needs are done, several at once (deployer/parallel.py), then the clean-up.

    The graph is built and checked first (a cycle or an unknown need is refused before any AWS call). A step
    whose wait only matters for serving (`Step.wait_deferred`: the NLB turning active, the alias, the rollout)
    hands its wait to a tail, which the steps needing it do not wait for. An interrupt ends the run within
    about a second: an image build is told to stop (nothing is pushed after it), the running steps record what
    AWS made for them, and no thread is waited for longer (deployer/parallel.py).
    """
    every = build_steps()
    graph = provision_graph(every, ctx.settings)
    check_zones(ctx)
    steps = [step for step in every if step.wanted(ctx.settings)]
    check_steps(ctx, steps)
    run = replace(ctx, stop=threading.Event(), order=tuple(step.name for step in every))
    removed = _remove_unwanted(run, first=True)
    lines: dict[str, StepReport] = {}
    work = partial(_provision_work, run, {step.name: step for step in steps}, wait, lines)
    _walk(run, graph, work, scheduler, frozenset(step.name for step in steps if step.cancellable))
    report = RunReport(steps=[*removed, *(lines[step.name] for step in steps)])
    report.steps.extend(_remove_unwanted(run))
    report.steps.extend(_retire_superseded(run, steps))
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


def _walk(
    ctx: StepContext, graph: Graph, work: parallel.Work, scheduler: Scheduler, abandon: frozenset[str] = frozenset()
) -> None:
    """Run the graph; when the run stops (a failure, an interrupt) no step's AWS call leaves any more and an image
    build is told to stop too."""
    cancel = ctx.images.cancel if ctx.images is not None else lambda: None
    with refused_once_stopped(ctx.clients, ctx.stop):
        parallel.run(graph, work, scheduler, parallel.Stopping(ctx.stop, ctx.output.live, cancel, abandon))


def _provision_work(
    ctx: StepContext, steps: dict[str, Step[Any]], wait: bool, lines: dict[str, StepReport], name: str
) -> Callable[[], None] | None:
    """One step on a worker thread: its line is announced as it finishes; a deferred wait comes back as a tail."""
    step = steps[name]
    deferred = wait and step.wait_deferred
    line, ids = _run_step(ctx, step, wait and not deferred)
    lines[name] = _announce(ctx, line)
    return partial(_finish_wait, ctx, step, ids, lines) if deferred else None


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


def _finish_wait(ctx: StepContext, step: Step[Any], ids: Ids, lines: dict[str, StepReport]) -> None:
    """A deferred wait (a tail): the step's line gains the time waited."""
    started = ctx.clock.now()
    with _explained(step, ctx.state):
        step.wait(ctx, ids)
    waited = ctx.clock.now() - started
    ctx.say(f"{step.name:<22} {'ready':<9} ({waited:.1f}s waiting)")
    line = lines[step.name]
    lines[step.name] = replace(line, seconds=line.seconds + waited, wait_seconds=line.wait_seconds + waited)


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

    For a lost state file: each found resource takes its place in the stack's order, as provision records it.
    Every step is looked for, wanted or not: a resource a setting has since turned off is recorded too, so
    provision removes it and teardown deletes it. A resource with one of the stack's names but without its
    tags is not the stack's: it is skipped (never recorded, so never deleted) and reported; the skipped ones
    are returned.
    """
    steps = build_steps()
    order = tuple(step.name for step in steps)
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
                ctx.state.record(step.name, found.ids, order)
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
    _say_waves(ctx, provision_graph(build_steps(), ctx.settings))
    return report


def _say_waves(ctx: StepContext, graph: Graph) -> None:
    """The graph's order for the dry run: the steps by wave (a step is in the wave after the last of its needs;
    each wave's steps may run at once, up to `parallelism` of them)."""
    waves = graph.levels()
    ctx.say(f"Order: {len(waves)} waves, up to {ctx.settings.parallelism} steps at once")
    for number, wave in enumerate(waves, 1):
        ctx.say(f"  {number:>2}. {', '.join(wave)}")


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


def teardown(ctx: StepContext, scheduler: Scheduler = DEFAULT_SCHEDULER) -> RunReport:
    """Delete every recorded resource once every recorded step that needs it is gone (the graph reversed),
    several at once, forgetting each as it goes (saved at once), so an interrupted teardown resumes where it
    stopped. A step this version does not know is refused before anything is deleted."""
    known = steps_by_name()
    records = teardown_order(ctx.state)
    for record in records:
        if record.step not in known:
            raise DeployerError(
                f"The state file records a step '{record.step}' this version does not know",
                where="state file, resources",
                todo="Use the version of the tool that wrote the state file, or delete that resource by hand "
                "and remove its entry",
            )
    graph = teardown_graph(build_steps(), [record.step for record in records])
    run = replace(ctx, stop=threading.Event())
    lines: dict[str, StepReport] = {}
    recorded = {record.step: (known[record.step], record.ids) for record in records}
    _walk(run, graph, partial(_delete_work, run, recorded, lines), scheduler)
    return RunReport(steps=[lines[record.step] for record in records])


def _delete_work(
    ctx: StepContext, recorded: dict[str, tuple[Step[Any], Ids]], lines: dict[str, StepReport], name: str
) -> None:
    """One recorded resource deleted on a worker thread, then forgotten."""
    step, ids = recorded[name]
    started = ctx.clock.now()
    with _explained(step, ctx.state):
        outcome = step.delete(ctx, ids) or "deleted"
    ctx.ledger.forget(name)
    lines[name] = _announce(ctx, StepReport(name, outcome, ctx.clock.now() - started, primary(ids)))


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
