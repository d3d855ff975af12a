"""Shared fixtures: an isolated AWS environment, moto in-process and as a server, and call recording.

Every test runs with fake credentials and no access to the developer's AWS
configuration, so nothing can ever reach a real account.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import docker
import docker.errors
import moto.iam.models
import moto.settings
import pytest
from botocore.config import Config
from docker.models.containers import Container
from moto import mock_aws
from moto.iam.aws_managed_policies import aws_managed_policies_data
from moto.server import ThreadedMotoServer

from deployer.clients import AwsClients, build_clients
from deployer.clock import Clock
from deployer.ledger import Ledger
from deployer.output import Output
from deployer.settings import Settings, validate
from deployer.state import State, StateFile
from deployer.steps.base import StepContext
from tests import aas_emulation, s3_emulation
from tests.contract import install as contract_hook
from tests.contract.hook import subprocess_pythonpath
from tests.ecs_emulation import keep_service_settings
from tests.faults import emulate_log_group_keys
from tests.rollouts import Rollout

# Every AWS request a test sends is checked against what AWS accepts (tests/contract/).
pytest_plugins = ["tests.contract.plugin"]

PROJECT_DIR = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
ACCOUNT = "123456789012"
IMAGE = "public.ecr.aws/docker/library/python:3.12-slim"
# The site's domain in the HTTPS tests, and the public hosted zone that holds it (see `hosted_zone`).
DOMAIN = "www.example.com"
ZONE = "example.com"
READ_PREFIXES = ("Describe", "List", "Get")

# moto loads all ~1,500 AWS managed policies into every fresh IAM backend, which
# costs about a second per test. The tests attach only these, so moto gets only
# these (their real documents, from moto's own copy).
USED_MANAGED_POLICIES = ("AmazonECSTaskExecutionRolePolicy", "ReadOnlyAccess", "AmazonS3ReadOnlyAccess")
moto.iam.models.aws_managed_policies_data = json.dumps(  # type: ignore[attr-defined]  # moto's global, not re-exported
    {name: json.loads(aws_managed_policies_data)[name] for name in USED_MANAGED_POLICIES}
)


@pytest.fixture(autouse=True)
def isolated_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials, a fixed region, and no local AWS configuration or endpoint."""
    for name in list(os.environ):
        if name.startswith("AWS_") or name.startswith("MOTO_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
    # The stack runs no EC2 instance: skip moto's AMI catalogue (about a second per fresh backend).
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    # moto issues a requested ACM certificate this many seconds after the request (default 60, read from
    # MOTO_ACM_VALIDATION_WAIT when moto is imported, so set on its settings module): at once here; tests
    # of a pending certificate hold it back with hooks (tests/faults.py).
    monkeypatch.setattr(moto.settings, "ACM_VALIDATION_WAIT", 0)


def hosted_zone(clients: AwsClients, name: str = ZONE) -> str:
    """A public Route 53 hosted zone, as a user of `domain` has one; returns its ID (without /hostedzone/)."""
    zone = clients.route53.create_hosted_zone(Name=name, CallerReference=f"test-{name}")["HostedZone"]
    return zone["Id"].rsplit("/", 1)[-1]


@dataclass
class CallLog:
    """Every API call made through the recorded clients, as (service, operation)."""

    calls: list[tuple[str, str]] = field(default_factory=list)

    def record(self, model: Any, **_: Any) -> None:
        self.calls.append((model.service_model.service_name, model.name))

    def changing(self) -> list[tuple[str, str]]:
        return [call for call in self.calls if not call[1].startswith(READ_PREFIXES)]

    def clear(self) -> None:
        self.calls.clear()


TEST_CLIENT_CONFIG = Config(retries={"total_max_attempts": 1})


# One session for all in-process tests: its botocore loader keeps the parsed service
# models, which makes building clients ten times cheaper. One boto3.Session too: each new
# one over the same botocore session registers boto3's S3 handlers again, and the second
# registration refuses to build an S3 client ("Cannot inject class attribute 'upload_file'").
_SHARED_SESSION = boto3.Session(botocore_session=botocore.session.get_session(), region_name=REGION)


def recorded_clients(log: CallLog) -> AwsClients:
    """Clients as the CLI builds them, each recording its calls into `log`."""
    clients = build_clients(_SHARED_SESSION, TEST_CLIENT_CONFIG)
    for client in clients.every():
        client.meta.events.register("before-call", log.record)
        contract_hook(client)  # already there through the create_client patch; explicit here
    emulate_log_group_keys(clients.logs, ACCOUNT)
    aas_emulation.install(clients.autoscaling)
    keep_service_settings()
    s3_emulation.install()
    return clients


@pytest.fixture
def calls() -> CallLog:
    return CallLog()


@pytest.fixture
def aws(calls: CallLog) -> Iterator[AwsClients]:
    """In-process moto with AWS managed policies loaded; clients record their calls."""
    with mock_aws():
        yield recorded_clients(calls)


@pytest.fixture
def state_path(tmp_path: Path) -> Path:
    return tmp_path / "state.json"


class FakeClock(Clock):
    """Time that passes only when something sleeps: a wait that reaches its budget ends at once,
    and a retry loop cannot busy-poll moto on the real clock."""

    def __init__(self) -> None:
        self.time = 0.0
        self.slept: list[float] = []

    def now(self) -> float:
        return self.time

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.time += seconds


class RecordingOutput(Output):
    """Output that keeps what it was told (progress lines, live lines, warnings) instead of printing."""

    def __init__(self, terminal: bool = False) -> None:
        super().__init__("text", stdout=io.StringIO(), stderr=io.StringIO())
        self.terminal = terminal
        self.lines: list[str] = []
        self.shown: list[str] = []

    def line(self, text: str) -> None:
        self.lines.append(text)

    def detail(self, text: str) -> None:
        if self.verbose:
            self.lines.append(text)

    def warn(self, text: str) -> None:
        self.lines.append(f"warning: {text}")

    def live(self, text: str) -> None:
        if self.terminal:
            self.shown.append(text)


@dataclass
class FakeSite:
    """What the site URL answers in tests (None: no answer); moto's NLB names are fake, never probed."""

    status: int | None = None
    asked: list[str] = field(default_factory=list)
    via: list[str | None] = field(default_factory=list)  # the host each URL was asked through

    def __call__(self, url: str, via: str | None = None) -> int | None:
        self.asked.append(url)
        self.via.append(via)
        return self.status


def make_context(
    clients: AwsClients,
    settings: Settings,
    state_path: Path,
    state: State | None = None,
    **given: Any,
) -> StepContext:
    """A step context like the CLI builds, on a fake clock, with recorded output and a fake site."""
    validate(settings)
    state_file = StateFile(state_path)
    if state is None:
        state = state_file.load() or State(stack=settings.stack, region=REGION, account_id=ACCOUNT)
    defaults: dict[str, Any] = {"output": RecordingOutput(), "clock": FakeClock(), "probe": FakeSite()}
    return StepContext(
        clients=clients,
        settings=settings,
        ledger=Ledger(state, state_file.save),
        account_id=ACCOUNT,
        partition="aws",
        **{**defaults, **given},
    )


def planning(ctx: StepContext) -> StepContext:
    """The dry-run context the CLI builds for --dry-run: the same run, over a scratch ledger."""
    return replace(ctx, dry_run=True, ledger=Ledger.scratch(ctx.state))


def lost_state(ctx: StepContext, stack: str | None = None) -> StepContext:
    """The same run after its state file was lost: an empty state (saved nowhere)."""
    state = State(stack=stack or ctx.settings.stack, region=REGION, account_id=ACCOUNT)
    return replace(ctx, ledger=Ledger(state, lambda _state: None))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def output() -> RecordingOutput:
    return RecordingOutput()


@pytest.fixture
def site() -> FakeSite:
    return FakeSite()


@pytest.fixture
def settings() -> Settings:
    return Settings(stack="test-site", region=REGION, image=IMAGE)


@pytest.fixture
def ctx(
    aws: AwsClients, settings: Settings, state_path: Path, clock: FakeClock, output: RecordingOutput, site: FakeSite
) -> StepContext:
    return make_context(aws, settings, state_path, clock=clock, output=output, probe=site)


@pytest.fixture
def serving(ctx: StepContext, site: FakeSite) -> Rollout:
    """A rollout that goes well: ECS completes it, the targets turn healthy, the URL answers 200."""
    rollout = Rollout()
    rollout.install(ctx.clients.ecs, ctx.clients.elbv2)
    site.status = 200
    return rollout


@dataclass
class MotoServer:
    url: str

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 200


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """One moto server on loopback for the whole session; each test resets it."""
    os.environ["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"
    os.environ["MOTO_ECS_SERVICE_RUNNING"] = "1"
    keep_service_settings()  # the server answers from this process's moto
    s3_emulation.install()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield MotoServer(f"http://{host}:{port}")
    server.stop()


@pytest.fixture
def server(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """The server, reset; it reads these from this process's environment, which each test isolates."""
    monkeypatch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
    monkeypatch.setenv("MOTO_ECS_SERVICE_RUNNING", "1")
    moto_server.reset()
    return moto_server


def script_env(server: MotoServer | None, tmp_path: Path) -> dict[str, str]:
    """The environment a user would have: fake keys, a region, and the emulator's endpoint."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "MOTO_"))}
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"),
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONPATH=subprocess_pythonpath(os.environ.get("PYTHONPATH")),  # the AWS contract's sitecustomize
        # tests/aas_emulation.py in the scripts; beside the scratch folder, whose files some tests compare
        AAS_EMULATION_TAGS_FILE=str(tmp_path.parent / f"{tmp_path.name}-aas-tags.json"),
    )
    if server is not None:
        env["AWS_ENDPOINT_URL"] = server.url
    return env


RunScript = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run_script(tmp_path: Path) -> RunScript:
    """Run provision.py or teardown.py as a user would, from a scratch folder."""

    def run(
        script: str, *args: str, server: MotoServer | None = None, env: dict[str, str] | None = None, stdin: str = ""
    ) -> subprocess.CompletedProcess[str]:
        environment = script_env(server, tmp_path)
        config = tmp_path / "deploy.toml"
        if not config.exists():
            config.write_text("")
        flags = ["--config", str(config)] if script == "provision.py" else []
        environment.update(env or {})
        return subprocess.run(
            [sys.executable, str(PROJECT_DIR / script), *flags, *args],
            cwd=tmp_path,
            env=environment,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    return run


BASE_IMAGE = "flask-deployer/base:bookworm"  # built by scripts/setup-docker.sh (no registry can be reached)
REGISTRY_HOST = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"  # moto's ECR endpoint, served on 127.0.0.1:443


def docker_missing(reason: str) -> None:
    """Skip a Docker test with its reason; with REQUIRE_DOCKER=1 (CI) fail instead."""
    if os.environ.get("REQUIRE_DOCKER") == "1":
        pytest.fail(f"REQUIRE_DOCKER=1 but {reason}; run scripts/setup-docker.sh")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    """A reachable Docker engine that has the local base image."""
    try:
        client = docker.from_env()
        client.ping()  # type: ignore[no-untyped-call]
    except docker.errors.DockerException as exc:
        docker_missing(f"no Docker engine is reachable ({exc})")
    try:
        client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        docker_missing(f"the base image {BASE_IMAGE} is missing")
    return client


@pytest.fixture
def containers(docker_client: docker.DockerClient) -> Iterator[list[Container]]:
    """Containers a test starts; removed (forced) when it ends."""
    started: list[Container] = []
    yield started
    for container in started:
        container.remove(force=True)


@pytest.fixture
def observer() -> Iterator[AwsClients]:
    """A fresh in-process moto account, and clients (not the tool's) to look at what it holds (the crash-point
    tests run the tool in it with clients of their own)."""
    with mock_aws():
        clients = recorded_clients(CallLog())
        hosted_zone(clients)
        yield clients
