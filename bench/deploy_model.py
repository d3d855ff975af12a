"""Modelled time to a healthy site and teardown time on AWS: the graph runner against one step after another.

What it measures
    moto answers at once, so the real runner runs here against moto with a latency model
    around every AWS call and the image build and push, scaled down 25 times (1 modelled
    minute = 2.4 s: a read's 0.3 s is 12 ms, about what moto takes to answer one, so several
    steps calling the in-process emulator at once add little beyond the model). The stack has
    every step the tool has grown (tests/test_crash_points.py's SETTINGS): a domain in the
    account's public hosted zone (certificate, validation record, TLS listener, redirect target
    group, alias), the stack's own log key (log_kms_key = "create"), flow logs with their group
    and role, the network ACLs, the alarms, and autoscaling (max_tasks = 4,
    scaling on CPU and memory); the image is built (modelled) and pushed.

    Two schedulers (deployer/parallel.py) each provision it, `provision(ctx, wait=True)` from its
    start to its return -- rollout COMPLETED, targets healthy, the URL answering 200 -- then tear it
    down, `teardown(ctx)`:
    * "graph": the default Scheduler, every step whose needs are done, up to DEFAULT_SLOTS at once;
    * "slots=1": Scheduler(slots=1), one step after another. Today's list runner is gone: slots=1 is
      the list's order, with the deferred waits (the NLB turning active, the alias reaching the name
      servers, the rollout) as tails beside the steps after them; unlike the list runner, which built
      the image on a thread of its own, it builds the image in its turn.
    Times are modelled seconds (the context's clock is the model's). It is a model of AWS, not a
    measurement of it.

    The critical path: each step's duration is read from the runner's report (StepReport.seconds; for a
    step with a deferred wait, its seconds without wait_seconds, and wait_seconds as its tail), and
    deployer/graph.py's `provision_graph(build_steps(), settings).critical_path(durations, tails)` gives
    the longest chain of needs, the shortest a run with any number of steps at once could take. The
    teardown's critical path is computed the same way over `teardown_graph` (no tails).

The model (real-AWS seconds; sources in docs/aws-behaviour.md, "Latency figures used by bench/deploy_model.py")
    read call 0.3, other changing call 0.5, EC2/ELBv2 Create* 1.0; NLB active 180 after
    CreateLoadBalancer; tasks running 90 after CreateService; targets `initial` 90 once both
    hold; image build 60 (an assumption: bench/image.py builds in ~15 s with a local base
    image), push 45, scan on push 30 (an assumption) before the task definition may use it;
    IAM propagation 0. Botocore hooks on the session pad each call to its model (a call costs
    max(model, the emulator's time scaled up): its ms per call are shown) and rewrite the load
    balancer, service, target-health and scan answers; `ctx.probe` answers 200 once the targets
    are healthy; the engine's build and push only take their time; the context's clock is the
    model's, so waits poll every 5 s and retry backoffs sleep modelled seconds.
    Each run gets a fresh moto, a unique stack, and first an untimed provision of another
    stack and a read of every other service (moto's backends and botocore's models are built on
    first use, which would count 25x).

    The domain: the certificate's validation record appears 5 s after the request (ACM: "a delay of
    several seconds"), a Route 53 change is INSYNC 60 s after it is made ("generally propagate ...
    within 60 seconds"), and ACM issues the certificate 30 s after its validation record is INSYNC
    (an assumption; 23 s from request to issue is on record).

    Teardown (assumptions, AWS publishes no durations): a deleted service is DRAINING for 60 s (the
    target group's 30 s deregistration delay, deployer/settings.py, then ECS's default 30 s stopTimeout
    for the containers: "stopTimeout", Amazon ECS task definition parameters,
    https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task_definition_parameters.html); the
    tasks' network interfaces are released 60 s after it drained, the NLB's 120 s after its
    DeleteLoadBalancer (docs/aws-behaviour.md, "Teardown": minutes). Until both are released, DeleteSubnet,
    DeleteSecurityGroup and DetachInternetGateway answer DependencyViolation (moto deletes at once), which
    the tool retries with its backoff (deployer/retry.py STILL_IN_USE).

Targets
    graph: time to a healthy site within 5 % of the critical path its own step durations give (time to
    healthy / critical path <= 1.05, median of the runs); graph no slower than slots=1 to a healthy site
    (medians). The teardown times of both are printed, with no target: the model's teardown is bound by
    one chain (the service drains, then the NLB is deleted and releases its interfaces, which the subnets,
    groups and gateway wait for), which both schedulers walk alike; the graph only overlaps the few
    seconds of the other deletes, within the retries' backoff (up to 30 s) past the release. Shown beside
    published end-to-end times of other tools (docs/aws-behaviour.md, "End-to-end figures of other tools").

How to run it (from the repository root, in its virtualenv; about 3 minutes on a quiet machine)
    python bench/deploy_model.py [--json] [--quiet] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import moto.settings
from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders
from botocore.model import OperationModel

from bench import common
from deployer import runner
from deployer.clock import Clock
from deployer.graph import CriticalPath, Graph, provision_graph, teardown_graph
from deployer.images import BuildSpec, ImageBuilder, RegistryAuth
from deployer.ledger import Ledger
from deployer.parallel import DEFAULT_SCHEDULER, Scheduler
from deployer.settings import Settings
from deployer.stack import build_steps
from deployer.state import State
from deployer.steps.base import StepContext
from tests import scans
from tests.faults import error_answer

SCALE = 25.0  # modelled seconds per real second
DIGEST = "sha256:" + "d" * 64
MODEL = {"read": 0.3, "write": 0.5, "create": 1.0, "nlb": 180.0, "tasks": 90.0, "health": 90.0, "build": 60.0}
MODEL["push"] = 45.0
MODEL["scan"] = 30.0  # an assumption: AWS publishes no duration for a basic scan on push
MODEL |= {"validation record": 5.0, "dns": 60.0, "issue": 30.0}  # see "The domain" above
MODEL |= {"drain": 60.0, "task interfaces": 60.0, "nlb interfaces": 120.0}  # see "Teardown" above
SCHEDULERS = {"graph": DEFAULT_SCHEDULER, "slots=1": Scheduler(slots=1)}
CLOSE_TO_CRITICAL = 1.05  # time to a healthy site / the critical path
# What a network interface still in use makes AWS refuse at teardown (docs/aws-behaviour.md, "Teardown").
HELD = ("DeleteSubnet", "DeleteSecurityGroup", "DetachInternetGateway")
DOMAIN, ZONE = "www.example.com", "example.com"
WARM_UP_IMAGE = "public.ecr.aws/docker/library/python:3.12-slim"
MODELLED_MOMENTS = (("active", "NLB active"), ("running", "tasks running"), ("healthy", "targets healthy"))
POLLS = ("DescribeLoadBalancers", "DescribeServices", "DescribeTargetHealth", "DescribeCertificate", "GetChange")
ANCHORS = (
    ("Copilot", "~8 min", "copilot init --deploy: VPC + ALB + ECS service, CloudFormation"),
    ("awsx", "4m21s", "FargateService end-to-end create, ~30 s of it an IAM retry"),
    ("cdkd", "163-228 s", "VPC + Fargate + ALB cold create, 162.8 s; 227.7 s with steady state; no image"),
)


class Call(NamedTuple):
    operation: str
    thread: str  # main, step or tail (deployer/parallel.py names its threads deployer-step-* and deployer-tail-*)
    end: float  # modelled seconds from the start
    emulator: float  # real seconds the emulator and botocore took, before the padding
    excess: float  # modelled seconds beyond the model


class ModelClock(Clock):
    """Real time since `started`, scaled up: modelled seconds."""

    started = time.monotonic()

    def now(self) -> float:
        return (time.monotonic() - self.started) * SCALE

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds) / SCALE)


class ModelledAws(ImageBuilder):
    """AWS and the Docker engine as the model has them: every call padded; when the NLB is active, the tasks
    run, the targets are healthy; a build and a push that only take their time (no engine, no registry)."""

    def __init__(self, output: common.BenchOutput, clock: ModelClock, desired: int) -> None:
        super().__init__(output)  # the engine is never called: registry_digest, build and push are the model's
        self.clock, self.desired, self.active, self.local = clock, desired, False, threading.local()
        self.calls: list[Call] = []
        self.at: dict[str, float] = {}  # moments, in modelled seconds from the start

    def call_model(self, service: str, operation: str) -> float:
        if operation.startswith(common.READ_PREFIXES):
            return MODEL["read"]
        return MODEL["create"] if service in ("ec2", "elbv2") and operation.startswith("Create") else MODEL["write"]

    def when(self, what: str) -> float | None:
        created, service = self.at.get("NLB created"), self.at.get("service created")
        active = None if created is None else created + MODEL["nlb"]
        running = None if service is None else service + MODEL["tasks"]
        healthy = None if active is None or running is None else max(active, running) + MODEL["health"]
        return {"active": active, "running": running, "healthy": healthy}[what]

    def reached(self, what: str) -> bool:
        moment = self.when(what)
        return moment is not None and self.clock.now() >= moment

    def before_call(self, model: OperationModel, context: dict[str, Any], **_: Any) -> Any:
        """Start the call's clock; answer the scan of the pushed image as AWS would (IN_PROGRESS for
        MODEL["scan"] after the push, then COMPLETE and clean): moto never scans on push (tests/scans.py)."""
        self.local.started = time.monotonic()
        if self.active and model.name in HELD and self.interfaces_held():
            return error_answer("DependencyViolation", f"{model.name}: network interfaces are still in use (modelled)")
        if model.name != scans.OPERATION or "image pushed" not in self.at:
            return None
        done = self.clock.now() >= self.at["image pushed"] + MODEL["scan"]
        params = context.get("api_params", {})
        answer = {**(scans.CLEAN if done else scans.RUNNING), "imageId": dict(params.get("imageId", {}))}
        return AWSResponse("https://modelled", 200, HTTPHeaders(), None), {
            **answer,
            "repositoryName": params.get("repositoryName"),
            "ResponseMetadata": {"HTTPStatusCode": 200},
        }

    def interfaces_held(self) -> bool:
        """Teardown: the tasks' or the NLB's network interfaces not released yet (the model's moments)."""
        now, at = self.clock.now(), self.at
        if "service created" in at and now < at.get("service deleted", now) + MODEL["drain"] + MODEL["task interfaces"]:
            return True
        return "NLB created" in at and now < at.get("NLB deleted", now) + MODEL["nlb interfaces"]

    def keep_params(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["api_params"] = dict(params)

    def after_call(self, model: OperationModel, parsed: dict[str, Any], **_: Any) -> None:
        if not self.active:
            return
        service, operation = model.service_model.service_name, model.name
        emulator = time.monotonic() - self.local.started
        time.sleep(max(0.0, self.call_model(service, operation) / SCALE - emulator))
        name = threading.current_thread().name
        thread = (
            "step" if name.startswith("deployer-step-") else "tail" if name.startswith("deployer-tail-") else "main"
        )
        excess = max(0.0, emulator * SCALE - self.call_model(service, operation))
        self.calls.append(Call(operation, thread, self.clock.now(), emulator, excess))
        if "Error" not in parsed and operation in ("CreateLoadBalancer", "CreateService", "UpdateService"):
            self.at.setdefault(
                "NLB created" if operation == "CreateLoadBalancer" else "service created", self.clock.now()
            )
        self.certificate_answers(operation, parsed)
        if "Error" not in parsed and operation in ("DeleteService", "DeleteLoadBalancer"):
            self.at.setdefault("service deleted" if operation == "DeleteService" else "NLB deleted", self.clock.now())
        if operation == "DescribeServices" and "service deleted" in self.at:
            drained = self.clock.now() >= self.at["service deleted"] + MODEL["drain"]
            parsed["services"] = [] if drained else [{"serviceName": "modelled", "status": "DRAINING"}]
            return
        for balancer in parsed.get("LoadBalancers", []) if operation == "DescribeLoadBalancers" else []:
            balancer["State"] = {"Code": "active" if self.reached("active") else "provisioning"}
        for service_answer in parsed.get("services", []) if operation == "DescribeServices" else []:
            running = self.desired if self.reached("running") else 0
            for deployment in service_answer.get("deployments", []):
                deployment.update(taskDefinition=service_answer.get("taskDefinition"), failedTasks=0)
                deployment.update(desiredCount=self.desired, runningCount=running)
                deployment["rolloutState"] = "COMPLETED" if self.reached("healthy") else "IN_PROGRESS"
            service_answer["runningCount"] = running
        if operation == "DescribeTargetHealth":
            state = "healthy" if self.reached("healthy") else "initial"
            targets = [
                {"Target": {"Id": f"10.0.0.{n}", "Port": 8080}, "TargetHealth": {"State": state}}
                for n in range(1, self.desired + 1)
            ]
            parsed["TargetHealthDescriptions"] = targets if self.reached("active") and self.reached("running") else []

    def certificate_answers(self, operation: str, parsed: dict[str, Any]) -> None:
        """ACM and Route 53 as modelled (moto issues at once and is INSYNC at once): the validation record
        appears MODEL["validation record"] after the request, each change is INSYNC MODEL["dns"] after it is
        made, and the certificate is ISSUED MODEL["issue"] after its validation record is INSYNC."""
        now = self.clock.now()
        if operation == "RequestCertificate":
            self.at.setdefault("certificate requested", now)
        elif operation == "ChangeResourceRecordSets":
            self.at["last DNS change"] = now
            self.at.setdefault("validation record written", now)
        elif operation == "GetChange" and now < self.at.get("last DNS change", 0.0) + MODEL["dns"]:
            parsed["ChangeInfo"]["Status"] = "PENDING"
        elif operation == "DescribeCertificate":
            detail = parsed["Certificate"]
            if now < self.at.get("certificate requested", 0.0) + MODEL["validation record"]:
                for option in detail.get("DomainValidationOptions", []):
                    option.pop("ResourceRecord", None)
            written = self.at.get("validation record written")
            if written is None or now < written + MODEL["dns"] + MODEL["issue"]:
                detail["Status"] = "PENDING_VALIDATION"
            else:
                self.at.setdefault("certificate issued", written + MODEL["dns"] + MODEL["issue"])

    def probe(self, _url: str, _via: str | None = None) -> int | None:
        if not self.reached("healthy"):
            return None
        self.at.setdefault("site answered 200", self.clock.now())
        return 200

    def registry_digest(self, reference: str, auth: RegistryAuth) -> str | None:
        return None

    def build(self, spec: BuildSpec, reference: str) -> None:
        self.at["image build started"] = self.clock.now()
        self.clock.sleep(MODEL["build"])
        self.builds += 1

    def push(self, repository: str, tag: str, auth: RegistryAuth) -> str:
        self.clock.sleep(MODEL["push"])
        self.at["image pushed"] = self.clock.now()
        self.pushes += 1
        return DIGEST


def full_stack(mode: str) -> Settings:
    """Every step the tool has (tests/test_crash_points.py's SETTINGS), the image built, a unique stack name."""
    return Settings(
        stack=f"model-{mode[:5].replace('=', '')}-{uuid.uuid4().hex[:8]}",
        region=common.REGION,
        build_args={"BASE_IMAGE": common.BASE_IMAGE},
        domain=DOMAIN,
        log_kms_key="create",
        max_tasks=4,
        scale_memory_percent=70,
    )


def warm_up(ctx: StepContext) -> None:
    """Untimed: another stack provisioned (no wait), and one read of each service it does not touch, so that
    moto builds its backends and botocore its models before the clock counts them 25 times."""
    warm = Settings(stack=f"warm-{uuid.uuid4().hex[:8]}", region=common.REGION, image=WARM_UP_IMAGE)
    warm_state = State(stack=warm.stack, region=common.REGION, account_id=ctx.account_id)
    warm_ctx = replace(ctx, settings=warm, ledger=Ledger(warm_state, lambda _s: None), output=common.BenchOutput(False))
    runner.provision(warm_ctx, wait=False)
    clients = ctx.clients
    clients.ecr.get_authorization_token()  # the image step's one call (the warm-up stack builds nothing)
    clients.kms.list_keys()
    clients.acm.list_certificates()
    clients.route53.list_hosted_zones()
    clients.autoscaling.describe_scalable_targets(ServiceNamespace="ecs")
    clients.cloudwatch.describe_alarms()


def step_times(report: runner.RunReport, graph: Graph) -> tuple[dict[str, float], dict[str, float]]:
    """Each step's seconds from the run's report lines; a deferred wait (`Step.wait_deferred`) apart, as a tail."""
    deferred = {step.name for step in build_steps() if step.wait_deferred}
    lines: dict[str, runner.StepReport] = {}
    for line in report.steps:
        lines.setdefault(line.step, line)
    durations = {
        name: lines[name].seconds - (lines[name].wait_seconds if name in deferred else 0.0) for name in graph.names
    }
    return durations, {name: lines[name].wait_seconds for name in graph.names if name in deferred}


def chain(path: CriticalPath, durations: dict[str, float], tails: dict[str, float]) -> str:
    """The critical path's steps, each with its seconds (and its tail's)."""
    shown = [
        f"{name} {durations[name]:.1f}" + (f" (+{tails[name]:.1f} waiting)" if tails.get(name) else "")
        for name in path.steps
    ]
    return " -> ".join(shown)


def run_once(mode: str, endpoint: str, scratch: Path, echo: bool) -> dict[str, Any]:
    """A fresh emulator, an untimed warm-up, then one timed provision of a unique full stack and its teardown."""
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=60).close()
    settings, scheduler = full_stack(mode), SCHEDULERS[mode]
    clock, retries = ModelClock(), []

    def listen(line: str) -> None:
        if "retrying in" in line:
            retries.append(line)
        if echo:
            print(f"[{clock.now():6.1f}] {line}", file=sys.stderr, flush=True)

    output = common.BenchOutput(False, listen)
    aws = ModelledAws(output, clock, settings.desired_count)
    hooks: dict[str, Callable[..., Any]] = {
        "before-call": aws.before_call,
        "after-call": aws.after_call,
        f"before-parameter-build.ecr.{scans.OPERATION}": aws.keep_params,
    }
    fields = {"images": aws, "clock": clock, "probe": aws.probe, "poll_seconds": 5.0}  # polls every 5 modelled s
    ctx = common.bench_context(settings, scratch / f"{settings.stack}.json", output, hooks=hooks, **fields)
    warm_up(ctx)
    ctx.clients.route53.create_hosted_zone(Name=ZONE, CallerReference=settings.stack)  # the user's, there before
    output.line(f"== {mode}: provision")
    clock.started, aws.active = time.monotonic(), True
    report = runner.provision(ctx, wait=True, scheduler=scheduler)
    total = clock.now()
    if "site answered 200" not in aws.at or ctx.ids("image").get("digest") != DIGEST or aws.pushes != 1:
        raise common.BenchError(f"{mode}: provision returned without the pushed image verified serving")
    provision_calls = list(aws.calls)
    recorded = [record.step for record in ctx.state.resources]
    output.line(f"== {mode}: teardown")
    provision_retries = len(retries)
    teardown_report = runner.teardown(ctx, scheduler=scheduler)
    teardown_seconds = clock.now() - total
    if ctx.state.resources:
        raise common.BenchError(f"{mode}: teardown left {len(ctx.state.resources)} resources in the state")
    graph = provision_graph(build_steps(), settings)
    durations, tails = step_times(report, graph)
    path = graph.critical_path(durations, tails)
    reverse = teardown_graph(build_steps(), recorded)
    teardown_durations, _ = step_times(teardown_report, reverse)
    teardown_path = reverse.critical_path(teardown_durations)
    ends = {call.operation: call.end for call in reversed(provision_calls)}  # each operation's first end
    polls = [call.end for call in provision_calls if call.operation == "DescribeLoadBalancers"]
    moments = {**aws.at, "repository created": ends.get("CreateRepository"), "VPC created": ends.get("CreateVpc")}
    moments |= {"load balancer wait ended": polls[-1] if polls else None, "provision returned": total}
    moments |= {f"{what} (model)": aws.when(key) for key, what in MODELLED_MOMENTS}
    moments |= {"teardown returned": total + teardown_seconds}
    # What the emulator's own speed added: the steps' calls beyond their model (the waits' polls left out).
    first_poll = min(ends.get("CreateLoadBalancer", total), ends.get("CreateService", total))
    excess = sum(c.excess for c in provision_calls if c.end <= first_poll or c.operation not in POLLS)
    return {
        "mode": mode,
        "modelled_seconds": total,
        "teardown_seconds": teardown_seconds,
        "critical_path": {"seconds": path.seconds, "steps": path.steps, "shown": chain(path, durations, tails)},
        "to_critical_path": total / path.seconds,
        "teardown_critical_path": {
            "seconds": teardown_path.seconds,
            "steps": teardown_path.steps,
            "shown": chain(teardown_path, teardown_durations, {}),
        },
        "timeline": dict(sorted(((k, v) for k, v in moments.items() if v is not None), key=lambda item: item[1])),
        "calls": len(provision_calls),
        "teardown_calls": len(aws.calls) - len(provision_calls),
        "calls_by_thread": dict(Counter(call.thread for call in provision_calls)),
        "emulator_ms_per_call": statistics.median(call.emulator for call in provision_calls) * 1000,
        "step_call_excess": excess,
        "load_balancer_polls": len(polls),
        "retries": provision_retries,
        "teardown_retries": len(retries) - provision_retries,
        "step_modelled_seconds": {line.step: round(line.seconds, 1) for line in report.steps},
        "teardown_step_modelled_seconds": {line.step: round(line.seconds, 1) for line in teardown_report.steps},
    }


def measure(args: argparse.Namespace, output: common.BenchOutput) -> common.Result:
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in SCHEDULERS}
    moto.settings.ACM_VALIDATION_WAIT = 0  # ISSUED as moto sees it at once; the hooks answer as modelled
    # The state file is fsync'd after every resource: on a RAM file system that costs what it does next to AWS.
    memory = "/dev/shm" if Path("/dev/shm").is_dir() else None
    with (
        tempfile.TemporaryDirectory(prefix="bench-deploy-model-", dir=memory) as folder,
        common.moto_server(Path(folder), MOTO_EC2_LOAD_DEFAULT_AMIS="false") as endpoint,
    ):
        for _ in range(args.runs):
            for mode, results in runs.items():
                results.append(run_once(mode, endpoint, Path(folder), not args.quiet))
    medians = {mode: statistics.median(r["modelled_seconds"] for r in results) for mode, results in runs.items()}
    teardowns = {mode: statistics.median(r["teardown_seconds"] for r in results) for mode, results in runs.items()}
    rows = [f"latency model (modelled s, scaled 1:{SCALE:.0f} when run): {MODEL}"]
    for mode, results in runs.items():
        rows += mode_rows(mode, results, medians[mode], teardowns[mode])
    close = statistics.median(r["to_critical_path"] for r in runs["graph"])
    ratio, teardown_ratio = medians["graph"] / medians["slots=1"], teardowns["graph"] / teardowns["slots=1"]
    rows += ["", f"time to a healthy site (medians): graph {minutes(medians['graph'])}, "]
    rows[-1] += f"slots=1 {minutes(medians['slots=1'])}; ratio {ratio:.3f}"
    rows.append(f"teardown (medians): graph {minutes(teardowns['graph'])}, slots=1 {minutes(teardowns['slots=1'])}; ")
    rows[-1] += f"ratio {teardown_ratio:.3f}"
    rows.append(f"graph: time to a healthy site / its critical path, median of {len(runs['graph'])}: {close:.3f} ")
    rows[-1] += "(" + ", ".join(f"{r['to_critical_path']:.3f}" for r in runs["graph"]) + ")"
    rows.append("anchors (published, real AWS, other tools and stacks; docs/aws-behaviour.md):")
    rows += [f"  {name} {shown}: {what}" for name, shown, what in ANCHORS]
    figures = {"scale": SCALE, "model": MODEL, "medians_modelled_seconds": medians, "ratio": round(ratio, 3)}
    figures |= {"teardown_medians_modelled_seconds": teardowns, "teardown_ratio": round(teardown_ratio, 3)}
    figures["to_critical_path"] = round(close, 3)
    targets = [
        common.Target("graph: time to a healthy site / critical path", close, CLOSE_TO_CRITICAL, decimals=3),
        common.Target("time to a healthy site: graph / slots=1", ratio, 1.0, decimals=3),
    ]
    return common.Result(rows, {**figures, "runs": runs}, targets)


