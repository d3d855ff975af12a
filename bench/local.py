"""Wall time of local mode: provision --local cold and warm, and teardown --local.

What it measures (each as a user runs it: `python provision.py ...` in a subprocess, from a
scratch folder, with no AWS configuration in the environment)
    1. cold -- `provision.py --local` for a new stack with a fresh build argument, so the
       engine has no image with that content tag and the tool builds it (the engine's
       layer cache may serve the Dockerfile steps: the figure is the deployer's path,
       not a from-scratch pip install); it also starts the emulator, creates every
       resource in it, runs the container and waits for /healthz. Reported, no target.
    2. warm -- the same command again, nothing changed: the emulator is reused, no
       build, every step unchanged, the same container. Target: <= 3 s.
    3. teardown -- `teardown.py --local`: container removed, resources deleted from the
       emulator, emulator stopped. Target: <= 5 s.

    Checked along the way: the warm run built nothing and kept the container; after the
    teardown no container, no emulator process and no listening port is left. The image
    built for the run is removed at the end. Only 127.0.0.1 is contacted.

Exit code 0 when every target and check is met, 1 otherwise, 2 (skipped) when no Docker
engine answers or the base image flask-deployer/base:bookworm is missing.

How to run it (from the repository root, in its virtualenv; about 15 s here)
    python bench/local.py
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import docker
import docker.errors

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from deployer import local  # noqa: E402

BASE_IMAGE = "flask-deployer/base:bookworm"
WARM_TARGET_SECONDS = 3.0
TEARDOWN_TARGET_SECONDS = 5.0
SKIPPED = 2


def main() -> int:
    client = _engine()
    if client is None:
        return SKIPPED
    stack = f"bench-{uuid.uuid4().hex[:8]}"
    port = local.free_port()
    with tempfile.TemporaryDirectory(prefix="bench-local-") as scratch:
        folder = Path(scratch)
        (folder / "deploy.toml").write_text(f'stack = "{stack}"\n')
        flags = [
            "--local",
            "--local-port",
            str(port),
            "--build-arg",
            f"BASE_IMAGE={BASE_IMAGE}",
            "--build-arg",
            f"BENCH_NONCE={uuid.uuid4().hex}",  # a new content tag: the image is not built yet
        ]
        try:
            return _measure(client, folder, stack, port, flags)
        finally:
            state = folder / local.LOCAL_STATE_FILE
            local.remove_site(client, stack, lambda _line: None)
            local.stop_emulator(state, lambda _line: None)
            _remove_images(client, stack)


def _measure(client: docker.DockerClient, folder: Path, stack: str, port: int, flags: list[str]) -> int:
    cold_seconds, cold = _timed(folder, "provision.py", "--config", "deploy.toml", *flags)
    if cold.returncode != 0:
        print(f"cold provision failed:\n{cold.stdout}{cold.stderr}", file=sys.stderr)
        return 1
    first_id = client.containers.get(local.container_name(stack)).id
    emulator = json.loads(local.sidecar_path(folder / local.LOCAL_STATE_FILE).read_text())
    warm_seconds, warm = _timed(folder, "provision.py", "--config", "deploy.toml", *flags)
    warm_ok = (
        warm.returncode == 0
        and "building" not in warm.stdout
        and " created " not in warm.stdout
        and " updated " not in warm.stdout
        and client.containers.get(local.container_name(stack)).id == first_id
    )
    down_seconds, down = _timed(folder, "teardown.py", "--local")
    gone = (
        down.returncode == 0
        and not client.containers.list(all=True, filters={"label": f"{local.STACK_LABEL}={stack}"})
        and not local.process_alive(int(emulator["pid"]))
        and local.port_free(port)
        and local.port_free(int(emulator["port"]))
    )
    checks = [
        ("provision --local, cold (build, emulator start, all resources, container, /healthz)", cold_seconds, None),
        ("provision --local, warm (nothing changed)", warm_seconds, WARM_TARGET_SECONDS),
        ("teardown --local", down_seconds, TEARDOWN_TARGET_SECONDS),
    ]
    passed = True
    for label, seconds, target in checks:
        verdict = "" if target is None else ("PASS" if seconds <= target else "FAIL")
        passed = passed and verdict != "FAIL"
        bound = "(reported)" if target is None else f"(target <= {target:.0f} s)"
        print(f"{label:<82} {seconds:6.2f} s  {bound:<16} {verdict}")
    for label, ok in (
        ("warm run built nothing, changed nothing, kept the container", warm_ok),
        ("after teardown: no container, no emulator process, ports free", gone),
    ):
        print(f"{label:<82} {'':>26} {'PASS' if ok else 'FAIL'}")
    if not warm_ok:
        print(warm.stdout + warm.stderr, file=sys.stderr)
    if not gone:
        print(down.stdout + down.stderr, file=sys.stderr)
    ok = passed and warm_ok and gone
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def _timed(folder: Path, script: str, *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "MOTO_"))}
    env.update(AWS_CONFIG_FILE=str(folder / "no-aws-config"), AWS_SHARED_CREDENTIALS_FILE=str(folder / "no-creds"))
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / script), *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return time.monotonic() - started, result


def _engine() -> docker.DockerClient | None:
    try:
        client = docker.from_env()
        client.ping()  # type: ignore[no-untyped-call]
        client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        print(f"skipped: the base image {BASE_IMAGE} is missing (run scripts/setup-docker.sh)", file=sys.stderr)
        return None
    except docker.errors.DockerException as exc:
        print(f"skipped: no Docker engine is reachable ({exc})", file=sys.stderr)
        return None
    return client


def _remove_images(client: docker.DockerClient, stack: str) -> None:
    for image in client.images.list():
        for tag in image.tags:
            if tag.rsplit(":", 1)[0].endswith(f"/{stack}"):
                with contextlib.suppress(docker.errors.APIError):
                    client.images.remove(tag, force=True)


if __name__ == "__main__":
    sys.exit(main())
