"""The protocol every step follows, and what steps share.

A step owns one AWS resource. The runner asks it, in this order:

* `find`: the resource as it exists now, looked up by the identifiers in the
  state (checked with a describe call: it may have been deleted by hand), then
  by its deterministic name or, for EC2 resources that have no name, by the
  `deployer:stack` / `deployer:step` tags every resource gets at creation;
* `create` when nothing was found, recording identifiers through
  `StepContext.remember` the moment AWS returns them;
* `converge` when something was found: compare what was read with the settings
  and write only what differs (a no-op run makes no changing call);
* `wait` until the resource is usable (skipped with `--no-wait`);
* `delete` at teardown, where "already gone" counts as deleted.

Two optional parts: `check`, before anything is created (a refusal there changes
nothing: e.g. no hosted zone for the domain), and `retire`, at the end of provision:
a resource AWS cannot change in place (a certificate for another domain) is replaced
by a new one, and the step records the old one under SUPERSEDED until everything has
moved to the new one; `retire` then deletes it (and `delete` deletes both).
"""

from __future__ import annotations

import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from botocore.exceptions import ClientError

from deployer import zones
from deployer.clients import AwsClients, error_code
from deployer.clock import SYSTEM_CLOCK, Clock
from deployer.errors import DeployerError, ForeignResourceError, ResourceDriftError, StoppedError, WaitTimeoutError
from deployer.images import ImageBuilder
from deployer.ledger import Ledger
from deployer.output import Output
from deployer.retry import STILL_IN_USE, Retry, with_retries
from deployer.rollout import site_status
from deployer.settings import Settings
from deployer.state import Ids, State
from deployer.steps.aws import absent_if
from deployer.zones import Zone

LiveT = TypeVar("LiveT")
T = TypeVar("T")
ItemT = TypeVar("ItemT")

PLANNED = "planned"  # in a dry run, the identifiers of a resource that would be created
# In a step's identifiers: what the resource replaced, deleted by `Step.retire` at the end of provision.
SUPERSEDED = "superseded"

# Every resource carries these two tags (see deployer/steps/tags.py); EC2 resources are found by them.
STACK_TAG = "deployer:stack"
STEP_TAG = "deployer:step"
# IAM roles are global: they also carry the region whose stack made them (see Names in settings.py).
REGION_TAG = "deployer:region"


