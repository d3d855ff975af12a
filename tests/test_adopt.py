"""What a stack may adopt, and what AWS answers while an account, a role or a network is brand new.

* A resource found by its name is adopted only when it carries this stack's tags (IAM roles: and
  this region's); anything else with a colliding name is refused (exit 2) by provision and left
  alone by `--sweep`, and no changing call is ever made on it.
* IAM is global: the same stack name in two regions gets two pairs of roles.
* An account's first ECS cluster waits for the ECS service-linked role, or says at once which
  permission is missing to make it.
* "Not yet visible" answers of ELBv2 and ECS for a subnet, security group or VPC are retried only
  right after this run created them; a task stopped because ECS cannot assume a role made moments
  ago is not counted as a failed launch.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from deployer import runner
from deployer.clients import AwsClients, build_clients
from deployer.errors import DeployerError, ForeignResourceError
from deployer.ledger import Ledger
from deployer.rollout import DeploymentFailedError
from deployer.settings import MAX_REGION_LENGTH, MAX_ROLE_NAME_LENGTH, MAX_STACK_LENGTH, Names, Settings
from deployer.stack import build_steps
from deployer.state import State
from deployer.steps.base import REGION_TAG, STACK_TAG, Step, StepContext
from deployer.steps.ecs import ClusterStep, ServiceStep
from tests.conftest import ACCOUNT, IMAGE, REGION, TEST_CLIENT_CONFIG, CallLog, MotoServer, RunScript, make_context
from tests.faults import inject_errors
from tests.inventory import inventory
from tests.rollouts import Rollout
from tests.steps_helpers import provision_through

OUR_KEYS = ["deployer:stack", "deployer:step", "deployer:region", "Name"]


# ---------------------------------------------------------------- adoption only with our tags


def _arn(ctx: StepContext, step: str) -> str:
    return ctx.ids(step)["arn"]


def _strip_log_group(ctx: StepContext) -> str:
    name = ctx.ids("log-group")["name"]
    ctx.clients.logs.untag_log_group(logGroupName=name, tags=OUR_KEYS)
    return name


def _strip_role(ctx: StepContext) -> str:
    name = ctx.ids("execution-role")["name"]
    ctx.clients.iam.untag_role(RoleName=name, TagKeys=OUR_KEYS)
    return name


def _role_of_another_region(ctx: StepContext) -> str:
    """Our stack's tag, but the region tag of a stack of the same name elsewhere: not ours."""
    name = ctx.ids("task-role")["name"]
    ctx.clients.iam.tag_role(RoleName=name, Tags=[{"Key": REGION_TAG, "Value": "eu-west-1"}])
    return name


def _strip_repository(ctx: StepContext) -> str:
    ctx.clients.ecr.untag_resource(resourceArn=_arn(ctx, "repository"), tagKeys=OUR_KEYS)
    return ctx.ids("repository")["name"]


def _strip_elbv2(step: str) -> Callable[[StepContext], str]:
    def strip(ctx: StepContext) -> str:
        ctx.clients.elbv2.remove_tags(ResourceArns=[_arn(ctx, step)], TagKeys=OUR_KEYS)
        return ctx.ids(step)["name"]

    return strip


def _strip_ecs(step: str) -> Callable[[StepContext], str]:
    def strip(ctx: StepContext) -> str:
        ctx.clients.ecs.untag_resource(resourceArn=_arn(ctx, step), tagKeys=OUR_KEYS)
        return ctx.ids(step)["name"]

    return strip


def _hand_made_revision(ctx: StepContext) -> str:
    """Someone registers a revision in the stack's family by hand: the latest one is not ours."""
    family = ctx.ids("task-definition")["family"]
    arn = ctx.clients.ecs.register_task_definition(
        family=family, containerDefinitions=[{"name": "web", "image": IMAGE, "memory": 512}]
    )["taskDefinition"]["taskDefinitionArn"]
    return arn


def _strip_security_group(ctx: StepContext) -> str:
    group = ctx.ids("nlb-security-group")["id"]
    ctx.clients.ec2.delete_tags(Resources=[group], Tags=[{"Key": key} for key in OUR_KEYS])
    return group


