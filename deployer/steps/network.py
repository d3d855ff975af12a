"""The network: VPC, two public subnets, internet gateway, main route table, security groups.

EC2 resources have no names, so besides their recorded IDs they are found by the
`deployer:stack` / `deployer:step` tags set at creation. Security groups do have
names (unique per VPC) and are found by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from deployer.errors import DeployerError
from deployer.retry import NEW_RESOURCE_NOT_FOUND
from deployer.settings import HTTPS_PORT, REDIRECT_PORT, Settings
from deployer.state import Ids
from deployer.steps import tags
from deployer.steps.aws import absent_if
from deployer.steps.base import Converged, Existing, Step, StepContext, is_code, single

if TYPE_CHECKING:
    from mypy_boto3_ec2.type_defs import (
        InternetGatewayTypeDef,
        IpPermissionOutputTypeDef,
        IpPermissionTypeDef,
        RouteTableTypeDef,
        SecurityGroupTypeDef,
        SubnetTypeDef,
        VpcTypeDef,
    )


class VpcStep(Step["VpcTypeDef"]):
    name = "vpc"
    resource = "VPC"

    def find_recorded(self, ctx: StepContext, ids: Ids) -> Existing[VpcTypeDef] | None:
        vpcs = absent_if(lambda: ctx.clients.ec2.describe_vpcs(VpcIds=[ids["id"]])["Vpcs"], "InvalidVpcID.NotFound")
        return Existing(ids, vpcs[0]) if vpcs else None

    def find_unrecorded(self, ctx: StepContext) -> Existing[VpcTypeDef] | None:
        pages = ctx.clients.ec2.get_paginator("describe_vpcs").paginate(
            Filters=tags.ec2_tag_filters(ctx.settings, self.name)
        )
        vpcs = [vpc for page in pages for vpc in page["Vpcs"]]
        vpc = single(vpcs, self.resource, lambda v: v["VpcId"])
        return Existing({"id": vpc["VpcId"]}, vpc) if vpc else None

    def create(self, ctx: StepContext) -> Ids:
        vpc = ctx.clients.ec2.create_vpc(
            CidrBlock=ctx.settings.vpc_cidr,
            TagSpecifications=tags.ec2_tag_specifications(ctx.settings, self.name, "vpc"),
        )["Vpc"]
        ids = {"id": vpc["VpcId"]}
        ctx.remember(self.name, ids)
        # A new VPC resolves DNS but gives no DNS hostnames; AWS takes one attribute per call.
        ctx.retry(
            lambda: ctx.clients.ec2.modify_vpc_attribute(VpcId=ids["id"], EnableDnsHostnames={"Value": True}),
            NEW_RESOURCE_NOT_FOUND,
        )
        return ids

    def converge(self, ctx: StepContext, existing: Existing[VpcTypeDef]) -> Converged:
        if existing.live["CidrBlock"] != ctx.settings.vpc_cidr:
            raise self.drift(existing.ids, f"has CIDR {existing.live['CidrBlock']}, not {ctx.settings.vpc_cidr}")
        ec2 = ctx.clients.ec2
        changes: list[str] = []
        vpc_id = existing.ids["id"]
        if not ec2.describe_vpc_attribute(VpcId=vpc_id, Attribute="enableDnsSupport")["EnableDnsSupport"]["Value"]:
            ctx.change(
                changes,
                "DNS support on",
                lambda: ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsSupport={"Value": True}),
            )
        if not ec2.describe_vpc_attribute(VpcId=vpc_id, Attribute="enableDnsHostnames")["EnableDnsHostnames"]["Value"]:
            ctx.change(
                changes,
                "DNS hostnames on",
                lambda: ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsHostnames={"Value": True}),
            )
        return Converged(existing.ids, changes)

    def delete(self, ctx: StepContext, ids: Ids) -> None:
        VPC_HELD.delete(ctx, self.resource, ids["id"], lambda: ctx.clients.ec2.delete_vpc(VpcId=ids["id"]))


class SubnetStep(Step["SubnetTypeDef"]):
    """One public subnet; the stack has two, in two zones, so the NLB survives a zone outage."""

    resource = "subnet"
    needs = ("vpc",)

    def __init__(self, index: int) -> None:
        self.index = index
        self.name = f"subnet-{index + 1}"

    def cidr(self, settings: Settings) -> str:
        return settings.subnet_cidrs[self.index]

    def find_recorded(self, ctx: StepContext, ids: Ids) -> Existing[SubnetTypeDef] | None:
        subnets = absent_if(
            lambda: ctx.clients.ec2.describe_subnets(SubnetIds=[ids["id"]])["Subnets"], "InvalidSubnetID.NotFound"
        )
        return Existing(ids, subnets[0]) if subnets else None

    def find_unrecorded(self, ctx: StepContext) -> Existing[SubnetTypeDef] | None:
        pages = ctx.clients.ec2.get_paginator("describe_subnets").paginate(
            Filters=tags.ec2_tag_filters(ctx.settings, self.name)
        )
        subnets = [subnet for page in pages for subnet in page["Subnets"]]
        subnet = single(subnets, self.resource, lambda s: s["SubnetId"])
        if subnet is None:
            return None
        return Existing({"id": subnet["SubnetId"], "availability_zone": subnet["AvailabilityZone"]}, subnet)

    def create(self, ctx: StepContext) -> Ids:
        zone = ctx.availability_zones()[self.index]
        subnet = ctx.retry(
            lambda: ctx.clients.ec2.create_subnet(
                VpcId=ctx.ids("vpc")["id"],
                CidrBlock=self.cidr(ctx.settings),
                AvailabilityZone=zone,
                TagSpecifications=tags.ec2_tag_specifications(ctx.settings, self.name, "subnet"),
            ),
            NEW_RESOURCE_NOT_FOUND,
        )["Subnet"]
        return {"id": subnet["SubnetId"], "availability_zone": subnet["AvailabilityZone"]}

    def converge(self, ctx: StepContext, existing: Existing[SubnetTypeDef]) -> Converged:
        wanted = self.cidr(ctx.settings)
        if existing.live["CidrBlock"] != wanted:
            raise self.drift(existing.ids, f"has CIDR {existing.live['CidrBlock']}, not {wanted}")
        if existing.live["VpcId"] != ctx.ids("vpc")["id"]:
            raise self.drift(existing.ids, f"is in {existing.live['VpcId']}, not in the stack's VPC")
        named = ctx.settings.availability_zones
        zone, zone_id = existing.live.get("AvailabilityZone", ""), existing.live.get("AvailabilityZoneId", "")
        if named and zone not in ctx.availability_zones():
            raise self.drift(existing.ids, f"is in zone {zone} ({zone_id}), not in the availability_zones setting")
        return Converged(existing.ids)

    def delete(self, ctx: StepContext, ids: Ids) -> None:
        SUBNET_HELD.delete(ctx, self.resource, ids["id"], lambda: ctx.clients.ec2.delete_subnet(SubnetId=ids["id"]))


class PrivateSubnetStep(SubnetStep):
    """One private subnet (`network = "private"`): the tasks run here, without public addresses,
    and reach the internet through the NAT gateway (deployer/steps/private.py)."""

    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.name = f"private-subnet-{index + 1}"

    def cidr(self, settings: Settings) -> str:
        return settings.private_subnet_cidrs[self.index]

    def wanted(self, settings: Settings) -> bool:
        """Only in private mode; a switch back to public removes it after the service moved."""
        return settings.network == "private"


class InternetGatewayStep(Step["InternetGatewayTypeDef"]):
    name = "internet-gateway"
    resource = "internet gateway"
    needs = ("vpc",)

    def find_recorded(self, ctx: StepContext, ids: Ids) -> Existing[InternetGatewayTypeDef] | None:
        found = absent_if(
            lambda: ctx.clients.ec2.describe_internet_gateways(InternetGatewayIds=[ids["id"]])["InternetGateways"],
            "InvalidInternetGatewayID.NotFound",
        )
        return Existing(ids, found[0]) if found else None

    def find_unrecorded(self, ctx: StepContext) -> Existing[InternetGatewayTypeDef] | None:
        pages = ctx.clients.ec2.get_paginator("describe_internet_gateways").paginate(
            Filters=tags.ec2_tag_filters(ctx.settings, self.name)
        )
        found = [gateway for page in pages for gateway in page["InternetGateways"]]
        gateway = single(found, self.resource, lambda g: g["InternetGatewayId"])
        if gateway is None:
            return None
        attached = [a["VpcId"] for a in gateway.get("Attachments", []) if a.get("State") != "detached"]
        return Existing({"id": gateway["InternetGatewayId"], "vpc_id": attached[0] if attached else ""}, gateway)

    def create(self, ctx: StepContext) -> Ids:
        gateway = ctx.clients.ec2.create_internet_gateway(
            TagSpecifications=tags.ec2_tag_specifications(ctx.settings, self.name, "internet-gateway")
        )["InternetGateway"]
        ids = {"id": gateway["InternetGatewayId"], "vpc_id": ctx.ids("vpc")["id"]}
        ctx.remember(self.name, ids)
        ctx.retry(
            lambda: ctx.clients.ec2.attach_internet_gateway(InternetGatewayId=ids["id"], VpcId=ids["vpc_id"]),
            NEW_RESOURCE_NOT_FOUND,
        )
        return ids

    def converge(self, ctx: StepContext, existing: Existing[InternetGatewayTypeDef]) -> Converged:
        vpc_id = ctx.ids("vpc")["id"]
        attached = [a["VpcId"] for a in existing.live.get("Attachments", []) if a.get("State") != "detached"]
        if vpc_id in attached:
            return Converged({**existing.ids, "vpc_id": vpc_id})
        if attached:
            raise self.drift(existing.ids, f"is attached to {attached[0]}, not to the stack's VPC")
        changes: list[str] = []
        ctx.change(
            changes,
            f"attached to {vpc_id}",
            lambda: ctx.clients.ec2.attach_internet_gateway(InternetGatewayId=existing.ids["id"], VpcId=vpc_id),
        )
        return Converged({**existing.ids, "vpc_id": vpc_id}, changes)

    def delete(self, ctx: StepContext, ids: Ids) -> None:
        absent_if(lambda: self._detach_and_delete(ctx, ids), "InvalidInternetGatewayID.NotFound")

    def _detach_and_delete(self, ctx: StepContext, ids: Ids) -> None:
        """A gateway already detached, or whose VPC is gone, only needs deleting."""
        ec2 = ctx.clients.ec2
        # "Network vpc-... has some mapped public address(es)" (DependencyViolation) while
        # task or NLB addresses are released.
        ctx.delete_when_free(
            lambda: ec2.detach_internet_gateway(InternetGatewayId=ids["id"], VpcId=ids["vpc_id"]),
            "Gateway.NotAttached",
            "InvalidVpcID.NotFound",
        )
        ec2.delete_internet_gateway(InternetGatewayId=ids["id"])


DEFAULT_ROUTE = "0.0.0.0/0"


class RouteTableStep(Step["RouteTableTypeDef"]):
    """Our route table, made the VPC's main one; the original main table is recorded to restore it."""

    name = "route-table"
    resource = "route table"
    needs = ("vpc", "internet-gateway")  # its default route goes to the gateway

    def find_recorded(self, ctx: StepContext, ids: Ids) -> Existing[RouteTableTypeDef] | None:
        tables = absent_if(
            lambda: ctx.clients.ec2.describe_route_tables(RouteTableIds=[ids["id"]])["RouteTables"],
            "InvalidRouteTableID.NotFound",
        )
        return Existing(ids, tables[0]) if tables else None

    def find_unrecorded(self, ctx: StepContext) -> Existing[RouteTableTypeDef] | None:
        filters = tags.ec2_tag_filters(ctx.settings, self.name)
        pages = ctx.clients.ec2.get_paginator("describe_route_tables").paginate(Filters=filters)
        tables = [table for page in pages for table in page["RouteTables"]]
        table = single(tables, self.resource, lambda t: t["RouteTableId"])
        if table is None:
            return None
        return Existing({"id": table["RouteTableId"], "vpc_id": table["VpcId"]}, table)

    def create(self, ctx: StepContext) -> Ids:
        vpc_id = ctx.ids("vpc")["id"]
        table = ctx.retry(
            lambda: ctx.clients.ec2.create_route_table(
                VpcId=vpc_id,
                TagSpecifications=tags.ec2_tag_specifications(ctx.settings, self.name, "route-table"),
                ClientToken=ctx.client_token(self.name, vpc_id),
            ),
            NEW_RESOURCE_NOT_FOUND,
        )["RouteTable"]
        ids = {"id": table["RouteTableId"], "vpc_id": vpc_id}
        ctx.remember(self.name, ids)
        ctx.retry(
            lambda: ctx.clients.ec2.create_route(
                RouteTableId=ids["id"], DestinationCidrBlock=DEFAULT_ROUTE, GatewayId=ctx.ids("internet-gateway")["id"]
            ),
            NEW_RESOURCE_NOT_FOUND,
        )
        return self._make_main(ctx, ids)

    def converge(self, ctx: StepContext, existing: Existing[RouteTableTypeDef]) -> Converged:
        ids = {**existing.ids, "vpc_id": existing.live["VpcId"]}
        changes: list[str] = []
        gateway_id = ctx.ids("internet-gateway")["id"]
        default = [r for r in existing.live.get("Routes", []) if r.get("DestinationCidrBlock") == DEFAULT_ROUTE]
        table_id = ids["id"]
        if not default:
            ctx.change(
                changes,
                f"route {DEFAULT_ROUTE} -> {gateway_id} added",
                lambda: ctx.clients.ec2.create_route(
                    RouteTableId=table_id, DestinationCidrBlock=DEFAULT_ROUTE, GatewayId=gateway_id
                ),
            )
        elif default[0].get("GatewayId") != gateway_id:
            ctx.change(
                changes,
                f"route {DEFAULT_ROUTE} -> {gateway_id} replaced",
                lambda: ctx.clients.ec2.replace_route(
                    RouteTableId=table_id, DestinationCidrBlock=DEFAULT_ROUTE, GatewayId=gateway_id
                ),
            )
        main = [a for a in existing.live.get("Associations", []) if a.get("Main")]
        if main:
            ids["main_association_id"] = main[0]["RouteTableAssociationId"]
        elif ctx.dry_run:
            changes.append("made the main route table")
        else:
            ids = self._make_main(ctx, ids)
            changes.append("made the main route table")
        return Converged(ids, changes)

    def _make_main(self, ctx: StepContext, ids: Ids) -> Ids:
        """Swap the VPC's main association to our table, recording the original table first."""
        pages = ctx.clients.ec2.get_paginator("describe_route_tables").paginate(
            Filters=[{"Name": "vpc-id", "Values": [ids["vpc_id"]]}, {"Name": "association.main", "Values": ["true"]}]
        )
        current = [table for page in pages for table in page["RouteTables"]]
        association = [a for t in current for a in t.get("Associations", []) if a.get("Main")]
        if not association:
            # A VPC always has a main association; without one there is nothing to replace.
            return ids
        original = association[0]["RouteTableId"]
        if original != ids["id"] and "original_main_route_table" not in ids:
            ids = {**ids, "original_main_route_table": original}
            ctx.remember(self.name, ids)
        answer = ctx.retry(
            lambda: ctx.clients.ec2.replace_route_table_association(
                AssociationId=association[0]["RouteTableAssociationId"], RouteTableId=ids["id"]
            ),
            NEW_RESOURCE_NOT_FOUND,
        )
        return {**ids, "main_association_id": answer["NewAssociationId"]}

    def delete(self, ctx: StepContext, ids: Ids) -> None:
        existing = self.find_recorded(ctx, ids)
        if existing is None:
            return
        main = [a for a in existing.live.get("Associations", []) if a.get("Main")]
        # AWS refuses to delete a main route table: give the role back to the original first.
        # With no original left, the table goes with the VPC.
        if main and not self._restore_original(ctx, ids, main[0]["RouteTableAssociationId"]):
            return
        ctx.delete_when_free(
            lambda: ctx.clients.ec2.delete_route_table(RouteTableId=ids["id"]), "InvalidRouteTableID.NotFound"
        )

    def _restore_original(self, ctx: StepContext, ids: Ids, association_id: str) -> bool:
        original = ids.get("original_main_route_table") or self._other_table(ctx, ids)
        if not original:
            return False
        replaced = absent_if(
            lambda: ctx.clients.ec2.replace_route_table_association(
                AssociationId=association_id, RouteTableId=original
            ),
            "InvalidRouteTableID.NotFound",
        )
        return replaced is not None

    def _other_table(self, ctx: StepContext, ids: Ids) -> str | None:
        """Without a record of the original main table (a lost state file), the VPC's other table is it."""
        pages = ctx.clients.ec2.get_paginator("describe_route_tables").paginate(
            Filters=[{"Name": "vpc-id", "Values": [ids["vpc_id"]]}]
        )
        tables = [table for page in pages for table in page["RouteTables"]]
        others = sorted(t["RouteTableId"] for t in tables if t["RouteTableId"] != ids["id"])
        return others[0] if others else None


