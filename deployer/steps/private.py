"""Private tasks (`network = "private"`): one NAT gateway with its Elastic IP, and a route table
sending the private subnets' internet traffic through it.

The tasks then have no public address (assignPublicIp DISABLED, deployer/steps/ecs.py) and still
reach ECR and CloudWatch Logs. One gateway, in public subnet 1: a zone outage there cuts the
tasks' outbound traffic, but a second gateway would double the largest cost line (deployer/cost.py).
Each step here is `wanted` only in private mode: switching back to public removes them (newest
first) once the service has moved to the public subnets.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from deployer.errors import DeployerError
from deployer.retry import NEW_RESOURCE_NOT_FOUND
from deployer.settings import Settings
from deployer.state import Ids
from deployer.steps import tags
from deployer.steps.aws import absent_if
from deployer.steps.base import Converged, Existing, Step, StepContext, single

if TYPE_CHECKING:
    from mypy_boto3_ec2.type_defs import AddressTypeDef, NatGatewayTypeDef, RouteTableTypeDef

PRIVATE_SUBNETS = ("private-subnet-1", "private-subnet-2")
DEFAULT_ROUTE = "0.0.0.0/0"
# A NAT gateway is usually available within a few minutes and deleted within about one; the
# budget is generous (https://docs.aws.amazon.com/vpc/latest/userguide/nat-gateway-working-with.html).
NAT_WAIT_SECONDS = 900.0
# States of a gateway that no longer exists; AWS lists deleted gateways for about an hour
# (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeNatGateways.html).
GONE_STATES = ("deleting", "deleted", "failed")


class PrivateStep:
    """Mixin: the step's resource exists only in private mode."""

    def wanted(self, settings: Settings) -> bool:
        """Only with `network = "private"`."""
        return settings.network == "private"


class NatAddressStep(PrivateStep, Step["AddressTypeDef"]):
    """The Elastic IP of the NAT gateway: the tasks' one public address for outbound traffic."""

    name = "nat-address"
    resource = "Elastic IP address"

    def find_recorded(self, ctx: StepContext, ids: Ids) -> Existing[AddressTypeDef] | None:
        found = absent_if(
            lambda: ctx.clients.ec2.describe_addresses(AllocationIds=[ids["id"]])["Addresses"],
            "InvalidAllocationID.NotFound",
        )
        return Existing(ids, found[0]) if found else None

    def find_unrecorded(self, ctx: StepContext) -> Existing[AddressTypeDef] | None:
        # DescribeAddresses has no paginator: an account holds few addresses (5 per region by default).
        found = ctx.clients.ec2.describe_addresses(Filters=tags.ec2_tag_filters(ctx.settings, self.name))["Addresses"]
        address = single(found, self.resource, lambda a: a.get("AllocationId", ""))
        if address is None:
            return None
        return Existing({"id": address.get("AllocationId", ""), "ip": address.get("PublicIp", "")}, address)

    def create(self, ctx: StepContext) -> Ids:
        answer = ctx.clients.ec2.allocate_address(
            Domain="vpc", TagSpecifications=tags.ec2_tag_specifications(ctx.settings, self.name, "elastic-ip")
        )
        return {"id": answer["AllocationId"], "ip": answer["PublicIp"]}

    def delete(self, ctx: StepContext, ids: Ids) -> None:
        """Released after the NAT gateway (newer, so deleted first, and waited for) let go of it."""
        ctx.delete_when_free(
            lambda: ctx.clients.ec2.release_address(AllocationId=ids["id"]), "InvalidAllocationID.NotFound"
        )


