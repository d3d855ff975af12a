"""`--print-policy` with `--state-file s3://BUCKET/KEY`: the S3 rights the state needs, all of them and no more.

Every S3 call a state in S3 makes through deployer/s3state.py's S3StateFile is recorded with the bucket and key
it names, over a whole lifecycle: a provision that creates and configures the bucket, takes the lock, loads and
saves; a no-op re-run; a teardown (its saves, the state deleted); a provision into the bucket teardown left (the
bucket configured again after the state's first write); a local state imported into a bucket of the user's (its
versioning read); a lock removed with --unlock. Each call must be allowed by the policy printed for those
settings, on exactly the bucket's ARN (bucket actions) or the state's and its lock's (object actions), and each
S3 action the policy lists must be needed by one of those calls. Without an S3 state the policy has no S3 action.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from deployer import cli, policy, runner
from deployer.ledger import Ledger
from deployer.s3state import S3StateFile, parse_s3_url
from deployer.settings import Settings
from deployer.state import State, StateFile
from deployer.steps.base import StepContext
from tests.conftest import ACCOUNT, REGION, CallLog, recorded_clients
from tests.rollouts import Rollout
from tests.test_policy import allowed

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

BUCKET = "team-state-bucket"
KEY = "sites/test-site/state.json"
URL = f"s3://{BUCKET}/{KEY}"
BUCKET_ARN = f"arn:aws:s3:::{BUCKET}"
OBJECT_ARNS = [f"{BUCKET_ARN}/{KEY}", f"{BUCKET_ARN}/{KEY}.lock"]


@dataclass
class S3Calls:
    """Every S3 call the recorded clients send, with the bucket and key it names."""

    calls: list[tuple[str, str, str | None]] = field(default_factory=list)

    def record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append((model.name, params["Bucket"], params.get("Key")))


@pytest.fixture
def s3_calls(ctx: StepContext) -> S3Calls:
    recorder = S3Calls()
    ctx.clients.s3.meta.events.register("before-parameter-build.s3", recorder.record)
    return recorder


def s3_settings(settings: Settings) -> Settings:
    return replace(settings, state_file=URL)


def store_of(ctx: StepContext, *, create_bucket: bool = True) -> S3StateFile:
    """The store deployer/cli.py's open_store makes for an s3:// --state-file, on the test's clients."""
    return S3StateFile(
        parse_s3_url(URL, where="test"), ctx.clients.s3, ACCOUNT, REGION, ctx.say, create_bucket=create_bucket
    )


def provision(ctx: StepContext) -> None:
    """cli._provision: the lock, the state loaded, the steps saving into S3."""
    store = store_of(ctx)
    with store.locked("provision.py", ctx.say):
        state = store.load() or State(stack=ctx.settings.stack, region=REGION, account_id=ACCOUNT)
        runner.provision(replace(ctx, ledger=Ledger(state, store.save)))


def teardown(ctx: StepContext) -> None:
    """cli._teardown_recorded: the lock, the state loaded, the steps' forgets saved, the state deleted."""
    store = store_of(ctx)
    with store.locked("teardown.py", ctx.say):
        state = store.load()
        assert state is not None and state.resources
        runner.teardown(replace(ctx, ledger=Ledger(state, store.save)))
        store.delete()


def hand_s3() -> S3Client:
    """A client of the user's own, whose calls are not the tool's (not recorded)."""
    return recorded_clients(CallLog()).s3


def empty_and_delete_bucket() -> None:
    """What a user does to remove a versioned bucket: every version and delete marker, then the bucket.

    moto 5.2.1 keeps a deleted bucket's tags for the next bucket of the same name; AWS does not (the tags are
    the bucket's): they are deleted first, so the bucket made again is untagged as on AWS."""
    s3 = hand_s3()
    s3.delete_bucket_tagging(Bucket=BUCKET)
    listed = s3.list_object_versions(Bucket=BUCKET)
    for entry in [*listed.get("Versions", []), *listed.get("DeleteMarkers", [])]:
        s3.delete_object(Bucket=BUCKET, Key=entry["Key"], VersionId=entry["VersionId"])
    s3.delete_bucket(Bucket=BUCKET)


def import_into_users_bucket(ctx: StepContext, tmp_path: Path) -> None:
    """cli._import_state into a bucket the user made (no tag of ours): the local state becomes the first version."""
    hand_s3().create_bucket(Bucket=BUCKET)  # by hand: not recorded
    local = StateFile(tmp_path / "imported.json")
    local.save(State(stack=ctx.settings.stack, region=REGION, account_id=ACCOUNT))
    store = store_of(ctx)
    loaded = local.load()
    assert loaded is not None
    with store.locked("provision.py", ctx.say):
        store.import_state(loaded)


def unlock_a_left_lock(ctx: StepContext) -> None:
    """teardown.py --unlock: a crashed run's lock (written by hand here) shown and removed."""
    lock = json.dumps({"command": "provision.py", "user": "someone", "host": "elsewhere", "pid": 1}).encode()
    hand_s3().put_object(Bucket=BUCKET, Key=f"{KEY}.lock", Body=lock)
    message = store_of(ctx, create_bucket=False).unlock(lambda _question: True)
    assert message.startswith("removed the lock held by provision.py by someone")


