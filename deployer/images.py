"""The site's image: a content-addressed tag, a registry check, a Docker SDK build and push.

The tag is a hash of exactly what `docker build` would see: the files of the build
context that `.dockerignore` lets through (paths, contents, executable bits), the
Dockerfile's path and content (wherever it lives), the build arguments and the
target platform. Before building, the registry itself is asked whether it holds that tag (`get_registry_data`,
through the engine, with the token): if it does, nothing is built or pushed, so an
unchanged site costs no build.

The ECR token is decoded in memory and handed to the engine per call
(`auth_config`); it is never written to disk (no `docker login`), to the state or
to a log line.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import stat
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.utils.build import exclude_paths

from deployer.errors import DeployerError
from deployer.output import Output

PLATFORM = "linux/amd64"  # Fargate's platform in this stack (runtimePlatform X86_64)
TAG_LENGTH = 16
LOG_TAIL_LINES = 15
BUILD_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)")  # the classic builder's step lines, which docker-py streams


class DockerUnavailableError(DeployerError):
    """No Docker engine answers."""


class ImageBuildError(DeployerError):
    """`docker build` failed."""


class ImagePushError(DeployerError):
    """The registry refused the push (docker-py reports this in the stream, not as an exception)."""


@dataclass(frozen=True)
class RegistryAuth:
    """Credentials for one registry; the password is kept out of repr() and so out of any log."""

    username: str
    password: str = field(repr=False)
    server: str

    def as_auth_config(self) -> dict[str, str]:
        return {"username": self.username, "password": self.password, "serveraddress": self.server}


def ecr_auth(token: str, proxy_endpoint: str) -> RegistryAuth:
    """Decode ECR's `get_authorization_token` answer, base64 of `AWS:<password>`."""
    username, _, password = base64.b64decode(token).decode().partition(":")
    return RegistryAuth(username, password, proxy_endpoint)


@dataclass(frozen=True)
class BuildSpec:
    context: Path
    dockerfile: str
    build_args: dict[str, str]
    platform: str = PLATFORM

    def content_tag(self) -> str:
        digest = hashlib.sha256()
        for part in (self.dockerfile, self.platform, *sorted(f"{k}={v}" for k, v in self.build_args.items())):
            digest.update(part.encode() + b"\0")
        # The Dockerfile's content always counts: docker sends it even from outside the context.
        digest.update(hashlib.sha256((self.context / self.dockerfile).read_bytes()).digest())
        for relative in sorted(self.context_files()):
            path = self.context / relative
            mode = path.lstat().st_mode
            digest.update(relative.encode() + b"\0" + (b"x" if mode & stat.S_IXUSR else b"-"))
            if stat.S_ISREG(mode):
                digest.update(hashlib.sha256(path.read_bytes()).digest())
            elif stat.S_ISLNK(mode):
                digest.update(os.readlink(path).encode())
        return digest.hexdigest()[:TAG_LENGTH]

    def context_files(self) -> set[str]:
        """What the engine receives: every path `.dockerignore` does not exclude."""
        ignore = self.context / ".dockerignore"
        patterns: list[str] = []
        if ignore.is_file():
            lines = (line.strip() for line in ignore.read_text(encoding="utf-8").splitlines())
            patterns = [line for line in lines if line and not line.startswith("#")]
        return {normalize(p) for p in exclude_paths(str(self.context), patterns, dockerfile=self.dockerfile)}


def normalize(path: str) -> str:
    return path.replace(os.sep, "/")


class ImageCancelledError(DeployerError):
    """The run was interrupted while the image was being built or pushed."""


