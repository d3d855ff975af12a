"""The domain's Route 53 records (deployer/steps/dns.py): the hosted zone lookup, the certificate's
validation CNAME and the alias A record to the NLB, on moto made to answer like Route 53
(tests/route53_emulation.py)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError
from moto.route53.models import route53_backends

from deployer.errors import DeployerError
from deployer.runner import provision_step
from deployer.steps import certificates
from deployer.steps.base import SUPERSEDED, Step, StepContext
from deployer.steps.certificates import CertificateStep
from deployer.steps.dns import (
    AliasRecordStep,
    HostedZone,
    ValidationRecordStep,
    find_zone,
    normalise,
)
from tests.acm_emulation import withhold_records
from tests.conftest import ACCOUNT, DOMAIN, ZONE, CallLog, hosted_zone, make_context, planning
from tests.route53_emulation import Route53Emulation, emulate_route53, zone_busy
from tests.steps_helpers import provision_through

if TYPE_CHECKING:
    from mypy_boto3_route53.type_defs import ResourceRecordSetOutputTypeDef

NEW_DOMAIN = "app.example.com"
CHANGE = ("route53", "ChangeResourceRecordSets")


class Killed(BaseException):
    """The process dies here (a BaseException: nothing in the tool catches it)."""


@pytest.fixture
def emulation(ctx: StepContext) -> Route53Emulation:
    return emulate_route53(ctx.clients.route53, pending_polls=2)


@pytest.fixture
def dctx(ctx: StepContext, emulation: Route53Emulation) -> StepContext:
    """The run with `domain` set (the emulation is installed first)."""
    return replace(ctx, settings=replace(ctx.settings, domain=DOMAIN))


@pytest.fixture
def zone(dctx: StepContext) -> str:
    return hosted_zone(dctx.clients)


@pytest.fixture
def stack(dctx: StepContext, zone: str) -> StepContext:
    """The stack up to the port-80 listener, and the stack's certificate for DOMAIN."""
    through_listener(dctx)
    request_certificate(dctx, DOMAIN)
    return dctx


def through_listener(ctx: StepContext) -> None:
    """The stack up to the port-80 listener as it is without a domain: the steps under test come after."""
    provision_through(replace(ctx, settings=replace(ctx.settings, domain=None)), "listener")


def request_certificate(ctx: StepContext, domain: str, superseded: str = "") -> str:
    """The certificate step's outcome (deployer/steps/certificates.py), recorded as it records it."""
    arn = ctx.clients.acm.request_certificate(
        DomainName=domain, ValidationMethod="DNS", IdempotencyToken=uuid.uuid4().hex
    )["CertificateArn"]
    ids = {"arn": arn, "domain": domain}
    ctx.remember("certificate", {**ids, SUPERSEDED: superseded} if superseded else ids)
    return arn


def certificate_record(ctx: StepContext, arn: str) -> tuple[str, str]:
    (option,) = ctx.clients.acm.describe_certificate(CertificateArn=arn)["Certificate"]["DomainValidationOptions"]
    record = option["ResourceRecord"]
    return record["Name"], record["Value"]


def records(ctx: StepContext, zone: str, name: str) -> list[ResourceRecordSetOutputTypeDef]:
    answer = ctx.clients.route53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
    return [record for record in answer if normalise(record["Name"]) == normalise(name)]


def put(ctx: StepContext, zone: str, record: dict[str, Any]) -> None:
    """A record written by someone else (the user, another tool)."""
    batch: Any = {"Changes": [{"Action": "UPSERT", "ResourceRecordSet": record}]}
    ctx.clients.route53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch=batch)


def balancer(ctx: StepContext) -> dict[str, Any]:
    arn = ctx.ids("load-balancer")["arn"]
    return dict(ctx.clients.elbv2.describe_load_balancers(LoadBalancerArns=[arn])["LoadBalancers"][0])


def again(ctx: StepContext, state_path: Path) -> StepContext:
    """A new process: the same settings, the state as saved on disk (the in-memory memo is gone)."""
    return make_context(ctx.clients, ctx.settings, state_path, clock=ctx.clock, output=ctx.output)


@pytest.fixture
def kill() -> Iterator[list[Any]]:
    """Handlers registered through `killing` are removed at the end."""
    registered: list[Any] = []
    yield registered
    for events, name, handler in registered:
        events.unregister(name, handler)