class SecurityGroupStep(Step["SecurityGroupTypeDef"]):
    """A security group with exactly the wanted ingress; the NLB's opens the listener port to the world,
    the tasks' opens the container port to the NLB's group only."""

    resource = "security group"

    def __init__(self, role: str) -> None:
        self.role = role
        self.name = f"{role}-security-group"
        # The tasks' group admits the NLB's group by ID; AWS also refuses to delete a group another
        # group's rule names (DependencyViolation), so teardown deletes the tasks' group first.
        self.needs = ("vpc",) if role == "nlb" else ("vpc", "nlb-security-group")

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
            return None  # names are unique per VPC: without ours there is nothing to look up
        pages = ctx.clients.ec2.get_paginator("describe_security_groups").paginate(
            Filters=[
                {"Name": "vpc-id", "Values": [vpc["id"]]},
                {"Name": "group-name", "Values": [ctx.settings.names.security_group(self.role)]},
            ]
        )
        groups = [group for page in pages for group in page["SecurityGroups"]]
        group = single(groups, self.resource, lambda g: g["GroupId"])
        if group is None:
            return None
        found = Existing({"id": group["GroupId"]}, group)
        name = f"{group['GroupName']} ({group['GroupId']})"
        return tags.adopt(ctx, self, found, name, tags.tag_map(group.get("Tags")), global_=False)

    def create(self, ctx: StepContext) -> Ids:
        group_id = ctx.retry(
            lambda: ctx.clients.ec2.create_security_group(
                GroupName=ctx.settings.names.security_group(self.role),
                Description=f"{ctx.settings.stack}: {self.role} traffic (managed by provision.py)",
                VpcId=ctx.ids("vpc")["id"],
                TagSpecifications=tags.ec2_tag_specifications(ctx.settings, self.name, "security-group"),
            ),
            NEW_RESOURCE_NOT_FOUND,
        )["GroupId"]
        ids = {"id": group_id}
        ctx.remember(self.name, ids)
        ctx.retry(
            lambda: ctx.clients.ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=self.ingress(ctx)),
            NEW_RESOURCE_NOT_FOUND,
        )
        return ids

    def converge(self, ctx: StepContext, existing: Existing[SecurityGroupTypeDef]) -> Converged:
        if existing.live.get("VpcId") != ctx.ids("vpc")["id"]:
            raise self.drift(existing.ids, "is in another VPC")
        have = _rule_keys(existing.live.get("IpPermissions", []))
        want = _rule_keys(self.ingress(ctx))
        changes: list[str] = []
        group_id = existing.ids["id"]
        extra = [p for p in split_permissions(existing.live.get("IpPermissions", [])) if _rule_keys([p]) - want]
        missing = [p for p in split_permissions(self.ingress(ctx)) if _rule_keys([p]) - have]
        ec2 = ctx.clients.ec2
        if extra:
            ctx.change(
                changes,
                f"revoked {len(extra)} ingress rule(s)",
                lambda: ec2.revoke_security_group_ingress(GroupId=group_id, IpPermissions=extra),
            )
        if missing:
            ctx.change(
                changes,
                f"authorized {len(missing)} ingress rule(s)",
                lambda: ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=missing),
            )
        return Converged(existing.ids, changes)

    def ingress(self, ctx: StepContext) -> list[IpPermissionTypeDef]:
        """The NLB's group: visitors on the listener port, and with a domain on HTTPS_PORT too. The tasks' group:
        the NLB's group on the container port, and with a domain on REDIRECT_PORT (port 80's target group).
        Egress stays AWS's default for a new group (all traffic out), so the NLB reaches both ports."""
        settings = ctx.settings
        if self.role == "nlb":
            ports = [settings.listener_port, *([HTTPS_PORT] if settings.https else [])]
            return [
                {
                    "IpProtocol": "tcp",
                    "FromPort": port,
                    "ToPort": port,
                    "IpRanges": [{"CidrIp": "0.0.0.0/0", "Description": "site visitors"}],
                }
                for port in ports
            ]
        source = ctx.ids("nlb-security-group")["id"]
        return [
            {
                "IpProtocol": "tcp",
                "FromPort": port,
                "ToPort": port,
                "UserIdGroupPairs": [{"GroupId": source, "Description": "the load balancer"}],
            }
            for port in [settings.container_port, *([REDIRECT_PORT] if settings.https else [])]
        ]

    def delete(self, ctx: StepContext, ids: Ids) -> None:
        group = ids["id"]
        GROUP_HELD.delete(ctx, self.resource, group, lambda: ctx.clients.ec2.delete_security_group(GroupId=group))


