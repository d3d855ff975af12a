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


Refusal = tuple[str, str]  # AWS's error code and message
Rule = Callable[[dict[str, Any]], Refusal | None]


def answer_errors(client: Any, operation: str, rule: Rule) -> None:
    """Every call of `operation` for which `rule` (given the call's parameters) returns a refusal is
    answered with that error code and message instead of reaching moto."""
    service = client.meta.service_model.service_id.hyphenize()

    def keep(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["api_params"] = dict(params)

    def answer(context: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        refusal = rule(context.get("api_params", {}))
        if refusal is None:
            return None
        code, message = refusal
        return (
            AWSResponse("https://injected", 400, HTTPHeaders(), None),
            {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": 400}},
        )

    client.meta.events.register(f"before-parameter-build.{service}.{operation}", keep)
    client.meta.events.register(f"before-call.{service}.{operation}", answer)


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

    def rule(params: dict[str, Any]) -> Refusal | None:
        if injection.remaining <= 0 or (when is not None and not when(params)):
            return None
        injection.remaining -= 1
        injection.served += 1
        return code, message

    answer_errors(client, operation, rule)
    return injection
