"""The overlap in `runner.provision`: what runs while the image builds, and what waits for what.

Behaviour, not timings: a fake builder (no Docker engine) records when and on which
thread its build and push run, and a botocore `before-call` hook records every AWS
call with its thread and time. With `parallel=True` the later steps' calls must fall
inside the build, the task definition must come after the push and run its digest,
and the load balancer's wait must come after the service was created; with
`parallel=False` everything happens in order on the main thread.

So that the overlap shows however fast or slow the machine is, two races are pinned
(each for at most 10 s): the first CreateVpc is held until the build has started (the
background thread hashes website/ and asks ECR for a token first, and a warm emulator can
beat it to CreateVpc), and the parallel build lasts at least 0.5 s and, beyond that,
until the runner has created the cluster (the last step before the one that needs the
image). A runner that did not overlap would run the whole build before CreateVpc, and
reach CreateCluster only after it: the assertions below would fail.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, NoReturn

import pytest
from botocore.model import OperationModel

from deployer import runner
from deployer.images import BuildSpec, ImageBuilder, RegistryAuth
from deployer.steps.base import StepContext
from deployer.steps.loadbalancer import LoadBalancerStep
from tests.conftest import RecordingOutput
from tests.rollouts import Rollout
from tests.scans import answer_scans

DIGEST = "sha256:" + "ab" * 32
MAIN = "MainThread"
BACKGROUND = "deployer-background"
MIN_BUILD_SECONDS = 0.5
HOLD_CAP_SECONDS = 10.0


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
    gates: dict[str, threading.Event] = field(default_factory=dict)  # an operation waits for its event once
    balancer_waits: list[tuple[str, float]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def before_call(self, model: OperationModel, params: dict[str, Any], **_: Any) -> None:
        gate = self.gates.pop(model.name, None)
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

    def first(self, operation: str) -> Call:
        matches = [call for call in self.calls if call.operation == operation]
        assert matches, f"no {operation} call was made; made: {sorted({c.operation for c in self.calls})}"
        return matches[0]


def _no_engine() -> NoReturn:
    raise AssertionError("the fake builder must never talk to a Docker engine")


class SlowBuilder(ImageBuilder):
    """A build and push that take time and report when and where they ran; no Docker."""

    def __init__(self, hold_until: threading.Event | None = None) -> None:
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
            self.hold_until.wait(HOLD_CAP_SECONDS)
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
    recorder = Recorder()
    clients = ctx.clients
    for client in clients.every():
        client.meta.events.register("before-call", recorder.before_call)
    original_wait = LoadBalancerStep.wait

    def recorded_wait(step: LoadBalancerStep, ctx: StepContext, ids: dict[str, str]) -> None:
        recorder.balancer_waits.append((threading.current_thread().name, time.monotonic()))
        original_wait(step, ctx, ids)

    monkeypatch.setattr(LoadBalancerStep, "wait", recorded_wait)
    yield recorder


def built(ctx: StepContext, recorder: Recorder, *, parallel: bool) -> SlowBuilder:
    builder = SlowBuilder(hold_until=recorder.event("CreateCluster") if parallel else None)
    recorder.gates["CreateVpc"] = builder.started
    # The image is built from website/ (its Dockerfile must exist, as validate checks); the build arguments
    # do not matter: the fake builder never runs Docker. A chosen BASE_IMAGE keeps deployer/baseimage.py
    # from asking the engine whether it holds the Dockerfile's default base.
    settings = replace(ctx.settings, image=None, build_args={"BASE_IMAGE": "fake/base:1"})
    answer_scans(ctx.clients.ecr)  # scan on push answers clean, as AWS would (moto never scans on push)
    runner.provision(replace(ctx, images=builder, settings=settings), parallel=parallel)
    assert builder.builds == 1
    assert builder.pushes == 1
    return builder


def test_later_steps_call_aws_while_the_image_builds(ctx: StepContext, serving: Rollout, recorder: Recorder) -> None:
    builder = built(ctx, recorder, parallel=True)
    assert builder.build_thread.startswith(BACKGROUND)
    assert recorder.first("GetAuthorizationToken").thread.startswith(BACKGROUND)
    for operation in ("CreateVpc", "CreateSubnet", "CreateRole", "CreateTargetGroup", "CreateLoadBalancer"):
        call = recorder.first(operation)
        assert call.thread == MAIN, f"{operation} ran on {call.thread}"
        assert builder.build_started < call.at < builder.build_ended, (
            f"{operation} at {call.at - builder.build_started:+.3f} s from the build's start, which lasted "
            f"{builder.build_ended - builder.build_started:.3f} s"
        )


def test_the_task_definition_waits_for_the_push_and_runs_the_pushed_digest(
    ctx: StepContext, serving: Rollout, recorder: Recorder
) -> None:
    builder = built(ctx, recorder, parallel=True)
    register = recorder.first("RegisterTaskDefinition")
    assert register.at > builder.push_ended
    sent = register.body["containerDefinitions"][0]["image"]
    repository = ctx.ids("repository")["uri"]
    assert sent == f"{repository}@{DIGEST}"
    assert builder.pushed == [sent]
    registered = ctx.clients.ecs.describe_task_definition(taskDefinition=ctx.ids("task-definition")["arn"])
    assert registered["taskDefinition"]["containerDefinitions"][0]["image"] == sent
    assert ctx.state.outputs["serving_revision"] == ctx.ids("task-definition")["arn"]


def test_the_load_balancer_wait_is_deferred_until_the_service_exists(
    ctx: StepContext, serving: Rollout, recorder: Recorder
) -> None:
    built(ctx, recorder, parallel=True)
    assert len(recorder.balancer_waits) == 1
    thread, waited_at = recorder.balancer_waits[0]
    assert thread == MAIN
    assert waited_at > recorder.first("CreateService").at
    assert waited_at > recorder.first("CreateListener").at


def test_sequential_builds_first_and_waits_in_place(ctx: StepContext, serving: Rollout, recorder: Recorder) -> None:
    builder = built(ctx, recorder, parallel=False)
    assert builder.build_thread == MAIN
    assert builder.push_ended < recorder.first("CreateVpc").at
    assert not any(call.thread.startswith(BACKGROUND) for call in recorder.calls)
    assert len(recorder.balancer_waits) == 1
    _thread, waited_at = recorder.balancer_waits[0]
    assert recorder.first("CreateLoadBalancer").at < waited_at < recorder.first("CreateListener").at
    assert waited_at < recorder.first("CreateService").at
