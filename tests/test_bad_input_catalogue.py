"""The catalogue of bad input: every kind the tool can meet, one row each, in one table.

Each row says where the bad input comes from (its category), how to set it up, the
command run, and what the user must see: the exit code and fragments of the message.
One test runs every row through the real scripts, as a user would, against the moto
server, and checks for each:

- the exit code and the message fragments;
- for the tool's own refusals, stderr is one paragraph: "error: " what went wrong,
  "Where: " and what to do (argparse's usage errors keep argparse's format);
- no "Traceback" on stdout or stderr;
- nothing lost: every file the row set up (state file, its lock, a state path that is a
  folder) is byte-for-byte what it was and nothing appeared beside it, every S3 bucket and
  object version (an S3 state, `s3`) is what it was, and the emulator holds no resource;
  or, for an AWS refusal mid-run, the state file records every step before the refused
  one, matching what exists, and the same command succeeds once the cause is fixed.

Placeholders in arguments, settings, environment and fragments: `{tmp}` is the scratch
folder the scripts run in, and a row's `setup` may add more (the lock holder's `{pid}`).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import boto3
import pytest

from deployer.graph import stack_graph
from deployer.state import SCHEMA_VERSION
from tests.conftest import ACCOUNT, IMAGE, REGION, MotoServer
from tests.test_bad_input import (
    OTHER_ACCOUNT,
    STACK,
    STEP_ORDER,
    Snapshot,
    assert_refused,
    aws_resources,
    provision_args,
    recorded_steps,
    run_bare,
    state_json,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

Category = Literal["flags", "deploy.toml", "state file", "environment", "AWS answers"]
CATEGORIES: tuple[Category, ...] = ("flags", "deploy.toml", "state file", "environment", "AWS answers")
Setup = Callable[[Path, ExitStack], dict[str, str]]
S3Setup = Callable[["S3Client"], None]

NO_DOCKER = {"DOCKER_HOST": "unix:///nonexistent.sock"}  # for rows that build: no engine can be reached by mistake
LOCK_STARTED_AT = "2026-01-02T03:04:05+00:00"


@dataclass(frozen=True)
class Case:
    """One bad input and what the user must see."""

    id: str
    category: Category
    script: str  # "provision.py" (always given --config {tmp}/deploy.toml) or "teardown.py"
    args: tuple[str, ...]
    fragments: tuple[str, ...]  # each must appear in stderr (case-insensitive)
    exit_code: int = 2
    toml: str | bytes = ""  # deploy.toml
    state: str | bytes | None = None  # state.json; None: no state file
    env: dict[str, str] = field(default_factory=dict)  # set for the run
    drop: tuple[str, ...] = ()  # removed from the run's environment
    setup: Setup | None = None  # anything else to prepare; returns extra placeholders
    s3: S3Setup | None = None  # buckets and objects to prepare in the emulator's S3
    usage_error: bool = False  # argparse's own format ("usage: ..."), not the tool's paragraph
    fails_at: str | None = None  # AWS answers: the step AWS refuses, part-way through the stack
    fails_after_creating: bool = False  # AWS answers: that step's own resource was created (and must be recorded)
    fixed_toml: str = ""  # AWS answers: deploy.toml with the cause fixed, for the re-run
    marks: tuple[Any, ...] = ()  # e.g. pytest.mark.xfail(strict=True, reason=...) for a known bug


# --------------------------------------------------------------------------- setups


def live_lock(tmp: Path, cleanup: ExitStack) -> dict[str, str]:
    """Another run holds the state's lock: a live process on this host (a `sleep`, stopped after the row)."""
    holder = subprocess.Popen(["sleep", "300"])
    cleanup.callback(_stop, holder)
    record = {"pid": holder.pid, "host": socket.gethostname(), "command": "provision.py", "started_at": LOCK_STARTED_AT}
    (tmp / "state.json.lock").write_text(json.dumps(record))
    return {"pid": str(holder.pid)}


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait(timeout=10)


def state_folder(tmp: Path, _cleanup: ExitStack) -> dict[str, str]:
    """The state path is a folder (with something in it that must survive)."""
    (tmp / "state.json").mkdir()
    (tmp / "state.json" / "keep.txt").write_text("keep me\n")
    return {}


