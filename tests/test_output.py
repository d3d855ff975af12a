"""What a user (or a script) reads: step lines, the timing breakdown by phase, JSON, quiet."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from deployer import runner
from deployer.output import Output
from deployer.runner import PHASES, RunReport, StepReport
from deployer.stack import build_steps
from deployer.steps.base import StepContext
from tests.conftest import IMAGE, MotoServer, RecordingOutput, RunScript
from tests.rollouts import Rollout
from tests.steps_helpers import first_outcomes, wanted_steps


def test_every_step_belongs_to_one_phase() -> None:
    phased = [step for steps in PHASES.values() for step in steps]
    assert sorted(phased) == sorted(step.name for step in build_steps())


def test_timings_put_the_service_wait_under_health() -> None:
    report = RunReport(steps=[
        StepReport("vpc", "created", 2.0), StepReport("load-balancer", "created", 3.0),
        StepReport("service", "created", 10.0, wait_seconds=8.0),
    ])  # fmt: skip
    timings = report.timings()
    assert timings["network"] == 2.0
    assert timings["load balancer"] == 3.0
    assert timings["service rollout"] == 2.0
    assert timings["health"] == 8.0


def test_live_elapsed_time_on_a_terminal(ctx: StepContext, serving: Rollout) -> None:
    terminal = RecordingOutput(terminal=True)
    serving.polls_until_done = 2
    runner.provision(replace(ctx, output=terminal))
    assert any(line.endswith("s elapsed") for line in terminal.shown)
    assert terminal.shown[-1] == "", "the live line is cleared before the next plain line"


def test_json_output_is_one_document(server: MotoServer, run_script: RunScript, tmp_path: Path) -> None:
    result = run_script("provision.py", "--image", IMAGE, "--no-wait", "--output", "json", server=server)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert [s["step"] for s in document["steps"]] == [s.name for s in wanted_steps()]
    assert [s["outcome"] for s in document["steps"]] == first_outcomes()
    assert document["outputs"]["url"].startswith("http://")
    assert set(document["timings"]) == {*PHASES, "health"}
    assert "vpc" in result.stderr, "progress goes to stderr"


def test_quiet_prints_only_the_url(server: MotoServer, run_script: RunScript) -> None:
    result = run_script("provision.py", "--image", IMAGE, "--no-wait", "--quiet", server=server)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("http://") and len(result.stdout.strip().splitlines()) == 1


def test_text_output_ends_with_the_time_by_phase(server: MotoServer, run_script: RunScript) -> None:
    result = run_script("provision.py", "--image", IMAGE, "--no-wait", server=server)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-2].startswith("Time by phase: network ") and "health" in lines[-2]
    # Steps run at once: their seconds (added up) are told apart from the run's own.
    found = re.search(r"\(steps ([0-9.]+)s, overlapping; the run ([0-9.]+)s\)$", lines[-2])
    assert found is not None, lines[-2]
    assert float(found[1]) > 0 and float(found[2]) > 0
    assert lines[-1].startswith("Site URL: http://")


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_live_line_shows_every_threads_part_and_never_wraps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Steps run at once: the runner's "running: ..." and a step's wait share the one live line."""
    monkeypatch.setattr(shutil, "get_terminal_size", lambda: os.terminal_size((41, 24)))
    stream = Tty()
    output = Output("text", stdout=stream)
    output.live("running: vpc, repository")
    waiter = threading.Thread(target=output.live, args=("waiting for the NLB: 3 s elapsed",))
    waiter.start()
    waiter.join()
    shown = stream.getvalue().split("\r\033[K")[-1]
    assert shown == "running: vpc, repository | waiting for t"  # both parts, cut to 40 columns
    output.line("vpc created")
    assert stream.getvalue().endswith("vpc created\n\r\033[Krunning: vpc, repository | waiting for t")
    output.live("")
    assert stream.getvalue().split("\r\033[K")[-1] == "waiting for the NLB: 3 s elapsed"
