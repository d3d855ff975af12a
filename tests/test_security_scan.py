"""bench/security.py's reading of Prowler's findings, on a trimmed real output (no Prowler run here).

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

from bench.security import gated, provision_config
from bench.security_findings import (
    Finding,
    Scan,
    classify,
    load_findings,
    severity_figures,
    severity_rows,
    stack_identity,
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
        "ec2_ebs_snapshots_encrypted snap-447c1b41ca2d2d1fe",
        "ec2_securitygroup_not_used sg-68104917fc85be3b5",  # the stack's task group: moto runs no tasks
    ]
    # the same checks on a resource the filters do not name are not artefacts
    unused = next(f for f in findings if f.check_id == "ec2_securitygroup_not_used")
    renamed = replace(unused, uid="arn:aws:ec2:us-east-1:123456789012:network-interface/eni-0123456789abcdef0")
    other = classify([renamed], stack_identity(state()))
    assert other.artefacts == []
    assert other.stack == [renamed]  # still in the stack's VPC: a real FAIL of the stack
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


def test_the_gate_allows_the_public_ip_only_on_the_public_network(scan: Scan) -> None:
    assert sorted(f.check_id for f in gated(scan.stack, "public")) == [
        "ec2_networkacl_allow_ingress_any_port",
        "ec2_securitygroup_default_restrict_traffic",
    ]
    assert "ecs_service_no_assign_public_ip" in {f.check_id for f in gated(scan.stack, "private")}


def test_the_private_variant_goes_to_the_provision_config() -> None:
    args = argparse.Namespace(network="private", setting=["retention_days = 30"])
    assert provision_config(args) == 'retention_days = 30\nnetwork = "private"\n'
    assert provision_config(argparse.Namespace(network="public", setting=[])) == ""
