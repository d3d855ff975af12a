"""provision.py with a slow fake image build and no Docker engine: for tests/test_interrupt.py.

A test-only entry point (a subprocess cannot be handed a Python fake): it replaces the
engine-facing methods of `deployer.images.ImageBuilder`, then runs the real
`deployer.cli.provision_main`. Markers go to the folder in SLOW_BUILD_MARKERS:

* `building` when the build starts; the build then takes SLOW_BUILD_SECONDS (default 10)
  in small sleeps and ignores cancellation, like an engine that is slow to stop;
* `pushed` when a push gets past the cancellation check the real push makes first.

The registry never holds the tag, so every run builds and pushes.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deployer import cli
from deployer.images import BuildSpec, ImageBuilder, RegistryAuth

MARKERS = Path(os.environ["SLOW_BUILD_MARKERS"])
BUILD_SECONDS = float(os.environ.get("SLOW_BUILD_SECONDS", "10"))
DIGEST = "sha256:" + "ab" * 32


def no_engine(self: ImageBuilder) -> object:
    return object()  # the fake build and push below never use it


def registry_digest(self: ImageBuilder, reference: str, auth: RegistryAuth) -> str | None:
    return None


def build(self: ImageBuilder, spec: BuildSpec, reference: str) -> None:
    (MARKERS / "building").write_text(reference)
    ends = time.monotonic() + BUILD_SECONDS
    while time.monotonic() < ends:
        time.sleep(0.05)
    self.builds += 1


def push(self: ImageBuilder, repository: str, tag: str, auth: RegistryAuth) -> str:
    self._stop_if_cancelled(f"{repository}:{tag}")  # as the real push does first
    (MARKERS / "pushed").write_text(f"{repository}:{tag}")
    self.pushes += 1
    return DIGEST


ImageBuilder.client = no_engine  # type: ignore[assignment, method-assign]
ImageBuilder.registry_digest = registry_digest  # type: ignore[method-assign]
ImageBuilder.build = build  # type: ignore[method-assign]
ImageBuilder.push = push  # type: ignore[method-assign]

if __name__ == "__main__":
    cli.exit_process(cli.provision_main(sys.argv[1:]))  # as provision.py ends
