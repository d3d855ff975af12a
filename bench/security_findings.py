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
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SEVERITIES = ("critical", "high", "medium", "low", "informational")

# State-file values that name or identify a resource: ARNs and AWS ids (vpc-…, subnet-…, sg-…, acl-…).
# Names (ECR repository, log group, roles, cluster, …) all start with or contain the stack name. Every
# value of a step's ids is looked at, whatever its key, so a new step's resources are the stack's
# without a change here; an availability zone or an image tag is none of these and names nothing.
_AWS_ID = re.compile(r"^[a-z]+-[0-9a-f]{8,17}$")


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
    service: str = ""  # Prowler's service of the resource (`resources[].group.name`: ecs, elbv2, vpc, ...)


@dataclass(frozen=True)
class Artefact:
    """A FAIL that moto produces and AWS would not: `check_id` on a resource whose uid matches `resource`
    and, when `steps` names any, contains an id that one of those state steps recorded."""

    check_id: str
    resource: str  # a regular expression searched in the resource uid
    why: str
    steps: tuple[str, ...] = ()

    def matches(self, finding: Finding, identity: StackIdentity) -> bool:
        if finding.check_id != self.check_id or re.search(self.resource, finding.uid) is None:
            return False
        recorded = [value for step in self.steps for value in identity.step_ids.get(step, ())]
        return not self.steps or any(value in finding.uid for value in recorded)


# Each filter names the check and the resources it applies to, and why moto (not the stack) is the cause.
MOTO_ARTEFACTS = (
    # moto starts no Fargate tasks, so no network interface ever uses the task security group; on AWS the
    # service's tasks attach it to their ENIs. (The check skips default groups; only the stack's own fire.)
    Artefact(
        "ec2_securitygroup_not_used",
        r":security-group/sg-",
        "moto runs no tasks, so no network interface uses the task security group",
        steps=("task-security-group",),
    ),
)


@dataclass(frozen=True)
class StackIdentity:
    """What marks a resource as the stack's: its names and ids (state file, plus ids AWS made for the
    stack's VPC: its default security group and network ACL), and its VPC."""

    stack: str
    tokens: frozenset[str]
    vpc_ids: frozenset[str]
    step_ids: Mapping[str, frozenset[str]] = field(default_factory=dict)  # state step -> the ids it recorded

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
    step_ids: dict[str, frozenset[str]] = {}
    for resource in state.get("resources", []):
        ids: Mapping[str, Any] = resource.get("ids", {})
        named = {v for v in _strings(ids.values()) if v.startswith("arn:") or _AWS_ID.match(v) or stack in v}
        tokens |= named
        step_ids[str(resource.get("step"))] = frozenset(named)
        if resource.get("step") == "vpc" and isinstance(ids.get("id"), str):
            vpc_ids.add(ids["id"])
    return StackIdentity(stack, frozenset(tokens), frozenset(vpc_ids), step_ids)


