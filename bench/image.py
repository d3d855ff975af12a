"""Build times, re-provision cost and size of the site's image, with a real Docker engine and registry.

What it measures
    1. cold build -- `docker build` of website/ with the Docker SDK, with the same
       arguments as `deployer.images.ImageBuilder.build` (BASE_IMAGE=
       flask-deployer/base:bookworm, linux/amd64, host networking) plus
       `nocache=True`. "Cold" means: no layer of the build cache is used, so every
       Dockerfile step runs again -- the virtualenv is created and the pinned wheels
       are downloaded from PyPI (pip runs with --no-cache-dir, so there is no wheel
       cache either). The base image itself is local (nothing can be pulled here),
       so pulling it is not part of the figure; on a real machine a first build
       would add that pull. Reported, no target: it depends on PyPI's speed.
    2. rebuild after a template change -- website/ is copied to a scratch folder
       and built once through `ImageBuilder.build` (the deployer's own code path,
       build cache allowed); then templates/home.html gets one more line and the
       second build is timed. The dependency layer (the `pip install` step) must
       come from the cache: its layer id is compared between the two images.
       Target: <= 5 s.
    3. provision with nothing changed -- the whole stack is provisioned twice,
       in this process through the library the way deployer/cli.py does it
       (session, clients, STS identity, state file, `runner.provision(ctx,
       wait=True)`), with one `ImageBuilder` whose `builds` and `pushes` counters
       are read after each run. AWS is a moto `ThreadedMotoServer` on 127.0.0.1 (a
       free port, reached through AWS_ENDPOINT_URL, fake credentials, no local AWS
       configuration); ECR's token from moto is accepted by the emulated registry
       that scripts/setup-docker.sh runs on 127.0.0.1:443, so the image really is
       pushed and really is looked up again. The stack name is unique per run (the
       registry keeps its images across runs, so a reused name would find the image
       already there). The first provision must build and push once; the second
       must build 0 and push 0. Then the stack is torn down.
    4. size added on top of the base image -- the cold-built image's size minus
       the base image's (as `docker image inspect` reports them: uncompressed, in
       MB of 10^6 bytes, as `docker images` shows), and the sizes of the layers the
       Dockerfile added, from the image's history. Target: <= 25 MB.

    Every image this run tagged locally is removed at the end (their layers go
    with them unless another image uses them). Only loopback is contacted: the
    Docker engine's registry host must be mapped to 127.0.0.1 in /etc/hosts, or the
    benchmark skips rather than let the engine resolve it elsewhere.

Targets (exit code 0 when all are met, 1 otherwise)
    rebuild after a template change <= 5 s, with the dependency layer from the
    cache; first provision: 1 build and 1 push; provision with nothing changed:
    0 builds and 0 pushes; size added to the base image <= 25 MB.

Exit code 2 (skipped) when no Docker engine answers, the base image
flask-deployer/base:bookworm is missing, or the emulated ECR registry is not set
up (scripts/setup-docker.sh does all three).

How to run it (from the repository root, in its virtualenv; about 15 s here, most of it
the cold build, whose time depends on the connection to PyPI)
    python bench/image.py           # a readable report
    python bench/image.py --json    # the same figures as one JSON document
    python bench/image.py --quiet   # without the build and deployer progress lines

Progress lines go to stderr; the report (or JSON) to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import docker  # noqa: E402
import docker.errors  # noqa: E402
from docker.models.images import Image  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402

from bench.common import isolate_environment  # noqa: E402
from deployer import runner  # noqa: E402
from deployer.clients import account_id, build_clients, create_session  # noqa: E402
from deployer.errors import DeployerError  # noqa: E402
from deployer.images import PLATFORM, BuildSpec, ImageBuilder  # noqa: E402
from deployer.settings import Settings, validate  # noqa: E402
from deployer.state import State, StateFile, check_identity  # noqa: E402
from deployer.steps.base import StepContext  # noqa: E402
from tests.rollouts import Rollout  # noqa: E402

WEBSITE = REPO_ROOT / "website"
DOCKERFILE = "Dockerfile"
BASE_IMAGE = "flask-deployer/base:bookworm"
BUILD_ARGS = {"BASE_IMAGE": BASE_IMAGE}
BENCH_REPOSITORY = "flask-deployer/bench-image"
TEMPLATE = Path("templates") / "home.html"
DEPENDENCY_STEP = "pip install"  # how the dependency layer's history entry can be recognized
REGION = "us-east-1"
ACCOUNT = "123456789012"
REGISTRY_HOST = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
REGISTRY_ADDRESS = ("127.0.0.1", 443)
COPY_IGNORE = shutil.ignore_patterns("__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache")
MB = 1_000_000

REBUILD_MAX_SECONDS = 5.0
ADDED_MAX_MB = 25.0
EXIT_SKIPPED = 2


class MissingPrerequisiteError(Exception):
    """Something this benchmark needs is not on this machine."""


class BenchError(Exception):
    """A build did not do what the benchmark needs."""


@dataclass(frozen=True)
class Layer:
    step: str
    bytes: int


@dataclass
class Builds:
    cold_seconds: float
    cold_image: str
    rebuild_first_seconds: float
    rebuild_seconds: float
    dependency_layer_reused: bool
    image_changed: bool


@dataclass
class Size:
    image_bytes: int
    base_bytes: int
    layers: list[Layer]

    @property
    def added_bytes(self) -> int:
        return self.image_bytes - self.base_bytes

    @property
    def layers_bytes(self) -> int:
        return sum(layer.bytes for layer in self.layers)


@dataclass
class Provision:
    name: str
    seconds: float
    builds: int
    pushes: int
    outcomes: dict[str, int]  # how many steps were created, updated, unchanged...
    changed_steps: dict[str, str]


@dataclass
class Measurement:
    stack: str
    builds: Builds
    size: Size
    provisions: list[Provision]
    teardown_seconds: float


@dataclass(frozen=True)
class Target:
    name: str
    value: float
    limit: float
    compare: str  # "<=", ">=" or "=="
    unit: str = ""
    decimals: int = 0

    @property
    def met(self) -> bool:
        if self.compare == "<=":
            return self.value <= self.limit
        if self.compare == ">=":
            return self.value >= self.limit
        return self.value == self.limit

    def describe(self) -> str:
        return (
            f"{self.name}: {self.value:.{self.decimals}f}{self.unit} (target {self.compare} {self.limit:g}{self.unit})"
        )

    def to_json(self) -> dict[str, Any]:
        value = round(self.value, self.decimals)
        return {
            "name": self.name.strip(),
            "value": value,
            "limit": self.limit,
            "compare": self.compare,
            "met": self.met,
        }


@dataclass
class Cleanup:
    """Local image references this run created, removed at the end."""

    references: list[str] = field(default_factory=list)

    def remove_all(self, client: docker.DockerClient, echo: bool) -> None:
        for reference in reversed(self.references):
            try:
                client.images.remove(reference)
            except docker.errors.ImageNotFound:
                pass
            except docker.errors.APIError as exc:
                say(f"   (could not remove {reference}: {exc.explanation or exc})", echo)


# --- preconditions ------------------------------------------------------------------------------


def docker_client() -> docker.DockerClient:
    """The engine with the base image, or MissingPrerequisiteError saying what is missing."""
    try:
        client = docker.from_env(timeout=900)
        client.ping()  # type: ignore[no-untyped-call]
    except docker.errors.DockerException as exc:
        raise MissingPrerequisiteError(f"no Docker engine is reachable ({exc}); run scripts/setup-docker.sh") from exc
    try:
        client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound as exc:
        raise MissingPrerequisiteError(f"the base image {BASE_IMAGE} is missing; run scripts/setup-docker.sh") from exc
    return client


def check_registry() -> None:
    """The emulated ECR host must be loopback in /etc/hosts (never resolved elsewhere) and answer on 443."""
    mapped = False
    for line in Path("/etc/hosts").read_text(encoding="utf-8", errors="replace").splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) >= 2 and REGISTRY_HOST in words[1:]:
            mapped = words[0].startswith("127.")
            break
    if not mapped:
        raise MissingPrerequisiteError(
            f"{REGISTRY_HOST} is not mapped to 127.0.0.1 in /etc/hosts, so the push would not stay on this "
            "machine; run scripts/setup-docker.sh"
        )
    try:
        socket.create_connection(REGISTRY_ADDRESS, timeout=3).close()
    except OSError as exc:
        raise MissingPrerequisiteError(
            f"the emulated ECR registry does not answer on {REGISTRY_ADDRESS[0]}:{REGISTRY_ADDRESS[1]} ({exc}); "
            "run scripts/setup-docker.sh"
        ) from exc


# --- builds and size ----------------------------------------------------------------------------


def cold_build(client: docker.DockerClient, reference: str) -> tuple[float, Image]:
    """ImageBuilder.build's arguments plus nocache: every step runs, the wheels come from PyPI again."""
    started = time.perf_counter()
    try:
        image, log = client.images.build(
            path=str(WEBSITE),
            dockerfile=DOCKERFILE,
            tag=reference,
            buildargs=BUILD_ARGS,
            platform=PLATFORM,
            network_mode="host",
            rm=True,
            forcerm=True,
            nocache=True,
            pull=False,
        )
    except docker.errors.BuildError as exc:
        raise BenchError(f"the cold build failed: {exc.msg}") from exc
    seconds = time.perf_counter() - started
    output = "".join(str(chunk.get("stream", "")) for chunk in log if isinstance(chunk, dict))
    if "Successfully installed" not in output:  # pip's last line: the dependencies really were installed
        raise BenchError(f"the cold build did not run pip install; is it really uncached? Output:\n{output[-2000:]}")
    return seconds, image


