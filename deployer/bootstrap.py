"""What the scripts need before they can start, put in place on a machine that has only Python.

provision.py, teardown.py, status.py and logs.py call `ensure_ready` before they import
anything outside the standard library (deployer.cli imports boto3 and docker), so this
module and deployer/errors.py import only the standard library. It makes the README's
first command, `python provision.py --local`, work on a fresh Debian or Ubuntu machine
with nothing but Python, and does nothing at all where everything is already in place:

1. Docker engine (only for `provision.py --local`, before any emulator or AWS work): if
   none answers on the local socket, and this runs as root on Debian or Ubuntu, it says
   what it installs and runs `scripts/setup-docker.sh --engine` (docker.io, dockerd, and
   the debootstrap base image `flask-deployer/base:bookworm` for machines that cannot pull
   `python:3.12-slim`). Not root, or not Debian: a one-paragraph error saying what to run.
   With `DOCKER_HOST` set the user chose an engine, so nothing is installed and the CLI
   reports an unreachable one as before.
2. Python packages: if this interpreter can import what the command needs (boto3 and
   docker; for --local also moto's server pieces), it goes on. Otherwise, if `.venv`
   beside the scripts has them, it re-executes the same command with `.venv/bin/python`
   (os.execv: same argv, same terminal, the exit code is the command's). Otherwise it
   says so in one line, creates `.venv`, pip-installs the pinned requirements
   (requirements.txt; requirements-local.txt for --local) and re-executes.

Failures end as a one-paragraph error (what, where, what to do) and exit 2, never a
traceback. The decisions are pure functions of the facts (`engine_plan`, `python_plan`),
so tests can check each branch without a bare machine.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from deployer.errors import EXIT_USER_ERROR, DeployerError

PROJECT_DIR = Path(__file__).resolve().parent.parent
VENV_DIR = PROJECT_DIR / ".venv"
SETUP_SCRIPT = PROJECT_DIR / "scripts" / "setup-docker.sh"
DEFAULT_SOCKET = "/var/run/docker.sock"
MINIMUM_PYTHON = (3, 11)

# Top-level modules each command imports (find_spec looks them up without importing them).
AWS_MODULES = ("boto3", "docker")
# moto's server is `python -m moto.server` (deployer/local.py), a Flask app with flask-cors.
LOCAL_MODULES = (*AWS_MODULES, "moto", "flask", "flask_cors")
AWS_REQUIREMENTS = "requirements.txt"
LOCAL_REQUIREMENTS = "requirements-local.txt"

# Set on the re-executed process: a second pass that still lacks the modules fails instead of looping.
REEXEC_MARK = "FLASK_DEPLOYER_BOOTSTRAPPED"
PIP_TAIL_LINES = 15

Say = Callable[[str], None]


@dataclass(frozen=True)
class Needs:
    """What one command needs: modules to import, the requirements file that provides them, an engine."""

    modules: tuple[str, ...]
    requirements: str
    engine: bool


def needs_for(command: str, args: Sequence[str]) -> Needs:
    """Only provision --local runs the emulator and the engine; teardown --local talks to them with boto3/docker.

    `--help` needs the packages (the CLI module imports boto3) but no engine: asking for help
    never installs one.
    """
    local = "--local" in args
    if command == "provision" and local:
        return Needs(LOCAL_MODULES, LOCAL_REQUIREMENTS, engine=not {"-h", "--help"} & set(args))
    return Needs(AWS_MODULES, AWS_REQUIREMENTS, engine=False)


# --- the decisions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class EngineFacts:
    answers: bool
    why_not: str  # why no engine answers ("" when it does)
    docker_host: str | None  # DOCKER_HOST as set by the user
    is_root: bool
    debian_like: bool  # Debian or Ubuntu with apt-get
    setup_script: bool  # scripts/setup-docker.sh is there


def engine_plan(facts: EngineFacts) -> str:
    """What to do about the engine: ready, defer (DOCKER_HOST names the user's own: the CLI reports it) or install.

    Raises the error to show when no engine answers and this machine is not one the
    project's set-up can install it on.
    """
    if facts.answers:
        return "ready"
    if facts.docker_host and facts.docker_host != f"unix://{DEFAULT_SOCKET}":
        return "defer"
    if facts.is_root and facts.debian_like and facts.setup_script:
        return "install"
    where = f"{DEFAULT_SOCKET} ({facts.why_not})"
    if not facts.debian_like:
        raise DeployerError(
            "Local mode builds and runs the site in Docker, and no Docker engine answers",
            where=where,
            todo="Install Docker Engine (https://docs.docker.com/engine/install/) or Docker Desktop, start it, and "
            "run the same command again; the automatic set-up (scripts/setup-docker.sh --engine) is for Debian and "
            "Ubuntu only. Nothing was installed or created",
        )
    raise DeployerError(
        "Local mode builds and runs the site in Docker, and no Docker engine answers; installing one needs root",
        where=where,
        todo="Run `sudo scripts/setup-docker.sh --engine` (installs docker.io, starts dockerd and builds the base "
        "image flask-deployer/base:bookworm) and then this command again, or, if an engine is already running, "
        "add yourself to the docker group (`sudo usermod -aG docker $USER`, then log in again) and run it again. "
        "Nothing was installed or created",
    )


def python_plan(*, here_has: bool, venv_has: bool, reexecuted: bool) -> str:
    """What to do about the packages: run (this interpreter has them), reexec (.venv has them) or install (then reexec).

    Raises when the re-executed process still lacks the modules, instead of looping.
    """
    if here_has:
        return "run"
    if reexecuted:
        raise DeployerError(
            "The packages installed into .venv still cannot be imported",
            where=f"{sys.executable}",
            todo=f"Delete {VENV_DIR} and run the same command again to create it afresh",
        )
    return "reexec" if venv_has else "install"


# --- the facts ------------------------------------------------------------------------------------


def importable(modules: Sequence[str]) -> bool:
    """Whether this interpreter finds every module, without importing any of them."""
    return all(importlib.util.find_spec(name) is not None for name in modules)


def venv_python() -> Path:
    return VENV_DIR / "bin" / "python"


def venv_has(modules: Sequence[str]) -> bool:
    """Whether .venv's interpreter finds the modules (asked in a child process, which costs ~30 ms)."""
    python = venv_python()
    if not python.exists():
        return False
    probe = f"import importlib.util, sys; sys.exit(any(importlib.util.find_spec(m) is None for m in {list(modules)!r}))"
    try:
        return subprocess.run([str(python), "-c", probe], capture_output=True, timeout=60, check=False).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def engine_facts() -> EngineFacts:
    docker_host = os.environ.get("DOCKER_HOST") or None
    why_not = ping_engine(DEFAULT_SOCKET) if docker_host in (None, f"unix://{DEFAULT_SOCKET}") else ""
    return EngineFacts(
        answers=why_not == "" and docker_host in (None, f"unix://{DEFAULT_SOCKET}"),
        why_not=why_not,
        docker_host=docker_host,
        is_root=getattr(os, "geteuid", lambda: -1)() == 0,  # no geteuid on Windows
        debian_like=debian_like(),
        setup_script=SETUP_SCRIPT.is_file(),
    )


def ping_engine(path: str, timeout: float = 5.0) -> str:
    """Why the engine at this unix socket does not answer GET /_ping with 200 ("" when it does).

    The Engine API's ping endpoint (https://docs.docker.com/reference/api/engine/), asked
    over the socket with the standard library: docker-py may not be installed yet.
    """
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(timeout)
            connection.connect(path)
            connection.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            status = connection.recv(64).split(b"\r\n", 1)[0].decode(errors="replace")
    except FileNotFoundError:
        return "no such socket: no engine is installed or started"
    except OSError as exc:
        return exc.strerror or str(exc)
    return "" if status.split(" ")[1:2] == ["200"] else f"it answered {status!r}"


def debian_like(os_release: Path = Path("/etc/os-release")) -> bool:
    """Debian, Ubuntu or a derivative (os-release's ID and ID_LIKE), with apt-get to install packages."""
    try:
        fields = dict(line.split("=", 1) for line in os_release.read_text(encoding="utf-8").splitlines() if "=" in line)
    except OSError:
        return False
    ids = {fields.get("ID", "").strip("\"'"), *fields.get("ID_LIKE", "").strip("\"'").split()}
    return bool(ids & {"debian", "ubuntu"}) and shutil.which("apt-get") is not None


# --- the actions ----------------------------------------------------------------------------------


def install_engine(say: Say) -> None:
    say(
        "setup: no Docker engine answers; installing Debian's docker.io, starting dockerd and building the base "
        "image flask-deployer/base:bookworm with debootstrap (scripts/setup-docker.sh --engine, a few minutes, once)"
    )
    result = subprocess.run(["bash", str(SETUP_SCRIPT), "--engine"], stdout=sys.stderr, check=False)
    why_not = ping_engine(DEFAULT_SOCKET)
    if result.returncode != 0 or why_not:
        raise DeployerError(
            f"Installing and starting the Docker engine failed (exit code {result.returncode}"
            f"{'; ' + why_not if why_not else ''})",
            where=f"{SETUP_SCRIPT} --engine (its output is above; dockerd's log: /var/log/dockerd.log)",
            todo="Fix the cause its output names, or install Docker Engine yourself "
            "(https://docs.docker.com/engine/install/), then run the same command again. Nothing was created",
        )


def install_packages(needs: Needs, say: Say) -> None:
    """Create .venv if needed and pip-install the pinned requirements into it."""
    python = venv_python()
    requirements = PROJECT_DIR / needs.requirements
    action = (
        f"installing {needs.requirements}" if python.exists() else f"creating .venv and installing {needs.requirements}"
    )
    say(
        f"setup: {sys.executable} lacks {', '.join(m for m in needs.modules if importlib.util.find_spec(m) is None)}; "
        f"{action} into {VENV_DIR} (pinned, about a minute, once); later runs use it"
    )
    if not python.exists():
        _run_or_fail(
            [sys.executable, "-m", "venv", str(VENV_DIR)],
            what="Creating the virtual environment failed",
            todo="On Debian or Ubuntu install the venv module (`sudo apt-get install python3-venv`), or create it "
            f"yourself: `{sys.executable} -m venv {VENV_DIR}`; then run the same command again",
        )
    _run_or_fail(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--quiet", "-r", str(requirements)],
        what=f"Installing {needs.requirements} into .venv failed",
        todo="Check that PyPI (or the index in PIP_INDEX_URL) is reachable, then run the same command again; "
        f"or install them yourself: `{python} -m pip install -r {requirements}`",
    )


def _run_or_fail(command: list[str], *, what: str, todo: str) -> None:
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise DeployerError(f"{what}: {exc}", where=" ".join(command), todo=todo) from exc
    if result.returncode != 0:
        lines = (result.stdout + result.stderr).strip().splitlines()[-PIP_TAIL_LINES:]
        output = "\n".join(f"    {line}" for line in lines)
        raise DeployerError(
            f"{what} (exit code {result.returncode}). Last output:\n{output}", where=" ".join(command), todo=todo
        )


def reexec(argv: Sequence[str]) -> None:
    """Run the same command with .venv's interpreter in this process's place (same pid, argv and terminal)."""
    python = str(venv_python())
    os.environ[REEXEC_MARK] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(python, [python, *argv])


# --- the entry point ------------------------------------------------------------------------------


def ensure_ready(command: str, argv: Sequence[str] | None = None) -> None:
    """Make the command's needs importable, or re-execute it where they are; exit 2 with a paragraph on failure."""
    argv = list(sys.argv if argv is None else argv)
    try:
        _ensure(command, argv, _say)
    except DeployerError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR) from None
    except KeyboardInterrupt:
        print("interrupted during set-up; run the same command again to continue.", file=sys.stderr)
        raise SystemExit(130) from None


def _ensure(command: str, argv: list[str], say: Say) -> None:
    if sys.version_info < MINIMUM_PYTHON:
        raise DeployerError(
            f"This tool needs Python {'.'.join(map(str, MINIMUM_PYTHON))} or newer; this is {sys.version.split()[0]}",
            where=sys.executable,
            todo="Run it with a newer python (e.g. `python3.11 provision.py ...`)",
        )
    needs = needs_for(command, argv[1:])
    if needs.engine and engine_plan(engine_facts()) == "install":
        install_engine(say)
    here_has = importable(needs.modules)
    plan = python_plan(
        here_has=here_has,
        venv_has=not here_has and venv_has(needs.modules),
        reexecuted=os.environ.pop(REEXEC_MARK, "") == "1",  # popped: the emulator it starts must not inherit it
    )
    if plan == "run":
        return
    if plan == "install":
        install_packages(needs, say)
        if not venv_has(needs.modules):
            raise DeployerError(
                f"{needs.requirements} was installed into .venv, but its python still cannot import "
                f"{', '.join(needs.modules)}",
                where=str(venv_python()),
                todo=f"Delete {VENV_DIR} and run the same command again",
            )
    reexec(argv)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
