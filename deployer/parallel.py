"""Run a graph of steps, several at once: the runner's only threads.

The flow (`run`): the main thread keeps the graph's bookkeeping; every step whose needs have all finished is
ready, and while fewer than `Scheduler.slots` steps run, the ready step the scheduler picks (by default the
earliest in the graph's order) starts on a daemon thread of its own. A finished thread puts its outcome on a
queue; the main thread takes it, marks the step done (which may make others ready) and starts the next. A
step's work may hand back a *tail* (a deferred wait: the load balancer turning active, the rollout, the alias
reaching the name servers): it runs on its own thread, outside the slots (it only polls, one read call every
few seconds), and the run ends when every step and every tail has ended; the steps that need that step do not
wait for its tail.

Failures: the first failure stops new starts; `Stopping.event` is set so that running steps and tails end at
their next AWS call (deployer/clients.py, refused_once_stopped) or wait or retry pause (`StepContext.pause`),
and the main thread waits for them, so their last records are saved; a step that records nothing once told to
stop (the image build, cancelled) is not waited for. Then one error: the failure itself when there is one (its
message and exit code unchanged), else `StepsFailedError` naming every one. A bug (an exception that is not a
`DeployerError`) or a process-level exception (a `BaseException` such as a simulated crash) is raised as it
is, after the wait.

Interrupts: Ctrl-C reaches the main thread, which waits on the queue in 0.1 s slices, so it sees it at once;
`Stopping.event` is set, and the running steps get up to `SETTLE_SECONDS` to end (a step that AWS has just
answered records what it made, `StepContext.remember`, then ends at its next call or pause), so the state holds every
resource that exists; then the command exits (deployer/cli.py) without waiting for the daemon threads.

Why threads and a bound: the work is waiting on AWS (HTTP calls and polls), which threads overlap well. The
bound keeps the run far from AWS's per-account request rates, which apply per API and per Region: EC2's
token buckets (e.g. 100 requests and a refill of 20 per second for a non-mutating call; "Request throttling
for the Amazon EC2 API", https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html), ECS's
sustained and burst rates ("Request throttling for the Amazon ECS API",
https://docs.aws.amazon.com/AmazonECS/latest/APIReference/request-throttling.html) and Elastic Load
Balancing's buckets ("Request throttling for the Elastic Load Balancing API",
https://docs.aws.amazon.com/elasticloadbalancing/latest/userguide/elb-api-throttling.html). With
`DEFAULT_SLOTS` steps each making one call at a time, and an AWS call taking at least ~0.1 s, the run sends
at most ~40 requests a second spread over a dozen APIs, and a whole provision of the default stack sends 81
(bench/api_calls.py): no one API's bucket can be emptied. Terraform's default is 10 at once (`-parallelism`);
CloudFormation and Pulumi do not bound it.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Literal

from deployer.errors import DeployerError, StoppedError
from deployer.graph import Graph
from deployer.settings import DEFAULT_PARALLELISM as DEFAULT_SLOTS

# How often the main thread looks up from the queue: the bound on how late it sees a Ctrl-C.
TICK_SECONDS = 0.1
# After a Ctrl-C, how long the running steps get to record what AWS already made for them (a call answered a
# moment ago) before the command exits; inside the 2 s within which a Ctrl-C must end the command.
SETTLE_SECONDS = 1.0

Event = Literal["start", "finish"]
# A step's work: run it, and hand back its tail (a wait nothing else needs) or None.
Work = Callable[[str], Callable[[], None] | None]


def first(ready: Sequence[str]) -> str:
    """The default pick: the ready step earliest in the graph's order (`ready` is kept in that order)."""
    return ready[0]


@dataclass(frozen=True)
class Scheduler:
    """How a run uses its threads: at most `slots` steps at once; `pick` chooses which ready step starts next
    (tests pass a seeded random choice); `observe` hears ("start" | "finish", step) as the main thread sees them,
    so a dependent's start is always heard after its needs' finish."""

    slots: int = DEFAULT_SLOTS
    pick: Callable[[Sequence[str]], str] = first
    observe: Callable[[Event, str], None] | None = None

    def __post_init__(self) -> None:
        if self.slots < 1:
            raise ValueError(f"slots must be at least 1, not {self.slots}")


# The runner's default (a frozen Scheduler holds no run's state, so one is shared).
DEFAULT_SCHEDULER = Scheduler()


class StepsFailedError(DeployerError):
    """Several steps failed in one run; each is named with its own message."""

    def __init__(self, failures: Sequence[tuple[str, DeployerError]]) -> None:
        self.failures = list(failures)
        named = " ".join(f"({index}) step '{name}': {error.message}" for index, (name, error) in enumerate(failures, 1))
        super().__init__(
            what=f"{len(failures)} steps failed: {named}",
            todo="Fix each cause, then run the same command again; everything created is recorded in the state file",
        )


@dataclass(frozen=True)
class _Outcome:
    name: str
    tail: bool
    after: Callable[[], None] | None = None
    error: BaseException | None = None


