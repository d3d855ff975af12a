"""Names, tags and the health check timeout: what AWS refuses and moto accepts.

moto creates a security group named `sg-…`, tags a log group with `a,b#1` and changes a
TCP target group's interval below its timeout; AWS refuses all three, half-way through a
deploy. The hooks below make moto answer as AWS does (the real error code and message,
each with its source), built from the botocore models where a model has the rule, so the
checks in deployer/awsrules.py and deployer/settings.py are tested against an independent
statement of AWS's rules: first that the hooks do reproduce AWS's refusal mid-deploy, then
that the settings refuse the same input before any AWS call, and that what the settings
accept deploys.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import regex  # the pattern syntax of AWS's models (\p{L} …), which Python's `re` lacks

from deployer import awsrules, runner
from deployer.clients import AwsClients
from deployer.errors import AwsCallError, SettingsError
from deployer.ledger import Ledger
from deployer.parallel import Scheduler
from deployer.settings import (
    MAX_STACK_LENGTH,
    NAME_KINDS,
    OWN_TAG_KEYS,
    SECURITY_GROUP_ROLES,
    Names,
    Settings,
    derived_names,
    load_settings,
    validate,
)
from deployer.stack import build_steps
from deployer.state import State, StateFile
from deployer.steps import tags
from deployer.steps.base import StepContext
from deployer.steps.network import SecurityGroupStep
from tests.conftest import ACCOUNT, IMAGE, REGION, CallLog, FakeClock, FakeSite, RecordingOutput
from tests.faults import Refusal, Rule, answer_errors
from tests.rollouts import Rollout
from tests.steps_helpers import first_outcomes, provision_through


def refuse_like_aws(client: Any, operation: str, rule: Rule, served: list[Refusal] | None = None) -> list[Refusal]:
    """AWS's answer to `operation` where moto accepts: `rule` returns the refusal for a request's parameters
    (tests/faults.py answers it). Returns the refusals served (appended to `served` if given)."""
    served = [] if served is None else served

    def recorded(params: dict[str, Any]) -> Refusal | None:
        refusal = rule(params)
        if refusal is not None:
            served.append(refusal)
        return refusal

    answer_errors(client, operation, recorded)
    return served


# --------------------------------------------------------------------------- AWS's rules, as hooks


def security_group_name_rule(params: dict[str, Any]) -> Refusal | None:
    """EC2 CreateSecurityGroup: "Can't start with sg-" (botocore ec2 CreateSecurityGroup GroupName);
    the answer as AWS words it: pulumi/pulumi-awsx#328, kubernetes-sigs/cluster-api-provider-aws#1725."""
    name = str(params.get("GroupName", ""))
    if name.lower().startswith("sg-"):
        return (
            "InvalidParameterValue",
            f"Value ({name}) for parameter GroupName is invalid. Group names may not be in the format sg-*.",
        )
    return None


def tag_rule(client: Any, key_shape: str, value_shape: str, list_shape: str, code: str) -> Rule:
    """Tags checked against the service's own botocore model: pattern and length of key and value, and the
    number of tags. The message is AWS's validation wording, e.g. "1 validation error detected: Value
    'MOJ D&T Cybersecurity' at 'tags.10.member.value' failed to satisfy constraint: Member must satisfy
    regular expression pattern: [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*" (IAM, quoted in
    ministryofjustice/cloud-platform-environments#22667)."""
    model = client.meta.service_model
    key, value = model.shape_for(key_shape).metadata, model.shape_for(value_shape).metadata
    most = model.shape_for(list_shape).metadata.get("max", awsrules.MAX_TAGS_PER_RESOURCE)

    def pairs(params: dict[str, Any]) -> list[tuple[str, str]]:
        given = params.get("Tags", params.get("tags"))
        if isinstance(given, dict):
            return list(given.items())
        return [(t.get("Key", t.get("key", "")), t.get("Value", t.get("value", ""))) for t in given or []]

    def violation(text: str, meta: dict[str, Any]) -> str | None:
        if len(text) > meta.get("max", 10**6) or len(text) < meta.get("min", 0):
            return f"Member must have length less than or equal to {meta.get('max')}"
        if "pattern" in meta and not regex.fullmatch(meta["pattern"], text):
            return f"Member must satisfy regular expression pattern: {meta['pattern']}"
        return None

    detected = "1 validation error detected: Value"

    def rule(params: dict[str, Any]) -> Refusal | None:
        found = pairs(params)
        if len(found) > most:
            return (
                code,
                f"{detected} at 'tags' failed to satisfy constraint: "
                f"Member must have length less than or equal to {most}",
            )
        for number, (k, v) in enumerate(found, start=1):
            for part, text, meta in (("key", k, key), ("value", v, value)):
                problem = violation(text, meta)
                if problem:
                    where = f"tags.{number}.member.{part}"
                    return (
                        code,
                        f"{detected} '{text}' at '{where}' failed to satisfy constraint: {problem}",
                    )
        return None

    return rule