def killing(ctx: StepContext, registered: list[Any], event: str, operation: str) -> None:
    """Die once, at `event` (before-call: the request is not sent; after-call: AWS has served it)."""
    events = ctx.clients.route53.meta.events
    fired: list[bool] = []

    def die(**_: Any) -> None:
        if not fired:
            fired.append(True)
            raise Killed(operation)

    name = f"{event}.route-53.{operation}"
    events.register(name, die)
    registered.append((events, name, die))


# --- names and the zone ------------------------------------------------------------------------------------


def test_names_compare_as_route53_compares_them() -> None:
    assert normalise("\\052.Example.COM.") == "*.example.com"
    assert normalise("_ABC.www.example.com.") == "_abc.www.example.com"
    assert normalise("a\\100b.example.com") == "a@b.example.com"
    assert normalise("www.example.com") == "www.example.com"


def test_the_zone_is_the_longest_public_suffix_private_zones_skipped(dctx: StepContext, calls: CallLog) -> None:
    route53 = dctx.clients.route53
    parent = hosted_zone(dctx.clients, ZONE)
    vpc = dctx.clients.ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    for n in range(2):  # private zones of the domain's own name come first in the listing and are skipped
        route53.create_hosted_zone(
            Name=DOMAIN,
            CallerReference=f"private-{n}",
            VPC={"VPCRegion": "us-east-1", "VPCId": vpc},
            HostedZoneConfig={"PrivateZone": True},
        )
    assert find_zone(dctx) == HostedZone(parent, ZONE)

    longer = hosted_zone(dctx.clients, DOMAIN)
    fresh = replace(dctx, _lookups={})
    assert find_zone(fresh) == HostedZone(longer, DOMAIN)
    calls.clear()
    assert find_zone(fresh) == HostedZone(longer, DOMAIN)
    assert calls.calls == []  # asked once per run


def test_zone_listing_is_paged_while_names_match(ctx: StepContext) -> None:
    emulate_route53(ctx.clients.route53, zone_page_size=1)
    dctx = replace(ctx, settings=replace(ctx.settings, domain=DOMAIN))
    vpc = dctx.clients.ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    for n in range(3):
        dctx.clients.route53.create_hosted_zone(
            Name=ZONE,
            CallerReference=f"private-{n}",
            VPC={"VPCRegion": "us-east-1", "VPCId": vpc},
            HostedZoneConfig={"PrivateZone": True},
        )
    public = hosted_zone(dctx.clients, ZONE)
    hosted_zone(dctx.clients, "example.org")
    assert find_zone(dctx) == HostedZone(public, ZONE)


def test_no_public_zone_is_refused_before_any_change_naming_the_zones(dctx: StepContext, calls: CallLog) -> None:
    other = hosted_zone(dctx.clients, "example.org")
    calls.clear()
    with pytest.raises(DeployerError) as refused:
        AliasRecordStep().check(planning(dctx))
    message = refused.value.message
    assert refused.value.exit_code == 2
    assert f"example.org ({other})" in message and DOMAIN in message
    assert "Create a public hosted zone for example.com" in message and "--certificate-arn" in message
    assert calls.changing() == []


def test_two_public_zones_of_one_name_are_refused_naming_both(dctx: StepContext) -> None:
    first = hosted_zone(dctx.clients, ZONE)
    second = dctx.clients.route53.create_hosted_zone(Name=ZONE, CallerReference="second")["HostedZone"]["Id"]
    with pytest.raises(DeployerError) as refused:
        find_zone(dctx)
    assert first in refused.value.message and second.rsplit("/", 1)[-1] in refused.value.message
    assert refused.value.exit_code == 2


# --- the validation record ---------------------------------------------------------------------------------


def test_the_validation_record_is_written_recorded_as_ours_and_waited_into_sync(
    stack: StepContext, zone: str, emulation: Route53Emulation
) -> None:
    step = ValidationRecordStep()
    outcome, ids, _ = provision_step(stack, step)
    name, value = certificate_record(stack, stack.ids("certificate")["arn"])
    assert outcome == "created"
    assert ids == {"zone": zone, "name": name, "value": value, "created": "true"}
    (record,) = records(stack, zone, name)
    assert (record["Type"], record.get("TTL"), record.get("ResourceRecords")) == ("CNAME", 300, [{"Value": value}])
    assert emulation.polls() == 3  # GetChange until INSYNC: PENDING twice, then INSYNC
    step.wait(stack, ids)  # moto issues at once: the wait is one look


