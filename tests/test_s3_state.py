"""The state in S3 (deployer/s3state.py), unit by unit against in-process moto.

Where moto answers unlike S3, a botocore hook on the test's client makes it answer like S3, and the test's
docstring says so: moto ignores ExpectedBucketOwner, and never loses an answer (botocore's retry of a write
that went through is emulated by asking botocore to retry once, so the retry really reaches moto).
In-process moto sends no Date header, so lease times are compared with this machine's clock
(deployer/s3state.py's `_server_now` falls back to it).
"""

from __future__ import annotations

import functools
import getpass
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any, Self

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders

import deployer.state
from deployer.clients import AwsClients
from deployer.errors import EXIT_USER_ERROR, SettingsError, StateFileError
from deployer.s3state import BUCKET_TAG, S3Location, S3StateFile, parse_s3_url
from deployer.state import State, state_bytes
from tests.conftest import ACCOUNT, REGION, TEST_CLIENT_CONFIG, CallLog
from tests.faults import inject_errors

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

BUCKET = "team-state-bucket"
KEY = "site/state.json"
LOCK_KEY = KEY + ".lock"
LOCATION = S3Location(BUCKET, KEY)
OTHER_ACCOUNT = "999999999999"


class FrozenDatetime(datetime):
    """deployer/state.py's clock, held still: `updated_at` in a state's bytes is the same at every call."""

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> Self:
        return cls(2026, 1, 2, 3, 4, 5, tzinfo=tz)


@pytest.fixture(autouse=True)
def frozen_state_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """`state_bytes(state)` comparable with what a save wrote; the lease as the tests set it, not the shell's."""
    monkeypatch.setattr(deployer.state, "datetime", FrozenDatetime)
    monkeypatch.delenv("DEPLOYER_LOCK_LEASE_SECONDS", raising=False)


@pytest.fixture
def s3(aws: AwsClients) -> S3Client:
    """The tool's S3 client on in-process moto (tests/s3_emulation.py installed); its calls go to `calls`."""
    return aws.s3


@functools.cache
def _second_machine() -> boto3.Session:
    """One session for the second machine's clients: its loader keeps the parsed S3 model."""
    return boto3.Session(region_name=REGION)


def another_s3(region: str = REGION) -> S3Client:
    """A second machine's client (the same moto): its calls pass none of the hooks set on the test's client."""
    return _second_machine().client("s3", region_name=region, config=TEST_CLIENT_CONFIG)


@pytest.fixture
def said() -> list[str]:
    return []


@pytest.fixture
def bucket(s3: S3Client) -> str:
    """A bucket of the user's (no tag of ours), versioned: the store neither warns about it nor configures it."""
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return BUCKET


def nowhere(_message: str) -> None:
    """A `say` whose messages the test does not look at."""


def make_store(s3: S3Client, said: list[str], **options: Any) -> S3StateFile:
    return S3StateFile(LOCATION, s3, ACCOUNT, REGION, said.append, **options)


def sample_state(vpc: str = "vpc-1") -> State:
    state = State(stack="test-site", region=REGION, account_id=ACCOUNT)
    state.record("vpc", {"id": vpc})
    return state


def body_of(s3: S3Client, key: str = KEY) -> bytes:
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def exists(s3: S3Client, key: str) -> bool:
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=key).get("Contents", [])
    return any(item["Key"] == key for item in listed)


def lock_record(s3: S3Client) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(body_of(s3, LOCK_KEY))
    return record


def ghost_record(lease_seconds: float) -> dict[str, Any]:
    """The lock a crashed run on another machine left."""
    return {
        "user": "ghost",
        "host": "gone-host",
        "pid": 4242,
        "command": "provision.py",
        "started_at": "2026-01-01T00:00:00+00:00",
        "lease_seconds": lease_seconds,
    }


def put_lock(s3: S3Client, record: dict[str, Any]) -> None:
    s3.put_object(Bucket=BUCKET, Key=LOCK_KEY, Body=json.dumps(record).encode())


