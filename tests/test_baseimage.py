"""The base-image fallback: the local stand-in only when the Dockerfile's default is out of reach, and never a hang.

A fake Docker client (no engine needed) drives every branch; one test asks the real
engine (skipped without one unless REQUIRE_DOCKER=1), where Docker Hub cannot be reached.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from deployer.baseimage import LOCAL_BASE, dockerfile_default, resolve_build_args
from deployer.errors import DeployerError
from deployer.images import DockerUnavailableError
from tests.conftest import PROJECT_DIR

DOCKERFILE = PROJECT_DIR / "website" / "Dockerfile"
DEFAULT = "python:3.12-slim"


class FakeImages:
    def __init__(self, present: set[str]) -> None:
        self.present = present

    def get(self, reference: str) -> object:
        if reference not in self.present:
            raise docker.errors.ImageNotFound(f"no such image: {reference}")
        return object()


class FakeApi:
    def __init__(self, pull: Callable[[], Iterator[dict[str, Any]]]) -> None:
        self._pull = pull
        self.pulls: list[tuple[str, str]] = []

    def pull(self, repository: str, tag: str, stream: bool, decode: bool) -> Iterator[dict[str, Any]]:
        assert stream and decode
        self.pulls.append((repository, tag))
        return self._pull()


class FakeClient:
    """The two parts of docker.DockerClient the fallback uses: images.get and api.pull."""

    def __init__(self, present: set[str], pull: Callable[[], Iterator[dict[str, Any]]]) -> None:
        self.images = FakeImages(present)
        self.api = FakeApi(pull)


def refused() -> Iterator[dict[str, Any]]:
    raise docker.errors.APIError(
        "500 Server Error", explanation='Get "https://registry-1.docker.io/v2/": dial tcp: no such host'
    )


def error_in_stream() -> Iterator[dict[str, Any]]:
    yield {"status": "Pulling from library/python", "id": "3.12-slim"}
    yield {"error": "manifest unknown", "errorDetail": {"message": "manifest unknown"}}


def pulled() -> Iterator[dict[str, Any]]:
    yield {"status": "Pulling from library/python", "id": "3.12-slim"}
    yield {"status": "Status: Downloaded newer image for python:3.12-slim"}


def resolve(
    client: FakeClient, build_args: dict[str, str] | None = None, **options: Any
) -> tuple[dict[str, str], list[str]]:
    lines: list[str] = []
    args = resolve_build_args(
        lambda: client,  # type: ignore[arg-type,return-value]
        build_args or {},
        lines.append,
        dockerfile=DOCKERFILE,
        **options,
    )
    return args, lines


def test_the_dockerfile_default_is_read_from_its_arg() -> None:
    assert dockerfile_default(DOCKERFILE) == DEFAULT


def test_unreachable_default_falls_back_to_the_local_base_with_one_line() -> None:
    client = FakeClient({LOCAL_BASE}, refused)
    args, lines = resolve(client, {"OTHER": "1"})
    assert args == {"OTHER": "1", "BASE_IMAGE": LOCAL_BASE}
    assert client.api.pulls == [("python", "3.12-slim")]
    assert len(lines) == 1 and DEFAULT in lines[0] and LOCAL_BASE in lines[0] and "no such host" in lines[0]


def test_an_error_in_the_pull_stream_counts_as_unreachable() -> None:
    args, lines = resolve(FakeClient({LOCAL_BASE}, error_in_stream))
    assert args == {"BASE_IMAGE": LOCAL_BASE} and "manifest unknown" in lines[0]


def test_a_pull_that_never_answers_is_abandoned_after_the_bound() -> None:
    hold = threading.Event()

    def hangs() -> Iterator[dict[str, Any]]:
        hold.wait(30)  # an engine dialling a black-holed registry
        yield {"status": "too late"}

    started = time.monotonic()
    try:
        args, lines = resolve(FakeClient({LOCAL_BASE}, hangs), answer_seconds=0.3)
    finally:
        hold.set()
    assert time.monotonic() - started < 2
    assert args == {"BASE_IMAGE": LOCAL_BASE} and "no answer from the registry within 0.3s" in lines[0]


def test_a_pullable_or_present_default_is_kept_and_nothing_is_said() -> None:
    for present, pull in (({DEFAULT}, refused), ({LOCAL_BASE}, pulled), (set(), pulled)):
        client = FakeClient(present, pull)
        assert resolve(client) == ({}, [])
    assert FakeClient({DEFAULT}, refused).api.pulls == []


def test_the_users_choice_or_a_dockerfile_without_the_arg_is_left_alone(tmp_path: Path) -> None:
    def no_engine() -> docker.DockerClient:
        raise AssertionError("the engine must not be asked")

    assert resolve_build_args(no_engine, {"BASE_IMAGE": "mine:1"}, print, dockerfile=DOCKERFILE) == {
        "BASE_IMAGE": "mine:1"
    }
    plain = tmp_path / "Dockerfile"
    plain.write_text("FROM debian:bookworm\n")
    assert resolve_build_args(no_engine, {}, print, dockerfile=plain) == {}


def test_without_an_engine_the_arguments_stay_and_the_build_reports_it() -> None:
    def no_engine() -> docker.DockerClient:
        raise DockerUnavailableError("No Docker engine is reachable")

    assert resolve_build_args(no_engine, {}, print, dockerfile=DOCKERFILE) == {}


def test_a_dry_run_pulls_nothing() -> None:
    client = FakeClient({LOCAL_BASE}, pulled)
    args, lines = resolve(client, pull=False)
    assert client.api.pulls == [] and args == {"BASE_IMAGE": LOCAL_BASE} and "dry run" in lines[0]


def test_neither_base_is_an_error_that_says_how_to_get_the_local_one() -> None:
    with pytest.raises(DeployerError) as raised:
        resolve(FakeClient(set(), refused))
    message = raised.value.message
    assert "sudo scripts/setup-docker.sh --engine" in message and "--build-arg BASE_IMAGE=" in message
    assert DEFAULT in message and "no such host" in message


def test_the_real_engine_falls_back_fast_where_docker_hub_is_unreachable(docker_client: docker.DockerClient) -> None:
    try:
        docker_client.images.get(DEFAULT)
        pytest.skip(f"the engine holds {DEFAULT}: no fallback to observe")
    except docker.errors.ImageNotFound:
        pass
    lines: list[str] = []
    started = time.monotonic()
    try:
        args = resolve_build_args(lambda: docker_client, {}, lines.append, dockerfile=DOCKERFILE)
    except DeployerError as exc:
        pytest.fail(f"{LOCAL_BASE} is present (docker_client checks it), yet: {exc.message}")
    seconds = time.monotonic() - started
    if args == {}:
        pytest.skip(f"this engine pulled {DEFAULT}: Docker Hub is reachable here")
    assert args == {"BASE_IMAGE": LOCAL_BASE} and len(lines) == 1, lines
    assert seconds < 25, f"the failed pull took {seconds:.1f}s"
