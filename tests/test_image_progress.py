"""What the user sees of a build and a push, and what cancel() stops; a fake engine, no Docker.

On a terminal the build shows one live line (step n of m) and the push a byte bar; the
engine's raw stream appears only with --verbose, or quoted in the error of a failed build.
After cancel() (Ctrl-C, or a failure elsewhere) the build stops reading and nothing is pushed.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deployer.images import BuildSpec, ImageBuilder, ImageBuildError, ImageCancelledError, RegistryAuth
from deployer.output import Output
from tests.conftest import RecordingOutput

BUILD: list[dict[str, Any]] = [
    {"stream": "Step 1/3 : FROM base\n"},
    {"stream": " ---> 1234\n"},
    {"stream": "Step 2/3 : RUN pip install flask\n"},
    {"stream": "Collecting flask\n"},
    {"stream": "Step 3/3 : CMD run\n"},
    {"aux": {"ID": "sha256:abc"}},
]
PUSH: list[dict[str, Any]] = [
    {"status": "The push refers to repository [r]"},
    {"status": "Pushing", "id": "l1", "progressDetail": {"current": 500_000, "total": 2_000_000}},
    {"status": "Pushing", "id": "l2", "progressDetail": {"current": 1_000_000, "total": 1_000_000}},
    {"status": "Pushed", "id": "l1"},
    {"status": "1: digest: sha256:d1 size: 1", "aux": {"Tag": "1", "Digest": "sha256:d1", "Size": 1}},
]
AUTH = RegistryAuth("AWS", "secret", "https://r")


class FakeApi:
    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = events
        self.read = 0

    def build(self, **_: Any) -> Iterator[dict[str, Any]]:
        for event in self.events:
            self.read += 1
            yield event


class FakeImages:
    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = events
        self.pushed = 0

    def push(self, *_: Any, **__: Any) -> Iterator[dict[str, Any]]:
        self.pushed += 1
        yield from self.events


class FakeEngine:
    def __init__(self, build: list[dict[str, Any]], push: list[dict[str, Any]]) -> None:
        self.api = FakeApi(build)
        self.images = FakeImages(push)

    def ping(self) -> bool:
        return True


def builder(output: Output, engine: FakeEngine) -> ImageBuilder:
    return ImageBuilder(output, connect=lambda: engine)  # type: ignore[arg-type,return-value]


def spec(tmp_path: Path) -> BuildSpec:
    return BuildSpec(context=tmp_path, dockerfile="Dockerfile", build_args={})


def test_a_terminal_sees_the_build_step_and_a_push_bar_but_not_the_raw_stream(tmp_path: Path) -> None:
    output = RecordingOutput(terminal=True)
    images = builder(output, FakeEngine(BUILD, PUSH))
    images.build(spec(tmp_path), "r:1")
    assert images.push("r", "1", AUTH) == "sha256:d1"
    assert "  building: step 2 of 3: RUN pip install flask" in output.shown
    bars = [line for line in output.shown if line.startswith("  pushing [")]
    assert bars and bars[-1].endswith("1.5/3.0 MB")
    assert output.shown[-1] == "", "the live line is cleared when the push ends"
    assert not any("Collecting flask" in line or "Pushed" in line for line in output.lines)


def test_verbose_shows_the_engines_raw_stream() -> None:
    stdout = io.StringIO()
    output = Output("text", verbose=True, stdout=stdout, stderr=io.StringIO())
    images = builder(output, FakeEngine(BUILD, PUSH))
    images.build(BuildSpec(context=Path("."), dockerfile="Dockerfile", build_args={}), "r:1")
    images.push("r", "1", AUTH)
    assert "Collecting flask" in stdout.getvalue()
    assert "l1: Pushed" in stdout.getvalue()


def test_a_failed_build_quotes_the_last_lines(tmp_path: Path) -> None:
    failing: list[dict[str, Any]] = [*BUILD[:4], {"error": "pip failed", "errorDetail": {"message": "pip failed"}}]
    with pytest.raises(ImageBuildError) as failure:
        builder(RecordingOutput(), FakeEngine(failing, PUSH)).build(spec(tmp_path), "r:1")
    assert "pip failed" in failure.value.message
    assert "Collecting flask" in failure.value.message


def test_after_cancel_the_build_stops_reading_and_nothing_is_pushed(tmp_path: Path) -> None:
    engine = FakeEngine(BUILD, PUSH)
    images = builder(RecordingOutput(), engine)
    images.cancel()
    with pytest.raises(ImageCancelledError):
        images.build(spec(tmp_path), "r:1")
    assert engine.api.read == 1, "the stream is left after the first event"
    with pytest.raises(ImageCancelledError):
        images.push("r", "1", AUTH)
    assert engine.images.pushed == 0
    assert images.builds == 0 and images.pushes == 0
