"""The stack as a graph (deployer/graph.py) and the steps' `needs` it is built from.

Three parts:

* the graph's own checks and answers, on made-up graphs;
* the real stack's graph under several settings: no cycle, every need names a step, deployer/stack.py's order
  is a topological order (so the sequential runner already respects every need), its reverse is a teardown
  order, and today's background joins (deployer/runner.py provision) stay where they were;
* the needs are complete: during real in-process runs (plans, provision, a re-run, another domain, settings
  switched off and on, a lost state, teardown) every read a step makes of another step's record (`State.get`,
  under `StepContext.ids` and `recorded`) or of its creation time (`StepContext.fresh`) is recorded against the
  step that made it, and must name one of that step's own declared needs (directly: reaching it through another
  need is not enough, since a graph runner may run the two at once); and the needs suffice: the stack provisions
  and tears down in other orders the graph allows.
"""

from __future__ import annotations

import functools
import hashlib
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import pytest

from deployer import graph, runner
from deployer.graph import CriticalPath, Graph, GraphError, build
from deployer.images import RegistryAuth
from deployer.settings import Settings
from deployer.stack import build_steps, steps_by_name
from deployer.state import Ids, State
from deployer.steps.base import Step, StepContext
from tests import test_policy
from tests.conftest import DOMAIN, IMAGE, REGION, ZONE, hosted_zone, lost_state, planning
from tests.inventory import added, inventory
from tests.rollouts import Rollout
from tests.route53_emulation import emulate_route53
from tests.scans import answer_scans

T = TypeVar("T")

STACK = [step.name for step in build_steps()]

# --- the graph itself, on made-up steps -------------------------------------------------------------------


def test_an_unknown_need_is_refused_naming_the_step_and_the_name() -> None:
    with pytest.raises(GraphError) as refused:
        build([("vpc", ()), ("subnet", ("vpc", "vcp"))])
    assert "Step 'subnet' needs 'vcp'" in str(refused.value)
    assert "vpc, subnet" in str(refused.value)  # the steps there are, to spot the typo


def test_a_cycle_is_refused_naming_it_in_the_order_each_needs_the_next() -> None:
    with pytest.raises(GraphError) as refused:
        build([("a", ()), ("b", ("a", "d")), ("c", ("b",)), ("d", ("c",)), ("e", ("d",))])
    assert "cycle: b -> d -> c -> b" in str(refused.value)


def test_a_step_needing_itself_and_two_steps_of_one_name_are_refused() -> None:
    with pytest.raises(GraphError, match="Step 'a' needs itself"):
        build([("a", ("a",))])
    with pytest.raises(GraphError, match="Two steps are named a"):
        build([("a", ()), ("b", ()), ("a", ())])


def test_the_order_puts_needs_first_and_breaks_ties_in_the_given_order() -> None:
    made_up = build([("c", ("b",)), ("a", ()), ("b", ()), ("d", ("a",))])
    assert made_up.order() == ["a", "b", "c", "d"]  # c waits for b; a, b and then d in their given order
    assert made_up.violations(["a", "b", "c", "d"]) == []
    assert made_up.violations(["c", "a", "b"]) == [("c", "b")]
    assert made_up.violations(["d", "c", "b", "a"]) == [("d", "a"), ("c", "b")]
    assert made_up.violations(["a", "d"]) == []  # b and c did not run: there is nothing of theirs to respect
    assert made_up.violations(["a", "c"]) == [("c", "b")]  # c ran without its need


def test_a_step_that_started_before_its_need_finished_is_named() -> None:
    """What a parallel run's recorded events are checked with: starting after the need started is not enough."""
    made_up = build([("vpc", ()), ("role", ()), ("subnet", ("vpc",))])
    good = [("start", "vpc"), ("start", "role"), ("finish", "vpc"), ("start", "subnet"), ("finish", "subnet")]
    assert made_up.started_early(good) == []
    overlapping = [("start", "vpc"), ("start", "subnet"), ("finish", "vpc"), ("finish", "subnet")]
    assert made_up.started_early(overlapping) == [("subnet", "vpc")]
    with pytest.raises(ValueError, match="not 'begin'"):
        made_up.started_early([("begin", "vpc")])


