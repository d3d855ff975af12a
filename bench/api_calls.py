"""Count the AWS API calls of a provision, a no-op re-run and a teardown, against moto.

What it measures
    The number of AWS API calls (and the wall time) of the three things a user does:
    provision on an empty account; provision again with nothing changed; teardown.
    Each phase runs in this process through the real library as deployer/cli.py runs
    it (`bench.common.moto_context`: session, clients, STS identity -- counted, the
    CLI makes that call too -- and a state.json), then `runner.provision(ctx, wait=True)`
    or `runner.teardown(ctx)`. A botocore `before-call` handler on the session sees
    every call once (waiters included, botocore's own retries not). A call is
    "changing" unless its operation starts with Describe, List or Get. A call is
    attributed to the step whose thread made it (deployer/parallel.py runs each step, and
    its deferred wait, on a thread named deployer-step-<name> or deployer-tail-<name>); the
    main thread's calls are labelled by when they came: the identity, the state's bucket and
    lock, the runner's checks before the steps (the zones), the state's deletion and unlock.
    The runner runs as the CLI does by default: the graph, several steps at once.

    AWS is a moto server on loopback with fake credentials (`bench.common.moto_server`).
    A few uncounted reads first make moto build its backends (IAM's managed policies),
    reported as "emulator warm-up". moto's rollout is completed by tests/rollouts.py and
    every sleep is instant: the times are the tool's and the emulator's, not AWS's.

Targets
    Issue 2 set provision <= 70 calls, no-op re-run <= 30 calls and 0 changing calls, teardown <= 60
    calls for the 18 steps its stack had. The stack has grown since (issue 11: the default group and
    ACL, a network ACL, flow logs with their group and role): the targets keep those budgets per step,
    scaled to the steps these settings want (`SEED_STEPS`), rounded down; 0 changing calls stays 0.

The state in S3
    The same three phases again with `--state-file s3://BUCKET/KEY` (deployer/s3state.py, as deployer/cli.py
    runs it: the store opened after the STS identity, the lock taken -- the bucket created and configured on the
    first run -- the state loaded, every change saved with a conditional PutObject, the state deleted after the
    teardown, the lock released), on the same stack after the local run's teardown. Reported: each phase's calls
    beyond the local file's, the saves, and the S3 calls by operation. The lock's lease renewals (one per 30 s
    of a run, on their own thread) are counted apart: they depend on how long AWS takes, not on the stack.

    Targets (issue 14): at most 2 extra calls per saved step in provision and teardown (extra <= 2 x saves),
    and a no-op re-run at most 4 calls more than with a local file (the bucket, the lock, the load, the unlock).

How to run it (from the repository root, in its virtualenv)
    python bench/api_calls.py [--json] [--quiet]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from botocore.model import OperationModel

from bench import common
from deployer import runner
from deployer.clients import build_clients, create_session
from deployer.ledger import Ledger
from deployer.s3state import S3StateFile, parse_s3_url
from deployer.settings import Settings, validate
from deployer.stack import build_steps, steps_by_name
from deployer.state import State, StateFile

IMAGE = "public.ecr.aws/docker/library/python:3.12-slim"
PHASES = ("provision", "no-op re-run", "teardown")
S3_STATE = "s3://bench-site-team-state/bench-site/state.json"
RENEWER_THREAD = "state-lock-lease"  # deployer/s3state.py's _Renewer: its calls are counted apart
STEP_THREADS = ("deployer-step-", "deployer-tail-")  # deployer/parallel.py's threads, named after their step
RUNNER_CHECKS = "(runner's main thread: checks before the steps, outputs saved after)"
EXTRA_PER_SAVE = 2
NOOP_EXTRA = 4


class Phase:
    """The calls of one phase, in order, and how many each step made (by the thread that made it)."""

    def __init__(self, name: str) -> None:
        self.name, self.seconds, self.calls, self.by_step = name, 0.0, list[tuple[str, str]](), Counter[str]()
        self.outcomes: dict[str, str] = {}
        self.saves, self.renewals = 0, 0
        self._main = 0  # the main thread's calls since the last `close`
        self._steps = frozenset(steps_by_name())
        self._lock = threading.Lock()  # steps call from several threads at once

    def before_call(self, model: OperationModel, **_: Any) -> None:
        thread = threading.current_thread().name
        with self._lock:
            if thread == RENEWER_THREAD:
                self.renewals += 1
                return
            self.calls.append((model.service_model.service_name, model.name))
            step = next((thread.removeprefix(p) for p in STEP_THREADS if thread.startswith(p)), None)
            if step is None:
                self._main += 1
            elif step not in self._steps:
                raise common.BenchError(f"a call from thread {thread}, which names no step")
            else:
                self.by_step[step] += 1

    def close(self, label: str) -> None:
        """The main thread's calls since the last close were `label`'s."""
        with self._lock:
            if self._main:
                self.by_step[label] += self._main
            self._main = 0

    @property
    def changing(self) -> int:
        return sum(1 for _, operation in self.calls if not operation.startswith(common.READ_PREFIXES))

    def rows(self) -> list[str]:
        rows = [f"{self.name}: {len(self.calls)} calls, {self.changing} changing, {self.seconds:.2f} s"]
        for service in sorted({service for service, _ in self.calls}):
            ops = Counter(sorted(op for svc, op in self.calls if svc == service))
            rows.append(
                f"  {service:<6} {ops.total():>3}: " + ", ".join(f"{o} {n}" if n > 1 else o for o, n in ops.items())
            )
        rows.append("  by step: " + ", ".join(f"{step} {n}" for step, n in self.by_step.items() if n))
        different = [f"{step} {outcome}" for step, outcome in self.outcomes.items() if outcome != "unchanged"]
        if self.name == "no-op re-run" and different:
            rows.append("  steps not unchanged: " + ", ".join(different))
        return [*rows, ""]


def run_phase(name: str, settings: Settings, state_path: Path, echo: bool) -> Phase:
    phase = Phase(name)
    output = common.BenchOutput(echo)
    output.line(f"== {name}")

    def run() -> runner.RunReport:
        ctx = common.moto_context(settings, state_path, output, hooks={"before-call": phase.before_call})
        phase.close("(sts identity)")
        return runner.teardown(ctx) if name == "teardown" else runner.provision(ctx, wait=True)

    phase.seconds, report = common.timed(run)
    phase.close(RUNNER_CHECKS)
    phase.outcomes = {line.step: line.outcome for line in report.steps}
    return phase


def run_s3_phase(name: str, settings: Settings, scratch: Path, echo: bool) -> Phase:
    """One phase with the state in S3, in deployer/cli.py's order: the identity, the lock (the bucket created
    on provision's first run), the state loaded, the steps saving into S3; teardown deletes the state."""
    phase = Phase(f"{name}, S3 state")
    output = common.BenchOutput(echo)
    output.line(f"== {phase.name}")

    def run() -> runner.RunReport:
        local = common.moto_context(settings, scratch / "unused.json", output, hooks={"before-call": phase.before_call})
        phase.close("(sts identity)")
        location = parse_s3_url(S3_STATE, where="bench/api_calls.py")
        store = S3StateFile(
            location, local.clients.s3, local.account_id, local.clients.region, output.line, create_bucket=True
        )

        def save(state: State) -> None:
            phase.saves += 1
            store.save(state)

        with store.locked(f"bench {name}", output.line):
            state = store.load() or State(settings.stack, local.clients.region, local.account_id)
            phase.close("(state: bucket, lock, load)")
            ctx = replace(local, ledger=Ledger(state, save))
            report = runner.teardown(ctx) if name == "teardown" else runner.provision(ctx, wait=True)
            phase.close(RUNNER_CHECKS)
            if name == "teardown":
                store.delete()
            return report

    phase.seconds, report = common.timed(run)
    phase.close("(after the steps: state deleted, lock released)")
    phase.outcomes = {line.step: line.outcome for line in report.steps}
    return phase


