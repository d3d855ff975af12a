"""Wall time of a provision, a no-op re-run and a teardown against moto: the graph runner against one step at a time.

What it measures
    The wall seconds of the three things a user does -- provision on an empty account, provision again with
    nothing changed, teardown -- run in this process through the real library as deployer/cli.py runs it
    (`bench.common.moto_context`: session, clients, STS identity, a state.json; then `runner.provision(ctx,
    wait=True)` or `runner.teardown(ctx)`), for two schedulers (deployer/parallel.py): the default one (the
    graph, up to `DEFAULT_SLOTS` steps at once) and `Scheduler(slots=1)` (one step after another in the
    stack's order). Medians of 5 rounds; each round runs both schedulers, in turn, so that a slow moment of
    the machine falls on both. Before each provision moto is reset (an empty account) and a few uncounted
    reads make it build its backends again (IAM's managed policies), as bench/api_calls.py does.
    A phase's seconds include building its context, as every command of the CLI does (botocore loads the
    models of the 13 clients; EC2's, the largest, takes about 0.4 s): that part is also shown apart
    ("context"). The process's start and imports, which the CLI pays too, are not counted.

    AWS is a moto server on loopback with fake credentials (`bench.common.moto_server`); moto's rollout is
    completed by tests/rollouts.py and every sleep is instant: the times are the tool's and the emulator's.
    The stack is the default one with a published image (no build), as bench/api_calls.py deploys it: it has
    more steps than the seed's stack the baseline deployed (the network ACLs, flow logs and their role and
    group, the alarms), so the comparison is on the tool's side of fair.

    moto's threaded server (werkzeug, a thread per request) answers several requests at once. Every HTTP 5xx
    it answers is counted (botocore's `needs-retry` event sees each answer before botocore retries it) and
    shown: a 5xx would be moto failing under concurrent requests, which botocore hides by retrying.

Targets
    The issue's baseline: the seed's stack deployed by Ansible's `amazon.aws` collection on the same emulator,
    measured on this machine kind, medians of 5: provision 30.2 s, no-op re-run 17.9 s, teardown 17.2 s.
    The default scheduler at least 10x faster on each phase (<= 3.02 / 1.79 / 1.72 s), and no slower than
    `Scheduler(slots=1)` on any phase: per round, the runner's seconds (the phase without its context, which is
    the same code for both and varies by +-0.2 s from round to round, more than a no-op run takes) of the graph
    over those of slots=1; the median of the rounds' ratios at most NOISE (1.05). Against moto the no-op re-run
    gains little: its 42 calls are reads answered in a few milliseconds each, and moto answers them one at a
    time (one interpreter lock in its process), so the graph and the list run about as fast; the graph gains
    where steps wait (polls, retries: every one of them against AWS), as bench/deploy_model.py shows.

    moto runs in a process of its own (bench/emulator.py): in this process its work and the tool's would share
    one interpreter lock, and no two calls could overlap at all.

How to run it (from the repository root, in its virtualenv; about 2 minutes)
    python bench/wall_time.py [--json] [--quiet] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from deployer import runner
from deployer.clients import build_clients, create_session
from deployer.parallel import DEFAULT_SCHEDULER, Scheduler
from deployer.settings import Settings, validate
from deployer.state import StateFile

IMAGE = "public.ecr.aws/docker/library/python:3.12-slim"
PHASES = ("provision", "no-op re-run", "teardown")
# The Ansible `amazon.aws` baseline (the seed's stack on the same emulator, this machine kind, medians of 5).
ANSIBLE_SECONDS = {"provision": 30.2, "no-op re-run": 17.9, "teardown": 17.2}
NOISE = 1.05  # the ratio within which two runs of the same work differ on this machine kind
FASTER = 10.0
SCHEDULERS = {"graph": DEFAULT_SCHEDULER, "slots=1": Scheduler(slots=1)}
CONTEXT = "context: "  # a round's key for the seconds a phase spent building its context


class ServerErrors:
    """Every HTTP 5xx the emulator answered, by operation (botocore's `needs-retry` handler sees each answer,
    the retried ones included, and returning None leaves the retry decision to botocore)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def needs_retry(self, response: tuple[Any, Any] | None, operation: Any, **_: Any) -> None:
        if response is not None and response[0].status_code >= 500:
            self.seen.append(f"{operation.name} {response[0].status_code}")


def empty_account(endpoint: str) -> float:
    """moto reset (an empty account), then the reads that make it build its backends; their seconds."""
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=60).close()
    clients = build_clients(create_session(common.REGION))
    reads: list[Callable[[], object]] = [clients.sts.get_caller_identity, clients.ec2.describe_vpcs]
    reads += [clients.elbv2.describe_load_balancers, clients.ecs.list_clusters, clients.iam.list_roles]
    reads += [clients.ecr.describe_repositories, clients.logs.describe_log_groups]
    seconds, _ = common.timed(lambda: [read() for read in reads])
    return seconds


def one_round(
    settings: Settings, scheduler: Scheduler, state_path: Path, errors: ServerErrors, echo: bool
) -> dict[str, float]:
    """Provision, no-op re-run and teardown of one stack with `scheduler`: each phase's wall seconds, and apart
    (keyed CONTEXT + phase) the part of them that built the context."""
    seconds: dict[str, float] = {}
    for phase in PHASES:
        seconds[phase], seconds[CONTEXT + phase] = timed_phase(
            phase, settings, scheduler, state_path, errors=errors, echo=echo
        )
    leftover = StateFile(state_path).load()
    if leftover is not None and leftover.resources:
        raise common.BenchError(f"teardown left {len(leftover.resources)} resources in the state file")
    return seconds