@dataclass(frozen=True)
class StepContext:
    """What a run is given: clients, settings, identity, output, time; frozen once built.

    What it changes lives in `ledger` (the state and its saves). A dry run is a context
    built with `dry_run=True` over a scratch ledger (see deployer/ledger.py).
    """

    clients: AwsClients
    settings: Settings
    ledger: Ledger
    account_id: str
    partition: str
    output: Output
    images: ImageBuilder | None = None
    dry_run: bool = False
    local: bool = False  # --local: the emulator has no registry, so images are built into the local engine only
    # The site's HTTP status at a URL, asked through a host when given (deployer/probe.py, `via`).
    probe: Callable[[str, str | None], int | None] = site_status
    clock: Clock = SYSTEM_CLOCK
    poll_seconds: float = 10.0
    # Set when a step of the run failed, or on Ctrl-C: the others end at their next AWS call or pause (parallel.py).
    # Each run of the runner gets its own (a copy of the context, all else shared).
    stop: threading.Event = field(default_factory=threading.Event, compare=False, repr=False)
    # The stack's steps in order (deployer/stack.py, given by the runner): where a new step's record goes.
    order: tuple[str, ...] = ()
    _zones: list[Zone] = field(default_factory=list, compare=False, repr=False)  # memo of the region's zones
    _lookups: dict[str, object] = field(default_factory=dict, compare=False, repr=False)  # see `once`
    # When (ctx.clock) this run created each step's resource: "not yet" answers about a resource
    # are retried only right after it was made (see `fresh`).
    _created: dict[str, float] = field(default_factory=dict, compare=False, repr=False)

    @property
    def state(self) -> State:
        return self.ledger.state

    def say(self, line: str) -> None:
        self.output.line(line)

    def pause(self, seconds: float) -> None:
        """Sleep between polls or retries; a step whose run is stopping (another step failed) ends here."""
        if self.stop.is_set():
            raise StoppedError("another step of this run failed")
        self.clock.sleep(seconds)

    def retry(self, call: Callable[[], T], *rules: Retry) -> T:
        """Run an AWS call, waiting out the answers `rules` call transient (see deployer/retry.py)."""
        return with_retries(call, rules, self.pause, self.clock.now, self.say)

    def delete_when_free(self, call: Callable[[], object], *gone: str) -> None:
        """A delete (or detach) that waits out "still in use" (STILL_IN_USE); a `gone` code means already done."""
        absent_if(lambda: self.retry(call, STILL_IN_USE), *gone)

    def change(self, changes: list[str], description: str, call: Callable[[], object]) -> None:
        """Make one change, described for the output; in a dry run, only describe it."""
        changes.append(description)
        if not self.dry_run:
            call()

    def ids(self, step: str) -> Ids:
        """Identifiers of an earlier step; the runner guarantees it ran."""
        recorded = self.state.get(step)
        if recorded is None:
            raise RuntimeError(f"step '{step}' has not run yet")
        if PLANNED in recorded:
            raise PlannedDependencyError(step)
        return recorded

    def recorded(self, step: str) -> Ids | None:
        """Identifiers of an earlier step, or None if it has none (yet)."""
        recorded = self.state.get(step)
        return None if recorded is None or PLANNED in recorded else recorded

    def remember(self, step: str, ids: Ids) -> None:
        """Record identifiers and save at once, so a crash cannot lose a created resource; a new step takes its
        place in the stack's order (`order`), whenever it finished."""
        self.ledger.record(step, ids, self.order)

    def mark_created(self, step: str) -> None:
        """The runner notes that this run created the step's resource just now."""
        self._created[step] = self.clock.now()

    def fresh(self, within: float, *steps: str) -> bool:
        """Whether this run created one of these steps' resources less than `within` seconds ago.

        AWS answers a new resource that is not visible yet with the same code as a wrong one
        (e.g. SubnetNotFound): only a resource made a moment ago makes that answer "not yet".
        """
        now = self.clock.now()
        return any(step in self._created and now - self._created[step] < within for step in steps)

    def once(self, key: str, lookup: Callable[[], T]) -> T:
        """A read that is asked once per run (e.g. the hosted zone of the domain), then remembered."""
        if key not in self._lookups:
            self._lookups[key] = lookup()
        return self._lookups[key]  # type: ignore[return-value]  # stored by this method under this key

    def client_token(self, step: str, *parts: str) -> str:
        """A deterministic idempotency token: the same request on a re-run sends the same token."""
        seed = "/".join((self.account_id, self.clients.region, self.settings.stack, step, *parts))
        return str(uuid.uuid5(uuid.NAMESPACE_URL, seed))

    def region_zones(self) -> list[Zone]:
        """The region's availability zones (not Local or Wavelength Zones), asked once per run."""
        if not self._zones:
            answer = self.clients.ec2.describe_availability_zones(  # no paginator: one answer holds every zone
                Filters=[{"Name": "zone-type", "Values": ["availability-zone"]}]
            )
            self._zones[:] = [
                Zone(z["ZoneName"], z["ZoneId"], z.get("State", "available"))
                for z in answer["AvailabilityZones"]
                if "ZoneName" in z and "ZoneId" in z
            ]
        return self._zones

    def availability_zones(self) -> list[str]:
        """The names of the two zones for the subnets: the ones the settings name (by name or zone ID,
        checked), else the first two zone IDs where Fargate runs (deployer/zones.py)."""
        chosen = zones.choose(self.clients.region, self.region_zones(), self.settings.availability_zones)
        return [zone.name for zone in chosen]

    def poll(self, what: str, timeout: float, check: Callable[[], str | None], every: float = 0.0) -> None:
        """Call `check` until it returns None (done); it returns a status line otherwise. Between calls,
        `poll_seconds`, or `every` if longer (a wait known to take minutes need not ask as often)."""
        deadline = self.clock.now() + timeout
        last = ""
        while True:
            status = check()
            if status is None:
                return
            if status != last:
                self.say(f"  waiting for {what}: {status}")
                last = status
            if self.clock.now() >= deadline:
                raise WaitTimeoutError(
                    f"Gave up waiting for {what} after {timeout:.0f} s (last status: {status})",
                    where="the wait after the API calls; everything created is recorded in the state file",
                    todo="Look at the resource in the AWS console, then run the same command again "
                    "(or raise service_wait_timeout)",
                )
            self._pause(what, deadline - timeout, max(self.poll_seconds, every))

    def _pause(self, what: str, started: float, seconds: float) -> None:
        """Sleep until the next poll; on a terminal, show the elapsed time every second meanwhile."""
        if not self.output.terminal:
            self.pause(seconds)
            return
        remaining = seconds
        while remaining > 0:
            self.output.live(f"  waiting for {what}: {self.clock.now() - started:.0f} s elapsed")
            step = min(1.0, remaining)
            self.pause(step)
            remaining -= step
        self.output.live("")


def without_superseded(ids: Ids) -> Ids:
    """A step's identifiers without what its resource replaced (once `retire` has deleted that)."""
    return {key: value for key, value in ids.items() if key != SUPERSEDED}


class PlannedDependencyError(Exception):
    """In a dry run: a step needs a resource that would only be created by the real run."""

    def __init__(self, step: str) -> None:
        super().__init__(step)
        self.step = step


@dataclass(frozen=True)
class Existing(Generic[LiveT]):
    """A resource found in AWS: its identifiers and what describe returned for it."""

    ids: Ids
    live: LiveT


