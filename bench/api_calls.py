"""Count the AWS API calls of a provision, a no-op re-run and a teardown, against moto.

What it measures
    The number of AWS API calls the deployer makes (and how long each phase
    takes) for the three things a user does with it:

    1. provision   -- deploy the whole stack on an empty account;
    2. no-op       -- run provision again with nothing changed (must change nothing);
    3. teardown    -- delete everything the state file records.

    Each phase runs in this process through the real library, the way the CLI
    (deployer/cli.py) runs it: a fresh boto3 session and clients
    (`deployer.clients.build_clients`), the caller's account from STS
    GetCallerIdentity (counted: the CLI makes that call too), the state loaded
    from and saved to a temporary state.json, then `deployer.runner.provision(ctx,
    wait=True)` or `deployer.runner.teardown(ctx)`. Calls are counted with a
    botocore `before-call` handler registered on the session, so every call the
    clients make -- waiters included -- is seen once (botocore's own retries of a
    call are not counted again). A call is "changing" when its operation name does
    not start with Describe, List or Get. Calls are also attributed to the step
    that made them, from the runner's progress lines.

    The AWS side is a moto `ThreadedMotoServer` on 127.0.0.1 (a free port), reached
    through AWS_ENDPOINT_URL, with fake credentials and no access to the local AWS
    configuration: nothing can reach a real account. Before the first phase a few
    uncounted, read-only calls make moto build its per-service backends (EC2's
    default resources, IAM's ~1,500 managed policies), so that one-off cost is
    reported apart ("emulator warm-up") instead of inflating the provision time.
    Wall times run from building the session to the runner's return; they show
    the tool's overhead and the emulator's, not AWS's (an NLB takes minutes on
    AWS; moto reports it active at once, so no wait ever sleeps here).

Targets (exit code 0 when all are met, 1 otherwise)
    provision <= 70 calls; no-op re-run <= 30 calls and 0 changing calls;
    teardown <= 60 calls.

How to run it (from the repository root, in its virtualenv)
    python bench/api_calls.py           # a readable report
    python bench/api_calls.py --json    # the same figures as one JSON document
    python bench/api_calls.py --quiet   # without the deployer's progress lines

The deployer's progress lines go to stderr; the report (or JSON) to stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from botocore.model import OperationModel  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402

from bench.common import isolate_environment  # noqa: E402
from deployer import runner  # noqa: E402
from deployer.clients import account_id, build_clients, create_session  # noqa: E402
from deployer.errors import DeployerError  # noqa: E402
from deployer.settings import Settings, validate  # noqa: E402
from deployer.stack import steps_by_name  # noqa: E402
from deployer.state import State, StateFile, check_identity  # noqa: E402
from deployer.steps.base import StepContext  # noqa: E402
from tests.rollouts import Rollout  # noqa: E402

STACK = "bench-site"
REGION = "us-east-1"
IMAGE = "public.ecr.aws/docker/library/python:3.12-slim"
READ_PREFIXES = ("Describe", "List", "Get")
IDENTITY = "(sts identity)"
OUTSIDE_STEPS = "(after the steps)"

PROVISION_MAX_CALLS = 70
NOOP_MAX_CALLS = 30
NOOP_MAX_CHANGING = 0
TEARDOWN_MAX_CALLS = 60


@dataclass
class Recorder:
    """The calls of one phase, in order, and how many each step made."""

    echo: bool = True
    calls: list[tuple[str, str]] = field(default_factory=list)
    by_step: dict[str, int] = field(default_factory=dict)
    _attributed: int = 0
    _steps: frozenset[str] = field(default_factory=lambda: frozenset(steps_by_name()))

    def before_call(self, model: OperationModel, **_: Any) -> None:
        self.calls.append((model.service_model.service_name, model.name))

    def close(self, label: str) -> None:
        """Attribute the calls made since the last label to `label`."""
        count = len(self.calls) - self._attributed
        if count:
            self.by_step[label] = self.by_step.get(label, 0) + count
        self._attributed = len(self.calls)

    def say(self, line: str) -> None:
        """The runner's progress output: a line starting with a step name ends that step."""
        if self.echo:
            print(line, file=sys.stderr, flush=True)
        words = line.split(maxsplit=1)
        if words and not line[:1].isspace() and words[0] in self._steps:
            self.close(words[0])