STATE_BUCKET = "team-deploy-state"
STATE_URL = f"s3://{STATE_BUCKET}/site/state.json"
OTHER_REGION: Final = "eu-west-1"


def not_a_state(s3: S3Client) -> None:
    """The state's key holds someone else's object (in a bucket of the user's, without versioning)."""
    s3.create_bucket(Bucket=STATE_BUCKET)
    s3.put_object(Bucket=STATE_BUCKET, Key="site/state.json", Body=b"quarterly report\n")


def bucket_in_other_region(s3: S3Client) -> None:
    """The state's bucket exists, in another region than the stack's."""
    other = boto3.client("s3", region_name=OTHER_REGION, endpoint_url=s3.meta.endpoint_url)
    other.create_bucket(Bucket=STATE_BUCKET, CreateBucketConfiguration={"LocationConstraint": OTHER_REGION})


def site_without_dockerfile(tmp: Path, _cleanup: ExitStack) -> dict[str, str]:
    """A build context with the site's files but no Dockerfile."""
    (tmp / "site").mkdir()
    (tmp / "site" / "app.py").write_text("print('hello')\n")
    return {}


# --------------------------------------------------------------------------- the catalogue

PROVISION = "provision.py"
TEARDOWN = "teardown.py"
BUILD = ("--stack", STACK, "--no-wait")  # provision without --image: the site's image is built

