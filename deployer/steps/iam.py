"""IAM roles for the task: the execution role (pull the image, write logs) and the task role.

The task role has no permissions unless the settings list policy ARNs: the seed
tutorial gave the website AmazonECS_FullAccess, administrative access to ECS, VPC
and Auto Scaling, which a website that calls no AWS API must not have.
Roles are found by their deterministic names, which carry the region (IAM is global, the
state is per region: see Names in deployer/settings.py), and adopted only with this stack's
and this region's tags.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any

from deployer.retry import ROLE_NOT_VISIBLE
from deployer.state import Ids
from deployer.steps import tags
from deployer.steps.aws import absent_if
from deployer.steps.base import Converged, Existing, Step, StepContext

if TYPE_CHECKING:
    from mypy_boto3_iam.type_defs import RoleTypeDef

EXECUTION_POLICY = "policy/service-role/AmazonECSTaskExecutionRolePolicy"


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

    def role_name(self, ctx: StepContext) -> str:
        """`<stack>-<region>-exec` / `-task`, in the region the run is connected to."""
        names = replace(ctx.settings.names, region=ctx.clients.region)
        return names.execution_role if self.kind == "execution" else names.task_role

    def policies(self, ctx: StepContext) -> frozenset[str]:
        if self.kind == "execution":
            return frozenset({f"arn:{ctx.partition}:iam::aws:{EXECUTION_POLICY}"})
        return frozenset(ctx.settings.task_role_policy_arns)

    def trust_policy(self, ctx: StepContext) -> dict[str, Any]:
        """Only ECS tasks of this account may assume the role (confused-deputy guard)."""
        return {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "ecs-tasks.amazonaws.com"},
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
            Description=f"{ctx.settings.stack}: ECS {self.kind} role (managed by provision.py)",
            Tags=tags.iam_tags(ctx.settings, self.name, ctx.clients.region),
        )["Role"]
        ids = {"name": name, "arn": role["Arn"]}
        ctx.remember(self.name, ids)
        for arn in sorted(self.policies(ctx)):
            _attach(ctx, name, arn)
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
        for policy in sorted(existing.live.inline):
            ctx.change(
                changes,
                f"deleted inline policy {policy}",
                partial(iam.delete_role_policy, RoleName=name, PolicyName=policy),
            )
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