@dataclass
class PhaseResult:
    name: str
    calls: list[tuple[str, str]]
    by_step: dict[str, int]
    outcomes: dict[str, str]
    seconds: float

    @property
    def changing(self) -> list[tuple[str, str]]:
        return [call for call in self.calls if not call[1].startswith(READ_PREFIXES)]

    def operations(self) -> dict[str, dict[str, int]]:
        """{service: {operation: count}}, services and operations sorted by name."""
        counts = Counter(self.calls)
        grouped: dict[str, dict[str, int]] = {}
        for (service, operation), count in sorted(counts.items()):
            grouped.setdefault(service, {})[operation] = count
        return grouped

    def to_json(self) -> dict[str, Any]:
        return {
            "calls": len(self.calls),
            "changing_calls": len(self.changing),
            "seconds": round(self.seconds, 3),
            "operations": self.operations(),
            "calls_by_step": self.by_step,
            "step_outcomes": self.outcomes,
        }


@dataclass(frozen=True)
class Target:
    phase: str
    metric: str
    limit: int
    value: int

    @property
    def met(self) -> bool:
        return self.value <= self.limit

    def to_json(self) -> dict[str, Any]:
        return {"phase": self.phase, "metric": self.metric, "limit": self.limit, "value": self.value, "met": self.met}


def warm_up() -> float:
    """One uncounted read-only call per service, so moto builds its backends before the timed phases."""
    started = time.perf_counter()
    clients = build_clients(create_session(REGION))
    clients.sts.get_caller_identity()
    clients.ec2.describe_vpcs()
    clients.elbv2.describe_load_balancers()
    clients.ecs.list_clusters()
    clients.iam.list_roles()
    clients.ecr.describe_repositories()
    clients.logs.describe_log_groups()
    return time.perf_counter() - started


