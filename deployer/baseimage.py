"""The image the site's Dockerfile builds FROM, on a machine that cannot pull the default one.

website/Dockerfile starts with `ARG BASE_IMAGE=python:3.12-slim`. Where Docker Hub cannot
be reached (behind a firewall, or in a sandbox like the one CI runs in) that base cannot
be pulled, and the build would fail. scripts/setup-docker.sh builds a stand-in,
`flask-deployer/base:bookworm` (Debian bookworm + python3, made with debootstrap from the
Debian mirror). `resolve_build_args` picks it, with one line saying so, when:

* the user did not choose a base (no BASE_IMAGE in deploy.toml's build_args or --build-arg),
* the Dockerfile declares `ARG BASE_IMAGE=<default>` (a Dockerfile without it is left alone),
* the engine does not hold the default and cannot pull it, and
* the engine holds the stand-in.

If it holds neither, the error says how to get the stand-in. A pull must not hang the
deploy: docker-py's pull posts to /images/create with `timeout=None` (docker/api/image.py,
https://github.com/docker/docker-py), and an engine dialling an unreachable registry can
take minutes to give up. So the pull runs in a daemon thread and the wait for the
registry's first answer is bounded (`PULL_ANSWER_SECONDS`); once the registry answers, the
download is waited out.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import docker
import docker.errors

from deployer.errors import DeployerError

BUILD_ARG = "BASE_IMAGE"
LOCAL_BASE = "flask-deployer/base:bookworm"  # built by scripts/setup-docker.sh (also with --engine)
PULL_ANSWER_SECONDS = 10.0

_ARG_DEFAULT = re.compile(r"^\s*ARG\s+BASE_IMAGE\s*=\s*[\"']?([^\s\"']+)", re.IGNORECASE | re.MULTILINE)


def dockerfile_default(dockerfile: Path) -> str | None:
    """The default of `ARG BASE_IMAGE=...` in the Dockerfile, or None if it declares none."""
    try:
        match = _ARG_DEFAULT.search(dockerfile.read_text(encoding="utf-8"))
    except OSError:
        return None
    return match.group(1) if match else None


def resolve_build_args(
    engine: Callable[[], docker.DockerClient],
    build_args: Mapping[str, str],
    say: Callable[[str], None],
    *,
    dockerfile: Path,
    pull: bool = True,
    answer_seconds: float = PULL_ANSWER_SECONDS,
) -> dict[str, str]:
    """The build arguments to build with: `build_args`, plus BASE_IMAGE=<the stand-in> when the default is out of reach.

    `engine` is asked for the client only when the choice depends on it; if no engine
    answers, the arguments stay as they are and the build itself reports the missing engine
    (so do builders without an engine, such as the tests' and benchmarks' fakes). `pull=False`
    (a dry run) only looks at what the engine holds, changing nothing.
    """
    args = dict(build_args)
    default = dockerfile_default(dockerfile)
    if BUILD_ARG in args or default is None:
        return args
    try:
        client = engine()
    except DeployerError:
        return args
    if _has(client, default):
        return args
    why = pull_image(client, default, answer_seconds) if pull else "not pulled in a dry run"
    if why is None:
        return args
    if _has(client, LOCAL_BASE):
        say(f"  base image: {default} cannot be pulled ({why}); using the local {LOCAL_BASE} as the base instead")
        return {**args, BUILD_ARG: LOCAL_BASE}
    raise DeployerError(
        f"The site's base image {default} is not in the Docker engine and cannot be pulled ({why}), and the local "
        f"stand-in {LOCAL_BASE} is not there either",
        where=f"{dockerfile} (ARG {BUILD_ARG})",
        todo=f"Build the stand-in with `sudo scripts/setup-docker.sh --engine` (Debian/Ubuntu: {LOCAL_BASE} from the "
        f"Debian mirror with debootstrap), or pass --build-arg {BUILD_ARG}=<an image the engine has>, or let the "
        "engine reach Docker Hub; then run the same command again. Nothing was built",
    )


def pull_image(client: docker.DockerClient, reference: str, answer_seconds: float) -> str | None:
    """Pull `reference`: None when done, else why not. Waits at most `answer_seconds` for the registry to answer."""
    repository, _, tag = reference.rpartition(":") if ":" in reference.rpartition("/")[2] else (reference, "", "")
    answered = threading.Event()
    outcome: list[str | None] = []

    def run() -> None:
        try:
            stream: Any = client.api.pull(repository, tag=tag or "latest", stream=True, decode=True)
            for event in stream:
                answered.set()
                if isinstance(event, dict) and ("error" in event or "errorDetail" in event):
                    outcome.append(str(event.get("error") or event["errorDetail"].get("message")))
                    return
            outcome.append(None)
        except docker.errors.DockerException as exc:
            explanation = getattr(exc, "explanation", None)
            outcome.append(str(explanation or exc))
        except Exception as exc:  # e.g. requests errors from the stream: any failure means "cannot be pulled"
            outcome.append(f"{type(exc).__name__}: {exc}")
        finally:
            answered.set()

    # A daemon thread: if the engine never answers, the deploy goes on without it and exits without waiting.
    worker = threading.Thread(target=run, name=f"pull {reference}", daemon=True)
    worker.start()
    if not answered.wait(answer_seconds):
        return f"no answer from the registry within {answer_seconds:g}s"
    worker.join()
    return outcome[0] if outcome else "the pull ended without an outcome"


def _has(client: docker.DockerClient, reference: str) -> bool:
    try:
        client.images.get(reference)
    except docker.errors.ImageNotFound:
        return False
    return True
