"""The domain's Route 53 records: the certificate's DNS validation CNAME and the alias A record to the NLB.

Both go into the account's public hosted zone for the domain (`find_zone`: the longest suffix of the
domain that has one), which is the user's: the stack never creates or deletes a zone.

Route 53 records cannot be tagged (ChangeResourceRecordSets has no tags, and ChangeTagsForResource takes
only hosted zones and health checks: https://docs.aws.amazon.com/Route53/latest/APIReference/API_ChangeTagsForResource.html).
Which records are the stack's comes from the state: each step records its record's identifiers BEFORE the
UPSERT that makes it, so a crash after the call still knows the record is ours.

* the validation CNAME: ACM gives every certificate of one account for the same name the same record
  (dflook/cloudformation-dns-certificate#7: deleting it made another certificate fail to renew), so a
  record that already had our value (or one a lost state cannot vouch for) is shared ("created": "false")
  and never deleted, and one the stack made is deleted only when no other certificate of the region
  still lists it (certificates of other regions are not asked about);
* the alias: an A alias to the stack's own NLB is the stack's (found again after a lost state, as the NLB
  is); any other A, AAAA or CNAME at the domain is the user's: refused, never overwritten by an UPSERT.

Names are compared after `normalise` (Route 53 answers lower case with a trailing dot and octal escapes).
"""

from __future__ import annotations

import json
import re
from abc import abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from botocore.exceptions import ClientError

from deployer.errors import DeployerError
from deployer.retry import Retry
from deployer.settings import Settings
from deployer.state import Ids
from deployer.steps import certificates
from deployer.steps.aws import absent_if
from deployer.steps.base import SUPERSEDED, Converged, Existing, Step, StepContext, is_code, without_superseded

if TYPE_CHECKING:
    from mypy_boto3_route53.literals import ChangeActionType, RRTypeType
    from mypy_boto3_route53.type_defs import (
        AliasTargetTypeDef,
        HostedZoneTypeDef,
        ListResourceRecordSetsRequestTypeDef,
        ResourceRecordSetOutputTypeDef,
        ResourceRecordSetUnionTypeDef,
    )

ZONE_KEY: Final = "hosted-zone"  # the StepContext.once key of the zone lookup
CERTIFICATE_STEP: Final = certificates.CERTIFICATE_STEP
GONE_CERTIFICATE: Final = certificates.NOT_FOUND
LOAD_BALANCER_STEP: Final = "load-balancer"
# The validation record changes only with the certificate; ACM re-checks it at every renewal
# (https://docs.aws.amazon.com/acm/latest/userguide/dns-validation.html).
VALIDATION_TTL: Final = 300
# False: with True, Route 53 answers by the NLB's health, and "a target group that has no registered
# targets is considered unhealthy" (route53 model, AliasTarget.EvaluateTargetHealth): the port-80 redirect
# target group between deploys could count against the site. The domain's one record gains nothing from
# it: there is no other record to fail over to.
EVALUATE_TARGET_HEALTH: Final = False
# A change reaches every Route 53 name server "generally within 60 seconds" (botocore's route53 model,
# ChangeResourceRecordSets); its own waiter (resource_record_sets_changed) asks every 30 s. Every 10 s.
INSYNC_POLL_SECONDS: Final = 10.0
# Record types that cannot share the alias's name with it without being overwritten or refused
# (a CNAME excludes every other type at its name: RFC 1034 section 3.6.2).
ALIAS_CONFLICTS: Final = ("A", "AAAA", "CNAME")
# "Route 53 rejects subsequent requests for the same hosted zone" while a change is being applied: "wait,
# in intervals of increasing duration, before you try the request again" (route53 model,
# PriorRequestNotComplete; https://docs.aws.amazon.com/Route53/latest/APIReference/API_ChangeResourceRecordSets.html).
# Changes reach every name server "within 60 seconds" (same page): two minutes covers one change ahead.
ZONE_BUSY = Retry(
    "the hosted zone is still applying an earlier change", frozenset({"PriorRequestNotComplete"}), budget_seconds=120
)
# DELETE of a record whose name/type or values are not in the zone: InvalidChangeBatch, with no finer code
# for "gone" (AWS's messages: "Tried to delete resource record set [name='x.', type='A'] but it was not
# found" and "... but the values provided do not match the current values": boto/boto#2887,
# kubernetes-sigs/external-dns#732). The message is not matched: the zone is read again instead.
CHANGE_REFUSED: Final = "InvalidChangeBatch"
_OCTAL = re.compile(r"\\([0-7]{3})")