def test_a_record_that_was_there_with_our_value_is_shared_and_never_deleted(
    stack: StepContext, zone: str, calls: CallLog
) -> None:
    name, value = certificate_record(stack, stack.ids("certificate")["arn"])
    put(stack, zone, {"Name": name, "Type": "CNAME", "TTL": 60, "ResourceRecords": [{"Value": value}]})
    calls.clear()
    step = ValidationRecordStep()
    _, ids, _ = provision_step(stack, step)
    assert ids["created"] == "false"
    assert CHANGE not in calls.changing()
    assert step.delete(stack, ids) is not None  # kept, and said so
    assert records(stack, zone, name)


def test_another_value_at_the_record_name_is_refused(stack: StepContext, zone: str) -> None:
    name, _ = certificate_record(stack, stack.ids("certificate")["arn"])
    foreign = {"Name": name, "Type": "CNAME", "TTL": 60, "ResourceRecords": [{"Value": "elsewhere.example.net"}]}
    put(stack, zone, foreign)
    with pytest.raises(DeployerError) as refused:
        provision_step(stack, ValidationRecordStep())
    assert refused.value.exit_code == 2 and "elsewhere.example.net" in refused.value.message
    assert stack.recorded("validation-record") is None
    assert records(stack, zone, name)[0].get("ResourceRecords") == [{"Value": "elsewhere.example.net"}]


def test_a_busy_zone_is_waited_out(stack: StepContext, zone: str) -> None:
    busy = zone_busy(stack.clients.route53, times=2)
    provision_step(stack, ValidationRecordStep())
    assert busy.served == 2
    name, _ = certificate_record(stack, stack.ids("certificate")["arn"])
    assert records(stack, zone, name)


# --- the alias ---------------------------------------------------------------------------------------------


def test_the_alias_points_the_domain_at_the_nlb(stack: StepContext, zone: str, emulation: Route53Emulation) -> None:
    step = AliasRecordStep()
    _, ids, _ = provision_step(stack, step)
    assert ids == {"zone": zone, "name": DOMAIN}
    (record,) = records(stack, zone, DOMAIN)
    nlb = balancer(stack)
    assert record["Type"] == "A" and "TTL" not in record
    assert emulation.polls() == 0  # INSYNC is waited for at the end of the run (wait_deferred)
    step.wait(stack, ids)
    assert emulation.polls() == 3
    assert record.get("AliasTarget") == {
        "HostedZoneId": nlb["CanonicalHostedZoneId"],
        "DNSName": nlb["DNSName"].lower() + ".",  # as Route 53 answers it
        "EvaluateTargetHealth": False,
    }


@pytest.mark.parametrize(
    "existing",
    [
        {"Type": "A", "TTL": 60, "ResourceRecords": [{"Value": "192.0.2.10"}]},
        {"Type": "CNAME", "TTL": 60, "ResourceRecords": [{"Value": "site.example.net"}]},
        {
            "Type": "A",
            "AliasTarget": {
                "HostedZoneId": "Z2FDTNDATAQYW2",
                "DNSName": "d1.cloudfront.net",
                "EvaluateTargetHealth": False,
            },
        },
    ],
    ids=["a", "cname", "other-alias"],
)
def test_a_users_record_at_the_domain_is_refused_never_overwritten(
    stack: StepContext, zone: str, existing: dict[str, Any]
) -> None:
    put(stack, zone, {"Name": DOMAIN, **existing})
    before = records(stack, zone, DOMAIN)
    with pytest.raises(DeployerError) as refused:
        provision_step(stack, AliasRecordStep())
    assert refused.value.exit_code == 2 and "not overwritten" in refused.value.message
    assert stack.recorded("dns-alias") is None
    assert records(stack, zone, DOMAIN) == before


def test_an_alias_moved_elsewhere_is_pointed_back_and_a_rerun_changes_nothing(
    stack: StepContext, zone: str, calls: CallLog
) -> None:
    step = AliasRecordStep()
    provision_step(stack, step)
    nlb = balancer(stack)
    moved = {
        "HostedZoneId": nlb["CanonicalHostedZoneId"],
        "DNSName": "other.elb.amazonaws.com",
        "EvaluateTargetHealth": False,
    }
    put(stack, zone, {"Name": DOMAIN, "Type": "A", "AliasTarget": moved})
    outcome, _, changes = provision_step(stack, step)
    assert outcome == "updated" and changes == [f"alias target set to {nlb['DNSName']}"]
    assert records(stack, zone, DOMAIN)[0].get("AliasTarget", {}).get("DNSName") == nlb["DNSName"].lower() + "."
    calls.clear()
    assert provision_step(stack, step)[0] == "unchanged"
    assert calls.changing() == []


