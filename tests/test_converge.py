"""Convergence: every step puts back a property changed by hand, and refuses what AWS cannot change in place.

Each test provisions the stack up to one step against in-process moto, changes one
property by hand (a direct boto3 call, or the settings), runs the step again and
checks that it reports "updated", names the change, and left AWS as wanted; a
further run must then be "unchanged" and make no changing call.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, cast

import pytest

from deployer.errors import DeployerError, ResourceDriftError
from deployer.runner import provision_step
from deployer.stack import build_steps
from deployer.state import Ids
from deployer.steps.base import Step, StepContext
from deployer.steps.ecs import TaskDefinitionStep, _differences
from deployer.steps.iam import EXECUTION_POLICY_NAME
from deployer.steps.registry import LIFECYCLE_POLICY
from tests.conftest import CallLog
from tests.steps_helpers import provision_through

READ_ONLY_ARN = "arn:aws:iam::aws:policy/ReadOnlyAccess"


def step_named(step_name: str) -> Step[Any]:
    return next(step for step in build_steps() if step.name == step_name)


def reconverge(ctx: StepContext, calls: CallLog, step: Step[Any], mentions: str) -> tuple[Ids, list[str]]:
    """Run the step again; it must report an update whose changes mention `mentions`."""
    calls.clear()
    outcome, ids, changes = provision_step(ctx, step)
    assert outcome == "updated", (outcome, changes)
    assert any(mentions in change for change in changes), changes
    assert calls.changing(), "an update must make at least one changing call"
    return ids, changes


def assert_settled(ctx: StepContext, calls: CallLog, step: Step[Any]) -> Ids:
    """A further run finds nothing to do and changes nothing."""
    calls.clear()
    outcome, ids, changes = provision_step(ctx, step)
    assert (outcome, changes) == ("unchanged", [])
    assert calls.changing() == []
    return ids


def assert_drift(ctx: StepContext, calls: CallLog, step: Step[Any], mentions: str) -> None:
    """The step refuses with ResourceDriftError, naming the property, and changes nothing."""
    calls.clear()
    with pytest.raises(ResourceDriftError) as raised:
        provision_step(ctx, step)
    assert mentions in raised.value.what
    assert raised.value.where == f"step '{step.name}'"
    assert calls.changing() == []


def change_settings(ctx: StepContext, **changes: Any) -> StepContext:
    return replace(ctx, settings=replace(ctx.settings, **changes))


# --- vpc ----------------------------------------------------------------------------------------


def dns_hostnames(ctx: StepContext) -> bool:
    answer = ctx.clients.ec2.describe_vpc_attribute(VpcId=ctx.ids("vpc")["id"], Attribute="enableDnsHostnames")
    return answer["EnableDnsHostnames"]["Value"]


def dns_support(ctx: StepContext) -> bool:
    answer = ctx.clients.ec2.describe_vpc_attribute(VpcId=ctx.ids("vpc")["id"], Attribute="enableDnsSupport")
    return answer["EnableDnsSupport"]["Value"]


def test_vpc_dns_hostnames_turned_off_by_hand_are_turned_back_on(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "vpc")
    assert dns_hostnames(ctx)
    ctx.clients.ec2.modify_vpc_attribute(VpcId=ctx.ids("vpc")["id"], EnableDnsHostnames={"Value": False})
    assert not dns_hostnames(ctx)

    _, changes = reconverge(ctx, calls, step, "DNS hostnames on")

    assert changes == ["DNS hostnames on"]
    assert dns_hostnames(ctx)
    assert_settled(ctx, calls, step)


def test_vpc_dns_support_turned_off_by_hand_is_turned_back_on(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "vpc")
    ctx.clients.ec2.modify_vpc_attribute(VpcId=ctx.ids("vpc")["id"], EnableDnsSupport={"Value": False})

    _, changes = reconverge(ctx, calls, step, "DNS support on")

    assert changes == ["DNS support on"]
    assert dns_support(ctx)
    assert dns_hostnames(ctx)
    assert_settled(ctx, calls, step)


def test_vpc_cidr_setting_changed_is_drift(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "vpc")
    recorded = ctx.ids("vpc")
    ctx = change_settings(ctx, vpc_cidr="10.0.0.0/16", subnet_cidrs=("10.0.0.0/20", "10.0.16.0/20"))

    assert_drift(ctx, calls, step, "172.31.0.0/16, not 10.0.0.0/16")
    assert ctx.ids("vpc") == recorded


# --- subnets ------------------------------------------------------------------------------------


def test_subnet_cidr_setting_changed_is_drift(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "subnet-1")
    ctx = change_settings(ctx, subnet_cidrs=("172.31.64.0/20", "172.31.48.0/20"))

    assert_drift(ctx, calls, step, "172.31.32.0/20, not 172.31.64.0/20")


def test_second_subnet_cidr_setting_changed_is_drift(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "subnet-2")
    ctx = change_settings(ctx, subnet_cidrs=("172.31.32.0/20", "172.31.80.0/20"))

    assert_drift(ctx, calls, step, "172.31.48.0/20, not 172.31.80.0/20")
    # The first subnet's setting did not change: it still converges quietly.
    assert_settled(ctx, calls, step_named("subnet-1"))


# --- internet gateway ---------------------------------------------------------------------------


def gateway_attachments(ctx: StepContext) -> list[str]:
    gateway_id = ctx.ids("internet-gateway")["id"]
    gateway = ctx.clients.ec2.describe_internet_gateways(InternetGatewayIds=[gateway_id])["InternetGateways"][0]
    return [a["VpcId"] for a in gateway.get("Attachments", []) if a.get("State") != "detached"]


def test_internet_gateway_detached_by_hand_is_reattached(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "internet-gateway")
    vpc_id = ctx.ids("vpc")["id"]
    assert gateway_attachments(ctx) == [vpc_id]
    ctx.clients.ec2.detach_internet_gateway(InternetGatewayId=ctx.ids("internet-gateway")["id"], VpcId=vpc_id)
    assert gateway_attachments(ctx) == []

    ids, _ = reconverge(ctx, calls, step, f"attached to {vpc_id}")

    assert ids["vpc_id"] == vpc_id
    assert gateway_attachments(ctx) == [vpc_id]
    assert_settled(ctx, calls, step)


def test_internet_gateway_attached_to_another_vpc_is_drift(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "internet-gateway")
    gateway_id = ctx.ids("internet-gateway")["id"]
    ctx.clients.ec2.detach_internet_gateway(InternetGatewayId=gateway_id, VpcId=ctx.ids("vpc")["id"])
    other = ctx.clients.ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    ctx.clients.ec2.attach_internet_gateway(InternetGatewayId=gateway_id, VpcId=other)

    assert_drift(ctx, calls, step, f"is attached to {other}")
    assert gateway_attachments(ctx) == [other]


# --- route table --------------------------------------------------------------------------------


def route_table(ctx: StepContext, table_id: str) -> Any:
    return ctx.clients.ec2.describe_route_tables(RouteTableIds=[table_id])["RouteTables"][0]


def default_route_targets(ctx: StepContext) -> list[str | None]:
    table = route_table(ctx, ctx.ids("route-table")["id"])
    return [r.get("GatewayId") for r in table.get("Routes", []) if r.get("DestinationCidrBlock") == "0.0.0.0/0"]


def main_table_of_vpc(ctx: StepContext) -> list[str]:
    tables = ctx.clients.ec2.describe_route_tables(
        Filters=[
            {"Name": "vpc-id", "Values": [ctx.ids("vpc")["id"]]},
            {"Name": "association.main", "Values": ["true"]},
        ]
    )["RouteTables"]
    return [t["RouteTableId"] for t in tables]


def test_route_table_default_route_deleted_by_hand_is_added_back(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "route-table")
    gateway_id = ctx.ids("internet-gateway")["id"]
    assert default_route_targets(ctx) == [gateway_id]
    ctx.clients.ec2.delete_route(RouteTableId=ctx.ids("route-table")["id"], DestinationCidrBlock="0.0.0.0/0")
    assert default_route_targets(ctx) == []

    reconverge(ctx, calls, step, f"route 0.0.0.0/0 -> {gateway_id} added")

    assert default_route_targets(ctx) == [gateway_id]
    assert_settled(ctx, calls, step)


def test_route_table_default_route_replaced_by_hand_is_pointed_back(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "route-table")
    gateway_id = ctx.ids("internet-gateway")["id"]
    interface = ctx.clients.ec2.create_network_interface(SubnetId=ctx.ids("subnet-1")["id"])["NetworkInterface"]
    ctx.clients.ec2.replace_route(
        RouteTableId=ctx.ids("route-table")["id"],
        DestinationCidrBlock="0.0.0.0/0",
        NetworkInterfaceId=interface["NetworkInterfaceId"],
    )
    assert default_route_targets(ctx) == [None]

    _, changes = reconverge(ctx, calls, step, f"route 0.0.0.0/0 -> {gateway_id} replaced")

    assert changes == [f"route 0.0.0.0/0 -> {gateway_id} replaced"]
    assert default_route_targets(ctx) == [gateway_id]
    assert_settled(ctx, calls, step)


def test_route_table_main_association_moved_back_by_hand_is_taken_again(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "route-table")
    recorded = ctx.ids("route-table")
    ours, original = recorded["id"], recorded["original_main_route_table"]
    assert original != ours
    assert main_table_of_vpc(ctx) == [ours]
    ctx.clients.ec2.replace_route_table_association(
        AssociationId=recorded["main_association_id"], RouteTableId=original
    )
    assert main_table_of_vpc(ctx) == [original]

    ids, _ = reconverge(ctx, calls, step, "made the main route table")

    assert main_table_of_vpc(ctx) == [ours]
    assert ids["original_main_route_table"] == original
    assert ctx.ids("route-table")["original_main_route_table"] == original
    main = [a for a in route_table(ctx, ours)["Associations"] if a.get("Main")]
    assert [a["RouteTableAssociationId"] for a in main] == [ctx.ids("route-table")["main_association_id"]]
    assert_settled(ctx, calls, step)
    assert ctx.ids("route-table")["original_main_route_table"] == original


# --- security groups ----------------------------------------------------------------------------


def ingress(ctx: StepContext, step_name: str) -> set[tuple[str, int, int, str]]:
    """The group's ingress as (protocol, from, to, source) rules."""
    group_id = ctx.ids(step_name)["id"]
    group = ctx.clients.ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
    rules = set()
    for perm in group.get("IpPermissions", []):
        sources = [r["CidrIp"] for r in perm.get("IpRanges", [])] + [
            p["GroupId"] for p in perm.get("UserIdGroupPairs", [])
        ]
        for source in sources:
            rules.add((perm["IpProtocol"], perm.get("FromPort", -1), perm.get("ToPort", -1), source))
    return rules