def sleep_past_lease(s3: S3Client, lease_seconds: float) -> None:
    """Until the lock's lease has run out for sure: S3's LastModified is whole seconds (truncated), so the
    lock was written before LastModified + 1 s."""
    modified = s3.head_object(Bucket=BUCKET, Key=LOCK_KEY)["LastModified"]
    ends = modified.timestamp() + 1 + lease_seconds + 0.05
    time.sleep(max(0.0, ends - time.time()))


def sent(client: S3Client, operation: str) -> list[dict[str, Any]]:
    """The parameters of every `operation` request the client sends from now on."""
    requests: list[dict[str, Any]] = []

    def keep(params: dict[str, Any], **_: Any) -> None:
        requests.append(dict(params))

    client.meta.events.register(f"before-parameter-build.s3.{operation}", keep)
    return requests


def writes(calls: CallLog) -> list[str]:
    """The operations sent that may change something (HeadBucket is a read, unlike CallLog.changing's view)."""
    return [operation for _service, operation in calls.calls if not operation.startswith(("Get", "Head", "List"))]


def on(client: S3Client, event: str, handler: Callable[..., object]) -> None:
    """Register a botocore event handler whose answer matters (`needs-retry`'s delay, `before-call`'s
    response), which the client's type stubs declare as returning None."""
    events: Any = client.meta.events
    events.register(event, handler)


class Answer:
    """`confirm` for unlock(): one answer to every question, keeping the questions asked."""

    def __init__(self, yes: bool) -> None:
        self.yes = yes
        self.asked: list[str] = []

    def __call__(self, question: str) -> bool:
        self.asked.append(question)
        return self.yes


def lease_renewer() -> threading.Thread:
    (thread,) = [thread for thread in threading.enumerate() if thread.name == "state-lock-lease"]
    return thread


# ------------------------------------------------------------------ 1. the URL


@pytest.mark.parametrize(
    ("url", "bucket", "key"),
    [
        ("s3://my-team-state/site/state.json", "my-team-state", "site/state.json"),
        ("s3://abc/state.json", "abc", "state.json"),
        ("s3://a.b-c.1/deep/er/key", "a.b-c.1", "deep/er/key"),
        (f"s3://{'a' * 63}/k", "a" * 63, "k"),
        ("s3://bucket/lock.json.locked", "bucket", "lock.json.locked"),
    ],
)
def test_a_good_url_gives_the_bucket_the_key_and_the_lock_beside_it(url: str, bucket: str, key: str) -> None:
    location = parse_s3_url(url, where="--state-file")
    assert (location.bucket, location.key) == (bucket, key)
    assert location.url == url
    assert location.lock_key == key + ".lock"


@pytest.mark.parametrize(
    "url",
    [
        "s3://bucket",  # no key
        "s3://bucket/",  # empty key
        "s3://bucket/site/",  # a "folder"
        "s3://bucket/state.json.lock",  # another state's lock
        f"s3://bucket/{'k' * 1020}",  # no room left for the lock's key
        "s3://My-Bucket/k",  # uppercase
        "s3://ab/k",  # too short
        f"s3://{'a' * 64}/k",  # too long
        "s3://a..b/k",
        "s3://192.168.1.1/k",  # IP-like
        "s3://-bucket/k",
        "s3://bucket-/k",
        "s3://under_score/k",
        "s3://xn--bucket/k",
        "s3://sthree-bucket/k",
        "s3://amzn-s3-demo-bucket/k",
        "s3://bucket-s3alias/k",
        "s3://bucket--ol-s3/k",
        "s3://bucket.mrap/k",
        "s3://bucket--x-s3/k",
        "s3://bucket--table-s3/k",
        "s3:///k",  # no bucket
        "s3://",
    ],
)
def test_a_malformed_url_is_a_settings_error(url: str) -> None:
    with pytest.raises(SettingsError) as raised:
        parse_s3_url(url, where="deploy.toml: state_file")
    assert raised.value.exit_code == EXIT_USER_ERROR
    assert raised.value.where == "deploy.toml: state_file"
    assert url in raised.value.what


# ------------------------------------------------------------------ 2. compare-and-swap saves