def install_tag_rules(clients: AwsClients) -> list[Refusal]:
    """The strict tag rules of ELBv2, IAM, ECS and CloudWatch Logs, on every call of the stack that tags."""
    served: list[Refusal] = []
    elbv2 = tag_rule(clients.elbv2, "TagKey", "TagValue", "TagList", "ValidationError")
    iam = tag_rule(clients.iam, "tagKeyType", "tagValueType", "tagListType", "ValidationError")
    logs = tag_rule(clients.logs, "TagKey", "TagValue", "Tags", "InvalidParameterException")
    ecs = tag_rule(clients.ecs, "TagKey", "TagValue", "Tags", "InvalidParameterException")
    for client, operations, rule in (
        (clients.elbv2, ("CreateTargetGroup", "CreateLoadBalancer", "CreateListener"), elbv2),
        (clients.iam, ("CreateRole",), iam),
        (clients.logs, ("CreateLogGroup",), logs),
        (clients.ecs, ("CreateCluster", "RegisterTaskDefinition", "CreateService"), ecs),
    ):
        for operation in operations:
            refuse_like_aws(client, operation, rule, served)
    return served


TCP_DEFAULT_TIMEOUT = 10  # botocore elbv2 CreateTargetGroup HealthCheckTimeoutSeconds: "TCP … the default is 10"
TCP_DEFAULT_INTERVAL = 30  # botocore elbv2 CreateTargetGroup HealthCheckIntervalSeconds: "TCP … the default is 30"


def timeout_refusal(timeout: int, interval: int) -> Refusal | None:
    """An NLB target group's timeout may not exceed its interval (aws-cdk's NetworkTargetGroup, aws/aws-cdk#26031);
    the message as moto's elbv2 words it for CreateTargetGroup."""
    if timeout > interval:
        return (
            "ValidationError",
            f"Health check timeout '{timeout}' must be smaller than or equal to the interval '{interval}'",
        )
    return None


def install_health_check_rules(elbv2: Any) -> list[Refusal]:
    """CreateTargetGroup (moto 5.2 checks this one itself) and ModifyTargetGroup (moto does not): the
    timeout in effect, given or the group's, against the interval in effect."""

    def create(params: dict[str, Any]) -> Refusal | None:
        return timeout_refusal(
            params.get("HealthCheckTimeoutSeconds", TCP_DEFAULT_TIMEOUT),
            params.get("HealthCheckIntervalSeconds", TCP_DEFAULT_INTERVAL),
        )

    def modify(params: dict[str, Any]) -> Refusal | None:
        group = elbv2.describe_target_groups(TargetGroupArns=[params["TargetGroupArn"]])["TargetGroups"][0]
        return timeout_refusal(
            params.get("HealthCheckTimeoutSeconds", group["HealthCheckTimeoutSeconds"]),
            params.get("HealthCheckIntervalSeconds", group["HealthCheckIntervalSeconds"]),
        )

    served = refuse_like_aws(elbv2, "CreateTargetGroup", create)
    return refuse_like_aws(elbv2, "ModifyTargetGroup", modify, served)


# --------------------------------------------------------------------------- contexts


def unvalidated_context(clients: AwsClients, settings: Settings, state_path: Path) -> StepContext:
    """A run's context for settings the tool would refuse (conftest's make_context validates them first):
    what would happen without the check."""
    state = State(stack=settings.stack, region=REGION, account_id=ACCOUNT)
    return StepContext(
        clients=clients,
        settings=settings,
        ledger=Ledger(state, StateFile(state_path).save),
        account_id=ACCOUNT,
        partition="aws",
        output=RecordingOutput(),
        clock=FakeClock(),
        probe=FakeSite(200),
    )


def with_settings(ctx: StepContext, **changes: Any) -> StepContext:
    settings = replace(ctx.settings, **changes)
    validate(settings)
    return replace(ctx, settings=settings)


@pytest.fixture
def served_tags(aws: AwsClients) -> list[Refusal]:
    return install_tag_rules(aws)


# --------------------------------------------------------------------------- names