def test_the_reversed_graph_deletes_a_step_once_every_step_needing_it_is_gone() -> None:
    made_up = build([("vpc", ()), ("subnet", ("vpc",)), ("role", ()), ("service", ("subnet", "role"))])
    reverse = made_up.reversed()
    assert reverse.names == ("service", "role", "subnet", "vpc")
    assert dict(reverse.needs) == {"vpc": ("subnet",), "subnet": ("service",), "role": ("service",), "service": ()}
    assert reverse.order() == ["service", "role", "subnet", "vpc"]
    assert made_up.dependents() == {"vpc": ("subnet",), "subnet": ("service",), "role": ("service",), "service": ()}


def test_restricting_keeps_what_a_left_out_step_ordered() -> None:
    """A need on a step left out (unwanted, or already deleted) passes on to what that step needed."""
    made_up = build([("gateway", ()), ("table", ("gateway",)), ("service", ("table",)), ("alarm", ())])
    kept = made_up.restricted(["gateway", "service", "alarm"])
    assert kept.names == ("gateway", "service", "alarm")
    assert dict(kept.needs) == {"gateway": (), "service": ("gateway",), "alarm": ()}
    assert kept.reversed().order() == ["alarm", "service", "gateway"]
    with pytest.raises(GraphError, match="Not steps of the graph: nat"):
        made_up.restricted(["gateway", "nat"])


def test_levels_group_the_steps_by_their_longest_chain_of_needs() -> None:
    made_up = build([("a", ()), ("b", ("a",)), ("c", ()), ("d", ("b", "c")), ("e", ("c",))])
    assert made_up.levels() == [["a", "c"], ["b", "e"], ["d"]]
    assert build([]).levels() == []


def test_earliest_starts_and_the_critical_path_follow_the_slowest_needs() -> None:
    made_up = build([("vpc", ()), ("role", ()), ("subnet", ("vpc",)), ("service", ("subnet", "role"))])
    durations = {"vpc": 2.0, "role": 5.0, "subnet": 1.0, "service": 3.0}
    assert made_up.earliest_starts(durations) == {"vpc": 0.0, "role": 0.0, "subnet": 2.0, "service": 5.0}
    assert made_up.critical_path(durations) == CriticalPath(8.0, ("role", "service"))
    # A deferred wait (a tail) counts toward the end only: the subnet's tail of 10 s ends the run, the service
    # did not wait for it.
    assert made_up.critical_path(durations, tails={"subnet": 10.0}) == CriticalPath(13.0, ("vpc", "subnet"))
    assert build([]).critical_path({}) == CriticalPath(0.0, ())


def test_a_bounded_schedule_runs_at_most_that_many_steps_at_once() -> None:
    made_up = build([("a", ()), ("b", ()), ("c", ()), ("d", ("a",))])
    durations = {"a": 1.0, "b": 4.0, "c": 2.0, "d": 1.0}
    assert made_up.schedule(durations, 1) == {"a": 0.0, "b": 1.0, "c": 5.0, "d": 7.0}  # the sequential runner
    # Two at once: a and b; at 1 s a's slot goes to c, ready since the start and earlier than d; d at 3 s.
    assert made_up.schedule(durations, 2) == {"a": 0.0, "b": 0.0, "c": 1.0, "d": 3.0}
    assert made_up.schedule(durations, math.inf) == made_up.earliest_starts(durations)
    # a and b finish together at 2 s: both slots go to x and w (freed by b, earlier in the order) before z, ready
    # since the start; not z to a's slot before b's finish is seen.
    tied = build([("a", ()), ("b", ()), ("x", ("b",)), ("w", ("b",)), ("z", ())])
    ties = {"a": 2.0, "b": 2.0, "x": 1.0, "w": 1.0, "z": 1.0}
    assert tied.schedule(ties, 2) == {"a": 0.0, "b": 0.0, "x": 2.0, "w": 2.0, "z": 3.0}
    with pytest.raises(ValueError, match="No duration for d"):
        made_up.schedule({"a": 1.0, "b": 1.0, "c": 1.0}, 2)
    with pytest.raises(ValueError, match="slots must be at least 1"):
        made_up.schedule(durations, 0)