def test_nlb_security_group_rule_revoked_by_hand_is_authorized_again(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "nlb-security-group")
    assert ingress(ctx, "nlb-security-group") == {("tcp", 80, 80, "0.0.0.0/0")}
    ctx.clients.ec2.revoke_security_group_ingress(
        GroupId=ctx.ids("nlb-security-group")["id"],
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
    )
    assert ingress(ctx, "nlb-security-group") == set()

    _, changes = reconverge(ctx, calls, step, "authorized 1 ingress rule(s)")

    assert changes == ["authorized 1 ingress rule(s)"]
    assert ingress(ctx, "nlb-security-group") == {("tcp", 80, 80, "0.0.0.0/0")}
    assert_settled(ctx, calls, step)


def test_nlb_security_group_extra_rule_added_by_hand_is_revoked(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "nlb-security-group")
    ctx.clients.ec2.authorize_security_group_ingress(
        GroupId=ctx.ids("nlb-security-group")["id"],
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
    )
    assert ("tcp", 22, 22, "0.0.0.0/0") in ingress(ctx, "nlb-security-group")

    _, changes = reconverge(ctx, calls, step, "revoked 1 ingress rule(s)")

    assert changes == ["revoked 1 ingress rule(s)"]
    assert ingress(ctx, "nlb-security-group") == {("tcp", 80, 80, "0.0.0.0/0")}
    assert_settled(ctx, calls, step)