def timed_phase(
    phase: str, settings: Settings, scheduler: Scheduler, state_path: Path, *, errors: ServerErrors, echo: bool
) -> tuple[float, float]:
    """One phase as deployer/cli.py runs it: the context (session, clients, identity, state file), then the run.
    Its wall seconds, and those of the context alone."""
    output = common.BenchOutput(echo)
    output.line(f"== {phase}")
    context: list[float] = []

    def run() -> runner.RunReport:
        seconds, ctx = common.timed(
            lambda: common.moto_context(settings, state_path, output, hooks={"needs-retry": errors.needs_retry})
        )
        context.append(seconds)
        if phase == "teardown":
            return runner.teardown(ctx, scheduler=scheduler)
        return runner.provision(ctx, wait=True, scheduler=scheduler)

    seconds, _ = common.timed(run)
    return seconds, context[0]


def _ratios(runs: dict[str, list[dict[str, float]]], phase: str) -> list[float]:
    """Per round, the graph's runner seconds over slots=1's (the context is the same code for both, left out)."""
    return [
        (graph[phase] - graph[CONTEXT + phase]) / (single[phase] - single[CONTEXT + phase])
        for graph, single in zip(runs["graph"], runs["slots=1"], strict=True)
    ]


def measure(args: argparse.Namespace, output: common.BenchOutput) -> common.Result:
    settings = Settings(stack="bench-wall", region=common.REGION, image=IMAGE)
    validate(settings)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in SCHEDULERS}
    errors, warm_ups, load = ServerErrors(), list[float](), [os.getloadavg()[0]]
    with (
        tempfile.TemporaryDirectory(prefix="bench-wall-time-") as folder,
        common.moto_server(Path(folder), own_process=True, MOTO_ECS_SERVICE_RUNNING="1") as endpoint,
    ):
        for number in range(args.rounds):
            for name, scheduler in SCHEDULERS.items():
                output.line(f"== round {number + 1}, {name}")
                warm_ups.append(empty_account(endpoint))
                state_path = Path(folder) / f"state-{name}-{number}.json"
                runs[name].append(one_round(settings, scheduler, state_path, errors, not args.quiet))
    load.append(os.getloadavg()[0])
    medians = {
        name: {phase: statistics.median(r[phase] for r in rounds) for phase in PHASES} for name, rounds in runs.items()
    }
    rows = [f"wall seconds, medians of {args.rounds} (the default stack, moto on loopback):"]
    rows.append(f"  {'phase':<13} {'graph':>7} {'slots=1':>8} {'Ansible':>8} {'x (graph)':>10} {'x (slots=1)':>12}")
    rows[-1] += f" {'context':>8} {'run: graph':>11} {'slots=1':>8}"
    for phase in PHASES:
        graph, single, ansible = medians["graph"][phase], medians["slots=1"][phase], ANSIBLE_SECONDS[phase]
        rows.append(f"  {phase:<13} {graph:>7.2f} {single:>8.2f} {ansible:>8.1f} ")
        context = statistics.median(r[CONTEXT + phase] for rounds in runs.values() for r in rounds)
        rows[-1] += f"{ansible / graph:>10.1f} {ansible / single:>12.1f} {context:>8.2f}"
        alone = {
            name: statistics.median(r[phase] - r[CONTEXT + phase] for r in rounds) for name, rounds in runs.items()
        }
        rows[-1] += f" {alone['graph']:>11.2f} {alone['slots=1']:>8.2f}"
    rows.append("  (context: the part of each phase that built the session, the clients, the identity and the state,")
    rows[-1] += " median of both schedulers' rounds; run: the rest, the runner's, medians)"
    for name, rounds in runs.items():
        rows.append(
            f"  all rounds, {name}: "
            + "; ".join(f"{phase} " + ", ".join(f"{r[phase]:.2f}" for r in rounds) for phase in PHASES)
        )
    rows.append(
        f"emulator HTTP 5xx answers (retried by botocore): {len(errors.seen)}"
        + (f" ({', '.join(sorted(set(errors.seen)))})" if errors.seen else "")
    )
    rows.append(f"(emulator warm-up after each reset, not counted: median {statistics.median(warm_ups):.2f} s)")
    cores = os.cpu_count()
    rows += [
        f"(this machine's load average, 1 min, at the start and the end: {load[0]:.1f}, {load[1]:.1f}; {cores} CPUs)",
        "",
    ]
    targets = [
        common.Target(
            f"{phase}: graph (Ansible {ANSIBLE_SECONDS[phase]} s / {FASTER:g})",
            medians["graph"][phase],
            round(ANSIBLE_SECONDS[phase] / FASTER, 2),
            unit=" s",
            decimals=2,
        )
        for phase in PHASES
    ]
    targets += [
        common.Target(
            f"{phase}: graph no slower than slots=1 (runner's seconds, graph / slots=1, median of the rounds' ratios)",
            round(statistics.median(_ratios(runs, phase)), 3),
            NOISE,
            decimals=3,
        )
        for phase in PHASES
    ]
    targets.append(common.Target("emulator HTTP 5xx answers", len(errors.seen), 0))
    figures = {"medians_seconds": medians, "runs": runs, "ansible_seconds": ANSIBLE_SECONDS}
    figures |= {"server_errors": errors.seen, "emulator_warm_up_seconds": warm_ups, "load_average": load}
    return common.Result(rows, figures, targets)


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=5, choices=range(1, 10), help="rounds of both schedulers (5)")


if __name__ == "__main__":
    sys.exit(common.main(__doc__, measure, options))
