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
from moto.logs.models import logs_backends


@dataclass
class Injection:
    remaining: int
    served: int = 0


Refusal = tuple[str, str]  # AWS's error code and message
Answer = tuple[AWSResponse, dict[str, Any]]  # what a `before-call` handler returns to answer in AWS's place


def keep_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    """For `before-parameter-build`: the request's parameters, where a `before-call` handler can read them."""
    context["api_params"] = dict(params)


def ok_answer(answer: dict[str, Any]) -> Answer:
    """A successful answer with these members."""
    return AWSResponse("https://emulated", 200, HTTPHeaders(), None), {
        **answer,
        "ResponseMetadata": {"HTTPStatusCode": 200},
    }


def error_answer(code: str, message: str) -> Answer:
    """AWS's error answer: raised to the caller as a ClientError with this code and message."""
    return AWSResponse("https://emulated", 400, HTTPHeaders(), None), {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": 400},
    }


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


def emulate_log_group_keys(client: Any, account: str) -> None:
    """AssociateKmsKey / DisassociateKmsKey for in-process moto, which (5.2) does not implement them.

    AWS sets or clears the group's `kmsKeyId` (what DescribeLogGroups then shows) and answers an empty
    200, or ResourceNotFoundException for a missing group (CloudWatch Logs API reference, AssociateKmsKey:
    https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_AssociateKmsKey.html);
    this hook does the same on moto's own record of the group, so DescribeLogGroups agrees.
    """
    keys: dict[str, Callable[[dict[str, Any]], str | None]] = {
        "AssociateKmsKey": lambda params: params.get("kmsKeyId"),
        "DisassociateKmsKey": lambda _params: None,
    }

    def handle(model: Any, context: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        if model.name not in keys:
            return None
        params = context.get("api_params", {})
        group = logs_backends[account][client.meta.region_name].groups.get(params.get("logGroupName", ""))
        if group is None:
            return error_answer("ResourceNotFoundException", "The specified log group does not exist.")
        group.kms_key_id = keys[model.name](params)
        return ok_answer({})

    def keep(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["api_params"] = dict(params)

    for operation in keys:
        client.meta.events.register(f"before-parameter-build.cloudwatch-logs.{operation}", keep)
    # On the generic event, after the call recorders registered before it (the first answer ends the event).
    client.meta.events.register("before-call", handle)