FOREIGN = {
    "log-group": _strip_log_group,
    "execution-role": _strip_role,
    "task-role": _role_of_another_region,
    "repository": _strip_repository,
    "target-group": _strip_elbv2("target-group"),
    "load-balancer": _strip_elbv2("load-balancer"),
    "cluster": _strip_ecs("cluster"),
    "service": _strip_ecs("service"),
    "task-definition": _hand_made_revision,
    "nlb-security-group": _strip_security_group,
}


@pytest.mark.parametrize("step", list(FOREIGN))
def test_a_same_named_resource_without_our_tags_is_refused_and_never_touched(
    ctx: StepContext, calls: CallLog, step: str
) -> None:
    runner.provision(ctx, wait=False)
    name = FOREIGN[step](ctx)
    lost = _lost(ctx)
    calls.clear()
    with pytest.raises(ForeignResourceError) as refused:
        runner.provision(lost, wait=False)
    assert refused.value.exit_code == 2
    assert refused.value.step == step
    assert name in refused.value.message and "not adopted, changed or deleted" in refused.value.message
    assert "--stack" in refused.value.message  # what to do
    assert calls.changing() == []  # everything before it adopted unchanged; nothing done to it


@pytest.mark.parametrize("step", list(FOREIGN))
def test_sweep_skips_a_same_named_resource_without_our_tags(ctx: StepContext, step: str) -> None:
    runner.provision(ctx, wait=False)
    name = FOREIGN[step](ctx)
    lost = _lost(ctx)
    skipped = runner.discover(lost)
    assert [foreign.step for foreign in skipped] == [step]
    assert lost.state.get(step) is None  # never recorded, so teardown can never delete it
    assert any(name in line and "left alone" in line for line in lost.output.lines)  # type: ignore[attr-defined]


def test_a_repository_made_by_hand_with_the_stacks_name_survives_provision_and_sweep(
    ctx: StepContext, calls: CallLog
) -> None:
    """Refused, never adopted or changed. Steps that need nothing of the repository may have run beside it
    (the graph runner): what they made is recorded, and a teardown leaves only the user's repository."""
    ecr = ctx.clients.ecr
    before = inventory(ctx.clients)
    ecr.create_repository(repositoryName=ctx.settings.names.repository)  # someone else's, no tags
    calls.clear()
    with pytest.raises(ForeignResourceError, match="ECR repository test-site"):
        runner.provision(ctx, wait=False)
    assert not [call for call in calls.changing() if call[0] == "ecr"], "the repository was touched"
    assert ctx.state.get("repository") is None
    skipped = runner.discover(_lost(ctx))
    assert [foreign.step for foreign in skipped] == ["repository"]
    runner.teardown(ctx)
    assert ecr.describe_repositories(repositoryNames=["test-site"])["repositories"]
    ecr.delete_repository(repositoryName="test-site")
    assert inventory(ctx.clients) == before


def test_resources_with_our_tags_are_still_adopted(ctx: StepContext, calls: CallLog) -> None:
    runner.provision(ctx, wait=False)
    lost = _lost(ctx)
    calls.clear()
    report = runner.provision(lost, wait=False)
    assert {line.outcome for line in report.steps if line.step != "image"} == {"unchanged"}
    assert calls.changing() == []


def _lost(ctx: StepContext) -> StepContext:
    state = State(stack=ctx.settings.stack, region=REGION, account_id=ACCOUNT)
    return replace(ctx, ledger=Ledger(state, lambda _state: None), _created={})


# ---------------------------------------------------------------- IAM is global


def test_role_names_carry_the_region_and_fit_iam() -> None:
    names = Names("a" * MAX_STACK_LENGTH, "r" * MAX_REGION_LENGTH)
    assert len(names.execution_role) <= MAX_ROLE_NAME_LENGTH and len(names.task_role) <= MAX_ROLE_NAME_LENGTH
    assert Settings(stack="web", region="eu-west-1").names.execution_role == "web-eu-west-1-exec"
    assert Settings(stack="web", region="eu-west-1").names.task_role == "web-eu-west-1-task"


def _clients_in(region: str, calls: CallLog) -> AwsClients:
    clients = build_clients(boto3.Session(region_name=region), TEST_CLIENT_CONFIG)
    for client in clients.every():
        client.meta.events.register("before-call", calls.record)
    return clients


