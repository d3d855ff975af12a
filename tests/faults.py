"""Make moto answer like AWS does when it is still catching up: inject error answers with botocore hooks.

An error returned from a `before-call` handler is raised to the caller as an ordinary
ClientError, without reaching moto and without botocore's own retries, so what is
tested is the tool's handling (see docs/aws-behaviour.md, "Fault injection on top of moto").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders


@dataclass
class Injection:
    remaining: int
    served: int = 0


def inject_errors(
    client: Any,
    operation: str,
    code: str,
    message: str = "injected",
    times: int = 1,
    when: Callable[[dict[str, Any]], bool] | None = None,
) -> Injection:
    """The next `times` calls of `operation` (matching `when`, on their parameters) fail with `code`."""
    injection = Injection(times)
    service = client.meta.service_model.service_id.hyphenize()

    def keep(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["api_params"] = dict(params)

    def fail(context: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        if injection.remaining <= 0 or (when is not None and not when(context.get("api_params", {}))):
            return None
        injection.remaining -= 1
        injection.served += 1
        return (
            AWSResponse("https://injected", 400, HTTPHeaders(), None),
            {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": 400}},
        )

    client.meta.events.register(f"before-parameter-build.{service}.{operation}", keep)
    client.meta.events.register(f"before-call.{service}.{operation}", fail)
    return injection
