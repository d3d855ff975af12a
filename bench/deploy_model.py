"""Modelled time to a healthy site on AWS: the tool as it runs (overlapped) versus the same steps one after another.

What it measures
    moto answers every call at once, so a run against it says nothing about where
    the minutes of a real deploy go. This benchmark runs the real runner
    (`deployer.runner.provision(ctx, wait=True, ...)`, in this process, through
    the real library) against a moto `ThreadedMotoServer` on 127.0.0.1, with a
    latency model injected around every AWS call and around the image build and
    push, all scaled down 100 times (1 modelled minute = 0.6 s here). The time
    from the start of `provision` to its return -- the site verified serving:
    rollout COMPLETED, targets healthy, the URL answering 200 -- is scaled back up
    and reported as the modelled time on AWS, for:

    (a) parallel   -- `provision(ctx, wait=True, parallel=True)`, the tool as it
                      runs: the image is built and pushed in a background thread
                      from right after the repository step, the load balancer's
                      wait and the service's wait run last;
    (b) sequential -- `provision(ctx, wait=True, parallel=False)`: the same steps
                      one after another, every wait in place.

    The figures are a model, not a measurement of AWS: they say how much the
    overlap saves when AWS behaves as the table below says, and nothing more.

The latency model (modelled seconds, i.e. real-AWS seconds; divided by 100 when run)

    | What                               | Model | Source (docs/aws-behaviour.md, "Latency figures")        |
    |------------------------------------|-------|----------------------------------------------------------|
    | Read call (Describe/List/Get)      | 0.3 s | [1] assumption, checked against cdkd's 34.5 s            |
    | Other changing call (Attach*, ...) | 0.5 s | [1] same                                                 |
    | EC2 / ELBv2 Create* call           | 1.0 s | [1] "EC2 creates ~1 s each", same check                  |
    | NLB `provisioning` -> `active`     | 180 s | [2] "NLB 2-4" min; compose-on-ECS LB 152.0 s             |
    | CreateService -> tasks running     | 90 s  | [3] "task start 1-2" min                                 |
    | NLB initial health checks          | 90 s  | [4] target `initial` 70-120 s before its first check     |
    | Image build                        | 60 s  | [5] assumption (no published figure)                     |
    | Image push                         | 45 s  | [6] "~300MB ... in about a minute"                       |
    | Registry lookup of the tag         | 0 s   | the fake builder answers "not there" at once             |
    | IAM role propagation               | 0 s   | [7] "~2 seconds", never on the path here                 |

    [1] No per-call latency is published; the figures are the project brief's (0.2-0.5 s
        a call, EC2 creates ~1 s each). Check: the ~40 calls before CreateLoadBalancer
        sum to ~21 s modelled, and cdkd creates VPC (2 AZ) + Fargate + ALB with API
        calls only (`--no-wait`) in 34.5 s (https://github.com/go-to-k/cdkd,
        docs/benchmarks.md).
    [2] "NLB 2-4" min: "very normal that it takes > 2 minutes"
        (https://github.com/kubernetes/kubernetes/issues/44695); an LB took 152.0 s in a
        compose-on-ECS stack. The NLB is active 180 s after CreateLoadBalancer returned.
    [3] "task start 1-2" min (provisioning, ENI attach, image pull, app start;
        docs/aws-behaviour.md, "Latency figures used by bench/deploy_model.py").
    [4] target in `initial` 70-120 s before its first health check
        (https://github.com/aws/containers-roadmap/issues/469; NLB guide PR #11, ~120 s);
        a new target needs one passing check (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/load-balancer-healthcheck.html).
        Counted from when BOTH the NLB is active and the tasks run (targets are registered then).
    [5] bench/image.py measures a cold build of website/ in ~15 s here with a local base
        image; 60 s allows for pulling the base image and the wheels on a fresh machine.
    [6] "~300MB of image layers directly to Amazon ECR in about a minute"
        (https://github.com/docker/for-mac/issues/427); the site's image is python:3.12-slim plus <= 25 MB.
    [7] IAM propagation "~2 seconds" usually (https://github.com/pulumi/pulumi-awsx/issues/927). In
        both orders the roles exist over a minute before ECS first uses them.

    How it is injected:
    * API calls: a botocore `before-call` hook stamps the start of each call and an
      `after-call` hook sleeps until the call has taken its modelled latency. A
      call therefore costs max(model, what the emulator and botocore really took,
      scaled up); the real cost here is about 3-4 ms a call (0.3-0.4 s modelled),
      reported as "emulator time per call" so the distortion is visible.
    * NLB: `after-call` on DescribeLoadBalancers rewrites `State.Code` to
      `provisioning` until 180 s after CreateLoadBalancer returned, then `active`.
      The tool waits with botocore's `load_balancer_available` waiter, whose Delay
      is `int(ctx.poll_seconds)`: with ctx.poll_seconds = 0.05 that is 0, so the
      waiter polls back to back (each poll costs one modelled read call, 0.3 s) --
      finer than the tool's real 10 s, see "Caveats".
    * ECS: CreateService / UpdateService start the model's rollout; tasks run 90 s
      later; targets are registered once the tasks run and the NLB is active, are
      `initial` for 90 s, then `healthy`. `after-call` hooks on DescribeServices
      and DescribeTargetHealth answer accordingly (rolloutState COMPLETED once the
      targets are healthy), and `ctx.probe` answers 200 from the model once they
      are healthy: no HTTP request is ever sent to moto's fake NLB name.
    * Image: `ModelledBuilder`, a subclass of `deployer.images.ImageBuilder`,
      replaces only the Docker engine: `registry_digest` answers None, `build`
      sleeps 60 s modelled, `push` 45 s modelled and returns a fixed sha256
      digest. It models the time only; the real build and push are tested
      elsewhere against a real engine and registry (tests/test_images.py,
      tests/test_image_e2e.py, bench/image.py). ECR's GetAuthorizationToken, which
      the image step calls first, is answered by moto.
    * The service's wait (`ctx.poll`) sleeps ctx.poll_seconds = 0.05 s between
      polls: 5 s modelled (the tool's default is 10 s on AWS).

    Each run gets a fresh moto (`/moto-api/reset`), a unique stack name and a
    fresh state file. Before the timed provision, an untimed provision of another
    stack (no waits, no model) goes through the same clients: moto builds each
    backend and botocore each operation's model on first use, tens of
    milliseconds that would otherwise count 100 times over.

Target (exit code 0 when met, 1 otherwise)
    modelled parallel time <= 0.6 x modelled sequential time, on the medians of
    3 pairs of runs (a single pair varies by about +-0.01 in the ratio).

Caveats
    * Everything outside the model also counts 100 times over: botocore's own
      work, the emulator's and the tool's. The report gives the emulator's median
      time per call and how much longer than modelled the steps' own calls took
      (polls left out): about 2-4 s modelled per run. The state file, saved and
      fsync'd after every resource, lives on /dev/shm when there is one, where a
      save costs next to nothing, as it does next to real AWS.
    * The load balancer's wait uses botocore's waiter, which sleeps with
      time.sleep(int(ctx.poll_seconds)), not ctx.sleep: with poll_seconds 0.05 the
      Delay is 0 and it polls back to back, so it notices `active` within one read
      call (0.3 s) where the tool on AWS (poll_seconds 10) would take up to 10 s.
      Its MaxAttempts (service_wait_timeout // max(poll_seconds, 1) = 1200) then
      counts polls, not seconds: enough here (a few hundred polls per run).
    * Retry backoffs (deployer/retry.py) sleep with ctx.sleep in real seconds,
      i.e. 100 times too long; moto gives no reason to retry, and the report counts
      the retries ("retries: 0") so a run that did retry is visible.
    * The anchors are real-AWS measurements of other tools with other stacks (an
      ALB instead of an NLB, no image build in cdkd's), so the comparison line is
      a sanity check, not a race.

How to run it (from the repository root, in its virtualenv; about 40 s)
    python bench/deploy_model.py           # a readable report
    python bench/deploy_model.py --json    # the same figures as one JSON document
    python bench/deploy_model.py --quiet   # without the deployer's progress lines
    python bench/deploy_model.py --runs 1  # one pair of runs instead of 3 (the verdict is on the medians)

The deployer's progress lines go to stderr; the report (or JSON) to stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from botocore.model import OperationModel  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402

from bench.common import isolate_environment  # noqa: E402
from deployer import runner  # noqa: E402
from deployer.clients import AwsClients, account_id, build_clients, create_session  # noqa: E402
from deployer.errors import DeployerError  # noqa: E402
from deployer.images import BuildSpec, ImageBuilder, RegistryAuth  # noqa: E402
from deployer.settings import Settings, validate  # noqa: E402
from deployer.state import State, StateFile  # noqa: E402
from deployer.steps.base import StepContext  # noqa: E402

SCALE = 100.0  # modelled seconds per real second
TARGET_RATIO = 0.6
POLL_SECONDS = 0.05  # real seconds between the tool's polls: 5 s modelled
REGION = "us-east-1"
READ_PREFIXES = ("Describe", "List", "Get")
MODELLED_DIGEST = "sha256:" + "d" * 64
WARM_UP_IMAGE = "public.ecr.aws/docker/library/python:3.12-slim"

# Published end-to-end figures of other tools on real AWS, other stacks (docs/aws-behaviour.md, "End-to-end figures").
ANCHORS = (
    ("Copilot", "~8 min", 480.0, "copilot init --deploy: VPC + ALB + ECS service, CloudFormation"),
    ("awsx", "4m21s", 261.0, "FargateService end-to-end create, ~30 s of it an IAM retry"),
    ("cdkd", "163-228 s", 227.7, "VPC + Fargate + ALB cold create, 162.8 s; 227.7 s with steady state; no image"),
)


@dataclass(frozen=True)
class LatencyModel:
    """Modelled seconds (real-AWS seconds); see the table in the module docstring for the sources."""

    read_call: float = 0.3
    write_call: float = 0.5
    create_call: float = 1.0
    nlb_provisioning: float = 180.0
    task_start: float = 90.0
    initial_health_checks: float = 90.0
    build: float = 60.0
    push: float = 45.0

    def call(self, service: str, operation: str) -> float:
        if operation.startswith(READ_PREFIXES):
            return self.read_call
        if service in ("ec2", "elbv2") and operation.startswith("Create"):
            return self.create_call
        return self.write_call


class ModelClock:
    """Real time since the start, scaled up: modelled seconds."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def now(self) -> float:
        return (time.monotonic() - self.started) * SCALE

    def sleep(self, modelled: float) -> None:
        time.sleep(max(0.0, modelled) / SCALE)