def test_the_first_save_creates_and_later_saves_replace_the_version_read(
    s3: S3Client, bucket: str, said: list[str]
) -> None:
    puts = sent(s3, "PutObject")
    store = make_store(s3, said)
    assert store.load() is None
    state = sample_state()
    store.save(state)
    first_etag = s3.head_object(Bucket=BUCKET, Key=KEY)["ETag"]
    state.record("subnet", {"id": "subnet-1"})
    store.save(state)

    assert [(put.get("IfNoneMatch"), put.get("IfMatch")) for put in puts] == [("*", None), (None, first_etag)]
    assert body_of(s3) == state_bytes(state)
    assert make_store(s3, []).load() == state
    assert said == []  # a versioned bucket: no warning


def test_a_rerun_saves_over_the_version_it_loaded(s3: S3Client, bucket: str, said: list[str]) -> None:
    make_store(s3, said).save(sample_state())
    loaded_etag = s3.head_object(Bucket=BUCKET, Key=KEY)["ETag"]
    puts = sent(s3, "PutObject")
    rerun = make_store(s3, said)
    state = rerun.load()
    assert state == sample_state()
    state.record("subnet", {"id": "subnet-1"})
    rerun.save(state)
    assert [put.get("IfMatch") for put in puts] == [loaded_etag]
    assert body_of(s3) == state_bytes(state)


# ------------------------------------------------------------------ 3. lost updates


def test_a_write_by_someone_else_after_the_load_is_not_overwritten(s3: S3Client, bucket: str) -> None:
    make_store(s3, []).save(sample_state())
    mine = make_store(s3, [])
    state = mine.load()
    assert state is not None
    theirs = make_store(another_s3(), [])
    theirs.load()
    theirs.save(sample_state("vpc-theirs"))
    their_bytes = body_of(s3)

    state.record("subnet", {"id": "subnet-1"})
    with pytest.raises(StateFileError) as raised:
        mine.save(state)
    assert raised.value.exit_code == EXIT_USER_ERROR
    assert "wrote a newer version" in raised.value.what
    assert body_of(s3) == their_bytes


def test_a_plain_put_before_the_first_save_is_not_overwritten(s3: S3Client, bucket: str) -> None:
    mine = make_store(s3, [])
    assert mine.load() is None
    another_s3().put_object(Bucket=BUCKET, Key=KEY, Body=state_bytes(sample_state("vpc-theirs")))
    with pytest.raises(StateFileError):
        mine.save(sample_state())
    assert body_of(s3) == state_bytes(sample_state("vpc-theirs"))


def test_a_state_deleted_by_someone_else_is_not_written_again(s3: S3Client, bucket: str) -> None:
    make_store(s3, []).save(sample_state())
    mine = make_store(s3, [])
    state = mine.load()
    assert state is not None
    another_s3().delete_object(Bucket=BUCKET, Key=KEY)
    with pytest.raises(StateFileError) as raised:
        mine.save(state)
    assert "deleted it" in raised.value.what
    assert not exists(s3, KEY)


# ------------------------------------------------------------------ 4. our own write answered late


def retry_a_put_that_went_through(client: S3Client, key: str) -> list[int]:
    """botocore's retry of a PutObject whose answer was lost (a timeout, a reset connection) after S3 applied it.

    moto never loses an answer; this handler of botocore's `needs-retry` event asks botocore to send the
    same request again once the first has gone through, so the retry really reaches moto, whose
    conditional write then answers 412 PreconditionFailed - what S3 answers a retried conditional write
    ("Conditional writes", S3 User Guide). Returns the retried requests' attempt numbers.
    """
    retried: list[int] = []

    def retry(
        response: tuple[AWSResponse, dict[str, Any]] | None, attempts: int, request_dict: dict[str, Any], **_: Any
    ) -> int | None:
        went_through = response is not None and response[0].status_code == 200
        if retried or not went_through or not request_dict["url_path"].endswith("/" + key):
            return None
        retried.append(attempts)
        return 0  # seconds to wait before sending it again

    on(client, "needs-retry.s3.PutObject", retry)
    return retried


