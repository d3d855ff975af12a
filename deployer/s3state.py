"""The state in S3: `--state-file s3://BUCKET/KEY`, one state for every machine of a team and its CI.

The object holds exactly what `state.json` holds (deployer/state.py's format and schema). A run that
changes things goes:

1. the bucket (HeadBucket, with the caller's account as ExpectedBucketOwner): it must be in the stack's
   region and the caller's account; provision creates a missing one, after saying so (`create_bucket`);
2. the lock, `KEY.lock`: created with `If-None-Match: *`, so of two machines exactly one gets it; it
   names who holds it (user, host, pid, command, since when) and holds a lease the holder renews from a
   background thread while it waits on AWS. A second run names the holder and waits up to
   `--lock-timeout` seconds (0: refuses at once). A lease that ran out (its holder crashed, or lost its
   network) is taken over with a message, by a write conditioned on the expired lock's ETag, so two
   runs cannot both take it over. Lease times are S3's: the lock's LastModified against the Date of
   S3's answer (where S3 sends one), so the machines' clocks do not matter;
3. the state: read once (its ETag kept), then every save is compare-and-swap — PutObject with
   `If-Match` on the last ETag, `If-None-Match: *` for the first — so two writers can never silently
   overwrite each other. A refused write (412 PreconditionFailed, or 409 ConditionalRequestConflict
   for a write racing ours) re-reads: the object holding exactly what this run wrote means an answer
   was lost and botocore's retry found our own write; anything else is someone else's change, and the
   run stops saying so ("Conditional writes", S3 User Guide,
   https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html);
4. the lock is deleted (conditioned on its ETag: a lock taken over from us is not ours to delete).

Read-only commands (status, logs, a dry run) read the state without the lock. Teardown deletes the
state object and the lock and leaves the bucket (versioning keeps every earlier state as a version).

The bucket provision creates: versioning on (every state write is a version, the S3 world's `.bak`),
default encryption (SSE-S3), public access blocked, a bucket policy refusing any request not made over
TLS, and the tag `deployer:state-bucket`; nothing about it goes in the stack's state. CreateBucket
carries the tag itself (CreateBucketConfiguration.Tags), so a run that crashed part-way through the
configuration finds a tagged bucket, and the next run that creates a state in it configures it again;
a bucket without the tag is the user's, and is only warned about when it has no versioning.

This is the one module outside deployer/steps/ that calls AWS: the state's storage is not a resource of
the stack, and every command reaches it before any step runs.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from deployer.clients import error_code, error_message
from deployer.errors import SettingsError, StateFileError
from deployer.state import CorruptStateError, State, decode_state, state_bytes

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import (
        CreateBucketConfigurationTypeDef,
        GetObjectOutputTypeDef,
        PutObjectRequestTypeDef,
    )

SCHEME = "s3://"
LOCK_SUFFIX = ".lock"
# How long a lock stays valid without renewal, and how often its holder renews it. Long enough that a
# renewal is never late on a busy machine; short enough that a crashed run blocks the team briefly.
# DEPLOYER_LOCK_LEASE_SECONDS overrides it (the tests' crashed-holder cases use a few seconds).
LEASE_SECONDS = 120.0
RENEWALS_PER_LEASE = 4
LOCK_POLL_SECONDS = 5.0
BUCKET_TAG = "deployer:state-bucket"
# S3's answers to a write whose condition failed (PreconditionFailed, 412) or that raced another
# conditional write on the same key (ConditionalRequestConflict, 409): the conditional-writes page above.
CONDITION_FAILED = ("PreconditionFailed", "ConditionalRequestConflict")
MISSING_KEY = ("NoSuchKey",)
MISSING_BUCKET = ("NoSuchBucket", "404")  # HeadBucket has no body, so its code is the status
REFUSED = ("AccessDenied", "403", "AllAccessDisabled")
# General purpose bucket names ("Bucket naming rules", S3 User Guide,
# https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html): 3-63 characters of
# lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit, no two dots
# in a row, not an IP address, none of the reserved prefixes and suffixes.
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
KEY_BYTES = 1024 - len(LOCK_SUFFIX)  # S3's key limit, leaving room for the lock's


def is_s3_url(text: str) -> bool:
    return text.startswith(SCHEME)


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str

    @property
    def url(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.key}"

    @property
    def lock_key(self) -> str:
        return self.key + LOCK_SUFFIX


def parse_s3_url(text: str, where: str) -> S3Location:
    """`s3://BUCKET/KEY`, checked against S3's naming rules before any call."""
    bucket, _, key = text.removeprefix(SCHEME).partition("/")
    problem = _bucket_problem(bucket) or _key_problem(key)
    if problem:
        raise SettingsError(
            f"The state location '{text}' is not a usable s3://BUCKET/KEY: {problem}",
            where=where,
            todo="Write it as s3://my-team-state/site/state.json (a bucket name of 3-63 lowercase letters, digits, "
            "dots and hyphens, then the object's key)",
        )
    return S3Location(bucket, key)


