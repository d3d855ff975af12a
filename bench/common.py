"""What every benchmark shares: the command line, the report, the emulator, the engine and the run's context.

A benchmark is a `measure(args, output) -> Result` (report lines, the same figures for --json, targets);
`main` parses --json/--quiet, runs it and prints the report with a PASS/FAIL per target. Exit 0 when
every target is met, 1 otherwise, 2 (skipped) when something it needs is not on this machine.
Progress goes to stderr, the report (or JSON) to stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
from moto.server import ThreadedMotoServer

from deployer.clients import account_id, build_clients, create_session
from deployer.clock import Clock
from deployer.errors import DeployerError
from deployer.ledger import Ledger
from deployer.output import Output
from deployer.settings import Settings
from deployer.state import State, StateFile, check_identity
from deployer.steps.base import StepContext
from tests import s3_emulation
from tests.ecs_emulation import keep_service_settings
from tests.rollouts import Rollout

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parent.parent
WEBSITE = REPO_ROOT / "website"
BASE_IMAGE = "flask-deployer/base:bookworm"  # scripts/setup-docker.sh builds it
REGION = "us-east-1"
READ_PREFIXES = ("Describe", "List", "Get")  # any other operation is a changing call
EXIT_SKIPPED = 2


class MissingPrerequisiteError(Exception):
    """Something this benchmark needs is not on this machine: the run is skipped."""


class BenchError(Exception):
    """Something did not do what the benchmark needs: the run fails."""


@dataclass(frozen=True)
class Target:
    name: str
    value: float
    limit: float
    compare: str = "<="  # "<=", ">=" or "=="
    unit: str = ""
    decimals: int = 0

    @classmethod
    def check(cls, name: str, ok: bool) -> Target:
        """A yes/no check: 1 when it holds."""
        return cls(name, int(ok), 1, "==")

    @property
    def met(self) -> bool:
        met = {"<=": self.value <= self.limit, ">=": self.value >= self.limit, "==": self.value == self.limit}
        return met[self.compare]

    def describe(self) -> str:
        return (
            f"{self.name}: {self.value:.{self.decimals}f}{self.unit} (target {self.compare} {self.limit:g}{self.unit})"
        )


@dataclass
class Result:
    """What a benchmark prints: report lines, the same figures as JSON, and its targets."""

    lines: list[str]
    figures: dict[str, Any]
    targets: list[Target]


def report(rows: list[str], targets: list[Target]) -> bool:
    """The readable report: the rows, then a PASS/FAIL line per target and the verdict."""
    for row in rows:
        print(row)
    print("targets:")
    for target in targets:
        print(f"  {'PASS' if target.met else 'FAIL'}  {target.describe()}")
    met = all(target.met for target in targets)
    print("PASS: all targets met" if met else "FAIL: some targets are not met")
    return met


def main(
    doc: str | None,
    measure: Callable[[argparse.Namespace, BenchOutput], Result],
    options: Callable[[argparse.ArgumentParser], None] = lambda _parser: None,
) -> int:
    """The command line every benchmark has (--json, --quiet, plus its `options`), then the report."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON document")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    options(parser)
    args = parser.parse_args()
    try:
        result = measure(args, BenchOutput(echo=not args.quiet))
    except MissingPrerequisiteError as exc:
        print(f"SKIP: {exc}", file=sys.stderr)
        return EXIT_SKIPPED
    except (BenchError, DeployerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        targets = [{"name": t.name, "value": round(t.value, 3), "limit": t.limit, "met": t.met} for t in result.targets]
        met = all(t.met for t in result.targets)
        print(json.dumps({**result.figures, "targets": targets, "pass": met}, indent=2, default=str))
    else:
        met = report(result.lines, result.targets)
    return 0 if met else 1


def timed(call: Callable[[], T]) -> tuple[float, T]:
    """Wall seconds of `call`, and what it returned."""
    started = time.perf_counter()
    answer = call()
    return time.perf_counter() - started, answer


class BenchOutput(Output):
    """The deployer's `Output` with progress on stderr (none with --quiet); `listen` sees every line."""

    def __init__(self, echo: bool, listen: Callable[[str], None] | None = None) -> None:
        super().__init__("text" if echo else "quiet", stdout=sys.stderr)
        self.listen = listen

    def line(self, text: str) -> None:
        if self.listen is not None:
            self.listen(text)
        super().line(text)


class InstantClock(Clock):
    """Real time, except that sleeping is instant (it moves `now` on): moto never needs a wait."""

    def __init__(self) -> None:
        self.slept = 0.0

    def now(self) -> float:
        return time.monotonic() + self.slept

    def sleep(self, seconds: float) -> None:
        self.slept += seconds


def clean_environment(scratch: Path) -> dict[str, str]:
    """This process's environment without AWS_* / MOTO_* and with no reachable AWS configuration."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "MOTO_"))}
    environment.update(
        AWS_CONFIG_FILE=str(scratch / "no-aws-config"), AWS_SHARED_CREDENTIALS_FILE=str(scratch / "no-aws-credentials")
    )
    return environment


@contextmanager
def moto_server(scratch: Path, *, own_process: bool = False, **moto_switches: str) -> Iterator[str]:
    """A moto server on a free loopback port as this process's only AWS (fake credentials); yields its
    endpoint. The environment is restored when it stops. With `own_process`, the server runs in a process of
    its own (bench/emulator.py), as AWS answers from elsewhere."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(
        clean_environment(scratch),
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
        MOTO_IAM_LOAD_MANAGED_POLICIES="true",
        **moto_switches,
    )
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # it logs every request; only errors matter
    keep_service_settings()  # moto's CreateService keeps the deployment configuration, as AWS does
    s3_emulation.install()  # moto's S3 honours the state bucket's TLS-only policy and creation tags as AWS does
    try:
        with _own_server() if own_process else _threaded_server() as endpoint:
            os.environ["AWS_ENDPOINT_URL"] = endpoint
            yield endpoint
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextmanager
def _threaded_server() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@contextmanager
def _own_server() -> Iterator[str]:
    """bench/emulator.py in a child process, on a free loopback port, with this process's environment."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.emulator", str(port)],
        cwd=Path(__file__).resolve().parent.parent,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError(f"bench/emulator.py did not start (exit {child.poll()})")
        yield f"http://127.0.0.1:{port}"
    finally:
        assert child.stdin is not None
        child.stdin.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def bench_context(
    settings: Settings,
    state_path: Path,
    output: Output,
    *,
    hooks: Mapping[str, Callable[..., Any]] = {},
    **fields: Any,
) -> StepContext:
    """What deployer/cli.py's `open_context` builds, from the same pieces (session, clients, STS identity,
    the state file checked against them, a ledger saving to it), with botocore `hooks` registered on the
    session first, so that they see every call, the identity call included."""
    session = create_session(settings.region)
    for event, handler in hooks.items():
        session.events.register(event, handler)
    clients = build_clients(session)
    account = account_id(clients)
    state_file = StateFile(state_path)
    state = state_file.load() or State(stack=settings.stack, region=clients.region, account_id=account)
    check_identity(state, settings.stack, clients.region, account, state_file.where)
    partition = session.get_partition_for_region(clients.region)
    return StepContext(clients, settings, Ledger(state, state_file.save), account, partition, output, **fields)


def moto_context(settings: Settings, state_path: Path, output: Output, **fields: Any) -> StepContext:
    """`bench_context` for moto: sleeping is instant, the rollout completes (tests/rollouts.py) and the probe
    answers 200 without sending a request (moto's load balancer name is not a real host)."""
    ctx = bench_context(settings, state_path, output, clock=InstantClock(), probe=lambda _url, _via: 200, **fields)
    Rollout().install(ctx.clients.ecs, ctx.clients.elbv2)
    return ctx


def docker_engine(timeout: int = 900) -> docker.DockerClient:
    """The engine, with the base image; MissingPrerequisiteError says what is missing."""
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()  # type: ignore[no-untyped-call]
        client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound as exc:
        raise MissingPrerequisiteError(f"the base image {BASE_IMAGE} is missing; run scripts/setup-docker.sh") from exc
    except docker.errors.DockerException as exc:
        raise MissingPrerequisiteError(f"no Docker engine is reachable ({exc}); run scripts/setup-docker.sh") from exc
    return client


@dataclass
class LocalImages:
    """Image references a run tagged in the local engine, removed at the end (`noprune`: layers stay cached)."""

    client: docker.DockerClient
    noprune: bool = False
    references: list[str] = field(default_factory=list)

    def remove_all(self) -> None:
        for reference in reversed(self.references):
            try:
                self.client.images.remove(reference, noprune=self.noprune)
            except docker.errors.ImageNotFound:
                pass
            except docker.errors.APIError as exc:
                print(f"   (could not remove {reference}: {exc.explanation or exc})", file=sys.stderr)