def test_nlb_security_group_extra_rules_of_any_kind_are_revoked(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "nlb-security-group")
    ctx.clients.ec2.authorize_security_group_ingress(
        GroupId=ctx.ids("nlb-security-group")["id"],
        IpPermissions=[
            {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "10.0.0.0/8"}]},
            {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "Ipv6Ranges": [{"CidrIpv6": "::/0"}]},
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "192.0.2.0/24"}]},
        ],
    )

    _, changes = reconverge(ctx, calls, step, "revoked 3 ingress rule(s)")

    assert changes == ["revoked 3 ingress rule(s)"]
    group = ctx.clients.ec2.describe_security_groups(GroupIds=[ctx.ids("nlb-security-group")["id"]])
    permissions = group["SecurityGroups"][0]["IpPermissions"]
    assert [(p["IpProtocol"], p.get("FromPort"), p.get("Ipv6Ranges")) for p in permissions] == [("tcp", 80, [])]
    assert ingress(ctx, "nlb-security-group") == {("tcp", 80, 80, "0.0.0.0/0")}
    assert_settled(ctx, calls, step)


def test_nlb_security_group_follows_a_listener_port_change(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "nlb-security-group")
    ctx = change_settings(ctx, listener_port=8081)

    _, changes = reconverge(ctx, calls, step, "authorized 1 ingress rule(s)")

    assert changes == ["revoked 1 ingress rule(s)", "authorized 1 ingress rule(s)"]
    assert ingress(ctx, "nlb-security-group") == {("tcp", 8081, 8081, "0.0.0.0/0")}
    assert_settled(ctx, calls, step)


def rule_descriptions(ctx: StepContext, step_name: str) -> list[str | None]:
    group_id = ctx.ids(step_name)["id"]
    group = ctx.clients.ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
    return [
        source.get("Description")
        for perm in group.get("IpPermissions", [])
        for source in [*perm.get("IpRanges", []), *perm.get("UserIdGroupPairs", [])]
    ]


def test_nlb_security_group_rule_authorized_again_keeps_its_description(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "nlb-security-group")
    assert rule_descriptions(ctx, "nlb-security-group") == ["site visitors"]
    ctx.clients.ec2.revoke_security_group_ingress(
        GroupId=ctx.ids("nlb-security-group")["id"],
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
    )

    reconverge(ctx, calls, step, "authorized 1 ingress rule(s)")

    assert rule_descriptions(ctx, "nlb-security-group") == ["site visitors"]


def test_task_security_group_follows_a_container_port_change(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "task-security-group")
    nlb_group = ctx.ids("nlb-security-group")["id"]
    assert ingress(ctx, "task-security-group") == {("tcp", 8080, 8080, nlb_group)}
    ctx = change_settings(ctx, container_port=9090)

    _, changes = reconverge(ctx, calls, step, "revoked 1 ingress rule(s)")

    assert changes == ["revoked 1 ingress rule(s)", "authorized 1 ingress rule(s)"]
    assert ingress(ctx, "task-security-group") == {("tcp", 9090, 9090, nlb_group)}
    assert rule_descriptions(ctx, "task-security-group") == ["the load balancer"]
    assert_settled(ctx, calls, step)
    # The NLB's group depends on the listener port only: untouched.
    assert_settled(ctx, calls, step_named("nlb-security-group"))


# --- log group ----------------------------------------------------------------------------------


def retention(ctx: StepContext) -> int | None:
    name = ctx.ids("log-group")["name"]
    groups = ctx.clients.logs.describe_log_groups(logGroupNamePrefix=name)["logGroups"]
    return next(g.get("retentionInDays") for g in groups if g.get("logGroupName") == name)


def test_log_group_retention_changed_by_hand_is_reset(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "log-group")
    assert retention(ctx) == 14
    ctx.clients.logs.put_retention_policy(logGroupName=ctx.ids("log-group")["name"], retentionInDays=3)

    reconverge(ctx, calls, step, "retention 3 -> 14 days")

    assert retention(ctx) == 14
    assert_settled(ctx, calls, step)


def test_log_group_retention_removed_by_hand_is_reset(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "log-group")
    ctx.clients.logs.delete_retention_policy(logGroupName=ctx.ids("log-group")["name"])
    assert retention(ctx) is None

    reconverge(ctx, calls, step, "-> 14 days")

    assert retention(ctx) == 14
    assert_settled(ctx, calls, step)


def test_log_group_follows_a_retention_setting_change(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "log-group")
    ctx = change_settings(ctx, log_retention_days=90)

    reconverge(ctx, calls, step, "retention 14 -> 90 days")

    assert retention(ctx) == 90
    assert_settled(ctx, calls, step)


# --- IAM roles ----------------------------------------------------------------------------------


def attached_policies(ctx: StepContext, step_name: str) -> set[str]:
    answer = ctx.clients.iam.list_attached_role_policies(RoleName=ctx.ids(step_name)["name"])
    return {policy["PolicyArn"] for policy in answer["AttachedPolicies"]}


def trust_policy(ctx: StepContext, step_name: str) -> Any:
    document = ctx.clients.iam.get_role(RoleName=ctx.ids(step_name)["name"])["Role"]["AssumeRolePolicyDocument"]
    return json.loads(document) if isinstance(document, str) else document


def inline_policy(ctx: StepContext, step_name: str) -> Any:
    name = ctx.ids(step_name)["name"]
    document = ctx.clients.iam.get_role_policy(RoleName=name, PolicyName=EXECUTION_POLICY_NAME)["PolicyDocument"]
    return json.loads(document) if isinstance(document, str) else document


def test_execution_role_policy_deleted_by_hand_is_put_again(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "execution-role")
    wanted = inline_policy(ctx, "execution-role")
    ctx.clients.iam.delete_role_policy(RoleName=ctx.ids("execution-role")["name"], PolicyName=EXECUTION_POLICY_NAME)

    _, changes = reconverge(ctx, calls, step, f"inline policy {EXECUTION_POLICY_NAME} put")

    assert changes == [f"inline policy {EXECUTION_POLICY_NAME} put"]
    assert inline_policy(ctx, "execution-role") == wanted
    assert_settled(ctx, calls, step)


