"""bench/security.py's reading of Prowler's findings and issue 11's gate, on a trimmed real output (no Prowler
run here): the gate's rules on recorded findings, and its table read from the real README.

tests/data/prowler/ holds a state file and 13 of the 2,528 findings of one run of Prowler 5.46.0 on the
default stack in a moto server (bench/security.py's commands; `compliance`, `remediation` and long texts cut).
In that run the stack's VPC was vpc-cbfdcd307d9cb9c17, whose default network ACL and security group are
below; vpc-7c4da1c7e48ab30e3 is moto's default VPC, which is not the stack's.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bench import common, security
from bench.security import before_after, provision_config
from bench.security_findings import (
    ALLOWED_ON_PUBLIC,
    PRIVATE_SETTINGS,
    REQUIRED_SERVICES,
    SEVERITIES,
    Finding,
    Listed,
    ReadmeTableError,
    Scan,
    classify,
    classify_stacks,
    load_findings,
    readme_security_table,
    refusals,
    severity_figures,
    severity_rows,
    stack_identity,
    unseen_services,
    verdict,
)

DATA = Path(__file__).resolve().parent / "data" / "prowler"
STACK_VPC = "vpc-cbfdcd307d9cb9c17"
MOTO_DEFAULT_VPC = "vpc-7c4da1c7e48ab30e3"
STACK_NACL = "acl-0a6a349d3d3cb4231"  # the stack VPC's default network ACL (what vpc_owned_ids finds)
STACK_DEFAULT_SG = "sg-3bf60ea20c336c9b1"


def state() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((DATA / "state.json").read_text())
    return document


@pytest.fixture
def findings() -> list[Finding]:
    return load_findings(DATA / "scan.ocsf.json")


@pytest.fixture
def scan(findings: list[Finding]) -> Scan:
    return classify(findings, stack_identity(state(), [STACK_NACL, STACK_DEFAULT_SG]))


def checks(findings: list[Finding]) -> list[str]:
    return sorted(f"{finding.check_id} {finding.uid.rsplit('/', 1)[-1]}" for finding in findings)


def test_parses_each_resource_of_each_finding(findings: list[Finding]) -> None:
    assert len(findings) == 13
    service = next(f for f in findings if f.check_id == "ecs_service_no_assign_public_ip")
    assert service == Finding(
        check_id="ecs_service_no_assign_public_ip",
        severity="high",
        status="FAIL",
        uid="arn:aws:ecs:us-east-1:123456789012:service/flask-site-cluster/flask-site-web",
        name="flask-site-cluster/flask-site-web",
        vpc_id="",
        message="ECS Service flask-site-web has automatic public IP assignment.",
        service="ecs",
    )
    default_groups = [f for f in findings if f.check_id == "ec2_securitygroup_default_restrict_traffic"]
    assert sorted(f.vpc_id for f in default_groups) == sorted([STACK_VPC, MOTO_DEFAULT_VPC])


def test_identity_from_the_state_file() -> None:
    identity = stack_identity(state(), [STACK_NACL])
    assert identity.stack == "flask-site"
    assert identity.vpc_ids == {STACK_VPC}
    assert {STACK_VPC, STACK_NACL, "/ecs/flask-site", "flask-site-nlb", "sg-68104917fc85be3b5"} <= identity.tokens
    assert "us-east-1b" not in identity.tokens  # an availability zone names no resource of the stack's


def test_the_stacks_fails_by_arn_name_vpc_and_vpc_owned_ids(scan: Scan) -> None:
    assert checks(scan.stack) == sorted(
        [
            f"ec2_networkacl_allow_ingress_any_port {STACK_NACL}",  # an id of the stack's VPC, from moto
            f"ec2_securitygroup_default_restrict_traffic {STACK_DEFAULT_SG}",  # its metadata's vpc_id
            "ecs_service_no_assign_public_ip flask-site-web",  # the service's ARN
            "cloudwatch_log_group_retention_policy_specific_days_enabled flask-site:*",  # the log group's name
            f"vpc_flow_logs_enabled {STACK_VPC}",  # the VPC's id in the ARN
        ]
    )
    assert scan.stack_passes == 1  # elbv2_cross_zone_load_balancing_enabled on the stack's NLB


def test_account_level_fails_stay_apart(scan: Scan) -> None:
    assert checks(scan.account) == sorted(
        [
            "ec2_ebs_snapshots_encrypted snap-447c1b41ca2d2d1fe",  # moto's AMI catalogue (not loaded any more)
            "ec2_networkacl_allow_ingress_any_port acl-75861828fb92eb3cc",  # moto's default VPC
            "ec2_securitygroup_default_restrict_traffic sg-aa252f7dcfb7ccb77",
            "ecr_registry_scan_images_on_push_enabled 123456789012",
            "iam_password_policy_minimum_length_14 arn:aws:iam:us-east-1:123456789012:password-policy",
            f"vpc_flow_logs_enabled {MOTO_DEFAULT_VPC}",
        ]
    )


def test_the_registry_listing_the_stacks_repository_is_still_account_level(findings: list[Finding]) -> None:
    """Prowler's model of the ECR registry lists the repositories (the stack's among them); the finding is
    about the registry's scanning configuration, which the stack does not set."""
    raw = json.loads((DATA / "scan.ocsf.json").read_text())
    registry = next(f for f in raw if f["metadata"]["event_code"] == "ecr_registry_scan_images_on_push_enabled")
    assert "flask-site" in json.dumps(registry["resources"][0]["data"]["metadata"])
    scan = classify(findings, stack_identity(state(), [STACK_NACL]))
    assert "ecr_registry_scan_images_on_push_enabled" in {f.check_id for f in scan.account}


