"""The `certificate` step and the certificate functions the HTTPS steps share (deployer/steps/certificates.py).

moto issues a requested certificate at once here (tests/conftest.py); what AWS does that moto does not
(validation records named late, failures, "in use" on delete, a new certificate not visible yet) comes
from the hooks of tests/acm_emulation.py.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import moto.settings
import pytest
from moto.acm.models import acm_backends

from deployer.errors import DeployerError, SettingsError, WaitTimeoutError
from deployer.runner import provision_step
from deployer.settings import Settings, validate
from deployer.steps import certificates
from deployer.steps.base import SUPERSEDED, StepContext
from deployer.steps.certificates import CertificateStep
from tests.acm_emulation import (
    CrashError,
    check_tokens,
    crash_after_request,
    fail_validation,
    hide_from_list,
    not_visible_yet,
    refuse_delete_in_use,
    withhold_records,
)
from tests.conftest import ACCOUNT, DOMAIN, IMAGE, REGION, CallLog, RecordingOutput, lost_state, planning

if TYPE_CHECKING:
    from mypy_boto3_acm.type_defs import TagTypeDef

OTHER_DOMAIN = "shop.example.com"
RECORD_NAME = f"_d930b28be6c5927595552b219965053e.{DOMAIN}."  # moto's constant record (moto/acm/models.py)
STEP = CertificateStep()


@pytest.fixture
def settings() -> Settings:
    return Settings(stack="test-site", region=REGION, image=IMAGE, domain=DOMAIN)


def with_settings(ctx: StepContext, **changes: Any) -> StepContext:
    return replace(ctx, settings=replace(ctx.settings, **changes))


def provision(ctx: StepContext) -> tuple[str, dict[str, str]]:
    """The step, then what the validation record step waits for first: ACM naming the record."""
    outcome, ids, _changes = provision_step(ctx, STEP)
    certificates.validation_records(ctx, ids["arn"])
    return outcome, ids


def certificate_arns(ctx: StepContext) -> list[str]:
    pages = ctx.clients.acm.get_paginator("list_certificates").paginate()
    return [summary["CertificateArn"] for page in pages for summary in page["CertificateSummaryList"]]


def user_certificate(ctx: StepContext, domain: str = DOMAIN, *names: str, stack: str | None = None) -> str:
    """A certificate the stack did not request (another stack's when `stack` is given)."""
    acm = ctx.clients.acm
    if stack is not None:
        tags: list[TagTypeDef] = [
            {"Key": "deployer:stack", "Value": stack},
            {"Key": "deployer:step", "Value": "certificate"},
        ]
        return acm.request_certificate(DomainName=domain, ValidationMethod="DNS", Tags=tags)["CertificateArn"]
    if names:
        alternatives = [domain, *names]
        return acm.request_certificate(DomainName=domain, ValidationMethod="DNS", SubjectAlternativeNames=alternatives)[
            "CertificateArn"
        ]
    return acm.request_certificate(DomainName=domain, ValidationMethod="DNS")["CertificateArn"]


# --- the step ---------------------------------------------------------------------------------------------


def test_a_dns_validated_certificate_is_requested_tagged_and_recorded_at_once(ctx: StepContext, calls: CallLog) -> None:
    tokens = check_tokens(ctx.clients.acm)
    outcome, ids = provision(ctx)
    assert outcome == "created"
    assert ids == {"arn": ids["arn"], "domain": DOMAIN}
    assert ctx.state.get("certificate") == ids
    detail = ctx.clients.acm.describe_certificate(CertificateArn=ids["arn"])["Certificate"]
    assert detail.get("DomainName") == DOMAIN and detail.get("Type") == "AMAZON_ISSUED"
    assert [option.get("ValidationMethod") for option in detail.get("DomainValidationOptions", [])] == ["DNS"]
    found = {
        tag["Key"]: tag.get("Value")
        for tag in ctx.clients.acm.list_tags_for_certificate(CertificateArn=ids["arn"])["Tags"]
    }
    assert found == {"deployer:stack": "test-site", "deployer:step": "certificate", "Name": "test-site-certificate"}
    assert tokens == [certificates.request_token(ctx, DOMAIN)]
    assert calls.changing() == [("acm", "RequestCertificate")]


def test_the_idempotency_token_is_what_acm_accepts_and_changes_with_the_domain(ctx: StepContext) -> None:
    """ACM: at most 32 of \\w (botocore's acm model); `client_token` has 36 characters with dashes."""
    token = certificates.request_token(ctx, DOMAIN)
    assert re.fullmatch(r"[0-9a-f]{32}", token)
    assert not re.fullmatch(r"\w{1,32}", ctx.client_token("certificate", DOMAIN))
    assert token == certificates.request_token(ctx, DOMAIN)
    assert token != certificates.request_token(ctx, OTHER_DOMAIN)
    assert token != certificates.request_token(ctx, DOMAIN, "arn:aws:acm:us-east-1:123456789012:certificate/old")
    assert token != certificates.request_token(with_settings(ctx, stack="other-site"), DOMAIN)


def test_a_second_run_finds_it_and_makes_no_changing_call(ctx: StepContext, calls: CallLog) -> None:
    _, ids = provision(ctx)
    calls.clear()
    outcome, again = provision(ctx)
    assert (outcome, again) == ("unchanged", ids)
    assert calls.changing() == []


def test_a_lost_state_adopts_the_stacks_certificate_by_its_tags(ctx: StepContext, calls: CallLog) -> None:
    _, ids = provision(ctx)
    lost = lost_state(ctx)
    calls.clear()
    outcome, again = provision(lost)
    assert (outcome, again) == ("unchanged", ids)
    assert calls.changing() == []


def test_a_certificate_for_the_domain_without_the_stacks_tags_is_left_alone_and_a_new_one_requested(
    ctx: StepContext,
) -> None:
    """Certificates have no name: the user's (or another stack's) for the same domain is no collision, and is
    never adopted (teardown would delete it). The stack requests its own."""
    theirs = user_certificate(ctx)
    other_stack = user_certificate(ctx, stack="other-site")
    assert STEP.find_unrecorded(ctx) is None
    outcome, ids = provision(ctx)
    assert outcome == "created" and ids["arn"] not in (theirs, other_stack)
    STEP.delete(ctx, ids)
    assert sorted(certificate_arns(ctx)) == sorted([theirs, other_stack])


def test_two_certificates_of_the_stack_for_the_domain_are_refused(ctx: StepContext) -> None:
    first = user_certificate(ctx, stack="test-site")
    second = user_certificate(ctx, stack="test-site")
    with pytest.raises(DeployerError, match="Found 2 ACM certificate") as refused:
        provision(ctx)
    assert first in refused.value.what and second in refused.value.what


def test_a_crash_right_after_the_request_gets_the_same_certificate_back_from_its_token(
    ctx: StepContext, calls: CallLog
) -> None:
    """Within the hour ACM answers the same token with the same certificate (ACM API reference,
    RequestCertificate); ListCertificates may not show it yet (hide_from_list), so only the token saves it."""
    crash_after_request(ctx.clients.acm)
    hide_from_list(ctx.clients.acm)
    with pytest.raises(CrashError):
        provision(ctx)
    assert ctx.state.get("certificate") is None
    (requested,) = moto_certificates()  # ListCertificates hides it (hide_from_list): ask moto itself
    outcome, ids = provision(ctx)
    assert (outcome, ids["arn"]) == ("created", requested)
    assert calls.changing() == [("acm", "RequestCertificate")] * 2
    assert len(moto_certificates()) == 1


def moto_certificates() -> list[str]:
    return list(acm_backends[ACCOUNT][REGION]._certificates)


def test_a_new_certificate_not_visible_yet_is_waited_for(ctx: StepContext) -> None:
    not_visible = not_visible_yet(ctx.clients.acm, describes=2)
    _, ids = provision(ctx)
    assert not_visible.served == 2
    assert certificates.validation_records(ctx, ids["arn"]) == [(RECORD_NAME, records_value(ctx, ids["arn"]))]


def records_value(ctx: StepContext, arn: str) -> str:
    detail = ctx.clients.acm.describe_certificate(CertificateArn=arn)["Certificate"]
    return detail["DomainValidationOptions"][0]["ResourceRecord"]["Value"]


def test_a_recorded_certificate_not_found_later_is_gone_not_waited_for(ctx: StepContext) -> None:
    _, ids = provision(ctx)
    later = replace(ctx, _created={})  # another run: the certificate is not fresh
    ctx.clients.acm.delete_certificate(CertificateArn=ids["arn"])
    assert STEP.find_recorded(later, ids) is None


def test_the_wait_lasts_until_acm_names_the_validation_record(ctx: StepContext, output: RecordingOutput) -> None:
    withheld = withhold_records(ctx.clients.acm, describes=3)
    _, ids = provision(ctx)
    assert withheld.applied == 3
    assert any("has not named the DNS validation record yet" in line for line in output.lines)
    assert certificates.validation_records(ctx, ids["arn"])[0][0] == RECORD_NAME


def test_a_validation_record_never_named_times_out(ctx: StepContext) -> None:
    withhold_records(ctx.clients.acm, describes=10**6)
    with pytest.raises(WaitTimeoutError, match="validation record"):
        provision(ctx)
    assert ctx.state.get("certificate") is not None


# --- domain change, failures, retire, delete ------------------------------------------------------------


def test_a_domain_change_requests_a_new_certificate_and_retire_deletes_the_old_one(
    ctx: StepContext, calls: CallLog
) -> None:
    _, old = provision(ctx)
    moved = with_settings(ctx, domain=OTHER_DOMAIN)
    calls.clear()
    outcome, ids, changes = provision_step(moved, STEP)
    assert outcome == "updated" and "it is for www.example.com" in changes[0]
    assert ids == {"arn": ids["arn"], "domain": OTHER_DOMAIN, SUPERSEDED: old["arn"]}
    assert moved.state.get("certificate") == ids
    assert calls.changing() == [("acm", "RequestCertificate")]
    assert sorted(certificate_arns(ctx)) == sorted([old["arn"], ids["arn"]])
    calls.clear()
    assert provision_step(moved, STEP)[:2] == ("unchanged", ids)  # until retired, it stays recorded
    assert calls.changing() == []
    retired = STEP.retire(moved, ids)
    assert retired == {"arn": ids["arn"], "domain": OTHER_DOMAIN}
    assert certificate_arns(ctx) == [ids["arn"]]


def test_a_domain_change_in_a_dry_run_only_describes_it(ctx: StepContext, calls: CallLog) -> None:
    _, old = provision(ctx)
    dry = planning(with_settings(ctx, domain=OTHER_DOMAIN))
    calls.clear()
    outcome, ids, changes = provision_step(dry, STEP)
    assert outcome == "updated" and ids == old and "replaced" in changes[0]
    assert calls.changing() == []


def test_switching_back_before_retire_reuses_the_stacks_certificate(ctx: StepContext, calls: CallLog) -> None:
    _, first = provision(ctx)
    moved = with_settings(ctx, domain=OTHER_DOMAIN)
    _, second, _ = provision_step(moved, STEP)
    calls.clear()
    outcome, back, _ = provision_step(ctx, STEP)
    assert outcome == "updated" and calls.changing() == []
    assert back == {"arn": first["arn"], "domain": DOMAIN, SUPERSEDED: second["arn"]}


def test_a_certificate_deleted_by_hand_is_requested_again_and_still_retires_what_it_superseded(
    ctx: StepContext,
) -> None:
    _, old = provision(ctx)
    moved = with_settings(ctx, domain=OTHER_DOMAIN)
    _, switched, _ = provision_step(moved, STEP)
    ctx.clients.acm.delete_certificate(CertificateArn=switched["arn"])
    outcome, ids, _ = provision_step(moved, STEP)
    assert outcome == "created" and ids[SUPERSEDED] == old["arn"] and ids["domain"] == OTHER_DOMAIN
    STEP.retire(moved, ids)
    assert certificate_arns(ctx) == [ids["arn"]]


def test_a_failed_certificate_is_replaced_by_a_new_request(ctx: StepContext) -> None:
    _, failed = provision(ctx)
    fail_validation(ctx.clients.acm, arn=lambda arn: arn == failed["arn"])
    outcome, ids, changes = provision_step(ctx, STEP)
    assert outcome == "updated" and "FAILED (CAA_ERROR)" in changes[0]
    assert ids["arn"] != failed["arn"] and ids[SUPERSEDED] == failed["arn"]
    STEP.delete(ctx, ids)
    assert certificate_arns(ctx) == []


def test_teardown_deletes_the_certificate_and_those_it_superseded(ctx: StepContext) -> None:
    provision(ctx)
    _, ids, _ = provision_step(with_settings(ctx, domain=OTHER_DOMAIN), STEP)
    STEP.delete(ctx, ids)
    assert certificate_arns(ctx) == []
    STEP.delete(ctx, ids)  # already gone: deleted


def test_a_certificate_still_in_use_is_deleted_once_the_load_balancer_lets_go(
    ctx: StepContext, output: RecordingOutput
) -> None:
    _, ids = provision(ctx)
    in_use = refuse_delete_in_use(ctx.clients.acm, times=3)
    STEP.delete(ctx, ids)
    assert in_use.served == 3 and certificate_arns(ctx) == []
    assert any("ResourceInUseException" in line for line in output.lines)


def test_a_certificate_in_use_for_ever_is_explained(ctx: StepContext) -> None:
    _, ids = provision(ctx)
    refuse_delete_in_use(ctx.clients.acm, times=10**6)
    with pytest.raises(DeployerError, match="still in use") as refused:
        STEP.delete(ctx, ids)
    assert refused.value.exit_code == 2 and ids["arn"] in refused.value.what
    assert ctx.clock.now() >= 1200 - 30  # the 20-minute budget was waited out


# --- wait_issued -------------------------------------------------------------------------------------------


def test_wait_issued_returns_at_the_first_look_when_issued(ctx: StepContext, calls: CallLog) -> None:
    _, ids = provision(ctx)
    calls.clear()
    certificates.wait_issued(ctx, ids["arn"])
    assert calls.calls == [("acm", "DescribeCertificate")]


def test_a_certificate_pending_for_ever_times_out_naming_the_record(
    ctx: StepContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(moto.settings, "ACM_VALIDATION_WAIT", 10**9)  # moto's own delay: pending until then
    _, ids = provision(ctx)
    with pytest.raises(WaitTimeoutError) as timed_out:
        certificates.wait_issued(ctx, ids["arn"])
    message = timed_out.value.message
    value = records_value(ctx, ids["arn"])
    assert f"the record {RECORD_NAME} CNAME {value}" in message
    assert "PENDING_VALIDATION" in message and "kept" in message
    assert ctx.state.get("certificate") == ids


def test_a_caa_refusal_is_explained_with_the_domains_to_allow(ctx: StepContext) -> None:
    _, ids = provision(ctx)
    fail_validation(ctx.clients.acm, "CAA_ERROR")
    with pytest.raises(DeployerError) as failed:
        certificates.wait_issued(ctx, ids["arn"])
    assert not isinstance(failed.value, WaitTimeoutError) and failed.value.exit_code == 2
    message = failed.value.message
    assert "CAA" in message and DOMAIN in message
    for allowed in ("amazon.com", "amazontrust.com", "awstrust.com", "amazonaws.com"):
        assert allowed in message
    assert "https://docs.aws.amazon.com/acm/latest/userguide/setup-caa.html" in message


@pytest.mark.parametrize(
    ("reason", "phrase"),
    [("DOMAIN_NOT_ALLOWED", "does not issue"), ("INVALID_PUBLIC_DOMAIN", "not a valid public domain")],
)
def test_other_failures_are_explained(ctx: StepContext, reason: str, phrase: str) -> None:
    _, ids = provision(ctx)
    fail_validation(ctx.clients.acm, reason)
    with pytest.raises(DeployerError, match=phrase) as failed:
        certificates.wait_issued(ctx, ids["arn"])
    assert reason in failed.value.message and "FAILED" in failed.value.message


# --- check_external, certificate_arn, certificate_status ---------------------------------------------------


def external(ctx: StepContext, arn: str, domain: str = DOMAIN) -> StepContext:
    return with_settings(ctx, certificate_arn=arn, domain=domain)


def test_an_issued_certificate_naming_the_domain_passes(ctx: StepContext) -> None:
    arn = user_certificate(ctx)
    certificates.check_external(external(ctx, arn))
    assert certificates.certificate_arn(external(ctx, arn)) == arn


def test_a_wildcard_covers_exactly_one_label(ctx: StepContext) -> None:
    arn = user_certificate(ctx, "*.example.com")
    certificates.check_external(external(ctx, arn, "www.example.com"))
    for domain in ("example.com", "a.www.example.com", "www.example.org"):
        with pytest.raises(DeployerError, match=r"is for \*\.example\.com, which does not include") as refused:
            certificates.check_external(external(ctx, arn, domain))
        assert refused.value.exit_code == 2


def test_a_name_among_the_alternative_names_passes_and_a_mismatch_lists_them(ctx: StepContext) -> None:
    arn = user_certificate(ctx, "example.com", "www.example.com")
    certificates.check_external(external(ctx, arn, "www.example.com"))
    with pytest.raises(DeployerError, match=r"is for example\.com, www\.example\.com, which does not include shop"):
        certificates.check_external(external(ctx, arn, OTHER_DOMAIN))


def test_a_missing_certificate_is_refused(ctx: StepContext) -> None:
    arn = f"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/00000000-0000-0000-0000-000000000000"
    with pytest.raises(DeployerError, match="does not exist") as refused:
        certificates.check_external(external(ctx, arn))
    assert refused.value.exit_code == 2


def test_a_certificate_not_issued_is_refused_naming_its_status(
    ctx: StepContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(moto.settings, "ACM_VALIDATION_WAIT", 10**9)
    arn = user_certificate(ctx)
    with pytest.raises(DeployerError, match="is PENDING_VALIDATION, not ISSUED"):
        certificates.check_external(external(ctx, arn))
    fail_validation(ctx.clients.acm, "CAA_ERROR")
    with pytest.raises(DeployerError, match="CAA_ERROR"):
        certificates.check_external(external(ctx, arn))


def test_a_certificate_of_another_region_is_refused_by_the_settings() -> None:
    arn = f"arn:aws:acm:eu-west-1:{ACCOUNT}:certificate/00000000-0000-0000-0000-000000000000"
    with pytest.raises(SettingsError, match="region eu-west-1"):
        validate(Settings(stack="test-site", region=REGION, image=IMAGE, domain=DOMAIN, certificate_arn=arn))


def test_the_certificate_arn_is_the_stacks_without_a_setting(ctx: StepContext) -> None:
    _, ids = provision(ctx)
    assert certificates.certificate_arn(ctx) == ids["arn"]


def test_certificate_status_for_status_py(ctx: StepContext) -> None:
    _, ids = provision(ctx)
    status = certificates.certificate_status(ctx.clients, ids["arn"])
    assert status.status == "ISSUED" and status.domain == DOMAIN and status.in_use_by == 0
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", status.not_after) and status.failure_reason == ""
    fail_validation(ctx.clients.acm, "CAA_ERROR")
    failed = certificates.certificate_status(ctx.clients, ids["arn"])
    assert (failed.status, failed.not_after, failed.failure_reason) == ("FAILED", "", "CAA_ERROR")


def test_the_step_is_wanted_only_when_the_stack_manages_the_dns(settings: Settings) -> None:
    assert STEP.wanted(settings)
    assert not STEP.wanted(replace(settings, domain=None))
    arn = f"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/00000000-0000-0000-0000-000000000000"
    assert not STEP.wanted(replace(settings, certificate_arn=arn))