def test_execution_role_policy_widened_by_hand_is_reset(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "execution-role")
    wanted = inline_policy(ctx, "execution-role")
    widened = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr:*", "Resource": "*"}]}
    ctx.clients.iam.put_role_policy(
        RoleName=ctx.ids("execution-role")["name"], PolicyName=EXECUTION_POLICY_NAME, PolicyDocument=json.dumps(widened)
    )

    _, changes = reconverge(ctx, calls, step, f"inline policy {EXECUTION_POLICY_NAME} reset")

    assert changes == [f"inline policy {EXECUTION_POLICY_NAME} reset"]
    assert inline_policy(ctx, "execution-role") == wanted
    assert_settled(ctx, calls, step)


def test_execution_role_extra_policy_attached_by_hand_is_detached(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "execution-role")
    ctx.clients.iam.attach_role_policy(RoleName=ctx.ids("execution-role")["name"], PolicyArn=READ_ONLY_ARN)

    reconverge(ctx, calls, step, f"detached {READ_ONLY_ARN}")

    assert attached_policies(ctx, "execution-role") == set()
    assert_settled(ctx, calls, step)


def test_execution_role_trust_policy_replaced_by_hand_is_reset(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "execution-role")
    wanted = trust_policy(ctx, "execution-role")
    assert wanted["Statement"][0]["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    loose = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
    }
    ctx.clients.iam.update_assume_role_policy(
        RoleName=ctx.ids("execution-role")["name"], PolicyDocument=json.dumps(loose)
    )
    assert trust_policy(ctx, "execution-role") == loose

    _, changes = reconverge(ctx, calls, step, "trust policy reset")

    assert changes == ["trust policy reset"]
    assert trust_policy(ctx, "execution-role") == wanted
    assert wanted["Statement"][0]["Condition"] == {"StringEquals": {"aws:SourceAccount": ctx.account_id}}
    assert_settled(ctx, calls, step)


def test_task_role_follows_the_policy_arns_setting(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "task-role")
    assert attached_policies(ctx, "task-role") == set()

    ctx = change_settings(ctx, task_role_policy_arns=(READ_ONLY_ARN,))
    _, changes = reconverge(ctx, calls, step, f"attached {READ_ONLY_ARN}")
    assert changes == [f"attached {READ_ONLY_ARN}"]
    assert attached_policies(ctx, "task-role") == {READ_ONLY_ARN}
    assert_settled(ctx, calls, step)

    ctx = change_settings(ctx, task_role_policy_arns=())
    _, changes = reconverge(ctx, calls, step, f"detached {READ_ONLY_ARN}")
    assert changes == [f"detached {READ_ONLY_ARN}"]
    assert attached_policies(ctx, "task-role") == set()
    assert_settled(ctx, calls, step)
    # The execution role is another role: the task role's settings never touch it.
    assert attached_policies(ctx, "execution-role") == set()


def test_task_role_inline_policy_added_by_hand_is_removed(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "task-role")
    name = ctx.ids("task-role")["name"]
    everything = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    ctx.clients.iam.put_role_policy(RoleName=name, PolicyName="by-hand", PolicyDocument=json.dumps(everything))
    assert ctx.clients.iam.list_role_policies(RoleName=name)["PolicyNames"] == ["by-hand"]

    reconverge(ctx, calls, step, "by-hand")

    assert ctx.clients.iam.list_role_policies(RoleName=name)["PolicyNames"] == []


# --- repository ---------------------------------------------------------------------------------


def repository(ctx: StepContext) -> Any:
    name = ctx.ids("repository")["name"]
    return ctx.clients.ecr.describe_repositories(repositoryNames=[name])["repositories"][0]


def lifecycle_policy(ctx: StepContext) -> Any:
    name = ctx.ids("repository")["name"]
    try:
        text = ctx.clients.ecr.get_lifecycle_policy(repositoryName=name)["lifecyclePolicyText"]
    except ctx.clients.ecr.exceptions.LifecyclePolicyNotFoundException:
        return None
    return json.loads(text)


def test_repository_tag_mutability_set_mutable_by_hand_is_made_immutable(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "repository")
    assert repository(ctx)["imageTagMutability"] == "IMMUTABLE"
    ctx.clients.ecr.put_image_tag_mutability(repositoryName=ctx.ids("repository")["name"], imageTagMutability="MUTABLE")
    assert repository(ctx)["imageTagMutability"] == "MUTABLE"

    _, changes = reconverge(ctx, calls, step, "tags immutable")

    assert changes == ["tags immutable"]
    assert repository(ctx)["imageTagMutability"] == "IMMUTABLE"
    assert_settled(ctx, calls, step)


def test_repository_lifecycle_policy_deleted_by_hand_is_restored(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "repository")
    assert lifecycle_policy(ctx) == LIFECYCLE_POLICY
    ctx.clients.ecr.delete_lifecycle_policy(repositoryName=ctx.ids("repository")["name"])
    assert lifecycle_policy(ctx) is None

    _, changes = reconverge(ctx, calls, step, "lifecycle policy reset")

    assert changes == ["lifecycle policy reset"]
    assert lifecycle_policy(ctx) == LIFECYCLE_POLICY
    assert_settled(ctx, calls, step)


def test_repository_scan_on_push_turned_off_by_hand_is_turned_on(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "repository")
    assert repository(ctx)["imageScanningConfiguration"] == {"scanOnPush": True}
    ctx.clients.ecr.put_image_scanning_configuration(
        repositoryName=ctx.ids("repository")["name"], imageScanningConfiguration={"scanOnPush": False}
    )
    assert repository(ctx)["imageScanningConfiguration"] == {"scanOnPush": False}

    _, changes = reconverge(ctx, calls, step, "scan on push on")

    assert changes == ["scan on push on"]
    assert repository(ctx)["imageScanningConfiguration"] == {"scanOnPush": True}
    assert_settled(ctx, calls, step)