class NatGatewayStep(PrivateStep, Step["NatGatewayTypeDef"]):
    """A public NAT gateway in public subnet 1 with the stack's Elastic IP."""

    name = "nat-gateway"
    resource = "NAT gateway"
    # In public subnet 1 with the stack's address. AWS fails a public NAT gateway in a VPC without an internet
    # gateway ("Network vpc-xxxxxxxx has no internet gateway attached", "Troubleshoot NAT gateways",
    # https://docs.aws.amazon.com/vpc/latest/userguide/nat-gateway-troubleshooting.html); and at teardown the
    # gateway's address must be gone before the internet gateway can be detached (see InternetGatewayStep.delete).
    needs = ("subnet-1", "nat-address", "internet-gateway")

    def find_recorded(self, ctx: StepContext, ids: Ids) -> Existing[NatGatewayTypeDef] | None:
        found = absent_if(
            lambda: ctx.clients.ec2.describe_nat_gateways(NatGatewayIds=[ids["id"]])["NatGateways"],
            "NatGatewayNotFound",
        )
        live = [g for g in found or [] if g.get("State") not in GONE_STATES]
        return Existing(ids, live[0]) if live else None

    def find_unrecorded(self, ctx: StepContext) -> Existing[NatGatewayTypeDef] | None:
        pages = ctx.clients.ec2.get_paginator("describe_nat_gateways").paginate(
            Filters=[
                *tags.ec2_tag_filters(ctx.settings, self.name),
                {"Name": "state", "Values": ["pending", "available"]},
            ]
        )
        found = [gateway for page in pages for gateway in page["NatGateways"]]
        gateway = single(found, self.resource, lambda g: g.get("NatGatewayId", ""))
        return Existing({"id": gateway.get("NatGatewayId", "")}, gateway) if gateway else None

    def create(self, ctx: StepContext) -> Ids:
        subnet_id, allocation_id = ctx.ids("subnet-1")["id"], ctx.ids("nat-address")["id"]
        gateway = ctx.retry(
            lambda: ctx.clients.ec2.create_nat_gateway(
                SubnetId=subnet_id,
                AllocationId=allocation_id,
                ConnectivityType="public",
                ClientToken=ctx.client_token(self.name, subnet_id, allocation_id),
                TagSpecifications=tags.ec2_tag_specifications(ctx.settings, self.name, "natgateway"),
            ),
            NEW_RESOURCE_NOT_FOUND,
        )["NatGateway"]
        return {"id": gateway.get("NatGatewayId", "")}

    def converge(self, ctx: StepContext, existing: Existing[NatGatewayTypeDef]) -> Converged:
        if existing.live.get("SubnetId") != ctx.ids("subnet-1")["id"]:
            raise self.drift(existing.ids, "is not in the stack's public subnet 1")
        allocations = {a.get("AllocationId") for a in existing.live.get("NatGatewayAddresses", [])}
        if ctx.ids("nat-address")["id"] not in allocations:
            raise self.drift(existing.ids, "does not use the stack's Elastic IP address")
        return Converged(existing.ids)

    def wait(self, ctx: StepContext, ids: Ids) -> None:
        """Until available: the private route table may point at a pending gateway, but the tasks'
        image pulls need it working (https://docs.aws.amazon.com/vpc/latest/userguide/nat-gateway-working-with.html)."""
        ctx.poll(self.resource, NAT_WAIT_SECONDS, lambda: self._state(ctx, ids, "available"))

    def delete(self, ctx: StepContext, ids: Ids) -> None:
        """Deleted and waited for: its Elastic IP and its interface in public subnet 1 are held until
        it is gone (AWS refuses ReleaseAddress and DeleteSubnet meanwhile)."""
        absent_if(lambda: ctx.clients.ec2.delete_nat_gateway(NatGatewayId=ids["id"]), "NatGatewayNotFound")
        ctx.poll(f"{self.resource} deletion", NAT_WAIT_SECONDS, lambda: self._state(ctx, ids, "deleted"))

    def _state(self, ctx: StepContext, ids: Ids, goal: str) -> str | None:
        """None once the gateway is in `goal` (a gateway not listed any more counts as deleted)."""
        found = absent_if(
            lambda: ctx.clients.ec2.describe_nat_gateways(NatGatewayIds=[ids["id"]])["NatGateways"],
            "NatGatewayNotFound",
        )
        state = found[0].get("State", "pending") if found else "deleted"
        if state == goal:
            return None
        if state == "failed" and goal == "available":
            gateway = found[0] if found else {}
            raise DeployerError(
                f"The NAT gateway {ids['id']} failed: "
                f"{gateway.get('FailureCode', '')} {gateway.get('FailureMessage', '')}",
                where=f"step '{self.name}'",
                todo="Fix the cause AWS gives, then run the same command again",
            )
        return state