def history_above_base(image: Image, base: Image) -> list[dict[str, Any]]:
    """The image's history entries (newest first) that the Dockerfile added on top of the base."""
    history = image.history()
    added = len(history) - len(base.history())
    if added < 0 or history[added]["Id"] != base.id:
        raise BenchError(f"{image.tags} is not built on {BASE_IMAGE}")
    return history[:added]


def step_text(created_by: str) -> str:
    text = created_by.removeprefix("/bin/sh -c ").removeprefix("#(nop) ").strip()
    return " ".join(text.split())


def measure_size(image: Image, base: Image) -> Size:
    layers = [
        Layer(step_text(entry["CreatedBy"]), int(entry["Size"]))
        for entry in reversed(history_above_base(image, base))
        if entry["Size"]
    ]
    return Size(int(image.attrs["Size"]), int(base.attrs["Size"]), layers)


def dependency_layer(image: Image, base: Image) -> str:
    for entry in history_above_base(image, base):
        if DEPENDENCY_STEP in entry["CreatedBy"]:
            return str(entry["Id"])
    raise BenchError(f"no '{DEPENDENCY_STEP}' step in the history of {image.tags}")


def timed_build(builder: ImageBuilder, spec: BuildSpec, reference: str) -> float:
    started = time.perf_counter()
    builder.build(spec, reference)
    return time.perf_counter() - started


