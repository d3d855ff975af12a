"""The overlap in `runner.provision`: what runs while the image builds, and what waits for what.

Behaviour, not timings: a fake builder (no Docker engine) records when and on which
thread its build and push run, and a botocore `before-call` hook records every AWS
call with its thread and time. With the default scheduler, the other steps' calls must
fall inside the build, each on its step's thread (`deployer-step-<name>`), the task
definition must come after the push and run its digest, and the load balancer's wait (a
tail, `deployer-tail-load-balancer`) must not hold up the listener or the service; with
one slot (`Scheduler(slots=1)`) one step runs after another in the stack's order.

So that the overlap shows however fast or slow the machine is, three races are pinned
(each for at most 10 s): every call of each operation checked below is held until the
build has started (the image step starts only once the repository exists, and a warm
emulator can beat it to CreateVpc or CreateRole), the build lasts at least 0.5 s and, beyond
that, until the other steps have made those calls, and the load balancer's wait lasts until
the service was created. A runner that did not overlap would run the whole build before CreateVpc (or
every other call after it); one that waited for the load balancer in place would create
the service only after the wait: the assertions below would fail.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NoReturn

import pytest
from botocore.model import OperationModel

from deployer import runner
from deployer.graph import provision_graph
from deployer.images import BuildSpec, ImageBuilder, RegistryAuth
from deployer.parallel import DEFAULT_SCHEDULER, Scheduler
from deployer.stack import build_steps
from deployer.steps.base import StepContext
from deployer.steps.loadbalancer import LoadBalancerStep
from tests.conftest import RecordingOutput
from tests.rollouts import Rollout
from tests.scans import answer_scans

DIGEST = "sha256:" + "ab" * 32
STEP_THREAD = "deployer-step-"
BALANCER_TAIL = "deployer-tail-load-balancer"
MIN_BUILD_SECONDS = 0.5
HOLD_CAP_SECONDS = 10.0


# Calls of steps that do not need the image, and the steps that make them: each comes while it builds.
DURING_THE_BUILD = {
    "CreateVpc": ("vpc",),
    "CreateSubnet": ("subnet-1", "subnet-2"),
    "CreateRole": ("flow-logs-role", "execution-role", "task-role"),
    "CreateTargetGroup": ("target-group",),
    "CreateLoadBalancer": ("load-balancer",),
}


@dataclass(frozen=True)
class Call:
    operation: str
    thread: str
    at: float
    body: dict[str, Any]


@dataclass
class Recorder:
    """Every AWS call, in order, with its thread and time; and the load balancer's waits."""

    calls: list[Call] = field(default_factory=list)
    seen: dict[str, threading.Event] = field(default_factory=dict)
    # Every call of an operation waits for its event (once set, at once): several steps make the same call
    # (CreateRole for three roles), and a second one must not slip past while the first is held.
    gates: dict[str, threading.Event] = field(default_factory=dict)
    balancer_waits: list[tuple[str, float, float]] = field(default_factory=list)  # thread, start, end
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def before_call(self, model: OperationModel, params: dict[str, Any], **_: Any) -> None:
        with self._lock:
            gate = self.gates.get(model.name)
        if gate is not None:
            gate.wait(HOLD_CAP_SECONDS)
        body = params.get("body", b"")
        parsed = json.loads(body) if isinstance(body, bytes) and body.startswith(b"{") else {}
        with self._lock:
            self.calls.append(Call(model.name, threading.current_thread().name, time.monotonic(), parsed))
        self.event(model.name).set()

    def event(self, operation: str) -> threading.Event:
        with self._lock:
            return self.seen.setdefault(operation, threading.Event())

    def all_seen(self, operations: Sequence[str]) -> Callable[[float], bool]:
        """A wait (as `threading.Event.wait`) until every one of `operations` has been called."""

        def wait(cap: float) -> bool:
            ends = time.monotonic() + cap
            return all(self.event(operation).wait(max(0.0, ends - time.monotonic())) for operation in operations)

        return wait

    def first(self, operation: str) -> Call:
        matches = [call for call in self.calls if call.operation == operation]
        assert matches, f"no {operation} call was made; made: {sorted({c.operation for c in self.calls})}"
        return matches[0]


def _no_engine() -> NoReturn:
    raise AssertionError("the fake builder must never talk to a Docker engine")


class SlowBuilder(ImageBuilder):
    """A build and push that take time and report when and where they ran; no Docker."""

    def __init__(self, hold_until: Callable[[float], bool] | None = None) -> None:
        super().__init__(RecordingOutput(), connect=_no_engine)
        self.hold_until = hold_until
        self.build_started = self.build_ended = self.push_ended = 0.0
        self.build_thread = ""
        self.started = threading.Event()
        self.pushed: list[str] = []

    def registry_digest(self, reference: str, auth: RegistryAuth) -> str | None:
        return None  # never there: always build and push

    def build(self, spec: BuildSpec, reference: str) -> None:
        self.build_thread = threading.current_thread().name
        self.build_started = time.monotonic()
        self.started.set()
        time.sleep(MIN_BUILD_SECONDS)
        if self.hold_until is not None:
            self.hold_until(HOLD_CAP_SECONDS)
        self.build_ended = time.monotonic()
        self.builds += 1

    def push(self, repository: str, tag: str, auth: RegistryAuth) -> str:
        time.sleep(0.05)
        self.push_ended = time.monotonic()
        self.pushes += 1
        self.pushed.append(f"{repository}@{DIGEST}")
        return DIGEST


