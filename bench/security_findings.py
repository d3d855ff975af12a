"""Reading Prowler's findings (its JSON-OCSF output) for bench/security.py: which FAILs are on the stack's
own resources, which are account-level, and which are artefacts of moto.

Pure functions over parsed JSON, so tests/test_security_scan.py runs them on a checked-in sample without
running Prowler. Prowler writes one JSON array; each element is an OCSF Detection Finding with
`metadata.event_code` (the check id), `severity` ("High"), `status_code` ("PASS"/"FAIL"/"MANUAL") and
`resources` (`uid`: the ARN, `name`, `data.metadata`: Prowler's model of the resource, `vpc_id` among it
for security groups and subnets).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SEVERITIES = ("critical", "high", "medium", "low", "informational")

# State-file values that name or identify a resource: ARNs and AWS ids (vpc-…, subnet-…, sg-…, acl-…).
# Names (ECR repository, log group, roles, cluster, …) all start with or contain the stack name.
_AWS_ID = re.compile(r"^[a-z]+-[0-9a-f]{8,17}$")
_IDENTIFYING_KEYS = ("id", "arn", "name", "family", "vpc_id", "original_main_route_table")


@dataclass(frozen=True)
class Finding:
    """One resource of one Prowler finding."""

    check_id: str
    severity: str  # lower case, one of SEVERITIES
    status: str  # PASS, FAIL, MANUAL
    uid: str  # the resource's ARN (or an account-level pseudo-ARN)
    name: str
    vpc_id: str  # from Prowler's resource model, "" when it has none
    message: str


@dataclass(frozen=True)
class Artefact:
    """A FAIL that moto produces and AWS would not: `check_id` on a resource whose uid matches `resource`."""

    check_id: str
    resource: str  # a regular expression searched in the resource uid
    why: str

    def matches(self, finding: Finding) -> bool:
        return finding.check_id == self.check_id and re.search(self.resource, finding.uid) is not None


# Each filter names the check and the resources it applies to, and why moto (not the stack) is the cause.
MOTO_ARTEFACTS = (
    # moto starts no Fargate tasks, so no network interface ever uses the task security group; on AWS the
    # service's tasks attach it to their ENIs. (The check skips default groups; only the stack's own fire.)
    Artefact(
        "ec2_securitygroup_not_used",
        r":security-group/sg-",
        "moto runs no tasks, so no network interface uses the task security group",
    ),
    # moto seeds every account with the EBS snapshots behind its built-in AMI catalogue (over a thousand,
    # unencrypted); a real account owns none of them and the stack creates no snapshot.
    Artefact(
        "ec2_ebs_snapshots_encrypted",
        r":snapshot/snap-",
        "moto seeds its AMI catalogue's snapshots into every account",
    ),
)


@dataclass(frozen=True)
class StackIdentity:
    """What marks a resource as the stack's: its names and ids (state file, plus ids AWS made for the
    stack's VPC: its default security group and network ACL), and its VPC."""

    stack: str
    tokens: frozenset[str]
    vpc_ids: frozenset[str]

    def owns(self, finding: Finding) -> bool:
        if finding.vpc_id and finding.vpc_id in self.vpc_ids:
            return True
        if finding.name in self.tokens:
            return True
        return any(token in finding.uid for token in self.tokens)


def stack_identity(state: Mapping[str, Any], vpc_owned_ids: Iterable[str] = ()) -> StackIdentity:
    """The stack's identity from its state file (as provision.py writes it) and the ids of what AWS made
    inside its VPC (`vpc_owned_ids`: the default security group and network ACL, which the state does not
    record)."""
    stack = str(state["stack"])
    tokens: set[str] = {stack, *vpc_owned_ids}
    vpc_ids: set[str] = set()
    for resource in state.get("resources", []):
        ids: Mapping[str, Any] = resource.get("ids", {})
        for key in _IDENTIFYING_KEYS:
            value = ids.get(key)
            if isinstance(value, str) and (value.startswith("arn:") or _AWS_ID.match(value) or stack in value):
                tokens.add(value)
        if resource.get("step") == "vpc" and isinstance(ids.get("id"), str):
            vpc_ids.add(ids["id"])
    return StackIdentity(stack, frozenset(tokens), frozenset(vpc_ids))


def parse_findings(document: Iterable[Mapping[str, Any]]) -> list[Finding]:
    """Prowler's OCSF findings, one `Finding` per resource."""
    findings = []
    for item in document:
        check_id = str(item["metadata"]["event_code"])
        severity = str(item.get("severity", "")).lower()
        status = str(item.get("status_code", ""))
        message = str(item.get("status_detail") or item.get("message") or "")
        for resource in item.get("resources", []):
            data = resource.get("data") or {}
            metadata = data.get("metadata") if isinstance(data, dict) else None
            vpc_id = metadata.get("vpc_id") if isinstance(metadata, dict) else None
            findings.append(
                Finding(
                    check_id=check_id,
                    severity=severity,
                    status=status,
                    uid=str(resource.get("uid", "")),
                    name=str(resource.get("name", "")),
                    vpc_id=vpc_id if isinstance(vpc_id, str) else "",
                    message=message,
                )
            )
    return findings


def load_findings(path: Path) -> list[Finding]:
    document = json.loads(path.read_text())
    if not isinstance(document, list):
        raise ValueError(f"{path}: expected a JSON array of OCSF findings, got {type(document).__name__}")
    return parse_findings(document)


@dataclass
class Scan:
    """The FAILs of a scan, sorted: on the stack's resources, account-level, and moto's artefacts."""

    stack: list[Finding] = field(default_factory=list)
    account: list[Finding] = field(default_factory=list)
    artefacts: list[Finding] = field(default_factory=list)
    stack_passes: int = 0  # PASS findings on the stack's resources: the scan saw them


def classify(
    findings: Iterable[Finding], identity: StackIdentity, artefacts: Iterable[Artefact] = MOTO_ARTEFACTS
) -> Scan:
    filters = tuple(artefacts)
    scan = Scan()
    for finding in findings:
        owned = identity.owns(finding)
        if finding.status == "PASS":
            scan.stack_passes += 1 if owned else 0
        elif finding.status != "FAIL":
            continue
        elif any(artefact.matches(finding) for artefact in filters):
            scan.artefacts.append(finding)
        elif owned:
            scan.stack.append(finding)
        else:
            scan.account.append(finding)
    return scan


def by_severity(findings: Iterable[Finding]) -> dict[str, Counter[str]]:
    """Severity -> check id -> number of FAILs, every severity present (empty when none)."""
    table: dict[str, Counter[str]] = {severity: Counter() for severity in SEVERITIES}
    for finding in findings:
        table.setdefault(finding.severity, Counter())[finding.check_id] += 1
    return table


def severity_rows(title: str, findings: list[Finding]) -> list[str]:
    """A table: severity, FAIL count, the check ids (with a count when one check fails on several)."""
    table = by_severity(findings)
    rows = [f"{title}: {len(findings)} FAILs", f"  {'severity':<14}{'FAILs':>5}  checks"]
    for severity, checks in table.items():
        listed = [f"{check} x{count}" if count > 1 else check for check, count in sorted(checks.items())] or [""]
        rows.append(f"  {severity:<14}{checks.total():>5}  {listed[0]}".rstrip())
        rows += [f"  {'':<14}{'':>5}  {check}" for check in listed[1:]]
    return rows


def severity_figures(findings: list[Finding]) -> dict[str, dict[str, int]]:
    """`by_severity` as JSON: severity -> {check id: FAILs}."""
    return {severity: dict(sorted(checks.items())) for severity, checks in by_severity(findings).items()}
