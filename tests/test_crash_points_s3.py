"""tests/test_crash_points.py with the state in S3: the state's writes and its lock are AWS calls, and crash points.

The run is what deployer/cli.py does with `--state-file s3://BUCKET/KEY`: provision creates the bucket on
its first run, takes the lock (`KEY.lock`), loads the state and saves it into S3 after every change;
teardown takes the lock, loads, saves every forget and deletes the state object. The process dies right
after any call AWS served (`Killed`, raised from an `after-call` hook) and, being dead, sends nothing more
from any thread (tests/test_crash_points.py's `Killer`): the saves of the steps still running beside the
killed one never reach S3, and the lock's release in `locked()`'s `finally` does not either, so a crash
leaves the lock behind, as a SIGKILL would.

The next run is a new process. It must take the dead run's lock over once its lease has run out, and the
lease is S3's clock: the lock's LastModified plus its lease against the Date of S3's answer (deployer/
s3state.py). Rather than sleep through a lease, the new process sees S3's answers dated a lease later
(`lease_ran_out`: in-process moto sends no Date, so the tool would use this machine's clock; the hook
gives it S3's, moved on). Without that, the same re-run is refused, naming the holder.

The lease is long (120 s) so that no renewal happens during a run: the renewer's calls come on their own
thread at times no recording can number, and are not crash points.

Which points run: every call to S3 (the bucket, the lock, the loads and saves, the state's deletion) and
every `SAMPLE_EVERY`-th of the stack's own calls (tests/test_crash_points.py tries every one of those with
a local state; here only the change of store is under test). As there, the points are numbered by a clean
run made one step after another, and the run that is killed, like the next one, runs several steps at once:
its n-th call may be another than the recorded one (a save of another step's record, another step's call).
The calls before the steps run (the bucket, the lock, the load) and after them (the last save, the lock's
release) are the same in every run, so whether the killed run held the lock is known from the recording.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from email.utils import formatdate
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from deployer import runner
from deployer.clients import AwsClients
from deployer.errors import StateFileError
from deployer.ledger import Ledger
from deployer.parallel import DEFAULT_SCHEDULER, Scheduler
from deployer.s3state import S3StateFile, parse_s3_url
from deployer.state import State, decode_state
from tests.conftest import ACCOUNT, REGION, CallLog, RecordingOutput, hosted_zone, make_context, recorded_clients
from tests.faults import keep_params
from tests.inventory import added, inventory
from tests.test_crash_points import (
    ONE_STACK,
    SEQUENTIAL,
    SETTINGS,
    Killed,
    configuration,
    counts,
    isolated_environment,
    provision,
    shape,
    the_dead_process_is_gone,
)
from tests.test_crash_points import Killer as ProcessKiller

BUCKET = "crash-site-team-state"
KEY = "crash-site/state.json"
LOCK = f"{KEY}.lock"
LOCATION = parse_s3_url(f"s3://{BUCKET}/{KEY}", where="test")
S3_SETTINGS = replace(SETTINGS, state_file=LOCATION.url)
LEASE = 120.0
RENEWER_THREAD = "state-lock-lease"  # deployer/s3state.py's _Renewer
SAMPLE_EVERY = 8


def point_name(model: Any, context: dict[str, Any]) -> str:
    """The operation, and for S3 what it acts on (the state, its lock, or the bucket)."""
    if model.service_model.service_name != "s3":
        return str(model.name)
    key = context.get("api_params", {}).get("Key")
    return f"s3-{model.name}-" + {KEY: "state", LOCK: "lock", None: "bucket"}[key]


class Killer(ProcessKiller):
    """The dead process of tests/test_crash_points.py, its calls numbered by what they act on (the renewer's
    aside), killed after call `at` or the first call that is `at_point`."""

    def __init__(self, at: int | None = None, at_point: str | None = None) -> None:
        super().__init__(at)
        self.at_point = at_point

    def point(self, model: Any, context: dict[str, Any]) -> str | None:
        if threading.current_thread().name == RENEWER_THREAD:
            return None
        return point_name(model, context)

    def kills(self) -> bool:
        return super().kills() or self.points[-1] == self.at_point


def lease_ran_out(parsed: dict[str, Any], **_: Any) -> None:
    """S3's answer dated a lease (and a second) later than now: a lock written before this run has expired."""
    headers = parsed.setdefault("ResponseMetadata", {}).setdefault("HTTPHeaders", {})
    headers["date"] = formatdate(time.time() + LEASE + 1, usegmt=True)


@dataclass
class Process:
    """A freshly started CLI: its clients, its store (the state only in S3) and what it printed."""

    clients: AwsClients
    store: S3StateFile
    output: RecordingOutput
    scratch: Path

    def context(self, state: State) -> Any:
        ctx = make_context(self.clients, S3_SETTINGS, self.scratch / "unused.json", state=state, output=self.output)
        return replace(ctx, ledger=Ledger(state, self.store.save))