def normalise(name: str) -> str:
    """A DNS name as Route 53 compares it: lower case, without the trailing dot, escapes decoded.

    Route 53 answers `*` as `\\052` and other characters outside a-z, 0-9, '-', '_' and '.' as `\\ooo`
    octal, in lower case with a trailing dot ("DNS domain name format",
    https://docs.aws.amazon.com/Route53/latest/DeveloperGuide/DomainNameFormat.html), and treats
    "www.example.com" and "www.example.com." alike (route53 model, ResourceRecordSet.Name).
    """
    decoded = _OCTAL.sub(lambda match: chr(int(match.group(1), 8)), name)
    return decoded.lower().removesuffix(".")


@dataclass(frozen=True)
class HostedZone:
    id: str  # without the "/hostedzone/" prefix
    name: str  # normalised


def find_zone(ctx: StepContext) -> HostedZone:
    """The public hosted zone of the domain: the one named by the domain's longest suffix; asked once per run.

    Refuses (exit 2, before any change when called from `check`) when no public zone holds the domain, or
    when two public zones have the name (Route 53 allows duplicates; only the delegated one answers).
    """
    return ctx.once(f"{ZONE_KEY} {ctx.settings.domain}", lambda: _lookup_zone(ctx))  # per domain: a copied
    # context with another domain shares the memo


def _lookup_zone(ctx: StepContext) -> HostedZone:
    domain = _domain(ctx.settings)
    labels = domain.split(".")
    for suffix in (".".join(labels[index:]) for index in range(len(labels))):
        zones = [zone for zone in _zones_named(ctx, suffix) if not zone.get("Config", {}).get("PrivateZone", False)]
        if len(zones) > 1:
            ids = " and ".join(_zone_id(zone) for zone in zones)
            raise DeployerError(
                f"Two public Route 53 hosted zones are named {suffix}: {ids}; only the one the domain is "
                "delegated to answers, and the stack cannot tell which",
                where=f"the hosted zone lookup for {domain}",
                todo="Delete the zone the registrar does not delegate to (compare its NS record with the "
                "domain's name servers), then run again",
            )
        if zones:
            return HostedZone(_zone_id(zones[0]), suffix)
    raise _no_zone(ctx, domain)


def _zones_named(ctx: StepContext, name: str) -> list[HostedZoneTypeDef]:
    """The account's hosted zones named `name` (public and private).

    ListHostedZonesByName has no paginator in botocore: it lists every zone from `DNSName` on, in the
    order of reversed labels, up to 100 a page (route53 model, ListHostedZonesByName). Zones of that
    name come first; paging stops at the first other name.
    """
    route53 = ctx.clients.route53
    answer = route53.list_hosted_zones_by_name(DNSName=name)
    found: list[HostedZoneTypeDef] = []
    while True:
        same = [zone for zone in answer["HostedZones"] if normalise(zone["Name"]) == name]
        found.extend(same)
        more = answer.get("IsTruncated", False) and normalise(answer.get("NextDNSName", "")) == name
        if not more or len(same) < len(answer["HostedZones"]):
            return found
        answer = route53.list_hosted_zones_by_name(
            DNSName=answer["NextDNSName"], HostedZoneId=answer["NextHostedZoneId"]
        )


