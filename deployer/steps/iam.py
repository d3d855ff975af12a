"""IAM roles for the task: the execution role (pull the image, write logs) and the task role.

The task role has no permissions unless the settings list policy ARNs: the seed
tutorial gave the website AmazonECS_FullAccess, administrative access to ECS, VPC
and Auto Scaling, which a website that calls no AWS API must not have.
Roles are found by their deterministic names, which carry the region (IAM is global, the
state is per region: see Names in deployer/settings.py), and adopted only with this stack's
and this region's tags.

A third kind, `RoleStep("flow-logs")`, is the role the VPC flow logs service assumes to write
the stack's rejected traffic to its log group (deployer/steps/flowlogs.py): no managed
policy, one inline policy scoped to that group.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any

from deployer.retry import ROLE_NOT_VISIBLE
from deployer.settings import Settings
from deployer.state import Ids
from deployer.steps import tags
from deployer.steps.aws import absent_if
from deployer.steps.base import Converged, Existing, Step, StepContext

if TYPE_CHECKING:
    from mypy_boto3_iam.type_defs import RoleTypeDef

EXECUTION_POLICY = "policy/service-role/AmazonECSTaskExecutionRolePolicy"
# The service that assumes each kind of role.
TRUSTED_SERVICE = {"execution": "ecs-tasks.amazonaws.com", "task": "ecs-tasks.amazonaws.com"}
FLOW_LOGS = "flow-logs"
TRUSTED_SERVICE[FLOW_LOGS] = "vpc-flow-logs.amazonaws.com"
FLOW_LOGS_POLICY = "deliver-rejected-traffic"  # the flow-logs role's inline policy


@dataclass(frozen=True)
class LiveRole:
    role: RoleTypeDef
    attached: frozenset[str]
    inline: frozenset[str]


class RoleStep(Step[LiveRole]):
    resource = "IAM role"

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.name = f"{kind}-role"

    def wanted(self, settings: Settings) -> bool:
        """The flow-logs role only with `flow_logs`."""
        return self.kind != FLOW_LOGS or settings.flow_logs

    def role_name(self, ctx: StepContext) -> str:
        """`<stack>-<region>-exec` / `-task` / `-flow`, in the region the run is connected to."""
        names = replace(ctx.settings.names, region=ctx.clients.region)
        if self.kind == FLOW_LOGS:
            return names.flow_logs_role
        return names.execution_role if self.kind == "execution" else names.task_role

    def policies(self, ctx: StepContext) -> frozenset[str]:
        if self.kind == "execution":
            return frozenset({f"arn:{ctx.partition}:iam::aws:{EXECUTION_POLICY}"})
        if self.kind == FLOW_LOGS:
            return frozenset()
        return frozenset(ctx.settings.task_role_policy_arns)

    def inline_policies(self, ctx: StepContext) -> dict[str, dict[str, Any]]:
        """Inline policies by name: only the flow-logs role has one (flowlogs.delivery_policy)."""
        if self.kind == FLOW_LOGS:
            return {FLOW_LOGS_POLICY: flow_logs_delivery_policy(ctx)}
        return {}

    def trust_policy(self, ctx: StepContext) -> dict[str, Any]:
        """Only ECS tasks (or, for flow-logs, the flow logs service) of this account may assume the role
        (confused-deputy guard; for flow logs: https://docs.aws.amazon.com/vpc/latest/userguide/flow-logs-iam-role.html)."""
        return {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": TRUSTED_SERVICE[self.kind]},
                    "Action": "sts:AssumeRole",
                    "Condition": {"StringEquals": {"aws:SourceAccount": ctx.account_id}},
                }
            ],
        }

    def find_recorded(self, ctx: StepContext, ids: Ids) -> Existing[LiveRole] | None:
        return self._get(ctx, ids["name"])

    def find_unrecorded(self, ctx: StepContext) -> Existing[LiveRole] | None:
        name = self.role_name(ctx)
        found = self._get(ctx, name)
        if found is None:
            return None
        # GetRole returns the role's tags (IAM API reference, GetRole: Role.Tags).
        return tags.adopt(ctx, self, found, name, tags.tag_map(found.live.role.get("Tags")), global_=True)

    def _get(self, ctx: StepContext, name: str) -> Existing[LiveRole] | None:
        role = absent_if(lambda: ctx.clients.iam.get_role(RoleName=name)["Role"], "NoSuchEntity")
        if role is None:
            return None
        live = LiveRole(role, _attached(ctx, name), _inline(ctx, name))
        return Existing({"name": name, "arn": role["Arn"]}, live)

    def create(self, ctx: StepContext) -> Ids:
        name = self.role_name(ctx)
        role = ctx.clients.iam.create_role(
            RoleName=name,
            AssumeRolePolicyDocument=json.dumps(self.trust_policy(ctx)),
            Description=f"{ctx.settings.stack}: {_DESCRIPTION.get(self.kind, f'ECS {self.kind}')} role "
            "(managed by provision.py)",
            Tags=tags.iam_tags(ctx.settings, self.name, ctx.clients.region),
        )["Role"]
        ids = {"name": name, "arn": role["Arn"]}
        ctx.remember(self.name, ids)
        for arn in sorted(self.policies(ctx)):
            _attach(ctx, name, arn)
        for policy, document in sorted(self.inline_policies(ctx).items()):
            _put_inline(ctx, name, policy, document)
        return ids

    def converge(self, ctx: StepContext, existing: Existing[LiveRole]) -> Converged:
        iam = ctx.clients.iam
        name = existing.ids["name"]
        changes: list[str] = []
        trust = json.dumps(self.trust_policy(ctx))
        if _as_dict(existing.live.role.get("AssumeRolePolicyDocument")) != self.trust_policy(ctx):
            ctx.change(
                changes,
                "trust policy reset",
                lambda: iam.update_assume_role_policy(RoleName=name, PolicyDocument=trust),
            )
        wanted = self.policies(ctx)
        for arn in sorted(wanted - existing.live.attached):
            ctx.change(changes, f"attached {arn}", partial(iam.attach_role_policy, RoleName=name, PolicyArn=arn))
        for arn in sorted(existing.live.attached - wanted):
            ctx.change(changes, f"detached {arn}", partial(iam.detach_role_policy, RoleName=name, PolicyArn=arn))
        # The role is the tool's: permissions come only from the settings, never from inline policies.
        inline = self.inline_policies(ctx)
        for policy in sorted(existing.live.inline - set(inline)):
            ctx.change(
                changes,
                f"deleted inline policy {policy}",
                partial(iam.delete_role_policy, RoleName=name, PolicyName=policy),
            )
        changes += _converge_inline(ctx, name, inline, existing.live.inline)
        return Converged(existing.ids, changes)

    def delete(self, ctx: StepContext, ids: Ids) -> None:
        absent_if(lambda: _delete_role(ctx, ids["name"]), "NoSuchEntity")