@dataclass(frozen=True)
class Call:
    service: str
    operation: str
    thread: str
    start: float  # modelled seconds
    end: float
    emulator: float  # real seconds the emulator and botocore took, before padding


class ModelledAws:
    """The model's view of AWS: when the NLB becomes active, when the tasks run, when the targets are healthy."""

    def __init__(self, model: LatencyModel, clock: ModelClock, desired_count: int) -> None:
        self.model = model
        self.clock = clock
        self.desired_count = desired_count
        self.calls: list[Call] = []
        self.balancer_created: float | None = None
        self.service_started: float | None = None
        self.first_served: float | None = None
        self._lock = threading.Lock()
        self._local = threading.local()

    def install(self, clients: AwsClients) -> None:
        """On each client: a client copies the session's handlers when it is built, not later."""
        for client in (clients.ec2, clients.elbv2, clients.ecs, clients.iam, clients.ecr, clients.logs, clients.sts):
            client.meta.events.register("before-call", self.before_call)
            client.meta.events.register("after-call", self.after_call)

    def before_call(self, model: OperationModel, **_: Any) -> None:
        self._local.started = time.monotonic()

    def after_call(self, model: OperationModel, parsed: dict[str, Any], **_: Any) -> None:
        service, operation = model.service_model.service_name, model.name
        started: float = self._local.started
        emulator = time.monotonic() - started
        # Pad the call to its modelled latency, then let its effect (or the state it reads) take place.
        time.sleep(max(0.0, self.model.call(service, operation) / SCALE - emulator))
        now = self.clock.now()
        start = (started - self.clock.started) * SCALE
        with self._lock:
            self.calls.append(Call(service, operation, threading.current_thread().name, start, now, emulator))
            if "Error" in parsed:
                return
            if operation == "CreateLoadBalancer" and self.balancer_created is None:
                self.balancer_created = now
            elif operation in ("CreateService", "UpdateService"):
                self.service_started = now
        if operation == "DescribeLoadBalancers":
            self._balancers(parsed, now)
        elif operation == "DescribeServices":
            self._services(parsed, now)
        elif operation == "DescribeTargetHealth":
            self._targets(parsed, now)

    # When things happen, in modelled seconds from the start (None: not yet decided).
    def nlb_active_at(self) -> float | None:
        return None if self.balancer_created is None else self.balancer_created + self.model.nlb_provisioning

    def tasks_running_at(self) -> float | None:
        return None if self.service_started is None else self.service_started + self.model.task_start

    def registered_at(self) -> float | None:
        active, running = self.nlb_active_at(), self.tasks_running_at()
        return None if active is None or running is None else max(active, running)

    def healthy_at(self) -> float | None:
        registered = self.registered_at()
        return None if registered is None else registered + self.model.initial_health_checks

    def healthy(self, now: float) -> bool:
        healthy = self.healthy_at()
        return healthy is not None and now >= healthy

    def probe(self, _url: str) -> int | None:
        """What the site answers: 200 once the targets are healthy, nothing before (no request is sent)."""
        now = self.clock.now()
        if not self.healthy(now):
            return None
        if self.first_served is None:
            self.first_served = now
        return 200

    def _balancers(self, parsed: dict[str, Any], now: float) -> None:
        active = self.nlb_active_at()
        for balancer in parsed.get("LoadBalancers", []):
            state = "active" if active is not None and now >= active else "provisioning"
            balancer["State"] = {"Code": state}

    def _services(self, parsed: dict[str, Any], now: float) -> None:
        running_at = self.tasks_running_at()
        running = self.desired_count if running_at is not None and now >= running_at else 0
        completed = self.healthy(now)
        for service in parsed.get("services", []):
            service["runningCount"] = running
            for deployment in service.get("deployments", []):
                deployment["taskDefinition"] = service.get("taskDefinition")
                deployment["desiredCount"] = self.desired_count
                deployment["runningCount"] = running
                deployment["failedTasks"] = 0
                deployment["rolloutState"] = "COMPLETED" if completed else "IN_PROGRESS"

    def _targets(self, parsed: dict[str, Any], now: float) -> None:
        registered = self.registered_at()
        if registered is None or now < registered:
            parsed["TargetHealthDescriptions"] = []
            return
        state = "healthy" if self.healthy(now) else "initial"
        parsed["TargetHealthDescriptions"] = [
            {"Target": {"Id": f"10.0.0.{n}", "Port": 8080}, "TargetHealth": {"State": state}}
            for n in range(1, self.desired_count + 1)
        ]