def test_repository_lifecycle_policy_replaced_by_hand_is_reset(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "repository")
    keep_everything = {
        "rules": [
            {
                "rulePriority": 1,
                "description": "by hand",
                "selection": {"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 100},
                "action": {"type": "expire"},
            }
        ]
    }
    ctx.clients.ecr.put_lifecycle_policy(
        repositoryName=ctx.ids("repository")["name"], lifecyclePolicyText=json.dumps(keep_everything)
    )
    assert lifecycle_policy(ctx) == keep_everything

    reconverge(ctx, calls, step, "lifecycle policy reset")

    assert lifecycle_policy(ctx) == LIFECYCLE_POLICY
    assert_settled(ctx, calls, step)


# --- image --------------------------------------------------------------------------------------


def reconverge_without_calls(ctx: StepContext, calls: CallLog, step: Step[Any], mentions: str) -> tuple[Ids, list[str]]:
    """Like `reconverge`, for a step that only records (the image step makes no AWS call)."""
    calls.clear()
    outcome, ids, changes = provision_step(ctx, step)
    assert outcome == "updated", (outcome, changes)
    assert any(mentions in change for change in changes), changes
    assert calls.changing() == []
    return ids, changes


def test_image_follows_the_image_setting(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "image")
    before = ctx.ids("image")["uri"]
    newer = "public.ecr.aws/docker/library/python:3.13-slim"
    assert before != newer
    ctx = change_settings(ctx, image=newer)

    ids, _ = reconverge_without_calls(ctx, calls, step, f"image -> {newer}")

    assert ids == {"uri": newer}
    assert ctx.ids("image") == {"uri": newer}
    assert_settled(ctx, calls, step)


def test_image_setting_removed_means_build_the_site(ctx: StepContext, calls: CallLog) -> None:
    """Without an image setting the site is built; with no engine that is a clear error, not the old image."""
    step = provision_through(ctx, "image")
    ctx = change_settings(ctx, image=None)
    calls.clear()
    with pytest.raises(DeployerError, match="Docker engine"):
        provision_step(ctx, step)
    assert calls.changing() == []


# --- target group -------------------------------------------------------------------------------


def target_group(ctx: StepContext) -> Any:
    arn = ctx.ids("target-group")["arn"]
    return ctx.clients.elbv2.describe_target_groups(TargetGroupArns=[arn])["TargetGroups"][0]


def deregistration_delay(ctx: StepContext) -> str:
    arn = ctx.ids("target-group")["arn"]
    attributes = ctx.clients.elbv2.describe_target_group_attributes(TargetGroupArn=arn)["Attributes"]
    return next(a["Value"] for a in attributes if a.get("Key") == "deregistration_delay.timeout_seconds")


def test_target_group_health_check_changed_by_hand_is_restored(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "target-group")
    assert target_group(ctx)["HealthCheckIntervalSeconds"] == 10
    ctx.clients.elbv2.modify_target_group(
        TargetGroupArn=ctx.ids("target-group")["arn"], HealthCheckIntervalSeconds=30, HealthyThresholdCount=5
    )
    assert target_group(ctx)["HealthCheckIntervalSeconds"] == 30

    _, changes = reconverge(ctx, calls, step, "HealthCheckIntervalSeconds=10")

    assert "HealthyThresholdCount=2" in changes[0]
    group = target_group(ctx)
    health = ("HealthCheckProtocol", "HealthCheckIntervalSeconds", "HealthyThresholdCount", "UnhealthyThresholdCount")
    assert {key: group[key] for key in health} == dict(zip(health, ("TCP", 10, 2, 2), strict=True))
    assert_settled(ctx, calls, step)


def test_target_group_health_check_protocol_changed_by_hand_is_reset_and_reported(
    ctx: StepContext, calls: CallLog
) -> None:
    step = provision_through(ctx, "target-group")
    ctx.clients.elbv2.modify_target_group(TargetGroupArn=ctx.ids("target-group")["arn"], HealthCheckProtocol="HTTP")
    assert target_group(ctx)["HealthCheckProtocol"] == "HTTP"

    calls.clear()
    outcome, _, changes = provision_step(ctx, step)

    assert outcome == "updated"
    assert target_group(ctx)["HealthCheckProtocol"] == "TCP"  # this part works
    assert any("TCP" in change for change in changes), changes


def test_target_group_deregistration_delay_changed_by_hand_is_restored(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "target-group")
    assert deregistration_delay(ctx) == "30"
    ctx.clients.elbv2.modify_target_group_attributes(
        TargetGroupArn=ctx.ids("target-group")["arn"],
        Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "300"}],
    )
    assert deregistration_delay(ctx) == "300"

    _, changes = reconverge(ctx, calls, step, "deregistration delay 30 s")

    assert changes == ["deregistration delay 30 s"]
    assert deregistration_delay(ctx) == "30"
    assert_settled(ctx, calls, step)


def test_target_group_container_port_setting_changed_is_drift(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "target-group")
    ctx = change_settings(ctx, container_port=9090)

    assert_drift(ctx, calls, step, "has port 8080, not 9090")
    assert target_group(ctx)["Port"] == 8080


# --- load balancer ------------------------------------------------------------------------------


def balancer_groups(ctx: StepContext) -> list[str]:
    arn = ctx.ids("load-balancer")["arn"]
    return list(ctx.clients.elbv2.describe_load_balancers(LoadBalancerArns=[arn])["LoadBalancers"][0]["SecurityGroups"])


def balancer_subnets(ctx: StepContext) -> list[str]:
    arn = ctx.ids("load-balancer")["arn"]
    balancer = ctx.clients.elbv2.describe_load_balancers(LoadBalancerArns=[arn])["LoadBalancers"][0]
    return sorted(zone["SubnetId"] for zone in balancer["AvailabilityZones"])


def test_load_balancer_security_groups_set_by_hand_are_reset(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "load-balancer")
    nlb_group = ctx.ids("nlb-security-group")["id"]
    assert balancer_groups(ctx) == [nlb_group]
    intruder = ctx.clients.ec2.create_security_group(
        GroupName="by-hand", Description="added by hand", VpcId=ctx.ids("vpc")["id"]
    )["GroupId"]
    ctx.clients.elbv2.set_security_groups(LoadBalancerArn=ctx.ids("load-balancer")["arn"], SecurityGroups=[intruder])
    assert balancer_groups(ctx) == [intruder]

    _, changes = reconverge(ctx, calls, step, "security group reset")

    assert changes == ["security group reset"]
    assert balancer_groups(ctx) == [nlb_group]
    assert_settled(ctx, calls, step)


