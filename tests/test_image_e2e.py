"""End to end with a real Docker engine and a real registry behind moto's ECR endpoint.

provision (no --image) builds the site, pushes it to the emulated ECR, and deploys
it by digest; the image is pulled back and run the way the task definition says;
every page answers and renders in headless Chromium; an unchanged site builds and
pushes nothing; a template change gives a new tag, a new task-definition revision
and a service update; teardown removes everything.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import struct
import subprocess
import time
import urllib.request
import uuid
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import docker
import docker.errors
import pytest
from docker.models.containers import Container

from deployer.steps.ecs import SITE_USER
from tests.conftest import BASE_IMAGE, PROJECT_DIR, REGION, MotoServer, RunScript

if TYPE_CHECKING:
    from mypy_boto3_ecs.type_defs import TaskDefinitionTypeDef

PAGES = {"/": "Your Name", "/about": "About", "/projects": "Projects"}
ARTIFACTS = PROJECT_DIR / "test-artifacts"
AUTH = {"username": "AWS", "password": "123456789012-auth-token"}  # moto's fixed ECR token


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A copy of website/ the test may change."""
    copy = tmp_path / "website"
    shutil.copytree(PROJECT_DIR / "website", copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


@pytest.fixture
def deploy_config(tmp_path: Path, site: Path) -> tuple[str, int]:
    """A unique stack (the registry outlives test runs) and a free port for the container."""
    stack = f"e2e-{uuid.uuid4().hex[:8]}"
    port = free_port()
    # No scan check: the image goes to the stand-in registry, which moto's ECR API knows nothing of, and moto
    # never scans on push; the check's answers are scripted in tests/test_image_scan.py.
    (tmp_path / "deploy.toml").write_text(
        f'stack = "{stack}"\ncontainer_port = {port}\nbuild_context = "{site}"\nfail_on_scan = "none"\n'
        f'[build_args]\nBASE_IMAGE = "{BASE_IMAGE}"\n'
    )
    return stack, port


def test_build_push_run_rebuild_teardown(
    docker_client: docker.DockerClient,
    server: MotoServer,
    run_script: RunScript,
    tmp_path: Path,
    site: Path,
    deploy_config: tuple[str, int],
    containers: list[Container],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stack, port = deploy_config
    docker_config = Path.home() / ".docker" / "config.json"
    config_before = docker_config.read_bytes() if docker_config.exists() else None
    first = run_script("provision.py", "--no-wait", server=server)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "building" in first.stdout and "pushing" in first.stdout
    # The ECR token never reaches the output, a log, or docker's credential file.
    assert "auth-token" not in first.stdout + first.stderr
    assert (docker_config.read_bytes() if docker_config.exists() else None) == config_before
    image = state_of(tmp_path)["image"]
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", image["digest"])
    assert image["uri"] == f"{image['repository']}@{image['digest']}"
    assert "auth-token" not in (tmp_path / "state.json").read_text()

    # Pulled back from the registry, by digest, after the local copy is gone.
    for reference in (f"{image['repository']}:{image['tag']}", image["uri"]):
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_client.images.remove(reference, force=True)
    pulled = docker_client.images.pull(image["uri"], auth_config=AUTH)
    assert image["uri"] in pulled.attrs["RepoDigests"]
    assert pulled.attrs["Architecture"] == "amd64"

    ecs = aws_session(server, monkeypatch).client("ecs")
    definition = ecs.describe_task_definition(taskDefinition=f"{stack}-web")["taskDefinition"]
    container_definition = definition["containerDefinitions"][0]
    assert container_definition["image"] == image["uri"]
    assert_hardened(definition, pulled.attrs["Config"]["User"])
    container = run_as_task_definition(docker_client, definition)
    containers.append(container)
    base = f"http://127.0.0.1:{port}"
    wait_for(f"{base}/healthz", container)
    assert_confined(container)
    for path in [*PAGES, "/healthz", "/static/css/site.css"]:
        assert fetch(f"{base}{path}")[0] == 200, path
    assert fetch(f"{base}/no-such-page")[0] == 404
    health = container.exec_run(container_definition["healthCheck"]["command"][1:])
    assert health.exit_code == 0, health.output
    render_pages(base)

    # Nothing changed: no build, no push, no change at all.
    second = run_script("provision.py", "--no-wait", server=server)
    assert second.returncode == 0, second.stderr
    assert "building" not in second.stdout and "pushing" not in second.stdout
    assert " created " not in second.stdout and " updated " not in second.stdout
    assert state_of(tmp_path)["image"] == image

    # A template change: new tag, new task-definition revision, service update.
    home = site / "templates" / "home.html"
    home.write_text(home.read_text() + "\n<!-- changed by the end-to-end test -->\n")
    third = run_script("provision.py", "--no-wait", server=server)
    assert third.returncode == 0, third.stderr
    changed = state_of(tmp_path)
    assert changed["image"]["tag"] != image["tag"]
    assert changed["task-definition"]["arn"].endswith(":2")
    for step in ("image", "task-definition", "service"):
        assert re.search(rf"^{step}\s+updated ", third.stdout, re.MULTILINE), third.stdout
    service = ecs.describe_services(cluster=f"{stack}-cluster", services=[f"{stack}-web"])["services"][0]
    assert service["taskDefinition"] == changed["task-definition"]["arn"]

    down = run_script("teardown.py", "--yes", server=server)
    assert down.returncode == 0, down.stderr
    assert aws_session(server, monkeypatch).client("ecr").describe_repositories()["repositories"] == []


def state_of(folder: Path) -> dict[str, dict[str, str]]:
    state = json.loads((folder / "state.json").read_text())
    return {entry["step"]: entry["ids"] for entry in state["resources"]}


def aws_session(server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> boto3.Session:
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    return boto3.Session(region_name=REGION)


def assert_hardened(task: TaskDefinitionTypeDef, image_user: str) -> None:
    """Read-only root, one scratch volume at /tmp, no capabilities, the image's non-root user, non-blocking logs."""
    container = task["containerDefinitions"][0]
    assert container.get("readonlyRootFilesystem") is True
    assert container.get("linuxParameters", {}).get("capabilities", {}).get("drop") == ["ALL"]
    assert container.get("user") == image_user == SITE_USER
    assert task.get("volumes") == [{"name": "tmp"}]
    assert container.get("mountPoints") == [{"sourceVolume": "tmp", "containerPath": "/tmp", "readOnly": False}]
    assert container.get("logConfiguration", {}).get("options", {}).get("mode") == "non-blocking"


def assert_confined(container: Container) -> None:
    """The running container as Fargate confines it, and the site serving regardless (checked by the caller)."""
    container.reload()
    host = container.attrs["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert set(host["Tmpfs"]) == {"/tmp"}
    assert user_of(container) == SITE_USER.split(":")[0], "the site must run as the image's non-root user"
    assert container.exec_run(["touch", "/app/written"]).exit_code != 0, "the root filesystem must be read-only"
    assert container.exec_run(["touch", "/tmp/written"]).exit_code == 0, "/tmp must be writable"


def run_as_task_definition(client: docker.DockerClient, task: TaskDefinitionTypeDef) -> Container:
    """What Fargate would run: the image by digest, its command, environment and ports; host network here.

    Confined the same way: `--read-only` for readonlyRootFilesystem, a tmpfs wherever the container
    mounts a task volume that is a plain bind mount (a name only), `--cap-drop` for the dropped
    capabilities, and `--user`.
    """
    definition = task["containerDefinitions"][0]
    scratch = {volume["name"] for volume in task.get("volumes", []) if set(volume) == {"name"}}
    capabilities = definition.get("linuxParameters", {}).get("capabilities", {})
    return client.containers.run(
        definition["image"],
        command=definition.get("command"),
        environment={item["name"]: item["value"] for item in definition.get("environment", [])},
        user=definition.get("user"),
        read_only=definition.get("readonlyRootFilesystem", False),
        tmpfs={m["containerPath"]: "" for m in definition.get("mountPoints", []) if m["sourceVolume"] in scratch},
        cap_drop=capabilities.get("drop"),
        network_mode="host",
        detach=True,
    )


def user_of(container: Container) -> str:
    output: bytes = container.exec_run(["id", "-u"]).output
    return output.decode().strip()


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return int(answer.status), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, b""


def wait_for(url: str, container: Container, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if fetch(url)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    container.reload()
    pytest.fail(f"{url} never answered; container {container.status}, logs:\n{container.logs().decode()[-2000:]}")


def render_pages(base: str) -> None:
    """Headless Chromium renders each page: a screenshot kept as an artifact, the title, and not blank."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed; run scripts/setup-docker.sh")
    ARTIFACTS.mkdir(exist_ok=True)
    for path, title in PAGES.items():
        name = path.strip("/") or "home"
        shot = ARTIFACTS / f"page-{name}.png"
        profile = ARTIFACTS / f".chromium-{uuid.uuid4().hex}"
        flags = [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--window-size=1280,900",
        ]
        try:
            dom = subprocess.run(
                [*flags, "--dump-dom", f"{base}{path}"], capture_output=True, text=True, timeout=60, check=True
            ).stdout
            subprocess.run(
                [*flags, f"--screenshot={shot}", f"{base}{path}"], capture_output=True, timeout=60, check=True
            )
        finally:
            shutil.rmtree(profile, ignore_errors=True)
        found = re.search(r"<title>(.*?)</title>", dom, re.DOTALL)
        assert found and title in found.group(1), f"{path}: title {found.group(1) if found else None!r}"
        assert shot.stat().st_size > 5000, f"{path}: the screenshot looks blank"
        assert not_blank(shot), f"{path}: the screenshot is a single colour"


def not_blank(png: Path) -> bool:
    """A blank page compresses to rows of one colour: few distinct bytes once the PNG's IDAT data is inflated."""
    data = png.read_bytes()
    chunks, offset = [], 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        if data[offset + 4 : offset + 8] == b"IDAT":
            chunks.append(data[offset + 8 : offset + 8 + length])
        offset += 12 + length
    return len(set(zlib.decompress(b"".join(chunks)))) > 16
