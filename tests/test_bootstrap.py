"""The set-up the scripts run before importing anything outside the standard library (deployer/bootstrap.py).

Every branch of the two decisions (engine, Python packages) with a fake environment; the
scripts' re-exec and install paths as a user runs them, with an interpreter that cannot
import boto3 (`python -S`) and a fake `.venv/bin/python` (no PyPI, no engine); and
`scripts/setup-docker.sh --engine` on this machine, where everything is in place, installing
nothing. The real cold path (a fresh clone, a bare interpreter, PyPI) is CI's
scripts/ci-first-command.sh.
"""

from __future__ import annotations

import ast
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import docker
import pytest

from deployer import bootstrap
from deployer.bootstrap import EngineFacts, engine_plan, needs_for, python_plan
from deployer.errors import DeployerError
from tests.conftest import PROJECT_DIR

ENTRY_SCRIPTS = {
    "provision.py": "deployer.cli",
    "teardown.py": "deployer.cli",
    "status.py": "deployer.cli",
    "logs.py": "deployer.cli",
}


def facts(**overrides: Any) -> EngineFacts:
    base: dict[str, Any] = {
        "answers": False,
        "why_not": "no such socket: no engine is installed or started",
        "docker_host": None,
        "is_root": True,
        "debian_like": True,
        "setup_script": True,
    }
    return EngineFacts(**{**base, **overrides})


# --- the decisions --------------------------------------------------------------------------------


def test_an_answering_engine_needs_nothing() -> None:
    assert engine_plan(facts(answers=True, why_not="", is_root=False, debian_like=False)) == "ready"


def test_no_engine_as_root_on_debian_installs_it() -> None:
    assert engine_plan(facts()) == "install"
    assert engine_plan(facts(docker_host="unix:///var/run/docker.sock")) == "install"


def test_a_docker_host_of_the_users_own_is_left_to_the_cli() -> None:
    assert engine_plan(facts(docker_host="tcp://build-box:2376")) == "defer"
    assert engine_plan(facts(docker_host="unix:///tmp/other.sock", is_root=False)) == "defer"


def test_not_root_says_what_to_run() -> None:
    with pytest.raises(DeployerError) as raised:
        engine_plan(facts(is_root=False))
    assert "sudo scripts/setup-docker.sh --engine" in raised.value.message
    assert "Nothing was installed or created" in raised.value.message


def test_not_debian_points_at_dockers_install_guide() -> None:
    for other in (facts(debian_like=False), facts(debian_like=False, is_root=False)):
        with pytest.raises(DeployerError) as raised:
            engine_plan(other)
        assert "https://docs.docker.com/engine/install/" in raised.value.message
        assert "Debian and Ubuntu only" in raised.value.message


def test_python_plan() -> None:
    assert python_plan(here_has=True, venv_has=False, reexecuted=False) == "run"
    assert python_plan(here_has=True, venv_has=True, reexecuted=True) == "run"
    assert python_plan(here_has=False, venv_has=True, reexecuted=False) == "reexec"
    assert python_plan(here_has=False, venv_has=False, reexecuted=False) == "install"
    with pytest.raises(DeployerError, match="still cannot be imported"):
        python_plan(here_has=False, venv_has=True, reexecuted=True)


def test_only_provision_local_needs_the_emulator_and_the_engine() -> None:
    local = needs_for("provision", ["--local", "--local-port", "9000"])
    assert local.engine and "moto" in local.modules and local.requirements == "requirements-local.txt"
    assert not needs_for("provision", ["--local", "--help"]).engine
    for command, args in (("provision", []), ("teardown", ["--local"]), ("status", []), ("logs", ["--follow"])):
        needs = needs_for(command, args)
        assert not needs.engine and needs.modules == ("boto3", "docker") and needs.requirements == "requirements.txt"


def test_debian_is_recognised_from_os_release(tmp_path: Path) -> None:
    release = tmp_path / "os-release"
    cases = {
        'ID=debian\nVERSION_ID="12"\n': True,
        "ID=ubuntu\nID_LIKE=debian\n": True,
        'ID=linuxmint\nID_LIKE="ubuntu debian"\n': True,
    }
    cases |= {'ID=fedora\nID_LIKE="rhel centos"\n': False, "ID=alpine\n": False}
    apt = shutil.which("apt-get") is not None
    for text, debian in cases.items():
        release.write_text(text)
        assert bootstrap.debian_like(release) == (debian and apt), text
    assert not bootstrap.debian_like(tmp_path / "missing")