@pytest.mark.parametrize("saves_before", [0, 1], ids=["first save", "later save"])
def test_our_own_write_answered_late_is_recognised_and_its_etag_kept(
    s3: S3Client, bucket: str, saves_before: int
) -> None:
    store = make_store(s3, [])
    store.load()
    state = sample_state()
    for _ in range(saves_before):
        store.save(state)
    retried = retry_a_put_that_went_through(s3, KEY)
    state.record("subnet", {"id": "subnet-1"})
    store.save(state)
    assert retried == [1]
    assert body_of(s3) == state_bytes(state)

    state.record("route", {"id": "rtb-1"})
    store.save(state)  # the ETag of the late answer's write was adopted
    assert body_of(s3) == state_bytes(state)


# ------------------------------------------------------------------ 5. the lock


def test_a_held_lock_names_its_holder_to_a_second_run(s3: S3Client, bucket: str) -> None:
    holder = make_store(s3, [])
    with holder.locked("provision.py --image web:1", nowhere):
        record = lock_record(s3)
        with (
            pytest.raises(StateFileError) as raised,
            make_store(another_s3(), [], lock_timeout=0).locked("teardown.py", nowhere),
        ):
            pytest.fail("two runs held the lock")
        assert lock_record(s3) == record
    message = raised.value.message
    assert raised.value.exit_code == EXIT_USER_ERROR
    for part in (getpass.getuser(), socket.gethostname(), f"pid {os.getpid()}", "provision.py --image web:1"):
        assert part in message
    assert record["user"] == getpass.getuser()
    assert record["host"] == socket.gethostname()
    assert record["pid"] == os.getpid()
    assert record["command"] == "provision.py --image web:1"
    started = datetime.fromisoformat(record["started_at"])
    assert abs(datetime.now(UTC) - started) < timedelta(seconds=30)
    assert not exists(s3, LOCK_KEY), "released when the holder's run ended"


def test_a_second_run_waits_for_the_lock(s3: S3Client, bucket: str) -> None:
    first = ExitStack()
    first.enter_context(make_store(s3, []).locked("provision.py", nowhere))
    slept: list[float] = []

    def first_run_ends(seconds: float) -> None:
        slept.append(seconds)
        first.close()

    waiting: list[str] = []
    second = make_store(another_s3(), [], lock_timeout=60, sleep=first_run_ends)
    with second.locked("teardown.py", waiting.append):
        assert lock_record(s3)["command"] == "teardown.py"
    assert len(slept) == 1 and 0 < slept[0] <= 60
    assert len(waiting) == 1 and "Waiting up to 60 s" in waiting[0] and "provision.py" in waiting[0]
    assert not exists(s3, LOCK_KEY)


# ------------------------------------------------------------------ 6. expired leases


def test_an_expired_lease_is_taken_over_with_a_message(s3: S3Client, bucket: str) -> None:
    put_lock(s3, ghost_record(lease_seconds=1))
    sleep_past_lease(s3, 1)
    told: list[str] = []
    with make_store(s3, [], lock_timeout=0).locked("provision.py --again", told.append):
        assert lock_record(s3)["command"] == "provision.py --again"
    assert len(told) == 1
    assert told[0].startswith("Taking over") and "ghost" in told[0] and "gone-host" in told[0]
    assert "pid 4242" in told[0]


def test_of_two_runs_taking_over_one_expired_lease_only_one_gets_it(s3: S3Client, bucket: str) -> None:
    """The other run's takeover lands between this run's read of the expired lock and its conditional write."""
    put_lock(s3, ghost_record(lease_seconds=1))
    sleep_past_lease(s3, 1)
    other = ExitStack()
    other_told: list[str] = []
    takeovers = sent(s3, "PutObject")

    def other_takes_over_first(context: dict[str, Any], **_: Any) -> None:
        if takeovers[-1].get("IfMatch") and takeovers[-1]["Key"] == LOCK_KEY and not other_told:
            other.enter_context(make_store(another_s3(), []).locked("teardown.py", other_told.append))

    s3.meta.events.register("before-call.s3.PutObject", other_takes_over_first)
    told: list[str] = []
    try:
        with (
            pytest.raises(StateFileError) as raised,
            make_store(s3, [], lock_timeout=0).locked("provision.py", told.append),
        ):
            pytest.fail("two runs held the lock")
        assert lock_record(s3)["command"] == "teardown.py"
    finally:
        other.close()
    assert told[0].startswith("Taking over") and other_told[0].startswith("Taking over")
    assert "teardown.py" in raised.value.what
    assert not exists(s3, LOCK_KEY)


