"""Make moto's ACM answer as AWS does where it does not: botocore event hooks on the test's ACM client.

moto (5.2) names a certificate's validation record from the first describe, issues it once
`ACM_VALIDATION_WAIT` has passed (never fails it), lets DeleteCertificate through whatever uses the
certificate, shows a new certificate at once and checks no IdempotencyToken. Each hook below gives
one of AWS's answers, with its source. An error from a `before-call` handler reaches the caller as
an ordinary ClientError without reaching moto (tests/faults.py); an `after-call` handler edits the
parsed answer in place (as tests/rollouts.py does).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.faults import Injection, inject_errors

# botocore's acm model, IdempotencyToken: min 1, max 32, pattern \w+ (botocore checks only `min`).
TOKEN = re.compile(r"\w{1,32}")


@dataclass
class Countdown:
    """An edit applied to the next `remaining` matching answers."""

    remaining: int
    applied: int = 0

    def take(self) -> bool:
        if self.remaining <= 0:
            return False
        self.remaining -= 1
        self.applied += 1
        return True


def check_tokens(acm: Any) -> list[str]:
    """Every RequestCertificate's IdempotencyToken must be what ACM accepts; returns those sent.

    AWS refuses a token longer than 32 characters or with a `-` (ValidationException; model above),
    botocore sends it and moto ignores it (moto/acm/models.py request_certificate), so the tests
    would pass with a token AWS refuses.
    """
    sent: list[str] = []

    def check(params: dict[str, Any], **_: Any) -> None:
        token = params.get("IdempotencyToken")
        if token is not None:
            assert TOKEN.fullmatch(token), f"ACM refuses the IdempotencyToken {token!r}: at most 32 of \\w"
            sent.append(token)

    acm.meta.events.register("before-parameter-build.acm.RequestCertificate", check)
    return sent


def withhold_records(acm: Any, describes: int) -> Countdown:
    """The first `describes` DescribeCertificate answers have no ResourceRecord in their validation options.

    AWS names the record a few seconds after the request ("there is a delay of several seconds before you
    can retrieve information about the new certificate", ACM API reference, RequestCertificate:
    https://docs.aws.amazon.com/acm/latest/APIReference/API_RequestCertificate.html; Terraform polls for it,
    waitCertificateDomainValidationsAvailable); moto names it in the first answer.
    """
    countdown = Countdown(describes)

    def edit(parsed: dict[str, Any], **_: Any) -> None:
        options = parsed.get("Certificate", {}).get("DomainValidationOptions", [])
        if options and countdown.take():
            for option in options:
                option.pop("ResourceRecord", None)
                option["ValidationStatus"] = "PENDING_VALIDATION"
            parsed["Certificate"]["Status"] = "PENDING_VALIDATION"

    acm.meta.events.register("after-call.acm.DescribeCertificate", edit)
    return countdown


def fail_validation(acm: Any, reason: str = "CAA_ERROR", arn: Callable[[str], bool] = lambda _arn: True) -> None:
    """DescribeCertificate shows the certificate (those `arn` selects) FAILED with `reason`.

    AWS fails a certificate whose domain's CAA records do not allow Amazon (FailureReason CAA_ERROR:
    https://docs.aws.amazon.com/acm/latest/userguide/setup-caa.html), among other reasons (botocore's acm
    model, FailureReason); moto never fails one (it only turns PENDING_VALIDATION into ISSUED).
    """

    def edit(parsed: dict[str, Any], **_: Any) -> None:
        certificate = parsed.get("Certificate", {})
        if not arn(certificate.get("CertificateArn", "")):
            return
        certificate.update(Status="FAILED", FailureReason=reason)
        for key in ("NotBefore", "NotAfter", "IssuedAt", "Serial"):
            certificate.pop(key, None)
        for option in certificate.get("DomainValidationOptions", []):
            option["ValidationStatus"] = "FAILED"

    def keep(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["api_params"] = dict(params)

    def listed(parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        """ListCertificates agrees: FAILED, and left out when the request filters on other statuses."""
        wanted = context.get("api_params", {}).get("CertificateStatuses")
        summaries = parsed.get("CertificateSummaryList", [])
        for summary in summaries:
            if arn(summary.get("CertificateArn", "")):
                summary["Status"] = "FAILED"
        parsed["CertificateSummaryList"] = [
            summary for summary in summaries if not wanted or summary.get("Status") in wanted
        ]

    acm.meta.events.register("after-call.acm.DescribeCertificate", edit)
    acm.meta.events.register("before-parameter-build.acm.ListCertificates", keep)
    acm.meta.events.register("after-call.acm.ListCertificates", listed)


def refuse_delete_in_use(acm: Any, times: int) -> Injection:
    """The next `times` DeleteCertificate calls answer ResourceInUseException.

    AWS refuses to delete a certificate a load balancer uses ("The certificate is in use by another Amazon
    Web Services service in the caller's account", ACM API reference, DeleteCertificate:
    https://docs.aws.amazon.com/acm/latest/APIReference/API_DeleteCertificate.html) and ELB releases it a
    while after the listener is gone (Terraform retries it for 20 minutes, resourceCertificateDelete in
    https://github.com/hashicorp/terraform-provider-aws/blob/main/internal/service/acm/certificate.go);
    moto deletes it whatever uses it.
    """
    return inject_errors(
        acm,
        "DeleteCertificate",
        "ResourceInUseException",
        "The certificate is in use by another Amazon Web Services service in the caller's account. "
        "Remove the association and try again.",
        times=times,
    )


def not_visible_yet(acm: Any, describes: int) -> Injection:
    """The next `describes` DescribeCertificate calls answer ResourceNotFoundException: a certificate
    requested a moment ago (the delay of several seconds of RequestCertificate, above); moto shows it at once."""
    return inject_errors(
        acm,
        "DescribeCertificate",
        "ResourceNotFoundException",
        "Could not find certificate",
        times=describes,
    )


def hide_from_list(acm: Any) -> None:
    """ListCertificates does not list any certificate yet: the same delay after RequestCertificate (above);
    moto lists a certificate in the same instant it is requested."""

    def edit(parsed: dict[str, Any], **_: Any) -> None:
        parsed["CertificateSummaryList"] = []

    acm.meta.events.register("after-call.acm.ListCertificates", edit)


class CrashError(Exception):
    """The process dies: raised where a run would stop (not a DeployerError, not a ClientError)."""


def crash_after_request(acm: Any) -> Countdown:
    """The next RequestCertificate goes through at AWS, then the run dies before it sees the answer."""
    countdown = Countdown(1)

    def die(**_: Any) -> None:
        if countdown.take():
            raise CrashError("killed right after RequestCertificate")

    acm.meta.events.register("after-call.acm.RequestCertificate", die)
    return countdown