def test_the_same_stack_name_in_two_regions_are_two_independent_stacks(
    ctx: StepContext, calls: CallLog, tmp_path: Path
) -> None:
    europe = "eu-west-1"
    settings = replace(ctx.settings, region=europe)
    eu = make_context(
        _clients_in(europe, calls),
        settings,
        tmp_path / "eu-state.json",
        state=State(stack=settings.stack, region=europe, account_id=ACCOUNT),
    )
    runner.provision(ctx, wait=False)
    runner.provision(eu, wait=False)
    us_roles = {ctx.ids(step)["name"] for step in ("execution-role", "task-role")}
    eu_roles = {eu.ids(step)["name"] for step in ("execution-role", "task-role")}
    assert us_roles == {"test-site-us-east-1-exec", "test-site-us-east-1-task"}
    assert eu_roles == {"test-site-eu-west-1-exec", "test-site-eu-west-1-task"}

    runner.teardown(ctx)

    iam = eu.clients.iam
    for name in us_roles:
        with pytest.raises(iam.exceptions.NoSuchEntityException):
            iam.get_role(RoleName=name)
    service = eu.clients.ecs.describe_services(cluster=eu.ids("cluster")["name"], services=["test-site-web"])
    assert [s["status"] for s in service["services"]] == ["ACTIVE"]
    definition = eu.clients.ecs.describe_task_definition(taskDefinition=service["services"][0]["taskDefinition"])
    roles = {definition["taskDefinition"]["executionRoleArn"], definition["taskDefinition"]["taskRoleArn"]}
    assert roles == {iam.get_role(RoleName=name)["Role"]["Arn"] for name in eu_roles}
    tags = {t["Key"]: t["Value"] for t in iam.get_role(RoleName="test-site-eu-west-1-exec")["Role"].get("Tags", [])}
    assert tags[STACK_TAG] == "test-site" and tags[REGION_TAG] == europe
    calls.clear()
    report = runner.provision(eu, wait=False)  # the survivor is whole: nothing to create or change
    assert {line.outcome for line in report.steps if line.step != "image"} == {"unchanged"}
    assert calls.changing() == []


def test_a_state_recording_the_old_role_names_keeps_using_them(ctx: StepContext) -> None:
    """Stacks deployed before the region was in the role names: the recorded roles stay in use."""
    provision_through(ctx, "task-role")
    iam = ctx.clients.iam
    old = {}
    for step in ("execution-role", "task-role"):
        current = ctx.ids(step)["name"]
        trust = iam.get_role(RoleName=current)["Role"]["AssumeRolePolicyDocument"]
        name = f"test-site-{step}"  # the name the earlier version gave it
        role = iam.create_role(
            RoleName=name,
            AssumeRolePolicyDocument=trust if isinstance(trust, str) else json.dumps(trust),
            Tags=[{"Key": STACK_TAG, "Value": "test-site"}],  # no region tag: made before there was one
        )["Role"]
        for policy in iam.list_attached_role_policies(RoleName=current)["AttachedPolicies"]:
            iam.attach_role_policy(RoleName=name, PolicyArn=policy["PolicyArn"])
        old[step] = {"name": name, "arn": role["Arn"]}
        ctx.ledger.record(step, old[step])
    runner.provision(ctx, wait=False)
    assert ctx.ids("execution-role") == old["execution-role"] and ctx.ids("task-role") == old["task-role"]
    definition = ctx.clients.ecs.describe_task_definition(taskDefinition=ctx.ids("task-definition")["arn"])
    assert definition["taskDefinition"]["executionRoleArn"] == old["execution-role"]["arn"]
    assert definition["taskDefinition"]["taskRoleArn"] == old["task-role"]["arn"]


# ---------------------------------------------------------------- the account's first cluster

SLR_MISSING = "Unable to assume the service linked role. Please verify that the ECS service linked role exists."


def test_first_cluster_waits_for_the_ecs_service_linked_role(ctx: StepContext, calls: CallLog) -> None:
    provision_through(ctx, "listener")
    refused = inject_errors(ctx.clients.ecs, "CreateCluster", "InvalidParameterException", SLR_MISSING, times=3)
    outcome, ids, _ = runner.provision_step(ctx, ClusterStep())
    assert outcome == "created" and refused.served == 3
    assert ("iam", "CreateServiceLinkedRole") in calls.calls  # made on the first refusal, once
    assert calls.calls.count(("iam", "CreateServiceLinkedRole")) == 1
    assert ctx.clients.ecs.describe_clusters(clusters=[ids["name"]])["clusters"][0]["status"] == "ACTIVE"