# --- the real stack's graph ---------------------------------------------------------------------------------

# Today's runner (deployer/runner.py provision) joins a background step when the first later step naming it in
# `needs` comes up. Where each was joined before every step declared its needs, and must still be.
JOIN_POINTS = {"image": "task-definition", "certificate": "validation-record", "validation-record": "https-listener"}

VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "private": {"network": "private"},
    "domain": {"domain": DOMAIN},
    "domain, own certificate": {
        "domain": DOMAIN,
        "certificate_arn": f"arn:aws:acm:{REGION}:123456789012:certificate/00000000-0000-0000-0000-000000000000",
    },
    "autoscaling with memory": {"max_tasks": 4, "scale_memory_percent": 70},
    "no container insights": {"container_insights": False},
    "log key": {"log_kms_key": "create"},
    "no flow logs": {"flow_logs": False},
    "everything": {
        "network": "private",
        "domain": DOMAIN,
        "max_tasks": 4,
        "scale_memory_percent": 70,
        "log_kms_key": "create",
    },
}


def variant(name: str) -> Settings:
    return Settings(stack="test-site", region=REGION, image=IMAGE, **VARIANTS[name])


# The steps that need no other step: everything else names at least one.
ROOTS = (
    "repository",
    "certificate",
    "vpc",
    "nat-address",
    "log-key",
    "flow-logs-role",
    "execution-role",
    "task-role",
    "cluster",
    "shortfall-alarm",
)


def test_the_whole_stack_is_a_graph_in_the_order_of_deployer_stack() -> None:
    """No cycle, every need names a step, and each step comes after all it needs in deployer/stack.py: today's
    sequential runner already respects every need, and its teardown (the order reversed) every reverse need."""
    whole = graph.stack_graph()
    assert whole.names == tuple(STACK)
    assert whole.violations(STACK) == []
    assert whole.order() == STACK
    assert whole.reversed().order() == list(reversed(STACK))
    assert [name for name in STACK if not whole.needs[name]] == list(ROOTS)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_each_settings_graph_orders_the_wanted_steps_as_the_stack_does(name: str) -> None:
    settings = variant(name)
    steps = build_steps()
    wanted = [step.name for step in steps if step.wanted(settings)]
    forwards = graph.provision_graph(steps, settings)
    assert forwards.order() == wanted
    assert set(forwards.names) == set(wanted)
    assert graph.teardown_graph(steps, wanted).order() == list(reversed(wanted))


@pytest.mark.parametrize("name", list(VARIANTS))
def test_the_slow_early_steps_are_first_needed_where_the_list_runner_joined_them(name: str) -> None:
    """The image, the certificate and its validation record ran beside the list runner's steps until the step
    that joined them; in the graph the first later step needing each is that same step."""
    settings = variant(name)
    steps = [step for step in build_steps() if step.wanted(settings)]
    for position, step in enumerate(steps):
        if step.name not in JOIN_POINTS:
            continue
        joined = next((later.name for later in steps[position + 1 :] if step.name in later.needs), None)
        assert joined == JOIN_POINTS[step.name], f"{step.name} would be joined at {joined}"


# --- the needs are complete: every read during real runs is a declared need -----------------------------------

# The step methods the runner calls; a read made while one of them runs is the step's.
STEP_METHODS = ("check", "find", "find_recorded", "find_unrecorded", "create", "converge", "wait", "delete", "retire")


