"""Issue 11, IAM: the execution role's scoped inline policy, and administrative task-role policies refused.

* The execution role holds one inline policy and nothing attached: each statement's Resource
  is read back and must be the stack's repository (and `image`'s, when a private ECR one), the
  stack's log group and its streams, or "*" for ecr:GetAuthorizationToken alone.
* A role an earlier version made (AmazonECSTaskExecutionRolePolicy attached) converges: the
  inline policy is put first, then the managed policy is detached from our role only; a
  further run makes no changing call.
* `task_role_policy_arns` naming an administrative policy is refused (exit 2) before any AWS
  call, unless `--allow-broad-task-role` or `allow_broad_task_role = true`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from deployer import cli
from deployer.runner import provision_step
from deployer.settings import Settings, broad_policies
from deployer.steps.base import StepContext
from deployer.steps.iam import EXECUTION_POLICY_NAME, ecr_repository_arn
from tests.conftest import ACCOUNT, IMAGE, REGION, CallLog, planning
from tests.steps_helpers import provision_through
from tests.test_bad_input import Outcome, assert_refused

MANAGED = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
REPOSITORY = f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/test-site"
LOG_GROUP = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/ecs/test-site"
ADMIN = "arn:aws:iam::aws:policy/AdministratorAccess"


def role_name(ctx: StepContext) -> str:
    return ctx.ids("execution-role")["name"]


def inline_document(ctx: StepContext) -> dict[str, Any]:
    document = ctx.clients.iam.get_role_policy(RoleName=role_name(ctx), PolicyName=EXECUTION_POLICY_NAME)
    text = document["PolicyDocument"]
    return json.loads(text) if isinstance(text, str) else dict(text)


def resources_by_action(document: dict[str, Any]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow"
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        for action in actions:
            found[action] = sorted(resources)
    return found


def attached(ctx: StepContext, role: str) -> set[str]:
    return {p["PolicyArn"] for p in ctx.clients.iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]}


# --- the execution role -------------------------------------------------------------------------


def test_the_execution_role_has_only_its_scoped_inline_policy(ctx: StepContext) -> None:
    provision_through(ctx, "execution-role")
    assert attached(ctx, role_name(ctx)) == set()
    assert ctx.clients.iam.list_role_policies(RoleName=role_name(ctx))["PolicyNames"] == [EXECUTION_POLICY_NAME]
    # The public image (ECR Public) needs nothing of the role; the stack's repository stays in for rollbacks.
    assert resources_by_action(inline_document(ctx)) == {
        "ecr:GetAuthorizationToken": ["*"],  # takes no resource (Service Authorization Reference)
        "ecr:BatchCheckLayerAvailability": [REPOSITORY],
        "ecr:BatchGetImage": [REPOSITORY],
        "ecr:GetDownloadUrlForLayer": [REPOSITORY],
        "logs:CreateLogStream": [LOG_GROUP, f"{LOG_GROUP}:*"],
        "logs:PutLogEvents": [LOG_GROUP, f"{LOG_GROUP}:*"],
    }


def test_an_image_in_another_ecr_repository_is_allowed_that_repository_too(ctx: StepContext) -> None:
    image = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/team/site:1.2"
    ctx = replace(ctx, settings=replace(ctx.settings, image=image))
    provision_through(ctx, "execution-role")
    pulls = resources_by_action(inline_document(ctx))["ecr:BatchGetImage"]
    assert pulls == sorted([REPOSITORY, f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/team/site"])


@pytest.mark.parametrize(
    ("image", "arn"),
    [
        (f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/site:1", f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/site"),
        (
            f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/a/b-c@sha256:" + "ab" * 32,
            f"arn:aws:ecr:eu-west-1:{ACCOUNT}:repository/a/b-c",
        ),
        ("210987654321.dkr.ecr-fips.us-east-2.amazonaws.com/x", "arn:aws:ecr:us-east-2:210987654321:repository/x"),
        ("210987654321.dkr-ecr.us-west-2.on.aws/x:t", "arn:aws:ecr:us-west-2:210987654321:repository/x"),
        (IMAGE, None),  # ECR Public: pulled anonymously
        ("nginx:1.27", None),
        ("ghcr.io/owner/site:1", None),
    ],
)
def test_the_repository_of_an_image(image: str, arn: str | None) -> None:
    assert ecr_repository_arn(image, "aws") == arn


def test_a_role_of_an_earlier_version_converges_to_the_inline_policy(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "execution-role")
    wanted = inline_document(ctx)
    iam = ctx.clients.iam
    # The role as the previous version left it: the managed policy attached, no inline policy.
    iam.delete_role_policy(RoleName=role_name(ctx), PolicyName=EXECUTION_POLICY_NAME)
    iam.attach_role_policy(RoleName=role_name(ctx), PolicyArn=MANAGED)
    # Someone else's role with the same managed policy: not ours, never touched.
    iam.create_role(RoleName="someone-elses", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17"}))
    iam.attach_role_policy(RoleName="someone-elses", PolicyArn=MANAGED)

    calls.clear()
    planned = provision_step(planning(ctx), step)
    assert planned[0] == "updated" and calls.changing() == []  # dry run: described only
    assert planned[2] == [f"inline policy {EXECUTION_POLICY_NAME} put", f"detached {MANAGED}"]

    calls.clear()
    outcome, _, changes = provision_step(ctx, step)
    assert (outcome, changes) == (planned[0], planned[2])
    # Put before detached: the role is never without the permissions a starting task needs.
    assert calls.changing() == [("iam", "PutRolePolicy"), ("iam", "DetachRolePolicy")]
    assert attached(ctx, role_name(ctx)) == set()
    assert inline_document(ctx) == wanted
    assert attached(ctx, "someone-elses") == {MANAGED}

    calls.clear()
    assert provision_step(ctx, step)[::2] == ("unchanged", [])
    assert calls.changing() == []


# --- administrative task-role policies ----------------------------------------------------------


@pytest.mark.parametrize(
    "arn",
    [
        ADMIN,
        "arn:aws-cn:iam::aws:policy/AdministratorAccess",
        "arn:aws:iam::aws:policy/AdministratorAccess-Amplify",
        "arn:aws:iam::aws:policy/PowerUserAccess",
        "arn:aws:iam::aws:policy/AmazonS3FullAccess",
        "arn:aws:iam::aws:policy/AmazonDynamoDBFullAccess_v2",
        "arn:aws:iam::aws:policy/service-role/AmazonECS_FullAccess",
        f"arn:aws:iam::{ACCOUNT}:policy/team/administratoraccess",  # the account's own, any case
    ],
)
def test_administrative_policies_are_broad(arn: str) -> None:
    assert broad_policies((arn,)) == [arn]


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:iam::aws:policy/ReadOnlyAccess",
        "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess",
        "arn:aws:iam::aws:policy/job-function/ViewOnlyAccess",
        f"arn:aws:iam::{ACCOUNT}:policy/site-writes-its-bucket",
    ],
)
def test_scoped_policies_are_not_broad(arn: str) -> None:
    assert broad_policies((arn,)) == []


class ReachedAwsError(Exception):
    """The run got past the settings and asked for AWS clients."""


@pytest.fixture
def provision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., Outcome]:
    """provision_main in-process; asking for AWS clients raises ReachedAwsError, so no AWS call can be made."""

    def no_aws(*_: Any, **__: Any) -> None:
        raise ReachedAwsError

    monkeypatch.setattr(cli, "connect", no_aws)
    config = tmp_path / "deploy.toml"

    def run(*args: str, toml: str = "") -> Outcome:
        config.write_text(f"task_role_policy_arns = [{json.dumps(ADMIN)}]\n{toml}")
        argv = ["--config", str(config), "--state-file", str(tmp_path / "state.json"), "--image", IMAGE, *args]
        code = cli.provision_main(argv)
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return run


@pytest.mark.parametrize("extra", [(), ("--dry-run",), ("--print-policy",)], ids=["provision", "dry-run", "policy"])
def test_an_administrative_task_role_is_refused_before_any_aws_call(
    provision: Callable[..., Outcome], tmp_path: Path, extra: tuple[str, ...]
) -> None:
    result = provision(*extra)  # ReachedAwsError would fail the test: the refusal comes first
    assert_refused(result, "task_role_policy_arns", ADMIN, "code execution", "--allow-broad-task-role")
    assert not (tmp_path / "state.json").exists()


@pytest.mark.parametrize(
    ("args", "toml"),
    [(("--allow-broad-task-role",), ""), ((), "allow_broad_task_role = true\n")],
    ids=["flag", "deploy.toml"],
)
def test_an_administrative_task_role_is_accepted_when_allowed(
    provision: Callable[..., Outcome], args: tuple[str, ...], toml: str
) -> None:
    with pytest.raises(ReachedAwsError):
        provision(*args, toml=toml)


def test_the_setting_must_be_a_boolean(provision: Callable[..., Outcome]) -> None:
    assert_refused(provision(toml='allow_broad_task_role = "yes"\n'), "allow_broad_task_role", "bool")


def test_an_allowed_administrative_policy_is_attached_to_the_task_role(ctx: StepContext) -> None:
    """The account's own policy named AdministratorAccess: broad by its name, attached once allowed."""
    admin = ctx.clients.iam.create_policy(
        PolicyName="AdministratorAccess",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        ),
    )["Policy"]["Arn"]
    settings = Settings(stack="test-site", region=REGION, image=IMAGE, task_role_policy_arns=(admin,))
    ctx = replace(ctx, settings=replace(settings, allow_broad_task_role=True))
    provision_through(ctx, "task-role")
    assert attached(ctx, ctx.ids("task-role")["name"]) == {admin}
    assert attached(ctx, role_name(ctx)) == set()
