"""Modelled time to a healthy site on AWS: the tool as it runs (overlapped) versus the same steps one after another.

What it measures
    moto answers at once, so the real runner runs here against moto with a latency model
    around every AWS call and the image build and push, scaled down 100 times (1 modelled
    minute = 0.6 s). The time from the start of `provision(ctx, wait=True)` to its return --
    rollout COMPLETED, targets healthy, the URL answering 200 -- is reported in modelled
    seconds for `parallel=True` (the tool as it runs: the image built and pushed in a
    background thread, the waits last) and `parallel=False` (the same steps one after
    another). It is a model of AWS, not a measurement of it.

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
    stack (moto's backends and botocore's models are built on first use, which would count 100x).

    With a domain (a third run, "domain": the parallel runner with `domain` set and a public hosted
    zone for it created untimed first): the certificate's validation record appears 5 s after the
    request (ACM: "a delay of several seconds"), a Route 53 change is INSYNC 60 s after it is made
    ("generally propagate ... within 60 seconds"), and ACM issues the certificate 30 s after its
    validation record is INSYNC (an assumption; 23 s from request to issue is on record).

Target
    parallel <= 0.6 x sequential, on the medians of 3 pairs of runs; shown beside published
    end-to-end times of other tools (docs/aws-behaviour.md, "End-to-end figures of other tools").
    domain <= 1.10 x parallel: the certificate's validation overlaps the NLB's provisioning.

How to run it (from the repository root, in its virtualenv; about 40 s on a quiet machine)
    python bench/deploy_model.py [--json] [--quiet] [--runs 1]
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
from deployer.images import BuildSpec, ImageBuilder, RegistryAuth
from deployer.ledger import Ledger
from deployer.settings import Settings
from deployer.state import State
from tests import scans

SCALE = 100.0  # modelled seconds per real second
DIGEST = "sha256:" + "d" * 64
MODEL = {"read": 0.3, "write": 0.5, "create": 1.0, "nlb": 180.0, "tasks": 90.0, "health": 90.0, "build": 60.0}
MODEL["push"] = 45.0
MODEL["scan"] = 30.0  # an assumption: AWS publishes no duration for a basic scan on push
MODEL |= {"validation record": 5.0, "dns": 60.0, "issue": 30.0}  # see "With a domain" above
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
    thread: str  # main or background
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

    def keep_params(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["api_params"] = dict(params)

    def after_call(self, model: OperationModel, parsed: dict[str, Any], **_: Any) -> None:
        if not self.active:
            return
        service, operation = model.service_model.service_name, model.name
        emulator = time.monotonic() - self.local.started
        time.sleep(max(0.0, self.call_model(service, operation) / SCALE - emulator))
        thread = "background" if threading.current_thread().name.startswith("deployer-background") else "main"
        excess = max(0.0, emulator * SCALE - self.call_model(service, operation))
        self.calls.append(Call(operation, thread, self.clock.now(), emulator, excess))
        if "Error" not in parsed and operation in ("CreateLoadBalancer", "CreateService", "UpdateService"):
            self.at.setdefault(
                "NLB created" if operation == "CreateLoadBalancer" else "service created", self.clock.now()
            )
        self.certificate_answers(operation, parsed)
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


def run_once(mode: str, endpoint: str, scratch: Path, echo: bool) -> dict[str, Any]:
    """A fresh emulator, an untimed warm-up stack, then one timed provision of a unique stack."""
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=60).close()
    settings = Settings(
        stack=f"model-{mode[:3]}-{uuid.uuid4().hex[:8]}",
        region=common.REGION,
        build_args={"BASE_IMAGE": common.BASE_IMAGE},
        domain=DOMAIN if mode == "domain" else None,
    )
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
    warm = Settings(stack=f"warm-{uuid.uuid4().hex[:8]}", region=common.REGION, image=WARM_UP_IMAGE)
    warm_state = State(stack=warm.stack, region=common.REGION, account_id=ctx.account_id)
    warm_ctx = replace(ctx, settings=warm, ledger=Ledger(warm_state, lambda _s: None), output=common.BenchOutput(False))
    runner.provision(warm_ctx, wait=False)
    ctx.clients.ecr.get_authorization_token()  # the image step's one call (the warm-up stack builds nothing)
    if settings.domain:  # the user's hosted zone, there before the run
        ctx.clients.route53.create_hosted_zone(Name=ZONE, CallerReference=settings.stack)
    output.line(f"== {mode}")
    clock.started, aws.active = time.monotonic(), True
    report = runner.provision(ctx, wait=True, parallel=mode != "sequential")
    total = clock.now()
    if "site answered 200" not in aws.at or ctx.ids("image").get("digest") != DIGEST or aws.pushes != 1:
        raise common.BenchError(f"{mode}: provision returned without the pushed image verified serving")
    ends = {call.operation: call.end for call in reversed(aws.calls)}  # each operation's first end
    polls = [call.end for call in aws.calls if call.operation == "DescribeLoadBalancers"]
    moments = {**aws.at, "repository created": ends.get("CreateRepository"), "VPC created": ends.get("CreateVpc")}
    moments |= {"load balancer wait ended": polls[-1] if polls else None, "provision returned": total}
    moments |= {f"{what} (model)": aws.when(key) for key, what in MODELLED_MOMENTS}
    # What the emulator's own speed added: the steps' calls beyond their model (the waits' polls left out).
    first_poll = min(ends.get("CreateLoadBalancer", total), ends.get("CreateService", total))
    excess = sum(c.excess for c in aws.calls if c.end <= first_poll or c.operation not in POLLS)
    return {
        "mode": mode,
        "modelled_seconds": total,
        "timeline": dict(sorted(((k, v) for k, v in moments.items() if v is not None), key=lambda item: item[1])),
        "calls": len(aws.calls),
        "calls_by_thread": dict(Counter(call.thread for call in aws.calls)),
        "emulator_ms_per_call": statistics.median(call.emulator for call in aws.calls) * 1000,
        "step_call_excess": excess,
        "load_balancer_polls": len(polls),
        "retries": len(retries),
        "step_modelled_seconds": {line.step: round(line.seconds, 1) for line in report.steps},
    }


def measure(args: argparse.Namespace, output: common.BenchOutput) -> common.Result:
    runs: dict[str, list[dict[str, Any]]] = {"parallel": [], "sequential": [], "domain": []}
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
    rows = [f"latency model (modelled s, scaled 1:{SCALE:.0f} when run): {MODEL}"]
    for mode, results in runs.items():
        run = min(results, key=lambda r: abs(r["modelled_seconds"] - medians[mode]))  # the typical run
        rows += ["", f"{mode}: {minutes(medians[mode])} on AWS as modelled (median of {len(results)}); timeline:"]
        rows += [f"  {at:7.1f} s  {moment}" for moment, at in run["timeline"].items()]
        threads = ", ".join(f"{name} {count}" for name, count in run["calls_by_thread"].items())
        rows.append(
            f"  {run['calls']} API calls ({threads}); {run['load_balancer_polls']} DescribeLoadBalancers; retries: "
            f"{run['retries']}; emulator {run['emulator_ms_per_call']:.1f} ms per call (median); the steps' calls "
            f"took {run['step_call_excess']:.1f} s modelled longer than modelled"
        )
        rows.append("  all runs (modelled s): " + ", ".join(f"{r['modelled_seconds']:.0f}" for r in results))
    ratio = medians["parallel"] / medians["sequential"]
    growth = medians["domain"] / medians["parallel"]
    rows += ["", f"modelled time to a healthy site (medians): parallel {minutes(medians['parallel'])}, "]
    rows[-1] += f"sequential {minutes(medians['sequential'])}; ratio {ratio:.3f}"
    rows.append(f"with a domain (certificate, validation, TLS listener, alias): {minutes(medians['domain'])}; ")
    rows[-1] += f"{growth:.3f} x without"
    rows.append("anchors (published, real AWS, other tools and stacks; docs/aws-behaviour.md):")
    rows += [f"  {name} {shown}: {what}" for name, shown, what in ANCHORS]
    figures = {"scale": SCALE, "model": MODEL, "medians_modelled_seconds": medians, "ratio": round(ratio, 3)}
    figures["domain_growth"] = round(growth, 3)
    targets = [
        common.Target("parallel / sequential", ratio, 0.6, decimals=3),
        common.Target("with a domain / without", growth, 1.10, decimals=3),
    ]
    return common.Result(rows, {**figures, "runs": runs}, targets)


def minutes(seconds: float) -> str:
    return f"{seconds:.0f} s = {seconds / 60:.1f} min"


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=int, default=3, choices=range(1, 10), help="runs of each mode (3)")


if __name__ == "__main__":
    sys.exit(common.main(__doc__, measure, options))