@pytest.fixture
def recorder(ctx: StepContext, monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    """Records every call; the load balancer's wait is recorded and lasts until the service was created."""
    recorder = Recorder()
    clients = ctx.clients
    for client in clients.every():
        client.meta.events.register("before-call", recorder.before_call)
    original_wait = LoadBalancerStep.wait

    def recorded_wait(step: LoadBalancerStep, ctx: StepContext, ids: dict[str, str]) -> None:
        started = time.monotonic()
        recorder.event("CreateService").wait(HOLD_CAP_SECONDS)
        original_wait(step, ctx, ids)
        recorder.balancer_waits.append((threading.current_thread().name, started, time.monotonic()))

    monkeypatch.setattr(LoadBalancerStep, "wait", recorded_wait)
    yield recorder


def built(ctx: StepContext, recorder: Recorder, scheduler: Scheduler = DEFAULT_SCHEDULER) -> SlowBuilder:
    overlapping = scheduler.slots > 1
    builder = SlowBuilder(hold_until=recorder.all_seen(list(DURING_THE_BUILD)) if overlapping else None)
    for operation in DURING_THE_BUILD:
        recorder.gates[operation] = builder.started
    # The image is built from website/ (its Dockerfile must exist, as validate checks); the build arguments
    # do not matter: the fake builder never runs Docker. A chosen BASE_IMAGE keeps deployer/baseimage.py
    # from asking the engine whether it holds the Dockerfile's default base.
    settings = replace(ctx.settings, image=None, build_args={"BASE_IMAGE": "fake/base:1"})
    answer_scans(ctx.clients.ecr)  # scan on push answers clean, as AWS would (moto never scans on push)
    runner.provision(replace(ctx, images=builder, settings=settings), scheduler=scheduler)
    assert builder.builds == 1
    assert builder.pushes == 1
    return builder


def test_other_steps_call_aws_while_the_image_builds(ctx: StepContext, serving: Rollout, recorder: Recorder) -> None:
    builder = built(ctx, recorder)
    assert builder.build_thread == f"{STEP_THREAD}image"
    assert recorder.first("GetAuthorizationToken").thread == f"{STEP_THREAD}image"
    for operation, steps in DURING_THE_BUILD.items():
        call = recorder.first(operation)
        assert call.thread in {f"{STEP_THREAD}{step}" for step in steps}, f"{operation} ran on {call.thread}"
        assert builder.build_started < call.at < builder.build_ended, (
            f"{operation} at {call.at - builder.build_started:+.3f} s from the build's start, which lasted "
            f"{builder.build_ended - builder.build_started:.3f} s"
        )


def test_the_task_definition_waits_for_the_push_and_runs_the_pushed_digest(
    ctx: StepContext, serving: Rollout, recorder: Recorder
) -> None:
    builder = built(ctx, recorder)
    register = recorder.first("RegisterTaskDefinition")
    assert register.at > builder.push_ended
    assert register.thread == f"{STEP_THREAD}task-definition"
    sent = register.body["containerDefinitions"][0]["image"]
    repository = ctx.ids("repository")["uri"]
    assert sent == f"{repository}@{DIGEST}"
    assert builder.pushed == [sent]
    registered = ctx.clients.ecs.describe_task_definition(taskDefinition=ctx.ids("task-definition")["arn"])
    assert registered["taskDefinition"]["containerDefinitions"][0]["image"] == sent
    assert ctx.state.outputs["serving_revision"] == ctx.ids("task-definition")["arn"]


def test_the_load_balancer_wait_holds_up_neither_the_listener_nor_the_service(
    ctx: StepContext, serving: Rollout, recorder: Recorder
) -> None:
    built(ctx, recorder)
    assert len(recorder.balancer_waits) == 1
    thread, started, ended = recorder.balancer_waits[0]
    assert thread == BALANCER_TAIL
    assert recorder.first("CreateLoadBalancer").at < started < recorder.first("CreateService").at
    assert recorder.first("CreateListener").at < ended
    assert recorder.first("CreateService").at < ended


def test_one_slot_runs_one_step_after_another_in_the_stacks_order(
    ctx: StepContext, serving: Rollout, recorder: Recorder
) -> None:
    """The image is built and pushed before the VPC is asked for; each step's calls come together, on its
    thread, in the graph's order; the load balancer's wait is still a tail (outside the slot)."""
    events: list[tuple[str, str]] = []
    builder = built(ctx, recorder, Scheduler(slots=1, observe=lambda event, name: events.append((event, name))))
    order = provision_graph(build_steps(), replace(ctx.settings, image=None)).order()
    assert events == [(event, name) for name in order for event in ("start", "finish")]
    assert builder.build_thread == f"{STEP_THREAD}image"
    assert builder.push_ended < recorder.first("CreateVpc").at

    steps_calling: list[str] = []  # the step of each call, repeats collapsed; tails left out
    for call in recorder.calls:
        step = call.thread.removeprefix(STEP_THREAD)
        if call.thread.startswith(STEP_THREAD) and step not in steps_calling[-1:]:
            steps_calling.append(step)
    assert steps_calling == [name for name in order if name in steps_calling]

    assert len(recorder.balancer_waits) == 1
    thread, started, ended = recorder.balancer_waits[0]
    assert thread == BALANCER_TAIL
    assert recorder.first("CreateLoadBalancer").at < started
    assert recorder.first("CreateService").at < ended
