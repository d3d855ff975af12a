"""Local mode (`--local`): the whole stack against an AWS emulator, and the site in the local Docker engine.

The flow of `provision.py --local`:

1. The Docker engine is checked first: without one, nothing is started or created.
2. The emulator (moto's server, on 127.0.0.1, AWS managed policies loaded) is reused if
   the sidecar file beside the state file (`<state>.emulator.json`: pid and port) names a
   process that is still moto and still answers on its port; otherwise a new one is
   started in its own session, so it outlives the command and keeps the resources for the
   next run and for teardown. Its output goes to `<state>.emulator.log`.
3. This process's environment is pointed at it (`AWS_ENDPOINT_URL`, fake credentials
   `local`, region us-east-1 unless given), and the very same steps run, into their own
   state file (`state.local.json`). The image step builds into the local engine only
   (`local_image`): the emulator has no registry, so nothing is pushed; the state records
   the local tag and image id.
4. The registered task definition's container is run the way Fargate would run it
   (`container_settings`): same image, command, environment, user, CPU and memory limits,
   health check, read-only root filesystem with a tmpfs where the task mounts its scratch
   volume, and dropped capabilities, under a fixed name (`<stack>-local-web`) and labels. It is replaced
   only when those settings or the image differ, so a re-run changes nothing. Then
   /healthz is awaited and `http://127.0.0.1:<port>` printed.

The engine here runs without a bridge network, so the container shares the host's
network: PORT is set to the local port, and GUNICORN_CMD_ARGS binds gunicorn to
127.0.0.1 (it overrides the image's `0.0.0.0` bind), so the site is reachable from this
machine only. With a bridge, the container port is published on 127.0.0.1 instead.

`teardown.py --local` removes the container, deletes the recorded resources from the
emulator with the usual teardown, stops the emulator (its process group), and removes
the sidecar and log files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container

from deployer.errors import DeployerError
from deployer.images import BuildSpec, DockerUnavailableError, ImageBuilder
from deployer.probe import probe
from deployer.processes import process_alive
from deployer.state import Ids

LOCAL_STATE_FILE = "state.local.json"
DEFAULT_REGION = "us-east-1"
DEFAULT_PORT = 8080
FAKE_CREDENTIAL = "local"
LOOPBACK = "127.0.0.1"

STACK_LABEL = "deployer.stack"
ROLE_LABEL = "deployer.role"
ROLE = "local-web"
SETTINGS_LABEL = "deployer.settings-hash"

EMULATOR_START_SECONDS = 30.0
EMULATOR_STOP_SECONDS = 10.0
HEALTH_WAIT_SECONDS = 90.0
HEALTH_PROBE_SECONDS = 2.0
NANOSECONDS = 1_000_000_000
LOG_TAIL_LINES = 20

Say = Callable[[str], None]


# --- the emulator ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Emulator:
    pid: int
    port: int

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"


def sidecar_path(state_path: Path) -> Path:
    return state_path.with_name(state_path.name + ".emulator.json")


def log_path(state_path: Path) -> Path:
    return state_path.with_name(state_path.name + ".emulator.log")


def running_emulator(state_path: Path) -> Emulator | None:
    """The recorded emulator if its process is still moto and its port still answers."""
    try:
        recorded = json.loads(sidecar_path(state_path).read_text(encoding="utf-8"))
        emulator = Emulator(pid=int(recorded["pid"]), port=int(recorded["port"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not _is_moto(emulator.pid) or not port_answers(emulator.port):
        return None
    return emulator


def ensure_emulator(state_path: Path, say: Say) -> Emulator:
    """Reuse the recorded emulator, or start one that outlives this command."""
    emulator = running_emulator(state_path)
    if emulator is not None:
        say(f"Local AWS emulator: reusing pid {emulator.pid} at {emulator.url}")
        return emulator
    port = free_port()
    env = {**os.environ, "MOTO_IAM_LOAD_MANAGED_POLICIES": "true"}
    log = log_path(state_path)
    with log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group: it outlives us, and teardown stops the group
        )
    emulator = Emulator(process.pid, port)
    deadline = time.monotonic() + EMULATOR_START_SECONDS
    while not port_answers(port):
        if process.poll() is not None or time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            raise DeployerError(
                f"The local AWS emulator did not start (exit code {process.poll()}). Last output:\n{_tail(log)}",
                where=f"{sys.executable} -m moto.server on {LOOPBACK}:{port}",
                todo="Install moto with its server extra (pip install 'moto[server]', see requirements-dev.txt) "
                "in the environment running provision.py; nothing was created",
            )
        time.sleep(0.1)
    sidecar_path(state_path).write_text(json.dumps({"pid": emulator.pid, "port": port}) + "\n", encoding="utf-8")
    say(f"Local AWS emulator: started pid {emulator.pid} at {emulator.url} (log: {log})")
    return emulator


def stop_emulator(state_path: Path, say: Say) -> None:
    """Stop the recorded emulator's process group (only if it is still moto) and remove its files."""
    sidecar = sidecar_path(state_path)
    try:
        pid = int(json.loads(sidecar.read_text(encoding="utf-8"))["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        pid = 0
    if pid and _is_moto(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + EMULATOR_STOP_SECONDS
        while process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if process_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        say(f"Local AWS emulator: stopped pid {pid}")
    sidecar.unlink(missing_ok=True)
    log_path(state_path).unlink(missing_ok=True)


def use_emulator(emulator: Emulator, region: str | None) -> None:
    """Point this process's AWS chain at the emulator, with fake credentials and no profile."""
    for name in list(os.environ):
        if name.startswith("AWS_ENDPOINT_URL_") or name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN"):
            del os.environ[name]
    os.environ.update(
        AWS_ENDPOINT_URL=emulator.url,
        AWS_ACCESS_KEY_ID=FAKE_CREDENTIAL,
        AWS_SECRET_ACCESS_KEY=FAKE_CREDENTIAL,
        AWS_DEFAULT_REGION=region or DEFAULT_REGION,
        AWS_REGION=region or DEFAULT_REGION,
    )
    bypass = [item for item in os.environ.get("NO_PROXY", "").split(",") if item]
    os.environ["NO_PROXY"] = ",".join(dict.fromkeys([*bypass, LOOPBACK, "localhost"]))  # no proxy for loopback


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def port_answers(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5):
            return True
    except OSError:
        return False


def port_free(port: int) -> bool:
    """True if nothing listens on 127.0.0.1:port (or on every address at that port)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers do not count
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def _is_moto(pid: int) -> bool:
    """Alive and running moto's server: a recycled pid is never taken for the emulator."""
    if not process_alive(pid):
        return False
    try:
        return b"moto.server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc: trust the pid and the port check


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "    (no log)"
    return "\n".join(f"    {line}" for line in lines[-LOG_TAIL_LINES:])


# --- the engine and the image ---------------------------------------------------------------------


def require_engine(images: ImageBuilder) -> docker.DockerClient:
    """The Docker engine, checked before the emulator starts or anything is created."""
    try:
        return images.client()
    except DockerUnavailableError as exc:
        raise DeployerError(
            exc.what,
            where=exc.where,
            todo="Local mode builds and runs the site in Docker: install Docker Engine "
            "(https://docs.docker.com/engine/install/, e.g. `sudo apt-get install docker.io`) or Docker Desktop, "
            "start it, and run again. Nothing was started or created",
        ) from exc


def local_image(builder: ImageBuilder, spec: BuildSpec, reference: str, dry_run: bool, say: Say) -> Ids:
    """The site's image in the local engine, tagged by content; built only if the engine lacks that tag."""
    repository, _, tag = reference.rpartition(":")
    image_id = _image_id(builder.client(), reference)
    if image_id is None and dry_run:
        return {"uri": f"{reference} (to be built)", "repository": repository, "tag": tag}
    if image_id is None:
        builder.build(spec, reference)
        image_id = _image_id(builder.client(), reference) or ""
        say(f"  push skipped: the local emulator has no registry; {reference} stays in the local engine")
    return {"uri": reference, "repository": repository, "tag": tag, "image_id": image_id}


def _image_id(client: docker.DockerClient, reference: str) -> str | None:
    try:
        return str(client.images.get(reference).id)
    except docker.errors.ImageNotFound:
        return None


# --- the container --------------------------------------------------------------------------------


def container_name(stack: str) -> str:
    return f"{stack}-local-web"


def docker_healthcheck(health: Mapping[str, Any]) -> dict[str, Any]:
    """ECS's healthCheck (seconds) as Docker's (nanoseconds); ECS's defaults where a field is absent."""
    return {
        "test": list(health["command"]),
        "interval": int(health.get("interval", 30)) * NANOSECONDS,
        "timeout": int(health.get("timeout", 5)) * NANOSECONDS,
        "retries": int(health.get("retries", 3)),
        "start_period": int(health.get("startPeriod", 0)) * NANOSECONDS,
    }


def container_settings(
    task_definition: Mapping[str, Any], *, stack: str, host_port: int, host_network: bool
) -> dict[str, Any]:
    """`containers.run` keyword arguments that run the task definition's (single) container as Fargate would.

    CPU units become nano_cpus (1024 units = one CPU) and MiB become mem_limit, from the
    container's own limits or else the task's. With host networking the site must listen
    on the local port itself, on loopback only: PORT is set to it and GUNICORN_CMD_ARGS
    binds gunicorn to 127.0.0.1. With a bridge, the container port is published on
    127.0.0.1:host_port and the environment is left as it is.
    """
    container = task_definition["containerDefinitions"][0]
    cpu = int(container.get("cpu") or task_definition.get("cpu") or 0)
    memory = int(container.get("memory") or task_definition.get("memory") or 0)
    environment = {item["name"]: item["value"] for item in container.get("environment", [])}
    ports = [mapping["containerPort"] for mapping in container.get("portMappings", [])]
    settings: dict[str, Any] = {
        "image": container["image"],
        "command": container.get("command"),
        "entrypoint": container.get("entryPoint"),
        "user": container.get("user"),
        "working_dir": container.get("workingDirectory"),
        "nano_cpus": cpu * NANOSECONDS // 1024 if cpu else None,
        "mem_limit": f"{memory}m" if memory else None,
        "name": container_name(stack),
        "labels": {STACK_LABEL: stack, ROLE_LABEL: ROLE},
        "detach": True,
    }
    if host_network:
        environment["PORT"] = str(host_port)
        environment["GUNICORN_CMD_ARGS"] = f"--bind {LOOPBACK}:{host_port}"
        settings["network_mode"] = "host"
    elif ports:
        settings["ports"] = {f"{ports[0]}/tcp": (LOOPBACK, host_port)}
    settings["environment"] = environment
    settings.update(hardening(task_definition))
    if "healthCheck" in container:
        settings["healthcheck"] = docker_healthcheck(container["healthCheck"])
    return {key: value for key, value in settings.items() if value is not None}


def hardening(task_definition: Mapping[str, Any]) -> dict[str, Any]:
    """The container's confinement as `containers.run` arguments: what Fargate enforces, enforced here too.

    readonlyRootFilesystem -> read_only (`--read-only`); each mount of a task volume that is a plain
    bind mount (a name only: scratch space on the task's ephemeral storage, empty at start) -> a tmpfs
    at the same path (`--tmpfs`, mode 1777 by default); linuxParameters.capabilities -> cap_drop and
    cap_add (`--cap-drop ALL`). The user is passed by `container_settings` (`--user`).
    """
    container = task_definition["containerDefinitions"][0]
    scratch = {
        volume["name"]
        for volume in task_definition.get("volumes") or []
        if not any(volume.get(kind) for kind in ("host", "dockerVolumeConfiguration", "efsVolumeConfiguration"))
    }
    tmpfs = {
        mount["containerPath"]: "" for mount in container.get("mountPoints") or [] if mount["sourceVolume"] in scratch
    }
    capabilities = (container.get("linuxParameters") or {}).get("capabilities") or {}
    settings: dict[str, Any] = {
        "read_only": True if container.get("readonlyRootFilesystem") else None,
        "tmpfs": tmpfs or None,
        "cap_drop": list(capabilities.get("drop") or []) or None,
        "cap_add": list(capabilities.get("add") or []) or None,
    }
    return {key: value for key, value in settings.items() if value is not None}


def settings_hash(settings: Mapping[str, Any], image_id: str) -> str:
    """What the container was started from: equal hashes mean a re-run leaves it alone."""
    seed = json.dumps({**settings, "image_id": image_id}, sort_keys=True, default=str)
    return hashlib.sha256(seed.encode()).hexdigest()[:16]


def has_bridge(client: docker.DockerClient) -> bool:
    """Whether the engine has its default bridge network (this one's dockerd runs with --bridge=none)."""
    return bool(client.networks.list(names=["bridge"]))


@dataclass(frozen=True)
class SiteOutcome:
    url: str
    container_id: str


def run_site(
    client: docker.DockerClient,
    task_definition: Mapping[str, Any],
    *,
    stack: str,
    port: int,
    wait: bool,
    say: Say,
) -> SiteOutcome:
    """Run the task definition's container (or keep the one already running it) and wait for /healthz."""
    settings = container_settings(task_definition, stack=stack, host_port=port, host_network=not has_bridge(client))
    image_id = _image_id(client, settings["image"])
    if image_id is None:
        raise DeployerError(
            f"The local engine has no image {settings['image']}",
            where="local mode, the container of the task definition",
            todo="Build it (leave out --image), or pull or load it into the local engine first",
        )
    wanted = settings_hash(settings, image_id)
    settings["labels"] = {**settings["labels"], SETTINGS_LABEL: wanted}
    url = f"http://{LOOPBACK}:{port}"
    current = _container(client, settings["name"])
    if current is not None and current.status == "running" and current.labels.get(SETTINGS_LABEL) == wanted:
        say(f"{'local container':<22} {'unchanged':<9} {current.name} ({current.short_id})")
        return SiteOutcome(url, str(current.id))
    outcome = "created" if current is None else "replaced"
    if current is not None:
        current.remove(force=True)
    if not port_free(port):
        raise DeployerError(
            f"Port {port} on {LOOPBACK} is already in use by another program",
            where="local mode, the site's port",
            todo="Stop that program, or pass --local-port with a free port",
        )
    started = time.monotonic()
    container = client.containers.run(**settings)
    if wait:
        _wait_healthy(container, f"{url}/healthz")
    seconds = time.monotonic() - started
    say(f"{'local container':<22} {outcome:<9} {container.name} ({container.short_id}) ({seconds:.1f}s)")
    return SiteOutcome(url, str(container.id))


def remove_site(client: docker.DockerClient, stack: str, say: Say) -> None:
    """The stack's local container(s), by label and by name; none left counts as done."""
    found = {
        str(c.id): c
        for c in client.containers.list(all=True, filters={"label": [f"{STACK_LABEL}={stack}", f"{ROLE_LABEL}={ROLE}"]})
    }
    named = _container(client, container_name(stack))
    if named is not None:
        found[str(named.id)] = named
    for container in found.values():
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)
        say(f"{'local container':<22} {'deleted':<9} {container.name}")


def _container(client: docker.DockerClient, name: str) -> Container | None:
    try:
        return client.containers.get(name)
    except docker.errors.NotFound:
        return None


def _wait_healthy(container: Container, url: str) -> None:
    deadline = time.monotonic() + HEALTH_WAIT_SECONDS
    while time.monotonic() < deadline:
        if probe(url, timeout=HEALTH_PROBE_SECONDS).status == 200:  # loopback: never via a proxy
            return
        container.reload()
        if container.status in ("exited", "dead"):
            break
        time.sleep(0.2)
    container.reload()
    logs = container.logs(tail=LOG_TAIL_LINES).decode(errors="replace")
    raise DeployerError(
        f"The local container never answered {url} (status {container.status}). Last output:\n{logs}",
        where=f"container {container.name}",
        todo="Fix the cause in the output above and run again; the emulator's resources are kept",
    )
