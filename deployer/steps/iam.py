"""IAM roles for the task: the execution role (pull the image, write logs) and the task role.

The execution role holds one inline policy, `EXECUTION_POLICY_NAME`, scoped to this stack:
pull from the stack's ECR repository (and from the `image` setting's repository when that is
a private ECR one) and write to the stack's log group. These are the actions AWS's managed
AmazonECSTaskExecutionRolePolicy grants on "*" ("Amazon ECS task execution IAM role",
https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task_execution_IAM_role.html);
only ecr:GetAuthorizationToken stays on "*", since it takes no resource (Service Authorization
Reference for ECR, https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonelasticcontainerregistry.html).
Earlier versions attached that managed policy: converge puts the inline policy, then detaches it
like any managed policy the role should not have.

The task role has no permissions unless the settings list policy ARNs: the seed
tutorial gave the website AmazonECS_FullAccess, administrative access to ECS, VPC
and Auto Scaling, which a website that calls no AWS API must not have.
Roles are found by their deterministic names, which carry the region (IAM is global, the
state is per region: see Names in deployer/settings.py), and adopted only with this stack's
and this region's tags.

A third kind, `RoleStep("flow-logs")` (only with `flow_logs`), is the role the VPC flow logs
service assumes to write the stack's rejected traffic to its log group
(deployer/steps/flowlogs.py): no managed policy, one inline policy scoped to that group.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from deployer.clients import error_code, error_message
from deployer.errors import DeployerError
from deployer.retry import ROLE_NOT_VISIBLE
from deployer.settings import Settings
from deployer.state import Ids
from deployer.steps import tags
from deployer.steps.aws import absent_if
from deployer.steps.base import Converged, Existing, Step, StepContext

if TYPE_CHECKING:
    from mypy_boto3_iam.type_defs import RoleTypeDef

# The execution role's one inline policy (PutRolePolicy's PolicyName).
EXECUTION_POLICY_NAME = "pull-image-write-logs"
FLOW_LOGS = "flow-logs"
FLOW_LOGS_POLICY_NAME = "deliver-rejected-traffic"  # the flow-logs role's inline policy
# The service that assumes each kind of role.
TRUSTED_SERVICE = {
    "execution": "ecs-tasks.amazonaws.com",
    "task": "ecs-tasks.amazonaws.com",
    FLOW_LOGS: "vpc-flow-logs.amazonaws.com",
}
_DESCRIPTION = {"execution": "ECS execution", "task": "ECS task", FLOW_LOGS: "VPC flow logs delivery"}

# What the task execution role needs to pull from a private ECR repository (the AWS page above;
# all three take the repository resource type in the Service Authorization Reference).
ECR_PULL_ACTIONS = ("ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer")
# The awslogs driver creates the task's stream and writes to it (same page).
LOG_ACTIONS = ("logs:CreateLogStream", "logs:PutLogEvents")

# A private ECR image: <registry id>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]/<repository>[:tag][@digest],
# or the dual-stack <registry id>.dkr-ecr.<region>.on.aws (ECR endpoints, https://docs.aws.amazon.com/general/latest/gr/ecr.html;
# repository names: CreateRepository's repositoryName pattern in botocore's ecr model). ECR Public
# (public.ecr.aws) and other registries are pulled anonymously and need no permission of the role.
_ECR_IMAGE = re.compile(
    r"^(?P<account>\d{12})\.(?:dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?"
    r"|dkr-ecr\.(?P<dual_region>[a-z0-9-]+)\.on\.aws)"
    r"/(?P<repository>(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*)"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$"
)


@dataclass(frozen=True)
class LiveRole:
    role: RoleTypeDef
    attached: frozenset[str]
    inline: frozenset[str]
    documents: dict[str, Any]  # the wanted inline policies that exist, by name (GetRolePolicy)


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
        """The managed policies to attach: the settings' for the task role, none for any other role."""
        return frozenset(ctx.settings.task_role_policy_arns) if self.kind == "task" else frozenset()

    def inline_policies(self, ctx: StepContext) -> dict[str, dict[str, Any]]:
        """The inline policies the role holds: the execution role's and the flow-logs role's scoped one;
        none on the task role."""
        if self.kind == FLOW_LOGS:
            return {FLOW_LOGS_POLICY_NAME: flow_logs_delivery_policy(ctx)}
        return {EXECUTION_POLICY_NAME: execution_policy(ctx)} if self.kind == "execution" else {}

    def trust_policy(self, ctx: StepContext) -> dict[str, Any]:
        """Only ECS tasks (for flow-logs: the flow logs service) of this account may assume the role (confused-deputy
        guard; for flow logs: https://docs.aws.amazon.com/vpc/latest/userguide/flow-logs-iam-role.html)."""
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
        inline = _inline(ctx, name)
        documents = {policy: _document(ctx, name, policy) for policy in sorted(inline & set(self.inline_policies(ctx)))}
        live = LiveRole(role, _attached(ctx, name), inline, documents)
        return Existing({"name": name, "arn": role["Arn"]}, live)

    def create(self, ctx: StepContext) -> Ids:
        name = self.role_name(ctx)
        role = ctx.clients.iam.create_role(
            RoleName=name,
            AssumeRolePolicyDocument=json.dumps(self.trust_policy(ctx)),
            Description=f"{ctx.settings.stack}: {_DESCRIPTION[self.kind]} role (managed by provision.py)",
            Tags=tags.iam_tags(ctx.settings, self.name, ctx.clients.region),
        )["Role"]
        ids = {"name": name, "arn": role["Arn"]}
        ctx.remember(self.name, ids)
        for policy, document in self.inline_policies(ctx).items():
            _put(ctx, name, policy, document)
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
        # The wanted permissions are in place before any is taken away: a task starting meanwhile
        # (an upgrade from the managed policy) never finds the role without them.
        inline = self.inline_policies(ctx)
        for policy, document in inline.items():
            if existing.live.documents.get(policy) == document:
                continue
            ctx.change(
                changes,
                f"inline policy {policy} {'reset' if policy in existing.live.inline else 'put'}",
                partial(iam.put_role_policy, RoleName=name, PolicyName=policy, PolicyDocument=json.dumps(document)),
            )
        wanted = self.policies(ctx)
        for arn in sorted(wanted - existing.live.attached):
            ctx.change(changes, f"attached {arn}", partial(iam.attach_role_policy, RoleName=name, PolicyArn=arn))
        for arn in sorted(existing.live.attached - wanted):
            ctx.change(changes, f"detached {arn}", partial(iam.detach_role_policy, RoleName=name, PolicyArn=arn))
        # The role is the tool's: permissions come only from the settings and the tool, never from other
        # inline policies.
        for policy in sorted(existing.live.inline - set(inline)):
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