def test_the_engine_ping_speaks_the_engine_api_over_the_socket(tmp_path: Path) -> None:
    assert "no such socket" in bootstrap.ping_engine(str(tmp_path / "none.sock"))
    path = str(tmp_path / "engine.sock")
    for answer, expected in ((b"HTTP/1.1 200 OK\r\n\r\nOK", ""), (b"HTTP/1.1 500 Oops\r\n\r\n", "500")):
        with socket.socket(socket.AF_UNIX) as server:
            server.bind(path)
            server.listen(1)
            requests: list[bytes] = []

            def serve(server: socket.socket = server, answer: bytes = answer, requests: list[bytes] = requests) -> None:
                connection, _ = server.accept()
                with connection:
                    requests.append(connection.recv(1024))
                    connection.sendall(answer)

            thread = threading.Thread(target=serve)
            thread.start()
            why_not = bootstrap.ping_engine(path)
            thread.join()
        os.unlink(path)
        assert requests[0].startswith(b"GET /_ping HTTP/1.0\r\n")
        assert (why_not == "") if expected == "" else (expected in why_not)


# --- the actions, with a fake environment ---------------------------------------------------------


def test_with_everything_importable_it_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """This interpreter (the test venv) has boto3, docker and moto: no probe, no install, no exec, not a word."""

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"called with {args}")

    monkeypatch.setattr(bootstrap, "engine_facts", lambda: facts(answers=True, why_not=""))
    monkeypatch.setattr("deployer.bootstrap.subprocess.run", forbidden)
    monkeypatch.setattr("deployer.bootstrap.os.execv", forbidden)
    said: list[str] = []
    for command, args in (("provision", ["--local"]), ("provision", []), ("teardown", ["--local"])):
        bootstrap._ensure(command, [f"{command}.py", *args], said.append)
    assert said == []


