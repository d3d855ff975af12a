"""Build times, re-provision cost and size of the site's image, with a real Docker engine and registry.

What it measures
    1. cold build -- `docker build` of website/ with `ImageBuilder.build`'s arguments
       (BASE_IMAGE=flask-deployer/base:bookworm, linux/amd64, host networking) plus
       `nocache=True`: every Dockerfile step runs, the pinned wheels come from PyPI again.
       The base image is local, so its pull is not part of the figure. Reported, no target.
    2. rebuild after a template change -- a copy of website/ built through `ImageBuilder`
       (the deployer's code path, cache allowed), then templates/home.html gets one more
       line and the second build is timed; the `pip install` layer must come from the cache.
    3. provision with nothing changed -- the stack provisioned twice through the library as
       deployer/cli.py does it (`bench.common.moto_context`, `runner.provision(ctx, wait=True)`),
       one `ImageBuilder` whose `builds` and `pushes` are read after each run. AWS is moto
       on loopback; its ECR token is accepted by the emulated registry scripts/setup-docker.sh
       runs on 127.0.0.1:443, so the image really is pushed and looked up again. The stack
       name is unique per run (the registry keeps images). Then the stack is torn down.
    4. size added on top of the base image -- the cold image's size minus the base's
       (uncompressed, MB of 10^6 bytes, as `docker images` shows), and the Dockerfile's layers.

    Every image tagged here is removed at the end. Only loopback is contacted: the
    registry host must be mapped to 127.0.0.1 in /etc/hosts, or the run is skipped.

Targets
    rebuild after a template change <= 5 s with the dependency layer from the cache; first
    provision 1 build and 1 push; provision with nothing changed 0 builds and 0 pushes;
    size added to the base image <= 25 MB.

How to run it (from the repository root, in its virtualenv; about 15 s, most of it the cold build)
    python bench/image.py [--json] [--quiet]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import sys
import tempfile
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import docker
import docker.errors
from docker.models.images import Image

from bench import common
from deployer import runner
from deployer.images import PLATFORM, BuildSpec, ImageBuilder
from deployer.settings import Settings, validate
from deployer.state import StateFile

REPOSITORY = "flask-deployer/bench-image"
BUILD_ARGS = {"BASE_IMAGE": common.BASE_IMAGE}
TEMPLATE = Path("templates") / "home.html"
REGISTRY_HOST = f"123456789012.dkr.ecr.{common.REGION}.amazonaws.com"
MB = 1_000_000


def check_registry() -> None:
    """The emulated ECR host must be loopback in /etc/hosts (never resolved elsewhere) and answer on 443."""
    hosts = [line.split("#", 1)[0].split() for line in Path("/etc/hosts").read_text(errors="replace").splitlines()]
    if not any(words[0].startswith("127.") and REGISTRY_HOST in words[1:] for words in hosts if len(words) >= 2):
        raise common.MissingPrerequisiteError(f"{REGISTRY_HOST} is not mapped to 127.0.0.1 in /etc/hosts")
    try:
        socket.create_connection(("127.0.0.1", 443), timeout=3).close()
    except OSError as exc:
        raise common.MissingPrerequisiteError(
            f"the emulated ECR registry does not answer on 127.0.0.1:443 ({exc})"
        ) from exc


def added_history(image: Image, base: Image) -> list[dict[str, object]]:
    """The image's history entries (newest first) that the Dockerfile added on top of the base."""
    history = image.history()
    added = len(history) - len(base.history())
    if added < 0 or history[added]["Id"] != base.id:
        raise common.BenchError(f"{image.tags} is not built on {common.BASE_IMAGE}")
    return list(history[:added])


def dependency_layer(image: Image, base: Image) -> object:
    for entry in added_history(image, base):
        if "pip install" in str(entry["CreatedBy"]):
            return entry["Id"]
    raise common.BenchError(f"no 'pip install' step in the history of {image.tags}")


