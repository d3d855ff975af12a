"""Hook the contract into botocore clients: one handler, installed on every client a process creates.

`install(client)` registers `before-parameter-build` (last, so botocore's own handlers,
such as the idempotency-token filler, have run): its `params` are the caller's keyword
arguments, before serialization, and it runs before botocore's own ParamValidation.
`patch_botocore()` wraps `botocore.session.Session.create_client` so that every client
made afterwards in this process - boto3's, the CLI's, a test's - gets it.

A violation raises `ContractViolation` (an AssertionError) from the API call and is also
kept in `CAUGHT`, so code that swallows exceptions cannot hide it: the pytest plugin
fails the test with it, the subprocess `sitecustomize` exits non-zero with it.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import botocore.session

from tests.contract.model import Violation, check_params
from tests.contract.rules import Request, rules_for

HANDLER_ID = "aws-contract"
EXEMPT_VARIABLE = "CONTRACT_EXEMPT"  # set (to the reason) while a contract_exempt test runs
OFF_VARIABLE = "CONTRACT_OFF"  # CONTRACT_OFF=1: no layer at all (to time the suite without it)
SITE_DIR = Path(__file__).resolve().parent.parent / "contract_site"
PROJECT_DIR = SITE_DIR.parent.parent


def enabled() -> bool:
    return os.environ.get(OFF_VARIABLE) != "1"


def subprocess_pythonpath(existing: str | None) -> str:
    """PYTHONPATH for a script the tests run: the contract's sitecustomize, then the project."""
    parts = [str(SITE_DIR), str(PROJECT_DIR)] if enabled() else []
    return os.pathsep.join([*parts, *([existing] if existing else [])])


class ContractViolation(AssertionError):  # noqa: N818 - the name the issue asks for
    """A request AWS would refuse: service, operation, and each broken rule with member path and value."""

    def __init__(self, service: str, operation: str, violations: list[Violation]) -> None:
        self.service = service
        self.operation = operation
        self.violations = violations
        lines = "\n".join(f"  - {v.describe()}  [source: {v.source}]" for v in violations)
        super().__init__(f"AWS contract: {service} {operation} would be refused by AWS:\n{lines}")


CAUGHT: list[ContractViolation] = []
_lock = threading.Lock()


def drain() -> list[ContractViolation]:
    with _lock:
        caught = list(CAUGHT)
        CAUGHT.clear()
    return caught


def exempt() -> str | None:
    return os.environ.get(EXEMPT_VARIABLE) or None


def check_request(
    service: str, operation_model: Any, params: Mapping[str, Any], reader: Callable[[str], Any] | None = None
) -> list[Violation]:
    """Everything wrong with one request: the model's constraints, then the AWS rules table."""
    found = check_params(operation_model, params)
    request = Request(service, operation_model.name, params, reader)
    for rule in rules_for(service, operation_model.name):
        problem = rule.check(request)
        if problem is not None:
            path = f"{operation_model.name}.{rule.member}" if rule.member else operation_model.name
            value = params.get(rule.member) if rule.member else None
            found.append(Violation(path, f"{rule.name}: {problem}", value, rule.source))
    return found


# Clients for the rules' reads: same endpoint, region and keys, made without the hook.
_readers: dict[tuple[str, str | None, str | None, str | None], Any] = {}
_reader_session: list[botocore.session.Session] = []


def reader_for(client: Any) -> Callable[[str], Any]:
    def reader(service: str) -> Any:
        credentials = client._request_signer._credentials
        frozen = credentials.get_frozen_credentials() if credentials is not None else None
        key = (service, client.meta.region_name, client.meta.endpoint_url, frozen.access_key if frozen else None)
        with _lock:
            if key not in _readers:
                if not _reader_session:
                    _reader_session.append(botocore.session.get_session())
                endpoint = client.meta.endpoint_url
                _readers[key] = _ORIGINAL_CREATE_CLIENT(
                    _reader_session[0],
                    service,
                    region_name=client.meta.region_name,
                    # The endpoint of another service on AWS differs; on an emulator it is the same URL.
                    endpoint_url=endpoint if "amazonaws.com" not in endpoint else None,
                    aws_access_key_id=frozen.access_key if frozen else None,
                    aws_secret_access_key=frozen.secret_key if frozen else None,
                    aws_session_token=frozen.token if frozen else None,
                )
            return _readers[key]

    return reader


def install(client: Any) -> Any:
    """Register the contract check on `client` (idempotent); returns the client."""
    owner = weakref.ref(client)

    def check(params: Mapping[str, Any], model: Any, **_: Any) -> None:
        if exempt():
            return
        service = model.service_model.service_name
        live = owner()
        found = check_request(service, model, params, reader_for(live) if live is not None else None)
        if found:
            violation = ContractViolation(service, model.name, found)
            with _lock:
                CAUGHT.append(violation)
            raise violation

    client.meta.events.register_last("before-parameter-build", check, unique_id=HANDLER_ID)
    return client


_ORIGINAL_CREATE_CLIENT = botocore.session.Session.create_client


def patch_botocore() -> None:
    """Every client any botocore session creates from now on, in this process, gets the hook."""
    if getattr(botocore.session.Session.create_client, "contract_hooked", False):
        return

    def create_client(self: botocore.session.Session, *args: Any, **kwargs: Any) -> Any:
        return install(_ORIGINAL_CREATE_CLIENT(self, *args, **kwargs))

    create_client.contract_hooked = True  # type: ignore[attr-defined]
    botocore.session.Session.create_client = create_client  # type: ignore[method-assign]


def unpatch_botocore() -> None:
    botocore.session.Session.create_client = _ORIGINAL_CREATE_CLIENT  # type: ignore[method-assign]