@dataclass
class ReadLog:
    """The other steps whose records each step reads, attributed through the step's running method (per
    thread: the image, the certificate and its validation record run in background threads)."""

    reads: dict[str, set[str]] = field(default_factory=dict)
    unanswered: set[tuple[str, str]] = field(default_factory=set)  # (step, read) that found no record
    _running: threading.local = field(default_factory=threading.local)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def during(self, step: str, method: Callable[..., T]) -> Callable[..., T]:
        """`method`, with `step` the running step (for this thread) while it runs."""

        @functools.wraps(method)
        def running(*args: Any, **kwargs: Any) -> T:
            stack: list[str] = self._running.__dict__.setdefault("steps", [])
            stack.append(step)
            try:
                return method(*args, **kwargs)
            finally:
                stack.pop()

        return running

    def note(self, name: str, found: bool) -> None:
        stack: list[str] = self._running.__dict__.get("steps", [])
        if not stack or stack[-1] == name:
            return  # the runner's own reads, or a step reading its own record
        with self._lock:
            self.reads.setdefault(stack[-1], set()).add(name)
            if not found:
                self.unanswered.add((stack[-1], name))

    def clear(self) -> None:
        with self._lock:
            self.reads.clear()
            self.unanswered.clear()

    def undeclared(self) -> dict[str, list[str]]:
        """Each step's reads that are not among its declared needs."""
        needs = {step.name: set(step.needs) for step in build_steps()}
        return {step: sorted(read - needs[step]) for step, read in self.reads.items() if read - needs[step]}


@pytest.fixture
def read_log(monkeypatch: pytest.MonkeyPatch) -> ReadLog:
    """Every read of a record and of a creation time, attributed to the step whose method made it. The runner
    gets steps whose methods say which step runs (`runner.build_steps`, `runner.steps_by_name`)."""
    log = ReadLog()
    get, fresh = State.get, StepContext.fresh

    def recorded_get(state: State, step: str) -> Ids | None:
        found = get(state, step)
        log.note(step, found is not None)
        return found

    def recorded_fresh(ctx: StepContext, within: float, *steps: str) -> bool:
        for step in steps:
            log.note(step, True)  # asked whether it was made a moment ago: "no" is an answer too
        return fresh(ctx, within, *steps)

    def instrumented() -> list[Step[Any]]:
        steps = build_steps()
        for step in steps:
            for method in STEP_METHODS:
                setattr(step, method, log.during(step.name, getattr(step, method)))
        return steps

    monkeypatch.setattr(State, "get", recorded_get)
    monkeypatch.setattr(StepContext, "fresh", recorded_fresh)
    monkeypatch.setattr(runner, "build_steps", instrumented)
    monkeypatch.setattr(runner, "steps_by_name", lambda: {step.name: step for step in instrumented()})
    return log


class PushedBuilder(test_policy.PushedBuilder):
    """test_policy's builder (no Docker), with a digest per tag: a changed site pushes another image."""

    def push(self, repository: str, tag: str, auth: RegistryAuth) -> str:
        self.pushes += 1
        return "sha256:" + hashlib.sha256(tag.encode()).hexdigest()


@pytest.fixture
def settings() -> Settings:
    """Every optional step wanted: the image built here, a private network, a domain in the account's zone
    (managed DNS), autoscaling on CPU and memory, the stack's own log key, flow logs, Container Insights."""
    return Settings(
        stack="test-site",
        region=REGION,
        build_args={"BASE_IMAGE": "fake/base:1"},
        network="private",
        domain=DOMAIN,
        max_tasks=4,
        scale_memory_percent=70,
        log_kms_key="create",
    )


@pytest.fixture
def everything(ctx: StepContext, serving: Rollout) -> StepContext:
    """The run: the fake engine, a clean scan on push, the domain's hosted zone, Route 53 answering as AWS."""
    hosted_zone(ctx.clients)
    emulate_route53(ctx.clients.route53)
    answer_scans(ctx.clients.ecr)
    return replace(ctx, images=PushedBuilder())


def switched_off(settings: Settings) -> Settings:
    """Every optional step off: what a switch back removes (the scaling first, the rest once the site serves)."""
    return replace(
        settings,
        network="public",
        domain=None,
        max_tasks=None,
        scale_memory_percent=None,
        log_kms_key=None,
        flow_logs=False,
        container_insights=False,
    )


@pytest.fixture
def phases(read_log: ReadLog) -> Callable[[str, Callable[[], object]], None]:
    """Run a phase with the log cleared first; after it, each read must be among the reader's declared needs."""

    def phase(name: str, run: Callable[[], object]) -> None:
        read_log.clear()
        run()
        assert read_log.reads, f"{name}: no read recorded (the instrumentation broke?)"
        assert read_log.undeclared() == {}, f"{name}: reads of steps not in the reader's needs"

    return phase


