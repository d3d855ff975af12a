"""The stack's CloudWatch log groups, with a retention AWS accepts and, optionally, a KMS key.

Two groups share this step: the one the tasks write to (`/ecs/<stack>`) and the one
the VPC's flow logs write rejected traffic to (`/vpc/<stack>/rejected`, only with
`flow_logs`). They are created here rather than by the awslogs driver
(`awslogs-create-group`) or by the flow-logs service: the roles are not granted
logs:CreateLogGroup, and a group the tool created is a group the tool deletes at
teardown.

`log_kms_key` encrypts both: unset, CloudWatch Logs' own AWS-managed encryption;
a key ARN, or the stack's own key (`"create"`, deployer/steps/keys.py), given at
CreateLogGroup and converged on an existing group with AssociateKmsKey /
DisassociateKmsKey ("Encrypt log data in CloudWatch Logs using AWS KMS",
https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from deployer.retry import NEW_RESOURCE_NOT_FOUND
from deployer.settings import CREATE_LOG_KEY, Settings
from deployer.state import Ids
from deployer.steps import tags
from deployer.steps.aws import absent_if
from deployer.steps.base import Converged, Existing, Step, StepContext

if TYPE_CHECKING:
    from mypy_boto3_logs.type_defs import LogGroupTypeDef

# The step that makes the key of `log_kms_key = "create"` (deployer/steps/keys.py).
KEY_STEP = "log-key"


class LogGroupStep(Step["LogGroupTypeDef"]):
    """`LogGroupStep()`: the tasks' group; `LogGroupStep("flow-logs")`: the flow logs' group."""

    resource = "log group"
    needs = (KEY_STEP,)  # with log_kms_key = "create", the key it is encrypted with (wanted_key)

    def __init__(self, kind: str = "ecs") -> None:
        self.kind = kind
        self.name = "log-group" if kind == "ecs" else f"{kind.removesuffix('-logs')}-log-group"

    def wanted(self, settings: Settings) -> bool:
        """The flow logs' group only with `flow_logs`."""
        return self.kind == "ecs" or settings.flow_logs

    def group_name(self, ctx: StepContext) -> str:
        names = ctx.settings.names
        return names.log_group if self.kind == "ecs" else names.flow_log_group

    def find_recorded(self, ctx: StepContext, ids: Ids) -> Existing[LogGroupTypeDef] | None:
        return self._describe(ctx, ids["name"])

    def find_unrecorded(self, ctx: StepContext) -> Existing[LogGroupTypeDef] | None:
        name = self.group_name(ctx)
        found = self._describe(ctx, name)
        if found is None:
            return None
        # DescribeLogGroups' `arn` ends in ":*"; ListTagsForResource takes the ARN without it.
        arn = found.live.get("logGroupArn") or found.live.get("arn", "").removesuffix(":*")
        found_tags = ctx.clients.logs.list_tags_for_resource(resourceArn=arn)["tags"]
        return tags.adopt(ctx, self, found, name, found_tags, global_=False)

    def _describe(self, ctx: StepContext, name: str) -> Existing[LogGroupTypeDef] | None:
        # A prefix also matches other groups (/ecs/site-2 for /ecs/site): read pages until ours.
        for page in ctx.clients.logs.get_paginator("describe_log_groups").paginate(logGroupNamePrefix=name):
            for group in page["logGroups"]:
                if group.get("logGroupName") == name:
                    return Existing({"name": name}, group)
        return None

    def create(self, ctx: StepContext) -> Ids:
        name = self.group_name(ctx)
        key = wanted_key(ctx)
        logs = ctx.clients.logs
        stack_tags = tags.stack_tags(ctx.settings, self.name)
        if key is None:
            logs.create_log_group(logGroupName=name, tags=stack_tags)
        else:
            logs.create_log_group(logGroupName=name, tags=stack_tags, kmsKeyId=key)
        ids = {"name": name}
        ctx.remember(self.name, ids)
        ctx.retry(
            lambda: logs.put_retention_policy(logGroupName=name, retentionInDays=ctx.settings.log_retention_days),
            NEW_RESOURCE_NOT_FOUND,
        )
        return ids

    def converge(self, ctx: StepContext, existing: Existing[LogGroupTypeDef]) -> Converged:
        logs = ctx.clients.logs
        name = existing.ids["name"]
        changes: list[str] = []
        wanted = ctx.settings.log_retention_days
        if existing.live.get("retentionInDays") != wanted:
            ctx.change(
                changes,
                f"retention {existing.live.get('retentionInDays')} -> {wanted} days",
                lambda: logs.put_retention_policy(logGroupName=name, retentionInDays=wanted),
            )
        key, live_key = wanted_key(ctx), existing.live.get("kmsKeyId")
        if key != live_key:
            if key is None:
                ctx.change(
                    changes,
                    "KMS key removed (AWS-managed encryption)",
                    lambda: logs.disassociate_kms_key(logGroupName=name),
                )
            else:
                # "Associating a KMS key with a log group can take up to five minutes" (AssociateKmsKey);
                # data already ingested stays under the key it was written with.
                ctx.change(
                    changes, f"encrypted with {key}", lambda: logs.associate_kms_key(logGroupName=name, kmsKeyId=key)
                )
        return Converged(existing.ids, changes)

    def delete(self, ctx: StepContext, ids: Ids) -> None:
        absent_if(lambda: ctx.clients.logs.delete_log_group(logGroupName=ids["name"]), "ResourceNotFoundException")


def wanted_key(ctx: StepContext) -> str | None:
    """The ARN of the key the stack's log groups are encrypted with, or None for AWS-managed encryption."""
    setting = ctx.settings.log_kms_key
    if setting == CREATE_LOG_KEY:
        return ctx.ids(KEY_STEP)["arn"]  # the key step runs before the groups
    return setting
