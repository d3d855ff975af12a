"""The site's image: a content-addressed tag, a registry check, a Docker SDK build and push.

The tag is a hash of exactly what `docker build` would see: the files of the build
context that `.dockerignore` lets through (paths, contents, executable bits), the
Dockerfile's path, the build arguments and the target platform. Before building,
the registry itself is asked whether it holds that tag (`get_registry_data`,
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
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.utils.build import exclude_paths

from deployer.errors import DeployerError

PLATFORM = "linux/amd64"  # Fargate's platform in this stack (runtimePlatform X86_64)
TAG_LENGTH = 16
LOG_TAIL_LINES = 15


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


class ImageBuilder:
    """Talks to the Docker engine; built once by the CLI and handed to the image step."""

    def __init__(
        self, connect: Callable[[], docker.DockerClient] = docker.from_env, progress: Callable[[str], None] = print
    ) -> None:
        self._connect = connect
        self._client: docker.DockerClient | None = None
        self.progress = progress
        self.builds = 0
        self.pushes = 0

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
        self.progress(f"  building {reference} from {spec.context} for {spec.platform}")
        try:
            self.client().images.build(
                path=str(spec.context),
                dockerfile=spec.dockerfile,
                tag=reference,
                buildargs=spec.build_args,
                platform=spec.platform,
                network_mode="host",
                rm=True,
                forcerm=True,
            )
        except docker.errors.BuildError as exc:
            raise ImageBuildError(
                f"The image build failed: {exc.msg}. Last output:\n{_tail(exc.build_log)}",
                where=f"{spec.context / spec.dockerfile}",
                todo="Fix the failing step above and run again; nothing in AWS was changed by the build",
            ) from exc
        except docker.errors.APIError as exc:
            raise ImageBuildError(
                f"The Docker engine refused the build: {exc.explanation or exc}",
                where=f"{spec.context / spec.dockerfile}",
                todo="Check the Dockerfile, the build arguments (BASE_IMAGE must be an image the engine has or "
                "can pull) and the engine's log",
            ) from exc
        self.builds += 1

    def push(self, repository: str, tag: str, auth: RegistryAuth) -> str:
        """Push and return the digest; docker-py reports failures in the stream, so read all of it."""
        self.progress(f"  pushing {repository}:{tag}")
        stream = self.client().images.push(
            repository, tag=tag, auth_config=auth.as_auth_config(), stream=True, decode=True
        )
        digest = ""
        shown: set[tuple[str, str]] = set()
        for event in _events(stream):
            if "errorDetail" in event or "error" in event:
                message = event.get("errorDetail", {}).get("message") or event.get("error")
                raise ImagePushError(
                    f"The registry refused the push: {message}",
                    where=f"{repository}:{tag}",
                    todo="Check that the credentials may push to this repository and that the tag does not "
                    "exist already with other content (tags are immutable); then run again",
                )
            digest = event.get("aux", {}).get("Digest", digest)
            key = (str(event.get("id", "")), str(event.get("status", "")))
            if key[1] and "progress" not in event and key not in shown:
                shown.add(key)
                self.progress(f"    {key[0]}: {key[1]}" if key[0] else f"    {key[1]}")
        if not digest:
            raise ImagePushError(
                "The push ended without a digest",
                where=f"{repository}:{tag}",
                todo="Run again; if it persists, check the registry's log",
            )
        self.pushes += 1
        return digest


def _events(stream: Iterable[Any]) -> Iterator[dict[str, Any]]:
    for event in stream:
        if isinstance(event, dict):
            yield event


def _tail(build_log: Iterable[Any]) -> str:
    lines: list[str] = []
    for chunk in build_log:
        if isinstance(chunk, dict):
            text = chunk.get("stream") or chunk.get("error") or ""
            lines.extend(line for line in str(text).splitlines() if line.strip())
    return "\n".join(f"    {line}" for line in lines[-LOG_TAIL_LINES:])