def _no_zone(ctx: StepContext, domain: str) -> DeployerError:
    public = [
        f"{normalise(zone['Name'])} ({_zone_id(zone)})"
        for page in ctx.clients.route53.get_paginator("list_hosted_zones").paginate()
        for zone in page["HostedZones"]
        if not zone.get("Config", {}).get("PrivateZone", False)
    ]
    labels = domain.split(".")
    parent = ".".join(labels[1:]) if len(labels) > 2 else domain
    return DeployerError(
        f"No public Route 53 hosted zone in this account holds {domain} (the account's public zones: "
        f"{', '.join(public) or 'none'})",
        where=f"the hosted zone lookup for {domain}, before any change",
        todo=f"Create a public hosted zone for {parent} and delegate the domain to it at the registrar (the "
        "zone's NS record), then run again; or, with DNS elsewhere, pass an ISSUED certificate with "
        "--certificate-arn and point the name at the load balancer yourself",
    )


def _zone_id(zone: HostedZoneTypeDef) -> str:
    return zone["Id"].rsplit("/", 1)[-1]


def _domain(settings: Settings) -> str:
    if settings.domain is None:
        raise RuntimeError("the DNS steps run only with a domain")
    return settings.domain


def _records_at(
    ctx: StepContext, zone: str, name: str, first_type: RRTypeType, page_size: int = 1
) -> list[ResourceRecordSetOutputTypeDef]:
    """The record sets named `name` in the zone, from type `first_type` on (types sort alphabetically).

    ListResourceRecordSets starts "with the first resource record set that has a name greater" when the
    name is missing (route53 model, StartRecordName), so the answer is filtered on the name.
    """
    route53 = ctx.clients.route53
    wanted = normalise(name)
    answer = route53.list_resource_record_sets(
        HostedZoneId=zone, StartRecordName=name, StartRecordType=first_type, MaxItems=str(page_size)
    )
    found: list[ResourceRecordSetOutputTypeDef] = []
    while True:
        same = [record for record in answer["ResourceRecordSets"] if normalise(record["Name"]) == wanted]
        found.extend(same)
        more = answer.get("IsTruncated", False) and normalise(answer.get("NextRecordName", "")) == wanted
        if not more or len(same) < len(answer["ResourceRecordSets"]):
            return found
        page: ListResourceRecordSetsRequestTypeDef = {
            "HostedZoneId": zone,
            "StartRecordName": answer["NextRecordName"],
            "StartRecordType": answer["NextRecordType"],
            "MaxItems": str(page_size),
        }
        if "NextRecordIdentifier" in answer:  # sets of one name and type (weighted, latency, ...) span pages
            page["StartRecordIdentifier"] = answer["NextRecordIdentifier"]
        answer = route53.list_resource_record_sets(**page)


def _change(ctx: StepContext, zone: str, action: ChangeActionType, record: ResourceRecordSetUnionTypeDef) -> str:
    """Send one change to the zone; returns its change ID (for `_insync`)."""
    answer = ctx.retry(
        lambda: ctx.clients.route53.change_resource_record_sets(
            HostedZoneId=zone, ChangeBatch={"Changes": [{"Action": action, "ResourceRecordSet": record}]}
        ),
        ZONE_BUSY,
    )
    return answer["ChangeInfo"]["Id"]


def _insync(ctx: StepContext, change_id: str, what: str) -> None:
    """GetChange until Route 53 reports the change INSYNC: on every name server of the zone (route53 model,
    GetChange; "within 60 seconds", ChangeResourceRecordSets). Polled at the run's pace, not with botocore's
    waiter (30 s between looks)."""

    def pending() -> str | None:
        status = ctx.clients.route53.get_change(Id=change_id)["ChangeInfo"]["Status"]
        return None if status == "INSYNC" else status

    ctx.poll(what, ctx.settings.service_wait_timeout, pending, every=INSYNC_POLL_SECONDS)