def new_process(
    scratch: Path, killer: Killer | None = None, *, later: bool = False, create_bucket: bool = True
) -> Process:
    clients = recorded_clients(CallLog())
    if killer is not None:
        killer.install(clients)
        clients.s3.meta.events.register("before-parameter-build.s3", keep_params)
    if later:
        clients.s3.meta.events.register("after-call.s3.GetObject", lease_ran_out)
    output = RecordingOutput()
    store = S3StateFile(
        LOCATION, clients.s3, ACCOUNT, REGION, output.line, create_bucket=create_bucket, lease_seconds=LEASE
    )
    return Process(clients, store, output, scratch)


def run_provision(process: Process, scheduler: Scheduler = DEFAULT_SCHEDULER) -> None:
    """deployer/cli.py's _provision: the lock (the bucket created first if missing), the state loaded, the run."""
    with process.store.locked("provision.py", process.output.line):
        state = process.store.load() or State(stack=SETTINGS.stack, region=REGION, account_id=ACCOUNT)
        provision(process.context(state), scheduler)


def run_teardown(process: Process, scheduler: Scheduler = DEFAULT_SCHEDULER) -> None:
    """deployer/cli.py's _teardown_recorded: no state, nothing to do; a state with no resources, deleted;
    else every resource deleted, then the state."""
    with process.store.locked("teardown.py", process.output.line):
        state = process.store.load()
        if state is None:
            return
        if state.resources:
            runner.teardown(process.context(state), scheduler)
        process.store.delete()


def objects(s3: Any) -> set[str]:
    """The keys in the state bucket (none when it does not exist)."""
    if BUCKET not in {bucket["Name"] for bucket in s3.list_buckets()["Buckets"]}:
        return set()
    return {item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}


def stored_state(s3: Any) -> State:
    return decode_state(s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read())


# --- the clean recording, made once at collection time ---------------------------------------


@dataclass(frozen=True)
class Recording:
    provision_points: list[str]
    teardown_points: list[str]
    counts: dict[str, int]
    shape: dict[str, list[str]]
    configuration: Any
    left_after_teardown: dict[str, set[str]]
    objects_after_teardown: set[str]


@cache
def clean_recording() -> Recording:
    """A clean provision and teardown one step after another: their calls, numbered the same in every run."""
    with isolated_environment() as folder, mock_aws():
        observer = recorded_clients(CallLog())
        hosted_zone(observer)
        before = inventory(observer)
        provision_killer, teardown_killer = Killer(), Killer()
        run_provision(new_process(folder, provision_killer), SEQUENTIAL)
        new = added(before, inventory(observer))
        settled = configuration(observer, stored_state(observer.s3))
        run_teardown(new_process(folder, teardown_killer, create_bucket=False), SEQUENTIAL)
        left = added(before, inventory(observer))
        return Recording(
            provision_killer.points,
            teardown_killer.points,
            counts(new),
            shape(new),
            settled,
            left,
            objects(observer.s3),
        )


def crash_points(phase: str) -> list[Any]:
    recording = clean_recording()
    points = recording.provision_points if phase == "provision" else recording.teardown_points
    chosen = []
    stack_calls = 0
    for n, point in enumerate(points, start=1):
        if not point.startswith("s3-"):
            stack_calls += 1
            if stack_calls % SAMPLE_EVERY != 1:
                continue
        chosen.append(pytest.param(n, point, id=f"{phase}-after-call-{n:03d}-{point}"))
    return chosen


def holds_the_lock(points: list[str], at: int) -> bool:
    """Whether a run killed after call `at` had taken the lock and not yet released it."""
    return points.index("s3-PutObject-lock") < at <= points.index("s3-DeleteObject-lock")


@pytest.fixture
def clean() -> Recording:
    return clean_recording()


def kill(run: Callable[[Process], object], process: Process) -> None:
    """Run provision or teardown, several steps at once, in a process its killer kills; return once every thread
    of that process has ended."""
    with pytest.raises(Killed):
        run(process)
    the_dead_process_is_gone()


def took_over(process: Process) -> bool:
    return any(line.startswith("Taking over the state's lock") for line in process.output.lines)


# --- the tests -------------------------------------------------------------------------------