def test_first_cluster_with_the_role_already_taken_just_retries(ctx: StepContext) -> None:
    provision_through(ctx, "listener")
    inject_errors(ctx.clients.ecs, "CreateCluster", "InvalidParameterException", SLR_MISSING, times=2)
    inject_errors(
        ctx.clients.iam,
        "CreateServiceLinkedRole",
        "InvalidInput",
        "Service role name AWSServiceRoleForECS has been taken in this account, please try a different suffix.",
    )
    assert runner.provision_step(ctx, ClusterStep())[0] == "created"


def test_first_cluster_without_permission_to_create_the_role_fails_at_once(ctx: StepContext, clock: Any) -> None:
    provision_through(ctx, "listener")
    refused = inject_errors(ctx.clients.ecs, "CreateCluster", "InvalidParameterException", SLR_MISSING, times=100)
    inject_errors(
        ctx.clients.iam,
        "CreateServiceLinkedRole",
        "AccessDenied",
        "User: arn:aws:iam::123456789012:user/dev is not authorized to perform: iam:CreateServiceLinkedRole on "
        "resource: arn:aws:iam::123456789012:role/aws-service-role/ecs.amazonaws.com/AWSServiceRoleForECS",
    )
    with pytest.raises(DeployerError) as failed:
        runner.provision_step(ctx, ClusterStep())
    assert refused.served == 1 and clock.slept == []  # no waiting out the budget
    assert "iam:CreateServiceLinkedRole" in failed.value.message and "ecs.amazonaws.com" in failed.value.message
    assert failed.value.exit_code == 2


# ---------------------------------------------------------------- not yet visible, only when new


@pytest.mark.parametrize("code", ["SubnetNotFound", "InvalidSecurityGroup"])
def test_load_balancer_retries_a_network_made_a_moment_ago(ctx: StepContext, code: str) -> None:
    provision_through(ctx, "target-group")
    refused = inject_errors(ctx.clients.elbv2, "CreateLoadBalancer", code, "not found", times=2)
    assert runner.provision_step(ctx, _step("load-balancer"))[0] == "created"
    assert refused.served == 2


@pytest.mark.parametrize("code", ["SubnetNotFound", "InvalidSecurityGroup"])
def test_load_balancer_fails_at_once_on_an_old_network(ctx: StepContext, code: str, clock: Any) -> None:
    provision_through(ctx, "target-group")
    later = replace(ctx, _created={})  # a re-run: the subnets and groups were adopted, not made now
    refused = inject_errors(ctx.clients.elbv2, "CreateLoadBalancer", code, "not found", times=100)
    with pytest.raises(ClientError) as failed:
        runner.provision_step(later, _step("load-balancer"))
    assert failed.value.response["Error"]["Code"] == code
    assert refused.served == 1 and clock.slept == []


def test_target_group_does_not_retry_codes_create_target_group_never_returns(ctx: StepContext) -> None:
    provision_through(ctx, "task-role")
    refused = inject_errors(ctx.clients.elbv2, "CreateTargetGroup", "TargetGroupNotFound", times=100)
    with pytest.raises(ClientError, match="TargetGroupNotFound"):
        runner.provision_step(ctx, _step("target-group"))
    assert refused.served == 1


def test_target_group_retries_a_vpc_made_a_moment_ago(ctx: StepContext) -> None:
    provision_through(ctx, "task-role")
    refused = inject_errors(
        ctx.clients.elbv2, "CreateTargetGroup", "ValidationError", "The VPC ID 'vpc-0abc' is not found", times=2
    )
    assert runner.provision_step(ctx, _step("target-group"))[0] == "created"
    assert refused.served == 2


SUBNET_NOT_VISIBLE = (
    "Error retrieving subnet information for [subnet-0abc]: The subnet ID 'subnet-0abc' does not exist "
    "(ErrorCode: InvalidSubnetID.NotFound)"
)
GROUP_NOT_VISIBLE = (
    "Error retrieving security group information for [sg-0abc]: The security group 'sg-0abc' does not exist "
    "(ErrorCode: InvalidGroup.NotFound)"
)


@pytest.mark.parametrize("message", [SUBNET_NOT_VISIBLE, GROUP_NOT_VISIBLE])
def test_service_retries_a_network_made_a_moment_ago(ctx: StepContext, message: str) -> None:
    provision_through(ctx, "task-definition")
    refused = inject_errors(ctx.clients.ecs, "CreateService", "InvalidParameterException", message, times=2)
    assert runner.provision_step(ctx, ServiceStep())[0] == "created"
    assert refused.served == 2