# ------------------------------------------------------------------ 7. renewal


def test_a_holder_keeps_renewing_its_lease_and_notices_a_takeover(s3: S3Client, bucket: str) -> None:
    lease = 0.8  # renewed every 0.2 s
    told: list[str] = []
    other_told: list[str] = []
    holder = make_store(s3, [], lease_seconds=lease)
    with holder.locked("provision.py", told.append):
        time.sleep(2.0)
        with (
            pytest.raises(StateFileError) as refused,
            make_store(another_s3(), [], lock_timeout=0).locked("teardown.py", other_told.append),
        ):
            pytest.fail("a live holder's lock was taken over")
        assert other_told == []
        assert "provision.py" in refused.value.what

        taker = {**ghost_record(lease_seconds=120), "command": "teardown.py --force"}
        another_s3().put_object(Bucket=BUCKET, Key=LOCK_KEY, Body=json.dumps(taker).encode())
        renewer = lease_renewer()
        renewer.join(timeout=3)
        assert not renewer.is_alive(), "the renewal over the replaced lock failed, and renewing stopped"
        with pytest.raises(StateFileError) as lost:
            holder.save(sample_state())
        assert "took over the state's lock" in lost.value.what
        assert not exists(s3, KEY), "nothing written after the lock was lost"
    assert lock_record(s3) == taker, "the other run's lock is not deleted"
    assert told == ["The state's lock had been taken over by another run; it is left to that run"]


def test_a_holder_whose_lock_was_removed_stops_at_its_next_save(s3: S3Client, bucket: str) -> None:
    """Someone ran --unlock while this run held the lock: its renewal (If-Match on a deleted key) finds it gone."""
    holder = make_store(s3, [], lease_seconds=0.8)
    with holder.locked("provision.py", nowhere):
        assert make_store(another_s3(), []).unlock(lambda _question: True).startswith("removed the lock")
        renewer = lease_renewer()
        renewer.join(timeout=3)
        assert not renewer.is_alive()
        with pytest.raises(StateFileError):
            holder.save(sample_state())
    assert not exists(s3, KEY)
    assert not exists(s3, LOCK_KEY)


# ------------------------------------------------------------------ 8. unlock


def test_unlock_without_a_lock_says_so(s3: S3Client, bucket: str) -> None:
    answer = Answer(yes=True)
    message = make_store(s3, []).unlock(answer)
    assert message == f"there is no lock at s3://{BUCKET}/{LOCK_KEY}"
    assert answer.asked == []


def test_a_declined_unlock_leaves_the_lock(s3: S3Client, bucket: str) -> None:
    put_lock(s3, ghost_record(lease_seconds=120))
    answer = Answer(yes=False)
    with pytest.raises(StateFileError) as raised:
        make_store(s3, []).unlock(answer)
    assert raised.value.exit_code == EXIT_USER_ERROR
    (question,) = answer.asked
    assert "ghost" in question and "gone-host" in question and "pid 4242" in question
    assert lock_record(s3) == ghost_record(lease_seconds=120)


def test_an_accepted_unlock_removes_the_lock(s3: S3Client, bucket: str) -> None:
    put_lock(s3, ghost_record(lease_seconds=120))
    message = make_store(s3, []).unlock(lambda _question: True)
    assert message.startswith("removed the lock held by provision.py by ghost on gone-host")
    assert not exists(s3, LOCK_KEY)


# ------------------------------------------------------------------ 9. the bucket