def _delete_record(ctx: StepContext, zone: str, live: ResourceRecordSetOutputTypeDef) -> None:
    """DELETE a record set sent back exactly as read ("you must specify all the same values", route53 model,
    ChangeResourceRecordSets). Refused because it went meanwhile: deleted; because it changed: AWS's answer
    stands (the record is no longer the one the stack wrote)."""
    try:
        _change(ctx, zone, "DELETE", live)  # not waited for: nothing depends on a record being gone everywhere
    except ClientError as exc:
        if not is_code(exc, CHANGE_REFUSED):
            raise
        if any(record["Type"] == live["Type"] for record in _records_at(ctx, zone, live["Name"], live["Type"])):
            raise


def _superseded(ids: Ids) -> list[Ids]:
    """What a step's record replaced: a JSON list of identifiers, under SUPERSEDED."""
    return list(json.loads(ids[SUPERSEDED])) if SUPERSEDED in ids else []


def _replacing(old: Ids) -> list[Ids]:
    """What a record made in place of `old` supersedes: `old`, and what `old` itself superseded."""
    return [*_superseded(old), without_superseded(old)]


def _still_superseded(ctx: StepContext, step: str) -> list[Ids]:
    """What the step's recorded identifiers say is still to retire. `create` runs when the recorded record
    is missing (deleted by hand, or a crash before its UPSERT): the records it had replaced are still there."""
    return _superseded(ctx.state.get(step) or {})


def _with_superseded(ids: Ids, superseded: list[Ids]) -> Ids:
    return {**ids, SUPERSEDED: json.dumps(superseded)} if superseded else ids


# --- the certificate's validation CNAME ------------------------------------------------------------------


@dataclass(frozen=True)
class Wanted:
    """The validation record the stack's certificate asks for, in its zone."""

    zone: str
    name: str
    value: str


class RecordStep(Step["ResourceRecordSetOutputTypeDef"]):
    """A record of the stack's in the domain's zone: the ones it replaced (SUPERSEDED, a JSON list) are deleted
    by `retire` once nothing uses them, and with it at teardown; `remove` deletes one record."""

    @abstractmethod
    def remove(self, ctx: StepContext, ids: Ids) -> str | None:
        """Delete one record (current or superseded); gone counts as deleted."""

    def retire(self, ctx: StepContext, ids: Ids) -> Ids:
        for old in _superseded(ids):
            self.remove(ctx, old)
        return without_superseded(ids)

    def delete(self, ctx: StepContext, ids: Ids) -> str | None:
        for old in _superseded(ids):
            self.remove(ctx, old)
        return self.remove(ctx, ids)


class ValidationRecordStep(RecordStep):
    """The CNAME ACM checks before it issues the certificate; its wait is the certificate's issue.

    The stack's certificate names one domain, and ACM gives one record per name, so one record is wanted;
    a certificate asking for several (not one this stack requests) is refused rather than half-validated.
    """

    name = "validation-record"
    resource = "DNS validation record"
    needs = (CERTIFICATE_STEP,)

    def wanted(self, settings: Settings) -> bool:
        return settings.managed_dns

    def find_recorded(self, ctx: StepContext, ids: Ids) -> Existing[ResourceRecordSetOutputTypeDef] | None:
        live = _cname(ctx, ids["zone"], ids["name"])
        return Existing(ids, live) if live is not None and _value(live) == normalise(ids["value"]) else None

    def find_unrecorded(self, ctx: StepContext) -> Existing[ResourceRecordSetOutputTypeDef] | None:
        """A record with the certificate's value that the state does not list: shared, never deleted
        (it was there before, or a lost state cannot say who made it)."""
        if not ctx.settings.managed_dns or ctx.recorded(CERTIFICATE_STEP) is None:
            return None
        wanted = _wanted(ctx)
        live = _cname(ctx, wanted.zone, wanted.name)
        if live is None or _value(live) != normalise(wanted.value):
            return None
        return Existing(_with_superseded(_ids(wanted, created=False), _still_superseded(ctx, self.name)), live)

    def create(self, ctx: StepContext) -> Ids:
        return _put_validation(ctx, self, _wanted(ctx), _still_superseded(ctx, self.name))

    def converge(self, ctx: StepContext, existing: Existing[ResourceRecordSetOutputTypeDef]) -> Converged:
        """A new certificate (a changed domain) asks for another record: made beside the old one, which
        `retire` deletes once the certificate it validated is no longer used."""
        wanted = _wanted(ctx)
        ids = existing.ids
        if (ids["zone"], normalise(ids["name"]), normalise(ids["value"])) == (
            wanted.zone,
            normalise(wanted.name),
            normalise(wanted.value),
        ):
            return Converged(ids)
        changes: list[str] = []
        made: dict[str, Ids] = {}

        def replace() -> None:
            made["ids"] = _put_validation(ctx, self, wanted, _replacing(ids))

        ctx.change(changes, f"validation record {normalise(wanted.name)} for the new certificate", replace)
        return Converged(made.get("ids", ids), changes)

    def wait(self, ctx: StepContext, ids: Ids) -> None:
        """Until ACM has seen the record and issued the certificate (beside the NLB: only the TLS listener needs it)."""
        certificates.wait_issued(ctx, ctx.ids(CERTIFICATE_STEP)["arn"])

    def remove(self, ctx: StepContext, ids: Ids) -> str | None:
        return _delete_validation(ctx, ids)