def s3_rows(local: list[Phase], s3: list[Phase]) -> list[str]:
    rows = ["the state in S3 (" + S3_STATE + "), against the local file:"]
    for plain, remote in zip(local, s3, strict=True):
        stack = [call for call in remote.calls if call[0] != "s3"]
        s3_ops = Counter(op for service, op in remote.calls if service == "s3")
        rows.append(
            f"  {plain.name:<13} {len(plain.calls):>4} -> {len(remote.calls):>4} calls "
            f"(+{len(remote.calls) - len(plain.calls)}; {remote.saves} saves; "
            f"{remote.renewals} lease renewals apart, {remote.seconds:.2f} s)"
        )
        rows.append("    s3: " + ", ".join(f"{op} {n}" for op, n in sorted(s3_ops.items())))
        if sorted(stack) != sorted(plain.calls):
            rows.append(f"    (the stack's own calls differ: {len(stack)} against {len(plain.calls)})")
    return [*rows, ""]


SEED_STEPS = 18  # the stack issue 2's targets were set for


def budget(seed_calls: int, steps: int) -> int:
    """Issue 2's budget for its 18 steps, kept per step for a stack of `steps` steps."""
    return seed_calls * steps // SEED_STEPS


def measure(args: argparse.Namespace, output: common.BenchOutput) -> common.Result:
    settings = Settings(stack="bench-site", region=common.REGION, image=IMAGE)
    validate(settings)
    with tempfile.TemporaryDirectory(prefix="bench-api-calls-") as folder:
        with common.moto_server(Path(folder), MOTO_ECS_SERVICE_RUNNING="1"):
            clients = build_clients(create_session(common.REGION))
            reads: list[Callable[[], object]] = [clients.sts.get_caller_identity, clients.ec2.describe_vpcs]
            reads += [clients.elbv2.describe_load_balancers, clients.ecs.list_clusters, clients.iam.list_roles]
            reads += [clients.ecr.describe_repositories, clients.logs.describe_log_groups]
            reads += [clients.s3.list_buckets]
            warm_up, _ = common.timed(lambda: [read() for read in reads])  # moto builds its backends: not counted
            phases = [run_phase(name, settings, Path(folder) / "state.json", not args.quiet) for name in PHASES]
            s3_phases = [run_s3_phase(name, settings, Path(folder), not args.quiet) for name in PHASES]
            left_in_s3 = clients.s3.list_objects_v2(Bucket=parse_s3_url(S3_STATE, where="bench").bucket)
        leftover = StateFile(Path(folder) / "state.json").load()
        if leftover is not None and leftover.resources:
            raise common.BenchError(f"teardown left {len(leftover.resources)} resources in the state file")
        if left_in_s3.get("KeyCount", 0):
            raise common.BenchError(f"the S3 teardown left {left_in_s3['KeyCount']} objects in the state bucket")
    provision, noop, teardown = phases
    s3_provision, s3_noop, s3_teardown = s3_phases
    steps = sum(1 for step in build_steps() if step.wanted(settings))
    targets = [
        common.Target(f"provision calls ({steps} steps)", len(provision.calls), budget(70, steps)),
        common.Target(f"no-op re-run calls ({steps} steps)", len(noop.calls), budget(30, steps)),
        common.Target("no-op re-run changing calls", noop.changing, 0),
        common.Target(f"teardown calls ({steps} steps)", len(teardown.calls), budget(60, steps)),
        common.Target(
            f"S3 state: provision's extra calls ({s3_provision.saves} saves)",
            len(s3_provision.calls) - len(provision.calls),
            EXTRA_PER_SAVE * s3_provision.saves,
        ),
        common.Target("S3 state: no-op re-run's extra calls", len(s3_noop.calls) - len(noop.calls), NOOP_EXTRA),
        common.Target("S3 state: no-op re-run's saves", s3_noop.saves, 0),
        common.Target(
            f"S3 state: teardown's extra calls ({s3_teardown.saves} saves)",
            len(s3_teardown.calls) - len(teardown.calls),
            EXTRA_PER_SAVE * s3_teardown.saves,
        ),
    ]
    rows = [row for phase in [*phases, *s3_phases] for row in phase.rows()]
    rows += s3_rows(phases, s3_phases)
    calls, changing, seconds = (
        sum(len(p.calls) for p in phases),
        sum(p.changing for p in phases),
        sum(p.seconds for p in phases),
    )
    rows += [f"total (local state file): {calls} calls, {changing} changing, {seconds:.2f} s"]
    rows += [f"(emulator warm-up before the phases, not counted: {warm_up:.2f} s)", ""]
    figures = {
        p.name: {"calls": len(p.calls), "changing": p.changing, "seconds": p.seconds, "by_step": p.by_step}
        for p in phases
    }
    figures |= {
        p.name: {
            "calls": len(p.calls),
            "extra_calls": len(p.calls) - len(plain.calls),
            "saves": p.saves,
            "lease_renewals": p.renewals,
            "changing": p.changing,
            "seconds": p.seconds,
        }
        for plain, p in zip(phases, s3_phases, strict=True)
    }
    return common.Result(rows, {"phases": figures, "emulator_warm_up_seconds": warm_up}, targets)


if __name__ == "__main__":
    sys.exit(common.main(__doc__, measure))
