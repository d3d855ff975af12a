"""moto 5.2.1's S3, made to answer like AWS where the state in S3 (deployer/s3state.py) depends on it.

Installed in the pytest process, so it covers the in-process mock and the moto server the script tests run
(the server answers from this process's moto):

* A bucket policy's conditional Deny: moto's policy evaluation treats every condition as met, so the state
  bucket's "Deny s3:* when aws:SecureTransport is false" refuses every request. AWS refuses only requests
  made without TLS; the tool always reaches AWS over HTTPS, and only the tests' loopback endpoint is plain
  HTTP. The emulation leaves out exactly that statement (Deny, one `Bool aws:SecureTransport "false"`
  condition) when moto evaluates a bucket's policy; any other statement is evaluated as moto does.
* CreateBucketConfiguration's Tags: moto ignores them; AWS tags the new bucket with them (CreateBucket,
  https://docs.aws.amazon.com/AmazonS3/latest/API/API_CreateBucket.html). The emulation applies them once
  moto has created the bucket.
"""

from __future__ import annotations

import json
from typing import Any

import xmltodict  # type: ignore[import-untyped]
from moto.s3.models import FakeBucket
from moto.s3.responses import S3Response

_INSTALLED: list[bool] = []


def _is_tls_only(statement: Any) -> bool:
    condition = statement.get("Condition") if isinstance(statement, dict) else None
    return (
        isinstance(statement, dict)
        and statement.get("Effect") == "Deny"
        and condition == {"Bool": {"aws:SecureTransport": "false"}}
    )


def _without_tls_deny(policy: bytes) -> bytes | None:
    document = json.loads(policy)
    statements = document.get("Statement", [])
    statements = statements if isinstance(statements, list) else [statements]
    kept = [statement for statement in statements if not _is_tls_only(statement)]
    if not kept:
        return None
    return json.dumps({**document, "Statement": kept}).encode()


def _tags_of_create(body: bytes | str | None) -> dict[str, str]:
    if not body:
        return {}
    configuration = xmltodict.parse(body, force_list={"Tag": True}).get("CreateBucketConfiguration") or {}
    tags = (configuration.get("Tags") or {}).get("Tag") or []
    return {tag["Key"]: tag.get("Value") or "" for tag in tags}


def install() -> None:
    """Patch moto's bucket policy evaluation and bucket creation (once per process)."""
    if _INSTALLED:
        return
    _INSTALLED.append(True)
    original_permission = FakeBucket.get_permission
    original_put = S3Response._bucket_response_put

    def get_permission(self: FakeBucket, action: str, resource: str) -> Any:
        saved = self.policy
        if saved is not None:
            self.policy = _without_tls_deny(saved)
        try:
            return original_permission(self, action, resource)
        finally:
            self.policy = saved

    def bucket_response_put(self: S3Response, request: Any, bucket_name: str, querystring: dict[str, Any]) -> Any:
        answer = original_put(self, request, bucket_name, querystring)
        if not querystring:
            tags = _tags_of_create(self.body)
            if tags:
                self.backend.put_bucket_tagging(bucket_name, tags)
        return answer

    FakeBucket.get_permission = get_permission  # type: ignore[method-assign]
    S3Response._bucket_response_put = bucket_response_put  # type: ignore[method-assign]