def _wanted(ctx: StepContext) -> Wanted:
    arn = ctx.ids(CERTIFICATE_STEP)["arn"]
    records = certificates.validation_records(ctx, arn)
    if len(records) != 1:
        raise DeployerError(
            f"The certificate {arn} asks for {len(records)} DNS validation records; the stack writes the one "
            "record of a certificate for its one domain",
            where="step 'validation-record', ACM DescribeCertificate DomainValidationOptions",
            todo="Run again once ACM shows the record (it appears seconds after the request); a certificate "
            "with several names can be used with --certificate-arn",
        )
    ((name, value),) = records
    return Wanted(find_zone(ctx).id, name, value)


def _ids(wanted: Wanted, created: bool) -> Ids:
    return {"zone": wanted.zone, "name": wanted.name, "value": wanted.value, "created": str(created).lower()}


def _cname(ctx: StepContext, zone: str, name: str) -> ResourceRecordSetOutputTypeDef | None:
    records = [record for record in _records_at(ctx, zone, name, "CNAME") if record["Type"] == "CNAME"]
    return records[0] if records else None


def _value(record: ResourceRecordSetOutputTypeDef) -> str:
    values = [normalise(entry["Value"]) for entry in record.get("ResourceRecords", [])]
    return values[0] if len(values) == 1 else ",".join(sorted(values))


def _put_validation(ctx: StepContext, step: ValidationRecordStep, wanted: Wanted, superseded: list[Ids]) -> Ids:
    """Write the record, or take the one already there if it has our value (shared); refuse another value.

    The identifiers, with "created": "true", are saved before the UPSERT: records carry no tags, so the
    state is the only proof that the stack made it.
    """
    live = _cname(ctx, wanted.zone, wanted.name)
    if live is not None and _value(live) != normalise(wanted.value):
        raise DeployerError(
            f"The hosted zone {wanted.zone} already has a CNAME {normalise(wanted.name)} -> {_value(live)}, not "
            f"the certificate's {normalise(wanted.value)}: a record the stack did not make is not overwritten",
            where=f"step '{step.name}', {step.resource} {normalise(wanted.name)}",
            todo="If nothing uses that record, delete it from the zone and run again",
        )
    ids = _with_superseded(_ids(wanted, created=live is None), superseded)
    ctx.remember(step.name, ids)
    if live is None:
        cname: ResourceRecordSetUnionTypeDef = {
            "Name": wanted.name,
            "Type": "CNAME",
            "TTL": VALIDATION_TTL,
            "ResourceRecords": [{"Value": wanted.value}],
        }
        _insync(ctx, _change(ctx, wanted.zone, "UPSERT", cname), f"the validation record {normalise(wanted.name)}")
    return ids