def measure_builds(
    client: docker.DockerClient, base: Image, scratch: Path, *, run_id: str, cleanup: Cleanup, echo: bool
) -> tuple[Builds, Size]:
    cold_reference = f"{BENCH_REPOSITORY}:cold-{run_id}"
    say(f"== cold build of {WEBSITE} (nocache) as {cold_reference}", echo)
    cleanup.references.append(cold_reference)
    cold_seconds, cold = cold_build(client, cold_reference)
    size = measure_size(cold, base)

    site = scratch / "rebuild-site"
    shutil.copytree(WEBSITE, site, ignore=COPY_IGNORE)
    spec = BuildSpec(context=site, dockerfile=DOCKERFILE, build_args=dict(BUILD_ARGS))
    builder = ImageBuilder(connect=lambda: client, progress=lambda line: say(line, echo))
    before, after = f"{BENCH_REPOSITORY}:rebuild-a-{run_id}", f"{BENCH_REPOSITORY}:rebuild-b-{run_id}"
    say(f"== a copy of the site, built with the cache, then again after a change to {TEMPLATE}", echo)
    cleanup.references.append(before)
    first_seconds = timed_build(builder, spec, before)
    template = site / TEMPLATE
    template.write_text(template.read_text(encoding="utf-8") + f"\n<!-- bench/image.py {run_id} -->\n")
    cleanup.references.append(after)
    rebuild_seconds = timed_build(builder, spec, after)
    first, second = client.images.get(before), client.images.get(after)
    builds = Builds(
        cold_seconds=cold_seconds,
        cold_image=str(cold.id),
        rebuild_first_seconds=first_seconds,
        rebuild_seconds=rebuild_seconds,
        dependency_layer_reused=dependency_layer(first, base) == dependency_layer(second, base),
        image_changed=first.id != second.id,
    )
    return builds, size


# --- provision against moto and the emulated registry -------------------------------------------


