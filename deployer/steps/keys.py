"""The KMS key of `log_kms_key = "create"`, which encrypts the stack's log groups.

Its key policy is the one "Encrypt log data in CloudWatch Logs using AWS KMS" asks for
(https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html): the
account root keeps full access (KMS's default key policy, without which IAM policies cannot
grant the key: https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-default.html),
and the CloudWatch Logs service principal of the region may use it only for the stack's log
groups (`kms:EncryptionContext:aws:logs:arn`). Automatic yearly rotation is turned on
(https://docs.aws.amazon.com/kms/latest/developerguide/rotate-keys.html).

A key has no name: the alias `alias/<stack>-logs` is how a lost state finds it (alias ->
key -> our tags, else refused), and, for a crash between CreateKey and the state save, the
account's keys are searched by our tags. Teardown deletes the alias and schedules the key's
deletion after the minimum waiting period, 7 days (ScheduleKeyDeletion,
https://docs.aws.amazon.com/kms/latest/APIReference/API_ScheduleKeyDeletion.html); a key
already pending deletion counts as gone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from deployer.settings import CREATE_LOG_KEY, Settings
from deployer.state import Ids
from deployer.steps import tags
from deployer.steps.aws import absent_if
from deployer.steps.base import STACK_TAG, STEP_TAG, Converged, Existing, Step, StepContext, single
from deployer.steps.logs import KEY_STEP

if TYPE_CHECKING:
    from mypy_boto3_kms.type_defs import KeyMetadataTypeDef

# The minimum waiting period AWS allows before a scheduled key is deleted (ScheduleKeyDeletion,
# PendingWindowInDays: 7-30 days; the botocore model's 1 is only for keys in a custom key store).
PENDING_WINDOW_DAYS = 7
# Key states after which the key is as good as deleted (KMS API reference, KeyMetadata.KeyState).
GONE_STATES = ("PendingDeletion", "PendingReplicaDeletion")
POLICY_NAME = "default"  # GetKeyPolicy/PutKeyPolicy: the only policy name KMS knows


@dataclass(frozen=True)
class LiveKey:
    key: KeyMetadataTypeDef
    aliased: bool  # the stack's alias points at this key


class KeyStep(Step[LiveKey]):
    name = KEY_STEP
    resource = "KMS key"

    def wanted(self, settings: Settings) -> bool:
        """Only `log_kms_key = "create"` makes a key; a key ARN is the user's own."""
        return settings.log_kms_key == CREATE_LOG_KEY

    def find_recorded(self, ctx: StepContext, ids: Ids) -> Existing[LiveKey] | None:
        return self._describe(ctx, ids["arn"])

    def find_unrecorded(self, ctx: StepContext) -> Existing[LiveKey] | None:
        alias = ctx.settings.names.log_key_alias
        found = self._describe(ctx, alias)
        if found is not None:
            found_tags = tags.tag_map(ctx.clients.kms.list_resource_tags(KeyId=found.ids["arn"]).get("Tags"))
            return tags.adopt(ctx, self, found, alias, found_tags, global_=False)
        return self._find_by_tags(ctx)

    def _describe(self, ctx: StepContext, key_id: str) -> Existing[LiveKey] | None:
        """The key (by ARN or alias) unless it is missing or pending deletion."""
        kms = ctx.clients.kms
        key = absent_if(lambda: kms.describe_key(KeyId=key_id)["KeyMetadata"], "NotFoundException")
        if key is None or key.get("KeyState") in GONE_STATES:
            return None
        return Existing({"arn": key["Arn"], "id": key["KeyId"]}, LiveKey(key, self._aliased(ctx, key["KeyId"])))

    def _aliased(self, ctx: StepContext, key_id: str) -> bool:
        aliases = ctx.clients.kms.list_aliases(KeyId=key_id)["Aliases"]  # a key has few aliases: one page
        return any(alias.get("AliasName") == ctx.settings.names.log_key_alias for alias in aliases)

    def _find_by_tags(self, ctx: StepContext) -> Existing[LiveKey] | None:
        """A key made by a run that died before it recorded the key or made the alias.

        KMS cannot filter keys by tag: each of the account's keys in the region is read. Keys
        this identity may not read (AccessDeniedException) cannot be ours: ours grant the account.
        """
        kms = ctx.clients.kms
        matches: list[str] = []
        for page in kms.get_paginator("list_keys").paginate():
            for entry in page["Keys"]:
                arn = entry.get("KeyArn", "")
                if _tagged_ours(ctx, arn, self.name):
                    matches.append(arn)
        live = [key for arn in matches if (key := self._describe(ctx, arn)) is not None]
        return single(live, self.resource, lambda key: key.ids["arn"])

    def create(self, ctx: StepContext) -> Ids:
        kms = ctx.clients.kms
        key = kms.create_key(
            Policy=json.dumps(key_policy(ctx)),
            Description=f"{ctx.settings.stack}: encrypts the stack's CloudWatch log groups (managed by provision.py)",
            KeyUsage="ENCRYPT_DECRYPT",
            KeySpec="SYMMETRIC_DEFAULT",  # CloudWatch Logs supports only symmetric keys
            Tags=tags.kms_tags(ctx.settings, self.name),
        )["KeyMetadata"]
        ids = {"arn": key["Arn"], "id": key["KeyId"]}
        ctx.remember(self.name, ids)
        kms.enable_key_rotation(KeyId=key["KeyId"])
        self._point_alias(ctx, key["KeyId"])
        return ids

    def _point_alias(self, ctx: StepContext, key_id: str) -> None:
        """Create the alias, or move it here from a key that is gone or was ours (never from another's)."""
        kms = ctx.clients.kms
        alias = ctx.settings.names.log_key_alias
        current = absent_if(lambda: kms.describe_key(KeyId=alias)["KeyMetadata"], "NotFoundException")
        if current is None:
            kms.create_alias(AliasName=alias, TargetKeyId=key_id)
            return
        if current.get("KeyState") not in GONE_STATES:
            found_tags = tags.tag_map(kms.list_resource_tags(KeyId=current["Arn"]).get("Tags"))
            if not tags.ours(found_tags, ctx.settings.stack):
                raise self.collision(alias, found_tags)
        kms.update_alias(AliasName=alias, TargetKeyId=key_id)

    def converge(self, ctx: StepContext, existing: Existing[LiveKey]) -> Converged:
        kms = ctx.clients.kms
        key = existing.live.key
        key_id = key["KeyId"]
        changes: list[str] = []
        if key.get("KeyState") == "Disabled":
            ctx.change(changes, "enabled", lambda: kms.enable_key(KeyId=key_id))
        wanted = key_policy(ctx)
        live = json.loads(kms.get_key_policy(KeyId=key_id, PolicyName=POLICY_NAME)["Policy"])
        if live != wanted:
            ctx.change(
                changes,
                "key policy reset",
                lambda: kms.put_key_policy(KeyId=key_id, PolicyName=POLICY_NAME, Policy=json.dumps(wanted)),
            )
        if not kms.get_key_rotation_status(KeyId=key_id).get("KeyRotationEnabled"):
            ctx.change(changes, "rotation turned on", lambda: kms.enable_key_rotation(KeyId=key_id))
        if not existing.live.aliased:
            ctx.change(
                changes, f"alias {ctx.settings.names.log_key_alias} restored", lambda: self._point_alias(ctx, key_id)
            )
        return Converged(existing.ids, changes)

    def delete(self, ctx: StepContext, ids: Ids) -> str:
        kms = ctx.clients.kms
        if absent_if(lambda: self._aliased(ctx, ids["id"]), "NotFoundException"):
            absent_if(lambda: kms.delete_alias(AliasName=ctx.settings.names.log_key_alias), "NotFoundException")
        # A key already pending deletion answers KMSInvalidStateException: it is as good as gone.
        absent_if(
            lambda: kms.schedule_key_deletion(KeyId=ids["id"], PendingWindowInDays=PENDING_WINDOW_DAYS),
            "NotFoundException",
            "KMSInvalidStateException",
        )
        return f"deletion scheduled in {PENDING_WINDOW_DAYS} days (the minimum KMS allows)"