@pytest.mark.parametrize("message", [SUBNET_NOT_VISIBLE, GROUP_NOT_VISIBLE])
def test_service_fails_at_once_on_an_old_network(ctx: StepContext, message: str, clock: Any) -> None:
    provision_through(ctx, "task-definition")
    later = replace(ctx, _created={})
    refused = inject_errors(ctx.clients.ecs, "CreateService", "InvalidParameterException", message, times=100)
    with pytest.raises(ClientError, match="Error retrieving"):
        runner.provision_step(later, ServiceStep())
    assert refused.served == 1 and clock.slept == []


# ---------------------------------------------------------------- a role ECS cannot assume yet


def _assume_role_rollout(ctx: StepContext, launched_after_role: float) -> Rollout:
    """One launch stopped with ECS's assume-role reason, `launched_after_role` seconds after the role was made;
    the rollout completes on the third look."""
    role = ctx.clients.iam.get_role(RoleName=ctx.ids("execution-role")["name"])["Role"]
    rollout = Rollout(
        polls_until_done=2,
        stopped_reason=f"ECS was unable to assume the role '{role['Arn']}' that was provided for this task. "
        "Please verify that the role being passed has the proper trust relationship and permissions and that "
        "your IAM user has permissions to pass this role.",
    )
    rollout.install(ctx.clients.ecs, ctx.clients.elbv2)
    launched = role["CreateDate"] + datetime.timedelta(seconds=launched_after_role)

    def failing(parsed: dict[str, Any], **_: Any) -> None:
        for service in parsed.get("services", []):
            for deployment in service.get("deployments", [])[:1]:
                if rollout.polls <= rollout.polls_until_done:
                    deployment["failedTasks"] = 1

    def timed(parsed: dict[str, Any], **_: Any) -> None:
        for task in parsed.get("tasks", []):
            task["createdAt"] = launched
            task["stoppedAt"] = launched + datetime.timedelta(seconds=20)

    ctx.clients.ecs.meta.events.register("after-call.ecs.DescribeServices", failing)
    ctx.clients.ecs.meta.events.register("after-call.ecs.DescribeTasks", timed)
    return rollout


def test_a_task_stopped_because_a_new_role_is_not_assumable_yet_is_not_a_failure(ctx: StepContext, site: Any) -> None:
    ctx = replace(ctx, settings=replace(ctx.settings, max_failed_tasks=1))
    runner.provision(ctx, wait=False)
    _assume_role_rollout(ctx, launched_after_role=30)
    site.status = 200
    ServiceStep().wait(ctx, ctx.ids("service"))
    assert any("not usable yet" in line for line in ctx.output.lines)  # type: ignore[attr-defined]


def test_the_same_stop_long_after_the_role_was_made_is_a_failure(ctx: StepContext, site: Any) -> None:
    ctx = replace(ctx, settings=replace(ctx.settings, max_failed_tasks=1))
    runner.provision(ctx, wait=False)
    _assume_role_rollout(ctx, launched_after_role=600)
    site.status = 200
    with pytest.raises(DeploymentFailedError, match="unable to assume the role"):
        ServiceStep().wait(ctx, ctx.ids("service"))


def _step(name: str) -> Step[Any]:
    return next(step for step in build_steps() if step.name == name)


def test_from_the_command_line_a_hand_made_repository_is_refused_and_left_by_sweep(
    server: MotoServer, run_script: RunScript, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    ecr = build_clients(boto3.Session(region_name=REGION)).ecr
    ecr.create_repository(repositoryName="handmade")  # a user's own repository, by chance the stack's name
    refused = run_script("provision.py", "--stack", "handmade", "--image", IMAGE, "--no-wait", server=server)
    assert refused.returncode == 2, refused.stderr
    assert "ECR repository named handmade already exists" in refused.stderr and "Traceback" not in refused.stderr
    swept = run_script("teardown.py", "--sweep", "--stack", "handmade", "--yes", server=server)
    assert swept.returncode == 0, swept.stderr
    assert "left alone: ECR repository handmade" in swept.stderr
    assert ecr.describe_repositories(repositoryNames=["handmade"])["repositories"]