def _delete_validation(ctx: StepContext, ids: Ids) -> str | None:
    """Delete a validation record the stack made, unless another certificate of the account still lists it."""
    name = normalise(ids["name"])
    if ids.get("created") != "true":
        return f"kept: {name} was in the zone before the stack (shared with another certificate)"
    users = _other_certificates_using(ctx, name, normalise(ids["value"]))
    if users:
        return f"kept: {name} still validates {', '.join(users)}"
    live = _cname(ctx, ids["zone"], name)
    if live is None:
        return None  # already gone
    if _value(live) != normalise(ids["value"]):
        return f"kept: {name} was changed to {_value(live)} after the stack wrote it"
    _delete_record(ctx, ids["zone"], live)
    return None


def _other_certificates_using(ctx: StepContext, name: str, value: str) -> list[str]:
    """ARNs of the region's certificates, other than the stack's (current and superseded), whose validation
    record is this one. Certificates of the account in other regions are not asked about: a stack knows
    one region's ACM (the record would then be deleted under them; said in the report line of `delete`).

    ListCertificates returns only RSA_1024 and RSA_2048 certificates unless told otherwise (ACM model,
    Filters.keyTypes): every key type and every status are asked for. A certificate deleted between the
    list and its describe is skipped.
    """
    acm = ctx.clients.acm
    recorded = ctx.recorded(CERTIFICATE_STEP) or {}
    ours = {recorded.get("arn", ""), *filter(None, recorded.get(SUPERSEDED, "").split(","))}
    pages = acm.get_paginator("list_certificates").paginate(
        CertificateStatuses=list(CERTIFICATE_STATUSES), Includes={"keyTypes": list(KEY_TYPES)}
    )
    users: list[str] = []
    for page in pages:
        for summary in page.get("CertificateSummaryList", []):
            arn = summary.get("CertificateArn", "")
            if arn in ours:
                continue
            if any(normalise(r_name) == name and normalise(r_value) == value for r_name, r_value in _records(ctx, arn)):
                users.append(arn)
    return users


def _records(ctx: StepContext, arn: str) -> list[tuple[str, str]]:
    """The validation records a certificate lists so far; none if it was deleted meanwhile."""
    acm = ctx.clients.acm
    detail = absent_if(lambda: acm.describe_certificate(CertificateArn=arn)["Certificate"], GONE_CERTIFICATE)
    options = detail.get("DomainValidationOptions", []) if detail is not None else []
    return [(o["ResourceRecord"]["Name"], o["ResourceRecord"]["Value"]) for o in options if "ResourceRecord" in o]


# Every value of ACM's CertificateStatus and KeyAlgorithm (botocore's acm model).
CERTIFICATE_STATUSES: Final = (
    "PENDING_VALIDATION",
    "ISSUED",
    "INACTIVE",
    "EXPIRED",
    "VALIDATION_TIMED_OUT",
    "REVOKED",
    "FAILED",
)
KEY_TYPES: Final = (
    "RSA_1024",
    "RSA_2048",
    "RSA_3072",
    "RSA_4096",
    "EC_prime256v1",
    "EC_secp384r1",
    "EC_secp521r1",
)


# --- the alias A record to the NLB ------------------------------------------------------------------------