class PrivateRouteTableStep(PrivateStep, Step["RouteTableTypeDef"]):
    """The private subnets' route table: 0.0.0.0/0 through the NAT gateway, nothing to the internet gateway."""

    name = "private-route-table"
    resource = "route table"
    needs = ("vpc", "nat-gateway", "private-subnet-1", "private-subnet-2")  # its route, the subnets it serves

    def find_recorded(self, ctx: StepContext, ids: Ids) -> Existing[RouteTableTypeDef] | None:
        tables = absent_if(
            lambda: ctx.clients.ec2.describe_route_tables(RouteTableIds=[ids["id"]])["RouteTables"],
            "InvalidRouteTableID.NotFound",
        )
        return Existing(ids, tables[0]) if tables else None

    def find_unrecorded(self, ctx: StepContext) -> Existing[RouteTableTypeDef] | None:
        pages = ctx.clients.ec2.get_paginator("describe_route_tables").paginate(
            Filters=tags.ec2_tag_filters(ctx.settings, self.name)
        )
        tables = [table for page in pages for table in page["RouteTables"]]
        table = single(tables, self.resource, lambda t: t["RouteTableId"])
        return Existing({"id": table["RouteTableId"]}, table) if table else None

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
        ids = {"id": table["RouteTableId"]}
        ctx.remember(self.name, ids)
        self.converge(ctx, Existing(ids, table))
        return ids

    def converge(self, ctx: StepContext, existing: Existing[RouteTableTypeDef]) -> Converged:
        ec2, table_id, changes = ctx.clients.ec2, existing.ids["id"], list[str]()
        if existing.live.get("VpcId") != ctx.ids("vpc")["id"]:
            raise self.drift(existing.ids, "is in another VPC")
        gateway_id = ctx.ids("nat-gateway")["id"]
        default = [r for r in existing.live.get("Routes", []) if r.get("DestinationCidrBlock") == DEFAULT_ROUTE]
        if not default:
            ctx.change(
                changes,
                f"route {DEFAULT_ROUTE} -> {gateway_id} added",
                lambda: ctx.retry(
                    lambda: ec2.create_route(
                        RouteTableId=table_id, DestinationCidrBlock=DEFAULT_ROUTE, NatGatewayId=gateway_id
                    ),
                    NEW_RESOURCE_NOT_FOUND,
                ),
            )
        elif default[0].get("NatGatewayId") != gateway_id:
            ctx.change(
                changes,
                f"route {DEFAULT_ROUTE} -> {gateway_id} replaced",
                lambda: ec2.replace_route(
                    RouteTableId=table_id, DestinationCidrBlock=DEFAULT_ROUTE, NatGatewayId=gateway_id
                ),
            )
        associated = {a.get("SubnetId") for a in existing.live.get("Associations", [])}
        for subnet_id in (ctx.ids(step)["id"] for step in PRIVATE_SUBNETS):
            if subnet_id not in associated:
                ctx.change(
                    changes,
                    f"{subnet_id} associated",
                    partial(ec2.associate_route_table, RouteTableId=table_id, SubnetId=subnet_id),
                )
        return Converged(existing.ids, changes)

    def delete(self, ctx: StepContext, ids: Ids) -> None:
        """Disassociated first: AWS refuses to delete a table a subnet uses (DependencyViolation,
        https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DeleteRouteTable.html)."""
        existing = self.find_recorded(ctx, ids)
        if existing is None:
            return
        for association in existing.live.get("Associations", []):
            if association.get("Main") or "RouteTableAssociationId" not in association:
                continue
            absent_if(
                partial(ctx.clients.ec2.disassociate_route_table, AssociationId=association["RouteTableAssociationId"]),
                "InvalidAssociationID.NotFound",
            )
        ctx.delete_when_free(
            lambda: ctx.clients.ec2.delete_route_table(RouteTableId=ids["id"]), "InvalidRouteTableID.NotFound"
        )
