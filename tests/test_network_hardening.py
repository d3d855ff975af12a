"""The VPC's default security group and network ACL emptied, and the stack's own network ACL (issue 11).

The lifecycle of each step (create, find by state and by tags, no-op re-run, delete) is in
tests/test_step_lifecycle.py; here: what provision leaves, drift, and teardown's order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from deployer import runner
from deployer.runner import provision_step
from deployer.stack import steps_by_name
from deployer.steps.base import StepContext
from deployer.steps.firewall import CATCH_ALL_RULE, wanted_entries
from tests.conftest import CallLog, planning
from tests.rollouts import Rollout
from tests.steps_helpers import provision_through

if TYPE_CHECKING:
    from mypy_boto3_ec2.type_defs import NetworkAclTypeDef


def _acl(ctx: StepContext, acl_id: str) -> NetworkAclTypeDef:
    return ctx.clients.ec2.describe_network_acls(NetworkAclIds=[acl_id])["NetworkAcls"][0]


def _default_acl(ctx: StepContext, vpc_id: str) -> NetworkAclTypeDef:
    return ctx.clients.ec2.describe_network_acls(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "default", "Values": ["true"]}]
    )["NetworkAcls"][0]


def _opens(acl: NetworkAclTypeDef, port: int) -> bool:
    """Prowler's reading (prowler/providers/aws/services/ec2/lib/network_acls.py): the first inbound IPv4
    entry from 0.0.0.0/0 matching the port, in rule order, decides."""
    entries = sorted(
        (e for e in acl.get("Entries", []) if not e.get("Egress") and e.get("CidrBlock") == "0.0.0.0/0"),
        key=lambda e: e.get("RuleNumber", 0),
    )
    for entry in entries:
        ports = entry.get("PortRange", {})
        if entry.get("Protocol") == "-1" or (
            entry.get("Protocol") == "6" and ports.get("From", 0) <= port <= ports.get("To", -1)
        ):
            return entry.get("RuleAction") == "allow"
    return False


def test_provision_empties_the_default_group_and_guards_the_subnets(ctx: StepContext, serving: Rollout) -> None:
    runner.provision(ctx)
    ec2 = ctx.clients.ec2
    group = ec2.describe_security_groups(GroupIds=[ctx.ids("default-security-group")["id"]])["SecurityGroups"][0]
    assert group["GroupName"] == "default"
    assert (group.get("IpPermissions"), group.get("IpPermissionsEgress")) == ([], [])

    acl = _acl(ctx, ctx.ids("network-acl")["id"])
    subnets = {ctx.ids("subnet-1")["id"], ctx.ids("subnet-2")["id"]}
    assert {a.get("SubnetId") for a in acl.get("Associations", [])} == subnets
    ours = {(e.get("Egress"), e.get("RuleNumber")) for e in acl.get("Entries", [])} - {
        (True, CATCH_ALL_RULE),
        (False, CATCH_ALL_RULE),
    }
    assert ours == {(e.egress, e.number) for e in wanted_entries(ctx.settings)}
    assert not [e for e in acl.get("Entries", []) if e.get("Protocol") == "-1" and e.get("RuleAction") == "allow"]
    assert _opens(acl, ctx.settings.listener_port)
    assert not _opens(acl, 22) and not _opens(acl, 3389) and not _opens(acl, 0)

    default = _default_acl(ctx, ctx.ids("vpc")["id"])
    assert [e.get("RuleAction") for e in default.get("Entries", [])] == ["deny", "deny"]
    assert not default.get("Associations")


def test_drift_is_converged(ctx: StepContext, calls: CallLog) -> None:
    provision_through(ctx, "default-network-acl")
    ec2 = ctx.clients.ec2
    group_id, acl_id = ctx.ids("default-security-group")["id"], ctx.ids("network-acl")["id"]
    default_acl = ctx.ids("default-network-acl")["id"]
    ec2.authorize_security_group_ingress(
        GroupId=group_id,
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
    )
    ec2.authorize_security_group_egress(
        GroupId=group_id, IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
    )
    ec2.replace_network_acl_entry(
        NetworkAclId=acl_id, RuleNumber=100, Protocol="-1", RuleAction="allow", Egress=False, CidrBlock="0.0.0.0/0"
    )
    ec2.delete_network_acl_entry(NetworkAclId=acl_id, RuleNumber=90, Egress=False)
    ec2.create_network_acl_entry(
        NetworkAclId=acl_id,
        RuleNumber=200,
        Protocol="6",
        RuleAction="allow",
        Egress=False,
        CidrBlock="0.0.0.0/0",
        PortRange={"From": 22, "To": 22},
    )
    ec2.create_network_acl_entry(
        NetworkAclId=default_acl, RuleNumber=100, Protocol="-1", RuleAction="allow", Egress=False, CidrBlock="0.0.0.0/0"
    )
    steps = steps_by_name()
    for name in ("default-security-group", "network-acl", "default-network-acl"):
        outcome, _, changes = provision_step(ctx, steps[name])
        assert outcome == "updated" and changes, name
    calls.clear()
    for name in ("default-security-group", "network-acl", "default-network-acl"):
        assert provision_step(ctx, steps[name])[0] == "unchanged"
    assert calls.changing() == []
    acl = _acl(ctx, acl_id)
    assert not _opens(acl, 22) and not _opens(acl, 3389) and not _opens(acl, 0)
    assert not _opens(_default_acl(ctx, ctx.ids("vpc")["id"]), 0)


def test_a_subnet_moved_back_to_the_default_acl_is_associated_again(ctx: StepContext) -> None:
    provision_through(ctx, "network-acl")
    ec2, acl_id = ctx.clients.ec2, ctx.ids("network-acl")["id"]
    subnet = ctx.ids("subnet-2")["id"]
    association = next(a for a in _acl(ctx, acl_id).get("Associations", []) if a.get("SubnetId") == subnet)
    default = _default_acl(ctx, ctx.ids("vpc")["id"])["NetworkAclId"]
    ec2.replace_network_acl_association(AssociationId=association["NetworkAclAssociationId"], NetworkAclId=default)
    outcome, _, changes = provision_step(ctx, steps_by_name()["network-acl"])
    assert (outcome, changes) == ("updated", [f"{subnet} associated"])
    assert subnet in {a.get("SubnetId") for a in _acl(ctx, acl_id).get("Associations", [])}


def test_teardown_gives_the_subnets_back_to_the_default_acl_before_deleting_ours(ctx: StepContext) -> None:
    """The contract layer refuses DeleteNetworkAcl while associated, as AWS does (tests/contract/rules.py)."""
    provision_through(ctx, "default-network-acl")
    acl_id, vpc_id = ctx.ids("network-acl")["id"], ctx.ids("vpc")["id"]
    subnets = {ctx.ids("subnet-1")["id"], ctx.ids("subnet-2")["id"]}
    steps = steps_by_name()
    assert steps["default-network-acl"].delete(ctx, ctx.ids("default-network-acl")) == "forgotten"
    assert steps["default-security-group"].delete(ctx, ctx.ids("default-security-group")) == "forgotten"
    steps["network-acl"].delete(ctx, ctx.ids("network-acl"))
    default = _default_acl(ctx, vpc_id)
    assert subnets <= {a.get("SubnetId") for a in default.get("Associations", [])}
    left = ctx.clients.ec2.describe_network_acls(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["NetworkAcls"]
    assert [a["NetworkAclId"] for a in left] == [default["NetworkAclId"]]
    assert acl_id != default["NetworkAclId"]


def test_a_plan_only_describes(ctx: StepContext, calls: CallLog) -> None:
    provision_through(ctx, "default-network-acl")
    ctx.clients.ec2.authorize_security_group_egress(
        GroupId=ctx.ids("default-security-group")["id"],
        IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
    )
    plan = planning(ctx)
    calls.clear()
    existing = steps_by_name()["default-security-group"].find(plan, plan.state.get("default-security-group"))
    assert existing is not None
    converged = steps_by_name()["default-security-group"].converge(plan, existing)
    assert converged.changes == ["revoked 1 egress rule(s)"]
    assert calls.changing() == []