def test_the_clean_recording_is_one_stack_with_every_state_call_numbered(clean: Recording) -> None:
    assert clean.counts == ONE_STACK
    assert clean.left_after_teardown == {}
    assert clean.objects_after_teardown == set(), "teardown deletes the state and its lock, and keeps the bucket"
    assert clean.provision_points[:8] == [
        *("s3-HeadBucket-bucket", "s3-CreateBucket-bucket", "s3-PutPublicAccessBlock-bucket"),
        *("s3-PutBucketEncryption-bucket", "s3-PutBucketVersioning-bucket", "s3-PutBucketPolicy-bucket"),
        *("s3-GetObject-state", "s3-PutObject-lock"),
    ]
    assert clean.provision_points[-1] == "s3-DeleteObject-lock"
    assert clean.teardown_points[:3] == ["s3-HeadBucket-bucket", "s3-GetObject-state", "s3-PutObject-lock"]
    assert clean.teardown_points[-2:] == ["s3-DeleteObject-state", "s3-DeleteObject-lock"]
    saves = clean.provision_points.count("s3-PutObject-state")
    assert saves >= len(ONE_STACK), "every step's record is saved into S3 as it is made"


@pytest.mark.parametrize(("at", "point"), crash_points("provision"))
def test_provision_killed_after_a_call_converges_on_the_next_run(
    at: int, point: str, clean: Recording, observer: AwsClients, tmp_path: Path
) -> None:
    before = inventory(observer)
    killer = Killer(at)
    kill(run_provision, new_process(tmp_path, killer))
    served = f"the killed run's calls: {killer.points}"
    left_locked = LOCK in objects(observer.s3)
    assert left_locked == holds_the_lock(clean.provision_points, at), served

    again = new_process(tmp_path, later=True)
    run_provision(again)
    assert took_over(again) == left_locked, served
    assert objects(observer.s3) == {KEY}, f"the lock is released; {served}"
    new = added(before, inventory(observer))
    assert shape(new) == clean.shape, f"counts {counts(new)}, wanted {clean.counts}; {served}"
    assert configuration(observer, stored_state(observer.s3)) == clean.configuration, served

    run_teardown(new_process(tmp_path, create_bucket=False))
    assert inventory(observer) == before, served
    assert objects(observer.s3) == set(), served


@pytest.mark.parametrize(("at", "point"), crash_points("teardown"))
def test_teardown_killed_after_a_call_converges_on_the_next_run(
    at: int, point: str, clean: Recording, observer: AwsClients, tmp_path: Path
) -> None:
    before = inventory(observer)
    run_provision(new_process(tmp_path))
    killer = Killer(at)
    kill(run_teardown, new_process(tmp_path, killer, create_bucket=False))
    served = f"the killed run's calls: {killer.points}"
    left_locked = LOCK in objects(observer.s3)
    assert left_locked == holds_the_lock(clean.teardown_points, at), served

    again = new_process(tmp_path, later=True, create_bucket=False)
    run_teardown(again)
    assert took_over(again) == left_locked, served
    after = inventory(observer)
    assert after == before, f"left behind: {added(before, after)}; {served}"
    assert objects(observer.s3) == set(), served


def test_before_the_lease_runs_out_the_next_run_is_refused_and_changes_nothing(
    clean: Recording, observer: AwsClients, tmp_path: Path
) -> None:
    at = clean.provision_points.index("s3-PutObject-lock") + 1  # killed right after it took the lock
    killer = Killer(at)
    kill(run_provision, new_process(tmp_path, killer))
    assert killer.points[-1] == "s3-PutObject-lock", "before the steps run, the calls are numbered as recorded"
    held = observer.s3.get_object(Bucket=BUCKET, Key=LOCK)["ETag"]

    calls = CallLog()
    again = new_process(tmp_path)
    again.clients.s3.meta.events.register("before-call", calls.record)
    with pytest.raises(StateFileError, match=r"The state is locked by provision\.py"):
        run_provision(again)
    assert observer.s3.get_object(Bucket=BUCKET, Key=LOCK)["ETag"] == held
    assert [operation for _, operation in calls.calls] == ["HeadBucket", "GetObject", "PutObject", "GetObject"], (
        "the bucket, the state read, the refused If-None-Match write of the lock, its holder read: nothing else"
    )


def test_a_crash_in_the_buckets_setup_then_one_at_the_first_save_leave_the_bucket_configured(
    clean: Recording, observer: AwsClients, tmp_path: Path
) -> None:
    """Two crashes in a row: after CreateBucket (the bucket tagged, not configured), then the re-run right after
    its first save reached S3. The third run must still find the bucket versioned, encrypted, private and TLS-only."""
    first = Killer(clean.provision_points.index("s3-CreateBucket-bucket") + 1)
    kill(run_provision, new_process(tmp_path, first))
    assert first.points[-1] == "s3-CreateBucket-bucket", "before the steps run, the calls are numbered as recorded"
    kill(run_provision, new_process(tmp_path, Killer(at_point="s3-PutObject-state")))
    run_provision(new_process(tmp_path, later=True))

    s3 = observer.s3
    assert s3.get_bucket_versioning(Bucket=BUCKET).get("Status") == "Enabled"
    rules = s3.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert all(s3.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"].values())
    assert "aws:SecureTransport" in s3.get_bucket_policy(Bucket=BUCKET)["Policy"]