class _Run:
    """One walk of the graph: what is ready, running and done; the main thread alone changes it."""

    def __init__(self, graph: Graph, scheduler: Scheduler, work: Work, stopping: Stopping) -> None:
        self.graph, self.scheduler, self.work, self.stopping = graph, scheduler, work, stopping
        self.waiting = {name: set(graph.needs[name]) for name in graph.names}
        self.users = graph.dependents()
        self.ready = [name for name in graph.names if not self.waiting[name]]
        self.running: set[str] = set()
        self.tails: set[str] = set()
        self.failures: list[tuple[str, BaseException]] = []
        self.outcomes: queue.Queue[_Outcome] = queue.Queue()

    def walk(self) -> None:
        while (self.ready and not self.failures) or self._awaited() or self.tails:
            self._start_ready()
            self._show()
            self._finish(self._next())

    def _start_ready(self) -> None:
        while self.ready and not self.failures and len(self.running) < self.scheduler.slots:
            name = self.scheduler.pick(self.ready)
            self.ready.remove(name)
            self.running.add(name)
            if self.scheduler.observe is not None:
                self.scheduler.observe("start", name)
            self._spawn(name, partial(self.work, name), tail=False)

    def _spawn(self, name: str, job: Callable[[], Callable[[], None] | None], tail: bool) -> None:
        def body() -> None:
            try:
                self.outcomes.put(_Outcome(name, tail, after=job()))
            except BaseException as exc:  # handed to the main thread, which decides
                self.outcomes.put(_Outcome(name, tail, error=exc))

        kind = "tail" if tail else "step"
        threading.Thread(target=body, name=f"deployer-{kind}-{name}", daemon=True).start()

    def _next(self) -> _Outcome:
        """The next outcome; waits in slices so that a Ctrl-C reaches the main thread at once."""
        while True:
            try:
                return self.outcomes.get(timeout=TICK_SECONDS)
            except queue.Empty:
                continue

    def _finish(self, outcome: _Outcome) -> None:
        (self.tails if outcome.tail else self.running).discard(outcome.name)
        if outcome.error is not None:
            if not (self.failures and outcome.name in self.stopping.abandon):  # told to stop, it stopped
                self.failures.append((outcome.name, outcome.error))
            self._stop()
            return
        if outcome.tail:
            return
        if self.scheduler.observe is not None:
            self.scheduler.observe("finish", outcome.name)
        if outcome.after is not None and not self.failures:
            self.tails.add(outcome.name)
            self._spawn(outcome.name, outcome.after, tail=True)
        for user in self.users[outcome.name]:
            self.waiting[user].discard(outcome.name)
            if not self.waiting[user]:
                self.ready.append(user)
        self.ready.sort(key=self.graph.names.index)

    def _awaited(self) -> set[str]:
        """The running steps the walk waits for: all of them, or once stopping, all but the abandoned ones."""
        return self.running - self.stopping.abandon if self.failures else self.running

    def _settle(self, until: float) -> None:
        """After an interrupt: take outcomes until the running steps (but the abandoned) and tails have ended, or
        `until` (time.monotonic). A step ends at its next pause, once its last call's answer is recorded."""
        while (self.running - self.stopping.abandon) or self.tails:
            try:
                outcome = self.outcomes.get(timeout=max(0.0, until - time.monotonic()))
            except queue.Empty:
                return
            (self.tails if outcome.tail else self.running).discard(outcome.name)

    def _stop(self) -> None:
        if not self.stopping.event.is_set():
            self.stopping.event.set()
            self.stopping.then()

    def _show(self) -> None:
        busy = sorted(self.running, key=self.graph.names.index)
        waits = sorted(self.tails, key=self.graph.names.index)
        parts = ([f"running: {', '.join(busy)}"] if busy else []) + ([f"waiting: {', '.join(waits)}"] if waits else [])
        self.stopping.live("; ".join(parts))


@dataclass(frozen=True)
class Stopping:
    """How a run stops and shows itself: `event` is set on the first failure or an interrupt (steps end at their
    next pause, StepContext.pause), then `then` runs once (e.g. tell an image build to stop); steps in `abandon`
    are not waited for once stopping (they record nothing after being told to stop); `live` shows what runs."""

    event: threading.Event
    live: Callable[[str], None]
    then: Callable[[], None] = lambda: None
    abandon: frozenset[str] = frozenset()


def run(graph: Graph, work: Work, scheduler: Scheduler, stopping: Stopping) -> None:
    """Walk `graph` (see the module's docstring)."""
    walk = _Run(graph, scheduler, work, stopping)
    try:
        walk.walk()
    except BaseException:
        walk._stop()
        walk._settle(time.monotonic() + SETTLE_SECONDS)  # a second Ctrl-C here still gets out at once
        raise
    finally:
        stopping.live("")
    if walk.failures:
        raise _one_error(walk.failures)


def _one_error(failures: Sequence[tuple[str, BaseException]]) -> BaseException:
    """What the run raises: a bug or a process-level exception as it is (the first), the one failure as it is,
    or several explained failures together."""
    real = [(name, error) for name, error in failures if not isinstance(error, StoppedError)]
    for _, error in real:
        if not isinstance(error, DeployerError):
            return error
    explained = [(name, error) for name, error in real if isinstance(error, DeployerError)]
    if len(explained) == 1:
        return explained[0][1]
    if not explained:
        return failures[0][1]
    return StepsFailedError(explained)