def test_a_rerun_of_both_steps_makes_no_changing_call(stack: StepContext, calls: CallLog) -> None:
    steps = (ValidationRecordStep(), AliasRecordStep())
    for step in steps:
        provision_step(stack, step)
    calls.clear()
    fresh = replace(stack, _lookups={})
    assert [provision_step(fresh, step)[0] for step in steps] == ["unchanged", "unchanged"]
    assert calls.changing() == []


def test_the_dry_run_plans_the_records_without_a_change(stack: StepContext, calls: CallLog) -> None:
    calls.clear()
    dry = planning(stack)
    for step in (ValidationRecordStep(), AliasRecordStep()):
        step.check(dry)
        assert step.find(dry, None) is None  # planned as "create"
    assert calls.changing() == []


def test_a_lost_state_adopts_the_alias_to_our_nlb_and_shares_the_validation_record(
    stack: StepContext, zone: str, calls: CallLog
) -> None:
    nlb = balancer(stack)
    ours = {"HostedZoneId": nlb["CanonicalHostedZoneId"], "DNSName": nlb["DNSName"], "EvaluateTargetHealth": True}
    put(stack, zone, {"Name": DOMAIN, "Type": "A", "AliasTarget": ours})
    validation, alias = ValidationRecordStep(), AliasRecordStep()
    provision_step(stack, validation)
    stack.ledger.forget(validation.name)

    found = alias.find_unrecorded(stack)
    assert found is not None and found.ids == {"zone": zone, "name": DOMAIN}
    calls.clear()
    outcome, _, changes = provision_step(stack, alias)  # adopted, then EvaluateTargetHealth converged
    assert (outcome, changes) == ("updated", [f"alias target set to {nlb['DNSName']}"])
    assert calls.changing() == [CHANGE]
    shared = validation.find_unrecorded(stack)
    assert shared is not None and shared.ids["created"] == "false"  # who made it is unknown: never deleted


def test_a_certificate_asking_for_several_records_is_refused(
    stack: StepContext, monkeypatch: pytest.MonkeyPatch, calls: CallLog
) -> None:
    two = [("_a.www.example.com.", "_x.acm-validations.aws."), ("_b.example.com.", "_y.acm-validations.aws.")]
    monkeypatch.setattr(certificates, "validation_records", lambda _ctx, _arn: two)
    calls.clear()
    with pytest.raises(DeployerError) as refused:
        provision_step(stack, ValidationRecordStep())
    assert "asks for 2 DNS validation records" in refused.value.message
    assert calls.changing() == []


# --- domain change, retire, teardown -------------------------------------------------------------------------


def test_a_new_domain_gets_new_records_and_retire_deletes_the_old_ones(stack: StepContext, zone: str) -> None:
    validation, alias = ValidationRecordStep(), AliasRecordStep()
    old_name, _ = certificate_record(stack, stack.ids("certificate")["arn"])
    for step in (validation, alias):
        provision_step(stack, step)
    old_arn = stack.ids("certificate")["arn"]

    moved = replace(stack, settings=replace(stack.settings, domain=NEW_DOMAIN), _lookups={})
    new_arn = request_certificate(moved, NEW_DOMAIN, superseded=old_arn)
    new_name, new_value = certificate_record(moved, new_arn)
    outcomes = [provision_step(moved, step) for step in (validation, alias)]
    assert [outcome for outcome, _, _ in outcomes] == ["updated", "updated"]
    ids = moved.ids("validation-record")
    assert (ids["name"], ids["value"], ids["created"]) == (new_name, new_value, "true")
    assert [old["name"] for old in json.loads(ids[SUPERSEDED])] == [old_name]
    assert json.loads(moved.ids("dns-alias")[SUPERSEDED]) == [{"zone": zone, "name": DOMAIN}]
    assert records(moved, zone, old_name) and records(moved, zone, DOMAIN)  # kept until retired

    for step in (alias, validation):  # the runner retires newest first
        moved.remember(step.name, step.retire(moved, moved.ids(step.name)))
    assert SUPERSEDED not in moved.ids("validation-record") and SUPERSEDED not in moved.ids("dns-alias")
    assert records(moved, zone, old_name) == [] and records(moved, zone, DOMAIN) == []
    assert records(moved, zone, new_name) and records(moved, zone, NEW_DOMAIN)


