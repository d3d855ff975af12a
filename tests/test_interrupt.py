"""Ctrl-C and failures while the image builds beside the other steps (issue 9, defect 1; issue 15): the run ends
at once.

* Ctrl-C: provision.py runs as a user runs it, against the moto server, with a slow fake
  build (tests/slow_build_provision.py, no Docker). SIGINT 1 s into the build must end the
  process with exit 130 within 2 s; nothing is pushed afterwards, and the state file on
  disk records what was created so far. (tests/test_parallel.py interrupts it with several steps in flight
  and compares the state with what the emulator holds.)
* A failure: in-process, another step's permanent AWS error while a slow fake build runs
  is raised at once, not when the build would have ended: the image step is abandoned (`Step.cancellable`:
  told to stop, it records nothing), its build told to stop, and nothing is pushed.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NoReturn

import pytest
from botocore.model import OperationModel

from deployer import runner
from deployer.errors import AwsCallError
from deployer.images import BuildSpec, ImageBuilder, RegistryAuth
from deployer.steps.base import StepContext
from tests.conftest import PROJECT_DIR, MotoServer, RecordingOutput, script_env
from tests.faults import inject_errors

BUILD_SECONDS = 10.0
INTERRUPT_AFTER_SECONDS = 1.0
EXIT_WITHIN_SECONDS = 2.0
START_CAP_SECONDS = 60.0
# A chosen base keeps deployer/baseimage.py from asking the (absent) engine for the default one.
FAKE_BASE = '[build_args]\nBASE_IMAGE = "fake/base:1"\n'


def wait_for(path: Path, process: subprocess.Popen[str], cap: float) -> None:
    ends = time.monotonic() + cap
    while not path.exists():
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"provision ended (exit {process.returncode}) before {path.name}\n{out}\n{err}")
        if time.monotonic() > ends:
            process.kill()
            pytest.fail(f"no {path.name} within {cap:.0f} s")
        time.sleep(0.02)


def slow_provision(server: MotoServer, tmp_path: Path, config: str) -> tuple[subprocess.Popen[str], Path]:
    """provision.py with the slow fake build (tests/slow_build_provision.py), `config` as its deploy.toml;
    returns the process and the folder of the build's markers."""
    markers = tmp_path / "markers"
    markers.mkdir()
    (tmp_path / "deploy.toml").write_text(config)
    env = {
        **script_env(server, tmp_path),
        "SLOW_BUILD_MARKERS": str(markers),
        "SLOW_BUILD_SECONDS": str(BUILD_SECONDS),
    }
    process = subprocess.Popen(
        [sys.executable, str(PROJECT_DIR / "tests" / "slow_build_provision.py"), "--config", "deploy.toml"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return process, markers


@dataclass(frozen=True)
class Interrupted:
    """How a process ended after SIGINT: its exit code, how long after the signal, what it wrote."""

    code: int | None
    seconds: float
    out: str
    err: str

    def __str__(self) -> str:
        return f"exit {self.code} after {self.seconds:.2f} s\nstdout:\n{self.out}\nstderr:\n{self.err}"


def interrupt(process: subprocess.Popen[str]) -> Interrupted:
    """Send SIGINT (as Ctrl-C does) and wait for the process to end (killed if it has not within the build's
    time: the assertions then fail on the time)."""
    assert process.poll() is None, "provision ended before the interrupt"
    try:
        process.send_signal(signal.SIGINT)
        interrupted = time.monotonic()
        try:
            out, err = process.communicate(timeout=BUILD_SECONDS * 2)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
        return Interrupted(process.returncode, time.monotonic() - interrupted, out, err)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def assert_ended_at_once(ended: Interrupted) -> None:
    assert ended.code == 130, ended
    assert ended.seconds <= EXIT_WITHIN_SECONDS, ended
    assert "interrupted" in ended.err and "Traceback" not in ended.err, ended


def test_ctrl_c_while_the_image_builds_exits_130_at_once_and_pushes_nothing(server: MotoServer, tmp_path: Path) -> None:
    process, markers = slow_provision(server, tmp_path, FAKE_BASE)
    try:
        wait_for(markers / "building", process, START_CAP_SECONDS)
    except BaseException:
        interrupt(process)
        raise
    build_started = time.monotonic()
    time.sleep(INTERRUPT_AFTER_SECONDS)
    ended = interrupt(process)
    assert_ended_at_once(ended)

    # Until well after the build would have ended: nothing is pushed.
    time.sleep(max(0.0, build_started + BUILD_SECONDS + 2.0 - time.monotonic()))
    assert not (markers / "pushed").exists(), "the image was pushed after the interrupt"
    saved = json.loads((tmp_path / "state.json").read_text())
    steps = [record["step"] for record in saved["resources"]]
    assert steps and steps[0] == "repository", steps
    assert "image" not in steps
    assert not (tmp_path / "state.json.lock").exists(), "the interrupted run left its lock"


# --------------------------------------------------------------------------- a failure while the image builds


def _no_engine() -> NoReturn:
    raise AssertionError("the fake builder must never talk to a Docker engine")


class StubbornBuilder(ImageBuilder):
    """A build that takes `seconds` of real time and ignores cancellation (until `release`); the push makes
    the real push's cancellation check first."""

    def __init__(self, seconds: float) -> None:
        super().__init__(RecordingOutput(), connect=_no_engine)
        self.seconds = seconds
        self.started = threading.Event()
        self.release = threading.Event()
        self.finished = threading.Event()
        self.cancelled_at = 0.0
        self.thread = ""

    def cancel(self) -> None:
        self.cancelled_at = time.monotonic()
        super().cancel()

    def registry_digest(self, reference: str, auth: RegistryAuth) -> str | None:
        return None

    def build(self, spec: BuildSpec, reference: str) -> None:
        self.thread = threading.current_thread().name
        self.started.set()
        try:
            ends = time.monotonic() + self.seconds
            while time.monotonic() < ends and not self.release.is_set():
                time.sleep(0.02)
            self.builds += 1
        finally:
            self.finished.set()

    def push(self, repository: str, tag: str, auth: RegistryAuth) -> str:
        self._stop_if_cancelled(f"{repository}:{tag}")
        self.pushes += 1
        return "sha256:" + "ab" * 32


def test_a_step_failure_while_the_image_builds_is_reported_at_once(ctx: StepContext) -> None:
    """The VPC step fails while the image step's build runs on its own thread: the run does not wait for the
    build (the image step is abandoned), tells it to stop, and the push never happens."""
    builder = StubbornBuilder(seconds=5.0)

    def once_building(model: OperationModel, **_: Any) -> None:
        builder.started.wait(10)  # the failure comes while the build runs, however the threads race

    ctx.clients.ec2.meta.events.register("before-call.ec2.CreateVpc", once_building)
    inject_errors(ctx.clients.ec2, "CreateVpc", "UnauthorizedOperation", "You are not authorized to perform this")
    building = replace(
        ctx, images=builder, settings=replace(ctx.settings, image=None, build_args={"BASE_IMAGE": "fake/base:1"})
    )

    started = time.monotonic()
    try:
        with pytest.raises(AwsCallError) as raised:
            runner.provision(building)
        failed = time.monotonic()
        assert raised.value.step == "vpc"
        assert builder.thread == "deployer-step-image"
        assert builder.started.is_set() and not builder.finished.is_set(), "the failure came outside the build"
        assert failed - started < 2.0, f"the failure was reported after {failed - started:.2f} s"
        assert builder.cancelled_at, "the build was not told to stop"
    finally:
        builder.release.set()
        assert builder.finished.wait(10)
    time.sleep(0.3)  # the image step's push attempt, if any
    assert builder.pushes == 0
    assert ctx.state.get("image") is None
