"""The graph runner (deployer/parallel.py): its rules on small graphs, then the real stack under random schedules.

* On synthetic graphs with fake work (no AWS): at most `slots` steps at once, tails outside the slots and
  waited for at the end; a step only after its needs; a failure stops new starts, lets the running steps end
  and is raised itself (one) or with every other one (`StepsFailedError`); a step told to stop that stops
  (`StoppedError`, or an abandoned step) is not a failure; an abandoned step is not waited for.
  The fake steps meet at barriers and events rather than sleeping, so that the rules hold however the
  threads are timed; every wait has a cap, so a runner that breaks a rule fails instead of hanging.
* The real stack against in-process moto, many seeds: each picks the number of slots and, at every start,
  which ready step goes first, and a botocore hook delays every call by a random 0-3 ms so the threads
  interleave differently. Whatever the schedule, no step starts before its needs finished, each runs once,
  a re-run changes nothing, and a random teardown removes everything.
* Ctrl-C with several steps in flight (provision.py against the moto server, 8 slots, a slow fake build as in
  tests/test_interrupt.py): exit 130 within 2 s, and every resource the emulator holds is in the state file.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from deployer import parallel, runner
from deployer.errors import DeployerError, StoppedError
from deployer.graph import Graph, build, provision_graph, teardown_graph
from deployer.parallel import Scheduler, StepsFailedError, Stopping
from deployer.stack import build_steps
from deployer.steps.base import StepContext
from tests.conftest import DOMAIN, CallLog, MotoServer, hosted_zone
from tests.inventory import added, inventory
from tests.rollouts import Rollout
from tests.route53_emulation import emulate_route53
from tests.test_interrupt import (
    FAKE_BASE,
    START_CAP_SECONDS,
    assert_ended_at_once,
    interrupt,
    slow_provision,
    wait_for,
)
from tests.test_scripts import server_clients

# The longest a fake step waits for the others it meets: a runner that breaks a rule fails, never hangs.
CAP_SECONDS = 5.0

Tail = Callable[[], None]


@dataclass
class Trace:
    """What the fake steps did, as they saw it: ("begin" | "end", step) in order, and how many ran at once."""

    events: list[tuple[str, str]] = field(default_factory=list)
    running: int = 0
    most: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        with self._lock:
            self.events.append(("begin", name))
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            yield
        finally:
            with self._lock:
                self.events.append(("end", name))
                self.running -= 1

    def began(self) -> list[str]:
        return [name for event, name in self.events if event == "begin"]

    def ended(self) -> list[str]:
        return [name for event, name in self.events if event == "end"]

    def as_runner_events(self) -> list[tuple[str, str]]:
        """In the shape `Graph.started_early` reads."""
        return [("start" if event == "begin" else "finish", name) for event, name in self.events]


@dataclass
class Heard:
    """What the scheduler's `observe` heard, and how often the run's `then` ran."""

    events: list[tuple[str, str]] = field(default_factory=list)
    stops: int = 0

    def observe(self, event: str, name: str) -> None:
        self.events.append((event, name))

    def then(self) -> None:
        self.stops += 1


def stopping(heard: Heard, abandon: Sequence[str] = ()) -> Stopping:
    return Stopping(threading.Event(), live=lambda _text: None, then=heard.then, abandon=frozenset(abandon))


def independent(*names: str) -> Graph:
    return build((name, ()) for name in names)


def failure(name: str) -> DeployerError:
    return DeployerError(f"step {name} failed", where=f"step '{name}'")


# --------------------------------------------------------------------------- the rules, on synthetic graphs


@pytest.mark.parametrize("slots", [1, 2, 3])
def test_at_most_slots_steps_run_at_once_and_tails_take_no_slot(slots: int) -> None:
    """`slots` steps meet at a barrier (fewer at once: it breaks); each hands back a tail that lasts until every
    step has ended (were tails counted, they would hold the slots and the tails would give up)."""
    names = [f"step-{index}" for index in range(3 * slots)]
    trace, heard = Trace(), Heard()
    barrier = threading.Barrier(slots, timeout=CAP_SECONDS)
    every_step_ended = threading.Event()
    tails_ended: list[str] = []

    def work(name: str) -> Tail:
        with trace.step(name):
            barrier.wait()
        if len(trace.ended()) == len(names):
            every_step_ended.set()

        def tail() -> None:
            if not every_step_ended.wait(CAP_SECONDS):
                raise AssertionError(f"the tail of {name} waited for steps that never ran")
            time.sleep(0.05)  # ends well after the last step: a run that did not wait for it would end first
            tails_ended.append(name)

        return tail

    parallel.run(independent(*names), work, Scheduler(slots=slots, observe=heard.observe), stopping(heard))

    assert trace.most == slots
    assert sorted(trace.began()) == sorted(names)
    assert sorted(tails_ended) == sorted(names)
    assert heard.stops == 0


# A graph with chains, fan-in and fan-out: (step, its needs) in order.
SHAPES = (
    ("a", ()),
    ("b", ()),
    ("c", ("a",)),
    ("d", ("a", "b")),
    ("e", ()),
    ("f", ("c", "d")),
    ("g", ("e",)),
    ("h", ("b", "g")),
    ("i", ("f", "h")),
    ("j", ()),
)


@pytest.mark.parametrize("seed", range(5))
def test_a_step_starts_only_once_its_needs_have_finished(seed: int) -> None:
    graph = build(SHAPES)
    chance = random.Random(seed)
    trace, heard = Trace(), Heard()
    delays = {name: chance.uniform(0, 0.01) for name in graph.names}

    def work(name: str) -> None:
        with trace.step(name):
            time.sleep(delays[name])

    scheduler = Scheduler(slots=chance.randint(1, 4), pick=chance.choice, observe=heard.observe)
    parallel.run(graph, work, scheduler, stopping(heard))

    assert graph.started_early(trace.as_runner_events()) == []
    assert graph.started_early(heard.events) == []
    assert sorted(trace.began()) == sorted(graph.names)
    assert [name for event, name in heard.events if event == "finish"] == trace.ended()


def test_one_step_after_another_with_one_slot_in_the_graphs_order() -> None:
    graph = build(SHAPES)
    trace, heard = Trace(), Heard()

    def work(name: str) -> None:
        with trace.step(name):
            pass

    parallel.run(graph, work, Scheduler(slots=1, observe=heard.observe), stopping(heard))

    expected = [(event, name) for name in graph.order() for event in ("start", "finish")]
    assert heard.events == expected
    assert trace.as_runner_events() == expected


@pytest.mark.parametrize("told_to_stop", ["returns", "raises StoppedError"])
def test_a_failure_stops_new_starts_lets_running_steps_end_and_is_raised_itself(told_to_stop: str) -> None:
    """`slow` and `bad` run at once; `bad` fails while `slow` runs; `slow` ends once told to stop (as a real
    step does at its next pause); the ready `later` and `slow`'s dependent never start."""
    graph = build((("slow", ()), ("bad", ()), ("later", ()), ("after-slow", ("slow",))))
    trace, heard = Trace(), Heard()
    halt = stopping(heard)
    both = threading.Barrier(2, timeout=CAP_SECONDS)
    error = failure("bad")

    def work(name: str) -> None:
        with trace.step(name):
            both.wait()
            if name == "bad":
                raise error
            if not halt.event.wait(CAP_SECONDS):
                raise AssertionError("slow was never told to stop")
            if told_to_stop == "raises StoppedError":
                raise StoppedError("another step of this run failed")

    with pytest.raises(DeployerError) as raised:
        parallel.run(graph, work, Scheduler(slots=2, observe=heard.observe), halt)

    assert raised.value is error
    assert sorted(trace.began()) == ["bad", "slow"]
    assert sorted(trace.ended()) == ["bad", "slow"]  # slow ended before the run did
    assert heard.stops == 1
    assert ("finish", "bad") not in heard.events
    assert (("finish", "slow") in heard.events) == (told_to_stop == "returns")


