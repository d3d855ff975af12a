"""`network = "private"`: tasks in private subnets without public addresses, out through one NAT gateway."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from deployer import cost, runner
from deployer.clients import AwsClients
from deployer.errors import SettingsError
from deployer.settings import Settings, validate
from deployer.stack import steps_by_name
from deployer.state import State, StateFile
from deployer.steps.base import StepContext
from tests.conftest import ACCOUNT, IMAGE, REGION, CallLog, make_context, planning, recorded_clients
from tests.inventory import EXPECTED_COUNTS, added, inventory
from tests.rollouts import Rollout
from tests.steps_helpers import provision_through

PRIVATE_STEPS = ("private-subnet-1", "private-subnet-2", "nat-address", "nat-gateway", "private-route-table")


def private(ctx: StepContext) -> StepContext:
    return replace(ctx, settings=replace(ctx.settings, network="private"))


def awsvpc(ctx: StepContext) -> Any:
    service = ctx.clients.ecs.describe_services(cluster=ctx.ids("cluster")["arn"], services=[ctx.ids("service")["arn"]])
    return service["services"][0]["networkConfiguration"]["awsvpcConfiguration"]


def live_nat_gateways(ctx: StepContext) -> list[str]:
    gateways = ctx.clients.ec2.describe_nat_gateways()["NatGateways"]
    return [g.get("NatGatewayId", "") for g in gateways if g.get("State") not in ("deleting", "deleted")]


def test_private_tasks_have_no_public_address_and_go_out_through_the_nat(ctx: StepContext, serving: Rollout) -> None:
    run = private(ctx)
    runner.provision(run)
    config = awsvpc(run)
    assert config["assignPublicIp"] == "DISABLED"
    assert sorted(config["subnets"]) == sorted(run.ids(step)["id"] for step in ("private-subnet-1", "private-subnet-2"))

    gateway = run.ids("nat-gateway")["id"]
    nat = run.clients.ec2.describe_nat_gateways(NatGatewayIds=[gateway])["NatGateways"][0]
    assert nat.get("SubnetId") == run.ids("subnet-1")["id"]
    assert nat.get("State") == "available"
    assert [a.get("AllocationId") for a in nat.get("NatGatewayAddresses", [])] == [run.ids("nat-address")["id"]]

    table = run.clients.ec2.describe_route_tables(RouteTableIds=[run.ids("private-route-table")["id"]])["RouteTables"][
        0
    ]
    assert [r.get("NatGatewayId") for r in table.get("Routes", []) if r.get("DestinationCidrBlock") == "0.0.0.0/0"] == [
        gateway
    ]
    assert {a.get("SubnetId") for a in table.get("Associations", [])} == {
        run.ids("private-subnet-1")["id"],
        run.ids("private-subnet-2")["id"],
    }
    acl = run.clients.ec2.describe_network_acls(NetworkAclIds=[run.ids("network-acl")["id"]])["NetworkAcls"][0]
    assert {run.ids(s)["id"] for s in ("private-subnet-1", "private-subnet-2")} <= {
        a.get("SubnetId") for a in acl.get("Associations", [])
    }


def test_public_to_private_and_back_converges(ctx: StepContext, serving: Rollout, calls: CallLog) -> None:
    runner.provision(ctx)
    assert awsvpc(ctx)["assignPublicIp"] == "ENABLED"
    assert not any(ctx.state.get(step) for step in PRIVATE_STEPS)

    report = runner.provision(private(ctx))
    assert {line.step: line.outcome for line in report.steps}["service"] == "updated"
    assert awsvpc(ctx)["assignPublicIp"] == "DISABLED"
    assert all(ctx.state.get(step) for step in PRIVATE_STEPS)
    calls.clear()
    again = runner.provision(private(ctx))
    assert {line.outcome for line in again.steps} == {"unchanged"}

    back = runner.provision(ctx)
    outcomes = [(line.step, line.outcome) for line in back.steps]
    assert ("service", "updated") in outcomes
    assert outcomes[-len(PRIVATE_STEPS) :] == [(step, "removed") for step in reversed(PRIVATE_STEPS)]
    assert awsvpc(ctx)["assignPublicIp"] == "ENABLED"
    assert not any(ctx.state.get(step) for step in PRIVATE_STEPS)
    assert live_nat_gateways(ctx) == []
    assert ctx.clients.ec2.describe_addresses()["Addresses"] == []
    assert (
        len(ctx.clients.ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [ctx.ids("vpc")["id"]]}])["Subnets"])
        == 2
    )


def test_the_nat_gateway_is_waited_for_both_ways(ctx: StepContext, serving: Rollout) -> None:
    """moto makes a gateway available (and deleted) at once; AWS takes minutes: two pending answers each way."""
    run = private(ctx)
    answers = {"pending": 2, "deleting": 2}

    seen: list[str] = []

    def pending(model: Any, parsed: dict[str, Any], **_: Any) -> None:
        if model.name != "DescribeNatGateways":
            return
        for gateway in parsed.get("NatGateways", []):
            state = gateway.get("State")
            goal = "pending" if state == "available" else "deleting" if state == "deleted" else None
            if goal and answers[goal] > 0:
                answers[goal] -= 1
                gateway["State"] = goal
                seen.append(goal)

    run.clients.ec2.meta.events.register("after-call.ec2.DescribeNatGateways", pending)
    runner.provision(run)
    assert seen.count("pending") == 2
    runner.teardown(run)
    assert seen.count("deleting") == 2
    assert live_nat_gateways(run) == []


def test_a_failed_nat_gateway_is_explained(ctx: StepContext) -> None:
    run = private(ctx)
    provision_through(run, "nat-gateway")

    def failed(model: Any, parsed: dict[str, Any], **_: Any) -> None:
        for gateway in parsed.get("NatGateways", []):
            gateway.update(State="failed", FailureCode="InsufficientFreeAddressesInSubnet", FailureMessage="full")

    run.clients.ec2.meta.events.register("after-call.ec2.DescribeNatGateways", failed)
    step = steps_by_name()["nat-gateway"]
    with pytest.raises(Exception, match="InsufficientFreeAddressesInSubnet"):
        step.wait(run, run.ids("nat-gateway"))


def test_teardown_deletes_the_nat_gateway_before_its_subnet_and_address(ctx: StepContext, serving: Rollout) -> None:
    """The contract layer refuses DeleteSubnet while the gateway's interface is in it and ReleaseAddress
    while the gateway holds the address, as AWS does (tests/contract/rules.py)."""
    run = private(ctx)
    runner.provision(run)
    runner.teardown(run)
    assert run.state.resources == []
    assert live_nat_gateways(run) == []
    assert run.clients.ec2.describe_addresses()["Addresses"] == []
    assert (
        run.clients.ec2.describe_network_acls(Filters=[{"Name": "default", "Values": ["false"]}])["NetworkAcls"] == []
    )


@pytest.mark.parametrize(
    ("given", "key"),
    [
        ({"network": "hidden"}, "network"),
        ({"listener_port": 22}, "listener_port"),
        ({"listener_port": 3389}, "listener_port"),
        ({"network": "private", "private_subnet_cidrs": ("172.31.64.0/20",)}, "private_subnet_cidrs"),
        ({"network": "private", "private_subnet_cidrs": ("172.31.64.0/20", "172.31.64.0/21")}, "private_subnet_cidrs"),
        ({"network": "private", "private_subnet_cidrs": ("172.31.32.0/20", "172.31.80.0/20")}, "private_subnet_cidrs"),
        ({"network": "private", "private_subnet_cidrs": ("10.0.0.0/20", "172.31.80.0/20")}, "private_subnet_cidrs"),
        ({"network": "private", "private_subnet_cidrs": ("172.31.64.0/33", "172.31.80.0/20")}, "private_subnet_cidrs"),
    ],
)
def test_bad_network_settings_are_refused(given: dict[str, Any], key: str) -> None:
    with pytest.raises(SettingsError, match=key) as refused:
        validate(Settings(stack="test-site", region=REGION, image=IMAGE, **given))
    assert refused.value.exit_code == 2


def test_private_cidrs_are_not_checked_in_public_mode() -> None:
    validate(
        Settings(
            stack="test-site",
            region=REGION,
            image=IMAGE,
            vpc_cidr="10.0.0.0/16",
            subnet_cidrs=("10.0.0.0/24", "10.0.1.0/24"),
        )
    )


# --- a crash right after each call of the private steps -------------------------------------------
# tests/test_crash_points.py kills the public stack after every call; these are the private steps' calls.


@pytest.fixture
def observer() -> Iterator[AwsClients]:
    """A fresh in-process moto account, and clients (not the tool's) to look at what it holds."""
    with mock_aws():
        yield recorded_clients(CallLog())


CRASH_SETTINGS = Settings(stack="crash-private", region=REGION, image=IMAGE, network="private")
PROVISION_CALLS = (
    "CreateSubnet",
    "AllocateAddress",
    "CreateNatGateway",
    "CreateRouteTable",
    "CreateRoute",
    "AssociateRouteTable",
)
TEARDOWN_CALLS = ("DisassociateRouteTable", "DeleteRouteTable", "DeleteNatGateway", "ReleaseAddress", "DeleteSubnet")


class Killed(BaseException):
    """The process died right after AWS served the call (a BaseException: nothing in the tool catches it)."""


def process(state_path: Path, kill: tuple[str, int] | None = None) -> StepContext:
    """A freshly started CLI: the state from disk only; optionally dying after the n-th `operation`."""
    clients = recorded_clients(CallLog())
    if kill is not None:
        operation, occurrence = kill
        seen: list[str] = []

        def die(model: Any, **_: Any) -> None:
            seen.append(model.name)
            if model.name == operation and seen.count(operation) == occurrence:
                raise Killed(f"killed after {operation} #{occurrence}")

        clients.ec2.meta.events.register("after-call.ec2", die)
    state = StateFile(state_path).load() or State(stack=CRASH_SETTINGS.stack, region=REGION, account_id=ACCOUNT)
    return make_context(clients, CRASH_SETTINGS, state_path, state=state)


def points(operations: tuple[str, ...], per: dict[str, int]) -> list[Any]:
    return [pytest.param(op, n, id=f"{op}-{n}") for op in operations for n in range(1, per[op] + 1)]


# How often a private stack's provision and teardown make each of those calls.
PROVISIONS = {
    "CreateSubnet": 4,
    "AllocateAddress": 1,
    "CreateNatGateway": 1,
    "CreateRouteTable": 2,
    "CreateRoute": 2,
    "AssociateRouteTable": 2,
}
TEARDOWNS = {
    "DisassociateRouteTable": 2,
    "DeleteRouteTable": 2,
    "DeleteNatGateway": 1,
    "ReleaseAddress": 1,
    "DeleteSubnet": 4,
}


def test_the_crash_points_are_the_calls_a_private_stack_makes(tmp_path: Path) -> None:
    with mock_aws():
        log = CallLog()
        clients = recorded_clients(log)
        run = make_context(clients, CRASH_SETTINGS, tmp_path / "state.json")
        runner.provision(run, wait=False)
        made = [op for _, op in log.calls]
        assert {op: made.count(op) for op in PROVISION_CALLS} == PROVISIONS
        log.clear()
        runner.teardown(run)
        made = [op for _, op in log.calls]
        assert {op: made.count(op) for op in TEARDOWN_CALLS} == TEARDOWNS


@pytest.mark.parametrize(("operation", "occurrence"), points(PROVISION_CALLS, PROVISIONS))
def test_provision_killed_after_a_private_call_converges(
    operation: str, occurrence: int, observer: AwsClients, state_path: Path
) -> None:
    before = inventory(observer)
    with pytest.raises(Killed):
        runner.provision(process(state_path, (operation, occurrence)), wait=False)
    runner.provision(process(state_path), wait=False)
    new = added(before, inventory(observer))
    expected = {**EXPECTED_COUNTS, "subnets": 4, "route_tables": 3, "nat_gateways": 1, "addresses": 1}
    assert {kind: len(ids) for kind, ids in new.items()} == expected
    runner.teardown(process(state_path))
    assert inventory(observer) == before


@pytest.mark.parametrize(("operation", "occurrence"), points(TEARDOWN_CALLS, TEARDOWNS))
def test_teardown_killed_after_a_private_call_converges(
    operation: str, occurrence: int, observer: AwsClients, state_path: Path
) -> None:
    before = inventory(observer)
    runner.provision(process(state_path), wait=False)
    with pytest.raises(Killed):
        runner.teardown(process(state_path, (operation, occurrence)))
    runner.teardown(process(state_path))
    assert inventory(observer) == before, f"left behind: {added(before, inventory(observer))}"
    assert not (StateFile(state_path).load() or State(stack="", region="", account_id="")).resources


def test_the_plan_of_a_private_stack_prices_the_nat_gateway(ctx: StepContext) -> None:
    public, private_ = cost.estimate(ctx.settings), cost.estimate(private(ctx).settings)
    assert "NAT gateway" in [line.item for line in private_]
    assert "NAT gateway" not in [line.item for line in public]
    assert 30 < cost.total(private_) - cost.total(public) < 40  # $0.045/h, less the tasks' public addresses
    report = runner.plan(planning(private(ctx)))
    assert set(PRIVATE_STEPS) <= {line.step for line in report.steps if line.outcome == "create"}