def test_every_derived_name_has_a_rule() -> None:
    """Every `Names` property maps to a kind, every kind to a rule; the security group roles are the stack's."""
    properties = sorted(name for name in dir(Names) if isinstance(getattr(Names, name), property))
    assert properties == sorted(NAME_KINDS)
    assert set(NAME_KINDS.values()) | {"security-group"} <= set(awsrules.NAME_RULES)
    roles = {step.role for step in build_steps() if isinstance(step, SecurityGroupStep)}
    assert roles == set(SECURITY_GROUP_ROLES)
    assert len(derived_names(Names("my-site"))) == len(NAME_KINDS) + len(SECURITY_GROUP_ROLES)


@pytest.mark.parametrize("stack", ["flask-site", "a" * MAX_STACK_LENGTH, "a1", "my-site-2"])
def test_names_of_valid_stacks_pass_every_rule(stack: str) -> None:
    for attribute, name, kind in derived_names(Names(stack)):
        assert awsrules.NAME_RULES[kind].problem(name) is None, (attribute, name)


@pytest.mark.parametrize(
    ("kind", "name", "fragment"),
    [
        ("security-group", "sg-web-nlb-sg", "starts with 'sg-'"),
        ("security-group", "SG-web", "starts with 'sg-'"),
        ("security-group", "web~sg", "AWS allows only"),
        ("security-group", "x" * 256, "has 256 characters"),
        ("load-balancer", "internal-site-nlb", "starts with 'internal-'"),
        ("load-balancer", "a" * 33, "has 33 characters"),
        ("load-balancer", "-site", "AWS allows only"),
        ("target-group", "site-", "AWS allows only"),
        ("target-group", "my_site", "AWS allows only"),
        ("iam-role", "r" * 65, "has 65 characters"),
        ("iam-role", "my role", "AWS allows only"),
        ("ecr-repository", "My-site", "AWS allows only"),
        ("ecr-repository", "a", "has 1 characters"),
        ("log-group", "aws/ecs/site", "starts with 'aws/'"),
        ("log-group", "/ecs/my site", "AWS allows only"),
        ("ecs-name", "my.site", "AWS allows only"),
        ("ecs-name", "s" * 256, "has 256 characters"),
    ],
)
def test_name_rules_refuse_what_aws_refuses(kind: str, name: str, fragment: str) -> None:
    problem = awsrules.NAME_RULES[kind].problem(name)
    assert problem is not None and fragment in problem


@pytest.mark.contract_exempt(
    "sends the sg- name AWS refuses, to show where a deploy would die without the settings check"
)
def test_security_group_prefix_fails_mid_deploy_on_aws(aws: AwsClients, state_path: Path) -> None:
    """Without the check, AWS refuses `sg-web`'s first security group, after the VPC, subnets and gateway exist."""
    served = refuse_like_aws(aws.ec2, "CreateSecurityGroup", security_group_name_rule)
    ctx = unvalidated_context(aws, Settings(stack="sg-web", region=REGION, image=IMAGE), state_path)
    with pytest.raises(AwsCallError) as refused:
        runner.provision(ctx, wait=False, scheduler=Scheduler(slots=1))
    assert refused.value.step == "nlb-security-group"
    assert refused.value.code == "InvalidParameterValue"
    assert served == [
        (
            "InvalidParameterValue",
            "Value (sg-web-nlb-sg) for parameter GroupName is invalid. Group names may not be in the format sg-*.",
        )
    ]
    assert {"vpc", "subnet-1", "subnet-2", "internet-gateway", "route-table"} <= {
        record.step for record in ctx.state.resources
    }


def test_security_group_prefix_is_refused_before_any_aws_call(calls: CallLog) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(None, {"stack": "sg-web", "image": IMAGE})
    message = refused.value.message
    for fragment in ("Invalid setting 'stack'", "EC2 security group name 'sg-web-nlb-sg'", "starts with 'sg-'"):
        assert fragment in message
    assert "API_CreateSecurityGroup" in message and "Choose another stack name" in message
    assert calls.calls == []