def arn_of(bucket: str, key: str | None) -> str:
    return f"arn:aws:s3:::{bucket}" + (f"/{key}" if key is not None else "")


def check_s3_calls(made: list[tuple[str, str, str | None]], settings: Settings) -> set[str]:
    """Each S3 call allowed, by a statement whose resources are exactly the state's, on the ARN it acts on;
    returns the actions they needed."""
    statements = policy.statements(settings, "aws", REGION, ACCOUNT)
    needed: set[str] = set()
    for operation, bucket, key in made:
        grants = policy.grants("s3", operation, settings)
        assert grants, f"the policy table does not know s3 {operation}"
        for action, group in grants:
            (statement,) = [s for s in statements if s["Sid"] == group]
            assert action in statement["Action"], f"{operation} needs {action}, not in {group}"
            wanted = [BUCKET_ARN] if group == "StateBucket" else OBJECT_ARNS
            assert statement["Resource"] == wanted, statement
            assert arn_of(bucket, key) in statement["Resource"], f"{operation} on {arn_of(bucket, key)}"
            needed.add(action)
    return needed


@pytest.fixture
def lifecycle(ctx: StepContext, s3_calls: S3Calls, serving: Rollout, tmp_path: Path) -> Iterator[S3Calls]:
    """Every S3 call of the lifecycle the module docstring lists; the stack's own calls go to `calls`."""
    s3ctx = replace(ctx, settings=s3_settings(ctx.settings))
    provision(s3ctx)
    provision(s3ctx)  # no-op re-run
    teardown(s3ctx)
    provision(s3ctx)  # into the bucket teardown left: configured again after the first write
    teardown(s3ctx)
    empty_and_delete_bucket()  # by hand: the import goes into a bucket of the user's
    import_into_users_bucket(s3ctx, tmp_path)
    unlock_a_left_lock(s3ctx)
    yield s3_calls


def test_every_s3_call_of_the_lifecycle_is_allowed_on_exactly_the_states_arns(
    ctx: StepContext, lifecycle: S3Calls
) -> None:
    settings = s3_settings(ctx.settings)
    operations = {operation for operation, _, _ in lifecycle.calls}
    assert operations == {
        *("HeadBucket", "CreateBucket", "PutPublicAccessBlock", "PutBucketEncryption", "PutBucketVersioning"),
        *("PutBucketPolicy", "GetBucketTagging", "GetBucketVersioning", "GetObject", "PutObject", "DeleteObject"),
    }
    keys = {key for _, _, key in lifecycle.calls}
    assert keys == {None, KEY, f"{KEY}.lock"}
    needed = check_s3_calls(lifecycle.calls, settings)

    granted = {a for a in allowed(policy.document(settings, "aws", REGION, ACCOUNT)) if a.startswith("s3:")}
    assert granted == needed, f"listed but not needed: {sorted(granted - needed)}; missing: {sorted(needed - granted)}"


def test_with_an_s3_state_every_call_of_the_stack_is_allowed_too(
    ctx: StepContext, calls: CallLog, lifecycle: S3Calls
) -> None:
    settings = s3_settings(ctx.settings)
    granted = allowed(policy.document(settings, "aws", REGION, ACCOUNT))
    for service, operation in sorted(set(calls.calls) - policy.NO_PERMISSION):
        needs = {action for action, _ in policy.grants(service, operation, settings)}
        assert needs and needs <= granted, f"{service} {operation} needs {needs - granted}"


@pytest.mark.parametrize("state_file", [None, "state.json", "/somewhere/team/state.json"])
def test_without_an_s3_state_the_policy_has_no_s3_action(settings: Settings, state_file: str | None) -> None:
    document = policy.document(replace(settings, state_file=state_file), "aws", REGION, ACCOUNT)
    assert not [action for action in allowed(document) if action.startswith("s3:")]
    assert not {statement["Sid"] for statement in document["Statement"]} & {"StateBucket", "StateObjects"}


def test_print_policy_with_an_s3_state_prints_the_state_statements(
    aws: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "deploy.toml"
    config.write_text("")
    code = cli.provision_main(["--config", str(config), "--print-policy", "--state-file", URL])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    by_sid = {statement["Sid"]: statement for document in printed for statement in document["Statement"]}
    assert by_sid["StateBucket"]["Resource"] == [BUCKET_ARN]
    assert by_sid["StateObjects"]["Resource"] == OBJECT_ARNS
    assert by_sid["StateObjects"]["Action"] == ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"]
    assert "s3:CreateBucket" in by_sid["StateBucket"]["Action"]
    head = hand_s3().list_buckets()["Buckets"]
    assert head == [], "printing the policy creates no bucket"


def test_print_policy_refuses_a_bucket_name_s3_would_refuse(
    aws: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "deploy.toml"
    config.write_text("")
    code = cli.provision_main(["--config", str(config), "--print-policy", "--state-file", "s3://b/k"])
    assert code == 2
    assert "breaks S3's naming rules" in capsys.readouterr().err