def _strings(values: Iterable[Any]) -> Iterator[str]:
    """The strings among `values`, and inside the lists among them (a step may record several ids)."""
    for value in values:
        if isinstance(value, str):
            yield value
        elif isinstance(value, list):
            yield from _strings(value)


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
            group = resource.get("group") or {}
            findings.append(
                Finding(
                    check_id=check_id,
                    severity=severity,
                    status=status,
                    uid=str(resource.get("uid", "")),
                    name=str(resource.get("name", "")),
                    vpc_id=vpc_id if isinstance(vpc_id, str) else "",
                    message=message,
                    service=str(group.get("name", "")) if isinstance(group, dict) else "",
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
    seen_services: set[str] = field(default_factory=set)  # Prowler services with a PASS or FAIL on the stack


def classify(
    findings: Iterable[Finding], identity: StackIdentity, artefacts: Iterable[Artefact] = MOTO_ARTEFACTS
) -> Scan:
    filters = tuple(artefacts)
    scan = Scan()
    for finding in findings:
        owned = identity.owns(finding)
        if owned and finding.status in ("PASS", "FAIL"):
            scan.seen_services.add(finding.service)
        if finding.status == "PASS":
            scan.stack_passes += 1 if owned else 0
        elif finding.status != "FAIL":
            continue
        elif any(artefact.matches(finding, identity) for artefact in filters):
            scan.artefacts.append(finding)
        elif owned:
            scan.stack.append(finding)
        else:
            scan.account.append(finding)
    return scan


def classify_stacks(findings: list[Finding], identities: list[StackIdentity]) -> list[Scan]:
    """`classify` for each of several stacks scanned together (one moto server, one Prowler run): a FAIL
    on another of them is neither this stack's nor account-level."""
    scans = []
    for identity in identities:
        others = [other for other in identities if other is not identity]
        scans.append(classify([f for f in findings if not any(o.owns(f) for o in others)], identity))
    return scans


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


# --- The gate (issue 11, "Prove it"): what CI refuses on the stack's own FAILs -------------------------

GATED_SEVERITIES = frozenset({"critical", "high"})
# The public default keeps public IPs on the tasks (no NAT gateway to pay for): the one high FAIL issue 11
# accepts, and only on the public network; `network = "private"` clears it.
ALLOWED_ON_PUBLIC = frozenset({"ecs_service_no_assign_public_ip"})
# Prowler services that must have judged (PASS or FAIL) at least one of the stack's resources: a scan that
# skipped one of them (a moto error, a renamed service, an identity that no longer matches) would pass
# the gate by seeing nothing, so it fails instead.
REQUIRED_SERVICES = frozenset({"cloudwatch", "ec2", "ecs", "elbv2", "vpc"})
# The gate's second stack: the private network, a log key of its own, HTTPS on a domain (in a hosted zone
# the gate makes first, as a user has one) with the FIPS and post-quantum TLS policy: the settings a careful
# user adds; a FAIL the README's table says one of them clears must not remain on it.
PRIVATE_SETTINGS = (
    'network = "private"',
    'log_kms_key = "create"',
    'domain = "www.private-site.example"',
    'tls_policy = "ELBSecurityPolicy-TLS13-1-2-FIPS-PQ-2025-09"',
)
SECURITY_HEADING = "## Security"
TABLE_HEADER = ("Prowler check", "severity", "why it remains", "the setting that clears it")
_CHECK_CELL = re.compile(r"^`([a-z0-9_]+)`$")


@dataclass(frozen=True)
class Listed:
    """A row of the README's security table: a medium or low FAIL the default stack keeps, with why."""

    check_id: str
    severity: str
    why: str
    clears: str

    @property
    def public_only(self) -> bool:
        """A FAIL that one of PRIVATE_SETTINGS clears remains on the public default only."""
        return any(setting.split(" = ")[0] in self.clears for setting in PRIVATE_SETTINGS)


class ReadmeTableError(ValueError):
    """The README's security table is missing or malformed: the gate cannot tell listed FAILs apart."""


def readme_security_table(text: str) -> dict[str, Listed]:
    """Check id -> its row, from the table in the README's `## Security` section whose header is
    TABLE_HEADER (`| Prowler check | severity | why it remains | the setting that clears it |`)."""
    section = re.search(rf"^{re.escape(SECURITY_HEADING)}\s*$(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    if section is None:
        raise ReadmeTableError(f"README.md has no '{SECURITY_HEADING}' section")
    lines = [line.strip() for line in section.group(1).splitlines()]
    header = f"| {' | '.join(TABLE_HEADER)} |"
    if header not in lines:
        raise ReadmeTableError(f"README.md's '{SECURITY_HEADING}' section has no table headed {header}")
    listed: dict[str, Listed] = {}
    for line in lines[lines.index(header) + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        check = _CHECK_CELL.match(cells[0]) if len(cells) == len(TABLE_HEADER) else None
        if check is None or cells[1] not in SEVERITIES or not cells[2] or not cells[3]:
            raise ReadmeTableError(
                f"README.md's security table row {line!r}: expected a check id in backticks, a severity "
                f"({', '.join(SEVERITIES)}), why it remains and the setting that clears it (or 'none')"
            )
        listed[check.group(1)] = Listed(check.group(1), cells[1], cells[2], cells[3])
    if not listed:
        raise ReadmeTableError(f"README.md's security table {header} has no rows")
    return listed


@dataclass(frozen=True)
class Refusal:
    """A FAIL of the stack's that the gate refuses, and the rule it breaks."""

    finding: Finding
    rule: str

    def describe(self) -> str:
        return f"{self.finding.check_id} ({self.finding.severity}, {self.rule}) on {self.finding.uid}"


def refusals(scan: Scan, network: str, listed: Mapping[str, Listed]) -> list[Refusal]:
    """The stack's FAILs the gate refuses on `network` ("public" or "private"): high or critical ones (but
    the public IP on the public network), and medium or low ones the README's table does not list (or
    lists as cleared by the private network, on the private network)."""
    refused = []
    for finding in scan.stack:
        if finding.severity in GATED_SEVERITIES:
            if network != "public" or finding.check_id not in ALLOWED_ON_PUBLIC:
                refused.append(Refusal(finding, f"{finding.severity} on the {network} network"))
        elif finding.check_id not in listed:
            refused.append(Refusal(finding, "not in README.md's security table"))
        elif network == "private" and listed[finding.check_id].public_only:
            refused.append(Refusal(finding, f"the table says {listed[finding.check_id].clears} clears it"))
    return refused


def unseen_services(scan: Scan) -> list[str]:
    """REQUIRED_SERVICES that judged none of the stack's resources: the scan did not see the stack."""
    return sorted(REQUIRED_SERVICES - scan.seen_services)


def verdict(stack: str, network: str, scan: Scan, listed: Mapping[str, Listed]) -> str:
    """One paragraph: why the gate refuses the `network` stack, naming each offending check id, severity and
    resource and what to do; "" when it passes."""
    unseen = unseen_services(scan)
    if unseen:
        return (
            f"Security gate: the scan of the {network} stack '{stack}' saw none of its resources in "
            f"{', '.join(unseen)} (PASS or FAIL), so it proves nothing. Check that Prowler scanned those "
            f"services against the moto endpoint (its log) and that the stack's identity (state file, VPC) "
            f"still matches the findings' resources (bench/security_findings.py)."
        )
    refused = refusals(scan, network, listed)
    if not refused:
        return ""
    return (
        f"Security gate: the {network} stack '{stack}' has {len(refused)} refused FAIL(s): "
        f"{'; '.join(r.describe() for r in refused)}. Fix the stack; a medium or low FAIL that must remain "
        f"goes in README.md's '{SECURITY_HEADING}' table with why it remains and the setting that clears it."
    )
