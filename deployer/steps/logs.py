"""The CloudWatch log group the tasks write to, with a retention AWS accepts.

It is created here rather than by the awslogs driver (`awslogs-create-group`):
the execution policy does not grant logs:CreateLogGroup, and a group the tool
created is a group the tool deletes at teardown.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from deployer.retry import NEW_RESOURCE_NOT_FOUND
from deployer.state import Ids
from deployer.steps import tags
from deployer.steps.aws import absent_if
from deployer.steps.base import Converged, Existing, Step, StepContext

if TYPE_CHECKING:
    from mypy_boto3_logs.type_defs import LogGroupTypeDef


class LogGroupStep(Step["LogGroupTypeDef"]):
    name = "log-group"
    resource = "log group"

    def find_recorded(self, ctx: StepContext, ids: Ids) -> Existing[LogGroupTypeDef] | None:
        return self._describe(ctx, ids["name"])

    def find_unrecorded(self, ctx: StepContext) -> Existing[LogGroupTypeDef] | None:
        name = ctx.settings.names.log_group
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
        name = ctx.settings.names.log_group
        ctx.clients.logs.create_log_group(logGroupName=name, tags=tags.stack_tags(ctx.settings, self.name))
        ids = {"name": name}
        ctx.remember(self.name, ids)
        ctx.retry(
            lambda: ctx.clients.logs.put_retention_policy(
                logGroupName=name, retentionInDays=ctx.settings.log_retention_days
            ),
            NEW_RESOURCE_NOT_FOUND,
        )
        return ids

    def converge(self, ctx: StepContext, existing: Existing[LogGroupTypeDef]) -> Converged:
        wanted = ctx.settings.log_retention_days
        if existing.live.get("retentionInDays") == wanted:
            return Converged(existing.ids)
        changes: list[str] = []
        ctx.change(
            changes,
            f"retention {existing.live.get('retentionInDays')} -> {wanted} days",
            lambda: ctx.clients.logs.put_retention_policy(logGroupName=existing.ids["name"], retentionInDays=wanted),
        )
        return Converged(existing.ids, changes)

    def delete(self, ctx: StepContext, ids: Ids) -> None:
        absent_if(lambda: ctx.clients.logs.delete_log_group(logGroupName=ids["name"]), "ResourceNotFoundException")