def test_a_new_or_changed_derived_name_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Names are checked by walking `Names`' properties: a role name grown with the region is checked
    at once, and a property without a rule kind cannot slip through."""
    long_region = "ap-southeast-" + "x" * 40
    monkeypatch.setattr(Names, "execution_role", property(lambda self: f"{self.stack}-{long_region}-execution-role"))
    with pytest.raises(SettingsError, match=r"IAM role name '.*-execution-role' .* has \d+ characters"):
        validate(Settings(stack="my-site", image=IMAGE))

    monkeypatch.setattr(Names, "bucket", property(lambda self: f"{self.stack}-bucket"), raising=False)
    with pytest.raises(RuntimeError, match=r"Names\.bucket has no kind"):
        validate(Settings(stack="my-site", image=IMAGE))


# --------------------------------------------------------------------------- tags


@pytest.mark.contract_exempt("sends the tag AWS refuses, to show where a deploy would die without the settings check")
def test_bad_tag_fails_mid_deploy_on_aws(aws: AwsClients, served_tags: list[Refusal], state_path: Path) -> None:
    """Without the check, `a,b#1` passes ECR and EC2 and is refused by CloudWatch Logs, the first strict service."""
    settings = Settings(stack="test-site", region=REGION, image=IMAGE, tags={"team": "a,b#1"})
    ctx = unvalidated_context(aws, settings, state_path)
    with pytest.raises(AwsCallError) as refused:
        runner.provision(ctx, wait=False, scheduler=Scheduler(slots=1))
    assert refused.value.step == "log-group"
    (refusal,) = served_tags
    assert refusal[1].startswith("1 validation error detected: Value 'a,b#1' at 'tags.1.member.value'")
    assert {"vpc", "nlb-security-group", "task-security-group"} <= {record.step for record in ctx.state.resources}


@pytest.mark.parametrize(
    ("tag_key", "value", "fragment"),
    [
        pytest.param("team", "a,b#1", "',' '#'", id="comma-hash"),
        pytest.param("team", "yes!", "'!'", id="exclamation"),
        pytest.param("mood", "\N{SLIGHTLY SMILING FACE}", "\N{SLIGHTLY SMILING FACE}", id="emoji"),
        pytest.param("a#b", "x", "'#'", id="key-hash"),
        pytest.param("k" * 129, "x", "has 129 characters", id="key-too-long"),
        pytest.param("team", "v" * 257, "longer than 256", id="value-too-long"),
        pytest.param("aws:owner", "me", "is reserved", id="aws-prefix"),
        pytest.param("AWS:Owner", "me", "is reserved", id="aws-prefix-upper"),
        pytest.param("deployer:stack", "other", "is reserved", id="deployer-prefix"),
        pytest.param("owner", "Aws:me", "starts with 'aws:'", id="aws-value"),
    ],
)
def test_bad_tags_are_refused_before_any_aws_call(tag_key: str, value: str, fragment: str, calls: CallLog) -> None:
    with pytest.raises(SettingsError, match="Invalid setting 'tags'") as refused:
        load_settings(None, {"image": IMAGE, "tags": {tag_key: value}})
    assert fragment in refused.value.message
    assert calls.calls == []


def test_each_refused_tag_is_refused_by_aws_too(aws: AwsClients) -> None:
    """The settings refuse exactly what the botocore models' tag patterns refuse, character by character."""
    rule = tag_rule(aws.iam, "tagKeyType", "tagValueType", "tagListType", "ValidationError")
    samples = "aZ09 _.:/=+-@éß名ñΩ١٢\u00a0\u2003,#!?;&*()[]{}<>'\"\\|~`$%^\N{SLIGHTLY SMILING FACE}\t\n"
    for character in samples:
        by_aws = rule({"Tags": [{"Key": "k", "Value": f"v{character}"}]}) is not None
        by_us = awsrules.bad_tag_characters(f"v{character}") != ""
        assert by_us == by_aws, repr(character)


def test_too_many_tags_are_refused_before_any_aws_call(calls: CallLog) -> None:
    """The roles get the user's tags and the deployer's own four: 46 user tags fit AWS's 50, 47 do not."""
    role_tags = tags.iam_tags(Settings(), "task-role", REGION)
    assert {tag["Key"] for tag in role_tags} == set(OWN_TAG_KEYS)
    load_settings(None, {"image": IMAGE, "tags": {f"k{n}": "v" for n in range(46)}})
    with pytest.raises(SettingsError) as refused:
        load_settings(None, {"image": IMAGE, "tags": {f"k{n}": "v" for n in range(47)}})
    for fragment in ("47 tags are given", "would get 51", "at most 50", "Give at most 46 tags"):
        assert fragment in refused.value.message
    assert calls.calls == []


def test_48_tags_fail_on_aws(aws: AwsClients, state_path: Path) -> None:
    """Without the check, 48 user tags (51 in all) pass ECR and are refused at the VPC: moto has EC2's limit
    itself; every strict service (the hooks) would refuse them as well."""
    settings = Settings(stack="test-site", region=REGION, image=IMAGE, tags={f"k{n}": "v" for n in range(48)})
    ctx = unvalidated_context(aws, settings, state_path)
    with pytest.raises(AwsCallError) as refused:
        runner.provision(ctx, wait=False, scheduler=Scheduler(slots=1))
    assert refused.value.step == "vpc"
    assert [record.step for record in ctx.state.resources] == ["repository", "image"]
    rule = tag_rule(aws.logs, "TagKey", "TagValue", "Tags", "InvalidParameterException")
    refusal = rule({"tags": tags.stack_tags(settings, "log-group")})
    assert refusal is not None and "less than or equal to 50" in refusal[1]