class AliasRecordStep(RecordStep):
    """`<domain>` as an alias A record to the stack's NLB (free queries, follows the NLB's addresses)."""

    name = "dns-alias"
    resource = "DNS alias record"
    # Its target; its delete reads the recorded NLB too (only an alias to it is the stack's), so it goes first.
    needs = (LOAD_BALANCER_STEP,)
    # Route 53 takes up to a minute to bring a change to every name server: only the site's users need
    # that, not the steps after this one (the cluster, the service), so it is waited for at the end.
    wait_deferred = True

    def __init__(self) -> None:
        self._submitted: list[str] = []  # this run's changes (IDs), waited INSYNC by `wait`

    def wanted(self, settings: Settings) -> bool:
        return settings.managed_dns

    def check(self, ctx: StepContext) -> None:
        """Before anything is created (in a dry run too): no public zone for the domain is refused, and so is
        a record of someone else's at the name (an A, AAAA or CNAME that is not an alias to the stack's NLB),
        which the alias would otherwise only meet after the certificate and its validation were made."""
        zone = find_zone(ctx)
        name = _domain(ctx.settings)
        recorded = ctx.recorded(self.name)
        if recorded is not None and (recorded["zone"], normalise(recorded["name"])) == (zone.id, name):
            return  # the stack's alias: converge looks after it
        balancer = ctx.recorded(LOAD_BALANCER_STEP)
        for live in _at_name(ctx, zone.id, name):
            if balancer is None or not (live["Type"] == "A" and _points_at(live, balancer["dns_name"])):
                raise self._foreign(zone.id, live)

    def find_recorded(self, ctx: StepContext, ids: Ids) -> Existing[ResourceRecordSetOutputTypeDef] | None:
        live = _at_name(ctx, ids["zone"], ids["name"])
        return Existing(ids, live[0]) if live else None

    def find_unrecorded(self, ctx: StepContext) -> Existing[ResourceRecordSetOutputTypeDef] | None:
        """Only an alias to the stack's own NLB is adopted (a lost state, or a crash after the UPSERT)."""
        if not ctx.settings.managed_dns or ctx.recorded(LOAD_BALANCER_STEP) is None:
            return None
        zone = find_zone(ctx)
        dns_name = ctx.ids(LOAD_BALANCER_STEP)["dns_name"]
        for live in _at_name(ctx, zone.id, _domain(ctx.settings)):
            if live["Type"] == "A" and _points_at(live, dns_name):
                ids = {"zone": zone.id, "name": _domain(ctx.settings)}
                return Existing(_with_superseded(ids, _still_superseded(ctx, self.name)), live)
        return None

    def create(self, ctx: StepContext) -> Ids:
        return self._put(ctx, _target(ctx), _still_superseded(ctx, self.name))

    def converge(self, ctx: StepContext, existing: Existing[ResourceRecordSetOutputTypeDef]) -> Converged:
        ids = existing.ids
        target = _target(ctx)
        zone = find_zone(ctx)
        changes: list[str] = []
        made: dict[str, Ids] = {}
        if (ids["zone"], normalise(ids["name"])) != (zone.id, _domain(ctx.settings)):

            def move() -> None:
                made["ids"] = self._put(ctx, target, _replacing(ids))

            ctx.change(changes, f"alias {_domain(ctx.settings)} made for the new domain", move)
            return Converged(made.get("ids", ids), changes)
        live = existing.live
        if live["Type"] != "A" or "AliasTarget" not in live:
            raise self._foreign(ids["zone"], live)
        if not _same_target(live, target):
            record = _alias(ids["name"], target)
            ctx.change(
                changes,
                f"alias target set to {target['DNSName']}",
                lambda: self._submitted.append(_change(ctx, ids["zone"], "UPSERT", record)),
            )
        return Converged(ids, changes)

    def wait(self, ctx: StepContext, ids: Ids) -> None:
        while self._submitted:
            _insync(ctx, self._submitted[0], f"the alias {normalise(ids['name'])} on every Route 53 name server")
            self._submitted.pop(0)

    def remove(self, ctx: StepContext, ids: Ids) -> str | None:
        return _delete_alias(ctx, ids)

    def _put(self, ctx: StepContext, target: AliasTargetTypeDef, superseded: list[Ids]) -> Ids:
        """Look at the name first: an A, AAAA or CNAME there that is not an alias to our NLB is the user's
        (an UPSERT would silently replace it). Ours: recorded before the UPSERT (records carry no tags)."""
        zone = find_zone(ctx)
        name = _domain(ctx.settings)
        for live in _at_name(ctx, zone.id, name):
            if not (live["Type"] == "A" and _points_at(live, target["DNSName"])):
                raise self._foreign(zone.id, live)
        ids = _with_superseded({"zone": zone.id, "name": name}, superseded)
        ctx.remember(self.name, ids)
        self._submitted.append(_change(ctx, zone.id, "UPSERT", _alias(name, target)))
        return ids

    def _foreign(self, zone: str, live: ResourceRecordSetOutputTypeDef) -> DeployerError:
        name = normalise(live["Name"])
        return DeployerError(
            f"The hosted zone {zone} already has a {live['Type']} record {name} ({_describe(live)}) that is not "
            "an alias to this stack's load balancer: it is not overwritten",
            where=f"step '{self.name}', {self.resource} {name}",
            todo="If the name is free to move to this site, delete that record from the zone and run again; "
            "otherwise choose another --domain",
        )


