"""The ACM certificate of the site's domain, and what the other HTTPS steps ask about a certificate.

With `domain` set and no `certificate_arn`, the stack requests a public certificate validated by DNS
(RequestCertificate, ValidationMethod DNS: https://docs.aws.amazon.com/acm/latest/userguide/dns-validation.html);
the `validation-record` step writes the CNAME that ACM names here, ACM then issues the certificate, and
the TLS listener uses it. With `certificate_arn` the certificate is the user's: it is only checked
(`check_external`), never tagged, changed or deleted.

The module functions are what the other steps share: the ARN in use (`certificate_arn`), the validation
CNAME records (`validation_records`), the wait until ISSUED with its explanations (`wait_issued`), the
check of a user's certificate (`check_external`) and what status.py shows (`certificate_status`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from botocore.exceptions import ClientError

from deployer.clients import AwsClients
from deployer.errors import DeployerError, WaitTimeoutError
from deployer.retry import CERTIFICATE_IN_USE, NEW_CERTIFICATE_NOT_VISIBLE
from deployer.settings import Settings
from deployer.state import Ids
from deployer.steps import tags
from deployer.steps.aws import absent_if
from deployer.steps.base import (
    STACK_TAG,
    STEP_TAG,
    SUPERSEDED,
    Converged,
    Existing,
    Step,
    StepContext,
    is_code,
    single,
    without_superseded,
)

if TYPE_CHECKING:
    from mypy_boto3_acm.literals import CertificateStatusType
    from mypy_boto3_acm.type_defs import CertificateDetailTypeDef, TagTypeDef

CERTIFICATE_STEP = "certificate"
NOT_FOUND = "ResourceNotFoundException"
IN_USE = "ResourceInUseException"
ISSUED: Final = "ISSUED"
PENDING: Final = "PENDING_VALIDATION"
# The statuses of a certificate that can still serve the domain: adopted and kept; any other is replaced.
USABLE: tuple[CertificateStatusType, ...] = (PENDING, ISSUED)
# How long ACM may take to name the validation records of a new certificate: Terraform's
# certificateDNSValidationAssignmentTimeout, 5 minutes
# (https://github.com/hashicorp/terraform-provider-aws/blob/main/internal/service/acm/certificate.go).
RECORDS_TIMEOUT = 300.0
# ACM validates in tens of seconds to minutes; its own waiter (botocore's acm waiters-2.json,
# certificate_validated) asks every 60 s. Every 15 s keeps the TLS listener close behind the issue while
# making a third of the calls a 5 s poll would (they run beside the other steps' calls).
ISSUE_POLL_SECONDS = 15.0
CAA_GUIDE = "https://docs.aws.amazon.com/acm/latest/userguide/setup-caa.html"
# The certificate authorities' domains a CAA record must allow for ACM to issue (same page).
CAA_DOMAINS = ("amazon.com", "amazontrust.com", "awstrust.com", "amazonaws.com")
TROUBLESHOOTING = "https://docs.aws.amazon.com/acm/latest/userguide/troubleshooting-DNS-validation.html"

# What a status other than PENDING_VALIDATION and ISSUED means (ACM API reference, CertificateDetail.Status:
# "ACM makes repeated attempts to validate a certificate for 72 hours and then times out. If a certificate
# shows status FAILED or VALIDATION_TIMED_OUT, delete the request, correct the issue ... and try again";
# https://docs.aws.amazon.com/acm/latest/APIReference/API_CertificateDetail.html).
UNUSABLE = {
    "FAILED": "ACM could not issue it",
    "VALIDATION_TIMED_OUT": "ACM looked for the validation record for 72 hours without finding it and gave up",
    "EXPIRED": "it has expired",
    "REVOKED": "it was revoked",
    "INACTIVE": "it is inactive",
}
# FailureReason values the user can act on (same page, FailureReason), beyond CAA_ERROR.
FAILURE_REASONS = {
    "DOMAIN_NOT_ALLOWED": "ACM does not issue certificates for this domain (e.g. a name on Amazon's block list "
    "or of a top-level domain ACM does not support)",
    "INVALID_PUBLIC_DOMAIN": "the domain is not a valid public domain (its top-level domain is not a public one)",
    "ADDITIONAL_VERIFICATION_REQUIRED": "ACM needs more information about this domain: only AWS Support can "
    "unblock it (open a case)",
    "DOMAIN_VALIDATION_DENIED": "the validation of the domain was denied",
    "NO_AVAILABLE_CONTACTS": "ACM found no contact for the domain",
}


def certificate_arn(ctx: StepContext) -> str:
    """The certificate the TLS listener uses: the user's (`certificate_arn`), else the stack's own."""
    if ctx.settings.certificate_arn is not None:
        return ctx.settings.certificate_arn
    return ctx.ids(CERTIFICATE_STEP)["arn"]


def describe(ctx: StepContext, arn: str) -> CertificateDetailTypeDef:
    """DescribeCertificate; right after this run requested the certificate, "not found" means "not yet"."""
    rules = (
        (NEW_CERTIFICATE_NOT_VISIBLE,)
        if ctx.fresh(NEW_CERTIFICATE_NOT_VISIBLE.budget_seconds, CERTIFICATE_STEP)
        else ()
    )
    return ctx.retry(lambda: ctx.clients.acm.describe_certificate(CertificateArn=arn)["Certificate"], *rules)


def records_of(detail: CertificateDetailTypeDef) -> list[tuple[str, str]] | None:
    """The distinct (name, value) validation CNAMEs, or None while an option has none yet.

    ACM gives a wildcard's option the record of the name without `*.`, and equal names the same record,
    so several options can share one record (https://docs.aws.amazon.com/acm/latest/userguide/dns-validation.html).
    """
    options = detail.get("DomainValidationOptions", [])
    records: list[tuple[str, str]] = []
    for option in options:
        record = option.get("ResourceRecord")
        if record is None:
            return None
        pair = (record["Name"], record["Value"])
        if pair not in records:
            records.append(pair)
    return records if options else None


def validation_records(ctx: StepContext, arn: str) -> list[tuple[str, str]]:
    """The certificate's validation CNAME records (name, value), once ACM has named every one of them.

    ResourceRecord is absent for a few seconds after the request (botocore's acm model marks it optional;
    Terraform polls for it, `waitCertificateDomainValidationsAvailable` in its certificate.go). A certificate
    that failed before naming them is explained at once instead of waited for.
    """
    found: list[list[tuple[str, str]]] = []

    def check() -> str | None:
        detail = describe(ctx, arn)
        records = records_of(detail)
        if records is not None:
            found.append(records)
            return None
        if detail.get("Status") in UNUSABLE:
            raise unusable(detail, ctx.settings.domain or detail.get("DomainName", ""))
        return "ACM has not named the DNS validation record yet"

    ctx.poll(f"the validation record of the ACM certificate {arn}", RECORDS_TIMEOUT, check)
    return found[-1]


def wait_issued(ctx: StepContext, arn: str) -> None:
    """Wait until ACM has issued the certificate (the first look is immediate).

    A failed, timed-out, revoked, expired or inactive certificate is explained (exit 2); after
    `service_wait_timeout` the timeout names the validation record(s) ACM is looking for and keeps
    everything created (exit 1).
    """
    last: list[CertificateDetailTypeDef] = []

    def check() -> str | None:
        detail = describe(ctx, arn)
        last.append(detail)
        status = detail.get("Status", "")
        if status == ISSUED:
            return None
        if status in UNUSABLE:
            raise unusable(detail, ctx.settings.domain or detail.get("DomainName", ""))
        return f"{status} (ACM looks for {_records_text(records_of(detail))})"

    timeout = ctx.settings.service_wait_timeout
    try:
        ctx.poll(f"ACM to issue the certificate {arn}", timeout, check, every=ISSUE_POLL_SECONDS)
    except WaitTimeoutError as exc:
        status = last[-1].get("Status", "unknown") if last else "unknown"
        records = records_of(last[-1]) if last else None
        raise WaitTimeoutError(
            f"ACM has not issued the certificate {arn} after {timeout} s (status {status}): it is waiting to "
            f"find {_records_text(records)} in the domain's public DNS",
            where="the wait for the ACM certificate; everything created (certificate, validation record) is kept "
            "and recorded in the state file",
            todo="Check that the record resolves (dig CNAME <name>) from the zone the domain's registrar delegates "
            f"to, then run the same command again (or raise service_wait_timeout); see {TROUBLESHOOTING}",
        ) from exc


def _records_text(records: list[tuple[str, str]] | None) -> str:
    if not records:
        return "its DNS validation record (not named yet)"
    return " and ".join(f"the record {name} CNAME {value}" for name, value in records)


def unusable(detail: CertificateDetailTypeDef, domain: str) -> DeployerError:
    """Why a certificate in a status other than PENDING_VALIDATION or ISSUED cannot be used, and what to do."""
    arn = detail.get("CertificateArn", "")
    status = detail.get("Status", "")
    reason = detail.get("FailureReason", "")
    what = f"The ACM certificate {arn} for {detail.get('DomainName', domain)} is {status}: {UNUSABLE.get(status, '')}"
    if reason == "CAA_ERROR":
        allowed = ", ".join(CAA_DOMAINS)
        return DeployerError(
            f"{what} (CAA_ERROR): a CAA record at {domain} or one of its parent domains (or at the target of a "
            f"CNAME there) does not allow Amazon to issue certificates",
            where=f"the DNS of {domain}: CAA records (dig CAA {domain}, then each parent)",
            todo=f"Add a CAA record allowing one of {allowed} (e.g. '0 issue \"amazon.com\"'; 'issuewild' for a "
            f"wildcard) beside the existing ones, or remove the CAA records, then run again: a new certificate is "
            f"requested (see {CAA_GUIDE})",
        )
    if reason:
        explained = FAILURE_REASONS.get(reason, "see the ACM console for details")
        what = f"{what} ({reason}: {explained})"
    return DeployerError(
        what,
        where=f"ACM certificate {arn}",
        todo="Fix the cause, then run the same command again: the stack requests a new certificate for the "
        f"domain and deletes this one once nothing uses it (see {TROUBLESHOOTING})",
    )


def covers(name: str, domain: str) -> bool:
    """Whether a certificate name covers the domain: equal, or `*.` standing for exactly one label."""
    name, domain = name.lower(), domain.lower()
    if name == domain:
        return True
    if not name.startswith("*."):
        return False
    label, _, rest = domain.partition(".")
    return bool(label) and rest == name[2:]


def check_external(ctx: StepContext) -> None:
    """The user's certificate (`certificate_arn`) must exist, be ISSUED and name the domain (exit 2 otherwise).

    Its region and account are checked from the ARN by the settings; this reads the certificate itself.
    """
    arn = ctx.settings.certificate_arn
    domain = ctx.settings.domain or ""
    if arn is None:
        return
    detail = absent_if(lambda: ctx.clients.acm.describe_certificate(CertificateArn=arn)["Certificate"], NOT_FOUND)
    if detail is None:
        raise DeployerError(
            f"The ACM certificate {arn} does not exist",
            where=f"certificate_arn, in region {ctx.clients.region}",
            todo="Check the ARN (aws acm list-certificates --region "
            f"{ctx.clients.region}), or leave out certificate_arn to let the stack request one",
        )
    status = detail.get("Status", "")
    if status != ISSUED:
        if status in UNUSABLE:
            raise unusable(detail, domain)
        raise DeployerError(
            f"The ACM certificate {arn} is {status}, not ISSUED: a load balancer cannot use it yet",
            where="certificate_arn",
            todo="Finish its validation (its DNS record must resolve) and run again once ACM shows it ISSUED",
        )
    names = [detail.get("DomainName", ""), *detail.get("SubjectAlternativeNames", [])]
    names = list(dict.fromkeys(name for name in names if name))
    if not any(covers(name, domain) for name in names):
        raise DeployerError(
            f"The ACM certificate {arn} is for {', '.join(names)}, which does not include {domain}",
            where="certificate_arn and domain",
            todo="Give a certificate that names the domain (a wildcard *.example.com covers www.example.com, not "
            "example.com or a.b.example.com), or set domain to one of its names",
        )


@dataclass(frozen=True)
class CertificateStatus:
    """What status.py shows of a certificate."""

    status: str
    domain: str
    not_after: str  # ISO date; empty until issued
    in_use_by: int  # how many AWS resources (listeners) use it
    failure_reason: str = ""


def certificate_status(clients: AwsClients, arn: str) -> CertificateStatus:
    """One DescribeCertificate: status, domain, expiry date and how many resources use the certificate."""
    detail = clients.acm.describe_certificate(CertificateArn=arn)["Certificate"]
    not_after = detail.get("NotAfter")
    return CertificateStatus(
        status=detail.get("Status", ""),
        domain=detail.get("DomainName", ""),
        not_after=not_after.date().isoformat() if not_after is not None else "",
        in_use_by=len(detail.get("InUseBy", [])),
        failure_reason=detail.get("FailureReason", ""),
    )


class CertificateStep(Step["CertificateDetailTypeDef"]):
    """The stack's own certificate for `domain`: requested, found again by its tags, replaced when unusable.

    A certificate has no name, and any number of an account's certificates may name the same domain.
    So one for the domain without our tags (the user's, for their old server or CloudFront) is neither
    adopted nor a collision: it is left alone and a certificate of our own is requested. Adopting it would
    delete the user's certificate at teardown; refusing would block a user whose domain already has one,
    for no reason. Only the ListCertificates statuses that can still serve (PENDING_VALIDATION, ISSUED)
    are looked at: a failed certificate is never adopted (a run after a lost state file leaves it behind;
    ACM charges nothing for public certificates, https://aws.amazon.com/certificate-manager/pricing/).

    A domain change cannot be made in place (a certificate's names are fixed), and neither can a failed
    validation: converge finds or requests a certificate for the domain and records the old one under
    SUPERSEDED; `retire` deletes it once the TLS listener has moved to the new one.
    """

    name = CERTIFICATE_STEP
    resource = "ACM certificate"

    def wanted(self, settings: Settings) -> bool:
        return settings.managed_dns

    def find(self, ctx: StepContext, recorded: Ids | None) -> Existing[CertificateDetailTypeDef] | None:
        """As every step finds; a certificate found by its tags instead of the recorded one (deleted by hand)
        keeps the record of those it superseded, so they are still retired."""
        found = super().find(ctx, recorded)
        if found is None or recorded is None or found.ids["arn"] == recorded["arn"]:
            return found
        kept = [arn for arn in _superseded(recorded) if arn != found.ids["arn"]]
        return Existing({**found.ids, SUPERSEDED: ",".join(kept)}, found.live) if kept else found

    def find_recorded(self, ctx: StepContext, ids: Ids) -> Existing[CertificateDetailTypeDef] | None:
        detail = absent_if(lambda: describe(ctx, ids["arn"]), NOT_FOUND)
        return Existing(dict(ids), detail) if detail is not None else None

    def find_unrecorded(self, ctx: StepContext) -> Existing[CertificateDetailTypeDef] | None:
        """The stack's certificate for the domain; without a domain in the settings (teardown --sweep, a lost
        state), the stack's certificate for any domain, so that it is deleted too."""
        found = single(self._ours_for(ctx, ctx.settings.domain), self.resource, lambda arn: arn)
        if found is None:
            return None
        detail = absent_if(lambda: describe(ctx, found), NOT_FOUND)
        if detail is None:
            return None
        return Existing({"arn": found, "domain": ctx.settings.domain or detail.get("DomainName", "")}, detail)

    def _ours_for(self, ctx: StepContext, domain: str | None) -> list[str]:
        """The ARNs of this stack's usable certificates for the domain (any domain when None).

        ListCertificates cannot filter by tag or name (ACM API reference, ListCertificates): each summary
        for the domain is checked with ListTagsForCertificate. Without `Includes`, ACM lists RSA_1024 and RSA_2048
        certificates only (botocore's acm model, Filters.keyTypes); RequestCertificate makes RSA_2048.
        """
        acm = ctx.clients.acm
        candidates = [
            summary["CertificateArn"]
            for page in acm.get_paginator("list_certificates").paginate(CertificateStatuses=list(USABLE))
            for summary in page["CertificateSummaryList"]
            if domain in (None, summary.get("DomainName")) and summary.get("Type") == "AMAZON_ISSUED"
        ]
        return [arn for arn in candidates if self._tagged_ours(ctx, arn)]

    def _tagged_ours(self, ctx: StepContext, arn: str) -> bool:
        answer = absent_if(lambda: ctx.clients.acm.list_tags_for_certificate(CertificateArn=arn), NOT_FOUND)
        found = tags.tag_map(answer.get("Tags") if answer else None)
        return found.get(STACK_TAG) == ctx.settings.stack and found.get(STEP_TAG) == self.name

    def create(self, ctx: StepContext) -> Ids:
        """A new certificate. One recorded but deleted by hand passes on those it superseded, and its ARN
        goes into the token: within the hour the old token would name the deleted certificate."""
        recorded = ctx.recorded(self.name)
        if recorded is None:
            return self._request(ctx, _domain(ctx), replacing=())
        return self._request(ctx, _domain(ctx), tuple(_superseded(recorded)), gone=recorded["arn"])

    def _request(self, ctx: StepContext, domain: str, replacing: tuple[str, ...], gone: str = "") -> Ids:
        """RequestCertificate, recorded at once; on a re-run within the hour, the same token returns the
        same certificate ("Idempotency tokens time out after one hour", ACM API reference,
        RequestCertificate). The token changes with the domain and with the certificates it replaces,
        so a failed certificate is not handed back for its own replacement."""
        arn = ctx.clients.acm.request_certificate(
            DomainName=domain,
            # Always sent: without it ACM validates by email (the IAM key acm:ValidationMethod, "Default
            # 'EMAIL' if no key is present": https://docs.aws.amazon.com/service-authorization/latest/reference/list_awscertificatemanager.html).
            ValidationMethod="DNS",
            IdempotencyToken=request_token(ctx, domain, *replacing, *([gone] if gone else [])),
            Tags=acm_tags(ctx.settings, self.name),
        )["CertificateArn"]
        ids = {"arn": arn, "domain": domain}
        if replacing:
            ids[SUPERSEDED] = ",".join(replacing)
        ctx.remember(self.name, ids)
        ctx.mark_created(self.name)  # its describe may answer "not found" for a few seconds (describe)
        return ids

    def converge(self, ctx: StepContext, existing: Existing[CertificateDetailTypeDef]) -> Converged:
        live = existing.live
        domain = _domain(ctx)
        status = live.get("Status", "")
        if live.get("DomainName") == domain and status in USABLE:
            return Converged(existing.ids)
        old = existing.ids["arn"]
        why = (
            f"its status is {status}" + (f" ({live['FailureReason']})" if "FailureReason" in live else "")
            if live.get("DomainName") == domain
            else f"it is for {live.get('DomainName', '')}"
        )
        superseded = tuple(dict.fromkeys([*_superseded(existing.ids), old]))
        changes: list[str] = []
        replaced: dict[str, Ids] = {}

        def replace() -> None:
            replaced["ids"] = self._replacement(ctx, domain, superseded)

        ctx.change(changes, f"certificate {old} replaced ({why}); the old one is deleted once unused", replace)
        return Converged(replaced.get("ids", existing.ids), changes)

    def _replacement(self, ctx: StepContext, domain: str, superseded: tuple[str, ...]) -> Ids:
        """A usable certificate of ours for the domain (e.g. from an earlier switch back), else a new one.

        The one being replaced (last of `superseded`) is never the answer: ListCertificates is eventually
        consistent and may still list a certificate that just failed as PENDING_VALIDATION.
        """
        current = superseded[-1]
        found = single([arn for arn in self._ours_for(ctx, domain) if arn != current], self.resource, lambda arn: arn)
        if found is None:
            return self._request(ctx, domain, superseded)
        ids = {"arn": found, "domain": domain, SUPERSEDED: ",".join(arn for arn in superseded if arn != found)}
        if not ids[SUPERSEDED]:
            del ids[SUPERSEDED]
        ctx.remember(self.name, ids)
        return ids

    def retire(self, ctx: StepContext, ids: Ids) -> Ids:
        for arn in _superseded(ids):
            delete_certificate(ctx, arn)
        return without_superseded(ids)

    def delete(self, ctx: StepContext, ids: Ids) -> None:
        for arn in (*_superseded(ids), ids["arn"]):
            delete_certificate(ctx, arn)


def _domain(ctx: StepContext) -> str:
    domain = ctx.settings.domain
    if domain is None:
        raise RuntimeError("the certificate step runs only with a domain (CertificateStep.wanted)")
    return domain


def _superseded(ids: Ids) -> list[str]:
    return [arn for arn in ids.get(SUPERSEDED, "").split(",") if arn]


def request_token(ctx: StepContext, domain: str, *replacing: str) -> str:
    """RequestCertificate's IdempotencyToken: 32 hex characters, as ACM allows at most 32 of `\\w`
    (botocore's acm model, IdempotencyToken), which `StepContext.client_token` (with dashes) is not."""
    return uuid.UUID(ctx.client_token(CERTIFICATE_STEP, domain, *replacing)).hex


def acm_tags(settings: Settings, step: str) -> list[TagTypeDef]:
    """ACM spells tags Key/Value (ACM API reference, Tag: https://docs.aws.amazon.com/acm/latest/APIReference/API_Tag.html)."""
    return [{"Key": key, "Value": value} for key, value in tags.stack_tags(settings, step).items()]


def delete_certificate(ctx: StepContext, arn: str) -> None:
    """DeleteCertificate, waiting while a load balancer still holds it (CERTIFICATE_IN_USE); gone = deleted.

    Still in use after the wait: something else uses it (InUseBy names it), which is refused with exit 2.
    """
    acm = ctx.clients.acm
    try:
        absent_if(lambda: ctx.retry(lambda: acm.delete_certificate(CertificateArn=arn), CERTIFICATE_IN_USE), NOT_FOUND)
    except ClientError as exc:
        if not is_code(exc, IN_USE):
            raise
        users = absent_if(
            lambda: acm.describe_certificate(CertificateArn=arn)["Certificate"].get("InUseBy", []), NOT_FOUND
        )
        raise DeployerError(
            f"The ACM certificate {arn} is still in use by {', '.join(users or ['another AWS resource'])} after "
            f"{CERTIFICATE_IN_USE.budget_seconds:.0f} s, so it cannot be deleted",
            where=f"DeleteCertificate, ACM certificate {arn}",
            todo="Remove the certificate from what uses it (a listener not made by this stack?), then run again",
        ) from exc