def test_without_the_vpc_owned_ids_the_default_acl_is_not_attributed(findings: list[Finding]) -> None:
    """Prowler's network ACL model has no VPC id: the harness asks moto for the stack VPC's ACLs."""
    scan = classify(findings, stack_identity(state()))
    assert f"ec2_networkacl_allow_ingress_any_port {STACK_NACL}" in checks(scan.account)
    # the default security group carries its vpc_id, so it is the stack's either way
    assert f"ec2_securitygroup_default_restrict_traffic {STACK_DEFAULT_SG}" in checks(scan.stack)


def test_moto_artefacts_are_filtered_by_check_and_resource(scan: Scan, findings: list[Finding]) -> None:
    assert checks(scan.artefacts) == [
        "ec2_securitygroup_not_used sg-68104917fc85be3b5",  # the stack's task group: moto runs no tasks
    ]
    # the same checks on a resource the filters do not name are not artefacts
    unused = next(f for f in findings if f.check_id == "ec2_securitygroup_not_used")
    renamed = replace(unused, uid="arn:aws:ec2:us-east-1:123456789012:network-interface/eni-0123456789abcdef0")
    other = classify([renamed], stack_identity(state()))
    assert other.artefacts == []
    assert other.stack == [renamed]  # still in the stack's VPC: a real FAIL of the stack
    # nor is the check on another security group of the stack's: only the task group is unused under moto
    nlb_group = replace(unused, uid=unused.uid.replace("sg-68104917fc85be3b5", "sg-e1aa198cbbd8de9a5"))
    assert classify([nlb_group], stack_identity(state())).stack == [nlb_group]
    # and another check on the filtered resource is not one either
    readonly = replace(unused, check_id="ec2_securitygroup_allow_ingress_from_internet_to_any_port")
    assert classify([readonly], stack_identity(state())).stack == [readonly]


def test_passes_and_manual_findings_are_not_fails(findings: list[Finding]) -> None:
    manual = [replace(f, status="MANUAL") for f in findings]
    scan = classify(manual, stack_identity(state(), [STACK_NACL]))
    assert (scan.stack, scan.account, scan.artefacts, scan.stack_passes) == ([], [], [], 0)


def test_counts_by_severity(scan: Scan) -> None:
    assert severity_figures(scan.stack) == {
        "critical": {},
        "high": {
            "ec2_networkacl_allow_ingress_any_port": 1,
            "ec2_securitygroup_default_restrict_traffic": 1,
            "ecs_service_no_assign_public_ip": 1,
        },
        "medium": {"cloudwatch_log_group_retention_policy_specific_days_enabled": 1, "vpc_flow_logs_enabled": 1},
        "low": {},
        "informational": {},
    }
    rows = severity_rows("stack", scan.stack)
    assert rows[0] == "stack: 5 FAILs"
    assert rows[3] == "  high              3  ec2_networkacl_allow_ingress_any_port"
    assert rows[4].strip() == "ec2_securitygroup_default_restrict_traffic"


README = Path(__file__).resolve().parent.parent / "README.md"
PUBLIC_IP = "ecs_service_no_assign_public_ip"
RETENTION = "cloudwatch_log_group_retention_policy_specific_days_enabled"
SUBNETS = "vpc_subnet_separate_private_public"


def listed() -> dict[str, Listed]:
    return readme_security_table(README.read_text(encoding="utf-8"))


def stack_fail(scan: Scan, check_id: str) -> Finding:
    return next(f for f in scan.stack if f.check_id == check_id)


def seen(*fails: Finding) -> Scan:
    """A scan that saw the stack in every required service, with these FAILs on it."""
    return Scan(stack=list(fails), stack_passes=20, seen_services=set(REQUIRED_SERVICES))