def test_no_engine_as_root_on_debian_runs_the_engine_set_up_after_saying_so(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[list[str]] = []

    def run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        ran.append(command)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(bootstrap, "engine_facts", facts)
    monkeypatch.setattr("deployer.bootstrap.subprocess.run", run)
    monkeypatch.setattr(bootstrap, "ping_engine", lambda path: "")  # up after the set-up
    said: list[str] = []
    bootstrap._ensure("provision", ["provision.py", "--local"], said.append)
    assert ran == [["bash", str(PROJECT_DIR / "scripts" / "setup-docker.sh"), "--engine"]]
    assert len(said) == 1 and "installing Debian's docker.io" in said[0] and "flask-deployer/base:bookworm" in said[0]


def test_a_failed_engine_set_up_is_one_paragraph(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bootstrap, "engine_facts", facts)
    monkeypatch.setattr(
        "deployer.bootstrap.subprocess.run", lambda command, **kw: subprocess.CompletedProcess(command, 1)
    )
    monkeypatch.setattr(bootstrap, "ping_engine", lambda path: "no such socket")
    with pytest.raises(DeployerError) as raised:
        bootstrap._ensure("provision", ["provision.py", "--local"], lambda line: None)
    assert "exit code 1" in raised.value.message and "setup-docker.sh --engine" in raised.value.message


# --- the scripts as a user runs them: `python -S` cannot import boto3 ------------------------------

FAKE_VENV_PYTHON = """#!/bin/sh
# A stand-in for .venv/bin/python: answers the bootstrap's probe, records pip, shows a re-exec.
here=$(dirname "$0")
case "$1" in
    -c) test -f "$here/installed"; exit $? ;;
    -m) echo "$*" >>"$here/pip-calls"; [ -z "$FAIL_PIP" ] || { echo "pip: no network"; exit 1; }
        touch "$here/installed"; exit 0 ;;
    *) echo "re-executed: $*"; exit 0 ;;
esac
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The entry scripts, the stdlib-only modules and a fake .venv; no boto3 anywhere."""
    root = tmp_path / "project"
    (root / "deployer").mkdir(parents=True)
    for name in ("__init__.py", "bootstrap.py", "errors.py"):
        shutil.copy(PROJECT_DIR / "deployer" / name, root / "deployer" / name)
    for name in (*ENTRY_SCRIPTS, "requirements.txt", "requirements-local.txt"):
        shutil.copy(PROJECT_DIR / name, root / name)
    python = root / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(FAKE_VENV_PYTHON)
    python.chmod(0o755)
    return root


def run_bare(project: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The script with this python minus site-packages (-S): what a newcomer's system python can import."""
    environment = {key: value for key, value in os.environ.items() if key != bootstrap.REEXEC_MARK}
    return subprocess.run(
        [sys.executable, "-S", *args],
        cwd=project,
        env={**environment, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_bare_python_with_a_ready_venv_re_executes_into_it_installing_nothing(project: Path) -> None:
    (project / ".venv" / "bin" / "installed").touch()
    for script in ENTRY_SCRIPTS:
        result = run_bare(project, script, "--stack", "x")
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"re-executed: {script} --stack x\n"
        assert result.stderr == ""
    assert not (project / ".venv" / "bin" / "pip-calls").exists()


def test_a_bare_python_installs_the_pinned_requirements_once_then_re_executes(project: Path) -> None:
    result = run_bare(project, "teardown.py", "--yes")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "re-executed: teardown.py --yes\n"
    setup_lines = result.stderr.splitlines()
    assert len(setup_lines) == 1 and setup_lines[0].startswith("setup: ") and "lacks boto3, docker" in setup_lines[0]
    assert "installing requirements.txt" in setup_lines[0]
    pip = (project / ".venv" / "bin" / "pip-calls").read_text().split()
    assert pip[:3] == ["-m", "pip", "install"] and pip[-2:] == ["-r", str(project / "requirements.txt")]

    again = run_bare(project, "teardown.py", "--yes")
    assert (again.returncode, again.stderr) == (0, "")
    assert len((project / ".venv" / "bin" / "pip-calls").read_text().splitlines()) == 1


def test_a_failed_install_is_one_paragraph_and_exit_2(project: Path) -> None:
    result = run_bare(project, "status.py", env={"FAIL_PIP": "1"})
    assert result.returncode == 2 and result.stdout == ""
    error = result.stderr.splitlines()[1]
    assert error.startswith("error: Installing requirements.txt into .venv failed (exit code 1)")
    assert "pip: no network" in result.stderr and "PyPI" in result.stderr and "Traceback" not in result.stderr


def test_a_re_executed_process_that_still_lacks_them_stops_instead_of_looping(project: Path) -> None:
    result = run_bare(project, "logs.py", env={bootstrap.REEXEC_MARK: "1"})
    assert result.returncode == 2 and "still cannot be imported" in result.stderr and "Traceback" not in result.stderr


# --- what the bootstrap may import, and where the scripts call it ---------------------------------


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_bootstrap_imports_only_the_standard_library() -> None:
    for name in ("bootstrap.py", "errors.py", "__init__.py"):
        outside = {
            module
            for module in imported_modules(PROJECT_DIR / "deployer" / name)
            if module.split(".")[0] not in sys.stdlib_module_names and module not in ("deployer.errors", "__future__")
        }
        assert outside == set(), name


def test_every_entry_script_calls_the_bootstrap_before_importing_the_tool() -> None:
    for script, module in ENTRY_SCRIPTS.items():
        text = (PROJECT_DIR / script).read_text()
        assert f'ensure_ready("{script.removesuffix(".py")}")' in text
        assert text.index("ensure_ready(") < text.index(f"from {module} import"), script
        assert imported_modules(PROJECT_DIR / script) == {"deployer.bootstrap", module}


def test_requirements_local_pins_are_requirements_dev_pins() -> None:
    def pins(name: str) -> dict[str, str]:
        lines = (PROJECT_DIR / name).read_text().splitlines()
        return {
            line.split("==")[0].lower(): line.split("==")[1]
            for line in lines
            if "==" in line and not line.startswith("#")
        }

    local, dev = pins("requirements-local.txt"), pins("requirements-dev.txt")
    assert "-r requirements.txt" in (PROJECT_DIR / "requirements-local.txt").read_text().splitlines()
    assert {name: dev.get(name) for name in local} == local
    assert {"moto", "flask", "flask-cors"} <= set(local)


# --- scripts/setup-docker.sh --engine -------------------------------------------------------------


def test_setup_docker_refuses_an_unknown_mode() -> None:
    result = subprocess.run(
        ["bash", str(PROJECT_DIR / "scripts" / "setup-docker.sh"), "--everything"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1 and "usage: scripts/setup-docker.sh [--engine]" in result.stderr


def test_setup_docker_engine_mode_installs_nothing_where_all_is_in_place(docker_client: docker.DockerClient) -> None:
    if os.geteuid() != 0:
        pytest.skip("scripts/setup-docker.sh runs as root")
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(PROJECT_DIR / "scripts" / "setup-docker.sh"), "--engine"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "packages: all present" in result.stderr and "dockerd: already running" in result.stderr
    assert "base image: flask-deployer/base:bookworm present" in result.stderr
    assert "registry" not in result.stderr.replace("no registry: --engine", "")
    assert time.monotonic() - started < 10