def _no_engine() -> NoReturn:
    raise AssertionError("the modelled builder never talks to a Docker engine")


class ModelledBuilder(ImageBuilder):
    """The time of a cold build and push, nothing else: no Docker engine, no registry."""

    def __init__(self, model: LatencyModel, clock: ModelClock) -> None:
        super().__init__(connect=_no_engine, progress=lambda _line: None)
        self.model = model
        self.clock = clock
        self.build_started: float | None = None
        self.build_ended: float | None = None
        self.push_ended: float | None = None

    def registry_digest(self, reference: str, auth: RegistryAuth) -> str | None:
        return None

    def build(self, spec: BuildSpec, reference: str) -> None:
        self.build_started = self.clock.now()
        self.clock.sleep(self.model.build)
        self.build_ended = self.clock.now()
        self.builds += 1

    def push(self, repository: str, tag: str, auth: RegistryAuth) -> str:
        self.clock.sleep(self.model.push)
        self.push_ended = self.clock.now()
        self.pushes += 1
        return MODELLED_DIGEST


@dataclass
class RunResult:
    mode: str
    modelled_seconds: float
    real_seconds: float
    timeline: dict[str, float]
    calls: int
    calls_by_thread: dict[str, int]
    emulator_ms_per_call: float
    step_call_excess: float
    balancer_polls: int
    retries: int
    step_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def minutes(self) -> float:
        return self.modelled_seconds / 60

    def to_json(self) -> dict[str, Any]:
        return {
            "modelled_seconds": round(self.modelled_seconds, 1),
            "modelled_minutes": round(self.minutes, 2),
            "real_seconds": round(self.real_seconds, 3),
            "timeline_modelled_seconds": {k: round(v, 1) for k, v in self.timeline.items()},
            "calls": self.calls,
            "calls_by_thread": self.calls_by_thread,
            "emulator_ms_per_call_median": round(self.emulator_ms_per_call, 2),
            "step_calls_slower_than_modelled_by_seconds": round(self.step_call_excess, 1),
            "load_balancer_polls": self.balancer_polls,
            "retries": self.retries,
            "step_modelled_seconds": {k: round(v, 1) for k, v in self.step_seconds.items()},
        }