def test_every_read_while_provisioning_and_tearing_down_is_a_declared_need(
    everything: StepContext, read_log: ReadLog, phases: Callable[[str, Callable[[], object]], None]
) -> None:
    phases("plan of an empty account", lambda: runner.plan(planning(everything)))
    phases("provision", lambda: runner.provision(everything))
    # The instrumentation sees the reads that matter, background threads included.
    assert {"cluster", "task-definition", "load-balancer", "target-group"} <= read_log.reads["service"]
    assert "repository" in read_log.reads["image"]  # in the background thread
    assert "certificate" in read_log.reads["validation-record"]  # in the background thread
    assert "certificate" in read_log.reads["https-listener"]
    phases("re-run", lambda: runner.provision(everything))
    phases("plan of the stack", lambda: runner.plan(planning(everything)))
    phases("lost state", lambda: runner.discover(lost_state(everything)))
    # Another domain: a new certificate, validation record and alias, the old ones retired at the end.
    moved = replace(everything, settings=replace(everything.settings, domain=f"shop.{ZONE}"))
    reports: list[runner.RunReport] = []
    phases("domain changed", lambda: reports.append(runner.provision(moved)))
    retired = [line.step for line in reports[0].steps if line.outcome == "retired"]
    assert retired == ["dns-alias", "validation-record", "certificate"]
    phases("teardown", lambda: runner.teardown(moved))
    assert read_log.reads["dns-alias"] == {"load-balancer"}
    assert read_log.unanswered == set(), "a delete read the record of a step already deleted"
    assert everything.state.resources == []


def test_every_read_while_switching_the_optional_steps_off_is_a_declared_need(
    everything: StepContext, read_log: ReadLog, phases: Callable[[str, Callable[[], object]], None]
) -> None:
    """Converging the rest away from them, then removing them (scaling first, the rest in teardown order)."""
    runner.provision(everything)
    off = replace(everything, settings=switched_off(everything.settings))
    phases("switched off", lambda: runner.provision(off))
    removed = {name for name in STACK if everything.state.get(name) is None}
    assert removed == {name for name in STACK if not steps_by_name()[name].wanted(off.settings)}
    # On again, but for the domain: its certificate would be requested with the first request's idempotency token,
    # which moto still maps to the deleted certificate (a KeyError inside moto's RequestCertificate).
    again = replace(everything, settings=replace(everything.settings, domain=None))
    phases("switched on again", lambda: runner.provision(again))


def latest_first(allowed: Graph) -> list[str]:
    """An order the graph allows that differs most from its own: among the ready steps, the latest one first."""
    return Graph(tuple(reversed(allowed.names)), allowed.needs).order()


def test_the_needs_suffice_to_provision_and_tear_down_in_another_order(everything: StepContext) -> None:
    """Provisioned in another order the graph allows (the alarm, cluster, roles and key before the VPC; the
    certificate and the image late) the stack is the one the runner makes: its re-run changes nothing. Torn
    down in another order the reversed graph allows (the route tables and the NAT gateway right after the
    service, the roles and log groups after them), everything goes. Moto checks some of AWS's rules on the
    way (a VPC with subnets, a group in use), not all (an NLB in a VPC without an internet gateway)."""
    before = inventory(everything.clients)
    steps = steps_by_name()
    forwards = graph.provision_graph(build_steps(), everything.settings)
    order = latest_first(forwards)
    assert order != forwards.order()
    assert forwards.violations(order) == []
    for name in order:
        _, ids, _ = runner.provision_step(everything, steps[name])
        steps[name].wait(everything, ids)
    rerun = runner.provision(everything)
    assert {line.outcome for line in rerun.steps} == {"unchanged"}

    backwards = graph.teardown_graph(build_steps(), [record.step for record in everything.state.resources])
    order = latest_first(backwards)
    assert order != backwards.order()
    for name in order:
        steps[name].delete(everything, everything.ids(name))
        everything.ledger.forget(name)
    assert everything.state.resources == []
    assert added(before, inventory(everything.clients)) == {}