def test_several_failures_are_raised_together_naming_each_step() -> None:
    """`first` fails; `second` fails too while the run stops; `third` stops when told (not a failure)."""
    graph = independent("first", "second", "third")
    heard = Heard()
    halt = stopping(heard)
    together = threading.Barrier(3, timeout=CAP_SECONDS)
    errors = {"first": failure("first"), "second": failure("second")}

    def work(name: str) -> None:
        together.wait()
        if name == "first":
            raise errors[name]
        if not halt.event.wait(CAP_SECONDS):
            raise AssertionError(f"{name} was never told to stop")
        if name == "second":
            raise errors[name]
        raise StoppedError("another step of this run failed")

    with pytest.raises(StepsFailedError) as raised:
        parallel.run(graph, work, Scheduler(slots=3), halt)

    assert raised.value.failures == [("first", errors["first"]), ("second", errors["second"])]
    assert raised.value.exit_code == 2
    for name in ("first", "second"):
        assert f"step '{name}': {errors[name].message}" in raised.value.message
    assert "third" not in raised.value.message


def test_a_bug_is_raised_as_it_is_beside_an_explained_failure() -> None:
    graph = independent("explained", "bug")
    heard = Heard()
    together = threading.Barrier(2, timeout=CAP_SECONDS)
    bug = KeyError("no such key")

    def work(name: str) -> None:
        together.wait()
        if name == "bug":
            raise bug
        raise failure(name)

    with pytest.raises(KeyError) as raised:
        parallel.run(graph, work, Scheduler(slots=2), stopping(heard))
    assert raised.value is bug


