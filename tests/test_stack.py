"""The whole stack in-process: provision, the seed's wiring, a no-op re-run, teardown."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import pytest

from deployer import runner
from deployer.errors import WaitTimeoutError
from deployer.ledger import Ledger
from deployer.parallel import Scheduler
from deployer.settings import Settings
from deployer.stack import build_steps
from deployer.state import State, StateFile
from deployer.steps.base import StepContext
from tests.conftest import ACCOUNT, IMAGE, CallLog, FakeClock, RecordingOutput
from tests.inventory import EXPECTED_COUNTS, added, inventory
from tests.rollouts import Rollout
from tests.steps_helpers import first_outcomes, wanted_steps

if TYPE_CHECKING:
    from mypy_boto3_ec2.literals import VpcAttributeNameType

# Each VPC attribute the stack sets, and the key describe_vpc_attribute answers it under.
DNS_ATTRIBUTES: tuple[tuple[VpcAttributeNameType, Literal["EnableDnsSupport", "EnableDnsHostnames"]], ...] = (
    ("enableDnsSupport", "EnableDnsSupport"),
    ("enableDnsHostnames", "EnableDnsHostnames"),
)


def test_provision_creates_exactly_the_stack_with_the_seed_wiring(ctx: StepContext, serving: Rollout) -> None:
    before = inventory(ctx.clients)
    report = runner.provision(ctx)
    new = added(before, inventory(ctx.clients))
    assert {kind: len(ids) for kind, ids in new.items()} == EXPECTED_COUNTS
    assert [line.outcome for line in report.steps] == first_outcomes(ctx.settings)
    assert report.outputs["url"] == f"http://{ctx.ids('load-balancer')['dns_name']}"
    assert_wiring(ctx)


def assert_wiring(ctx: StepContext) -> None:  # noqa: PLR0915 - one assertion per link of the stack
    ec2, elbv2, ecs, iam = ctx.clients.ec2, ctx.clients.elbv2, ctx.clients.ecs, ctx.clients.iam
    vpc_id = ctx.ids("vpc")["id"]
    vpc = ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0]
    assert vpc["CidrBlock"] == "172.31.0.0/16"
    for attribute, key in DNS_ATTRIBUTES:
        assert ec2.describe_vpc_attribute(VpcId=vpc_id, Attribute=attribute)[key]["Value"] is True

    subnets = ec2.describe_subnets(SubnetIds=[ctx.ids("subnet-1")["id"], ctx.ids("subnet-2")["id"]])["Subnets"]
    assert sorted(s["CidrBlock"] for s in subnets) == ["172.31.32.0/20", "172.31.48.0/20"]
    assert len({s["AvailabilityZone"] for s in subnets}) == 2
    assert {s["VpcId"] for s in subnets} == {vpc_id}

    gateway_id = ctx.ids("internet-gateway")["id"]
    gateway = ec2.describe_internet_gateways(InternetGatewayIds=[gateway_id])["InternetGateways"][0]
    assert [a["VpcId"] for a in gateway["Attachments"]] == [vpc_id]

    table = ec2.describe_route_tables(RouteTableIds=[ctx.ids("route-table")["id"]])["RouteTables"][0]
    assert any(a.get("Main") for a in table["Associations"])
    assert {"DestinationCidrBlock": "0.0.0.0/0", "GatewayId": gateway_id} in [
        {k: r.get(k) for k in ("DestinationCidrBlock", "GatewayId")} for r in table["Routes"]
    ]
    assert ctx.ids("route-table")["original_main_route_table"] != table["RouteTableId"]

    nlb_sg, task_sg = ctx.ids("nlb-security-group")["id"], ctx.ids("task-security-group")["id"]
    groups = {g["GroupId"]: g for g in ec2.describe_security_groups(GroupIds=[nlb_sg, task_sg])["SecurityGroups"]}
    (nlb_rule,) = groups[nlb_sg]["IpPermissions"]
    assert (nlb_rule["FromPort"], nlb_rule["ToPort"], nlb_rule["IpRanges"][0]["CidrIp"]) == (80, 80, "0.0.0.0/0")
    (task_rule,) = groups[task_sg]["IpPermissions"]
    assert (task_rule["FromPort"], task_rule["ToPort"]) == (8080, 8080)
    assert [p["GroupId"] for p in task_rule["UserIdGroupPairs"]] == [nlb_sg]
    assert task_rule.get("IpRanges", []) == []

    (log_group,) = ctx.clients.logs.describe_log_groups(logGroupNamePrefix="/ecs/test-site")["logGroups"]
    assert log_group["retentionInDays"] == 14

    # The execution role's permissions are its one inline policy (tests/test_least_privilege.py reads it).
    assert iam.list_attached_role_policies(RoleName="test-site-us-east-1-exec")["AttachedPolicies"] == []
    assert iam.list_role_policies(RoleName="test-site-us-east-1-exec")["PolicyNames"] == ["pull-image-write-logs"]
    assert iam.list_attached_role_policies(RoleName="test-site-us-east-1-task")["AttachedPolicies"] == []
    # Decoded by boto3; the stubs' statement type has no Principal or Condition, hence the plain dict.
    trust = cast(
        "dict[str, Any]", iam.get_role(RoleName="test-site-us-east-1-task")["Role"]["AssumeRolePolicyDocument"]
    )
    assert trust["Statement"][0]["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    assert trust["Statement"][0]["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}

    repository = ctx.clients.ecr.describe_repositories(repositoryNames=["test-site"])["repositories"][0]
    assert repository["imageScanningConfiguration"]["scanOnPush"] is True
    assert repository["imageTagMutability"] == "IMMUTABLE"
    rules = json.loads(ctx.clients.ecr.get_lifecycle_policy(repositoryName="test-site")["lifecyclePolicyText"])
    assert rules["rules"][0]["selection"] == {
        "tagStatus": "untagged",
        "countType": "imageCountMoreThan",
        "countNumber": 1,
    }

    target_arn = ctx.ids("target-group")["arn"]
    target = elbv2.describe_target_groups(TargetGroupArns=[target_arn])["TargetGroups"][0]
    assert (target["Protocol"], target["Port"], target["TargetType"], target["VpcId"]) == ("TCP", 8080, "ip", vpc_id)
    assert (target["HealthCheckIntervalSeconds"], target["HealthyThresholdCount"]) == (10, 2)
    assert target["UnhealthyThresholdCount"] == 2
    attributes = {
        a["Key"]: a["Value"] for a in elbv2.describe_target_group_attributes(TargetGroupArn=target_arn)["Attributes"]
    }
    assert attributes["deregistration_delay.timeout_seconds"] == "30"

    balancer = elbv2.describe_load_balancers(LoadBalancerArns=[ctx.ids("load-balancer")["arn"]])["LoadBalancers"][0]
    assert (balancer["Type"], balancer["Scheme"]) == ("network", "internet-facing")
    assert sorted(z["SubnetId"] for z in balancer["AvailabilityZones"]) == sorted(s["SubnetId"] for s in subnets)
    assert balancer["SecurityGroups"] == [nlb_sg]

    (listener,) = elbv2.describe_listeners(LoadBalancerArn=balancer["LoadBalancerArn"])["Listeners"]
    assert (listener["Protocol"], listener["Port"]) == ("TCP", 80)
    assert [(a["Type"], a["TargetGroupArn"]) for a in listener["DefaultActions"]] == [("forward", target_arn)]

    definition = ecs.describe_task_definition(taskDefinition=ctx.ids("task-definition")["arn"])["taskDefinition"]
    assert (definition["cpu"], definition["memory"], definition["networkMode"]) == ("256", "512", "awsvpc")
    assert definition["requiresCompatibilities"] == ["FARGATE"]
    assert definition["runtimePlatform"] == {"operatingSystemFamily": "LINUX", "cpuArchitecture": "X86_64"}
    assert definition["executionRoleArn"] == ctx.ids("execution-role")["arn"]
    assert definition["taskRoleArn"] == ctx.ids("task-role")["arn"]
    (container,) = definition["containerDefinitions"]
    assert container["image"] == IMAGE
    assert [p["containerPort"] for p in container["portMappings"]] == [8080]
    assert container["logConfiguration"]["logDriver"] == "awslogs"
    assert container["logConfiguration"]["options"]["awslogs-group"] == "/ecs/test-site"
    assert container["logConfiguration"]["options"]["mode"] == "non-blocking"
    assert container["logConfiguration"]["options"]["max-buffer-size"] == "25m"
    assert container["readonlyRootFilesystem"] is True
    assert container["linuxParameters"] == {"capabilities": {"drop": ["ALL"]}}
    assert definition["volumes"] == [{"name": "tmp"}]
    assert container["mountPoints"] == [{"sourceVolume": "tmp", "containerPath": "/tmp", "readOnly": False}]
    assert "user" not in container  # an `image` runs as its own user unless container_user says otherwise

    service = ecs.describe_services(cluster="test-site-cluster", services=["test-site-web"])["services"][0]
    assert service["launchType"] == "FARGATE"
    assert service["desiredCount"] == 1
    assert service["taskDefinition"] == definition["taskDefinitionArn"]
    network = service["networkConfiguration"]["awsvpcConfiguration"]
    assert sorted(network["subnets"]) == sorted(s["SubnetId"] for s in subnets)
    assert network["securityGroups"] == [task_sg]
    assert network["assignPublicIp"] == "ENABLED"
    assert [(lb["targetGroupArn"], lb["containerPort"]) for lb in service["loadBalancers"]] == [(target_arn, 8080)]


def test_every_resource_is_tagged_with_stack_and_step(ctx: StepContext, serving: Rollout) -> None:
    runner.provision(ctx)
    vpc = ctx.clients.ec2.describe_vpcs(VpcIds=[ctx.ids("vpc")["id"]])["Vpcs"][0]
    assert {"Key": "deployer:step", "Value": "vpc"} in vpc["Tags"]
    role_tags = ctx.clients.iam.list_role_tags(RoleName="test-site-us-east-1-task")["Tags"]
    assert {"Key": "deployer:stack", "Value": "test-site"} in role_tags
    assert {"Key": "deployer:region", "Value": "us-east-1"} in role_tags
    balancer_arn = ctx.ids("load-balancer")["arn"]
    (description,) = ctx.clients.elbv2.describe_tags(ResourceArns=[balancer_arn])["TagDescriptions"]
    assert {"Key": "deployer:step", "Value": "load-balancer"} in description["Tags"]
    service_tags = ctx.clients.ecs.list_tags_for_resource(resourceArn=ctx.ids("service")["arn"])["tags"]
    assert {"key": "deployer:stack", "value": "test-site"} in service_tags
    log_tags = ctx.clients.logs.list_tags_for_resource(
        resourceArn=f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/ecs/test-site"
    )["tags"]
    assert log_tags["deployer:step"] == "log-group"


def test_rerun_makes_no_changing_call(ctx: StepContext, calls: CallLog, serving: Rollout) -> None:
    runner.provision(ctx)
    snapshot = inventory(ctx.clients)
    calls.clear()
    report = runner.provision(ctx)
    assert calls.changing() == []
    assert {line.outcome for line in report.steps} == {"unchanged"}
    assert inventory(ctx.clients) == snapshot


def test_state_is_saved_after_every_step(ctx: StepContext, state_path: Path, serving: Rollout) -> None:
    saved_steps: list[list[str]] = []
    state_file = StateFile(state_path)

    def spy(state: State) -> None:
        state_file.save(state)
        saved_steps.append([r.step for r in state.resources])

    runner.provision(replace(ctx, ledger=Ledger(ctx.state, spy)))
    # Each save adds at most one step (steps finish at once, but their saves are one at a time), and every
    # step gets a save of its own, wherever the stack's order puts it in the file.
    added = [set(now) - set(before) for before, now in zip([[], *saved_steps], saved_steps, strict=False)]
    assert all(len(new) <= 1 for new in added)
    firsts = [name for new in added for name in new]
    for step in wanted_steps(ctx.settings):
        assert step.name in firsts, f"no save right after {step.name} was recorded"
    on_disk = StateFile(state_path).load()
    assert on_disk is not None
    assert [r.step for r in on_disk.resources] == [s.name for s in wanted_steps(ctx.settings)]


def test_teardown_deletes_everything_in_reverse_order(ctx: StepContext, calls: CallLog, serving: Rollout) -> None:
    before = inventory(ctx.clients)
    runner.provision(ctx)
    calls.clear()
    report = runner.teardown(ctx, Scheduler(slots=1))  # one at a time: the reversed graph's order, the stack's reversed
    assert [line.step for line in report.steps] == [s.name for s in reversed(wanted_steps(ctx.settings))]
    assert inventory(ctx.clients) == before
    assert ctx.state.resources == []
    deletes = [op for _, op in calls.changing()]
    order = [
        "DeleteService",
        "DeregisterTaskDefinition",
        "DeleteCluster",
        "DeleteListener",
        "DeleteLoadBalancer",
        "DeleteTargetGroup",
        "DeleteRole",
        "DeleteLogGroup",
        "DeleteSecurityGroup",
        "ReplaceRouteTableAssociation",
        "DeleteRouteTable",
        "DetachInternetGateway",
        "DeleteInternetGateway",
        "DeleteSubnet",
        "DeleteVpc",
        "DeleteRepository",  # created first, so the image can build while the rest is created
    ]
    positions = [deletes.index(op) for op in order]
    assert positions == sorted(positions), deletes
    assert deletes.index("UpdateService") < deletes.index("DeleteService")
    last_role_delete = len(deletes) - 1 - deletes[::-1].index("DeleteRole")  # the execution role's
    assert deletes.index("DeleteRolePolicy") < last_role_delete  # its inline policy goes first
    # Deletion protection is turned off right before the load balancer is deleted.
    assert deletes.index("ModifyLoadBalancerAttributes") == deletes.index("DeleteLoadBalancer") - 1


def test_teardown_restores_the_original_main_route_table(ctx: StepContext, serving: Rollout) -> None:
    runner.provision(ctx)
    vpc_id = ctx.ids("vpc")["id"]
    original = ctx.ids("route-table")["original_main_route_table"]
    step = {step.name: step for step in build_steps()}["route-table"]
    step.delete(ctx, ctx.ids("route-table"))
    main = ctx.clients.ec2.describe_route_tables(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "association.main", "Values": ["true"]}]
    )["RouteTables"]
    assert [t["RouteTableId"] for t in main] == [original]


def test_state_example_is_a_valid_state_of_the_whole_stack() -> None:
    example = StateFile(Path(__file__).resolve().parent.parent / "state.json.example").load()
    assert example is not None
    # The example shows a public stack with a key of its own (log_kms_key = "create").
    shown = Settings(log_kms_key="create")
    assert [r.step for r in example.resources] == [s.name for s in build_steps() if s.wanted(shown)]
    assert example.outputs["url"].startswith("http://")


def test_wait_says_what_it_waits_for_and_gives_up_after_the_timeout(
    ctx: StepContext, state_path: Path, clock: FakeClock, output: RecordingOutput
) -> None:
    """moto never runs the task, so the rollout never completes: the wait must end, not hang."""
    ctx = replace(ctx, settings=replace(ctx.settings, service_wait_timeout=60))
    with pytest.raises(WaitTimeoutError) as failure:
        runner.provision(ctx)
    assert "test-site-web to serve the new revision" in failure.value.message
    assert "rollout IN_PROGRESS, 0/1 tasks running" in failure.value.message
    assert any(line.startswith("  waiting for test-site-web to serve") for line in output.lines)
    assert 60 <= clock.time <= 70
    saved = StateFile(state_path).load()  # the service was recorded before the wait began
    assert saved is not None and saved.get("service") is not None