def _delete_role(ctx: StepContext, name: str) -> None:
    """Policies first: IAM refuses to delete a role that still has any."""
    iam = ctx.clients.iam
    for arn in sorted(_attached(ctx, name)):
        iam.detach_role_policy(RoleName=name, PolicyArn=arn)
    for policy in sorted(_inline(ctx, name)):
        iam.delete_role_policy(RoleName=name, PolicyName=policy)
    iam.delete_role(RoleName=name)


_DESCRIPTION = {FLOW_LOGS: "VPC flow logs delivery"}


def flow_logs_delivery_policy(ctx: StepContext) -> dict[str, Any]:
    """What the flow logs service needs to write to the stack's group, and nothing else.

    AWS's list ("IAM role for publishing flow logs to CloudWatch Logs",
    https://docs.aws.amazon.com/vpc/latest/userguide/flow-logs-iam-role.html) is logs:CreateLogGroup,
    CreateLogStream, PutLogEvents, DescribeLogGroups and DescribeLogStreams on "*"; here the group
    exists (the stack made it), so CreateLogGroup is left out and the rest is scoped to that group.
    """
    group = f"arn:{ctx.partition}:logs:{ctx.clients.region}:{ctx.account_id}:log-group:"
    name = ctx.settings.names.flow_log_group
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": [
                    "logs:CreateLogStream",
                    "logs:DescribeLogGroups",
                    "logs:DescribeLogStreams",
                    "logs:PutLogEvents",
                ],
                "Resource": [f"{group}{name}", f"{group}{name}:*"],
            }
        ],
    }


def _put_inline(ctx: StepContext, role: str, policy: str, document: dict[str, Any]) -> None:
    """Put an inline policy on a role made a moment ago (IAM may not show it yet)."""
    text = json.dumps(document)
    ctx.retry(
        lambda: ctx.clients.iam.put_role_policy(RoleName=role, PolicyName=policy, PolicyDocument=text),
        ROLE_NOT_VISIBLE,
    )


def _converge_inline(ctx: StepContext, role: str, wanted: dict[str, dict[str, Any]], live: frozenset[str]) -> list[str]:
    """Put each wanted inline policy that is missing or differs (GetRolePolicy returns it decoded)."""
    changes: list[str] = []
    for policy, document in sorted(wanted.items()):
        if policy in live:
            current = ctx.clients.iam.get_role_policy(RoleName=role, PolicyName=policy)["PolicyDocument"]
            if _as_dict(current) == document:
                continue
        ctx.change(changes, f"inline policy {policy} reset", partial(_put_inline, ctx, role, policy, document))
    return changes


def _attach(ctx: StepContext, role: str, arn: str) -> None:
    """Attach a policy to a role made a moment ago (IAM may not show it yet)."""
    ctx.retry(lambda: ctx.clients.iam.attach_role_policy(RoleName=role, PolicyArn=arn), ROLE_NOT_VISIBLE)


def _attached(ctx: StepContext, name: str) -> frozenset[str]:
    arns: set[str] = set()
    for page in ctx.clients.iam.get_paginator("list_attached_role_policies").paginate(RoleName=name):
        arns.update(policy["PolicyArn"] for policy in page["AttachedPolicies"])
    return frozenset(arns)


def _inline(ctx: StepContext, name: str) -> frozenset[str]:
    names: set[str] = set()
    for page in ctx.clients.iam.get_paginator("list_role_policies").paginate(RoleName=name):
        names.update(page["PolicyNames"])
    return frozenset(names)


def _as_dict(document: Any) -> Any:
    """IAM returns the trust policy decoded (boto3 un-quotes it); accept text too."""
    return json.loads(document) if isinstance(document, str) else document