def test_teardown_deletes_what_the_stack_made_and_gone_counts_as_deleted(stack: StepContext, zone: str) -> None:
    validation, alias = ValidationRecordStep(), AliasRecordStep()
    ids = {step.name: provision_step(stack, step)[1] for step in (validation, alias)}
    assert alias.delete(stack, ids["dns-alias"]) is None
    assert validation.delete(stack, ids["validation-record"]) is None
    assert records(stack, zone, DOMAIN) == [] and records(stack, zone, ids["validation-record"]["name"]) == []
    # A second teardown (after a crash) finds them gone: deleted, no call refused.
    assert alias.delete(stack, ids["dns-alias"]) is None
    assert validation.delete(stack, ids["validation-record"]) is None


def test_teardown_keeps_a_record_another_certificate_still_uses(stack: StepContext, zone: str) -> None:
    step = ValidationRecordStep()
    _, ids, _ = provision_step(stack, step)
    other = stack.clients.acm.request_certificate(DomainName=DOMAIN, ValidationMethod="DNS")["CertificateArn"]
    kept = step.delete(stack, ids)
    assert kept is not None and other in kept
    assert records(stack, zone, ids["name"])


def test_teardown_keeps_an_alias_someone_replaced(stack: StepContext, zone: str) -> None:
    step = AliasRecordStep()
    _, ids, _ = provision_step(stack, step)
    put(stack, zone, {"Name": DOMAIN, "Type": "A", "TTL": 60, "ResourceRecords": [{"Value": "192.0.2.10"}]})
    assert step.delete(stack, ids) == f"kept: {DOMAIN} is now 192.0.2.10"
    assert records(stack, zone, DOMAIN)


def meanwhile(ctx: StepContext, zone: str, change: Any) -> None:
    """Someone changes the zone right after the step has read it (once, on moto's own records)."""
    done: list[bool] = []

    def edit(**_: Any) -> None:
        if not done:
            done.append(True)
            change(route53_backends[ACCOUNT]["aws"].get_hosted_zone(zone))

    ctx.clients.route53.meta.events.register("after-call.route-53.ListResourceRecordSets", edit)


def test_a_record_deleted_between_the_read_and_the_delete_counts_as_deleted(stack: StepContext, zone: str) -> None:
    step = AliasRecordStep()
    _, ids, _ = provision_step(stack, step)
    meanwhile(stack, zone, lambda hosted: setattr(hosted, "rrsets", [r for r in hosted.rrsets if r.type != "A"]))
    assert step.delete(stack, ids) is None


def test_a_record_changed_between_the_read_and_the_delete_is_not_deleted(stack: StepContext, zone: str) -> None:
    step = ValidationRecordStep()
    _, ids, _ = provision_step(stack, step)

    def change(hosted: Any) -> None:
        (record,) = [r for r in hosted.rrsets if r.type == "CNAME"]
        record.records = ["changed.example.net"]

    meanwhile(stack, zone, change)
    with pytest.raises(ClientError) as refused:
        step.delete(stack, ids)
    assert refused.value.response["Error"]["Code"] == "InvalidChangeBatch"
    assert records(stack, zone, ids["name"])


# --- crash points -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("event", ["before-call", "after-call"], ids=["before-upsert", "after-upsert"])
@pytest.mark.parametrize("which", ["validation-record", "dns-alias"])
def test_a_crash_around_the_upsert_converges_on_the_next_run(
    stack: StepContext, zone: str, state_path: Path, kill: list[Any], calls: CallLog, event: str, which: str
) -> None:
    step = ValidationRecordStep() if which == "validation-record" else AliasRecordStep()
    killing(stack, kill, event, "ChangeResourceRecordSets")
    with pytest.raises(Killed):
        provision_step(stack, step)
    recorded = again(stack, state_path).recorded(which)
    assert recorded is not None  # saved before the call
    assert recorded.get("created", "true") == "true"

    rerun = again(stack, state_path)
    calls.clear()
    outcome, ids, _ = provision_step(rerun, step)
    upserts = [call for call in calls.changing() if call == CHANGE]
    assert upserts == ([CHANGE] if event == "before-call" else [])
    assert outcome == ("created" if event == "before-call" else "unchanged")
    assert ids == recorded  # still ours: teardown deletes it
    name = ids["name"]
    assert len(records(rerun, zone, name)) == 1
    assert step.delete(rerun, ids) is None and records(rerun, zone, name) == []


