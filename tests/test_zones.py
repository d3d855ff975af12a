"""Issue 10: availability zones, cross-zone load balancing, an impaired load balancer, a parked
stack (desired_count = 0) and reading every page of a paged answer.

Where moto cannot answer like AWS (zone IDs of another account, an `active_impaired` load
balancer, a zone ELB refuses, a second page), botocore event hooks rewrite or replace its answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import boto3
import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders

from deployer import runner
from deployer.clients import AwsClients, build_clients
from deployer.errors import DeployerError, SettingsError
from deployer.rollout import RolloutWatch
from deployer.settings import Settings
from deployer.steps.base import StepContext
from deployer.steps.loadbalancer import CROSS_ZONE
from deployer.steps.network import VpcStep, blocked
from deployer.zones import Zone, choose
from tests.conftest import TEST_CLIENT_CONFIG, CallLog, FakeClock, FakeSite, RecordingOutput, make_context, planning
from tests.faults import inject_errors
from tests.rollouts import Rollout
from tests.steps_helpers import provision_through

# What DescribeAvailabilityZones answers in us-west-1 for an account whose names map like this: the
# alphabetical first two (us-west-1a, us-west-1b) include usw1-az2, where Fargate does not run.
US_WEST_1 = [("us-west-1a", "usw1-az2"), ("us-west-1b", "usw1-az3"), ("us-west-1c", "usw1-az1")]


def rewrite_zones(client: Any, zones: list[tuple[str, str]]) -> None:
    """Make DescribeAvailabilityZones answer with these (name, zone ID) pairs."""

    def answer(parsed: dict[str, Any], **_: Any) -> None:
        parsed["AvailabilityZones"] = [
            {"ZoneName": name, "ZoneId": zone_id, "State": "available", "ZoneType": "availability-zone"}
            for name, zone_id in zones
        ]

    client.meta.events.register("after-call.ec2.DescribeAvailabilityZones", answer)


def west_context(aws: AwsClients, settings: Settings, state_path: Path, calls: CallLog) -> StepContext:
    """A run in us-west-1 (still moto), its zone answer rewritten to US_WEST_1."""
    clients = build_clients(boto3.Session(region_name="us-west-1"), TEST_CLIENT_CONFIG)
    clients.ec2.meta.events.register("before-call", calls.record)
    rewrite_zones(clients.ec2, US_WEST_1)
    return make_context(clients, replace(settings, region="us-west-1"), state_path)


# --- item 5: availability zones -------------------------------------------------------------------


def test_zones_are_chosen_by_zone_id_where_fargate_runs() -> None:
    zones = [Zone(name, zone_id) for name, zone_id in US_WEST_1]
    assert [z.name for z in choose("us-west-1", zones, ())] == ["us-west-1c", "us-west-1b"]  # az1, az3
    # A region without exceptions: every zone, in zone-ID order (az2 before az10).
    east = [Zone("us-east-1a", "use1-az10"), Zone("us-east-1b", "use1-az2"), Zone("us-east-1c", "use1-az4")]
    assert [z.zone_id for z in choose("us-east-1", east, ())] == ["use1-az2", "use1-az4"]
    assert [z.name for z in choose("us-east-1", [*east, Zone("us-east-1d", "use1-az1", "impaired")], ())] == [
        "us-east-1b",
        "us-east-1c",
    ]


def test_the_region_answer_decides_the_zones_not_their_names(
    aws: AwsClients, settings: Settings, state_path: Path, calls: CallLog
) -> None:
    ctx = west_context(aws, settings, state_path, calls)
    assert ctx.availability_zones() == ["us-west-1c", "us-west-1b"]
    assert ctx.availability_zones() == ["us-west-1c", "us-west-1b"]
    assert calls.calls.count(("ec2", "DescribeAvailabilityZones")) == 1  # asked once per run


def test_a_region_with_fewer_than_two_fargate_zones_is_refused_before_anything_is_created(
    aws: AwsClients, settings: Settings, state_path: Path, calls: CallLog
) -> None:
    ctx = west_context(aws, settings, state_path, calls)
    rewrite_zones(ctx.clients.ec2, [("us-west-1a", "usw1-az2"), ("us-west-1b", "usw1-az3")])
    with pytest.raises(DeployerError, match="fewer than two available zones where Fargate runs"):
        runner.provision(ctx, wait=False)
    assert calls.changing() == []


@pytest.mark.parametrize(
    ("named", "expected"),
    [
        (("use1-az1", "use1-az2"), [("us-east-1b", "use1-az1"), ("us-east-1c", "use1-az2")]),  # zone IDs
        (("us-east-1f", "use1-az4"), [("us-east-1f", "use1-az5"), ("us-east-1d", "use1-az4")]),  # mixed
    ],
)
def test_named_zones_by_name_or_id_place_the_subnets(
    aws: AwsClients, settings: Settings, state_path: Path, named: tuple[str, ...], expected: list[tuple[str, str]]
) -> None:
    ctx = make_context(aws, replace(settings, availability_zones=named), state_path)
    provision_through(ctx, "subnet-2")
    subnets = [
        aws.ec2.describe_subnets(SubnetIds=[ctx.ids(step)["id"]])["Subnets"][0] for step in ("subnet-1", "subnet-2")
    ]
    assert [(s["AvailabilityZone"], s["AvailabilityZoneId"]) for s in subnets] == expected


@pytest.mark.parametrize(
    ("named", "says"),
    [
        (("us-east-1a", "us-east-1x"), "'us-east-1x' is not an availability zone of us-east-1"),
        (("us-east-1a", "use1-az6"), "names us-east-1a (use1-az6) again"),  # the same zone by name and ID
    ],
)
def test_unknown_or_repeated_zones_are_refused_before_any_write(
    ctx: StepContext, calls: CallLog, named: tuple[str, ...], says: str
) -> None:
    ctx = replace(ctx, settings=replace(ctx.settings, availability_zones=named))
    with pytest.raises(SettingsError) as raised:
        runner.provision(ctx, wait=False)
    assert says in raised.value.message
    assert raised.value.exit_code == 2
    assert calls.changing() == []
    with pytest.raises(SettingsError):  # the plan refuses the same way
        runner.plan(planning(ctx))


def test_a_named_zone_where_fargate_does_not_run_is_refused(
    aws: AwsClients, settings: Settings, state_path: Path, calls: CallLog
) -> None:
    ctx = west_context(aws, settings, state_path, calls)
    ctx = replace(ctx, settings=replace(ctx.settings, availability_zones=("us-west-1a", "usw1-az3")))
    with pytest.raises(SettingsError, match=r"Fargate does not run in us-west-1a \(usw1-az2\)") as raised:
        runner.provision(ctx, wait=False)
    assert "usw1-az1" in raised.value.message and "usw1-az3" in raised.value.message  # the zones to use
    assert calls.changing() == []


def test_a_zone_the_load_balancer_refuses_is_named_with_the_zones_to_use(ctx: StepContext) -> None:
    # The wording of AWS's refusal: https://github.com/widdix/mastodon-on-aws/issues/13
    inject_errors(
        ctx.clients.elbv2,
        "CreateLoadBalancer",
        "AvailabilityZoneNotSupported",
        "The following Availability Zones us-east-1b cannot be associated with a load balancer. "
        "Please try a different Availability Zone.",
    )
    with pytest.raises(DeployerError) as raised:
        provision_through(ctx, "load-balancer")
    message = raised.value.message
    assert "availability zone us-east-1b (use1-az1)" in message
    assert 'availability_zones = ["use1-az2", "use1-az3"]' in message  # use1-az2 stays, use1-az3 is next
    assert raised.value.exit_code == 2


def test_a_zone_refused_on_set_subnets_is_explained_too(ctx: StepContext) -> None:
    step = provision_through(ctx, "load-balancer")
    elsewhere = ctx.clients.ec2.create_subnet(
        VpcId=ctx.ids("vpc")["id"],
        CidrBlock="172.31.96.0/20",
        AvailabilityZone=ctx.ids("subnet-2")["availability_zone"],
    )["Subnet"]["SubnetId"]
    arn = ctx.ids("load-balancer")["arn"]
    ctx.clients.elbv2.set_subnets(LoadBalancerArn=arn, Subnets=[ctx.ids("subnet-1")["id"], elsewhere])
    inject_errors(ctx.clients.elbv2, "SetSubnets", "AvailabilityZoneNotSupported", "not supported")
    with pytest.raises(DeployerError, match="AvailabilityZoneNotSupported") as raised:
        runner.provision_step(ctx, step)
    assert "us-east-1b (use1-az1) or us-east-1c (use1-az2)" in raised.value.message  # AWS named none: ours


def test_a_subnet_outside_the_named_zones_is_drift(ctx: StepContext) -> None:
    provision_through(ctx, "subnet-2")
    moved = replace(ctx, settings=replace(ctx.settings, availability_zones=("use1-az1", "use1-az5")))
    with pytest.raises(DeployerError, match=r"is in zone us-east-1c \(use1-az2\), not in the availability_zones"):
        provision_through(moved, "subnet-2")


# --- item 8: cross-zone load balancing ------------------------------------------------------------


def cross_zone(ctx: StepContext) -> str | None:
    answer = ctx.clients.elbv2.describe_load_balancer_attributes(LoadBalancerArn=ctx.ids("load-balancer")["arn"])
    return {a.get("Key"): a.get("Value") for a in answer["Attributes"]}.get(CROSS_ZONE)


def test_cross_zone_load_balancing_is_on_and_put_back(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "load-balancer")
    assert cross_zone(ctx) == "true"

    arn = ctx.ids("load-balancer")["arn"]
    ctx.clients.elbv2.modify_load_balancer_attributes(
        LoadBalancerArn=arn, Attributes=[{"Key": CROSS_ZONE, "Value": "false"}]
    )
    calls.clear()
    assert runner.provision_step(planning(ctx), step)[2] == ["cross-zone load balancing on"]  # dry run: described
    assert calls.changing() == [] and cross_zone(ctx) == "false"

    outcome, _, changes = runner.provision_step(ctx, step)
    assert (outcome, changes) == ("updated", ["cross-zone load balancing on"])
    assert cross_zone(ctx) == "true"
    calls.clear()
    assert runner.provision_step(ctx, step)[0] == "unchanged"
    assert calls.changing() == []


# --- item 9: active_impaired ----------------------------------------------------------------------


def test_an_impaired_load_balancer_ends_the_wait_with_a_warning(
    ctx: StepContext, clock: FakeClock, output: RecordingOutput
) -> None:
    step = provision_through(ctx, "load-balancer")

    def impaired(parsed: dict[str, Any], **_: Any) -> None:
        for balancer in parsed.get("LoadBalancers", []):
            balancer["State"] = {"Code": "active_impaired", "Reason": "insufficient capacity to scale"}

    ctx.clients.elbv2.meta.events.register("after-call.elastic-load-balancing-v2.DescribeLoadBalancers", impaired)
    step.wait(ctx, ctx.ids("load-balancer"))
    warnings = [line for line in output.lines if line.startswith("warning:")]
    assert len(warnings) == 1
    assert "active_impaired" in warnings[0] and "insufficient capacity to scale" in warnings[0]
    assert clock.time == 0  # no poll: it serves


# --- item 10: desired_count = 0 -------------------------------------------------------------------


def test_a_parked_stack_is_done_at_zero_tasks_without_a_target_or_the_url(
    aws: AwsClients, settings: Settings, state_path: Path, site: FakeSite, output: RecordingOutput, clock: FakeClock
) -> None:
    ctx = make_context(aws, replace(settings, desired_count=0), state_path, output=output, probe=site, clock=clock)
    Rollout().install(ctx.clients.ecs, ctx.clients.elbv2)  # completes the rollout; no target ever turns healthy
    report = runner.provision(ctx)
    assert site.asked == []  # the URL is not probed
    assert any("the stack is parked" in line for line in output.lines)
    assert "serving_revision" not in report.outputs  # nothing was verified serving
    assert clock.time < ctx.settings.service_wait_timeout


# --- item 12: every page ----------------------------------------------------------------------------


def pages(client: Any, operation: str, token: str, key: str, items: list[list[Any]]) -> list[dict[str, Any]]:
    """Answer `operation` with `items` split into pages chained by `token`; returns the requests seen."""
    service = client.meta.service_model.service_id.hyphenize()
    seen: list[dict[str, Any]] = []

    def keep(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["api_params"] = dict(params)

    def answer(context: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        params = context.get("api_params", {})
        seen.append(params)
        index = int(params.get(token, "0"))
        parsed: dict[str, Any] = {key: items[index], "ResponseMetadata": {"HTTPStatusCode": 200}}
        if index + 1 < len(items):
            parsed[token] = str(index + 1)
        return AWSResponse("https://injected", 200, HTTPHeaders(), None), parsed

    client.meta.events.register(f"before-parameter-build.{service}.{operation}", keep)
    client.meta.events.register(f"before-call.{service}.{operation}", answer)
    return seen


def test_stopped_tasks_on_a_second_page_are_explained(ctx: StepContext, output: RecordingOutput) -> None:
    arn = "arn:aws:ecs:us-east-1:123456789012:task/test-site-cluster/{}"
    seen = pages(ctx.clients.ecs, "ListTasks", "nextToken", "taskArns", [[arn.format("one")], [arn.format("two")]])

    def describe(context: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        tasks = [
            {"taskArn": task, "stoppedReason": f"stopped {task[-3:]}", "taskDefinitionArn": "td/test-site-web:1"}
            for task in context["api_params"]["tasks"]
        ]
        return AWSResponse("https://injected", 200, HTTPHeaders(), None), {"tasks": tasks, "failures": []}

    keep: Callable[..., None] = lambda params, context, **_: context.update(api_params=dict(params))  # noqa: E731
    ctx.clients.ecs.meta.events.register("before-parameter-build.ecs.DescribeTasks", keep)
    # A before-call handler may answer in AWS's place (botocore's event docs); the stubs type handlers as -> None.
    ctx.clients.ecs.meta.events.register("before-call.ecs.DescribeTasks", cast("Callable[..., None]", describe))

    RolloutWatch(ctx, "test-site-cluster", "test-site-web", "td", "http://x")._show_stopped_tasks()
    assert len(seen) == 2 and seen[1]["nextToken"] == "1"
    assert [line for line in output.lines if "task stopped" in line] == [
        "  task stopped (test-site-web:1): stopped one",
        "  task stopped (test-site-web:1): stopped two",
    ]


def test_a_blocked_delete_names_interfaces_from_every_page(ctx: StepContext) -> None:
    interface = {"InterfaceType": "network_load_balancer", "Description": "ELB net/x", "Status": "in-use"}
    seen = pages(
        ctx.clients.ec2,
        "DescribeNetworkInterfaces",
        "NextToken",
        "NetworkInterfaces",
        [[{**interface, "NetworkInterfaceId": "eni-1"}], [], [{**interface, "NetworkInterfaceId": "eni-3"}]],
    )
    error = blocked(ctx, "subnet", "subnet-123", "subnet-id")
    assert len(seen) == 3  # an empty page with a token is not the end
    assert "by 2 network interface(s)" in error.message
    assert "eni-1" in error.message and "eni-3" in error.message


def test_a_tag_lookup_reads_every_page(ctx: StepContext) -> None:
    provision_through(ctx, "vpc")
    vpc = ctx.clients.ec2.describe_vpcs(VpcIds=[ctx.ids("vpc")["id"]])["Vpcs"][0]
    seen = pages(ctx.clients.ec2, "DescribeVpcs", "NextToken", "Vpcs", [[], [vpc]])
    found = VpcStep().find_unrecorded(ctx)
    assert found is not None and found.ids["id"] == vpc["VpcId"]
    assert len(seen) == 2
