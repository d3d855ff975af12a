"""AWS's eventual consistency, injected on top of moto: transient answers are waited out within budget,
permanent ones fail at once, and a teardown that stays blocked names what blocks it."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from deployer import runner
from deployer.errors import AwsCallError, DeployerError
from deployer.stack import build_steps
from deployer.steps.base import StepContext
from tests.conftest import FakeClock
from tests.faults import inject_errors
from tests.steps_helpers import provision_through

PROVISION_TRANSIENT = [
    (
        "ecs",
        "RegisterTaskDefinition",
        "ClientException",
        "ECS was unable to assume the role 'arn:aws:iam::123456789012:role/test-site-execution-role'",
        3,
    ),
    (
        "ecs",
        "CreateService",
        "InvalidParameterException",
        "The target group with targetGroupArn arn:x does not have an associated load balancer.",
        3,
    ),
    (
        "ecs",
        "CreateService",
        "InvalidParameterException",
        "Unable to assume the service linked role. Please verify that the ECS service linked role exists.",
        2,
    ),
    ("ec2", "ModifyVpcAttribute", "InvalidVpcID.NotFound", "The vpc ID 'vpc-1' does not exist", 2),
    ("ec2", "CreateSubnet", "InvalidVpcID.NotFound", "The vpc ID 'vpc-1' does not exist", 1),
    ("ec2", "AttachInternetGateway", "InvalidInternetGatewayID.NotFound", "The internetGateway ID does not exist", 2),
    ("ec2", "CreateRoute", "InvalidRouteTableID.NotFound", "The routeTable ID 'rtb-1' does not exist", 2),
    ("ec2", "AuthorizeSecurityGroupIngress", "InvalidGroup.NotFound", "The security group does not exist", 2),
    ("logs", "PutRetentionPolicy", "ResourceNotFoundException", "The specified log group does not exist.", 1),
    ("iam", "AttachRolePolicy", "NoSuchEntity", "The role with name test-site-execution-role cannot be found.", 2),
    ("ecr", "PutLifecyclePolicy", "RepositoryNotFoundException", "The repository does not exist", 1),
    ("elbv2", "ModifyTargetGroupAttributes", "TargetGroupNotFound", "Target groups not found", 2),
    ("elbv2", "CreateListener", "TargetGroupNotFound", "Target groups not found", 1),
]

PROVISION_PERMANENT = [
    ("ec2", "CreateSubnet", "InvalidParameterValue", "Value (us-east-1x) for parameter availabilityZone is invalid"),
    ("ecs", "CreateService", "InvalidParameterException", "Error retrieving subnet information for [subnet-1]"),
    ("iam", "AttachRolePolicy", "NoSuchEntity", "Policy arn:aws:iam::aws:policy/X does not exist"),
    ("ec2", "CreateVpc", "VpcLimitExceeded", "The maximum number of VPCs has been reached."),
    ("ecs", "RegisterTaskDefinition", "ClientException", "Invalid 'cpu' setting for task."),
]

TEARDOWN_TRANSIENT = [
    ("ecs", "DeleteService", "InvalidParameterException", "Service cannot be stopped while deployments are active", 3),
    ("ecs", "DeleteCluster", "ClusterContainsServicesException", "Cannot delete while Services are active", 2),
    ("ecs", "DeleteCluster", "ClusterContainsTasksException", "Cannot delete while Tasks are active", 2),
    ("elbv2", "DeleteTargetGroup", "ResourceInUse", "Target group is currently in use by a listener or a rule", 2),
    ("ec2", "DeleteSecurityGroup", "DependencyViolation", "resource sg-1 has a dependent object", 4),
    ("ec2", "DeleteSecurityGroup", "InvalidGroup.InUse", "Group sg-1 is used by security groups in other accounts", 1),
    ("ec2", "DetachInternetGateway", "DependencyViolation", "Network vpc-1 has some mapped public address(es).", 3),
    ("ec2", "DeleteSubnet", "DependencyViolation", "The subnet 'subnet-1' has dependencies and cannot be deleted.", 5),
    ("ec2", "DeleteRouteTable", "DependencyViolation", "The routeTable 'rtb-1' has dependencies", 1),
    ("ec2", "DeleteVpc", "DependencyViolation", "The vpc 'vpc-1' has dependencies and cannot be deleted.", 2),
]


def client_of(ctx: StepContext, service: str) -> Any:
    return getattr(ctx.clients, service)


@pytest.mark.parametrize(("service", "operation", "code", "message", "times"), PROVISION_TRANSIENT)
def test_transient_answers_during_provision_are_waited_out(
    ctx: StepContext, clock: FakeClock, service: str, operation: str, code: str, message: str, times: int
) -> None:
    injected = inject_errors(client_of(ctx, service), operation, code, message, times=times)
    runner.provision(ctx, wait=False)
    assert injected.served == times
    assert len(clock.slept) == times
    assert clock.slept == sorted(clock.slept), "backoff grows"
    assert ctx.state.get("service") is not None


@pytest.mark.parametrize(("service", "operation", "code", "message"), PROVISION_PERMANENT)
def test_permanent_errors_fail_at_once(
    ctx: StepContext, clock: FakeClock, service: str, operation: str, code: str, message: str
) -> None:
    injected = inject_errors(client_of(ctx, service), operation, code, message, times=100)
    with pytest.raises(AwsCallError) as failure:
        runner.provision(ctx, wait=False)
    assert injected.served == 1, "no retry storm"
    assert clock.slept == []
    assert failure.value.code == code
    assert message in failure.value.message


@pytest.mark.parametrize(("service", "operation", "code", "message", "times"), TEARDOWN_TRANSIENT)
def test_transient_answers_during_teardown_are_waited_out(
    ctx: StepContext, clock: FakeClock, service: str, operation: str, code: str, message: str, times: int
) -> None:
    runner.provision(ctx, wait=False)
    injected = inject_errors(client_of(ctx, service), operation, code, message, times=times)
    runner.teardown(ctx)
    assert injected.served == times
    assert len(clock.slept) >= times
    assert ctx.state.resources == []


def test_retries_stop_at_the_budget(ctx: StepContext, clock: FakeClock) -> None:
    """A role that never becomes assumable: ~2 minutes of retries, then AWS's message."""
    inject_errors(
        ctx.clients.ecs, "RegisterTaskDefinition", "ClientException", "ECS was unable to assume the role", times=10_000
    )
    with pytest.raises(AwsCallError, match="unable to assume the role"):
        runner.provision(ctx, wait=False)
    assert 60 < sum(clock.slept) <= 120