def test_a_missing_bucket_is_created_configured_and_tagged(s3: S3Client, said: list[str]) -> None:
    store = make_store(s3, said, create_bucket=True)
    assert store.load() is None
    with store.locked("provision.py", nowhere):
        store.save(sample_state())

    assert s3.get_bucket_versioning(Bucket=BUCKET)["Status"] == "Enabled"
    (rule,) = s3.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert s3.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    (statement,) = json.loads(s3.get_bucket_policy(Bucket=BUCKET)["Policy"])["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert {"Key": BUCKET_TAG, "Value": "true"} in s3.get_bucket_tagging(Bucket=BUCKET)["TagSet"]
    assert len(said) == 1 and "does not exist: creating it" in said[0], "no versioning warning either"
    assert body_of(s3) == state_bytes(sample_state())


def test_without_create_bucket_a_missing_bucket_is_no_state_and_no_lock(
    s3: S3Client, calls: CallLog, said: list[str]
) -> None:
    store = make_store(s3, said)
    assert store.load() is None
    with pytest.raises(StateFileError) as raised, store.locked("teardown.py", nowhere):
        pytest.fail("locked without a bucket")
    assert raised.value.exit_code == EXIT_USER_ERROR
    assert BUCKET in raised.value.what
    assert calls.calls == [("s3", "HeadBucket")] * 2, "no bucket created"
    assert said == []


def test_a_bucket_in_another_region_is_refused_naming_both(s3: S3Client, calls: CallLog) -> None:
    another_s3("eu-west-1").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    with pytest.raises(StateFileError) as raised:
        make_store(s3, [], create_bucket=True).load()
    assert raised.value.exit_code == EXIT_USER_ERROR
    assert "eu-west-1" in raised.value.what and REGION in raised.value.what
    assert calls.calls == [("s3", "HeadBucket")]


def owned_by(client: S3Client, owner: str) -> list[str]:
    """S3 refuses a request whose ExpectedBucketOwner is not the bucket's owner; moto ignores the parameter.

    As S3 does ("Verifying bucket ownership with bucket owner condition", S3 User Guide,
    https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucket-owner-condition.html): 403 Access Denied,
    which HeadBucket (an answer without a body) reports as the code "403". Returns the refused operations.
    """
    refused: list[str] = []

    def keep(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["expected_owner"] = params.get("ExpectedBucketOwner")

    def refuse(model: Any, context: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        if context.get("expected_owner") in (None, owner):
            return None
        refused.append(model.name)
        code = "403" if model.name == "HeadBucket" else "AccessDenied"
        return AWSResponse("https://emulated", 403, HTTPHeaders(), None), {
            "Error": {"Code": code, "Message": "Forbidden"},
            "ResponseMetadata": {"HTTPStatusCode": 403},
        }

    client.meta.events.register("before-parameter-build.s3", keep)
    on(client, "before-call.s3", refuse)
    return refused


def test_a_bucket_of_another_account_is_refused(s3: S3Client, bucket: str, calls: CallLog) -> None:
    refused = owned_by(s3, OTHER_ACCOUNT)
    calls.clear()
    with pytest.raises(StateFileError) as on_load:
        make_store(s3, [], create_bucket=True).load()
    with (
        pytest.raises(StateFileError) as on_lock,
        make_store(s3, [], create_bucket=True).locked("provision.py", nowhere),
    ):
        pytest.fail("locked another account's bucket")
    for raised in (on_load, on_lock):
        assert raised.value.exit_code == EXIT_USER_ERROR
        assert "another AWS account" in raised.value.what
    assert refused == ["HeadBucket"] * 2
    assert calls.calls == [], "nothing else sent"


def test_a_users_bucket_without_versioning_is_warned_about_and_left_alone(
    s3: S3Client, calls: CallLog, said: list[str]
) -> None:
    s3.create_bucket(Bucket=BUCKET)
    calls.clear()
    store = make_store(s3, said)
    store.load()
    store.save(sample_state())
    store.save(sample_state("vpc-2"))
    assert len(said) == 1 and said[0].startswith("Warning: the bucket") and "no versioning" in said[0]
    assert writes(calls) == ["PutObject", "PutObject"]
    assert "Status" not in s3.get_bucket_versioning(Bucket=BUCKET)


def test_a_bucket_of_ours_left_half_configured_is_configured_at_the_first_save(s3: S3Client, said: list[str]) -> None:
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_tagging(Bucket=BUCKET, Tagging={"TagSet": [{"Key": BUCKET_TAG, "Value": "true"}]})
    store = make_store(s3, said)
    store.load()
    store.save(sample_state())
    assert s3.get_bucket_versioning(Bucket=BUCKET)["Status"] == "Enabled"
    assert s3.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"]["BlockPublicPolicy"]
    assert "Statement" in json.loads(s3.get_bucket_policy(Bucket=BUCKET)["Policy"])
    assert said == []


# ------------------------------------------------------------------ 10. refusals


def test_a_refused_write_names_the_permission_and_loses_nothing(s3: S3Client, bucket: str) -> None:
    make_store(s3, []).save(sample_state())
    before = body_of(s3)
    store = make_store(s3, [])
    state = store.load()
    assert state is not None
    injection = inject_errors(s3, "PutObject", "AccessDenied", "Access Denied", when=lambda p: p["Key"] == KEY)
    state.record("subnet", {"id": "subnet-1"})
    with pytest.raises(StateFileError) as raised:
        store.save(state)
    assert injection.served == 1
    assert raised.value.exit_code == EXIT_USER_ERROR
    assert "s3:PutObject" in raised.value.what and "s3:PutObject" in raised.value.todo
    assert body_of(s3) == before


@pytest.mark.parametrize(
    "content",
    [b"hello", b'{"name": "not a state"}', b"[1, 2]", b"\xff\xfe", b'{"schema_version": 99, "stack": "x"}'],
)
def test_a_key_holding_something_else_is_refused_and_left_alone(
    s3: S3Client, bucket: str, calls: CallLog, content: bytes
) -> None:
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=content)
    calls.clear()
    with pytest.raises(StateFileError) as raised:
        make_store(s3, []).load()
    assert raised.value.exit_code == EXIT_USER_ERROR
    assert "not a state of this tool" in raised.value.what
    assert body_of(s3) == content
    assert writes(calls) == []


def test_a_key_holding_something_else_is_refused_before_the_lock_is_written(
    s3: S3Client, bucket: str, calls: CallLog
) -> None:
    """provision and teardown take the lock before loading: the object is read first, so the refusal comes
    before any write (no lock version, no delete marker in a versioned bucket)."""
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"hello")
    calls.clear()
    with (
        pytest.raises(StateFileError, match="not a state of this tool"),
        make_store(s3, []).locked("provision.py", print),
    ):
        pytest.fail("the lock must not be taken")
    assert writes(calls) == []
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix=KEY + ".lock")


