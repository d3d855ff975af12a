"""VPC flow logs (`flow_logs`, on by default): rejected traffic, to the stack's group, through the stack's role."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from botocore.exceptions import ClientError

from deployer import runner
from deployer.retry import FLOW_LOGS_ROLE_NOT_ASSUMABLE
from deployer.runner import provision_step
from deployer.stack import steps_by_name
from deployer.steps.base import StepContext
from tests.conftest import ACCOUNT, REGION, CallLog, FakeClock
from tests.faults import inject_errors
from tests.inventory import inventory
from tests.rollouts import Rollout
from tests.steps_helpers import provision_through

GROUP = "/vpc/test-site/rejected"
ROLE = f"test-site-{REGION}-flow"
# EC2's answer to CreateFlowLogs while IAM has not yet propagated a new role (Terraform's
# resourceLogFlowCreate retries exactly this: deployer/retry.py FLOW_LOGS_ROLE_NOT_ASSUMABLE).
NOT_ASSUMABLE = ("InvalidParameter", "Unable to assume given IAM role")


def test_the_flow_log_sends_rejected_traffic_to_the_stacks_group_through_its_role(ctx: StepContext) -> None:
    provision_through(ctx, "flow-log")
    ec2, iam = ctx.clients.ec2, ctx.clients.iam
    (log,) = ec2.describe_flow_logs(FlowLogIds=[ctx.ids("flow-log")["id"]])["FlowLogs"]
    assert log["ResourceId"] == ctx.ids("vpc")["id"]
    assert (log["TrafficType"], log["LogDestinationType"], log["LogGroupName"]) == ("REJECT", "cloud-watch-logs", GROUP)
    assert log["DeliverLogsPermissionArn"] == ctx.ids("flow-logs-role")["arn"]
    assert {t["Key"]: t["Value"] for t in log.get("Tags", [])}["deployer:step"] == "flow-log"

    (group,) = [g for g in ctx.clients.logs.describe_log_groups(logGroupNamePrefix=GROUP)["logGroups"]]
    assert group.get("retentionInDays") == 14
    tags = ctx.clients.logs.list_tags_for_resource(resourceArn=group["arn"].removesuffix(":*"))["tags"]
    assert tags["deployer:step"] == "flow-log-group"

    role = iam.get_role(RoleName=ROLE)["Role"]
    document: Any = role["AssumeRolePolicyDocument"]  # boto3 decodes IAM's policy documents
    (trust,) = document["Statement"]
    assert trust["Principal"] == {"Service": "vpc-flow-logs.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}
    assert iam.list_attached_role_policies(RoleName=ROLE)["AttachedPolicies"] == []
    (name,) = iam.list_role_policies(RoleName=ROLE)["PolicyNames"]
    inline: Any = iam.get_role_policy(RoleName=ROLE, PolicyName=name)["PolicyDocument"]
    (statement,) = inline["Statement"]
    arn = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{GROUP}"
    assert statement["Resource"] == [arn, f"{arn}:*"]
    assert "logs:CreateLogGroup" not in statement["Action"] and "logs:PutLogEvents" in statement["Action"]


def test_teardown_deletes_the_flow_log_before_the_vpc_and_leaves_nothing(ctx: StepContext, serving: Rollout) -> None:
    before = inventory(ctx.clients)
    runner.provision(ctx)
    report = runner.teardown(ctx)
    order = [line.step for line in report.steps]
    assert order.index("flow-log") < order.index("flow-logs-role") < order.index("flow-log-group")
    assert order.index("flow-log") < order.index("vpc")
    assert ctx.clients.ec2.describe_flow_logs()["FlowLogs"] == []  # moto would keep it after DeleteVpc
    assert inventory(ctx.clients) == before


def test_flow_logs_off_makes_none_and_turning_them_off_removes_them(ctx: StepContext, serving: Rollout) -> None:
    off = replace(ctx, settings=replace(ctx.settings, flow_logs=False))
    runner.provision(ctx)
    report = runner.provision(off)
    removed = [line.step for line in report.steps if line.outcome == "removed"]
    assert removed == ["flow-log", "flow-logs-role", "flow-log-group"]  # newest first
    assert ctx.clients.ec2.describe_flow_logs()["FlowLogs"] == []
    assert all(ctx.state.get(step) is None for step in removed)
    report = runner.provision(off)
    assert {line.outcome for line in report.steps} == {"unchanged"}


def test_a_flow_log_changed_or_deleted_by_hand_is_put_back(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "flow-log")
    ec2 = ctx.clients.ec2
    ec2.delete_flow_logs(FlowLogIds=[ctx.ids("flow-log")["id"]])
    outcome, ids, _ = provision_step(ctx, step)
    assert outcome == "created" and ec2.describe_flow_logs(FlowLogIds=[ids["id"]])["FlowLogs"]
    # Someone points the stack's (tagged) flow log elsewhere: AWS cannot change it in place, so it is replaced.
    ec2.delete_flow_logs(FlowLogIds=[ids["id"]])
    ctx.clients.logs.create_log_group(logGroupName="/elsewhere")
    elsewhere = ec2.create_flow_logs(
        ResourceIds=[ctx.ids("vpc")["id"]],
        ResourceType="VPC",
        TrafficType="ALL",
        LogGroupName="/elsewhere",
        DeliverLogsPermissionArn=ctx.ids("flow-logs-role")["arn"],
        TagSpecifications=[
            {
                "ResourceType": "vpc-flow-log",
                "Tags": [
                    {"Key": "deployer:stack", "Value": "test-site"},
                    {"Key": "deployer:step", "Value": "flow-log"},
                ],
            }
        ],
    )["FlowLogIds"][0]
    ctx.state.forget("flow-log")
    outcome, ids, changes = provision_step(ctx, step)
    assert outcome == "updated" and changes == ["TrafficType, LogGroupName differed: flow log replaced"]
    assert ids["id"] != elsewhere and ec2.describe_flow_logs(FlowLogIds=[elsewhere])["FlowLogs"] == []
    (log,) = ec2.describe_flow_logs(FlowLogIds=[ids["id"]])["FlowLogs"]
    assert (log["TrafficType"], log["LogGroupName"]) == ("REJECT", GROUP)
    assert ctx.state.get("flow-log") == ids
    calls.clear()
    assert provision_step(ctx, step)[0] == "unchanged" and calls.changing() == []


def test_the_roles_inline_policy_and_trust_are_put_back(ctx: StepContext) -> None:
    step = provision_through(ctx, "flow-logs-role")
    iam = ctx.clients.iam
    (name,) = iam.list_role_policies(RoleName=ROLE)["PolicyNames"]
    iam.put_role_policy(
        RoleName=ROLE,
        PolicyName=name,
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "logs:*", "Resource": "*"}]}
        ),
    )
    ec2_trust = {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
    loose = {"Version": "2012-10-17", "Statement": [ec2_trust]}
    iam.update_assume_role_policy(RoleName=ROLE, PolicyDocument=json.dumps(loose))
    outcome, _, changes = provision_step(ctx, step)
    assert outcome == "updated"
    assert changes == ["trust policy reset", f"inline policy {name} reset"]
    iam.delete_role_policy(RoleName=ROLE, PolicyName=name)
    assert provision_step(ctx, step)[2] == [f"inline policy {name} put"]
    assert provision_step(ctx, step)[0] == "unchanged"


def test_a_new_role_not_yet_assumable_is_waited_for(ctx: StepContext, clock: FakeClock) -> None:
    step = provision_through(ctx, "flow-logs-role")  # created just now by this run: fresh
    refused = inject_errors(ctx.clients.ec2, "CreateFlowLogs", *NOT_ASSUMABLE, times=2)
    outcome, ids, _ = provision_step(ctx, steps_by_name()["flow-log"])
    assert outcome == "created" and ids["id"].startswith("fl-")
    assert refused.served == 2 and clock.slept == [2.0, 4.0]
    assert step.name == "flow-logs-role"


def test_an_old_role_not_assumable_fails_at_once(ctx: StepContext, clock: FakeClock) -> None:
    provision_through(ctx, "flow-logs-role")
    later = replace(ctx, _created={})  # a later run: the role was there before it started
    inject_errors(ctx.clients.ec2, "CreateFlowLogs", *NOT_ASSUMABLE, times=5)
    with pytest.raises(ClientError) as failure:
        provision_step(later, steps_by_name()["flow-log"])
    assert "Unable to assume given IAM role" in str(failure.value)
    assert clock.slept == []


def test_the_retry_rule_matches_the_role_phrase_only() -> None:
    def answer(code: str, message: str) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": message}}, "CreateFlowLogs")

    assert FLOW_LOGS_ROLE_NOT_ASSUMABLE.matches(answer(*NOT_ASSUMABLE))
    assert not FLOW_LOGS_ROLE_NOT_ASSUMABLE.matches(answer("InvalidParameter", "Invalid TrafficType"))
    assert not FLOW_LOGS_ROLE_NOT_ASSUMABLE.matches(answer("AccessDenied", "Unable to assume given IAM role"))