def refused(scan: Scan, network: str) -> list[str]:
    return sorted(f"{r.finding.check_id} {r.finding.severity}" for r in refusals(scan, network, listed()))


def test_the_readme_table_parser_reads_the_real_readme() -> None:
    table = listed()
    assert table[PUBLIC_IP] == Listed(
        PUBLIC_IP, "high", "public default: tasks get public IPs, no NAT gateway to pay for", '`network = "private"`'
    )
    assert {RETENTION, SUBNETS, "elbv2_logging_enabled"} <= table.keys()
    assert table[PUBLIC_IP].public_only and table[SUBNETS].public_only
    assert not table[RETENTION].public_only  # log_retention_days clears it, on either network
    assert all(row.why and row.clears for row in table.values())


def test_every_exempt_high_is_in_the_readme_table_as_public_only() -> None:
    table = listed()
    assert all(check in table and table[check].public_only for check in ALLOWED_ON_PUBLIC)


HEAD = "## Security\n| Prowler check | severity | why it remains | the setting that clears it |\n|---|---|---|---|\n"


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("# t\n## Other\n", "no '## Security' section"),
        ("## Security\n\n| check | severity |\n|---|---|\n", "no table headed"),
        (
            HEAD + "| vpc_flow_logs_enabled | medium | cost | none |\n",
            "expected a check id in backticks",
        ),
        (
            HEAD + "| `vpc_flow_logs_enabled` | Medium | cost | none |\n",
            "a severity",
        ),
        (
            HEAD + "| `vpc_flow_logs_enabled` | medium | cost |  |\n",
            "the setting that clears it",
        ),
        (
            HEAD,
            "has no rows",
        ),
    ],
)
def test_a_missing_or_malformed_readme_table_is_refused(text: str, complaint: str) -> None:
    with pytest.raises(ReadmeTableError, match=complaint):
        readme_security_table(text)


def test_the_gate_refuses_the_recorded_stack_for_its_highs_and_its_unlisted_medium(scan: Scan) -> None:
    """The recorded scan (the default stack before the network hardening): the two highs of the default
    security group and network ACL, and the flow logs that no table row excuses; the public IP is exempt on
    the public network and the retention is listed."""
    assert not unseen_services(scan)
    assert refused(scan, "public") == [
        "ec2_networkacl_allow_ingress_any_port high",
        "ec2_securitygroup_default_restrict_traffic high",
        "vpc_flow_logs_enabled medium",
    ]
    paragraph = verdict("flask-site", "public", scan, listed())
    assert paragraph.startswith("Security gate: the public stack 'flask-site' has 3 refused FAIL(s): ")
    assert "\n" not in paragraph
    assert (
        f"ec2_networkacl_allow_ingress_any_port (high, high on the public network) on "
        f"arn:aws:ec2:us-east-1:123456789012:network-acl/{STACK_NACL}" in paragraph
    )
    assert "vpc_flow_logs_enabled (medium, not in README.md's security table) on " in paragraph
    assert PUBLIC_IP not in paragraph and RETENTION not in paragraph


def test_the_gate_passes_the_exempt_public_ip_and_listed_mediums(scan: Scan) -> None:
    passing = seen(
        stack_fail(scan, PUBLIC_IP), stack_fail(scan, RETENTION), replace(stack_fail(scan, RETENTION), check_id=SUBNETS)
    )
    assert refused(passing, "public") == []
    assert verdict("flask-site", "public", passing, listed()) == ""


def test_the_gate_refuses_an_unlisted_medium_or_low(scan: Scan) -> None:
    retention = stack_fail(scan, RETENTION)
    unlisted = [
        replace(retention, check_id="elbv2_deletion_protection"),
        replace(retention, severity="low", check_id="x_low"),
    ]
    assert refused(seen(*unlisted), "public") == ["elbv2_deletion_protection medium", "x_low low"]


def test_the_gate_refuses_any_high_or_critical_but_the_public_ip_on_public(scan: Scan) -> None:
    retention = stack_fail(scan, RETENTION)
    # a listed check id does not excuse a high: only ALLOWED_ON_PUBLIC does, and only on public
    high = replace(retention, severity="high")
    critical = replace(retention, severity="critical", check_id="iam_role_administratoraccess_policy")
    assert refused(seen(high, critical), "public") == [
        f"{RETENTION} high",
        "iam_role_administratoraccess_policy critical",
    ]