def reset(endpoint: str) -> None:
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=60) as answer:
        if answer.status != 200:
            raise RuntimeError(f"moto reset answered {answer.status}")


def warm_up(clients: AwsClients, account: str, partition: str, scratch: Path) -> None:
    """An untimed provision of another stack, without waits or model, through the same clients.

    moto builds each backend, and botocore each operation's model, on first use: some tens of
    milliseconds that would count 100 times over. The warm-up stack has its own names and tags,
    so the timed stack finds none of its resources.
    """
    settings = Settings(stack=f"warm-{uuid.uuid4().hex[:8]}", region=REGION, image=WARM_UP_IMAGE)
    state = State(stack=settings.stack, region=clients.region, account_id=account)
    ctx = StepContext(
        clients=clients,
        settings=settings,
        state=state,
        account_id=account,
        partition=partition,
        save=lambda: StateFile(scratch / f"{settings.stack}.json").save(state),
        say=lambda _line: None,
    )
    runner.provision(ctx, wait=False)
    clients.ecr.get_authorization_token()  # the image step's one call (the warm-up stack builds nothing)


def run_once(mode: str, endpoint: str, scratch: Path, model: LatencyModel, *, echo: bool) -> RunResult:
    """One fresh emulator, one unique stack, one timed provision."""
    reset(endpoint)
    # A chosen BASE_IMAGE: the modelled builder has no engine to ask for the Dockerfile's default base.
    settings = Settings(
        stack=f"model-{mode[:3]}-{uuid.uuid4().hex[:8]}",
        region=REGION,
        image=None,
        build_args={"BASE_IMAGE": "model/base:1"},
    )
    validate(settings)
    session = create_session(REGION)
    clients = build_clients(session)
    account = account_id(clients)
    partition = session.get_partition_for_region(clients.region)
    warm_up(clients, account, partition, scratch)
    state_file = StateFile(scratch / f"{settings.stack}.json")
    state = State(stack=settings.stack, region=clients.region, account_id=account)

    clock = ModelClock()
    aws = ModelledAws(model, clock, settings.desired_count)
    aws.install(clients)
    builder = ModelledBuilder(model, clock)

    retries: list[str] = []

    def say(line: str) -> None:
        if "retrying in" in line:
            retries.append(line.strip())
        if echo:
            print(f"[{clock.now():6.1f}] {line}", file=sys.stderr, flush=True)

    ctx = StepContext(
        clients=clients,
        settings=settings,
        state=state,
        account_id=account,
        partition=partition,
        save=lambda: state_file.save(state),
        say=say,
        images=builder,
        probe=aws.probe,
        poll_seconds=POLL_SECONDS,
    )
    if echo:
        print(f"== {mode}", file=sys.stderr, flush=True)
    clock.started = time.monotonic()
    report = runner.provision(ctx, wait=True, parallel=mode == "parallel")
    real = time.monotonic() - clock.started
    modelled = real * SCALE
    if aws.first_served is None or ctx.state.outputs.get("serving_revision") is None:
        raise RuntimeError(f"{mode}: provision returned without the site verified serving")
    td = ctx.ids("task-definition")["arn"]
    image = ctx.ids("image")
    if image.get("digest") != MODELLED_DIGEST or builder.pushes != 1:
        raise RuntimeError(f"{mode}: the task definition {td} does not run the pushed image ({image})")
    return RunResult(
        mode=mode,
        modelled_seconds=modelled,
        real_seconds=real,
        timeline=timeline(aws, builder, modelled),
        calls=len(aws.calls),
        calls_by_thread=_by_thread(aws.calls),
        emulator_ms_per_call=statistics.median(c.emulator for c in aws.calls) * 1000,
        step_call_excess=step_call_excess(aws.calls, model),
        balancer_polls=sum(1 for c in aws.calls if c.operation == "DescribeLoadBalancers"),
        retries=len(retries),
        step_seconds={line.step: line.seconds * SCALE for line in report.steps},
    )


