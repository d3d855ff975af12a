"""The site on the user's domain, end to end with a real Docker engine: the redirect port and HSTS.

The site's image is built the way `provision` builds it (deployer.images.ImageBuilder, the local base
image) and run the way the task definition says, confined as Fargate confines it, with host networking
(scripts/setup-docker.sh runs the engine without a bridge), reached on loopback only. With SITE_DOMAIN
the container answers plain http on REDIRECT_PORT with a 301 to https://SITE_DOMAIN and marks the main
port's answers with HSTS; without it, nothing listens on REDIRECT_PORT. The ports are free ones picked
for the run (as tests/test_image_e2e.py does), so parallel runs and other tests never collide; the
deployer's 8080/8081 are the defaults of the same variables. Skipped without an engine; with
REQUIRE_DOCKER=1 (CI) that is a failure (tests/conftest.py docker_client).
"""

from __future__ import annotations

import contextlib
import http.client
from collections.abc import Iterator

import docker
import docker.errors
import pytest
from docker.models.containers import Container

from deployer.images import BuildSpec, ImageBuilder
from deployer.steps.ecs import SCRATCH_PATH, SCRATCH_VOLUME, SITE_HEALTH_CHECK, SITE_USER
from tests.conftest import BASE_IMAGE, PROJECT_DIR, RecordingOutput
from tests.test_image_e2e import assert_confined, free_port, run_as_task_definition, wait_for

DOMAIN = "www.example.com"
HSTS = "max-age=31536000"
REPOSITORY = "flask-deployer-tests/https-site"


@pytest.fixture
def site_image(docker_client: docker.DockerClient) -> Iterator[str]:
    """The site's image, built from website/ as provision builds it, tagged by its content."""
    spec = BuildSpec(context=PROJECT_DIR / "website", dockerfile="Dockerfile", build_args={"BASE_IMAGE": BASE_IMAGE})
    reference = f"{REPOSITORY}:{spec.content_tag()}"
    ImageBuilder(RecordingOutput(), connect=lambda: docker_client).build(spec, reference)
    yield reference
    with contextlib.suppress(docker.errors.APIError):  # a parallel run of the same content may still use it
        docker_client.images.remove(reference)


def run_site(client: docker.DockerClient, image: str, environment: dict[str, str]) -> Container:
    """The container as the task definition runs it: read-only root, /tmp scratch, no capabilities, SITE_USER."""
    return run_as_task_definition(
        client,
        {
            "containerDefinitions": [
                {
                    "name": "web",
                    "image": image,
                    "environment": [{"name": name, "value": value} for name, value in environment.items()],
                    "user": SITE_USER,
                    "readonlyRootFilesystem": True,
                    "mountPoints": [{"sourceVolume": SCRATCH_VOLUME, "containerPath": SCRATCH_PATH, "readOnly": False}],
                    "linuxParameters": {"capabilities": {"drop": ["ALL"]}},
                }
            ],
            "volumes": [{"name": SCRATCH_VOLUME}],
        },
    )


def request(port: int, target: str, method: str = "GET", host: str | None = None) -> http.client.HTTPResponse:
    """One request to 127.0.0.1:port, no proxy, redirects not followed; the body is read."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request(method, target, headers={"Host": host} if host else {})
        response = connection.getresponse()
        response.read()
        return response
    finally:
        connection.close()


def test_redirect_port_and_hsts_with_a_domain_and_nothing_without(
    docker_client: docker.DockerClient, site_image: str, containers: list[Container]
) -> None:
    port, redirect_port, plain_port, unused_port = (free_port() for _ in range(4))
    on_domain = run_site(
        docker_client, site_image, {"PORT": str(port), "REDIRECT_PORT": str(redirect_port), "SITE_DOMAIN": DOMAIN}
    )
    containers.append(on_domain)
    # The deployer sets no SITE_DOMAIN without a domain; REDIRECT_PORT is set here only to show it is ignored.
    plain = run_site(docker_client, site_image, {"PORT": str(plain_port), "REDIRECT_PORT": str(unused_port)})
    containers.append(plain)
    wait_for(f"http://127.0.0.1:{port}/healthz", on_domain)
    wait_for(f"http://127.0.0.1:{plain_port}/healthz", plain)

    # Plain http (the NLB's port 80) arrives on REDIRECT_PORT: a permanent redirect to the domain, whatever
    # the Host header says, for HEAD too, and no HSTS over plain http.
    for method in ("GET", "HEAD"):
        moved = request(redirect_port, "/some/path?q=1", method, host="evil.example")
        assert moved.status == 301, method
        assert moved.headers["Location"] == f"https://{DOMAIN}/some/path?q=1"
        assert moved.headers["Strict-Transport-Security"] is None
    healthz = request(redirect_port, "/healthz")
    assert (healthz.status, healthz.headers["Location"]) == (301, f"https://{DOMAIN}/healthz")

    # The main port (TLS terminated at the NLB) serves the site, with HSTS.
    for path in ("/healthz", "/", "/no-such-page"):
        answer = request(port, path)
        assert answer.status == (404 if path == "/no-such-page" else 200), path
        assert answer.headers["Strict-Transport-Security"] == HSTS, path
    health = on_domain.exec_run(list(SITE_HEALTH_CHECK["command"][1:]))  # the task definition's health check
    assert health.exit_code == 0, health.output
    assert_confined(on_domain)

    # Without SITE_DOMAIN: the site as before, no HSTS, and nothing listens on the redirect port.
    answer = request(plain_port, "/healthz")
    assert answer.status == 200
    assert answer.headers["Strict-Transport-Security"] is None
    with pytest.raises(ConnectionRefusedError):
        request(unused_port, "/")