def builds(
    client: docker.DockerClient, base: Image, scratch: Path, images: common.LocalImages, output: common.BenchOutput
) -> common.Result:
    run = uuid.uuid4().hex[:8]
    cold_ref, before, after = (f"{REPOSITORY}:{name}-{run}" for name in ("cold", "rebuild-a", "rebuild-b"))
    images.references += [cold_ref, before, after]
    output.line(f"== cold build of {common.WEBSITE} (nocache) as {cold_ref}")
    cold_seconds, (cold, log) = common.timed(
        lambda: client.images.build(
            path=str(common.WEBSITE), dockerfile="Dockerfile", tag=cold_ref, buildargs=BUILD_ARGS, platform=PLATFORM,
            network_mode="host", rm=True, forcerm=True, nocache=True, pull=False,
        )
    )  # fmt: skip
    if "Successfully installed" not in "".join(str(c.get("stream", "")) for c in log if isinstance(c, dict)):
        raise common.BenchError("the cold build did not run pip install; is it really uncached?")
    site = scratch / "site"
    shutil.copytree(common.WEBSITE, site, ignore=shutil.ignore_patterns("__pycache__", ".*_cache"))
    spec, builder = BuildSpec(site, "Dockerfile", dict(BUILD_ARGS)), ImageBuilder(output, connect=lambda: client)
    output.line(f"== a copy of the site, built with the cache, then again after a change to {TEMPLATE}")
    first_seconds, _ = common.timed(lambda: builder.build(spec, before))
    (site / TEMPLATE).write_text((site / TEMPLATE).read_text() + f"\n<!-- bench/image.py {run} -->\n")
    rebuild_seconds, _ = common.timed(lambda: builder.build(spec, after))
    first, second = client.images.get(before), client.images.get(after)
    second_layer = dependency_layer(second, base)
    layers = [(str(e["CreatedBy"]).removeprefix("/bin/sh -c "), int(str(e["Size"]))) for e in added_history(cold, base)]
    added = (int(cold.attrs["Size"]) - int(base.attrs["Size"])) / MB
    rows = [
        f"cold build of website/ (no layer cache, wheels from PyPI): {cold_seconds:.1f} s",
        f"build of an unchanged copy (all layers cached): {first_seconds:.2f} s",
        f"rebuild after a change to {TEMPLATE}: {rebuild_seconds:.2f} s",
        f"size: image {int(cold.attrs['Size']) / MB:.1f} MB, base {int(base.attrs['Size']) / MB:.1f} MB, "
        f"added {added:.2f} MB; layers added by the Dockerfile:",
        *(f"  {size / MB:8.2f} MB  {' '.join(step.split())[:90]}" for step, size in reversed(layers) if size),
    ]
    targets = [
        common.Target("rebuild after a template change", rebuild_seconds, 5.0, unit=" s", decimals=2),
        common.Target.check(
            "  its dependency layer came from the cache", dependency_layer(first, base) == second_layer
        ),
        common.Target.check("  the template change is in the new image", first.id != second.id),
        common.Target("size added to the base image", added, 25.0, unit=" MB", decimals=2),
    ]
    figures = {"cold_build_seconds": cold_seconds, "rebuild_seconds": rebuild_seconds, "added_mb": added}
    return common.Result(rows, figures, targets)


def provisions(scratch: Path, output: common.BenchOutput, images: common.LocalImages) -> common.Result:
    site = scratch / "provision-site"
    shutil.copytree(common.WEBSITE, site, ignore=shutil.ignore_patterns("__pycache__", ".*_cache"))
    stack = f"bench-image-{uuid.uuid4().hex[:8]}"
    # moto's ECR API does not hold what the engine pushes to the stand-in registry, so it has no scan to show
    # (tests/scans.py): the scan check is tests/test_image_scan.py's, not this benchmark's.
    settings = Settings(
        stack=stack, region=common.REGION, build_context=str(site), build_args=dict(BUILD_ARGS), fail_on_scan="none"
    )
    validate(settings)
    state_path, builder = scratch / "state.json", ImageBuilder(output, connect=lambda: docker.from_env(timeout=900))
    rows, targets, figures = [f"stack {settings.stack} against moto and the emulated registry:"], [], {}
    with common.moto_server(scratch, MOTO_ECS_SERVICE_RUNNING="1"):
        for name, expected in (("first provision", 1), ("provision with nothing changed", 0)):
            output.line(f"== {name}")
            done = builder.builds, builder.pushes
            ctx = common.moto_context(settings, state_path, output, images=builder)
            seconds, report = common.timed(lambda: runner.provision(ctx, wait=True))  # noqa: B023 -- called at once
            built, pushed = builder.builds - done[0], builder.pushes - done[1]
            image = ctx.ids("image")
            images.references.append(f"{image['repository']}:{image['tag']}")
            steps = ", ".join(f"{n} {outcome}" for outcome, n in Counter(line.outcome for line in report.steps).items())
            rows.append(f"  {name}: {seconds:.2f} s, {built} build(s), {pushed} push(es); steps: {steps}")
            targets += [
                common.Target(f"{name}: builds", built, expected, "=="),
                common.Target(f"{name}: pushes", pushed, expected, "=="),
            ]
            figures[name] = {"seconds": seconds, "builds": built, "pushes": pushed}
        output.line("== teardown")
        ctx = common.moto_context(settings, state_path, output, images=builder)
        seconds, _ = common.timed(lambda: runner.teardown(ctx))
        StateFile(state_path).delete()  # as teardown.py does
    rows.append(f"  teardown: {seconds:.2f} s")
    return common.Result(rows, {**figures, "teardown_seconds": seconds}, targets)


def measure(args: argparse.Namespace, output: common.BenchOutput) -> common.Result:
    client = common.docker_engine()
    check_registry()
    images = common.LocalImages(client)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-image-") as folder:
            built = builds(client, client.images.get(common.BASE_IMAGE), Path(folder), images, output)
            provisioned = provisions(Path(folder), output, images)
    finally:
        images.remove_all()
    return common.Result(
        [*built.lines, "", *provisioned.lines, ""],
        {**built.figures, **provisioned.figures},
        built.targets[:3] + provisioned.targets + built.targets[3:],
    )


if __name__ == "__main__":
    sys.exit(common.main(__doc__, measure))