def execution_policy(ctx: StepContext) -> dict[str, Any]:
    """Pull from the stack's repository (and the `image` setting's, if a private ECR one); write to its log group.

    The stack's repository is always in: it holds the images provision pushed, and ECS's circuit-breaker
    rollback and `provision.py --rollback` may start a revision that runs one of them.
    """
    names = ctx.settings.names
    region, account, partition = ctx.clients.region, ctx.account_id, ctx.partition
    repositories = {f"arn:{partition}:ecr:{region}:{account}:repository/{names.repository}"}
    if ctx.settings.image is not None:
        repositories |= set(filter(None, [ecr_repository_arn(ctx.settings.image, partition)]))
    log_group = f"arn:{partition}:logs:{region}:{account}:log-group:{names.log_group}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "RegistryToken", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
            {"Sid": "PullImage", "Effect": "Allow", "Action": list(ECR_PULL_ACTIONS), "Resource": sorted(repositories)},
            # The group and its streams (CloudWatch Logs' ARN formats: the ":*" form covers the streams,
            # https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/iam-access-control-overview-cwl.html).
            {
                "Sid": "WriteLogs",
                "Effect": "Allow",
                "Action": list(LOG_ACTIONS),
                "Resource": [log_group, f"{log_group}:*"],
            },
        ],
    }


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


def ecr_repository_arn(image: str, partition: str) -> str | None:
    """The ARN of a private ECR image's repository; None for any other registry (nothing to allow)."""
    found = _ECR_IMAGE.match(image)
    if found is None:
        return None
    region = found["region"] or found["dual_region"]
    return f"arn:{partition}:ecr:{region}:{found['account']}:repository/{found['repository']}"


def _put(ctx: StepContext, role: str, policy: str, document: dict[str, Any]) -> None:
    """Put an inline policy on a role made a moment ago (IAM may not show it yet)."""
    ctx.retry(
        lambda: ctx.clients.iam.put_role_policy(RoleName=role, PolicyName=policy, PolicyDocument=json.dumps(document)),
        ROLE_NOT_VISIBLE,
    )


def _document(ctx: StepContext, role: str, policy: str) -> Any:
    """An inline policy's document; boto3 decodes IAM's URL-encoded JSON (accept text too)."""
    return _as_dict(ctx.clients.iam.get_role_policy(RoleName=role, PolicyName=policy)["PolicyDocument"])


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


def ensure_service_linked_role(
    ctx: StepContext, role: str, service: str, first_use: str, refused: Callable[[ClientError], DeployerError]
) -> None:
    """After a service's "cannot assume its service-linked role yet": create `role` (for `service`) if it is missing.

    A service makes its role itself on first use, with the caller's permissions (ECS: "Using service-linked roles
    for Amazon ECS"; Application Auto Scaling: "Service-linked roles for Application Auto Scaling"); without
    iam:CreateServiceLinkedRole it never appears and every retry would fail for the whole budget, so a refusal
    raises `refused(exc)` at once. An existing role needs only a moment. CreateServiceLinkedRole answers a role that
    exists with InvalidInput "Service role name … has been taken in this account, please try a different suffix."
    (e.g. AWS's SDK examples, https://github.com/awsdocs/aws-doc-sdk-examples, CreateServiceLinkedRole for Elastic
    Beanstalk): IAM gives that answer no code of its own. A missing permission is AccessDenied (IAM's code;
    other services' is AccessDeniedException).
    """
    iam = ctx.clients.iam
    try:
        iam.get_role(RoleName=role)
        return  # it exists: the service only needs a moment to use it
    except ClientError as exc:
        if error_code(exc) not in ("NoSuchEntity", "AccessDenied"):
            raise  # AccessDenied: no iam:GetRole; CreateServiceLinkedRole below says what it can
    try:
        iam.create_service_linked_role(AWSServiceName=service)
        ctx.say(f"  created the service-linked role {role} ({first_use})")
    except ClientError as exc:
        code = error_code(exc)
        if code == "EntityAlreadyExists" or (code == "InvalidInput" and "has been taken" in error_message(exc)):
            return
        if code in ("AccessDenied", "AccessDeniedException"):
            raise refused(exc) from exc
        raise
