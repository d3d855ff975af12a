"""The local Docker engine, base image and emulated ECR registry that scripts/setup-docker.sh puts in place.

Skipped when no Docker engine answers; with REQUIRE_DOCKER=1 that is a failure instead (conftest). Every image
these tests push is unique to the run (its own tag and a label, hence its own digest), and is
deleted from the registry and from the engine afterwards.
"""

from __future__ import annotations

import base64
import io
import re
import ssl
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
import docker
import docker.errors
import pytest
from docker import DockerClient
from moto import mock_aws

from tests.conftest import BASE_IMAGE, REGISTRY_HOST

REGISTRY_CA = Path("/var/lib/flask-deployer/registry/ca.crt")
TEST_REPOSITORY = f"{REGISTRY_HOST}/flask-deployer-tests"
RUN_ID = uuid.uuid4().hex[:12]
SETUP_HINT = "run scripts/setup-docker.sh"


@dataclass(frozen=True)
class EcrLogin:
    host: str
    auth: dict[str, str]


@pytest.fixture
def ecr_login(docker_client: DockerClient) -> EcrLogin:
    """What moto's ECR hands out, checked to point at the local registry (never at AWS)."""
    with mock_aws():
        data = boto3.client("ecr", region_name="us-east-1").get_authorization_token()["authorizationData"][0]
    username, password = base64.b64decode(data["authorizationToken"]).decode().split(":", 1)
    host = urlparse(data["proxyEndpoint"]).netloc
    assert host == REGISTRY_HOST, f"moto's ECR endpoint changed to {host}; update scripts/setup-docker.sh"
    # The engine resolves the name through /etc/hosts; without the entry it would go to the real ECR.
    mapped = any(
        fields[0].startswith("127.") and host in fields[1:]
        for fields in (line.split("#")[0].split() for line in Path("/etc/hosts").read_text().splitlines())
        if fields
    )
    assert mapped, f"{host} is not mapped to 127.0.0.1 in /etc/hosts: {SETUP_HINT}"
    return EcrLogin(host=host, auth={"username": username, "password": password})


def delete_manifest(login: EcrLogin, repository: str, digest: str) -> None:
    """Remove a pushed manifest from the local registry (its blobs stay until a garbage collection)."""
    name = repository.removeprefix(f"{login.host}/")
    request = urllib.request.Request(f"https://{login.host}/v2/{name}/manifests/{digest}", method="DELETE")
    credentials = base64.b64encode(f"{login.auth['username']}:{login.auth['password']}".encode()).decode()
    request.add_header("Authorization", f"Basic {credentials}")
    with urllib.request.urlopen(request, context=ssl.create_default_context(cafile=REGISTRY_CA), timeout=30):
        pass


@pytest.fixture
def unique_image(docker_client: DockerClient, ecr_login: EcrLogin, request: pytest.FixtureRequest) -> Iterator[str]:
    """A tag of a one-label image built on the base image, unique to this test run; cleaned up afterwards."""
    test = re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name.removeprefix("test_"))[:80]
    tag = f"{RUN_ID}-{test}"
    dockerfile = f"FROM {BASE_IMAGE}\nLABEL flask-deployer.test-run={RUN_ID} flask-deployer.test={test}\n"
    docker_client.images.build(
        fileobj=io.BytesIO(dockerfile.encode()), tag=f"{TEST_REPOSITORY}:{tag}", network_mode="host", rm=True
    )
    yield tag
    try:
        digest = docker_client.images.get_registry_data(f"{TEST_REPOSITORY}:{tag}", auth_config=ecr_login.auth).id
    except docker.errors.APIError:
        digest = None  # never pushed
    if digest is not None:
        delete_manifest(ecr_login, TEST_REPOSITORY, digest)
    docker_client.images.remove(f"{TEST_REPOSITORY}:{tag}", force=True)


def push(client: DockerClient, tag: str, auth: dict[str, str]) -> list[dict[str, Any]]:
    """The push's progress stream: docker-py does not raise when a push fails, the stream says so."""
    return list(client.images.push(TEST_REPOSITORY, tag=tag, auth_config=auth, stream=True, decode=True))


def test_base_image_runs_python3(docker_client: DockerClient) -> None:
    try:
        image = docker_client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"{BASE_IMAGE} is missing: {SETUP_HINT}", pytrace=False)
    assert "PIP_CERT=/etc/ssl/certs/ca-certificates.crt" in image.attrs["Config"]["Env"]

    output = docker_client.containers.run(
        BASE_IMAGE,
        ["python3", "-c", "import sys, ssl, venv; print(sys.version_info.major, ssl.OPENSSL_VERSION)"],
        network_mode="host",
        remove=True,
    )
    assert output.decode().startswith("3 OpenSSL")


def test_push_with_the_moto_token_is_accepted(
    docker_client: DockerClient, ecr_login: EcrLogin, unique_image: str
) -> None:
    events = push(docker_client, unique_image, ecr_login.auth)

    assert [e for e in events if "errorDetail" in e] == []
    pushed = [e["aux"]["Digest"] for e in events if "Digest" in e.get("aux", {})]
    assert len(pushed) == 1 and pushed[0].startswith("sha256:")
    data = docker_client.images.get_registry_data(f"{TEST_REPOSITORY}:{unique_image}", auth_config=ecr_login.auth)
    assert data.id == pushed[0]
    assert len(data.id) == len("sha256:") + 64


def test_push_with_a_wrong_token_is_refused(
    docker_client: DockerClient, ecr_login: EcrLogin, unique_image: str
) -> None:
    wrong = {**ecr_login.auth, "password": ecr_login.auth["password"] + "-wrong"}

    events = push(docker_client, unique_image, wrong)

    errors = [e["errorDetail"]["message"] for e in events if "errorDetail" in e]
    assert errors and any("unauthorized" in message or "authentication" in message for message in errors), events
    assert not any("Digest" in e.get("aux", {}) for e in events)
    with pytest.raises(docker.errors.APIError):
        docker_client.images.get_registry_data(f"{TEST_REPOSITORY}:{unique_image}", auth_config=wrong)
    # Nothing landed: with the right token the tag is still unknown.
    with pytest.raises(docker.errors.APIError):
        docker_client.images.get_registry_data(f"{TEST_REPOSITORY}:{unique_image}", auth_config=ecr_login.auth)