class ImageBuilder:
    """Talks to the Docker engine; built once by the CLI and handed to the image step.

    Progress goes to the run's `Output`: a step line per build and push, a live "step n of
    m" line for the build and a byte bar for the push on a terminal, and the engine's raw
    stream only with --verbose (or quoted in an error). `cancel()` (from the runner, on
    Ctrl-C or a failure elsewhere) stops reading the streams and forbids any later push.
    """

    def __init__(self, output: Output, connect: Callable[[], docker.DockerClient] = docker.from_env) -> None:
        self._connect = connect
        self._client: docker.DockerClient | None = None
        self._cancelled = threading.Event()
        self.output = output
        self.builds = 0
        self.pushes = 0

    def cancel(self) -> None:
        self._cancelled.set()

    def client(self) -> docker.DockerClient:
        """The engine, or a clear error saying how to start one."""
        if self._client is None:
            try:
                client = self._connect()
                client.ping()  # type: ignore[no-untyped-call]
            except docker.errors.DockerException as exc:
                raise DockerUnavailableError(
                    f"No Docker engine is reachable ({exc})",
                    where=f"DOCKER_HOST={os.environ.get('DOCKER_HOST', 'unset (the local socket)')}",
                    todo="Start Docker (Docker Desktop, `sudo systemctl start docker`, or `sudo dockerd &`), or "
                    "point DOCKER_HOST at a running engine; or pass --image URI to deploy an existing image "
                    "without building. Nothing was created",
                ) from exc
            self._client = client
        return self._client

    def registry_digest(self, reference: str, auth: RegistryAuth) -> str | None:
        """The digest the registry holds for `reference`, or None if it has no such tag."""
        try:
            data = self.client().images.get_registry_data(reference, auth_config=auth.as_auth_config())
        except docker.errors.NotFound:  # the engine's 404: no such repository or tag
            return None
        except docker.errors.APIError as exc:
            raise ImagePushError(
                f"The registry refused the image lookup (HTTP {exc.status_code}): {exc.explanation or exc}",
                where=reference,
                todo="Check the registry's address and that the credentials may read this repository, then run again",
            ) from exc
        return str(data.id)

    def build(self, spec: BuildSpec, reference: str) -> None:
        """Build through the engine's streaming API, so the run can show the step and stop reading at once."""
        self.output.line(f"  building {reference} from {spec.context} for {spec.platform}")
        where = f"{spec.context / spec.dockerfile}"
        try:
            stream = self.client().api.build(
                path=str(spec.context),
                dockerfile=spec.dockerfile,
                tag=reference,
                buildargs=spec.build_args,
                platform=spec.platform,
                network_mode="host",
                rm=True,
                forcerm=True,
                decode=True,
            )
            self._follow_build(_events(stream), where)
        except docker.errors.APIError as exc:
            raise ImageBuildError(
                f"The Docker engine refused the build: {exc.explanation or exc}",
                where=where,
                todo="Check the Dockerfile, the build arguments (BASE_IMAGE must be an image the engine has or "
                "can pull) and the engine's log",
            ) from exc
        finally:
            self.output.live("")
        self.builds += 1

    def _follow_build(self, events: Iterator[dict[str, Any]], where: str) -> None:
        lines: list[str] = []

        def failed(message: str) -> ImageBuildError:
            return ImageBuildError(
                f"The image build failed: {message}. Last output:\n{_tail(lines)}",
                where=where,
                todo="Fix the failing step above and run again; nothing in AWS was changed by the build",
            )

        for event in self._until_failure(events, where, failed):
            for line in str(event.get("stream", "")).splitlines():
                if line.strip():
                    lines.append(line)
                    self.output.detail(f"    {line}")
                    step = BUILD_STEP.match(line)
                    if step:
                        self.output.live(f"  building: step {step[1]} of {step[2]}: {step[3][:60]}")

    def push(self, repository: str, tag: str, auth: RegistryAuth) -> str:
        """Push and return the digest; docker-py reports failures in the stream, so read all of it."""
        where = f"{repository}:{tag}"
        self._stop_if_cancelled(where)
        self.output.line(f"  pushing {where}")
        stream = self.client().images.push(
            repository, tag=tag, auth_config=auth.as_auth_config(), stream=True, decode=True
        )
        try:
            digest = self._follow_push(_events(stream), where)
        finally:
            self.output.live("")
        self.pushes += 1
        return digest

    def _until_failure(
        self, events: Iterator[dict[str, Any]], where: str, failure: Callable[[str], DeployerError]
    ) -> Iterator[dict[str, Any]]:
        """The stream's events until a cancel (Ctrl-C) or the engine's error, which `failure` words."""
        for event in events:
            self._stop_if_cancelled(where)
            if "error" in event or "errorDetail" in event:
                raise failure(str(event.get("errorDetail", {}).get("message") or event.get("error")))
            yield event

    def _follow_push(self, events: Iterator[dict[str, Any]], where: str) -> str:
        digest = ""
        layers: dict[str, tuple[int, int]] = {}

        def refused(message: str) -> ImagePushError:
            return ImagePushError(
                f"The registry refused the push: {message}",
                where=where,
                todo="Check that the credentials may push to this repository and that the tag does not "
                "exist already with other content (tags are immutable); then run again",
            )

        for event in self._until_failure(events, where, refused):
            digest = event.get("aux", {}).get("Digest", digest)
            progress = event.get("progressDetail") or {}
            if event.get("id") and progress.get("total"):
                layers[str(event["id"])] = (int(progress.get("current", 0)), int(progress["total"]))
                self.output.bar("  pushing", sum(c for c, _ in layers.values()), sum(t for _, t in layers.values()))
            elif event.get("status"):
                self.output.detail(f"    {event.get('id', '')}: {event['status']}".replace("    : ", "    "))
        if not digest:
            raise ImagePushError(
                "The push ended without a digest",
                where=where,
                todo="Run again; if it persists, check the registry's log",
            )
        return digest

    def _stop_if_cancelled(self, where: str) -> None:
        if self._cancelled.is_set():
            raise ImageCancelledError(
                "The run was interrupted; the image was neither finished nor pushed",
                where=where,
                todo="Run the same command again",
            )


def _events(stream: Iterable[Any]) -> Iterator[dict[str, Any]]:
    for event in stream:
        if isinstance(event, dict):
            yield event


def _tail(lines: list[str]) -> str:
    return "\n".join(f"    {line}" for line in lines[-LOG_TAIL_LINES:])