@dataclass(frozen=True)
class Converged:
    """The outcome of `converge`: possibly new identifiers, and what was changed."""

    ids: Ids
    changes: list[str] = field(default_factory=list)


class Step(ABC, Generic[LiveT]):
    """One resource: find, create, converge, wait, delete."""

    name: str
    resource: str
    # Told to stop when its run stops (ctx.images.cancel), it records nothing afterwards: a failing run does not
    # wait for it to end (deployer/parallel.py, Stopping.abandon).
    cancellable: bool = False
    # The steps this one relies on: every step whose identifiers it reads (StepContext.ids, recorded, fresh) when
    # it is checked, created, converged, waited for or deleted, and every step AWS requires to exist first (said
    # where declared). Named directly, not through another need; a step the settings turn off counts as done.
    # Teardown deletes a step's resource before those of its needs (deployer/graph.py; tests/test_graph.py
    # checks every read of a real run against this).
    needs: tuple[str, ...] = ()
    # Its wait matters only for serving, not for the steps after it: done at the end.
    wait_deferred: bool = False
    # Turned off by the settings, it is removed before any step changes anything (not after the site serves):
    # it would act on what the steps converge, e.g. a scaler changing the count the service is set to.
    removed_first: bool = False

    def find(self, ctx: StepContext, recorded: Ids | None) -> Existing[LiveT] | None:
        if recorded is not None:
            found = self.find_recorded(ctx, recorded)
            if found is not None:
                return found
        return self.find_unrecorded(ctx)

    @abstractmethod
    def find_recorded(self, ctx: StepContext, ids: Ids) -> Existing[LiveT] | None:
        """Look the resource up by its recorded identifiers."""

    @abstractmethod
    def find_unrecorded(self, ctx: StepContext) -> Existing[LiveT] | None:
        """Look the resource up by its deterministic name, or by its tags."""

    @abstractmethod
    def create(self, ctx: StepContext) -> Ids:
        """Create the resource, tagged, and return its identifiers."""

    def converge(self, ctx: StepContext, existing: Existing[LiveT]) -> Converged:
        return Converged(existing.ids)

    def wait(self, ctx: StepContext, ids: Ids) -> None:
        return None

    def wanted(self, settings: Settings) -> bool:
        """Whether these settings want the resource: one a setting turns off is skipped, and removed if it exists."""
        return True

    def check(self, ctx: StepContext) -> None:
        """Before the run changes anything (provision and the dry run): refuse what AWS's answers show cannot
        work (read calls only). Called for every wanted step, in order."""
        return None

    def retire(self, ctx: StepContext, ids: Ids) -> Ids:
        """At the end of provision, once everything uses the new resource: delete what it replaced (recorded
        under SUPERSEDED) and return the identifiers without it. Only called when SUPERSEDED is recorded."""
        return ids

    @abstractmethod
    def delete(self, ctx: StepContext, ids: Ids) -> str | None:
        """Delete the resource; a resource already gone counts as deleted. Returns the outcome to report
        when it is not "deleted" (a resource that is only forgotten)."""

    def collision(self, name: str, tags: dict[str, str]) -> ForeignResourceError:
        """The refusal for a resource that has our name but not our tags (see tags.adopt)."""
        stack = tags.get(STACK_TAG)
        whose = (
            f"tagged {STACK_TAG}={stack}" + (f", {REGION_TAG}={tags[REGION_TAG]}" if REGION_TAG in tags else "")
            if stack
            else f"without the {STACK_TAG} tag"
        )
        return ForeignResourceError(
            self.name,
            self.resource,
            name,
            what=f"A {self.resource} named {name} already exists, {whose}: this stack did not make it, so it is "
            "not adopted, changed or deleted",
            where=f"step '{self.name}', {self.resource} {name}",
            todo=f"If it is not needed, delete the {self.resource} {name} yourself and run again; otherwise deploy "
            "under another stack name (--stack NAME). If this stack did make it, add the tags "
            f"{STACK_TAG}=<stack> (and for IAM roles {REGION_TAG}=<region>) to it and run again",
        )

    def drift(self, ids: Ids, what: str) -> ResourceDriftError:
        return ResourceDriftError(
            f"The {self.resource} {ids.get('id') or ids.get('arn') or ids.get('name')} {what}, "
            "and AWS cannot change that in place",
            where=f"step '{self.name}'",
            todo="Put the setting back, or run teardown.py and provision again to rebuild the stack with the new value",
        )


def is_code(exc: ClientError, *codes: str) -> bool:
    return error_code(exc) in codes


def single(items: Sequence[ItemT], what: str, ids: Callable[[ItemT], str]) -> ItemT | None:
    """The one match of a lookup; several matches mean the account holds duplicates."""
    if not items:
        return None
    if len(items) > 1:
        found = ", ".join(ids(item) for item in items)
        raise DeployerError(
            f"Found {len(items)} {what} resources where one was expected: {found}",
            where="the lookup by tag or name",
            todo="Delete the ones that are not recorded in the state file, then run again",
        )
    return items[0]
