"""The VPC's traffic filters beyond the security groups: its default security group and default
network ACL emptied, and a network ACL of the stack's own on every subnet of the stack.

AWS creates a default security group and a default network ACL with every VPC, both allowing
traffic (https://docs.aws.amazon.com/vpc/latest/userguide/default-security-group.html,
https://docs.aws.amazon.com/vpc/latest/userguide/default-network-acl.html). Neither can be
deleted while the VPC exists; AWS deletes them with it. So their steps only empty them, and
at teardown only forget them. Prowler flags both when they allow traffic (the Prowler source paths
are cited below; docs/aws-behaviour.md has the details).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from deployer.errors import DeployerError
from deployer.retry import NEW_RESOURCE_NOT_FOUND
from deployer.settings import HTTPS_PORT, REDIRECT_PORT, Settings
from deployer.state import Ids
from deployer.steps import tags
from deployer.steps.aws import absent_if
from deployer.steps.base import Converged, Existing, Step, StepContext, single
from deployer.steps.network import split_permissions

if TYPE_CHECKING:
    from mypy_boto3_ec2.client import EC2Client
    from mypy_boto3_ec2.type_defs import (
        FilterTypeDef,
        NetworkAclEntryTypeDef,
        NetworkAclTypeDef,
        SecurityGroupTypeDef,
    )

# The last rule of every network ACL, which AWS adds and nobody can change or delete.
CATCH_ALL_RULE = 32767
ANYWHERE = "0.0.0.0/0"
TCP = "6"  # network ACL entries name protocols by number
# Return traffic of connections the other way: AWS's own example ACLs use 1024-65535
# (https://docs.aws.amazon.com/vpc/latest/userguide/nacl-ephemeral-ports.html).
EPHEMERAL = (1024, 65535)
RDP = 3389  # inside EPHEMERAL: denied first, so no rule admits it from anywhere (Prowler's tcp_port_3389 check)


class DefaultSecurityGroupStep(Step["SecurityGroupTypeDef"]):
    """The VPC's default security group with no rule at all: nothing of the stack uses it, and a
    resource placed in it by mistake gets no traffic (Prowler ec2_securitygroup_default_restrict_traffic,
    https://github.com/prowler-cloud/prowler/blob/master/prowler/providers/aws/services/ec2/ec2_securitygroup_default_restrict_traffic/ec2_securitygroup_default_restrict_traffic.py).
    Found by VPC and name ("default"): AWS made it, untagged."""

    name = "default-security-group"
    resource = "default security group"
    needs = ("vpc",)

    def find_recorded(self, ctx: StepContext, ids: Ids) -> Existing[SecurityGroupTypeDef] | None:
        groups = absent_if(
            lambda: ctx.clients.ec2.describe_security_groups(GroupIds=[ids["id"]])["SecurityGroups"],
            "InvalidGroup.NotFound",
            "InvalidGroupId.Malformed",
        )
        return Existing(ids, groups[0]) if groups else None

    def find_unrecorded(self, ctx: StepContext) -> Existing[SecurityGroupTypeDef] | None:
        vpc = ctx.recorded("vpc")
        if vpc is None:
            return None
        group = self._lookup(ctx, vpc["id"])
        return Existing({"id": group["GroupId"]}, group) if group else None

    def _lookup(self, ctx: StepContext, vpc_id: str) -> SecurityGroupTypeDef | None:
        pages = ctx.clients.ec2.get_paginator("describe_security_groups").paginate(
            Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "group-name", "Values": ["default"]}]
        )
        groups = [group for page in pages for group in page["SecurityGroups"]]
        return single(groups, self.resource, lambda g: g["GroupId"])

    def create(self, ctx: StepContext) -> Ids:
        """Nothing to create: AWS made the group with the VPC. Record it, then empty it."""
        vpc_id = ctx.ids("vpc")["id"]
        group = self._lookup(ctx, vpc_id)
        if group is None:
            raise _missing(self.resource, vpc_id)
        ids = {"id": group["GroupId"]}
        ctx.remember(self.name, ids)
        self.converge(ctx, Existing(ids, group))
        return ids

    def converge(self, ctx: StepContext, existing: Existing[SecurityGroupTypeDef]) -> Converged:
        """Revoke every rule, whoever added it (AWS's defaults, or a rule added by hand)."""
        ec2, group_id, changes = ctx.clients.ec2, existing.ids["id"], list[str]()
        ingress = split_permissions(existing.live.get("IpPermissions", []))
        egress = split_permissions(existing.live.get("IpPermissionsEgress", []))
        if ingress:
            ctx.change(
                changes,
                f"revoked {len(ingress)} ingress rule(s)",
                lambda: ec2.revoke_security_group_ingress(GroupId=group_id, IpPermissions=ingress),
            )
        if egress:
            ctx.change(
                changes,
                f"revoked {len(egress)} egress rule(s)",
                lambda: ec2.revoke_security_group_egress(GroupId=group_id, IpPermissions=egress),
            )
        return Converged(existing.ids, changes)

    def delete(self, ctx: StepContext, ids: Ids) -> str:
        """AWS refuses to delete a default group (CannotDelete) and deletes it with the VPC."""
        return "forgotten"


@dataclass(frozen=True, order=True)
class Entry:
    """One network ACL entry, in the terms AWS describes it (protocol by number, ports inclusive)."""

    egress: bool
    number: int
    protocol: str
    ports: tuple[int, int] | None
    cidr: str
    action: str

    def write(self, ec2: EC2Client, acl_id: str, replace: bool) -> None:
        """CreateNetworkAclEntry, or ReplaceNetworkAclEntry for a rule number in use (same parameters)."""
        call = ec2.replace_network_acl_entry if replace else ec2.create_network_acl_entry
        low, high = self.ports or (0, 0)  # every wanted entry is TCP with ports
        call(
            NetworkAclId=acl_id,
            RuleNumber=self.number,
            Protocol=self.protocol,
            RuleAction=self.action,  # type: ignore[arg-type]
            Egress=self.egress,
            CidrBlock=self.cidr,
            PortRange={"From": low, "To": high},
        )

    def remove(self, ec2: EC2Client, acl_id: str) -> None:
        ec2.delete_network_acl_entry(NetworkAclId=acl_id, RuleNumber=self.number, Egress=self.egress)

    def describe(self) -> str:
        way = "outbound" if self.egress else "inbound"
        ports = f" {self.ports[0]}-{self.ports[1]}" if self.ports else ""
        return f"{way} rule {self.number} ({self.action} tcp{ports} {self.cidr})"


def _entry(live: NetworkAclEntryTypeDef) -> Entry | None:
    """A described entry as an Entry; None for IPv6 entries (the stack's VPC has no IPv6 block)."""
    if "CidrBlock" not in live:
        return None
    ports = live.get("PortRange")
    return Entry(
        live.get("Egress", False),
        live.get("RuleNumber", 0),
        live.get("Protocol", "-1"),
        (ports.get("From", 0), ports.get("To", 0)) if ports and live.get("Protocol") in (TCP, "17") else None,
        live["CidrBlock"],
        live.get("RuleAction", "allow"),
    )


def wanted_entries(settings: Settings) -> list[Entry]:
    """What the stack's subnets let through; network ACLs are stateless, so replies need rules too.

    Inbound: visitors to the listener (NLB, public subnets); the NLB to the tasks' container port
    (from inside the VPC); tasks in private subnets to the NAT gateway on 443 (from inside the VPC);
    replies to the tasks' own HTTPS calls (ECR, CloudWatch Logs) on ephemeral ports, with RDP
    denied first. Outbound: HTTPS anywhere (ECR, CloudWatch Logs; directly or through the NAT
    gateway), the NLB to the container port, and replies to visitors and to the NLB on ephemeral
    ports. Nothing on 22 or 3389 inbound, no all-ports rule. DNS needs no rule: ACLs do not filter
    the Amazon DNS server's traffic (https://docs.aws.amazon.com/vpc/latest/userguide/vpc-network-acls.html).
    The security groups stay the per-port gate; this ACL is the coarse second layer.

    With a domain, each port gets the rule of its counterpart, numbered 5 after it: visitors to the TLS
    listener (105, beside the listener's 100), and the NLB to the redirect port inside the VPC both ways
    (115, beside the container port's 110). REDIRECT_PORT lies in EPHEMERAL too, as the container port may:
    its own rules keep the ACL readable port by port, as for the container port.
    """
    listener, container, vpc = settings.listener_port, settings.container_port, settings.vpc_cidr
    https = (
        [
            Entry(False, 105, TCP, (HTTPS_PORT, HTTPS_PORT), ANYWHERE, "allow"),
            Entry(False, 115, TCP, (REDIRECT_PORT, REDIRECT_PORT), vpc, "allow"),
            Entry(True, 115, TCP, (REDIRECT_PORT, REDIRECT_PORT), vpc, "allow"),
        ]
        if settings.https
        else []
    )
    return [
        Entry(False, 90, TCP, (RDP, RDP), ANYWHERE, "deny"),
        Entry(False, 100, TCP, (listener, listener), ANYWHERE, "allow"),
        Entry(False, 110, TCP, (container, container), vpc, "allow"),
        Entry(False, 120, TCP, (443, 443), vpc, "allow"),
        Entry(False, 130, TCP, EPHEMERAL, ANYWHERE, "allow"),
        Entry(True, 100, TCP, (443, 443), ANYWHERE, "allow"),
        Entry(True, 110, TCP, (container, container), vpc, "allow"),
        Entry(True, 120, TCP, EPHEMERAL, ANYWHERE, "allow"),
        *https,
    ]


def subnet_steps(settings: Settings) -> tuple[str, ...]:
    """The steps whose subnets the stack's network ACL guards: all the stack's subnets in use."""
    private = ("private-subnet-1", "private-subnet-2") if settings.network == "private" else ()
    return ("subnet-1", "subnet-2", *private)


class NetworkAclStep(Step["NetworkAclTypeDef"]):
    """A network ACL of the stack's own, associated with every subnet of the stack (replacing the
    default ACL's association) and holding exactly `wanted_entries`."""

    name = "network-acl"
    resource = "network ACL"
    # After every subnet it guards (subnet_steps; the private ones only in private mode): it moves each onto itself.
    needs = ("vpc", "subnet-1", "subnet-2", "private-subnet-1", "private-subnet-2")

    def find_recorded(self, ctx: StepContext, ids: Ids) -> Existing[NetworkAclTypeDef] | None:
        acl = _acl_in_vpc(ctx, ids, [])
        return Existing(ids, acl) if acl else None

    def find_unrecorded(self, ctx: StepContext) -> Existing[NetworkAclTypeDef] | None:
        acl = _one_acl(ctx, tags.ec2_tag_filters(ctx.settings, self.name), self.resource)
        return Existing({"id": acl["NetworkAclId"], "vpc_id": acl["VpcId"]}, acl) if acl else None

    def create(self, ctx: StepContext) -> Ids:
        vpc_id = ctx.ids("vpc")["id"]
        acl = ctx.retry(
            lambda: ctx.clients.ec2.create_network_acl(
                VpcId=vpc_id,
                TagSpecifications=tags.ec2_tag_specifications(ctx.settings, self.name, "network-acl"),
                ClientToken=ctx.client_token(self.name, vpc_id),
            ),
            NEW_RESOURCE_NOT_FOUND,
        )["NetworkAcl"]
        ids = {"id": acl["NetworkAclId"], "vpc_id": vpc_id}
        ctx.remember(self.name, ids)
        self.converge(ctx, Existing(ids, acl))
        return ids

    def converge(self, ctx: StepContext, existing: Existing[NetworkAclTypeDef]) -> Converged:
        vpc_id = ctx.ids("vpc")["id"]
        if existing.live.get("VpcId") != vpc_id:
            raise self.drift(existing.ids, "is in another VPC")
        ids = {**existing.ids, "vpc_id": vpc_id}
        changes = self._converge_entries(ctx, ids["id"], existing.live)
        changes += self._associate(ctx, ids["id"], existing.live)
        return Converged(ids, changes)

    def _converge_entries(self, ctx: StepContext, acl_id: str, live: NetworkAclTypeDef) -> list[str]:
        ec2, changes = ctx.clients.ec2, list[str]()
        have = {
            (e.egress, e.number): e
            for e in filter(None, map(_entry, live.get("Entries", [])))
            if e.number != CATCH_ALL_RULE
        }
        want = {(e.egress, e.number): e for e in wanted_entries(ctx.settings)}
        for key, entry in sorted(want.items()):
            if key not in have:
                ctx.change(
                    changes,
                    f"{entry.describe()} added",
                    partial(entry.write, ec2, acl_id, False),
                )
            elif have[key] != entry:
                ctx.change(
                    changes,
                    f"{entry.describe()} restored",
                    partial(entry.write, ec2, acl_id, True),
                )
        for key, entry in sorted(have.items()):
            if key not in want:
                ctx.change(
                    changes,
                    f"{entry.describe()} removed",
                    partial(entry.remove, ec2, acl_id),
                )
        return changes

    def _associate(self, ctx: StepContext, acl_id: str, live: NetworkAclTypeDef) -> list[str]:
        """Move each of the stack's subnets onto this ACL. A subnet always has exactly one ACL
        association, so moving it means replacing the association it has (ReplaceNetworkAclAssociation,
        https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_ReplaceNetworkAclAssociation.html)."""
        ours = {a.get("SubnetId") for a in live.get("Associations", [])}
        missing = [
            subnet for subnet in (ctx.ids(step)["id"] for step in subnet_steps(ctx.settings)) if subnet not in ours
        ]
        if not missing:
            return []
        changes: list[str] = []
        pages = ctx.clients.ec2.get_paginator("describe_network_acls").paginate(
            Filters=[{"Name": "association.subnet-id", "Values": missing}]
        )
        current = {
            a["SubnetId"]: a["NetworkAclAssociationId"]
            for page in pages
            for acl in page["NetworkAcls"]
            for a in acl.get("Associations", [])
            if a.get("SubnetId") in missing and "NetworkAclAssociationId" in a
        }
        for subnet in missing:
            association = current.get(subnet)
            if association is None:
                continue  # not visible yet: the next run associates it
            ctx.change(
                changes,
                f"{subnet} associated",
                partial(
                    ctx.retry,
                    partial(
                        ctx.clients.ec2.replace_network_acl_association, AssociationId=association, NetworkAclId=acl_id
                    ),
                    NEW_RESOURCE_NOT_FOUND,
                ),
            )
        return changes

    def delete(self, ctx: StepContext, ids: Ids) -> None:
        """Give the subnets back to the VPC's default ACL, then delete ours: AWS refuses to delete an
        associated ACL (DependencyViolation,
        https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DeleteNetworkAcl.html)."""
        existing = self.find_recorded(ctx, ids)
        if existing is None:
            return
        associations = existing.live.get("Associations", [])
        if associations:
            default = _one_acl(
                ctx,
                [{"Name": "vpc-id", "Values": [existing.live["VpcId"]]}, {"Name": "default", "Values": ["true"]}],
                "default network ACL",
            )
            if default is None:
                raise _missing("default network ACL", existing.live["VpcId"])
            for association in associations:
                absent_if(
                    partial(
                        ctx.clients.ec2.replace_network_acl_association,
                        AssociationId=association.get("NetworkAclAssociationId", ""),
                        NetworkAclId=default["NetworkAclId"],
                    ),
                    "InvalidAssociationID.NotFound",
                )
        ctx.delete_when_free(
            lambda: ctx.clients.ec2.delete_network_acl(NetworkAclId=ids["id"]), "InvalidNetworkAclID.NotFound"
        )


class DefaultNetworkAclStep(Step["NetworkAclTypeDef"]):
    """The VPC's default network ACL with its allow entries removed, leaving AWS's deny-all rule.

    Once the stack's subnets use our ACL the default one guards nothing, but Prowler checks every
    network ACL of the region, used or not: ec2_networkacl_allow_ingress_any_port reads each ACL's
    entries whenever the region has a security group in use or `--scan-unused-services` is given,
    with no regard to associations (https://github.com/prowler-cloud/prowler/blob/master/prowler/providers/aws/services/ec2/ec2_networkacl_allow_ingress_any_port/ec2_networkacl_allow_ingress_any_port.py;
    the `in_use` flag of prowler/providers/aws/services/ec2/ec2_service.py is not consulted there). The
    default's rule 100 allows all traffic from 0.0.0.0/0, so it would FAIL; emptied, it passes.
    """

    name = "default-network-acl"
    resource = "default network ACL"
    # Emptied only once no subnet of the stack uses it: AWS puts every new subnet on the VPC's default ACL
    # (https://docs.aws.amazon.com/vpc/latest/userguide/default-network-acl.html), and the stack's own ACL
    # then moves each subnet onto itself; emptied before that, a subnet would pass no traffic meanwhile.
    needs = ("vpc", "subnet-1", "subnet-2", "private-subnet-1", "private-subnet-2", "network-acl")

    def find_recorded(self, ctx: StepContext, ids: Ids) -> Existing[NetworkAclTypeDef] | None:
        acl = _acl_in_vpc(ctx, ids, [{"Name": "default", "Values": ["true"]}])
        return Existing(ids, acl) if acl else None

    def find_unrecorded(self, ctx: StepContext) -> Existing[NetworkAclTypeDef] | None:
        vpc = ctx.recorded("vpc")
        if vpc is None:
            return None
        acl = self._lookup(ctx, vpc["id"])
        return Existing({"id": acl["NetworkAclId"], "vpc_id": acl["VpcId"]}, acl) if acl else None

    def _lookup(self, ctx: StepContext, vpc_id: str) -> NetworkAclTypeDef | None:
        filters: list[FilterTypeDef] = [
            {"Name": "vpc-id", "Values": [vpc_id]},
            {"Name": "default", "Values": ["true"]},
        ]
        return _one_acl(ctx, filters, self.resource)

    def create(self, ctx: StepContext) -> Ids:
        """Nothing to create: AWS made the ACL with the VPC. Record it, then empty it."""
        vpc_id = ctx.ids("vpc")["id"]
        acl = self._lookup(ctx, vpc_id)
        if acl is None:
            raise _missing(self.resource, vpc_id)
        ids = {"id": acl["NetworkAclId"], "vpc_id": vpc_id}
        ctx.remember(self.name, ids)
        self.converge(ctx, Existing(ids, acl))
        return ids

    def converge(self, ctx: StepContext, existing: Existing[NetworkAclTypeDef]) -> Converged:
        changes: list[str] = []
        acl_id = existing.ids["id"]
        for entry in filter(None, map(_entry, existing.live.get("Entries", []))):
            if entry.number == CATCH_ALL_RULE or entry.action != "allow":
                continue
            ctx.change(
                changes,
                f"{entry.describe()} removed",
                partial(entry.remove, ctx.clients.ec2, acl_id),
            )
        return Converged(existing.ids, changes)

    def delete(self, ctx: StepContext, ids: Ids) -> str:
        """AWS refuses to delete a default ACL and deletes it with the VPC."""
        return "forgotten"


def _acl_in_vpc(ctx: StepContext, ids: Ids, filters: list[FilterTypeDef]) -> NetworkAclTypeDef | None:
    """The recorded ACL, looked up among its VPC's: DescribeNetworkAcls by an unknown NetworkAclIds
    answers an error code, and moto's differs from AWS's (InvalidRouteTableID.NotFound, not
    InvalidNetworkAclID.NotFound); a gone ACL (or VPC) is simply not in this answer."""
    in_vpc: list[FilterTypeDef] = [{"Name": "vpc-id", "Values": [ids["vpc_id"]]}, *filters]
    pages = ctx.clients.ec2.get_paginator("describe_network_acls").paginate(Filters=in_vpc)
    found = [acl for page in pages for acl in page["NetworkAcls"] if acl["NetworkAclId"] == ids["id"]]
    return found[0] if found else None


def _one_acl(ctx: StepContext, filters: list[FilterTypeDef], what: str) -> NetworkAclTypeDef | None:
    pages = ctx.clients.ec2.get_paginator("describe_network_acls").paginate(Filters=filters)
    acls = [acl for page in pages for acl in page["NetworkAcls"]]
    return single(acls, what, lambda a: a["NetworkAclId"])


def _missing(what: str, vpc_id: str) -> DeployerError:
    """A resource AWS creates with every VPC is not there: nothing this tool can make in its place."""
    return DeployerError(
        f"The VPC {vpc_id} has no {what}, which AWS creates with every VPC",
        where="the lookup by VPC",
        todo="Run the same command again in a minute; if it persists, run teardown.py and provision again",
    )
