"""Wall time of local mode: provision --local cold and warm, and teardown --local.

What it measures (each as a user runs it: `python provision.py ...` in a subprocess, from a scratch
folder, with no AWS configuration in the environment; only 127.0.0.1 is contacted)
    1. cold -- `provision.py --local` for a new stack with a fresh build argument, so the tool builds
       an image (the engine's layer cache may serve the Dockerfile steps: the figure is the deployer's
       path, not a from-scratch pip install), starts the emulator, creates every resource in it, runs
       the container and waits for /healthz. Reported, no target.
    2. warm -- the same command again, nothing changed: emulator reused, no build, the same container.
    3. teardown -- `teardown.py --local`: container removed, resources deleted, emulator stopped.
    The image built for the run is removed at the end.

Targets
    warm <= 3 s; teardown <= 5 s; the warm run built and changed nothing and kept the container;
    after teardown no container, no emulator process and no listening port is left.
    Skipped without a Docker engine or the base image (scripts/setup-docker.sh makes both).

How to run it (from the repository root, in its virtualenv; about 15 s on a quiet machine)
    python bench/local.py [--json] [--quiet]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import docker
import docker.errors

from bench import common
from deployer import local, processes


def run(folder: Path, *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    """A command as a user runs it, from `folder`, common.timed; it must succeed."""
    command = [sys.executable, str(common.REPO_ROOT / args[0]), *args[1:]]
    seconds, done = common.timed(
        lambda: subprocess.run(
            command,
            cwd=folder,
            env=common.clean_environment(folder),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    )
    if done.returncode != 0:
        raise common.BenchError(f"{' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return seconds, done


def measure(args: argparse.Namespace, output: common.BenchOutput) -> common.Result:
    client = common.docker_engine()
    stack, port = f"bench-{uuid.uuid4().hex[:8]}", local.free_port()
    nonce = f"BENCH_NONCE={uuid.uuid4().hex}"  # a new content tag: the image is not built yet
    provision = ["provision.py", "--config", "deploy.toml", "--local", "--local-port", str(port)]
    provision += ["--build-arg", f"BASE_IMAGE={common.BASE_IMAGE}", "--build-arg", nonce]
    with tempfile.TemporaryDirectory(prefix="bench-local-") as scratch:
        folder = Path(scratch)
        (folder / "deploy.toml").write_text(f'stack = "{stack}"\n')
        try:
            output.line(f"== provision --local, cold ({stack})")
            cold_seconds, _ = run(folder, *provision)
            first_id = client.containers.get(local.container_name(stack)).id
            emulator = json.loads(local.sidecar_path(folder / local.LOCAL_STATE_FILE).read_text())
            output.line("== provision --local, warm")
            warm_seconds, warm = run(folder, *provision)
            kept = not any(word in warm.stdout for word in ("building", " created ", " updated "))
            kept = kept and client.containers.get(local.container_name(stack)).id == first_id
            output.line("== teardown --local")
            down_seconds, _ = run(folder, "teardown.py", "--local")
            left = client.containers.list(all=True, filters={"label": f"{local.STACK_LABEL}={stack}"})
            gone = not left and not processes.process_alive(int(emulator["pid"]))
            gone = gone and local.port_free(port) and local.port_free(int(emulator["port"]))
        finally:
            local.remove_site(client, stack, output.line)
            local.stop_emulator(folder / local.LOCAL_STATE_FILE, output.line)
            remove_images(client, stack)
    rows = [
        f"provision --local, cold (build, emulator start, all resources, container, /healthz): {cold_seconds:.2f} s"
    ]
    targets = [
        common.Target("provision --local, warm (nothing changed)", warm_seconds, 3.0, unit=" s", decimals=2),
        common.Target("teardown --local", down_seconds, 5.0, unit=" s", decimals=2),
        common.Target.check("warm run built nothing, changed nothing, kept the container", kept),
        common.Target.check("after teardown: no container, no emulator process, ports free", gone),
    ]
    figures = {"cold_seconds": cold_seconds, "warm_seconds": warm_seconds, "teardown_seconds": down_seconds}
    return common.Result([*rows, ""], figures, targets)


def remove_images(client: docker.DockerClient, stack: str) -> None:
    for tag in (tag for image in client.images.list() for tag in image.tags):
        if tag.rsplit(":", 1)[0].endswith(f"/{stack}"):
            with contextlib.suppress(docker.errors.APIError):
                client.images.remove(tag, force=True)


if __name__ == "__main__":
    sys.exit(common.main(__doc__, measure))
