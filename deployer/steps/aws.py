"""Answers that mean "not there", which every step must tolerate.

A step looks a resource up by identifiers that may be stale (deleted by hand, or
by an earlier teardown that crashed), and deletes resources that may already be
gone. AWS answers both with an error whose code names the missing resource; to
the step, that answer is simply "absent". Errors are told apart by their code
only (never their message, which AWS rewords), and any other error propagates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from botocore.exceptions import ClientError

from deployer.clients import error_code

T = TypeVar("T")


def absent_if(call: Callable[[], T], *codes: str) -> T | None:
    """What `call` returns, or None when AWS answers with one of `codes`.

    A lookup returns None for "not found", which is what `find` returns; a delete
    treats the same None as "already gone", which counts as deleted. Callers that
    must know whether the call went through rely on it returning something.
    """
    try:
        return call()
    except ClientError as exc:
        if error_code(exc) in codes:
            return None
        raise