def _tagged_ours(ctx: StepContext, arn: str, step: str) -> bool:
    kms = ctx.clients.kms

    def read() -> list[Any]:
        return list(kms.list_resource_tags(KeyId=arn).get("Tags", []))

    found = tags.tag_map(absent_if(read, "NotFoundException", "AccessDeniedException"))
    return found.get(STACK_TAG) == ctx.settings.stack and found.get(STEP_TAG) == step


def key_policy(ctx: StepContext) -> dict[str, Any]:
    """Root keeps full access; CloudWatch Logs of this region may use the key for the stack's groups only."""
    partition, region, account = ctx.partition, ctx.clients.region, ctx.account_id
    names = ctx.settings.names
    prefix = f"arn:{partition}:logs:{region}:{account}:log-group:"
    groups = [prefix + group for group in (names.log_group, names.flow_log_group)]
    return {
        "Version": "2012-10-17",
        "Id": f"{ctx.settings.stack}-logs",
        "Statement": [
            {
                "Sid": "AccountAdministersTheKey",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:{partition}:iam::{account}:root"},
                "Action": "kms:*",
                "Resource": "*",
            },
            {
                "Sid": "CloudWatchLogsEncryptsTheStacksGroups",
                "Effect": "Allow",
                "Principal": {"Service": f"logs.{region}.amazonaws.com"},
                "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
                "Resource": "*",
                "Condition": {"ArnLike": {"kms:EncryptionContext:aws:logs:arn": groups}},
            },
        ],
    }
