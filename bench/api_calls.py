"""Count the AWS API calls of a provision, a no-op re-run and a teardown, against moto.

What it measures
    The number of AWS API calls (and the wall time) of the three things a user does:
    provision on an empty account; provision again with nothing changed; teardown.
    Each phase runs in this process through the real library as deployer/cli.py runs
    it (`bench.common.bench_context`: session, clients, STS identity -- counted, the
    CLI makes that call too -- and a state.json), then `runner.provision(ctx, wait=True)`
    or `runner.teardown(ctx)`. A botocore `before-call` handler on the session sees
    every call once (waiters included, botocore's own retries not). A call is
    "changing" unless its operation starts with Describe, List or Get; calls are
    attributed to steps from the runner's progress lines.

    AWS is a moto server on loopback with fake credentials (`bench.common.moto_server`).
    A few uncounted reads first make moto build its backends (IAM's managed policies),
    reported as "emulator warm-up". moto's rollout is completed by tests/rollouts.py and
    every sleep is instant: the times are the tool's and the emulator's, not AWS's.

Targets
    provision <= 70 calls; no-op re-run <= 30 calls and 0 changing calls; teardown <= 60 calls.

How to run it (from the repository root, in its virtualenv)
    python bench/api_calls.py [--json] [--quiet]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from botocore.model import OperationModel

from bench.common import (
    READ_PREFIXES,
    REGION,
    BenchError,
    BenchOutput,
    InstantClock,
    Result,
    Target,
    bench_context,
    main,
    moto_server,
    timed,
)
from deployer import runner
from deployer.clients import build_clients, create_session
from deployer.settings import Settings, validate
from deployer.stack import steps_by_name
from deployer.state import StateFile
from tests.rollouts import Rollout

IMAGE = "public.ecr.aws/docker/library/python:3.12-slim"
PHASES = ("provision", "no-op re-run", "teardown")


class Phase:
    """The calls of one phase, in order, and how many each step made (a step's progress line ends it)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[tuple[str, str]] = []
        self.by_step: Counter[str] = Counter()
        self.outcomes: dict[str, str] = {}
        self.seconds = 0.0
        self._attributed = 0
        self._steps = frozenset(steps_by_name())

    def before_call(self, model: OperationModel, **_: Any) -> None:
        self.calls.append((model.service_model.service_name, model.name))

    def close(self, label: str) -> None:
        self.by_step[label] += len(self.calls) - self._attributed
        self._attributed = len(self.calls)

    def listen(self, line: str) -> None:
        words = line.split(maxsplit=1)
        if words and not line[:1].isspace() and words[0] in self._steps:
            self.close(words[0])

    @property
    def changing(self) -> int:
        return sum(1 for _, operation in self.calls if not operation.startswith(READ_PREFIXES))

    def rows(self) -> list[str]:
        grouped: dict[str, Counter[str]] = {}
        for service, operation in sorted(self.calls):
            grouped.setdefault(service, Counter())[operation] += 1
        rows = [f"{self.name}: {len(self.calls)} calls, {self.changing} changing, {self.seconds:.2f} s"]
        for service, ops in grouped.items():
            listed = ", ".join(f"{op} {n}" if n > 1 else op for op, n in ops.items())
            rows.append(f"  {service:<6} {ops.total():>3}: {listed}")
        rows.append("  by step: " + ", ".join(f"{step} {n}" for step, n in self.by_step.items() if n))
        different = {step: outcome for step, outcome in self.outcomes.items() if outcome != "unchanged"}
        if self.name == "no-op re-run" and different:
            rows.append("  steps not unchanged: " + ", ".join(f"{s} {o}" for s, o in different.items()))
        return [*rows, ""]

    def figures(self) -> dict[str, Any]:
        return {
            "calls": len(self.calls),
            "changing_calls": self.changing,
            "seconds": round(self.seconds, 3),
            "calls_by_step": dict(self.by_step),
            "step_outcomes": self.outcomes,
        }


def run_phase(name: str, settings: Settings, state_path: Path, echo: bool) -> Phase:
    phase = Phase(name)
    output = BenchOutput(echo, listen=phase.listen)
    output.line(f"== {name}")

    def run() -> runner.RunReport:
        ctx = bench_context(  # moto's NLB name is fake: the probe never sends traffic to it
            settings,
            state_path,
            output,
            hooks={"before-call": phase.before_call},
            clock=InstantClock(),
            probe=lambda _u: 200,
        )
        phase.close("(sts identity)")
        if name == "teardown":
            return runner.teardown(ctx)
        Rollout().install(ctx.clients.ecs, ctx.clients.elbv2)
        return runner.provision(ctx, wait=True)

    phase.seconds, report = timed(run)
    phase.close("(after the steps)")
    phase.outcomes = {line.step: line.outcome for line in report.steps}
    return phase


def warm_up() -> None:
    """Uncounted reads, so that moto builds its backends before the timed phases."""
    clients = build_clients(create_session(REGION))
    clients.sts.get_caller_identity()
    clients.ec2.describe_vpcs()
    clients.elbv2.describe_load_balancers()
    clients.ecs.list_clusters()
    clients.iam.list_roles()
    clients.ecr.describe_repositories()
    clients.logs.describe_log_groups()


def measure(args: argparse.Namespace, output: BenchOutput) -> Result:
    settings = Settings(stack="bench-site", region=REGION, image=IMAGE)
    validate(settings)
    with tempfile.TemporaryDirectory(prefix="bench-api-calls-") as folder:
        with moto_server(Path(folder), MOTO_ECS_SERVICE_RUNNING="1"):
            warm_up_seconds, _ = timed(warm_up)
            state_path = Path(folder) / "state.json"
            phases = [run_phase(name, settings, state_path, not args.quiet) for name in PHASES]
        leftover = StateFile(state_path).load()
        if leftover is not None and leftover.resources:
            raise BenchError(f"teardown left {len(leftover.resources)} resources in the state file")
    provision, noop, teardown = phases
    targets = [
        Target("provision calls", len(provision.calls), 70),
        Target("no-op re-run calls", len(noop.calls), 30),
        Target("no-op re-run changing calls", noop.changing, 0),
        Target("teardown calls", len(teardown.calls), 60),
    ]
    rows = [row for phase in phases for row in phase.rows()]
    rows.append(
        f"total: {sum(len(p.calls) for p in phases)} calls, {sum(p.changing for p in phases)} changing, "
        f"{sum(p.seconds for p in phases):.2f} s"
    )
    rows.append(f"(emulator warm-up before the phases, not counted: {warm_up_seconds:.2f} s)")
    document = {p.name: p.figures() for p in phases}
    return Result(rows, {"phases": document, "emulator_warm_up_seconds": round(warm_up_seconds, 3)}, targets)


if __name__ == "__main__":
    sys.exit(main(__doc__, measure))
