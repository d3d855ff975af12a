"""Local mode (`--local`): the task-definition-to-container translation, the no-engine refusal, and end to end.

The end-to-end test runs provision.py --local against the real Docker engine (skipped
without one unless REQUIRE_DOCKER=1): every page answers on 127.0.0.1 only, a re-run
changes nothing (no build, same container), a changed site rebuilds and replaces the
container, and teardown.py --local leaves no container, no emulator process and no
open port.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from deployer import local, processes
from deployer.steps.ecs import SITE_USER
from tests.conftest import BASE_IMAGE, PROJECT_DIR, RunScript

PAGES = ("/", "/about", "/projects", "/healthz")

TASK_DEFINITION: dict[str, Any] = {
    "family": "site-web",
    "cpu": "256",
    "memory": "512",
    "networkMode": "awsvpc",
    "containerDefinitions": [
        {
            "name": "web",
            "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/site:abc",
            "essential": True,
            "portMappings": [{"containerPort": 8080, "protocol": "tcp"}],
            "environment": [{"name": "PORT", "value": "8080"}, {"name": "LOG_LEVEL", "value": "debug"}],
            "healthCheck": {
                "command": ["CMD", "python", "/app/healthcheck.py"],
                "interval": 10,
                "timeout": 5,
                "retries": 3,
                "startPeriod": 15,
            },
        }
    ],
}


# --- the translation ------------------------------------------------------------------------------


def test_host_network_listens_on_loopback_at_the_local_port() -> None:
    settings = local.container_settings(TASK_DEFINITION, stack="site", host_port=9090, host_network=True)
    assert settings == {
        "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/site:abc",
        "nano_cpus": 250_000_000,
        "mem_limit": "512m",
        "name": "site-local-web",
        "labels": {local.STACK_LABEL: "site", local.ROLE_LABEL: local.ROLE},
        "detach": True,
        "network_mode": "host",
        "environment": {"PORT": "9090", "LOG_LEVEL": "debug", "GUNICORN_CMD_ARGS": "--bind 127.0.0.1:9090"},
        "healthcheck": {
            "test": ["CMD", "python", "/app/healthcheck.py"],
            "interval": 10_000_000_000,
            "timeout": 5_000_000_000,
            "retries": 3,
            "start_period": 15_000_000_000,
        },
    }


def test_bridge_publishes_the_container_port_on_loopback_and_keeps_the_environment() -> None:
    settings = local.container_settings(TASK_DEFINITION, stack="site", host_port=9090, host_network=False)
    assert settings["ports"] == {"8080/tcp": ("127.0.0.1", 9090)}
    assert settings["environment"] == {"PORT": "8080", "LOG_LEVEL": "debug"}
    assert "network_mode" not in settings


def test_command_user_and_container_limits_are_carried_over() -> None:
    container = {
        **TASK_DEFINITION["containerDefinitions"][0],
        "command": ["gunicorn", "app:app"],
        "entryPoint": ["/bin/sh", "-c"],
        "user": "10001:10001",
        "workingDirectory": "/srv",
        "cpu": 512,
        "memory": 1024,
    }
    container.pop("healthCheck")
    definition = {**TASK_DEFINITION, "cpu": "1024", "memory": "2048", "containerDefinitions": [container]}
    settings = local.container_settings(definition, stack="site", host_port=8080, host_network=True)
    assert settings["command"] == ["gunicorn", "app:app"]
    assert settings["entrypoint"] == ["/bin/sh", "-c"]
    assert settings["user"] == "10001:10001"
    assert settings["working_dir"] == "/srv"
    assert settings["nano_cpus"] == 500_000_000  # the container's own 512 units: half a CPU
    assert settings["mem_limit"] == "1024m"
    assert "healthcheck" not in settings


def test_read_only_root_scratch_tmpfs_and_dropped_capabilities_are_carried_over() -> None:
    definition = copy.deepcopy(TASK_DEFINITION)
    definition["volumes"] = [{"name": "tmp"}, {"name": "data", "host": {"sourcePath": "/srv/data"}}]
    definition["containerDefinitions"][0].update(
        readonlyRootFilesystem=True,
        user="10001:10001",
        mountPoints=[
            {"sourceVolume": "tmp", "containerPath": "/tmp", "readOnly": False},
            {"sourceVolume": "data", "containerPath": "/data"},
        ],
        linuxParameters={"capabilities": {"drop": ["ALL"]}},
    )
    settings = local.container_settings(definition, stack="site", host_port=8080, host_network=True)
    assert settings["read_only"] is True
    assert settings["tmpfs"] == {"/tmp": ""}  # a host path is never mounted from this machine
    assert settings["cap_drop"] == ["ALL"] and "cap_add" not in settings
    assert settings["user"] == "10001:10001"
    plain = local.container_settings(TASK_DEFINITION, stack="site", host_port=8080, host_network=True)
    assert not {"read_only", "tmpfs", "cap_drop", "cap_add"} & set(plain)
    assert local.settings_hash(settings, "sha256:1") != local.settings_hash(plain, "sha256:1")


def test_task_limits_apply_when_the_container_has_none() -> None:
    definition = {**TASK_DEFINITION, "cpu": "4096", "memory": "8192"}
    settings = local.container_settings(definition, stack="site", host_port=8080, host_network=True)
    assert settings["nano_cpus"] == 4_000_000_000
    assert settings["mem_limit"] == "8192m"


def test_health_check_defaults_are_ecs_defaults() -> None:
    assert local.docker_healthcheck({"command": ["CMD-SHELL", "true"]}) == {
        "test": ["CMD-SHELL", "true"],
        "interval": 30_000_000_000,
        "timeout": 5_000_000_000,
        "retries": 3,
        "start_period": 0,
    }


def test_settings_hash_changes_with_the_image_or_a_setting() -> None:
    settings = local.container_settings(TASK_DEFINITION, stack="site", host_port=8080, host_network=True)
    same = local.container_settings(TASK_DEFINITION, stack="site", host_port=8080, host_network=True)
    other_port = local.container_settings(TASK_DEFINITION, stack="site", host_port=8081, host_network=True)
    assert local.settings_hash(settings, "sha256:a") == local.settings_hash(same, "sha256:a")
    assert local.settings_hash(settings, "sha256:a") != local.settings_hash(settings, "sha256:b")
    assert local.settings_hash(settings, "sha256:a") != local.settings_hash(other_port, "sha256:a")


def test_a_missing_or_foreign_sidecar_is_no_emulator(tmp_path: Path) -> None:
    state = tmp_path / "state.local.json"
    assert local.running_emulator(state) is None
    local.sidecar_path(state).write_text(json.dumps({"pid": os.getpid(), "port": local.free_port()}))
    assert local.running_emulator(state) is None  # this pid is pytest, not moto: never taken for the emulator


# --- no engine ------------------------------------------------------------------------------------


def test_without_an_engine_it_says_what_to_install_and_creates_nothing(run_script: RunScript, tmp_path: Path) -> None:
    result = run_script("provision.py", "--local", env={"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "install Docker Engine" in result.stderr and "Nothing was started or created" in result.stderr
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith("state")) == []


# --- end to end -----------------------------------------------------------------------------------


@pytest.fixture
def site(tmp_path: Path) -> Path:
    copy = tmp_path / "website"
    shutil.copytree(PROJECT_DIR / "website", copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


@pytest.fixture
def local_stack(docker_client: docker.DockerClient, tmp_path: Path, site: Path) -> Iterator[tuple[str, int]]:
    """A unique stack on a free port; afterwards nothing of it is left, whatever the test did."""
    stack = f"loc-{uuid.uuid4().hex[:8]}"
    (tmp_path / "deploy.toml").write_text(f'stack = "{stack}"\nbuild_context = "{site}"\n')
    yield stack, local.free_port()
    state = tmp_path / local.LOCAL_STATE_FILE
    local.remove_site(docker_client, stack, lambda _line: None)
    local.stop_emulator(state, lambda _line: None)  # only a pid recorded by this test, and only if it is moto
    for image in docker_client.images.list():
        for tag in image.tags:
            if tag.rsplit(":", 1)[0].endswith(f"/{stack}"):
                with contextlib.suppress(docker.errors.APIError):
                    docker_client.images.remove(tag, force=True)


def test_provision_serve_rerun_change_teardown(
    docker_client: docker.DockerClient, run_script: RunScript, tmp_path: Path, site: Path, local_stack: tuple[str, int]
) -> None:
    stack, port = local_stack
    flags = ("--local", "--local-port", str(port), "--build-arg", f"BASE_IMAGE={BASE_IMAGE}")
    first = run_script("provision.py", *flags)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "building" in first.stdout
    assert sum("push skipped" in line for line in first.stdout.splitlines()) == 1
    assert f"Site URL: http://127.0.0.1:{port}" in first.stdout
    state = json.loads((tmp_path / local.LOCAL_STATE_FILE).read_text())
    image = next(entry["ids"] for entry in state["resources"] if entry["step"] == "image")
    assert image["image_id"].startswith("sha256:") and image["uri"].endswith(f"/{stack}:{image['tag']}")
    emulator = json.loads(local.sidecar_path(tmp_path / local.LOCAL_STATE_FILE).read_text())
    container = docker_client.containers.get(local.container_name(stack))
    assert container.labels[local.STACK_LABEL] == stack
    # Confined as on Fargate: read-only root, /tmp a tmpfs, no capabilities, the image's non-root user.
    host = container.attrs["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert set(host["Tmpfs"]) == {"/tmp"}
    assert container.attrs["Config"]["User"] == SITE_USER
    assert container.exec_run(["id", "-u"]).output.decode().strip() == SITE_USER.split(":")[0]
    assert container.exec_run(["touch", "/app/written"]).exit_code != 0, "the root filesystem must be read-only"
    assert container.exec_run(["touch", "/tmp/written"]).exit_code == 0, "/tmp must be writable"

    for path in PAGES:
        assert fetch(f"http://127.0.0.1:{port}{path}") == 200, path
    assert listening_addresses(port) == {"127.0.0.1"}, "the site must be reachable from loopback only"

    second = run_script("provision.py", *flags)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "building" not in second.stdout and "push skipped" not in second.stdout
    assert f"reusing pid {emulator['pid']}" in second.stdout
    for outcome in (" created ", " updated ", " replaced "):
        assert outcome not in second.stdout, second.stdout
    assert docker_client.containers.get(local.container_name(stack)).id == container.id

    home = site / "templates" / "home.html"
    home.write_text(home.read_text() + "\n<!-- changed by the local-mode test -->\n")
    third = run_script("provision.py", *flags)
    assert third.returncode == 0, third.stdout + third.stderr
    assert "building" in third.stdout and "local container        replaced" in third.stdout
    assert docker_client.containers.get(local.container_name(stack)).id != container.id
    assert fetch(f"http://127.0.0.1:{port}/") == 200

    down = run_script("teardown.py", "--local")
    assert down.returncode == 0, down.stdout + down.stderr
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(local.container_name(stack))
    assert not docker_client.containers.list(all=True, filters={"label": f"{local.STACK_LABEL}={stack}"})
    assert not processes.process_alive(emulator["pid"])
    assert local.port_free(port) and local.port_free(emulator["port"])
    assert not listening_addresses(port) and not listening_addresses(emulator["port"])
    leftovers = sorted(path.name for path in tmp_path.iterdir() if path.name.startswith("state"))
    assert leftovers == [], leftovers


def fetch(url: str) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return error.code


def listening_addresses(port: int) -> set[str]:
    """The IPv4 addresses something listens on at `port`, read from /proc (no traffic sent)."""
    addresses = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        address, _, hex_port = fields[1].partition(":")
        if fields[3] == "0A" and int(hex_port, 16) == port:
            addresses.add(".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0)))
    return addresses