def test_a_subnet_that_stays_blocked_names_its_network_interfaces(ctx: StepContext, clock: FakeClock) -> None:
    provision_through(ctx, "service")
    subnet = ctx.ids("subnet-2")["id"]  # teardown deletes subnet-2 first
    interface = ctx.clients.ec2.create_network_interface(SubnetId=subnet, Description="ELB net/test-site-nlb/abc")
    inject_errors(
        ctx.clients.ec2,
        "DeleteSubnet",
        "DependencyViolation",
        f"The subnet '{subnet}' has dependencies and cannot be deleted.",
        times=10_000,
    )
    with pytest.raises(DeployerError) as failure:
        runner.teardown(ctx)
    message = failure.value.message
    assert interface["NetworkInterface"]["NetworkInterfaceId"] in message
    assert "ELB net/test-site-nlb/abc" in message
    assert "run teardown.py again" in message
    assert 15 * 60 <= sum(clock.slept) <= 20 * 60
    assert ctx.state.get("subnet-2") is not None, "what is not deleted stays recorded"
    assert ctx.state.get("service") is None


def test_client_error_codes_are_what_the_rules_match() -> None:
    """The rules match codes (and message fragments only where AWS has no specific code)."""
    from deployer.retry import ROLE_NOT_VISIBLE  # noqa: PLC0415

    def error(code: str, message: str) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": message}}, "AttachRolePolicy")

    assert ROLE_NOT_VISIBLE.matches(error("NoSuchEntity", "The role with name r cannot be found."))
    assert not ROLE_NOT_VISIBLE.matches(error("NoSuchEntity", "Policy arn:x does not exist or is not attachable."))
    assert not ROLE_NOT_VISIBLE.matches(error("AccessDenied", "The role with name r cannot be found."))


def test_teardown_after_a_crash_past_delete_service_counts_the_service_as_deleted(ctx: StepContext) -> None:
    """AWS refuses UpdateService on a deleted service (moto accepts it): that means the step is done."""
    provision_through(ctx, "service")
    inject_errors(ctx.clients.ecs, "UpdateService", "ServiceNotActiveException", "Service was not ACTIVE.")
    service_step = {s.name: s for s in build_steps()}["service"]
    service_step.delete(ctx, ctx.ids("service"))  # no error: already gone counts as deleted