def test_load_balancer_subnets_set_by_hand_are_reset(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "load-balancer")
    ours = sorted([ctx.ids("subnet-1")["id"], ctx.ids("subnet-2")["id"]])
    elsewhere = ctx.clients.ec2.create_subnet(
        VpcId=ctx.ids("vpc")["id"],
        CidrBlock="172.31.96.0/20",
        AvailabilityZone=ctx.ids("subnet-2")["availability_zone"],
    )["Subnet"]["SubnetId"]
    ctx.clients.elbv2.set_subnets(
        LoadBalancerArn=ctx.ids("load-balancer")["arn"], Subnets=[ctx.ids("subnet-1")["id"], elsewhere]
    )
    assert balancer_subnets(ctx) == sorted([ctx.ids("subnet-1")["id"], elsewhere])

    _, changes = reconverge(ctx, calls, step, "subnets reset")

    assert changes == ["subnets reset"]
    assert balancer_subnets(ctx) == ours
    assert_settled(ctx, calls, step)


# --- listener -----------------------------------------------------------------------------------


def listener(ctx: StepContext) -> Any:
    arn = ctx.ids("listener")["arn"]
    return ctx.clients.elbv2.describe_listeners(ListenerArns=[arn])["Listeners"][0]


def forwards_to(ctx: StepContext) -> list[tuple[str | None, str | None]]:
    return [(a.get("Type"), a.get("TargetGroupArn")) for a in listener(ctx)["DefaultActions"]]


def test_listener_default_action_changed_by_hand_is_reset(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "listener")
    ours = ctx.ids("target-group")["arn"]
    assert forwards_to(ctx) == [("forward", ours)]
    other = ctx.clients.elbv2.create_target_group(
        Name="by-hand-tg", Protocol="TCP", Port=8080, VpcId=ctx.ids("vpc")["id"], TargetType="ip"
    )["TargetGroups"][0]["TargetGroupArn"]
    ctx.clients.elbv2.modify_listener(
        ListenerArn=ctx.ids("listener")["arn"], DefaultActions=[{"Type": "forward", "TargetGroupArn": other}]
    )
    assert forwards_to(ctx) == [("forward", other)]

    _, changes = reconverge(ctx, calls, step, "TCP 80 -> target group")

    assert changes == ["TCP 80 -> target group"]
    assert forwards_to(ctx) == [("forward", ours)]
    assert (listener(ctx)["Protocol"], listener(ctx)["Port"]) == ("TCP", 80)
    assert_settled(ctx, calls, step)


def test_listener_follows_a_listener_port_change(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "listener")
    before = ctx.ids("listener")
    ctx = change_settings(ctx, listener_port=8081)

    ids, _ = reconverge(ctx, calls, step, "TCP 8081 -> target group")

    assert ids == before  # the same listener, modified in place
    assert (listener(ctx)["Protocol"], listener(ctx)["Port"]) == ("TCP", 8081)
    assert forwards_to(ctx) == [("forward", ctx.ids("target-group")["arn"])]
    assert_settled(ctx, calls, step)


# --- task definition ----------------------------------------------------------------------------


def revision(arn: str) -> int:
    return int(arn.rsplit(":", 1)[-1])


def test_task_definition_cpu_and_memory_change_registers_a_new_revision(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "task-definition")
    before = ctx.ids("task-definition")["arn"]
    ctx = change_settings(ctx, cpu=512, memory=1024)

    ids, changes = reconverge(ctx, calls, step, "new revision")

    assert "cpu" in changes[0] and "memory" in changes[0]
    assert ("ecs", "RegisterTaskDefinition") in calls.changing()
    assert ids["arn"] != before
    assert revision(ids["arn"]) == revision(before) + 1
    assert ctx.ids("task-definition") == {"family": "test-site-web", "arn": ids["arn"]}
    live = ctx.clients.ecs.describe_task_definition(taskDefinition=ids["arn"])["taskDefinition"]
    assert (live["cpu"], live["memory"]) == ("512", "1024")
    latest = ctx.clients.ecs.describe_task_definition(taskDefinition="test-site-web")["taskDefinition"]
    assert latest["taskDefinitionArn"] == ids["arn"]
    assert assert_settled(ctx, calls, step)["arn"] == ids["arn"]


def test_task_definition_follows_an_image_change(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "task-definition")
    before = ctx.ids("task-definition")["arn"]
    newer = "public.ecr.aws/docker/library/python:3.13-slim"
    ctx = change_settings(ctx, image=newer)
    assert provision_step(ctx, step_named("image"))[0] == "updated"

    ids, changes = reconverge(ctx, calls, step, "image")

    assert changes == ["new revision (image changed)"]
    assert revision(ids["arn"]) == revision(before) + 1
    live = ctx.clients.ecs.describe_task_definition(taskDefinition=ids["arn"])["taskDefinition"]
    assert live["containerDefinitions"][0]["image"] == newer
    assert_settled(ctx, calls, step)


HARDENING = ("readonlyRootFilesystem", "mountPoints", "linuxParameters")


def test_a_revision_without_the_hardening_gets_a_new_one_once(ctx: StepContext, calls: CallLog) -> None:
    """A revision registered before issue 11 (or by hand): writable root, capabilities kept, blocking logs."""
    step = provision_through(ctx, "task-definition")
    wanted: Any = cast(TaskDefinitionStep, step).definition(ctx)
    container = {k: v for k, v in wanted["containerDefinitions"][0].items() if k not in HARDENING}
    options = dict(container["logConfiguration"].get("options", {}))
    del options["mode"], options["max-buffer-size"]
    container["logConfiguration"] = {**container["logConfiguration"], "options": options}
    old = {k: v for k, v in wanted.items() if k != "volumes"}
    arn = ctx.clients.ecs.register_task_definition(**{**old, "containerDefinitions": [container]})
    before = arn["taskDefinition"]["taskDefinitionArn"]

    ids, changes = reconverge(ctx, calls, step, "new revision")

    for field in ("volumes", "logConfiguration", *HARDENING):
        assert field in changes[0], changes
    assert calls.changing().count(("ecs", "RegisterTaskDefinition")) == 1
    assert revision(ids["arn"]) == revision(before) + 1
    live = ctx.clients.ecs.describe_task_definition(taskDefinition=ids["arn"])["taskDefinition"]
    (hardened,) = live["containerDefinitions"]
    assert hardened["readonlyRootFilesystem"] is True
    assert hardened["linuxParameters"]["capabilities"]["drop"] == ["ALL"]
    assert live["volumes"] == [{"name": "tmp"}]
    assert_settled(ctx, calls, step)


