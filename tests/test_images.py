"""The image builder: content tags, the ECR token, and a real engine's build, lookup and push failures."""

from __future__ import annotations

import base64
import shutil
import uuid
from pathlib import Path

import docker
import pytest

from deployer.images import (
    BuildSpec,
    DockerUnavailableError,
    ImageBuilder,
    ImageBuildError,
    ImagePushError,
    RegistryAuth,
    ecr_auth,
)
from tests.conftest import BASE_IMAGE, PROJECT_DIR, REGISTRY_HOST, RecordingOutput

RIGHT = RegistryAuth("AWS", "123456789012-auth-token", f"https://{REGISTRY_HOST}")


@pytest.fixture
def context(tmp_path: Path) -> Path:
    copy = tmp_path / "site"
    shutil.copytree(PROJECT_DIR / "website", copy, ignore=shutil.ignore_patterns("__pycache__", ".mypy_cache"))
    return copy


def spec(context: Path, **build_args: str) -> BuildSpec:
    return BuildSpec(context=context, dockerfile="Dockerfile", build_args=build_args)


def test_content_tag_is_stable_and_follows_what_docker_would_see(context: Path) -> None:
    tag = spec(context).content_tag()
    assert tag == spec(context).content_tag()
    assert len(tag) == 16
    (context / "notes.pyc").write_bytes(b"ignored by .dockerignore")
    assert spec(context).content_tag() == tag
    home = context / "templates" / "home.html"
    home.write_text(home.read_text() + "<!-- edit -->")
    edited = spec(context).content_tag()
    assert edited != tag
    assert spec(context, BASE_IMAGE="other:1").content_tag() != edited
    (context / "healthcheck.py").chmod(0o755)
    assert spec(context).content_tag() != edited


def test_ecr_token_is_decoded_in_memory_and_never_shown() -> None:
    token = base64.b64encode(b"AWS:secret-password").decode()
    auth = ecr_auth(token, "https://123.dkr.ecr.us-east-1.amazonaws.com")
    assert (auth.username, auth.password) == ("AWS", "secret-password")
    assert "secret-password" not in repr(auth)
    assert auth.as_auth_config()["serveraddress"] == "https://123.dkr.ecr.us-east-1.amazonaws.com"


def test_a_failing_build_names_the_step_and_shows_the_tail(docker_client: docker.DockerClient, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN echo about to fail && echo 'the reason' >&2 && exit 3\n"
    )
    builder = ImageBuilder(RecordingOutput(), connect=lambda: docker_client)
    with pytest.raises(ImageBuildError) as failure:
        builder.build(spec(tmp_path, BASE_IMAGE=BASE_IMAGE), f"local/failing:{uuid.uuid4().hex[:8]}")
    message = failure.value.message
    assert "exit 3" in message or "returned a non-zero code: 3" in message
    assert "about to fail" in message
    assert str(tmp_path / "Dockerfile") in message
    assert builder.builds == 0


def test_a_refused_push_is_an_error_not_silence(docker_client: docker.DockerClient) -> None:
    repository = f"{REGISTRY_HOST}/refused-{uuid.uuid4().hex[:8]}"
    docker_client.images.get(BASE_IMAGE).tag(repository, tag="x")
    builder = ImageBuilder(RecordingOutput(), connect=lambda: docker_client)
    wrong = RegistryAuth("AWS", "not-the-token", RIGHT.server)
    try:
        with pytest.raises(ImagePushError, match="refused the push"):
            builder.push(repository, "x", wrong)
        with pytest.raises(ImagePushError, match="HTTP 401"):
            builder.registry_digest(f"{repository}:x", wrong)
    finally:
        docker_client.images.remove(f"{repository}:x")
    assert builder.pushes == 0


def test_registry_lookup_of_a_missing_tag_is_none(docker_client: docker.DockerClient) -> None:
    builder = ImageBuilder(RecordingOutput(), connect=lambda: docker_client)
    assert builder.registry_digest(f"{REGISTRY_HOST}/absent-{uuid.uuid4().hex[:8]}:nope", RIGHT) is None


def test_no_engine_is_a_clear_error(tmp_path: Path) -> None:
    builder = ImageBuilder(
        RecordingOutput(), connect=lambda: docker.DockerClient(base_url=f"unix://{tmp_path}/none.sock")
    )
    with pytest.raises(DockerUnavailableError, match="No Docker engine is reachable") as failure:
        builder.client()
    assert "DOCKER_HOST" in str(failure.value)