CATALOGUE: list[Case] = [
    # ----------------------------------------------------------------- flags
    Case(
        "unknown-flag",
        "flags",
        PROVISION,
        provision_args("--colour", "red"),
        ("usage: provision.py", "unrecognized arguments", "--colour"),
        usage_error=True,
    ),
    Case(
        "build-arg-without-value",
        "flags",
        PROVISION,
        provision_args("--build-arg", "NOVALUE"),
        ("--build-arg 'NOVALUE' is not KEY=VALUE", "Where: command line", "--build-arg KEY=VALUE"),
    ),
    Case(
        "build-arg-name-invalid",
        "flags",
        PROVISION,
        (*BUILD, "--build-arg", "APP-VERSION=1.2"),
        ("'build_args'", "'APP-VERSION' is not a valid build argument name", "plain name", "not starting with a digit"),
        env=NO_DOCKER,
    ),
    Case(
        "build-arg-name-invalid-with-image",
        "flags",
        PROVISION,
        provision_args("--build-arg", "1VERSION=1.2"),
        ("'build_args'", "'1VERSION' is not a valid build argument name", "plain name"),
    ),
    Case(
        "build-arg-with-image",
        "flags",
        PROVISION,
        provision_args("--build-arg", "APP_VERSION=1.2"),
        ("'build_args'", "build arguments (APP_VERSION) are given with image", "nothing is built", "Leave out --image"),
    ),
    Case(
        "config-file-missing",
        "flags",
        PROVISION,
        provision_args("--config", "{tmp}/elsewhere/missing.toml"),
        ("--config does not exist", "Where: {tmp}/elsewhere/missing.toml", "Check the path"),
    ),
    Case(
        "stack-invalid",
        "flags",
        PROVISION,
        ("--stack", "Test-site", "--image", IMAGE, "--no-wait"),
        ("Invalid stack name 'Test-site'", "lowercase letters", "Choose a name like 'my-site'"),
    ),
    Case(
        # EC2 refuses security group names starting with "sg-": without the check, the deploy would stop
        # at the first security group, after the VPC, subnets and gateway (tests/test_aws_rules.py).
        "stack-derives-security-group-named-sg",
        "flags",
        PROVISION,
        ("--stack", "sg-web", "--image", IMAGE, "--no-wait"),
        (
            "Invalid setting 'stack'",
            "EC2 security group name 'sg-web-nlb-sg' derived from stack 'sg-web'",
            "starts with 'sg-'",
            "API_CreateSecurityGroup",
            "Choose another stack name",
        ),
    ),
    Case(
        "region-unknown",
        "flags",
        PROVISION,
        provision_args("--region", "mars-1"),
        ("Unknown AWS region 'mars-1'", "Where: --region", "Use a region where ECS runs"),
    ),
    Case(
        "teardown-dry-run-without-sweep",
        "flags",
        TEARDOWN,
        ("--dry-run",),
        ("--stack, --region and --dry-run only apply to --sweep", "teardown.py's command line", "Add --sweep"),
        state=state_json(),
    ),
    Case(
        "teardown-sweep-without-stack-or-state",
        "flags",
        TEARDOWN,
        ("--sweep", "--yes"),
        ("--sweep needs the stack", "without --stack and without a state file", "Pass --stack NAME"),
    ),
    Case(
        "teardown-without-yes-or-terminal",
        "flags",
        TEARDOWN,
        (),
        ("without confirmation", "no terminal", "Where: teardown.py with state.json", "pass --yes"),
        state=state_json(),
    ),
    Case(
        "domain-not-a-name",
        "flags",
        PROVISION,
        provision_args("--domain", "https://www.example.com/"),
        ("Invalid setting 'domain'", "is not a DNS name", "without a scheme, path, port or trailing dot"),
    ),
    Case(
        "domain-wildcard",
        "flags",
        PROVISION,
        provision_args("--domain", "*.example.com"),
        ("Invalid setting 'domain'", "is a wildcard", "--certificate-arn"),
    ),
    Case(
        "certificate-arn-without-domain",
        "flags",
        PROVISION,
        provision_args("--certificate-arn", f"arn:aws:acm:us-east-1:{ACCOUNT}:certificate/abc"),
        ("Invalid setting 'certificate_arn'", "none is set", "--domain www.example.com"),
    ),
    Case(
        "certificate-arn-other-region",
        "flags",
        PROVISION,
        provision_args(
            "--domain", "www.example.com", "--certificate-arn", f"arn:aws:acm:eu-west-1:{ACCOUNT}:certificate/abc"
        ),
        ("is in region eu-west-1, the stack in us-east-1", "its own region"),
    ),
    Case(
        "certificate-arn-other-account",
        "flags",
        PROVISION,
        provision_args(
            "--domain", "www.example.com", "--certificate-arn", "arn:aws:acm:us-east-1:210987654321:certificate/abc"
        ),
        ("belongs to account 210987654321", f"Give a certificate of account {ACCOUNT}"),
    ),
    Case(
        "min-tasks-above-max-tasks",
        "flags",
        PROVISION,
        provision_args("--min-tasks", "3", "--max-tasks", "2"),
        ("Invalid setting 'min_tasks/max_tasks'", "min_tasks 3 is above max_tasks 2", "at least min_tasks"),
    ),
    Case(
        "max-tasks-above-ceiling",
        "flags",
        PROVISION,
        provision_args("--max-tasks", "251"),
        ("Invalid setting 'max_tasks'", "251 is outside 1-250", "Use a value in that range"),
    ),
    Case(
        "min-tasks-zero",
        "flags",
        PROVISION,
        provision_args("--min-tasks", "0", "--max-tasks", "2"),
        ("Invalid setting 'min_tasks'", "0 is outside 1-250"),
    ),
    Case(
        "max-tasks-not-a-number",
        "flags",
        PROVISION,
        provision_args("--max-tasks", "four"),
        ("--max-tasks", "invalid int value"),
        usage_error=True,
    ),
    Case(
        "max-tasks-subnets-too-small",
        "deploy.toml",
        PROVISION,
        provision_args("--max-tasks", "20"),
        ("Invalid setting 'subnet_cidrs'", "172.31.32.0/28 has 10 addresses for tasks", "lower max_tasks"),
        toml='subnet_cidrs = ["172.31.32.0/28", "172.31.48.0/28"]\n',
    ),
    Case(
        "parked-with-autoscaling",
        "deploy.toml",
        PROVISION,
        provision_args(),
        ("Invalid setting 'desired_count'", "parks the stack", "Leave out min_tasks and max_tasks"),
        toml="desired_count = 0\nmax_tasks = 4\n",
    ),
    Case(
        "scale-cpu-percent-out-of-range",
        "deploy.toml",
        PROVISION,
        provision_args(),
        ("Invalid setting 'scale_cpu_percent'", "95 is outside 10-90"),
        toml="scale_cpu_percent = 95\n",
    ),
    Case(
        "state-url-malformed",
        "flags",
        PROVISION,
        provision_args("--state-file", "s3://Team_State/site/state.json"),
        (
            "The state location 's3://Team_State/site/state.json' is not a usable s3://BUCKET/KEY",
            "breaks S3's naming rules",
            "Where: --state-file or deploy.toml's state_file",
            "s3://my-team-state/site/state.json",
        ),
    ),
    Case(
        "state-s3-with-local",
        "flags",
        PROVISION,
        ("--local", "--state-file", STATE_URL),
        ("--local keeps its state beside its emulator", "an s3:// state does not apply", "Leave out --state-file"),
    ),
    Case(
        "import-state-without-s3",
        "flags",
        PROVISION,
        provision_args("--import-state", "state.json"),
        ("--import-state moves a local state into S3", "needs an s3:// --state-file", "Pass --state-file s3://"),
        state=state_json(),
    ),
    Case(
        "lock-timeout-negative",
        "flags",
        PROVISION,
        provision_args("--state-file", STATE_URL, "--lock-timeout=-1"),
        ("--lock-timeout -1 is negative", "Where: command line", "Pass 0 or more seconds"),
    ),
    Case(
        "parallelism-zero",
        "flags",
        PROVISION,
        provision_args("--parallelism", "0"),
        ("Invalid setting 'parallelism': 0 is outside 1-16", "Use a value in that range"),
    ),
    Case(
        "teardown-parallelism-too-high",
        "flags",
        TEARDOWN,
        ("--yes", "--parallelism", "17"),
        ("--parallelism 17 is outside 1-16", "Where: command line", "Use a value in that range"),
        state=state_json(),
    ),
    Case(
        "domain-with-local",
        "flags",
        PROVISION,
        ("--local", "--domain", "www.example.com"),
        ("--local serves the site at http://127.0.0.1", "applies on AWS only", "Leave out --domain"),
    ),
    # ----------------------------------------------------------------- deploy.toml
    Case(
        "toml-malformed",
        "deploy.toml",
        PROVISION,
        provision_args(),
        ("not valid TOML", "line 1", "Where: {tmp}/deploy.toml", "Fix the syntax"),
        toml="cpu = = 256\n",
    ),
    Case(
        "toml-not-utf8",
        "deploy.toml",
        PROVISION,
        provision_args(),
        ("not UTF-8", "Where: {tmp}/deploy.toml", "Save it as UTF-8"),
        toml=b"cpu = 256\n# caf\xe9\n",
    ),
    Case(
        "toml-unknown-key",
        "deploy.toml",
        PROVISION,
        provision_args(),
        ("Unknown setting(s): colour", "Where: {tmp}/deploy.toml", "Use only the settings listed"),
        toml='colour = "red"\n',
    ),
    Case(
        "toml-wrong-type",
        "deploy.toml",
        PROVISION,
        provision_args(),
        ("Setting 'cpu' must be of type int, got '256'", "Where: {tmp}/deploy.toml", "Correct the value"),
        toml='cpu = "256"\n',
    ),
    Case(
        "toml-region-unknown",
        "deploy.toml",
        PROVISION,
        ("--stack", STACK, "--image", IMAGE, "--no-wait"),
        ("Unknown AWS region 'mars-1'", "deploy.toml 'region'", "Use a region where ECS runs"),
        toml='region = "mars-1"\n',
    ),
    Case(
        "toml-cpu-memory",
        "deploy.toml",
        PROVISION,
        provision_args(),
        ("Fargate does not accept cpu 256 with memory 4096", "Where: settings", "Use a supported pair"),
        toml="cpu = 256\nmemory = 4096\n",
    ),
    Case(
        "toml-log-retention",
        "deploy.toml",
        PROVISION,
        provision_args(),
        ("'log_retention_days'", "does not accept 8 days", "Use one of 1, 3, 5, 7, 14"),
        toml="log_retention_days = 8\n",
    ),
    Case(
        "toml-fail-on-scan",
        "deploy.toml",
        PROVISION,
        provision_args(),
        ("'fail_on_scan'", "'severe' is not a scan severity", "INFORMATIONAL, LOW, MEDIUM, HIGH, CRITICAL"),
        toml='fail_on_scan = "severe"\n',
    ),
    Case(
        "toml-cidr-invalid",
        "deploy.toml",
        PROVISION,
        provision_args(),
        ("Setting 'vpc_cidr'", "10.0.0.1/16 has host bits set", "Use an IPv4 CIDR"),
        toml='vpc_cidr = "10.0.0.1/16"\n',
    ),
    Case(
        "toml-subnets-overlap",
        "deploy.toml",
        PROVISION,
        provision_args(),
        ("'subnet_cidrs'", "10.0.0.0/24 and 10.0.0.0/24 overlap", "Pick two disjoint subnets"),
        toml='vpc_cidr = "10.0.0.0/16"\nsubnet_cidrs = ["10.0.0.0/24", "10.0.0.0/24"]\n',
    ),
    Case(
        "toml-policy-arn-invalid",
        "deploy.toml",
        PROVISION,
        provision_args(),
        ("'task_role_policy_arns'", "'AmazonS3ReadOnlyAccess' is not an IAM policy ARN", "Use ARNs like"),
        toml='task_role_policy_arns = ["AmazonS3ReadOnlyAccess"]\n',
    ),
    Case(
        "toml-tag-key-reserved",
        "deploy.toml",
        PROVISION,
        provision_args(),
        ("'tags'", "tag key 'aws:owner' is reserved", "may not start with 'aws:'"),
        toml='tags = { "aws:owner" = "me" }\n',
    ),
    Case(
        # ELBv2, IAM, ECS and CloudWatch Logs accept only [\p{L}\p{Z}\p{N}_.:/=+\-@] in tags: without the
        # check, the log group step (the first strict service) would refuse it (tests/test_aws_rules.py).
        "toml-tag-value-characters",
        "deploy.toml",
        PROVISION,
        provision_args(),
        ("'tags'", "the value of tag 'team' ('a,b#1')", "',' '#'", "Use only letters, digits and spaces"),
        toml='tags = { team = "a,b#1" }\n',
    ),
    Case(
        # At most 50 tags per resource, and the deployer adds up to 4 of its own: 47 user tags make 51.
        "toml-too-many-tags",
        "deploy.toml",
        PROVISION,
        provision_args(),
        ("'tags'", "47 tags are given", "would get 51", "at most 50 per resource", "Give at most 46 tags"),
        toml="[tags]\n" + "".join(f'k{n} = "v"\n' for n in range(47)),
    ),
    Case(
        "toml-build-context-without-dockerfile",
        "deploy.toml",
        PROVISION,
        BUILD,
        ("'build_context'", "there is no Dockerfile in {tmp}/site", "or pass --image URI"),
        toml='build_context = "{tmp}/site"\n',
        setup=site_without_dockerfile,
        env=NO_DOCKER,
    ),
    Case(
        "toml-build-arg-key-invalid",
        "deploy.toml",
        PROVISION,
        BUILD,
        ("'build_args'", "'1BAD' is not a valid build argument name", "plain name"),
        toml='build_args = { "1BAD" = "x" }\n',
        env=NO_DOCKER,
    ),
    Case(
        "toml-build-arg-key-with-space",
        "deploy.toml",
        PROVISION,
        BUILD,
        ("'build_args'", "'APP VERSION' is not a valid build argument name", "plain name"),
        toml='build_args = { "APP VERSION" = "x" }\n',
        env=NO_DOCKER,
    ),
    Case(
        "toml-build-args-with-image",
        "deploy.toml",
        PROVISION,
        provision_args(),
        ("'build_args'", "build arguments (BASE_IMAGE) are given with image", "remove the build arguments"),
        toml='build_args = { BASE_IMAGE = "python:3.12-slim" }\n',
    ),
    Case(
        "toml-state-url-malformed",
        "deploy.toml",
        PROVISION,
        provision_args(),
        ("'s3://team-deploy-state/' is not a usable s3://BUCKET/KEY", "the key", "is missing", "deploy.toml's"),
        toml=f'state_file = "s3://{STATE_BUCKET}/"\n',
    ),
    # ----------------------------------------------------------------- state file
    Case(
        "state-not-json",
        "state file",
        PROVISION,
        provision_args(),
        ("state file is corrupt", "Expecting property name", "left exactly as it is", "Where: state.json"),
        state=b"{not json",
    ),
    Case(
        "state-not-utf8",
        "state file",
        PROVISION,
        provision_args(),
        ("state file is corrupt", "(it is not UTF-8 text)", "left exactly as it is", "Restore it from a backup"),
        state=b"\xff\xfe{garbage",
    ),
    Case(
        "state-wrong-shape",
        "state file",
        PROVISION,
        provision_args(),
        ("not a state file", "a resource entry is malformed", "left exactly as it is"),
        state=state_json(resources={"vpc": "vpc-1"}),
    ),
    Case(
        "state-schema-version-unknown",
        "state file",
        PROVISION,
        provision_args(),
        (
            "schema_version 99 is unknown to this version of the tool",
            f"it reads 1 to {SCHEMA_VERSION}",
            "a newer version of the tool",
            "left exactly as it is",
        ),
        state=state_json(schema_version=99),
    ),
    Case(
        "state-other-stack",
        "state file",
        PROVISION,
        ("--stack", "other", "--image", IMAGE, "--no-wait"),
        ("belongs to stack 'test-site'", "uses stack 'other'", "nothing was changed", "--state-file"),
        state=state_json(),
    ),
    Case(
        "state-other-region",
        "state file",
        PROVISION,
        provision_args("--region", "us-west-2"),
        ("belongs to region 'us-east-1'", "uses region 'us-west-2'", "nothing was changed", "--state-file"),
        state=state_json(),
    ),
    Case(
        "state-other-account",
        "state file",
        PROVISION,
        provision_args(),
        (f"belongs to account '{OTHER_ACCOUNT}'", f"uses account '{ACCOUNT}'", "nothing was changed"),
        state=state_json(account_id=OTHER_ACCOUNT),
    ),
    Case(
        "state-locked-by-live-process",
        "state file",
        PROVISION,
        provision_args(),
        ("in use by provision.py", "pid {pid}", f"started {LOCK_STARTED_AT}", "Where: state.json.lock", "Wait"),
        state=state_json(),
        setup=live_lock,
    ),
    Case(
        "state-path-is-folder",
        "state file",
        PROVISION,
        provision_args(),
        ("state file cannot be read", "Is a directory", "Where: state.json", "--state-file"),
        setup=state_folder,
    ),
    Case(
        "state-s3-not-our-state",
        "state file",
        PROVISION,
        provision_args("--state-file", STATE_URL),
        (f"The object {STATE_URL} is not a state of this tool", "left exactly as it is", "a key of its own"),
        s3=not_a_state,
    ),
    Case(
        "teardown-s3-not-our-state",
        "state file",
        TEARDOWN,
        ("--state-file", STATE_URL, "--yes"),
        (f"The object {STATE_URL} is not a state of this tool", "left exactly as it is"),
        s3=not_a_state,
    ),
    Case(
        "state-s3-bucket-other-region",
        "state file",
        PROVISION,
        provision_args("--state-file", STATE_URL),
        (
            f"The bucket {STATE_BUCKET} is in {OTHER_REGION}, but this stack runs in {REGION}",
            f"Where: {STATE_URL}",
            f"if {OTHER_REGION} is the stack's region, run in it (--region",
        ),
        s3=bucket_in_other_region,
    ),
    # ----------------------------------------------------------------- environment
    Case(
        "no-credentials",
        "environment",
        PROVISION,
        provision_args(),
        ("No AWS credentials were found", "AWS_PROFILE", "Configure credentials"),
        drop=("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
        env={"AWS_EC2_METADATA_DISABLED": "true"},
    ),
    Case(
        "access-key-without-secret",
        "environment",
        PROVISION,
        provision_args(),
        ("credentials are incomplete", "AWS_SECRET_ACCESS_KEY", "Set both the access key id and the secret"),
        drop=("AWS_SECRET_ACCESS_KEY",),
    ),
    Case(
        "profile-missing",
        "environment",
        PROVISION,
        provision_args(),
        ("profile 'no-such-profile' does not exist", "Where: AWS_PROFILE", "unset it"),
        env={"AWS_PROFILE": "no-such-profile"},
    ),
    Case(
        "no-region",
        "environment",
        PROVISION,
        provision_args(),
        ("No AWS region is configured", "AWS_DEFAULT_REGION", "Pass --region"),
        drop=("AWS_DEFAULT_REGION", "AWS_REGION"),
    ),
    Case(
        "no-docker-engine",
        "environment",
        PROVISION,
        BUILD,
        ("No Docker engine is reachable", "DOCKER_HOST=unix:///nonexistent.sock", "--image", "Nothing was created"),
        env=NO_DOCKER,
    ),
    Case(
        "no-docker-engine-with-state",
        "environment",
        PROVISION,
        BUILD,
        ("No Docker engine is reachable", "DOCKER_HOST", "--image", "Nothing was created"),
        state=state_json(),
        env=NO_DOCKER,
    ),
    Case(
        # botocore retries a refused connection (8 attempts by default, about 40 s); AWS_MAX_ATTEMPTS
        # shortens that, as it does for any boto3 program.
        "aws-endpoint-unreachable",
        "environment",
        PROVISION,
        provision_args(),
        ("Cannot reach AWS", "http://127.0.0.1:9", "Where: sts:GetCallerIdentity", "AWS_ENDPOINT_URL"),
        env={"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_MAX_ATTEMPTS": "1"},
    ),
    # ----------------------------------------------------------------- AWS answers
    Case(
        "policy-does-not-exist",
        "AWS answers",
        PROVISION,
        provision_args(),
        (
            "AWS refused AttachRolePolicy (NoSuchEntity)",
            "arn:aws:iam::aws:policy/DoesNotExist does not exist",
            "Where: step 'task-role', IAM role test-site-us-east-1-task",
            "run the same command again",
        ),
        toml='task_role_policy_arns = ["arn:aws:iam::aws:policy/DoesNotExist"]\n',
        fails_at="task-role",
        fails_after_creating=True,  # the role exists; attaching the policy failed
    ),
    Case(
        # Checked against DescribeAvailabilityZones before the first write (deployer/zones.py).
        "availability-zone-does-not-exist",
        "AWS answers",
        PROVISION,
        provision_args(),
        (
            "Invalid setting 'availability_zones': 'us-east-1x' is not an availability zone of us-east-1",
            "before anything was created",
            "by name or zone ID",
        ),
        toml='availability_zones = ["us-east-1a", "us-east-1x"]\n',
    ),
    Case(
        # The hosted zone lookup runs before the first write (deployer/steps/dns.py, AliasRecordStep.check).
        "domain-outside-every-zone",
        "AWS answers",
        PROVISION,
        provision_args("--domain", "www.example.com"),
        ("No public Route 53 hosted zone in this account holds www.example.com", "before any change"),
    ),
    Case(
        "certificate-arn-does-not-exist",
        "AWS answers",
        PROVISION,
        provision_args(
            "--domain", "www.example.com", "--certificate-arn", f"arn:aws:acm:us-east-1:{ACCOUNT}:certificate/abc"
        ),
        (
            f"The ACM certificate arn:aws:acm:us-east-1:{ACCOUNT}:certificate/abc does not exist",
            "Where: certificate_arn",
        ),
    ),
]


# --------------------------------------------------------------------------- the test


def fill(text: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        text = text.replace("{" + name + "}", value)
    return text


def files_under(folder: Path) -> dict[str, bytes | None]:
    """Every path below `folder` with its bytes (None for a folder)."""
    return {
        str(path.relative_to(folder)): (None if path.is_dir() else path.read_bytes())
        for path in sorted(folder.rglob("*"))
    }


def s3_objects(s3: S3Client) -> dict[str, list[tuple[str, str, str]]]:
    """Every bucket with every version of every object (key, version, ETag); delete markers too."""
    found: dict[str, list[tuple[str, str, str]]] = {}
    for bucket in s3.list_buckets().get("Buckets", []):
        answer = s3.list_object_versions(Bucket=bucket["Name"])
        entries = [*answer.get("Versions", []), *answer.get("DeleteMarkers", [])]
        found[bucket["Name"]] = sorted(
            (entry["Key"], entry["VersionId"], str(entry.get("ETag", "delete marker"))) for entry in entries
        )
    return found


def assert_usage_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """argparse's refusal: its usage and one "prog: error: ..." line, exit 2, no traceback."""
    context = f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == 2, context
    assert result.stderr.startswith("usage: "), context
    assert result.stderr.strip().splitlines()[-1].split(": error: ")[1:], context
    for fragment in fragments:
        assert fragment.lower() in result.stderr.lower(), f"{fragment!r} missing\n{context}"
    assert result.stdout == "", context


@pytest.mark.parametrize("case", [pytest.param(case, id=case.id, marks=case.marks) for case in CATALOGUE])
def test_bad_input(server: MotoServer, tmp_path: Path, case: Case) -> None:
    state = tmp_path / "state.json"
    config = tmp_path / "deploy.toml"
    with ExitStack() as cleanup:
        values = {"tmp": str(tmp_path)}
        if case.setup is not None:
            values.update(case.setup(tmp_path, cleanup))
        config.write_bytes(case.toml if isinstance(case.toml, bytes) else fill(case.toml, values).encode())
        if case.state is not None:
            state.write_bytes(case.state if isinstance(case.state, bytes) else case.state.encode())
        s3 = boto3.client("s3", region_name=REGION, endpoint_url=server.url)
        if case.s3 is not None:
            case.s3(s3)
        before, files_before, s3_before = Snapshot.take(state), files_under(tmp_path), s3_objects(s3)
        args = tuple(fill(arg, values) for arg in case.args)
        env = {name: fill(value, values) for name, value in case.env.items()}
        result = run_bare(tmp_path, server, case.script, *args, drop=case.drop, env=env)
        after = files_under(tmp_path)  # before the cleanup: the lock holder is still alive

    fragments = tuple(fill(fragment, values) for fragment in case.fragments)
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
    assert result.returncode == case.exit_code, result.stderr
    if case.usage_error:
        assert_usage_error(result, *fragments)
    else:
        assert_refused(result, *fragments)

    if case.fails_at is None:
        before.assert_unchanged()
        assert after == files_before, "a file the row set up changed, or one appeared"
        assert s3_objects(s3) == s3_before, "a bucket or an object changed, or one appeared"
        assert aws_resources(server) == {}
    else:
        assert_nothing_lost(server, tmp_path, case)


def needing(step: str) -> set[str]:
    """Every step of the whole stack that needs `step`, directly or through others."""
    users = stack_graph().dependents()
    found: set[str] = set()
    todo = [step]
    while todo:
        for user in users[todo.pop()]:
            if user not in found:
                found.add(user)
                todo.append(user)
    return found


def assert_nothing_lost(server: MotoServer, tmp_path: Path, case: Case) -> None:
    """After AWS refused one step: the step's own resource is recorded when AWS made it, no step that needs it
    (however indirectly) ran, what ran is recorded in the stack's order and exists; fixed, the same command
    finishes. Steps that do not need the refused one may have run beside it (the graph runner)."""
    assert case.fails_at is not None
    state = tmp_path / "state.json"
    recorded = recorded_steps(state)
    assert (case.fails_at in recorded) == case.fails_after_creating
    assert recorded == [step for step in STEP_ORDER if step in recorded]
    assert not set(recorded) & needing(case.fails_at), "a step that needs the refused one ran"
    ids = {entry["step"]: entry["ids"] for entry in json.loads(state.read_text())["resources"]}
    resources = aws_resources(server)  # what exists is what is recorded (how far the others got varies)
    assert resources.get("vpcs", []) == [ids[step]["id"] for step in ("vpc",) if step in ids]
    assert resources.get("subnets", []) == sorted(ids[step]["id"] for step in ("subnet-1", "subnet-2") if step in ids)
    roles = ("flow-logs-role", "execution-role", "task-role")
    assert resources.get("roles", []) == sorted(ids[s]["name"] for s in roles if s in ids)
    assert [name for name in os.listdir(tmp_path) if name.endswith(".tmp")] == []

    (tmp_path / "deploy.toml").write_text(case.fixed_toml)
    again = run_bare(tmp_path, server, case.script, *case.args)
    assert again.returncode == 0, again.stderr
    assert "Traceback" not in again.stdout + again.stderr
    after = {entry["step"]: entry["ids"] for entry in json.loads(state.read_text())["resources"]}
    for step, step_ids in ids.items():
        key = next(k for k in ("id", "name", "uri") if k in step_ids)
        assert after[step][key] == step_ids[key], f"{step} was not reused"
    assert aws_resources(server)["vpcs"] == [ids["vpc"]["id"]]


def test_the_catalogue_covers_every_category() -> None:
    """Every category has rows, every row a known category, and no two rows share an id."""
    assert sorted({case.category for case in CATALOGUE}) == sorted(CATEGORIES)
    assert len({case.id for case in CATALOGUE}) == len(CATALOGUE)