def _at_name(ctx: StepContext, zone: str, name: str) -> list[ResourceRecordSetOutputTypeDef]:
    """The A, AAAA and CNAME record sets at the name (weighted or latency sets may be several per type)."""
    return [record for record in _records_at(ctx, zone, name, "A", page_size=10) if record["Type"] in ALIAS_CONFLICTS]


def _target(ctx: StepContext) -> AliasTargetTypeDef:
    """The NLB as an alias target: its own canonical hosted zone (not the user's zone) and DNS name
    (route53 model, AliasTarget.HostedZoneId: "the hosted zone ID for the load balancer")."""
    arn = ctx.ids(LOAD_BALANCER_STEP)["arn"]
    (balancer,) = ctx.clients.elbv2.describe_load_balancers(LoadBalancerArns=[arn])["LoadBalancers"]
    return {
        "HostedZoneId": balancer["CanonicalHostedZoneId"],
        "DNSName": balancer["DNSName"],
        "EvaluateTargetHealth": EVALUATE_TARGET_HEALTH,
    }


def _alias(name: str, target: AliasTargetTypeDef) -> ResourceRecordSetUnionTypeDef:
    return {"Name": name, "Type": "A", "AliasTarget": target}  # an alias has no TTL (route53 model)


def _same_target(live: ResourceRecordSetOutputTypeDef, target: AliasTargetTypeDef) -> bool:
    alias = live.get("AliasTarget")
    if alias is None:
        return False
    return (
        alias["HostedZoneId"] == target["HostedZoneId"]
        and _alias_name(alias["DNSName"]) == normalise(target["DNSName"])
        and alias["EvaluateTargetHealth"] == target["EvaluateTargetHealth"]
    )


def _describe(live: ResourceRecordSetOutputTypeDef) -> str:
    alias = live.get("AliasTarget")
    if alias is not None:
        return f"alias to {normalise(alias['DNSName'])}"
    return ", ".join(entry["Value"] for entry in live.get("ResourceRecords", [])) or "no values"


def _delete_alias(ctx: StepContext, ids: Ids) -> str | None:
    """Delete the recorded alias, sent back exactly as read (route53 model: "you must specify all the same
    values"). Only an A alias to the stack's NLB is deleted: whatever else is now at the name (someone
    replaced the record) is left alone and reported."""
    live = _at_name(ctx, ids["zone"], ids["name"])
    balancer = ctx.recorded(LOAD_BALANCER_STEP) or {}
    ours = [record for record in live if record["Type"] == "A" and _points_at(record, balancer.get("dns_name", ""))]
    if ours:
        _delete_record(ctx, ids["zone"], ours[0])
        return None
    return f"kept: {normalise(ids['name'])} is now {_describe(live[0])}" if live else None


def _points_at(live: ResourceRecordSetOutputTypeDef, dns_name: str) -> bool:
    alias = live.get("AliasTarget")
    return alias is not None and bool(dns_name) and _alias_name(alias["DNSName"]) == normalise(dns_name)


def _alias_name(dns_name: str) -> str:
    """Route 53 answers an alias's DNSName lower-cased with a trailing dot, and an ELB name may be given
    with the "dualstack." prefix (route53 model, AliasTarget.DNSName)."""
    return normalise(dns_name).removeprefix("dualstack.")