def test_accepted_tags_deploy_the_whole_stack(
    aws: AwsClients, served_tags: list[Refusal], state_path: Path, calls: CallLog
) -> None:
    """Letters, digits and spaces of any script and the listed punctuation, 46 tags in all, pass every service."""
    user_tags = {f"k{n}": "v" for n in range(43)} | {
        "Équipe": "Données Ünïcode 名前 ١٢٣",
        "cost/centre": "a_b.c:d/e=f+g-h@i",
        "empty": "",
    }
    # log_kms_key = "create": every step is wanted, so the KMS key's tags are sent too.
    settings = Settings(stack="test-site", region=REGION, image=IMAGE, tags=user_tags, log_kms_key="create")
    validate(settings)
    ctx = unvalidated_context(aws, settings, state_path)
    Rollout().install(aws.ecs, aws.elbv2)
    report = runner.provision(ctx, wait=False, scheduler=Scheduler(slots=1))
    assert [line.outcome for line in report.steps] == first_outcomes(settings)
    assert served_tags == []
    role_tags = {t["Key"]: t["Value"] for t in aws.iam.list_role_tags(RoleName=f"test-site-{REGION}-task")["Tags"]}
    assert role_tags["Équipe"] == "Données Ünïcode 名前 ١٢٣" and len(role_tags) == 50


# --------------------------------------------------------------------------- health check timeout


@pytest.mark.contract_exempt("sends the health check AWS refuses, to reproduce its answer")
def test_default_timeout_above_a_short_interval_is_refused_by_aws(aws: AwsClients) -> None:
    """The hooks reproduce AWS: interval 5 with the TCP default timeout (10), or lowered below a group's timeout."""
    served = install_health_check_rules(aws.elbv2)
    vpc = aws.ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    base: dict[str, Any] = {"Protocol": "TCP", "Port": 8080, "VpcId": vpc, "TargetType": "ip"}
    with pytest.raises(aws.elbv2.exceptions.ClientError, match="Health check timeout '10' must be smaller than or"):
        aws.elbv2.create_target_group(Name="short", HealthCheckIntervalSeconds=5, **base)
    arn = aws.elbv2.create_target_group(Name="default", HealthCheckIntervalSeconds=10, **base)["TargetGroups"][0]
    with pytest.raises(aws.elbv2.exceptions.ClientError, match="equal to the interval '5'"):
        aws.elbv2.modify_target_group(TargetGroupArn=arn["TargetGroupArn"], HealthCheckIntervalSeconds=5)
    assert [code for code, _ in served] == ["ValidationError", "ValidationError"]


def test_short_interval_deploys_with_an_explicit_timeout(ctx: StepContext, calls: CallLog) -> None:
    """interval 5 (AWS's minimum) is created with timeout 5 and never sends a timeout above the interval."""
    served = install_health_check_rules(ctx.clients.elbv2)
    ctx = with_settings(ctx, health_check_interval=5)
    provision_through(ctx, "target-group")
    group = ctx.clients.elbv2.describe_target_groups(Names=["test-site-tg"])["TargetGroups"][0]
    assert (group["HealthCheckIntervalSeconds"], group["HealthCheckTimeoutSeconds"]) == (5, 5)
    assert served == []


def test_interval_lowered_below_the_timeout_converges(ctx: StepContext, calls: CallLog) -> None:
    """A group made with interval 10 (timeout 10), converged to interval 7: timeout and interval change together."""
    served = install_health_check_rules(ctx.clients.elbv2)
    step = provision_through(ctx, "target-group")
    ctx = with_settings(ctx, health_check_interval=7)
    outcome, _, changes = runner.provision_step(ctx, step)
    assert outcome == "updated" and "HealthCheckTimeoutSeconds=7" in changes[0], changes
    group = ctx.clients.elbv2.describe_target_groups(Names=["test-site-tg"])["TargetGroups"][0]
    assert (group["HealthCheckIntervalSeconds"], group["HealthCheckTimeoutSeconds"]) == (7, 7)
    ctx = with_settings(ctx, health_check_interval=300)
    runner.provision_step(ctx, step)
    group = ctx.clients.elbv2.describe_target_groups(Names=["test-site-tg"])["TargetGroups"][0]
    assert (group["HealthCheckIntervalSeconds"], group["HealthCheckTimeoutSeconds"]) == (300, 10)
    assert served == []