def test_container_user_setting_is_the_task_user(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "task-definition")
    before = ctx.clients.ecs.describe_task_definition(taskDefinition=ctx.ids("task-definition")["arn"])
    assert "user" not in before["taskDefinition"]["containerDefinitions"][0]  # --image: its own user by default
    ctx = change_settings(ctx, container_user="1000:1000")

    ids, changes = reconverge(ctx, calls, step, "user")

    assert changes == ["new revision (user changed)"]
    live = ctx.clients.ecs.describe_task_definition(taskDefinition=ids["arn"])["taskDefinition"]
    assert live["containerDefinitions"][0]["user"] == "1000:1000"
    assert_settled(ctx, calls, step)


def test_differences_ignore_the_empty_values_ecs_may_add() -> None:
    wanted: Any = {
        "volumes": [{"name": "tmp"}],
        "containerDefinitions": [
            {
                "linuxParameters": {"capabilities": {"drop": ["ALL"]}},
                "mountPoints": [{"sourceVolume": "tmp", "containerPath": "/tmp", "readOnly": False}],
                "readonlyRootFilesystem": True,
                "environment": [],
                "portMappings": [],
            }
        ],
    }
    live: Any = {
        "volumes": [{"name": "tmp", "host": {}}],
        "containerDefinitions": [
            {
                "linuxParameters": {"capabilities": {"add": [], "drop": ["ALL"]}, "devices": [], "tmpfs": []},
                "mountPoints": [{"sourceVolume": "tmp", "containerPath": "/tmp"}],
                "readonlyRootFilesystem": True,
            }
        ],
    }
    assert _differences(live, wanted) == []
    live["containerDefinitions"][0]["linuxParameters"]["capabilities"]["drop"] = []
    live["volumes"] = [{"name": "tmp", "host": {"sourcePath": "/var/tmp"}}]
    assert _differences(live, wanted) == ["volumes", "linuxParameters"]


# --- service ------------------------------------------------------------------------------------


def service(ctx: StepContext) -> Any:
    ids = ctx.ids("service")
    return ctx.clients.ecs.describe_services(cluster=ids["cluster"], services=[ids["name"]])["services"][0]


def test_service_desired_count_changed_by_hand_is_reset(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "service")
    assert service(ctx)["desiredCount"] == 1
    ids = ctx.ids("service")
    ctx.clients.ecs.update_service(cluster=ids["cluster"], service=ids["name"], desiredCount=3)
    assert service(ctx)["desiredCount"] == 3

    _, changes = reconverge(ctx, calls, step, "desired count 3 -> 1")

    assert changes == ["desired count 3 -> 1"]
    assert service(ctx)["desiredCount"] == 1
    assert_settled(ctx, calls, step)


def test_service_follows_the_desired_count_setting(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "service")
    ctx = change_settings(ctx, desired_count=2)

    reconverge(ctx, calls, step, "desired count 1 -> 2")

    assert service(ctx)["desiredCount"] == 2
    assert_settled(ctx, calls, step)


def test_service_moves_to_a_new_task_definition_revision(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "service")
    before = ctx.ids("task-definition")["arn"]
    assert service(ctx)["taskDefinition"] == before
    ctx = change_settings(ctx, cpu=512, memory=1024)
    outcome, definition, _ = provision_step(ctx, step_named("task-definition"))
    assert outcome == "updated"
    assert definition["arn"] != before

    reconverge(ctx, calls, step, f"task definition -> {definition['arn'].rsplit('/', 1)[-1]}")

    assert service(ctx)["taskDefinition"] == definition["arn"]
    assert_settled(ctx, calls, step)


def test_service_network_configuration_changed_by_hand_is_reset(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "service")
    ids = ctx.ids("service")
    ctx.clients.ecs.update_service(
        cluster=ids["cluster"],
        service=ids["name"],
        networkConfiguration={
            "awsvpcConfiguration": {
                "subnets": [ctx.ids("subnet-1")["id"]],
                "securityGroups": [ctx.ids("nlb-security-group")["id"]],
                "assignPublicIp": "DISABLED",
            }
        },
    )
    assert service(ctx)["networkConfiguration"]["awsvpcConfiguration"]["assignPublicIp"] == "DISABLED"

    reconverge(ctx, calls, step, "network configuration")

    vpc = service(ctx)["networkConfiguration"]["awsvpcConfiguration"]
    assert sorted(vpc["subnets"]) == sorted([ctx.ids("subnet-1")["id"], ctx.ids("subnet-2")["id"]])
    assert vpc["securityGroups"] == [ctx.ids("task-security-group")["id"]]
    assert vpc["assignPublicIp"] == "ENABLED"
    assert_settled(ctx, calls, step)


def test_service_task_definition_rolled_back_by_hand_is_moved_forward(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "service")
    first = ctx.ids("task-definition")["arn"]
    ctx = change_settings(ctx, cpu=512, memory=1024)
    second = provision_step(ctx, step_named("task-definition"))[1]["arn"]
    provision_step(ctx, step)
    assert service(ctx)["taskDefinition"] == second
    ids = ctx.ids("service")
    ctx.clients.ecs.update_service(cluster=ids["cluster"], service=ids["name"], taskDefinition=first)

    _, changes = reconverge(ctx, calls, step, f"task definition -> {second.rsplit('/', 1)[-1]}")

    assert changes == [f"task definition -> {second.rsplit('/', 1)[-1]}"]
    assert service(ctx)["taskDefinition"] == second
    assert_settled(ctx, calls, step)


DEPLOYMENT_CHANGE = (
    "deployment configuration: circuit breaker and alarms (test-site-unhealthy-targets, test-site-task-shortfall) "
    "with rollback on"
)