def test_an_abandoned_step_is_not_waited_for_after_a_failure() -> None:
    """`image` (abandoned: it records nothing once told to stop) ignores the stop, like a build that is slow to
    end; the run raises `bad`'s failure while it still runs."""
    graph = independent("image", "bad")
    heard = Heard()
    building, release, image_ended = threading.Event(), threading.Event(), threading.Event()
    error = failure("bad")

    def work(name: str) -> None:
        if name == "bad":
            if not building.wait(CAP_SECONDS):
                raise AssertionError("the image never started")
            raise error
        building.set()
        try:
            release.wait(CAP_SECONDS)
        finally:
            image_ended.set()

    try:
        with pytest.raises(DeployerError) as raised:
            parallel.run(graph, work, Scheduler(slots=2), stopping(heard, abandon=["image"]))
        assert raised.value is error
        assert not image_ended.is_set(), "the run waited for the abandoned step"
    finally:
        release.set()
    assert image_ended.wait(CAP_SECONDS)


def test_a_step_that_is_not_abandoned_is_waited_for() -> None:
    """The same run without `abandon`: it ends only once `image` has ended."""
    graph = independent("image", "bad")
    heard = Heard()
    halt = stopping(heard)
    building, image_ended = threading.Event(), threading.Event()

    def work(name: str) -> None:
        if name == "bad":
            if not building.wait(CAP_SECONDS):
                raise AssertionError("the image never started")
            raise failure(name)
        building.set()
        halt.event.wait(CAP_SECONDS)
        time.sleep(0.05)  # slow to end once told: a run that did not wait would end first
        image_ended.set()

    with pytest.raises(DeployerError):
        parallel.run(graph, work, Scheduler(slots=2), halt)
    assert image_ended.is_set()


def test_an_abandoned_step_that_ends_as_told_is_not_a_failure() -> None:
    """`image` ends with its cancellation's error once told to stop, while `slow` still runs: only `bad`'s
    failure is raised, as it is."""
    graph = independent("image", "bad", "slow")
    heard = Heard()
    halt = stopping(heard, abandon=["image"])
    together = threading.Barrier(3, timeout=CAP_SECONDS)
    image_ended = threading.Event()
    error = failure("bad")

    def work(name: str) -> None:
        together.wait()
        if name == "bad":
            raise error
        if not halt.event.wait(CAP_SECONDS):
            raise AssertionError(f"{name} was never told to stop")
        if name == "image":
            image_ended.set()
            raise failure("image (cancelled)")
        if not image_ended.wait(CAP_SECONDS):  # slow ends after the image's cancellation reached the run
            raise AssertionError("the image never ended")
        time.sleep(0.05)

    with pytest.raises(DeployerError) as raised:
        parallel.run(graph, work, Scheduler(slots=3), halt)
    assert raised.value is error