def cli_like_context(settings: Settings, state_path: Path, builder: ImageBuilder, echo: bool) -> StepContext:
    """What deployer/cli.py assembles: session, clients, identity, state, context, the image builder."""
    session = create_session(settings.region)
    clients = build_clients(session)
    account = account_id(clients)
    state_file = StateFile(state_path)
    state = state_file.load() or State(stack=settings.stack, region=clients.region, account_id=account)
    check_identity(state, settings.stack, clients.region, account, state_file.path)
    return StepContext(
        clients=clients,
        settings=settings,
        state=state,
        account_id=account,
        partition=session.get_partition_for_region(clients.region),
        save=lambda: state_file.save(state),
        say=lambda line: say(line, echo),
        images=builder,
        probe=lambda _url: 200,  # moto's NLB name is fake: never send traffic to it
    )


def provision_once(name: str, settings: Settings, state_path: Path, builder: ImageBuilder, echo: bool) -> Provision:
    say(f"== {name}", echo)
    builds, pushes = builder.builds, builder.pushes
    started = time.perf_counter()
    ctx = cli_like_context(settings, state_path, builder, echo)
    Rollout().install(ctx.clients.ecs, ctx.clients.elbv2)  # moto never completes a rollout by itself
    report = runner.provision(ctx, wait=True)
    seconds = time.perf_counter() - started
    outcomes = dict(Counter(line.outcome for line in report.steps))
    changed = {line.step: line.outcome for line in report.steps if line.outcome != "unchanged"}
    return Provision(name, seconds, builder.builds - builds, builder.pushes - pushes, outcomes, changed)


def measure_provisions(scratch: Path, stack: str, cleanup: Cleanup, echo: bool) -> tuple[list[Provision], float]:
    isolate_environment(scratch, REGION, MOTO_ECS_SERVICE_RUNNING="1")
    # The emulator's werkzeug server logs every request to stderr; only its errors matter here.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    site = scratch / "provision-site"
    shutil.copytree(WEBSITE, site, ignore=COPY_IGNORE)
    settings = Settings(stack=stack, region=REGION, build_context=str(site), build_args=dict(BUILD_ARGS))
    validate(settings)
    state_path = scratch / "state.json"
    builder = ImageBuilder(connect=lambda: docker.from_env(timeout=900), progress=lambda line: say(line, echo))
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        os.environ["AWS_ENDPOINT_URL"] = f"http://{host}:{port}"
        provisions = [provision_once("first provision", settings, state_path, builder, echo)]
        image = StateFile(state_path).load()
        recorded = image.get("image") if image is not None else None
        if recorded and recorded.get("tag"):
            cleanup.references.append(f"{recorded['repository']}:{recorded['tag']}")
        provisions.append(provision_once("provision with nothing changed", settings, state_path, builder, echo))
        say("== teardown", echo)
        started = time.perf_counter()
        runner.teardown(cli_like_context(settings, state_path, builder, echo))
        StateFile(state_path).delete()  # as teardown.py does
        return provisions, time.perf_counter() - started
    finally:
        server.stop()


# --- the run ------------------------------------------------------------------------------------


def measure(echo: bool) -> Measurement:
    client = docker_client()
    check_registry()
    base = client.images.get(BASE_IMAGE)
    run_id = uuid.uuid4().hex[:8]
    stack = f"bench-image-{run_id}"
    cleanup = Cleanup()
    saved_environment = dict(os.environ)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-image-") as folder:
            scratch = Path(folder)
            builds, size = measure_builds(client, base, scratch, run_id=run_id, cleanup=cleanup, echo=echo)
            provisions, teardown_seconds = measure_provisions(scratch, stack, cleanup, echo)
        return Measurement(stack, builds, size, provisions, teardown_seconds)
    finally:
        os.environ.clear()
        os.environ.update(saved_environment)
        with contextlib.suppress(docker.errors.DockerException):
            cleanup.remove_all(client, echo)


def targets(measurement: Measurement) -> list[Target]:
    builds, size = measurement.builds, measurement.size
    first, second = measurement.provisions
    return [
        Target("rebuild after a template change", builds.rebuild_seconds, REBUILD_MAX_SECONDS, "<=", " s", 2),
        Target("  its dependency layer came from the cache", int(builds.dependency_layer_reused), 1, "=="),
        Target("  the template change is in the new image", int(builds.image_changed), 1, "=="),
        Target("first provision: builds", first.builds, 1, "=="),
        Target("first provision: pushes", first.pushes, 1, "=="),
        Target("provision with nothing changed: builds", second.builds, 0, "=="),
        Target("provision with nothing changed: pushes", second.pushes, 0, "=="),
        Target("size added to the base image", size.added_bytes / MB, ADDED_MAX_MB, "<=", " MB", 2),
    ]


