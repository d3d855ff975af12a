"""`log_kms_key`: the stack's log groups encrypted with a key the user names, or with a key of the stack."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace

import pytest

from deployer import runner
from deployer.errors import ForeignResourceError, SettingsError
from deployer.runner import provision_step
from deployer.settings import Settings, check_log_kms_key, validate
from deployer.stack import steps_by_name
from deployer.steps.base import StepContext
from tests.conftest import ACCOUNT, IMAGE, REGION, CallLog, lost_state
from tests.inventory import EXPECTED_WITH_LOG_KEY, added, inventory
from tests.rollouts import Rollout
from tests.steps_helpers import provision_through
from tests.test_bad_input import Outcome, in_process  # noqa: F401 - the fixture, used by name

GROUPS = ("/ecs/test-site", "/vpc/test-site/rejected")
ALIAS = "alias/test-site-logs"


@pytest.fixture
def settings() -> Settings:
    return Settings(stack="test-site", region=REGION, image=IMAGE, log_kms_key="create")


def group_keys(ctx: StepContext) -> dict[str, str | None]:
    groups = ctx.clients.logs.describe_log_groups()["logGroups"]
    return {g["logGroupName"]: g.get("kmsKeyId") for g in groups if g["logGroupName"] in GROUPS}


def test_the_key_comes_first_with_the_policy_logs_needs_and_encrypts_both_groups(ctx: StepContext) -> None:
    provision_through(ctx, "flow-log-group")
    kms = ctx.clients.kms
    arn = ctx.ids("log-key")["arn"]
    key = kms.describe_key(KeyId=ALIAS)["KeyMetadata"]
    assert key["Arn"] == arn and key["KeyState"] == "Enabled" and key["KeyManager"] == "CUSTOMER"
    assert kms.get_key_rotation_status(KeyId=arn)["KeyRotationEnabled"] is True
    tags = {t["TagKey"]: t["TagValue"] for t in kms.list_resource_tags(KeyId=arn)["Tags"]}
    assert tags["deployer:stack"] == "test-site" and tags["deployer:step"] == "log-key"
    policy = json.loads(kms.get_key_policy(KeyId=arn, PolicyName="default")["Policy"])
    root, logs = policy["Statement"]
    assert root["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"} and root["Action"] == "kms:*"
    assert logs["Principal"] == {"Service": f"logs.{REGION}.amazonaws.com"}
    assert logs["Condition"] == {
        "ArnLike": {
            "kms:EncryptionContext:aws:logs:arn": [f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{g}" for g in GROUPS]
        }
    }
    assert group_keys(ctx) == dict.fromkeys(GROUPS, arn)
    order = [record.step for record in ctx.state.resources]
    assert order.index("log-key") < order.index("log-group")


def test_a_lost_state_finds_the_key_by_its_alias_or_after_a_crash_by_its_tags(ctx: StepContext) -> None:
    step = steps_by_name()["log-key"]
    provision_through(ctx, "log-key")
    arn = ctx.ids("log-key")["arn"]
    found = step.find(lost_state(ctx), None)
    assert found is not None and found.ids["arn"] == arn
    ctx.clients.kms.delete_alias(AliasName=ALIAS)  # as if the run died between CreateKey and CreateAlias
    found = step.find(lost_state(ctx), None)
    assert found is not None and found.ids["arn"] == arn
    outcome, _, changes = provision_step(ctx, step)
    assert (outcome, changes) == ("updated", [f"alias {ALIAS} restored"])


def test_an_alias_on_someone_elses_key_is_refused(ctx: StepContext) -> None:
    other = ctx.clients.kms.create_key()["KeyMetadata"]["KeyId"]
    ctx.clients.kms.create_alias(AliasName=ALIAS, TargetKeyId=other)
    with pytest.raises(ForeignResourceError):
        steps_by_name()["log-key"].find(ctx, None)


def test_teardown_deletes_the_alias_and_schedules_the_key_for_deletion(ctx: StepContext, serving: Rollout) -> None:
    before = inventory(ctx.clients)
    runner.provision(ctx)
    new = added(before, inventory(ctx.clients))
    assert {kind: len(ids) for kind, ids in new.items()} == EXPECTED_WITH_LOG_KEY
    arn = ctx.ids("log-key")["arn"]
    report = runner.teardown(ctx)
    (line,) = [line for line in report.steps if line.step == "log-key"]
    assert line.outcome == "deletion scheduled in 7 days (the minimum KMS allows)"
    assert ctx.clients.kms.describe_key(KeyId=arn)["KeyMetadata"]["KeyState"] == "PendingDeletion"
    assert inventory(ctx.clients) == before  # no alias, no live key, no flow log, group or role
    steps_by_name()["log-key"].delete(ctx, {"arn": arn, "id": arn.rsplit("/", 1)[-1]})  # again: harmless
    assert steps_by_name()["log-key"].find(ctx, {"arn": arn, "id": ""}) is None  # pending deletion = gone


def test_changing_log_kms_key_converges_the_groups(ctx: StepContext, serving: Rollout, calls: CallLog) -> None:
    plain = replace(ctx, settings=replace(ctx.settings, log_kms_key=None))
    runner.provision(plain)
    assert group_keys(ctx) == dict.fromkeys(GROUPS, None)
    own = ctx.clients.kms.create_key()["KeyMetadata"]["Arn"]
    report = runner.provision(replace(ctx, settings=replace(ctx.settings, log_kms_key=own)))
    details = {line.step: line.detail for line in report.steps if line.outcome == "updated"}
    assert details == {"log-group": f"encrypted with {own}", "flow-log-group": f"encrypted with {own}"}
    assert group_keys(ctx) == dict.fromkeys(GROUPS, own)
    report = runner.provision(ctx)  # now "create": the key is made first, the groups move to it
    arn = ctx.ids("log-key")["arn"]
    assert group_keys(ctx) == dict.fromkeys(GROUPS, arn)
    calls.clear()
    report = runner.provision(plain)  # back to AWS-managed: the groups first, then the key is removed
    removed = [(line.step, line.outcome) for line in report.steps if line.outcome == "removed"]
    assert removed == [("log-key", "removed")]
    assert group_keys(ctx) == dict.fromkeys(GROUPS, None)
    assert ctx.clients.kms.describe_key(KeyId=arn)["KeyMetadata"]["KeyState"] == "PendingDeletion"
    assert ("logs", "DisassociateKmsKey") in calls.calls


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("alias/my-key", "neither"),
        ("1234abcd-12ab-34cd-56ef-1234567890ab", "neither"),
        ("arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab", "region eu-west-1"),
        ("arn:aws:kms:us-east-1:123456789012:alias/my-key", "neither"),
    ],
)
def test_a_bad_log_kms_key_is_refused_before_any_aws_call(
    in_process: Callable[..., Outcome],  # noqa: F811 - the fixture imported above
    value: str,
    says: str,
) -> None:
    outcome = in_process("--region", REGION, toml=f'log_kms_key = "{value}"\n')
    assert outcome.returncode == 2
    assert "log_kms_key" in outcome.stderr and says in outcome.stderr
    assert "Traceback" not in outcome.stderr


def test_a_key_of_another_partition_is_refused_once_the_partition_is_known() -> None:
    key = "arn:aws-cn:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    validate(Settings(region=REGION, image=IMAGE, log_kms_key=key))  # the shape is right
    with pytest.raises(SettingsError, match="partition aws-cn"):
        check_log_kms_key(key, "aws", REGION)
