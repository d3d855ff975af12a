"""Make in-process moto's Route 53 answer as AWS does where it does not (moto 5.2), with botocore hooks.

* ListHostedZonesByName: AWS lists every zone from `DNSName` on, in the order of reversed labels, a page
  at a time with IsTruncated / NextDNSName / NextHostedZoneId (route53 model, ListHostedZonesByName);
  moto answers only the zones with exactly that name, in one page.
* ChangeResourceRecordSets: AWS answers a change with a new change ID, PENDING until the change reaches
  every name server (GetChange then INSYNC: "within 60 seconds", route53 model ChangeResourceRecordSets);
  moto answers INSYNC at once with one constant ID.
* DELETE: AWS deletes the record set only if every value matches the zone's, and answers
  InvalidChangeBatch "Tried to delete resource record set [name='x.', type='A'] but it was not found" or
  "... but the values provided do not match the current values" (boto/boto#2887,
  kubernetes-sigs/external-dns#732); moto checks its journal of earlier requests instead of the zone
  (a record deleted since, or one whose values were replaced, still passes; a missing one is answered
  InvalidInput) and then deletes whatever has that name and type.
* ListResourceRecordSets: AWS answers names in lower case with `*` as `\\052` and an alias's DNSName in
  lower case with a trailing dot ("DNS domain name format",
  https://docs.aws.amazon.com/Route53/latest/DeveloperGuide/DomainNameFormat.html); moto answers them as
  sent. AWS answers no TTL on an alias (route53 model, ResourceRecordSet.TTL); moto answers TTL 0, which a
  DELETE sending the record back would carry.
* PriorRequestNotComplete while an earlier change of the zone is applied: `zone_busy` injects it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from botocore.awsrequest import AWSResponse
from moto.route53.models import FakeZone, RecordSet, Route53Backend, route53_backends

from tests.conftest import ACCOUNT
from tests.faults import Injection, error_answer, inject_errors, keep_params, ok_answer

SERVICE = "route-53"


@dataclass
class Route53Emulation:
    """How the emulated Route 53 answers: page size of zone listings, GetChange polls before INSYNC."""

    zone_page_size: int = 100
    pending_polls: int = 1
    changes: list[dict[str, Any]] = field(default_factory=list)  # every change batch sent, in order
    _polls: dict[str, int] = field(default_factory=dict)

    def install(self, client: Any) -> Route53Emulation:
        events = client.meta.events
        events.register(f"before-parameter-build.{SERVICE}", keep_params)
        events.register(f"before-call.{SERVICE}.ListHostedZonesByName", self._zones_by_name)
        events.register(f"before-call.{SERVICE}.ChangeResourceRecordSets", self._deletes)
        events.register(f"after-call.{SERVICE}.ChangeResourceRecordSets", self._pending)
        events.register(f"after-call.{SERVICE}.GetChange", self._progress)
        events.register(f"after-call.{SERVICE}.ListResourceRecordSets", _as_aws_lists)
        return self

    def _zones_by_name(self, context: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        params = context.get("api_params", {})
        zones = sorted(_backend().zones.values(), key=_zone_order)
        start = params.get("DNSName")
        if start is not None:
            key = (_reversed(start), params.get("HostedZoneId", ""))
            zones = [zone for zone in zones if _zone_order(zone) >= key]
        size = min(int(params.get("MaxItems", self.zone_page_size)), self.zone_page_size)
        page, rest = zones[:size], zones[size:]
        answer: dict[str, Any] = {
            "HostedZones": [_zone(zone) for zone in page],
            "IsTruncated": bool(rest),
            "MaxItems": str(size),
        }
        if start is not None:
            answer["DNSName"] = start
        if rest:
            answer.update(NextDNSName=rest[0].name, NextHostedZoneId=_zone_id(rest[0]))
        return ok_answer(answer)

    def _deletes(self, context: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        """A batch of DELETEs is checked against the zone and applied here, as AWS does; others go to moto."""
        params = context.get("api_params", {})
        self.changes.append(params.get("ChangeBatch", {}))
        changes = params.get("ChangeBatch", {}).get("Changes", [])
        if not changes or any(change["Action"] != "DELETE" for change in changes):
            return None
        zone = _backend().get_hosted_zone(params["HostedZoneId"])
        for change in changes:
            wanted = change["ResourceRecordSet"]
            live = _live(zone, wanted)
            described = f"[name='{_aws_name(wanted['Name'])}', type='{wanted['Type']}']"
            if live is None:
                return error_answer(
                    "InvalidChangeBatch", f"[Tried to delete resource record set {described} but it was not found]"
                )
            if not _same(live, wanted):
                return error_answer(
                    "InvalidChangeBatch",
                    f"[Tried to delete resource record set {described} but the values provided do not match "
                    "the current values]",
                )
        for change in changes:
            live = _live(zone, change["ResourceRecordSet"])
            zone.rrsets = [record for record in zone.rrsets if record is not live]
        return ok_answer(
            {"ChangeInfo": {"Id": "/change/pending", "Status": "PENDING", "SubmittedAt": "2026-01-01T00:00:00Z"}}
        )

    def _pending(self, parsed: dict[str, Any], **_: Any) -> None:
        if "ChangeInfo" in parsed:
            change_id = f"/change/C{len(self._polls) + 1:012d}"
            self._polls[change_id.rsplit("/", 1)[-1]] = 0
            parsed["ChangeInfo"].update(Id=change_id, Status="PENDING")

    def _progress(self, parsed: dict[str, Any], **_: Any) -> None:
        info = parsed.get("ChangeInfo", {})
        change_id = str(info.get("Id", "")).rsplit("/", 1)[-1]
        if change_id in self._polls:
            self._polls[change_id] += 1
            info["Status"] = "INSYNC" if self._polls[change_id] > self.pending_polls else "PENDING"

    def polls(self) -> int:
        """GetChange calls answered so far, over every change."""
        return sum(self._polls.values())


def emulate_route53(client: Any, zone_page_size: int = 100, pending_polls: int = 1) -> Route53Emulation:
    return Route53Emulation(zone_page_size, pending_polls).install(client)


def zone_busy(client: Any, times: int = 1) -> Injection:
    """The next `times` ChangeResourceRecordSets are refused as AWS refuses a change while the zone is
    still applying the previous one (route53 model, PriorRequestNotComplete)."""
    return inject_errors(
        client,
        "ChangeResourceRecordSets",
        "PriorRequestNotComplete",
        "The request was rejected because Route 53 was still processing a prior request.",
        times,
    )


def _backend() -> Route53Backend:
    return route53_backends[ACCOUNT]["aws"]


def _reversed(name: str) -> str:
    return ".".join(reversed(name.lower().rstrip(".").split(".")))


def _zone_id(zone: FakeZone) -> str:
    return str(zone.id).rsplit("/", 1)[-1]  # moto keeps "/hostedzone/<id>"


def _zone_order(zone: FakeZone) -> tuple[str, str]:
    return _reversed(zone.name), _zone_id(zone)


def _zone(zone: FakeZone) -> dict[str, Any]:
    return {
        "Id": f"/hostedzone/{_zone_id(zone)}",
        "Name": zone.name,
        "CallerReference": zone.caller_reference,
        "Config": {"PrivateZone": bool(zone.private_zone)},
        "ResourceRecordSetCount": len(zone.rrsets),
    }


def _aws_name(name: str) -> str:
    """A name as Route 53 answers it: lower case, trailing dot, `*` as \\052."""
    return name.lower().rstrip(".").replace("*", "\\052") + "."


def _live(zone: FakeZone, wanted: dict[str, Any]) -> RecordSet | None:
    name = _aws_name(wanted["Name"])
    for record in zone.rrsets:
        if _aws_name(record.name) == name and record.type == wanted["Type"]:
            return record
    return None


def _same(live: RecordSet, wanted: dict[str, Any]) -> bool:
    if live.alias_target or "AliasTarget" in wanted:
        alias, sent = live.alias_target or {}, wanted.get("AliasTarget", {})
        return (
            str(alias.get("HostedZoneId")) == sent.get("HostedZoneId")
            and _aws_name(str(alias.get("DNSName", ""))) == _aws_name(sent.get("DNSName", ""))
            and str(alias.get("EvaluateTargetHealth")).lower() == str(sent.get("EvaluateTargetHealth")).lower()
        )
    values = sorted(str(value).lower() for value in live.records)
    sent_values = sorted(entry["Value"].lower() for entry in wanted.get("ResourceRecords", []))
    return int(live.ttl or 0) == int(wanted.get("TTL", -1)) and values == sent_values


def _as_aws_lists(parsed: dict[str, Any], **_: Any) -> None:
    for record in parsed.get("ResourceRecordSets", []):
        record["Name"] = _aws_name(record["Name"])
        alias = record.get("AliasTarget")
        if alias is not None:
            alias["DNSName"] = _aws_name(alias["DNSName"])
            record.pop("TTL", None)  # moto answers TTL 0 on an alias; AWS answers none (an alias has no TTL)
