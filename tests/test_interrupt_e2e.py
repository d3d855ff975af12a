"""Ctrl-C while the real engine builds the site: provision stops at once and nothing is pushed afterwards.

The site's Dockerfile gets a slow step (`RUN sleep`), provision.py runs as a user would
against the emulator and the local registry, and SIGINT arrives one second into the build.
The run must exit 130 within two seconds (the build runs in a daemon thread the interrupt
does not wait for), the state on disk must hold what was created, and neither the
registry nor the engine may hold the image afterwards: leaving the process closes the
build stream, and the engine abandons a build whose client is gone.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import docker
import docker.errors
import pytest

from deployer.images import BuildSpec
from tests.conftest import BASE_IMAGE, PROJECT_DIR, MotoServer, script_env

SLOW_BUILD_SECONDS = 8
AUTH = {"username": "AWS", "password": "123456789012-auth-token"}  # moto's fixed ECR token


def slow_site(tmp_path: Path) -> Path:
    """A copy of website/ whose build takes SLOW_BUILD_SECONDS longer (and is unique to this run)."""
    site = tmp_path / "website"
    shutil.copytree(PROJECT_DIR / "website", site, ignore=shutil.ignore_patterns("__pycache__"))
    dockerfile = site / "Dockerfile"
    lines = dockerfile.read_text().splitlines()
    first_from = next(index for index, line in enumerate(lines) if line.startswith("FROM "))
    lines.insert(first_from + 1, f"RUN echo {uuid.uuid4().hex} && sleep {SLOW_BUILD_SECONDS}")
    dockerfile.write_text("\n".join(lines) + "\n")
    return site


def test_sigint_during_a_real_build_exits_130_at_once_and_pushes_nothing(
    docker_client: docker.DockerClient, server: MotoServer, tmp_path: Path
) -> None:
    site = slow_site(tmp_path)
    stack = f"int-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "deploy.toml"
    config.write_text(f'stack = "{stack}"\nbuild_context = "{site}"\n[build_args]\nBASE_IMAGE = "{BASE_IMAGE}"\n')
    process = subprocess.Popen(
        [sys.executable, str(PROJECT_DIR / "provision.py"), "--config", str(config), "--no-wait"],
        cwd=tmp_path,
        env=script_env(server, tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    building = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if line.strip().startswith("building "):
                building.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert building.wait(60), "the build never started: " + "".join(lines)
        time.sleep(1.0)
        process.send_signal(signal.SIGINT)
        interrupted = time.monotonic()
        returncode = process.wait(timeout=10)
        elapsed = time.monotonic() - interrupted
    finally:
        if process.poll() is None:
            process.kill()
    assert process.stderr is not None
    stderr = process.stderr.read()
    assert returncode == 130, stderr
    assert elapsed <= 2.0, f"exit took {elapsed:.1f} s after SIGINT"
    assert "interrupted" in stderr and "Traceback" not in stderr

    state = json.loads((tmp_path / "state.json").read_text())
    recorded = {record["step"]: record["ids"] for record in state["resources"]}
    assert "repository" in recorded, "what was created before the interrupt is in the state file"
    assert "image" not in recorded

    time.sleep(SLOW_BUILD_SECONDS + 2)  # past the moment the build would have finished and pushed
    repository = recorded["repository"]["uri"]
    tag = BuildSpec(context=site, dockerfile="Dockerfile", build_args={"BASE_IMAGE": BASE_IMAGE}).content_tag()
    with pytest.raises(docker.errors.NotFound):
        docker_client.images.get_registry_data(f"{repository}:{tag}", auth_config=AUTH)
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(f"{repository}:{tag}")
    assert "pushing" not in "".join(lines)
