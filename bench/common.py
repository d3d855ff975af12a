"""What every benchmark that runs the tool against moto needs first: an isolated AWS environment."""

from __future__ import annotations

import os
from pathlib import Path


def isolate_environment(scratch: Path, region: str, **moto_switches: str) -> None:
    """Fake credentials and region, no local AWS configuration, and moto's switches (before the server starts)."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "MOTO_")):
            del os.environ[name]
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=region,
        AWS_CONFIG_FILE=str(scratch / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(scratch / "no-aws-credentials"),
        MOTO_IAM_LOAD_MANAGED_POLICIES="true",
        **moto_switches,
    )