def test_the_private_network_refuses_the_public_ip_and_what_it_should_clear(scan: Scan) -> None:
    public_ip, retention = stack_fail(scan, PUBLIC_IP), stack_fail(scan, RETENTION)
    subnets = replace(retention, check_id=SUBNETS)
    private = seen(public_ip, retention, subnets)
    assert refused(private, "private") == [f"{PUBLIC_IP} high", f"{SUBNETS} medium"]
    paragraph = verdict("flask-site", "private", private, listed())
    assert f"{PUBLIC_IP} (high, high on the private network) on {public_ip.uid}" in paragraph
    assert f'{SUBNETS} (medium, the table says `network = "private"` clears it)' in paragraph
    assert refused(seen(retention), "private") == []  # a listed medium the private network keeps


def test_a_scan_that_did_not_see_the_stack_fails(findings: list[Finding]) -> None:
    # the same findings with an identity that matches nothing: every FAIL is account-level
    stranger = stack_identity({"stack": "other-site", "resources": []})
    blind = classify(findings, stranger)
    assert blind.stack == [] and blind.stack_passes == 0
    assert unseen_services(blind) == sorted(REQUIRED_SERVICES)
    paragraph = verdict("other-site", "public", blind, listed())
    assert paragraph.startswith("Security gate: the scan of the public stack 'other-site' saw none of its ")
    assert "cloudwatch, ec2, ecs, elbv2, vpc" in paragraph
    # one service missing is enough: here the scan judged nothing of the stack's in elbv2
    partial = classify([f for f in findings if f.service != "elbv2"], stack_identity(state(), [STACK_NACL]))
    assert unseen_services(partial) == ["elbv2"]
    assert "saw none of its resources in elbv2" in verdict("flask-site", "public", partial, listed())


def test_identity_takes_every_id_of_a_step_whatever_its_key() -> None:
    """A step another change adds (the stack's own network ACL, flow logs) is the stack's by its ids."""
    document = state()
    document["resources"].append(
        {
            "step": "network-acl",
            "ids": {"network_acl_id": "acl-0123456789abcdef0", "associations": ["aclassoc-0123456789abcdef0"]},
        }
    )
    tokens = stack_identity(document).tokens
    assert {"acl-0123456789abcdef0", "aclassoc-0123456789abcdef0"} <= tokens
    assert "us-east-1b" not in tokens


def test_the_private_variant_goes_to_the_provision_config() -> None:
    args = argparse.Namespace(setting=["retention_days = 30"])
    assert provision_config(args, "private").splitlines() == ["retention_days = 30", *PRIVATE_SETTINGS]
    assert provision_config(argparse.Namespace(setting=[]), "public") == ""


def test_before_and_after_by_network(scan: Scan) -> None:
    rows = before_after(
        [security.StackScan("public", "flask-site", 13, scan), security.StackScan("private", error="no")]
    )
    assert rows[0].split() == ["the", "stack", "FAILs", "by", "severity", *SEVERITIES]
    assert rows[1].split()[-5:] == ["0", "4", "11", "1", "0"]  # the recorded baseline
    assert rows[2].split()[-5:] == ["0", "3", "2", "0", "0"]  # the recorded sample
    assert rows[3].split()[-5:] == rows[4].split()[-5:] == ["-"] * 5  # no private stack before; not scanned


def test_a_missing_prowler_skips_the_bench_but_fails_the_gate(tmp_path: Path) -> None:
    args = argparse.Namespace(prowler=tmp_path / "no-prowler", gate=False, network="both")
    output = common.BenchOutput(echo=False)
    with pytest.raises(common.MissingPrerequisiteError, match=r"run scripts/setup-prowler\.sh"):
        security.measure(args, output)
    with pytest.raises(common.BenchError, match=r"run scripts/setup-prowler\.sh"):
        security.measure(argparse.Namespace(**{**vars(args), "gate": True}), output)


def test_two_stacks_scanned_together_keep_apart(findings: list[Finding]) -> None:
    """The gate scans both networks' stacks in one moto server: the other stack's FAILs are not account-level."""
    ours = stack_identity(state(), [STACK_NACL, STACK_DEFAULT_SG])
    other = stack_identity({"stack": "private-site", "resources": [{"step": "vpc", "ids": {"id": MOTO_DEFAULT_VPC}}]})
    ours_scan, other_scan = classify_stacks(findings, [ours, other])
    assert checks(ours_scan.stack) == checks(classify(findings, ours).stack)
    assert f"vpc_flow_logs_enabled {MOTO_DEFAULT_VPC}" in checks(other_scan.stack)
    assert f"vpc_flow_logs_enabled {MOTO_DEFAULT_VPC}" not in checks(ours_scan.account)
    assert f"vpc_flow_logs_enabled {STACK_VPC}" not in checks(other_scan.account)
    assert "iam_password_policy_minimum_length_14 arn:aws:iam:us-east-1:123456789012:password-policy" in checks(
        other_scan.account
    )