def _bucket_problem(bucket: str) -> str:
    if not BUCKET_NAME.match(bucket):
        return f"the bucket name '{bucket}' breaks S3's naming rules"
    if ".." in bucket or re.fullmatch(r"\d+\.\d+\.\d+\.\d+", bucket):
        return f"the bucket name '{bucket}' breaks S3's naming rules (two dots in a row, or an IP address)"
    if bucket.startswith(RESERVED_PREFIXES) or bucket.endswith(RESERVED_SUFFIXES):
        return f"the bucket name '{bucket}' uses a prefix or suffix S3 reserves"
    return ""


def _key_problem(key: str) -> str:
    if not key or key.endswith("/"):
        return "the key (the object's name after the bucket) is missing or ends with '/'"
    if len(key.encode()) > KEY_BYTES:
        return f"the key is longer than {KEY_BYTES} bytes"
    if key.endswith(LOCK_SUFFIX):
        return f"the key ends with '{LOCK_SUFFIX}', which names the lock of another state"
    return ""


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, and until when (S3's clock)."""

    record: dict[str, Any]
    etag: str
    expires: datetime
    now: datetime

    @property
    def expired(self) -> bool:
        return self.now >= self.expires

    def describe(self) -> str:
        r = self.record
        who = f"{r.get('command', 'a run')} by {r.get('user', '?')} on {r.get('host', '?')} (pid {r.get('pid', '?')})"
        left = (self.expires - self.now).total_seconds()
        lease = f"its lease ran out {-left:.0f} s ago" if left <= 0 else f"its lease runs {left:.0f} s more"
        return f"{who}, since {r.get('started_at', '?')}; {lease}"


class S3StateFile:
    """The state object, its lock and its bucket (see the module docstring)."""

    def __init__(
        self,
        location: S3Location,
        s3: S3Client,
        account_id: str,
        region: str,
        say: Callable[[str], None],
        *,
        create_bucket: bool = False,
        lock_timeout: float = 0.0,
        lease_seconds: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.location = location
        self.s3 = s3
        self.account_id = account_id
        self.region = region
        self.say = say
        self.create_bucket = create_bucket
        self.lock_timeout = lock_timeout
        self.lease_seconds = lease_seconds or _lease_from_environment()
        self.sleep = sleep
        self._etag: str | None = None
        self._bucket_checked = False
        self._bucket_created = False
        self._renewer: _Renewer | None = None
        self._read_ahead: tuple[State | None, str | None] | None = None

    @property
    def where(self) -> str:
        return self.location.url

    # ------------------------------------------------------------ the state

    def load(self) -> State | None:
        """The recorded state, or None when the object (or the bucket) does not exist yet. Under the lock, the
        read `locked()` made just before taking it (unless it had to wait: then the state is read again)."""
        if self._read_ahead is not None:
            state, self._etag = self._read_ahead
            self._read_ahead = None
            return state
        if not self._bucket_exists():
            return None
        state, self._etag = self._read_state()
        return state

    def _read_state(self) -> tuple[State | None, str | None]:
        """The state and its ETag; an object that is not a state of this tool is refused and left as it is."""
        answer = self._get(self.location.key)
        if answer is None:
            return None, None
        try:
            return decode_state(answer[0]), answer[1]["ETag"]
        except CorruptStateError as exc:
            raise StateFileError(
                f"The object {self.where} is not a state of this tool ({exc}); it was left exactly as it is",
                where=self.where,
                todo="Pass --state-file with a key of its own for this stack's state",
            ) from exc

    def save(self, state: State) -> None:
        """Compare-and-swap: write only over the version this run last read or wrote."""
        if self._renewer is not None:
            self._renewer.check()
        body = state_bytes(state)
        if self._etag is None:
            # Before the state exists: a run that dies in between leaves no state, so the next run's first save
            # configures the bucket again. Configured after the write, a crash in between would leave a state,
            # no later save would be a first one, and a setup a crash had cut short would never be finished.
            self._configure_or_warn()
        written = self._put_if(self.location.key, body, self._etag)
        self._etag = written if written is not None else self._settle_refused_write(body)

    def import_state(self, state: State) -> None:
        """Write a local state as the first version of this object; refuse if the key holds anything."""
        self._bucket_exists()
        written = self._put_if(self.location.key, state_bytes(state), None)
        if written is None:
            raise StateFileError(
                f"{self.where} already exists, so a local state cannot be imported over it; nothing was changed",
                where=self.where,
                todo="Use another key for the imported state, or work with the state already there (status.py "
                "--state-file URL shows it)",
            )
        self._etag = written
        self._configure_or_warn()

    def delete(self) -> None:
        """After a complete teardown: the state object goes (its versions stay), the bucket stays."""
        with self._answers("s3:DeleteObject", self.location.key):
            self.s3.delete_object(
                Bucket=self.location.bucket, Key=self.location.key, ExpectedBucketOwner=self.account_id
            )
        self.say(
            f"  the state bucket {self.location.bucket} is left as it is (teardown never deletes it; its versioning "
            "keeps the earlier states)"
        )

    def _settle_refused_write(self, body: bytes) -> str:
        """After a refused conditional write: our own write answered late, or someone else's change."""
        current = self._get(self.location.key)
        if current is not None and current[0] == body:
            return current[1]["ETag"]  # botocore retried a write that had gone through
        changed_by = "deleted it" if current is None else "wrote a newer version"
        raise StateFileError(
            f"Someone else changed {self.where} while this run held it ({changed_by}); this run stopped without "
            "overwriting it, and what it created since its last save may be missing from the state",
            where=self.where,
            todo="Find out who (the S3 console's versions of the object, or the lock's holder), then run provision.py "
            "again: it reads the current state and finds this run's resources by their names and tags",
        )

    # ------------------------------------------------------------ the lock

    @contextmanager
    def locked(self, command: str, say: Callable[[str], None]) -> Iterator[None]:
        """Hold `KEY.lock` for the run, renewing its lease in the background."""
        if not self._bucket_exists():
            self._create_bucket()
        # Read before locking: an object that is not our state is refused before the lock is written.
        self._read_ahead = self._read_state()
        body = self._lock_body(command)
        etag, contended = self._acquire(body, say)
        if contended:
            self._read_ahead = None  # another run held the state meanwhile: read it again under the lock
        renewer = _Renewer(self, body, etag)
        self._renewer = renewer
        renewer.start()
        try:
            yield
        finally:
            renewer.stop()
            self._renewer = None
            self._release(renewer.etag, say)

    def unlock(self, confirm: Callable[[str], bool]) -> str:
        """Show the lock, ask, and delete it: for a lock whose holder is known to be gone."""
        if not self._bucket_exists():
            return f"there is no lock: the bucket {self.location.bucket} does not exist"
        holder = self._holder()
        if holder is None:
            return f"there is no lock at {self.location.url}{LOCK_SUFFIX}"
        if not confirm(f"Remove the lock held by {holder.describe()}?"):
            raise StateFileError(
                "The lock was left in place",
                where=f"{self.location.url}{LOCK_SUFFIX}",
                todo="Run again and answer 'yes' once you are sure that run is over",
            )
        self._delete_lock(holder.etag)
        return f"removed the lock held by {holder.describe()}"

    def _lock_body(self, command: str) -> bytes:
        record = {
            "user": _user(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "command": command,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "lease_seconds": self.lease_seconds,
        }
        return json.dumps(record).encode()

    def _acquire(self, body: bytes, say: Callable[[str], None]) -> tuple[str, bool]:
        """The lock's ETag, and whether another run held it first."""
        deadline = time.monotonic() + self.lock_timeout
        waiting = False
        contended = False
        while True:
            etag = self._put_if(self.location.lock_key, body, None)
            if etag is not None:
                return etag, contended
            contended = True
            holder = self._holder()
            if holder is None:
                continue  # released between our write and our read: try again
            if holder.expired:
                say(f"Taking over the state's lock from {holder.describe()}")
                etag = self._put_if(self.location.lock_key, body, holder.etag)
                if etag is not None:
                    return etag, contended
                continue  # another run took it over first
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StateFileError(
                    f"The state is locked by {holder.describe()}",
                    where=f"{self.location.url}{LOCK_SUFFIX}",
                    todo="Wait for that run to finish (or pass --lock-timeout SECONDS to wait for it); if it is known "
                    "to be gone, its lease runs out by itself, or remove the lock with teardown.py --unlock",
                )
            if not waiting:
                say(f"Waiting up to {self.lock_timeout:.0f} s for the state's lock, held by {holder.describe()}")
                waiting = True
            self.sleep(min(LOCK_POLL_SECONDS, remaining))

    def _put_if(self, key: str, body: bytes, etag: str | None) -> str | None:
        """PutObject over version `etag` only (`If-Match`), or only where nothing is (`If-None-Match: *`) when
        `etag` is None: the new ETag, or None when the condition failed."""
        request: PutObjectRequestTypeDef = {
            "Bucket": self.location.bucket,
            "Key": key,
            "Body": body,
            "ContentType": "application/json",
            "ExpectedBucketOwner": self.account_id,
        }
        if etag is None:
            request["IfNoneMatch"] = "*"
        else:
            request["IfMatch"] = etag
        try:
            with self._answers("s3:PutObject", key):
                return self.s3.put_object(**request)["ETag"]
        except ClientError as exc:
            if error_code(exc) in CONDITION_FAILED:
                return None
            if etag is not None and error_code(exc) in MISSING_KEY:
                return None  # If-Match on a key deleted since: S3 answers 404 NoSuchKey (conditional-writes page)
            raise

    def _holder(self) -> Holder | None:
        answer = self._get(self.location.lock_key)
        if answer is None:
            return None
        body, response = answer
        try:
            record = json.loads(body)
        except ValueError:
            record = {}
        record = record if isinstance(record, dict) else {}
        lease = record.get("lease_seconds")
        seconds = float(lease) if isinstance(lease, int | float) and lease > 0 else self.lease_seconds
        # LastModified is whole seconds, cut down: the lock was written up to 1 s after it, so the lease counts
        # from the end of that second (else a holder that renewed late in a second looks up to 1 s older).
        modified = response["LastModified"]
        expires = modified.timestamp() + 1 + seconds
        return Holder(record, response["ETag"], datetime.fromtimestamp(expires, UTC), _server_now(response))

    def _release(self, etag: str, say: Callable[[str], None]) -> None:
        try:
            self._delete_lock(etag)
        except ClientError as exc:
            if error_code(exc) not in CONDITION_FAILED:
                raise
            say("The state's lock had been taken over by another run; it is left to that run")

    def _delete_lock(self, etag: str) -> None:
        try:
            with self._answers("s3:DeleteObject", self.location.lock_key):
                self.s3.delete_object(
                    Bucket=self.location.bucket,
                    Key=self.location.lock_key,
                    IfMatch=etag,
                    ExpectedBucketOwner=self.account_id,
                )
        except ClientError as exc:
            if error_code(exc) not in MISSING_KEY:
                raise

    def renew(self, body: bytes, etag: str) -> str | None:
        """Rewrite the lock over its own version (a new LastModified: a new lease); None if it was taken over."""
        return self._put_if(self.location.lock_key, body, etag)

    # ------------------------------------------------------------ the bucket

    def _bucket_exists(self) -> bool:
        """HeadBucket once per run: the bucket's region and owner (ExpectedBucketOwner makes S3 refuse another
        account's bucket with 403)."""
        if self._bucket_checked:
            return True
        try:
            answer = self.s3.head_bucket(Bucket=self.location.bucket, ExpectedBucketOwner=self.account_id)
        except ClientError as exc:
            if error_code(exc) in MISSING_BUCKET:
                return False
            if error_code(exc) in REFUSED:
                raise StateFileError(
                    f"S3 refused to show the bucket {self.location.bucket}: it belongs to another AWS account, or "
                    f"these credentials (account {self.account_id}) may not list it (s3:ListBucket)",
                    where=self.where,
                    todo="Use a bucket of this account, or grant s3:ListBucket on it (python provision.py "
                    "--print-policy lists what the state needs)",
                ) from exc
            raise self._unreadable("s3:ListBucket", self.location.bucket, exc) from exc
        except BotoCoreError as exc:
            raise self._unreachable(exc) from exc
        region = answer.get("BucketRegion") or answer["ResponseMetadata"]["HTTPHeaders"].get("x-amz-bucket-region")
        if region and region != self.region:
            raise StateFileError(
                f"The bucket {self.location.bucket} is in {region}, but this stack runs in {self.region}",
                where=self.where,
                todo=f"Keep the state in a bucket of {self.region} (a new name lets provision create one), or, if "
                f"{region} is the stack's region, run in it (--region, deploy.toml's region or AWS_REGION)",
            )
        self._bucket_checked = True
        return True

    def _create_bucket(self) -> None:
        if not self.create_bucket:
            raise StateFileError(
                f"The bucket {self.location.bucket} does not exist, so there is no state at {self.where}",
                where=self.where,
                todo="Check the URL; provision.py creates the bucket on its first run",
            )
        self.say(
            f"The state bucket {self.location.bucket} does not exist: creating it in {self.region} (versioning, "
            "encryption, public access blocked, TLS only). Teardown will leave it."
        )
        configuration: CreateBucketConfigurationTypeDef = {"Tags": [{"Key": BUCKET_TAG, "Value": "true"}]}
        if self.region != "us-east-1":  # us-east-1 takes no LocationConstraint (CreateBucket API reference)
            configuration["LocationConstraint"] = self.region  # type: ignore[typeddict-item]
        try:
            with self._answers("s3:CreateBucket", self.location.bucket):
                self.s3.create_bucket(
                    Bucket=self.location.bucket,
                    CreateBucketConfiguration=configuration,
                )  # a new bucket's Object Ownership is BucketOwnerEnforced (ACLs off) by default
        except ClientError as exc:
            if error_code(exc) == "BucketAlreadyExists":
                raise StateFileError(
                    f"The bucket name {self.location.bucket} is taken by another AWS account (bucket names are global)",
                    where=self.where,
                    todo="Choose another bucket name in --state-file",
                ) from exc
            if error_code(exc) != "BucketAlreadyOwnedByYou":  # another machine made it a moment ago
                raise
        self._bucket_checked = True
        self._bucket_created = True
        self._configure()

    def _configure_or_warn(self) -> None:
        """Just before a state's first save (after an import's write): configure a bucket of ours again (a crash
        may have cut its setup short), or warn about a bucket of the user's without versioning."""
        if self._bucket_created:
            return
        if self._tagged_ours():
            self._configure()
            return
        with self._answers("s3:GetBucketVersioning", self.location.bucket):
            status = self.s3.get_bucket_versioning(
                Bucket=self.location.bucket, ExpectedBucketOwner=self.account_id
            ).get("Status")
        if status != "Enabled":
            self.say(
                f"Warning: the bucket {self.location.bucket} has no versioning, so an overwritten or deleted state "
                "cannot be recovered; turn it on (S3 console: Properties, Bucket Versioning)"
            )

    def _tagged_ours(self) -> bool:
        try:
            with self._answers("s3:GetBucketTagging", self.location.bucket):
                tags = self.s3.get_bucket_tagging(Bucket=self.location.bucket, ExpectedBucketOwner=self.account_id)
        except ClientError as exc:
            if error_code(exc) == "NoSuchTagSet":
                return False
            raise
        return any(tag["Key"] == BUCKET_TAG for tag in tags["TagSet"])

    def _configure(self) -> None:
        """Versioning, encryption, no public access, TLS only: idempotent puts."""
        bucket, owner = self.location.bucket, self.account_id
        with self._answers("s3:PutBucketPublicAccessBlock", bucket):
            self.s3.put_public_access_block(
                Bucket=bucket,
                ExpectedBucketOwner=owner,
                PublicAccessBlockConfiguration={
                    "BlockPublicAcls": True,
                    "IgnorePublicAcls": True,
                    "BlockPublicPolicy": True,
                    "RestrictPublicBuckets": True,
                },
            )
        with self._answers("s3:PutEncryptionConfiguration", bucket):
            self.s3.put_bucket_encryption(
                Bucket=bucket,
                ExpectedBucketOwner=owner,
                ServerSideEncryptionConfiguration={
                    "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
                },
            )
        with self._answers("s3:PutBucketVersioning", bucket):
            self.s3.put_bucket_versioning(
                Bucket=bucket, ExpectedBucketOwner=owner, VersioningConfiguration={"Status": "Enabled"}
            )
        with self._answers("s3:PutBucketPolicy", bucket):
            self.s3.put_bucket_policy(Bucket=bucket, ExpectedBucketOwner=owner, Policy=json.dumps(tls_only(bucket)))

    # ------------------------------------------------------------ reading and errors

    def _get(self, key: str) -> tuple[bytes, GetObjectOutputTypeDef] | None:
        try:
            with self._answers("s3:GetObject", key):
                answer = self.s3.get_object(Bucket=self.location.bucket, Key=key, ExpectedBucketOwner=self.account_id)
        except ClientError as exc:
            if error_code(exc) in MISSING_KEY:
                return None
            raise
        return answer["Body"].read(), answer

    @contextmanager
    def _answers(self, action: str, name: str) -> Iterator[None]:
        """A refusal as a message naming the permission; conditions and missing keys go back to the caller."""
        try:
            yield
        except ClientError as exc:
            if error_code(exc) in REFUSED:
                raise StateFileError(
                    f"S3 refused {action} on {name} (AccessDenied): these credentials (account {self.account_id}) "
                    "may not use the state there",
                    where=self.where,
                    todo=f"Grant {action} on it (python provision.py --print-policy lists every S3 action the state "
                    "needs), then run again; nothing was lost",
                ) from exc
            raise
        except BotoCoreError as exc:
            raise self._unreachable(exc) from exc

    def _unreadable(self, action: str, name: str, exc: ClientError) -> StateFileError:
        return StateFileError(
            f"S3 refused {action} on {name} ({error_code(exc)}): {error_message(exc)}",
            where=self.where,
            todo="Fix what S3 names, then run again; nothing was changed",
        )

    def _unreachable(self, exc: BotoCoreError) -> StateFileError:
        return StateFileError(
            f"Cannot reach S3 for the state: {exc}",
            where=self.where,
            todo="Check the network (or AWS_ENDPOINT_URL), then run again; nothing was lost",
        )


def tls_only(bucket: str) -> dict[str, Any]:
    """Refuse every request not sent over TLS ("Enforce encryption of data in transit", S3 User Guide,
    https://docs.aws.amazon.com/AmazonS3/latest/userguide/security-best-practices.html)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }


class _Renewer:
    """Renews the lock's lease every lease/4 seconds until stopped; remembers a takeover for the next save."""

    def __init__(self, store: S3StateFile, body: bytes, etag: str) -> None:
        self.store = store
        self.body = body
        self.etag = etag
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="state-lock-lease", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def check(self) -> None:
        if self.lost:
            raise StateFileError(
                "Another run took over the state's lock while this one was still working (its lease ran out "
                "unrenewed); this run stopped before writing",
                where=f"{self.store.location.url}{LOCK_SUFFIX}",
                todo="Let the other run finish, then run again: the resources this run created are found by their "
                "names and tags",
            )

    def _run(self) -> None:
        interval = self.store.lease_seconds / RENEWALS_PER_LEASE
        while not self._stop.wait(interval):
            try:
                renewed = self.store.renew(self.body, self.etag)
            except (ClientError, BotoCoreError, StateFileError):
                continue  # a network blip: the next renewal comes well before the lease runs out
            if renewed is None:
                self.lost = True
                return
            self.etag = renewed


def _server_now(response: Any) -> datetime:
    """S3's own time (the answer's Date header), else this machine's."""
    date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    if date:
        try:
            return parsedate_to_datetime(date)
        except (TypeError, ValueError):
            pass
    return datetime.now(UTC)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _lease_from_environment() -> float:
    text = os.environ.get("DEPLOYER_LOCK_LEASE_SECONDS", "")
    try:
        value = float(text)
    except ValueError:
        return LEASE_SECONDS
    return value if value > 0 else LEASE_SECONDS