def _by_thread(calls: list[Call]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for call in calls:
        name = "background" if call.thread.startswith("deployer-background") else "main"
        counts[name] = counts.get(name, 0) + 1
    return counts


def timeline(aws: ModelledAws, builder: ModelledBuilder, total: float) -> dict[str, float]:
    """Key moments, in modelled seconds from the start of provision."""

    def first(operation: str) -> float | None:
        return next((c.end for c in aws.calls if c.operation == operation), None)

    def last(operation: str) -> float | None:
        return next((c.end for c in reversed(aws.calls) if c.operation == operation), None)

    moments: dict[str, float | None] = {
        "repository created": first("CreateRepository"),
        "image build started": builder.build_started,
        "image pushed": builder.push_ended,
        "VPC created": first("CreateVpc"),
        "NLB created": aws.balancer_created,
        "NLB active (model)": aws.nlb_active_at(),
        "load balancer wait ended": last("DescribeLoadBalancers"),
        "task definition registered": first("RegisterTaskDefinition"),
        "service created": aws.service_started,
        "tasks running (model)": aws.tasks_running_at(),
        "targets healthy (model)": aws.healthy_at(),
        "site answered 200": aws.first_served,
        "provision returned": total,
    }
    return dict(sorted(((k, v) for k, v in moments.items() if v is not None), key=lambda item: item[1]))


def step_call_excess(calls: list[Call], model: LatencyModel) -> float:
    """Modelled seconds by which the steps' own calls (the waits' polls left out) took longer than modelled.

    The emulator and botocore take 3-4 ms a call, i.e. 0.3-0.4 s modelled, about a read call's model:
    this is the part of the run that is the emulator's speed, not the model. Polls are left out since a
    wait ends when the model says so, however long each poll takes.
    """
    created_balancer = next((c.end for c in calls if c.operation == "CreateLoadBalancer"), float("inf"))
    created_service = next((c.end for c in calls if c.operation == "CreateService"), float("inf"))

    def is_poll(call: Call) -> bool:
        if call.operation == "DescribeLoadBalancers":
            return call.start >= created_balancer
        return call.operation in ("DescribeServices", "DescribeTargetHealth") and call.start >= created_service

    return sum(max(0.0, c.emulator * SCALE - model.call(c.service, c.operation)) for c in calls if not is_poll(c))


@dataclass
class Outcome:
    """Pairs of runs (parallel, sequential); the verdict is on the medians, which the emulator's jitter moves less."""

    parallel: list[RunResult]
    sequential: list[RunResult]

    @property
    def parallel_seconds(self) -> float:
        return statistics.median(r.modelled_seconds for r in self.parallel)

    @property
    def sequential_seconds(self) -> float:
        return statistics.median(r.modelled_seconds for r in self.sequential)

    @property
    def ratio(self) -> float:
        return self.parallel_seconds / self.sequential_seconds

    @property
    def met(self) -> bool:
        return self.ratio <= TARGET_RATIO

    def typical(self, results: list[RunResult]) -> RunResult:
        """The run closest to the median, whose timeline is shown."""
        median = statistics.median(r.modelled_seconds for r in results)
        return min(results, key=lambda r: abs(r.modelled_seconds - median))


def measure(model: LatencyModel, runs: int, *, echo: bool) -> Outcome:
    # The state file is saved (fsync'd) after every resource: a few milliseconds on a disk, which would
    # count as seconds here. On a RAM file system it costs what it costs next to real AWS: nothing.
    memory = Path("/dev/shm")
    with tempfile.TemporaryDirectory(prefix="bench-deploy-model-", dir=memory if memory.is_dir() else None) as folder:
        scratch = Path(folder)
        isolate_environment(scratch, REGION, MOTO_EC2_LOAD_DEFAULT_AMIS="false")
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            endpoint = f"http://{host}:{port}"
            os.environ["AWS_ENDPOINT_URL"] = endpoint
            outcome = Outcome([], [])
            for _ in range(runs):
                outcome.parallel.append(run_once("parallel", endpoint, scratch, model, echo=echo))
                outcome.sequential.append(run_once("sequential", endpoint, scratch, model, echo=echo))
            return outcome
        finally:
            server.stop()


def minutes(seconds: float) -> str:
    return f"{seconds:.0f} s = {seconds / 60:.1f} min"


def print_report(outcome: Outcome, model: LatencyModel) -> None:
    print(f"latency model (modelled s, scaled 1:{SCALE:.0f} when run): " + json.dumps(vars(model)))
    for results in (outcome.parallel, outcome.sequential):
        result = outcome.typical(results)
        print()
        print(
            f"{result.mode}: {result.real_seconds:.2f} s here = {minutes(result.modelled_seconds)} on AWS as "
            f"modelled (the median of {len(results)} runs; this run's timeline, modelled s from the start):"
        )
        for moment, at in result.timeline.items():
            print(f"  {at:7.1f} s  {moment}")
        threads = ", ".join(f"{name} {count}" for name, count in result.calls_by_thread.items())
        print(
            f"  {result.calls} API calls ({threads}); {result.balancer_polls} DescribeLoadBalancers; "
            f"retries: {result.retries}; emulator {result.emulator_ms_per_call:.1f} ms per call (median); "
            f"the steps' calls took {result.step_call_excess:.1f} s modelled longer than modelled"
        )
        print("  all runs (modelled s): " + ", ".join(f"{r.modelled_seconds:.0f}" for r in results))
    print()
    print(
        f"modelled time to a healthy site (medians): parallel {minutes(outcome.parallel_seconds)}, "
        f"sequential {minutes(outcome.sequential_seconds)}; ratio {outcome.ratio:.3f}"
    )
    published = ", ".join(f"{name} {shown}" for name, shown, _seconds, _what in ANCHORS)
    print(
        f"anchors (published, real AWS, other tools and stacks): {published}; "
        f"modelled here {outcome.parallel_seconds / 60:.1f} min (parallel), "
        f"{outcome.sequential_seconds / 60:.1f} min (sequential)"
    )
    for name, shown, _seconds, what in ANCHORS:
        print(f"  {name} {shown}: {what}")
    verdict = "PASS" if outcome.met else "FAIL"
    print(f"{verdict}: parallel is {outcome.ratio:.3f} x sequential (target <= {TARGET_RATIO})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON document")
    parser.add_argument("--quiet", action="store_true", help="do not echo the deployer's progress lines to stderr")
    parser.add_argument("--runs", type=int, default=3, help="pairs of runs; the verdict is on the medians (3)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    model = LatencyModel()
    try:
        outcome = measure(model, args.runs, echo=not args.quiet)
    except DeployerError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    if args.json:
        document = {
            "scale": SCALE,
            "runs": args.runs,
            "latency_model_modelled_seconds": vars(model),
            "parallel_modelled_seconds": round(outcome.parallel_seconds, 1),
            "sequential_modelled_seconds": round(outcome.sequential_seconds, 1),
            "parallel_modelled_minutes": round(outcome.parallel_seconds / 60, 2),
            "sequential_modelled_minutes": round(outcome.sequential_seconds / 60, 2),
            "ratio": round(outcome.ratio, 3),
            "target_ratio": TARGET_RATIO,
            "parallel_runs": [r.to_json() for r in outcome.parallel],
            "sequential_runs": [r.to_json() for r in outcome.sequential],
            "anchors": [
                {"tool": name, "published": shown, "seconds": seconds, "what": what}
                for name, shown, seconds, what in ANCHORS
            ],
            "pass": outcome.met,
        }
        print(json.dumps(document, indent=2))
    else:
        print_report(outcome, model)
    return 0 if outcome.met else 1


if __name__ == "__main__":
    sys.exit(main())