def test_under_the_lock_the_state_read_before_it_is_used_without_a_second_read(
    s3: S3Client, bucket: str, calls: CallLog
) -> None:
    make_store(s3, []).save(sample_state())
    store = make_store(s3, [])
    calls.clear()
    with store.locked("provision.py", print):
        assert store.load() == sample_state()
    assert [op for _service, op in calls.calls].count("GetObject") == 1


# ------------------------------------------------------------------ 11. import


def test_import_writes_the_first_version(s3: S3Client, bucket: str) -> None:
    make_store(s3, []).import_state(sample_state())
    assert body_of(s3) == state_bytes(sample_state())
    assert make_store(s3, []).load() == sample_state()


def test_import_over_an_existing_state_is_refused(s3: S3Client, bucket: str) -> None:
    make_store(s3, []).save(sample_state("vpc-there"))
    before = body_of(s3)
    with pytest.raises(StateFileError) as raised:
        make_store(s3, []).import_state(sample_state("vpc-local"))
    assert raised.value.exit_code == EXIT_USER_ERROR
    assert "already exists" in raised.value.what
    assert body_of(s3) == before


# ------------------------------------------------------------------ 12. delete


def test_delete_removes_the_state_and_leaves_the_bucket(s3: S3Client, bucket: str, said: list[str]) -> None:
    store = make_store(s3, said)
    store.save(sample_state())
    store.delete()
    assert not exists(s3, KEY)
    s3.head_bucket(Bucket=BUCKET)
    versions = s3.list_object_versions(Bucket=BUCKET, Prefix=KEY)
    assert len(versions["Versions"]) == 1, "the deleted state stays as a version"
    assert len(said) == 1 and f"the state bucket {BUCKET} is left" in said[0]