@dataclass(frozen=True)
class HeldDelete:
    """How AWS answers the delete of an EC2 resource that network interfaces can still hold."""

    interface_filter: str  # the describe_network_interfaces filter that finds what holds it
    not_found: str  # the code that means it is already gone
    in_use: tuple[str, ...] = ("DependencyViolation",)

    def delete(self, ctx: StepContext, resource: str, resource_id: str, call: Callable[[], object]) -> None:
        """Delete, waiting out "still in use" (STILL_IN_USE); already gone counts as deleted, and a
        resource still held after the waits is refused naming the interfaces that hold it (`blocked`)."""
        try:
            ctx.delete_when_free(call, self.not_found)
        except ClientError as exc:
            if is_code(exc, *self.in_use):
                raise blocked(ctx, resource, resource_id, self.interface_filter) from exc
            raise


VPC_HELD = HeldDelete("vpc-id", "InvalidVpcID.NotFound")
SUBNET_HELD = HeldDelete("subnet-id", "InvalidSubnetID.NotFound")
GROUP_HELD = HeldDelete("group-id", "InvalidGroup.NotFound", ("DependencyViolation", "InvalidGroup.InUse"))


def blocked(ctx: StepContext, resource: str, resource_id: str, interface_filter: str) -> DeployerError:
    """Explain a delete AWS kept refusing: name the network interfaces that still hold the resource."""
    pages = ctx.clients.ec2.get_paginator("describe_network_interfaces").paginate(
        Filters=[{"Name": interface_filter, "Values": [resource_id]}]
    )
    interfaces = [interface for page in pages for interface in page["NetworkInterfaces"]]
    if interfaces:
        found = "; ".join(
            f"{i['NetworkInterfaceId']} ({i.get('InterfaceType', 'interface')}, "
            f"'{i.get('Description', '')}', owner {i.get('RequesterId') or i.get('OwnerId', '?')}, {i.get('Status')})"
            for i in interfaces
        )
        what = f"The {resource} {resource_id} is still in use by {len(interfaces)} network interface(s): {found}"
    else:
        what = (
            f"The {resource} {resource_id} is still in use (AWS lists no network interface; another resource holds it)"
        )
    return DeployerError(
        what,
        where="teardown, after waiting the full retry budget",
        todo="Interfaces of a deleted load balancer or stopped task disappear within minutes: run teardown.py again "
        "later. An interface owned by something else (a GuardDuty or VPC endpoint, an instance) must be deleted "
        "first, in the EC2 console under Network Interfaces",
    )