@pytest.mark.parametrize("slots", [0, -1])
def test_a_scheduler_without_a_slot_is_refused(slots: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Scheduler(slots=slots)


# --------------------------------------------------------------------------- the real stack, random schedules

# Every kind of step that is cheap to emulate: the stack's own log key, flow logs (the default), a domain in
# the account's hosted zone (certificate, validation record, redirect target group, TLS listener, alias) and
# scaling on CPU and memory; the private network (NAT gateway) is left out. Every other seed deploys the
# default stack instead: its graph is another one (the same steps, fewer needs met by steps left out), and
# it costs half as much, which keeps the seeds many and the file quick.
SEEDS = range(25)
MAX_DELAY_SECONDS = 0.003


def random_scheduler(chance: random.Random, events: list[tuple[str, str]]) -> Scheduler:
    """Up to 8 slots (the runner allows 16; more than the widest wave's steps changes nothing), and a random
    ready step at each start; every start and finish recorded."""

    def observe(event: str, name: str) -> None:
        events.append((event, name))

    return Scheduler(slots=chance.randint(1, 8), pick=chance.choice, observe=observe)


def jitter(ctx: StepContext, chance: random.Random) -> None:
    """Every AWS call waits a random 0-3 ms first, so the threads of the steps interleave differently."""

    def delay(**_: Any) -> None:
        time.sleep(chance.uniform(0, MAX_DELAY_SECONDS))

    for client in ctx.clients.every():
        client.meta.events.register("before-call", delay)


def stack_for(seed: int, ctx: StepContext) -> StepContext:
    """The full stack (even seeds) in an account with the domain's hosted zone, or the default one (odd)."""
    if seed % 2:
        return ctx
    hosted_zone(ctx.clients)
    emulate_route53(ctx.clients.route53)
    full = replace(ctx.settings, log_kms_key="create", domain=DOMAIN, max_tasks=4, scale_memory_percent=70)
    return replace(ctx, settings=full)


def heard(kind: str, events: list[tuple[str, str]]) -> list[str]:
    """The steps of `kind` events, sorted (a step that ran twice shows twice)."""
    return sorted(name for event, name in events if event == kind)


@pytest.mark.parametrize("seed", SEEDS)
def test_any_schedule_respects_the_needs_converges_and_tears_down(
    seed: int, ctx: StepContext, serving: Rollout, calls: CallLog
) -> None:
    stack = stack_for(seed, ctx)
    chance = random.Random(seed)
    jitter(stack, random.Random(-seed))  # its own: called from the steps' threads
    before = inventory(stack.clients)
    forwards = provision_graph(build_steps(), stack.settings)

    events: list[tuple[str, str]] = []
    runner.provision(stack, scheduler=random_scheduler(chance, events))
    assert forwards.started_early(events) == []
    assert heard("start", events) == heard("finish", events) == sorted(forwards.names)

    calls.clear()
    again: list[tuple[str, str]] = []
    runner.provision(stack, scheduler=random_scheduler(chance, again))
    assert calls.changing() == []
    assert forwards.started_early(again) == []

    backwards = teardown_graph(build_steps(), [record.step for record in stack.state.resources])
    gone: list[tuple[str, str]] = []
    runner.teardown(stack, scheduler=random_scheduler(chance, gone))
    assert backwards.started_early(gone) == []
    assert heard("start", gone) == heard("finish", gone) == sorted(backwards.names)
    assert inventory(stack.clients) == before
    assert stack.state.resources == []


# --------------------------------------------------------------------------- Ctrl-C with several steps in flight

PARALLELISM = 8
# Resources recorded before the interrupt: by then the image builds and the other slots run the network's,
# the roles' and the log groups' steps.
RECORDED_BEFORE_THE_INTERRUPT = 4
# What AWS makes with the VPC (its default security group, network ACL and main route table): recorded by the
# steps that adopt them, later than they exist; not compared.
MADE_WITH_THE_VPC = ("security_groups", "network_acls", "route_tables")


def recorded_resources(state_path: Path) -> list[dict[str, Any]]:
    try:
        return list(json.loads(state_path.read_text())["resources"])
    except (FileNotFoundError, json.JSONDecodeError):
        return []


def test_ctrl_c_with_several_steps_in_flight_exits_at_once_and_the_state_holds_what_exists(
    server: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clients = server_clients(server, monkeypatch)
    before = inventory(clients)
    process, markers = slow_provision(server, tmp_path, f"parallelism = {PARALLELISM}\n{FAKE_BASE}")
    state_path = tmp_path / "state.json"
    try:
        wait_for(markers / "building", process, START_CAP_SECONDS)
        ends = time.monotonic() + START_CAP_SECONDS
        while len(recorded_resources(state_path)) < RECORDED_BEFORE_THE_INTERRUPT and time.monotonic() < ends:
            time.sleep(0.01)
    except BaseException:
        interrupt(process)
        raise
    ended = interrupt(process)
    assert_ended_at_once(ended)

    saved = recorded_resources(state_path)
    steps = [record["step"] for record in saved]
    assert len(steps) >= RECORDED_BEFORE_THE_INTERRUPT, steps
    assert "image" not in steps and "service" not in steps, f"the run was not interrupted half-way: {steps}"
    recorded = {value for record in saved for value in record["ids"].values()}
    new = added(before, inventory(clients))
    unrecorded = {kind: ids - recorded for kind, ids in new.items() if kind not in MADE_WITH_THE_VPC and ids - recorded}
    ours = {group["GroupId"] for group in clients.ec2.describe_security_groups()["SecurityGroups"]} - {
        group["GroupId"]
        for group in clients.ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["default"]}])[
            "SecurityGroups"
        ]
    }
    assert unrecorded == {}, f"exist but not recorded (recorded: {steps})"
    assert ours - before["security_groups"] <= recorded