def mode_rows(mode: str, results: list[dict[str, Any]], median: float, teardown: float) -> list[str]:
    """One scheduler's runs: the typical run's timeline, calls and critical paths, then every run's figures."""
    run = min(results, key=lambda r: abs(r["modelled_seconds"] - median))  # the typical run
    rows = ["", f"{mode}: healthy after {minutes(median)}, torn down in {minutes(teardown)} on AWS as modelled "]
    rows[-1] += f"(medians of {len(results)}); the typical run's timeline:"
    rows += [f"  {at:7.1f} s  {moment}" for moment, at in run["timeline"].items()]
    threads = ", ".join(f"{name} {count}" for name, count in run["calls_by_thread"].items())
    rows.append(
        f"  {run['calls']} API calls to provision ({threads}), {run['teardown_calls']} to tear down; "
        f"{run['load_balancer_polls']} DescribeLoadBalancers; retries: {run['retries']} (teardown "
        f"{run['teardown_retries']}); emulator "
        f"{run['emulator_ms_per_call']:.1f} ms per call (median); the steps' calls took "
        f"{run['step_call_excess']:.1f} s modelled longer than modelled"
    )
    path, teardown_path = run["critical_path"], run["teardown_critical_path"]
    rows.append(f"  critical path {path['seconds']:.1f} s (time to healthy / it: {run['to_critical_path']:.3f}): ")
    rows[-1] += path["shown"]
    rows.append(f"  teardown's critical path {teardown_path['seconds']:.1f} s: {teardown_path['shown']}")
    rows.append("  all runs (modelled s), healthy: " + ", ".join(f"{r['modelled_seconds']:.0f}" for r in results))
    rows[-1] += "; torn down: " + ", ".join(f"{r['teardown_seconds']:.0f}" for r in results)
    return rows


def minutes(seconds: float) -> str:
    return f"{seconds:.0f} s = {seconds / 60:.1f} min"


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=int, default=3, choices=range(1, 10), help="runs of each mode (3)")


if __name__ == "__main__":
    sys.exit(common.main(__doc__, measure, options))