def say(line: str, echo: bool) -> None:
    if echo:
        print(line, file=sys.stderr, flush=True)


def print_report(measurement: Measurement, checks: list[Target]) -> None:
    builds, size = measurement.builds, measurement.size
    print(f"cold build of website/ (no layer cache, wheels from PyPI): {builds.cold_seconds:.1f} s")
    print(f"build of an unchanged copy (all layers cached): {builds.rebuild_first_seconds:.2f} s")
    print(
        f"rebuild after a change to {TEMPLATE}: {builds.rebuild_seconds:.2f} s "
        f"(dependency layer {'reused' if builds.dependency_layer_reused else 'REBUILT'})"
    )
    print()
    print(
        f"size: image {size.image_bytes / MB:.1f} MB, base {size.base_bytes / MB:.1f} MB, "
        f"added {size.added_bytes / MB:.2f} MB; layers added by the Dockerfile ({size.layers_bytes / MB:.2f} MB):"
    )
    for layer in size.layers:
        step = layer.step if len(layer.step) <= 90 else layer.step[:87] + "..."
        print(f"  {layer.bytes / MB:8.2f} MB  {step}")
    print()
    print(f"stack {measurement.stack} against moto and the emulated registry:")
    for provision in measurement.provisions:
        steps = ", ".join(f"{count} {outcome}" for outcome, count in provision.outcomes.items())
        print(
            f"  {provision.name}: {provision.seconds:.2f} s, {provision.builds} build(s), "
            f"{provision.pushes} push(es); steps: {steps}"
        )
    print(f"  teardown: {measurement.teardown_seconds:.2f} s")
    print()
    print("targets:")
    for check in checks:
        print(f"  {'PASS' if check.met else 'FAIL'}  {check.describe()}")
    print("PASS: all targets met" if all(c.met for c in checks) else "FAIL: some targets are not met")


def to_json(measurement: Measurement, checks: list[Target]) -> dict[str, Any]:
    builds, size = measurement.builds, measurement.size
    return {
        "cold_build": {
            "seconds": round(builds.cold_seconds, 2),
            "meaning": "nocache=True: every Dockerfile step runs, wheels downloaded from PyPI; base image local",
        },
        "rebuild": {
            "unchanged_copy_seconds": round(builds.rebuild_first_seconds, 3),
            "after_template_change_seconds": round(builds.rebuild_seconds, 3),
            "dependency_layer_reused": builds.dependency_layer_reused,
            "image_changed": builds.image_changed,
        },
        "size": {
            "unit": "MB (10^6 bytes, uncompressed)",
            "image_mb": round(size.image_bytes / MB, 2),
            "base_mb": round(size.base_bytes / MB, 2),
            "added_mb": round(size.added_bytes / MB, 2),
            "layers": [{"step": layer.step, "mb": round(layer.bytes / MB, 3)} for layer in size.layers],
        },
        "stack": measurement.stack,
        "provisions": [
            {
                "name": provision.name,
                "seconds": round(provision.seconds, 2),
                "builds": provision.builds,
                "pushes": provision.pushes,
                "step_outcomes": provision.outcomes,
                "steps_not_unchanged": provision.changed_steps,
            }
            for provision in measurement.provisions
        ],
        "teardown_seconds": round(measurement.teardown_seconds, 2),
        "targets": [check.to_json() for check in checks],
        "pass": all(check.met for check in checks),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON document")
    parser.add_argument("--quiet", action="store_true", help="no build or deployer progress lines on stderr")
    args = parser.parse_args(argv)
    try:
        measurement = measure(echo=not args.quiet)
    except MissingPrerequisiteError as exc:
        print(f"SKIP: {exc}", file=sys.stderr)
        return EXIT_SKIPPED
    except DeployerError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    checks = targets(measurement)
    if args.json:
        print(json.dumps(to_json(measurement, checks), indent=2))
    else:
        print_report(measurement, checks)
    return 0 if all(check.met for check in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