RuleKey = tuple[str, int, int, str]


def split_permissions(
    permissions: list[IpPermissionOutputTypeDef] | list[IpPermissionTypeDef],
) -> list[IpPermissionTypeDef]:
    """One permission per source, so a rule can be revoked or authorized on its own."""
    single_rules: list[IpPermissionTypeDef] = []
    for perm in permissions:
        base: IpPermissionTypeDef = {"IpProtocol": perm["IpProtocol"]}
        if "FromPort" in perm:
            base["FromPort"] = perm["FromPort"]
        if "ToPort" in perm:
            base["ToPort"] = perm["ToPort"]
        # Each source keeps its description: it is part of the rule users see, and moto
        # (unlike AWS) matches it when revoking.
        for cidr in perm.get("IpRanges", []):
            single_rules.append({**base, "IpRanges": [cidr]})
        for pair in perm.get("UserIdGroupPairs", []):
            single_rules.append({**base, "UserIdGroupPairs": [pair]})
        for cidr6 in perm.get("Ipv6Ranges", []):
            single_rules.append({**base, "Ipv6Ranges": [cidr6]})
        for prefix in perm.get("PrefixListIds", []):
            single_rules.append({**base, "PrefixListIds": [prefix]})
    return single_rules


def _rule_keys(permissions: list[IpPermissionOutputTypeDef] | list[IpPermissionTypeDef]) -> set[RuleKey]:
    keys: set[RuleKey] = set()
    for perm in split_permissions(permissions):
        sources = (
            [r["CidrIp"] for r in perm.get("IpRanges", [])]
            + [p["GroupId"] for p in perm.get("UserIdGroupPairs", [])]
            + [r["CidrIpv6"] for r in perm.get("Ipv6Ranges", [])]
            + [p["PrefixListId"] for p in perm.get("PrefixListIds", [])]
        )
        for source in sources:
            keys.add((perm["IpProtocol"], perm.get("FromPort", -1), perm.get("ToPort", -1), source))
    return keys