def run_phase(
    name: str,
    settings: Settings,
    state_path: Path,
    action: Callable[[StepContext], runner.RunReport],
    *,
    echo: bool,
) -> PhaseResult:
    """One CLI-like run: session, clients, identity, state, context, then `action`; every call counted."""
    recorder = Recorder(echo=echo)
    if echo:
        print(f"== {name}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    session = create_session(settings.region)
    session.events.register("before-call", recorder.before_call)
    clients = build_clients(session)
    account = account_id(clients)
    recorder.close(IDENTITY)
    state_file = StateFile(state_path)
    state = state_file.load() or State(stack=settings.stack, region=clients.region, account_id=account)
    check_identity(state, settings.stack, clients.region, account, state_file.path)
    ctx = StepContext(
        clients=clients,
        settings=settings,
        state=state,
        account_id=account,
        partition=session.get_partition_for_region(clients.region),
        save=lambda: state_file.save(state),
        say=recorder.say,
    )
    report = action(ctx)
    recorder.close(OUTSIDE_STEPS)
    seconds = time.perf_counter() - started
    outcomes = {line.step: line.outcome for line in report.steps}
    return PhaseResult(name, list(recorder.calls), dict(recorder.by_step), outcomes, seconds)


def provision_and_wait(ctx: StepContext) -> runner.RunReport:
    """With the wait, as a user runs it: moto's rollout is made to complete (tests/rollouts.py)."""
    Rollout().install(ctx.clients.ecs, ctx.clients.elbv2)
    ctx.probe = lambda _url: 200  # moto's NLB name is fake: never send traffic to it
    return runner.provision(ctx, wait=True)


@dataclass
class Measurement:
    warm_up_seconds: float
    phases: list[PhaseResult]


def measure(echo: bool) -> Measurement:
    settings = Settings(stack=STACK, region=REGION, image=IMAGE)
    validate(settings)
    with tempfile.TemporaryDirectory(prefix="bench-api-calls-") as folder:
        scratch = Path(folder)
        isolate_environment(scratch, REGION, MOTO_ECS_SERVICE_RUNNING="1")
        # The emulator's werkzeug server logs every request to stderr; only its errors matter here.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            os.environ["AWS_ENDPOINT_URL"] = f"http://{host}:{port}"
            warm_up_seconds = warm_up()
            state_path = scratch / "state.json"
            results = [
                run_phase("provision", settings, state_path, provision_and_wait, echo=echo),
                run_phase("no-op re-run", settings, state_path, provision_and_wait, echo=echo),
                run_phase("teardown", settings, state_path, runner.teardown, echo=echo),
            ]
            leftover = StateFile(state_path).load()
            if leftover is not None and leftover.resources:
                raise RuntimeError(f"teardown left {len(leftover.resources)} resources in the state file")
            StateFile(state_path).delete()  # as teardown.py does
            return Measurement(warm_up_seconds, results)
        finally:
            server.stop()


def targets(provision: PhaseResult, noop: PhaseResult, teardown: PhaseResult) -> list[Target]:
    return [
        Target(provision.name, "calls", PROVISION_MAX_CALLS, len(provision.calls)),
        Target(noop.name, "calls", NOOP_MAX_CALLS, len(noop.calls)),
        Target(noop.name, "changing calls", NOOP_MAX_CHANGING, len(noop.changing)),
        Target(teardown.name, "calls", TEARDOWN_MAX_CALLS, len(teardown.calls)),
    ]


def totals(results: list[PhaseResult]) -> dict[str, Any]:
    return {
        "calls": sum(len(r.calls) for r in results),
        "changing_calls": sum(len(r.changing) for r in results),
        "seconds": round(sum(r.seconds for r in results), 3),
    }


def print_report(measurement: Measurement, checks: list[Target]) -> None:
    results = measurement.phases
    for result in results:
        print(f"{result.name}: {len(result.calls)} calls, {len(result.changing)} changing, {result.seconds:.2f} s")
        for service, operations in result.operations().items():
            listed = ", ".join(f"{op} {n}" if n > 1 else op for op, n in operations.items())
            print(f"  {service:<6} {sum(operations.values()):>3}: {listed}")
        print("  by step: " + ", ".join(f"{step} {n}" for step, n in result.by_step.items()))
        different = {step: outcome for step, outcome in result.outcomes.items() if outcome != "unchanged"}
        if result.name == "no-op re-run" and different:
            print("  steps not unchanged: " + ", ".join(f"{step} {outcome}" for step, outcome in different.items()))
        print()
    summed = totals(results)
    print(f"total: {summed['calls']} calls, {summed['changing_calls']} changing, {summed['seconds']:.2f} s")
    print(f"(emulator warm-up before the phases, not counted: {measurement.warm_up_seconds:.2f} s)")
    print()
    print("targets:")
    for check in checks:
        verdict = "PASS" if check.met else "FAIL"
        print(f"  {verdict}  {check.phase} {check.metric}: {check.value} (limit {check.limit})")
    print("PASS: all targets met" if all(c.met for c in checks) else "FAIL: some targets are not met")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON document")
    parser.add_argument("--quiet", action="store_true", help="do not echo the deployer's progress lines to stderr")
    args = parser.parse_args(argv)
    try:
        measurement = measure(echo=not args.quiet)
    except DeployerError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    results = measurement.phases
    checks = targets(*results)
    met = all(check.met for check in checks)
    if args.json:
        document = {
            "stack": STACK,
            "region": REGION,
            "phases": {result.name: result.to_json() for result in results},
            "totals": totals(results),
            "emulator_warm_up_seconds": round(measurement.warm_up_seconds, 3),
            "targets": [check.to_json() for check in checks],
            "pass": met,
        }
        print(json.dumps(document, indent=2))
    else:
        print_report(measurement, checks)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