@pytest.mark.parametrize("which", ["validation-record", "dns-alias"])
def test_a_crash_before_the_upsert_for_a_new_domain_still_retires_the_old_record(
    stack: StepContext, zone: str, state_path: Path, kill: list[Any], which: str
) -> None:
    step = ValidationRecordStep() if which == "validation-record" else AliasRecordStep()
    _, old, _ = provision_step(stack, step)
    moved = replace(stack, settings=replace(stack.settings, domain=NEW_DOMAIN), _lookups={})
    request_certificate(moved, NEW_DOMAIN, superseded=stack.ids("certificate")["arn"])
    killing(moved, kill, "before-call", "ChangeResourceRecordSets")
    with pytest.raises(Killed):
        provision_step(moved, step)

    rerun = again(moved, state_path)
    outcome, ids, _ = provision_step(rerun, step)
    assert outcome == "created" and json.loads(ids[SUPERSEDED]) == [old]
    rerun.remember(step.name, step.retire(rerun, ids))
    assert records(rerun, zone, old["name"]) == [] and records(rerun, zone, ids["name"])


def test_a_crash_while_waiting_for_insync_converges_without_a_change(
    stack: StepContext, zone: str, state_path: Path, kill: list[Any], calls: CallLog
) -> None:
    step = AliasRecordStep()
    _, ids, _ = provision_step(stack, step)
    killing(stack, kill, "after-call", "GetChange")
    with pytest.raises(Killed):
        step.wait(stack, ids)
    calls.clear()
    assert provision_step(again(stack, state_path), AliasRecordStep())[0] == "unchanged"
    assert calls.changing() == []


def test_teardown_works_on_moto_without_the_emulation(ctx: StepContext) -> None:
    """The scripts' lifecycle runs against a moto server, where no hook makes Route 53 answer like AWS."""
    plain = replace(ctx, settings=replace(ctx.settings, domain=DOMAIN))
    zone = hosted_zone(plain.clients)
    through_listener(plain)
    request_certificate(plain, DOMAIN)
    steps = (ValidationRecordStep(), AliasRecordStep())
    ids = [provision_step(plain, step)[1] for step in steps]
    for step, recorded in zip(reversed(steps), reversed(ids), strict=True):
        assert step.delete(plain, recorded) is None
    left = plain.clients.route53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
    assert sorted(record["Type"] for record in left) == ["NS", "SOA"]


# --- with the certificate step ----------------------------------------------------------------------------------


def test_the_lifecycle_with_the_certificate_step(dctx: StepContext, zone: str, calls: CallLog) -> None:
    """certificate -> validation record (its wait: ISSUED) -> alias; re-run; domain change; retire; teardown."""
    through_listener(dctx)
    withhold_records(dctx.clients.acm, describes=2)  # ACM names the record a few seconds after the request
    steps: list[Step[Any]] = [CertificateStep(), ValidationRecordStep(), AliasRecordStep()]

    def run(ctx: StepContext) -> list[str]:
        outcomes: list[str] = []
        for step in steps:
            outcome, ids, _ = provision_step(ctx, step)
            step.wait(ctx, ids)
            outcomes.append(outcome)
        return outcomes

    assert run(dctx) == ["created", "created", "created"]
    assert dctx.ids("validation-record")["created"] == "true"
    calls.clear()
    assert run(replace(dctx, _lookups={})) == ["unchanged"] * 3
    assert calls.changing() == []

    old_record = dctx.ids("validation-record")["name"]
    moved = replace(dctx, settings=replace(dctx.settings, domain=NEW_DOMAIN), _lookups={})
    assert run(moved) == ["updated"] * 3
    for step in reversed(steps):  # the runner retires newest first: the records before the certificate
        moved.remember(step.name, step.retire(moved, moved.ids(step.name)))
    assert records(moved, zone, old_record) == [] and records(moved, zone, DOMAIN) == []

    for step in reversed(steps):  # teardown
        assert step.delete(moved, moved.ids(step.name)) is None
        moved.ledger.forget(step.name)
    left = moved.clients.route53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
    assert sorted(record["Type"] for record in left) == ["NS", "SOA"]
    assert moved.clients.acm.list_certificates()["CertificateSummaryList"] == []