def test_service_is_created_with_the_deployment_alarms_and_zone_rebalancing(ctx: StepContext) -> None:
    provision_through(ctx, "service")
    live = service(ctx)
    assert live["deploymentConfiguration"] == {
        "deploymentCircuitBreaker": {"enable": True, "rollback": True},
        "maximumPercent": 200,
        "minimumHealthyPercent": 100,
        "alarms": {
            "alarmNames": ["test-site-unhealthy-targets", "test-site-task-shortfall"],
            "enable": True,
            "rollback": True,
        },
    }
    assert live["availabilityZoneRebalancing"] == "ENABLED"


def test_service_without_container_insights_names_only_the_unhealthy_alarm(ctx: StepContext) -> None:
    ctx = change_settings(ctx, container_insights=False)
    provision_through(ctx, "service")
    alarms = service(ctx)["deploymentConfiguration"]["alarms"]
    assert alarms["alarmNames"] == ["test-site-unhealthy-targets"]


def test_service_circuit_breaker_turned_off_by_hand_is_turned_on(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "service")
    ids = ctx.ids("service")
    ctx.clients.ecs.update_service(
        cluster=ids["cluster"],
        service=ids["name"],
        deploymentConfiguration={"deploymentCircuitBreaker": {"enable": False, "rollback": False}},
    )

    _, changes = reconverge(ctx, calls, step, DEPLOYMENT_CHANGE)

    assert changes == [DEPLOYMENT_CHANGE]
    breaker = service(ctx)["deploymentConfiguration"]["deploymentCircuitBreaker"]
    assert breaker == {"enable": True, "rollback": True}
    assert_settled(ctx, calls, step)


def test_service_deployment_alarms_removed_by_hand_are_put_back(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "service")
    ids = ctx.ids("service")
    ctx.clients.ecs.update_service(
        cluster=ids["cluster"],
        service=ids["name"],
        deploymentConfiguration={
            "deploymentCircuitBreaker": {"enable": True, "rollback": True},
            "maximumPercent": 200,
            "minimumHealthyPercent": 100,
            "alarms": {"alarmNames": ["test-site-unhealthy-targets"], "enable": False, "rollback": False},
        },
    )

    reconverge(ctx, calls, step, DEPLOYMENT_CHANGE)

    alarms = service(ctx)["deploymentConfiguration"]["alarms"]
    assert alarms == {
        "alarmNames": ["test-site-unhealthy-targets", "test-site-task-shortfall"],
        "enable": True,
        "rollback": True,
    }
    assert_settled(ctx, calls, step)


def test_service_zone_rebalancing_turned_off_by_hand_is_turned_on(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "service")
    ids = ctx.ids("service")
    ctx.clients.ecs.update_service(cluster=ids["cluster"], service=ids["name"], availabilityZoneRebalancing="DISABLED")

    _, changes = reconverge(ctx, calls, step, "Availability Zone rebalancing on")

    assert changes == ["Availability Zone rebalancing on"]
    assert service(ctx)["availabilityZoneRebalancing"] == "ENABLED"
    assert_settled(ctx, calls, step)


def test_service_is_created_with_desired_count_within_min_and_max(ctx: StepContext) -> None:
    ctx = change_settings(ctx, desired_count=1, min_tasks=2, max_tasks=6)
    provision_through(ctx, "service")
    assert service(ctx)["desiredCount"] == 2


def test_service_under_autoscaling_keeps_the_count_the_scaler_chose(ctx: StepContext, calls: CallLog) -> None:
    ctx = change_settings(ctx, min_tasks=2, max_tasks=6)
    step = provision_through(ctx, "service")
    ids = ctx.ids("service")
    ctx.clients.ecs.update_service(cluster=ids["cluster"], service=ids["name"], desiredCount=4)  # the scaler

    assert_settled(ctx, calls, step)
    assert service(ctx)["desiredCount"] == 4


def test_service_under_autoscaling_outside_min_and_max_is_brought_into_range(ctx: StepContext, calls: CallLog) -> None:
    ctx = change_settings(ctx, min_tasks=2, max_tasks=6)
    step = provision_through(ctx, "service")
    ids = ctx.ids("service")
    ctx.clients.ecs.update_service(cluster=ids["cluster"], service=ids["name"], desiredCount=9)

    _, changes = reconverge(ctx, calls, step, "desired count 9 -> 6")

    assert changes == ["desired count 9 -> 6"]
    assert service(ctx)["desiredCount"] == 6
    assert_settled(ctx, calls, step)


def test_service_leaving_autoscaling_follows_the_fixed_count(ctx: StepContext, calls: CallLog) -> None:
    ctx = change_settings(ctx, min_tasks=2, max_tasks=6)
    step = provision_through(ctx, "service")
    ids = ctx.ids("service")
    ctx.clients.ecs.update_service(cluster=ids["cluster"], service=ids["name"], desiredCount=4)
    ctx = change_settings(ctx, desired_count=3, min_tasks=None, max_tasks=None)

    reconverge(ctx, calls, step, "desired count 4 -> 3")

    assert service(ctx)["desiredCount"] == 3
    assert_settled(ctx, calls, step)


def test_service_load_balancer_attachment_changed_by_hand_is_reset(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "service")
    ids = ctx.ids("service")
    other = ctx.clients.elbv2.create_target_group(
        Name="by-hand-tg", Protocol="TCP", Port=8080, VpcId=ctx.ids("vpc")["id"], TargetType="ip"
    )["TargetGroups"][0]["TargetGroupArn"]
    ctx.clients.ecs.update_service(
        cluster=ids["cluster"],
        service=ids["name"],
        loadBalancers=[{"targetGroupArn": other, "containerName": "web", "containerPort": 8080}],
    )
    assert [b["targetGroupArn"] for b in service(ctx)["loadBalancers"]] == [other]

    _, changes = reconverge(ctx, calls, step, "load balancer attachment")

    assert changes == ["load balancer attachment"]
    balancers = service(ctx)["loadBalancers"]
    assert [(b["targetGroupArn"], b["containerName"], b["containerPort"]) for b in balancers] == [
        (ctx.ids("target-group")["arn"], "web", 8080)
    ]
    assert_settled(ctx, calls, step)
