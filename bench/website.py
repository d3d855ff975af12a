"""Throughput and latency of the site: gunicorn in the container against Flask's development server.

What it measures
    Requests per second and latency (p50, p90, p99) of /, /about and /projects in turn, served by
    (1) gunicorn in the site's image (built through `ImageBuilder` on flask-deployer/base:bookworm,
    run as the task definition runs it: its CMD and gunicorn.conf.py, host networking, only PORT
    set) and (2) Flask's development server (werkzeug, threaded) importing website/app.py. `wrk`
    loads each on a free loopback port with 32 keep-alive connections on 2 threads (a Lua script
    rotates the paths and prints wrk's histogram as JSON), after a 200 from every page and an
    uncounted warm-up; `--rounds` rounds of `--duration` s alternate the order, so a burst of other
    load hits both, and the figures are the medians. Each run also shows the CPU cores the server,
    wrk and the whole machine used (from /proc); "rest" is neither (for gunicorn mostly dockerd
    carrying its access log). Over a quarter of a core of "rest" during the development server's
    runs means other processes competed: the report warns that the figures are disturbed.

Capacity of one task (`--only capacity` runs this part alone)
    What one ECS task of the configured size serves, and what `scale_cpu_percent` means in requests. The
    size is deployer.settings' (cpu 256 = 0.25 vCPU, memory 512 MiB by default; deploy.toml beside
    provision.py or --config, then --cpu/--memory). The same image runs as the task definition runs it:
    the CPU units as Docker's nano_cpus (`--cpus`: a CFS quota per 100 ms period, 1024 units = one CPU,
    https://docs.docker.com/engine/containers/resource_constraints/#cpu; Fargate's task CPU is a hard
    limit too), the MiB as mem_limit, read-only root with a tmpfs at /tmp, every capability dropped, the
    site's user, its access log in non-blocking mode as awslogs writes it, and the task definition's
    health check (a Python process every 10 s, inside the limit; `--health-check none` leaves it out, to
    tell the site's own capacity from the stalls the check's CPU bursts cause).

    Method: wrk offers no fixed rate (wrk2 does, and is not packaged), so the rate is set by pacing. A
    closed-loop run (32 connections, no pause) first finds the saturated rate S. Then each step offers a
    rate R: C = R/2 keep-alive connections (at least 4), each pausing a random, exponentially
    distributed think time of mean C/R s before each request (wrk's Lua `delay()`), so requests arrive
    like many independent clients' (near Poisson) and the pause dwarfs the latency, keeping the offered
    rate near R. A step passes with p99 <= 50 ms, no failed request and R achieved (within 10 % or the
    noise of a Poisson count, see SHORTFALL). Steps go up in tenths of S until one fails and the CPU has
    passed `scale_cpu_percent` of the limit; two halvings between the last step that passed and the
    first that failed narrow the capacity: the highest achieved rate whose step and every lower step
    passed. The container's CPU (cgroup cpuacct usage, from the engine's stats) over each step, divided
    by the limit, is ECS's CPUUtilization of that task (CPU units used over the task definition's,
    https://docs.aws.amazon.com/AmazonECS/latest/developerguide/service_utilization.html, whose Average
    over the tasks target tracking follows); its linear interpolation between the two steps around
    `scale_cpu_percent` gives the per-task rate at which target tracking adds tasks, and a last step at
    that rate measures its CPU and p99. The share of 100 ms periods in which the quota ran out
    ("throttled") explains the tail: a request caught by it waits for the next period. The host's cores
    busy with neither the container nor wrk (from /proc/stat) are shown too: over a quarter of a core in
    a step marks the figures as disturbed. The host's CPU is not Fargate's: the figures are an order of
    magnitude for capacity planning, not a promise.

Targets
    gunicorn requests/s >= 2 x the development server's; gunicorn p99 <= 50 ms; no failed requests
    (socket errors, timeouts, non-2xx/3xx). Capacity: a rate found with p99 <= 50 ms and no failed
    request; p99 <= 50 ms at the scale_cpu_percent rate (else the scaler adds tasks only after the
    latency has gone). Skipped without the engine or the base image (scripts/setup-docker.sh) or wrk
    (`apt-get install -y wrk`). Only 127.0.0.1 is contacted.

How to run it (from the repository root, in its virtualenv; about 40 s on a quiet machine, plus
about 15 steps of --duration for the capacity)
    python bench/website.py [--json] [--quiet] [--rounds 5] [--duration 10] [--connections 32]
    python bench/website.py --env WEB_CONCURRENCY=3 --env GUNICORN_THREADS=2   # other container settings
    python bench/website.py --only capacity --duration 20 [--config deploy.toml] [--cpu 512 --memory 1024]
    (steps shorter than the health check's 10 s interval may miss its stalls: give --duration >= 10)
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import docker

from bench import common
from deployer.images import BuildSpec, ImageBuilder
from deployer.local import NANOSECONDS, docker_healthcheck, free_port
from deployer.settings import CONFIG_FILE_NAME, PROJECT_DIR, Settings, load_settings
from deployer.steps.ecs import LOG_MAX_BUFFER_SIZE, LOG_MODE, SCRATCH_PATH, SITE_HEALTH_CHECK, SITE_USER

if TYPE_CHECKING:
    from docker.models.containers import Container

PAGES = ("/", "/about", "/projects")
WRK = ["-t", "2", "--timeout", "2s"]
MARKER = "WRK-JSON "
WRK_SCRIPT = """
local paths = {PATHS}
local i = 0
request = function() i = i % #paths + 1; return wrk.format("GET", paths[i]) end
done = function(s, latency, requests)
  local e = s.errors
  io.write(string.format('MARKER{"requests":%d,"us":%d,"errors":%d,"p50":%d,"p90":%d,"p99":%d,"max":%d}\\n',
    s.requests, s.duration, e.connect + e.read + e.write + e.status + e.timeout, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency.max))
end
""".replace("PATHS", ", ".join(f'"{page}"' for page in PAGES)).replace("MARKER", MARKER)
# Pacing for the capacity steps (see the docstring): `think` is the mean pause in ms before each request, given
# after the URL (`wrk ... URL -- MS`); each thread seeds its own random numbers. A pause is cut at 4 s (8 x the
# usual mean): below gunicorn's keepalive (5 s, website/gunicorn.conf.py), so that no request races the server's
# closing of an idle connection, which wrk would count as a failed request.
PACED_SCRIPT = (
    WRK_SCRIPT
    + """
local threads = 0
setup = function(thread) threads = threads + 1; thread:set("seed", threads) end
init = function(args) think = tonumber(args[1]); math.randomseed(os.time() * 1000 + seed) end
delay = function() return math.min(-math.log(1 - math.random()) * think, 4000) end
"""
)
P99_LIMIT_MS = 50.0
SATURATING_CONNECTIONS = 32
THINK_SECONDS = 0.5  # a paced connection's mean pause: 100 x a 5 ms answer, so latency barely slows the rate
# A step is saturated when it achieves less than its offered rate by more than 10 % or 3 standard deviations of
# a Poisson count over the step (sqrt(R / seconds) req/s), whichever is larger: short steps at low rates vary.
SHORTFALL = 0.1
STEPS = 10  # the upward steps: tenths of the saturated rate
HALVINGS = 2
OTHER_LOAD = 0.25  # cores busy with neither the container nor wrk: more in a step means the figures are disturbed
# The development server, as `flask run` would start it but threaded and without the reloader or debugger.
DEV_SERVER = "import sys; sys.path.insert(0, sys.argv[1]); from app import app; "
DEV_SERVER += "app.run(host='127.0.0.1', port=int(sys.argv[2]), threaded=True, debug=False, use_reloader=False)"


@dataclass
class Server:
    name: str
    description: str
    url: str
    pids: Callable[[], list[int]]
    runs: list[dict[str, float]]
    container: Container | None = None

    def median(self, key: str) -> float:
        return statistics.median(run[key] for run in self.runs)


def wait_until_up(server: Server, alive: Callable[[], bool], logs: Callable[[], str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and alive():
        try:
            for page in ("/healthz", *PAGES):  # each must answer 200 (urlopen raises on an error status)
                urllib.request.urlopen(f"{server.url}{page}", timeout=5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise common.BenchError(f"{server.name} did not answer {server.url} with 200 on every page:\n{logs()[-3000:]}")


@contextmanager
def gunicorn(
    client: docker.DockerClient, image: str, env: dict[str, str], limits: dict[str, Any] | None = None
) -> Iterator[Server]:
    """The site's container on a free loopback port; `limits`: more `containers.run` arguments (`task_limits`)."""
    port = free_port()
    environment = {"PORT": str(port), **env}
    name = f"bench-website-{uuid.uuid4().hex[:8]}"
    container = client.containers.run(
        image, environment=environment, network_mode="host", detach=True, name=name, **(limits or {})
    )
    try:

        def pids() -> list[int]:
            top = cast("dict[str, Any]", container.top())  # the stubs say str; the engine answers a JSON object
            return [int(process[top["Titles"].index("PID")]) for process in top["Processes"]]

        settings = " ".join(f"{key}={value}" for key, value in environment.items())
        description = f"gunicorn in the container ({settings}; the rest as gunicorn.conf.py says)"
        server = Server("gunicorn", description, f"http://127.0.0.1:{port}", pids, [], container)

        def running() -> bool:
            container.reload()
            return container.status in {"created", "running"}

        wait_until_up(server, running, lambda: bytes(container.logs(tail=30)).decode(errors="replace"))
        yield server
    finally:
        container.remove(force=True)


@contextmanager
def flask_dev(scratch: Path) -> Iterator[Server]:
    port, log = free_port(), scratch / "flask-dev.log"
    env = {key: value for key, value in os.environ.items() if not key.startswith("FLASK_")}
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-c", DEV_SERVER, str(common.WEBSITE), str(port)],
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**env, "PYTHONDONTWRITEBYTECODE": "1"},  # nothing written into website/
        )
    try:
        description = f"Flask's development server (werkzeug, threaded) on Python {sys.version.split()[0]}"
        server = Server("flask-dev", description, f"http://127.0.0.1:{port}", lambda: [process.pid], [])
        wait_until_up(server, lambda: process.poll() is None, lambda: log.read_text(errors="replace"))
        yield server
    finally:
        process.terminate()
        process.wait(timeout=10)


def cpu_now(pids: list[int]) -> tuple[float, float, float]:
    """CPU seconds so far: the server's processes (utime + stime), wrk's (our children), the machine's busy.
    A process gone since `pids` was listed (the image's HEALTHCHECK, run every 30 s) is left out."""
    server = [stat[11:13] for stat in map(process_stat, pids) if stat]
    machine = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    wrk = resource.getrusage(resource.RUSAGE_CHILDREN)
    ticks = os.sysconf("SC_CLK_TCK")
    busy = sum(machine) - machine[3] - machine[4]  # less idle and iowait
    return sum(int(u) + int(s) for u, s in server) / ticks, wrk.ru_utime + wrk.ru_stime, busy / ticks


def process_stat(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command's name; none when the process has exited."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return []


def run_wrk(
    script: Path, server: Server, seconds: int, connections: int, script_args: tuple[str, ...] = ()
) -> dict[str, float]:
    pids, started = server.pids(), time.monotonic()
    before = cpu_now(pids)
    command = ["wrk", *WRK, "-c", str(connections), "-d", f"{seconds}s", "-s", str(script), server.url]
    command += ["--", *script_args] if script_args else []
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=False)
    cores = [(after - was) / (time.monotonic() - started) for was, after in zip(before, cpu_now(pids), strict=True)]
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARKER)]
    if done.returncode != 0 or not lines:
        raise common.BenchError(f"wrk failed on {server.name} (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
    data = json.loads(lines[-1].removeprefix(MARKER))
    figures = {key: data[key] / 1000 for key in ("p50", "p90", "p99", "max")}
    rest = max(0.0, cores[2] - cores[0] - cores[1])
    return {"rps": data["requests"] / data["us"] * 1e6, **figures, "errors": data["errors"], "server_cores": cores[0],
            "wrk_cores": cores[1], "machine_cores": cores[2], "rest_cores": rest}  # fmt: skip


def measure(args: argparse.Namespace, output: common.BenchOutput) -> common.Result:
    if shutil.which("wrk") is None:
        raise common.MissingPrerequisiteError("wrk is not installed (Debian: apt-get install -y wrk)")
    settings = task_settings(args)  # a bad size fails before the build
    client = common.docker_engine(timeout=600)
    spec = BuildSpec(common.WEBSITE, "Dockerfile", {"BASE_IMAGE": common.BASE_IMAGE})
    image = f"flask-deployer/bench-website:{spec.content_tag()}"  # an unchanged site reuses the build cache
    images = common.LocalImages(client, noprune=True, references=[image])
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-website-") as folder, ExitStack() as stack:
        stack.callback(images.remove_all)
        ImageBuilder(output, connect=lambda: client).build(spec, image)
        if args.only in (None, "compare"):
            results.append(compare(args, output, client, image, Path(folder)))
        if args.only in (None, "capacity"):
            results.append(capacity(args, output, client, image, Path(folder), settings=settings))
    lines = [line for result in results for line in result.lines]
    figures = {key: value for result in results for key, value in result.figures.items()}
    return common.Result(lines, figures, [target for result in results for target in result.targets])


def compare(
    args: argparse.Namespace, output: common.BenchOutput, client: docker.DockerClient, image: str, folder: Path
) -> common.Result:
    """gunicorn in the container against Flask's development server, without limits (the module's first part)."""
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    script = folder / "pages.lua"
    script.write_text(WRK_SCRIPT)
    env = dict(pair.split("=", 1) for pair in args.env)
    with ExitStack() as stack:
        servers = [stack.enter_context(flask_dev(folder)), stack.enter_context(gunicorn(client, image, env))]
        for server in servers:
            output.line(f"== {server.name}: {server.url}, warm-up 3 s (not counted)")
            run_wrk(script, server, 3, args.connections)
        for number in range(args.rounds):
            for server in servers if number % 2 == 0 else servers[::-1]:
                server.runs.append(run := run_wrk(script, server, args.duration, args.connections))
                output.line(f"   round {number + 1} {server.name}: {run['rps']:.0f} req/s, p99 {run['p99']:.1f} ms")
    dev, gunicorn_server = servers
    rows = [f"{args.connections} connections, pages {', '.join(PAGES)} in turn; {args.rounds} rounds of "]
    rows[0] += f"{args.duration} s per server (medians below); wrk 2 threads; image {image}; load average {load}"
    for server in servers:
        errors = sum(run["errors"] for run in server.runs)
        rows += [
            "",
            f"{server.name}: {server.description}",
            f"  {server.median('rps'):8.0f} req/s   p50 {server.median('p50'):6.1f} ms   ",
        ]
        rows[-1] += f"p99 {server.median('p99'):6.1f} ms   failed {errors:.0f}"
        rows += [
            f"    round {n}: {r['rps']:7.0f} req/s  p50 {r['p50']:5.1f}  p90 {r['p90']:5.1f}  p99 {r['p99']:5.1f}  max "
            f"{r['max']:6.1f} ms  CPU cores: server {r['server_cores']:.2f}, wrk {r['wrk_cores']:.2f}, machine "
            f"{r['machine_cores']:.2f} (rest {r['rest_cores']:.2f})"
            for n, r in enumerate(server.runs, 1)
        ]
    other = max(run["rest_cores"] for run in dev.runs)  # no container log traffic while flask-dev runs
    if other > 0.25:
        rows += ["", f"warning: up to {other:.2f} cores were busy with other processes; the figures are disturbed"]
    ratio = gunicorn_server.median("rps") / dev.median("rps")
    targets = [
        common.Target("gunicorn / flask-dev requests/s", ratio, 2.0, ">=", "x", 2),
        common.Target("gunicorn p99 latency", gunicorn_server.median("p99"), 50.0, unit=" ms", decimals=2),
        common.Target("failed requests (both servers)", sum(run["errors"] for s in servers for run in s.runs), 0),
    ]
    figures = {"image": image, "ratio": ratio, "other_load_cores": other, "disturbed": other > 0.25}
    return common.Result([*rows, ""], {**figures, "servers": {s.name: s.runs for s in servers}}, targets)


def task_settings(args: argparse.Namespace) -> Settings:
    """The deployer's settings (defaults < deploy.toml or --config < --cpu/--memory), validated as a deploy would."""
    config = args.config if args.config is not None else PROJECT_DIR / CONFIG_FILE_NAME
    if args.config is not None and not config.is_file():
        raise common.BenchError(f"the settings file {config} does not exist")
    return load_settings(config, {"cpu": args.cpu, "memory": args.memory})


def task_limits(settings: Settings, health_check: bool = True) -> dict[str, Any]:
    """`containers.run` arguments for the task definition's limits and confinement (deployer/steps/ecs.py):
    CPU units as nano_cpus (1024 units = one CPU, as deployer/local.py), MiB as mem_limit, the read-only root with
    a tmpfs at the scratch path, no capability, the site's user, stdout in the awslogs driver's non-blocking mode,
    and the task definition's health check (a Python process every 10 s, not the image's every 30 s): it runs
    inside the task's CPU limit and takes its share of the quota. Without `health_check`, no health check at all
    (`--health-check none`: what the site itself serves)."""
    return {
        "nano_cpus": settings.cpu * NANOSECONDS // 1024,
        "mem_limit": f"{settings.memory}m",
        "read_only": True,
        "tmpfs": {SCRATCH_PATH: ""},
        "cap_drop": ["ALL"],
        "user": SITE_USER,
        "log_config": {"Type": "json-file", "Config": {"mode": LOG_MODE, "max-buffer-size": LOG_MAX_BUFFER_SIZE}},
        "healthcheck": docker_healthcheck(SITE_HEALTH_CHECK) if health_check else {"test": ["NONE"]},
    }


@dataclass(frozen=True)
class Usage:
    """The container's cgroup counters (the engine's stats): CPU seconds, CFS periods, throttled ones, peak memory."""

    cpu_seconds: float
    periods: int
    throttled: int
    memory: int

    @classmethod
    def of(cls, container: Container) -> Usage:
        stats = cast("dict[str, Any]", container.stats(stream=False, one_shot=True))  # type: ignore[no-untyped-call]
        cpu, memory = stats["cpu_stats"], stats["memory_stats"]
        throttling = cpu.get("throttling_data") or {}
        peak = memory.get("max_usage") or memory.get("usage") or 0  # cgroup v2 has no max_usage
        return cls(
            cpu["cpu_usage"]["total_usage"] / NANOSECONDS,
            throttling.get("periods", 0),
            throttling.get("throttled_periods", 0),
            peak,
        )


@dataclass
class Probe:
    """Runs one load step against the limited container and adds its CPU figures to wrk's."""

    script: Path
    paced: Path
    server: Server
    seconds: int
    vcpu: float

    def step(self, rate: float | None) -> dict[str, float]:
        """`rate` req/s offered by paced connections (see the module's docstring), or None: closed loop, saturating."""
        container = cast("Container", self.server.container)
        think: tuple[str, ...] = ()
        if rate is None:
            connections, script = SATURATING_CONNECTIONS, self.script
        else:
            connections = max(4, math.ceil(rate * THINK_SECONDS))
            script, think = self.paced, (f"{connections / rate * 1000:.3f}",)
        before, started = Usage.of(container), time.monotonic()
        run = run_wrk(script, self.server, self.seconds, connections, think)
        after, wall = Usage.of(container), time.monotonic() - started
        cores = (after.cpu_seconds - before.cpu_seconds) / wall
        periods = max(1, after.periods - before.periods)
        run.update(
            offered=rate or 0.0,
            connections=connections,
            cores=cores,
            other_cores=max(0.0, run["machine_cores"] - cores - run["wrk_cores"]),
            cpu_percent=cores / self.vcpu * 100,
            throttled_percent=(after.throttled - before.throttled) / periods * 100,
            memory_mib=after.memory / 2**20,
        )
        run["ok"] = float(ok(run, self.seconds))
        return run


def ok(run: dict[str, float], seconds: int) -> bool:
    """p99 within the limit, no failed request, and (paced) the offered rate achieved (see SHORTFALL)."""
    offered = run["offered"]
    shortfall = max(SHORTFALL * offered, 3 * math.sqrt(offered / seconds))
    return run["p99"] <= P99_LIMIT_MS and run["errors"] == 0 and run["rps"] >= offered - shortfall


def rate_at(runs: list[dict[str, float]], percent: float) -> float | None:
    """The request rate at which the CPU is `percent` of the limit: linear between the two steps around it (from
    an idle container at 0 req/s below the first), None when no step reached it."""
    points = [(0.0, 0.0), *sorted((run["rps"], run["cpu_percent"]) for run in runs)]
    for (low_rate, low_cpu), (high_rate, high_cpu) in itertools.pairwise(points):
        if low_cpu < percent <= high_cpu:
            return low_rate + (percent - low_cpu) / (high_cpu - low_cpu) * (high_rate - low_rate)
    return None


def capacity(
    args: argparse.Namespace,
    output: common.BenchOutput,
    client: docker.DockerClient,
    image: str,
    folder: Path,
    *,
    settings: Settings,
) -> common.Result:
    """What one task of the configured size serves at p99 <= 50 ms, and the rate at scale_cpu_percent."""
    vcpu, target = settings.cpu / 1024, settings.scale_cpu_percent
    size = f"{settings.cpu}/{settings.memory}"
    (script := folder / "pages.lua").write_text(WRK_SCRIPT)
    (paced := folder / "paced.lua").write_text(PACED_SCRIPT)
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    env = dict(pair.split("=", 1) for pair in args.env)
    checked = args.health_check == "task"
    with gunicorn(client, image, env, task_limits(settings, checked)) as server:
        output.line(f"== capacity at cpu {settings.cpu} ({vcpu:g} vCPU), memory {settings.memory} MiB: warm-up 3 s")
        run_wrk(script, server, 3, SATURATING_CONNECTIONS)
        probe = Probe(script, paced, server, args.duration, vcpu)
        saturated = probe.step(None)
        say(output, "saturated", saturated)
        runs = climb(probe, output, saturated["rps"], target)
        best = refine(probe, output, runs)
        scale_rate = rate_at(runs, target)
        at_target = probe.step(scale_rate) if scale_rate is not None else None
        if at_target is not None:
            say(output, f"at {target} % CPU", at_target)
    rows = [
        "",
        f"capacity of one task at cpu {settings.cpu} ({vcpu:g} vCPU) / memory {settings.memory} MiB: {image}",
        f"  {server.description}; limits as the task definition's (nano_cpus, mem_limit, read-only, no capabilities), "
        + ("its health check every 10 s" if checked else "no health check (--health-check none)"),
        f"  host: {os.cpu_count()} cores ({cpu_model()}), load average {load} before; {args.duration} s per step",
        f"  closed loop, {SATURATING_CONNECTIONS} connections, no pause: " + describe(saturated),
        *(f"  offered {run['offered']:6.0f} req/s, {run['connections']:3.0f} conn: {describe(run)}" for run in runs),
        "",
        f"requests per second per task at {size}: {best['rps']:.0f} (p99 {best['p99']:.1f} ms)"
        if best is not None
        else f"requests per second per task at {size}: none (no step met p99 <= {P99_LIMIT_MS:g} ms)",
    ]
    share = f"scale_cpu_percent {target} = {target / 100 * vcpu:.3g} of {vcpu:g} vCPU"
    if at_target is not None and scale_rate is not None:
        rows.append(
            f"{share}: target tracking adds tasks above about {scale_rate:.0f} requests per second per task "
            f"(a step there: {at_target['rps']:.0f} req/s, CPU {at_target['cpu_percent']:.0f} %, "
            f"p99 {at_target['p99']:.1f} ms)"
        )
    else:
        rows.append(f"{share}: no step reached it (the rate there is unknown)")
    if checked:
        rows.append(
            "the task's health check starts Python every 10 s: its CPU comes out of the same quota, which can "
            "lengthen the tail at any rate (--health-check none: the site alone)"
        )
    other = max(run["other_cores"] for run in [saturated, *runs, *([at_target] if at_target else [])])
    if other > OTHER_LOAD:
        rows.append(f"warning: up to {other:.2f} cores were busy with other processes; the figures are disturbed")
    figures = {
        "cpu": settings.cpu,
        "memory": settings.memory,
        "vcpu": vcpu,
        "host_cores": os.cpu_count(),
        "host_cpu": cpu_model(),
        "load_average_before": os.getloadavg(),
        "step_seconds": args.duration,
        "health_check": args.health_check,
        "p99_limit_ms": P99_LIMIT_MS,
        "requests_per_second": best["rps"] if best is not None else None,
        "p99_ms": best["p99"] if best is not None else None,
        "scale_cpu_percent": target,
        "requests_per_second_at_scale_cpu_percent": scale_rate,
        "at_scale_cpu_percent": at_target,
        "saturated": saturated,
        "steps": runs,
        "other_load_cores": other,
        "disturbed": other > OTHER_LOAD,
    }
    targets = [
        common.Target.check(f"a rate per task with p99 <= {P99_LIMIT_MS:g} ms and no failed request", best is not None),
        common.Target(
            f"p99 at the scale_cpu_percent rate ({target} % CPU)",
            at_target["p99"] if at_target is not None else math.inf,
            P99_LIMIT_MS,
            unit=" ms",
            decimals=1,
        ),
    ]
    return common.Result([*rows, ""], {"capacity": figures}, targets)


def climb(probe: Probe, output: common.BenchOutput, saturated: float, target: float) -> list[dict[str, float]]:
    """Steps of a tenth of the saturated rate upward, until one fails with the CPU past `target` % (or the last)."""
    runs: list[dict[str, float]] = []
    for tenth in range(1, STEPS + 1):
        runs.append(run := probe.step(saturated * tenth / STEPS))
        say(output, f"offered {run['offered']:.0f} req/s", run)
        if not all(step["ok"] for step in runs) and run["cpu_percent"] >= target:
            break
    return runs


def refine(probe: Probe, output: common.BenchOutput, runs: list[dict[str, float]]) -> dict[str, float] | None:
    """Halve the gap between the last step that passed (every lower one too) and the first that failed; the
    highest passing step, added to `runs`."""
    failed = next((run for run in runs if not run["ok"]), None)
    passed = [run for run in runs if run["ok"] and (failed is None or run["offered"] < failed["offered"])]
    best = passed[-1] if passed else None
    for _ in range(HALVINGS if failed is not None else 0):
        low = best["offered"] if best is not None else 0.0
        high = cast("dict[str, float]", failed)["offered"]
        runs.append(run := probe.step((low + high) / 2))
        say(output, f"offered {run['offered']:.0f} req/s", run)
        if run["ok"]:
            best = run
        else:
            failed = run
    runs.sort(key=lambda run: run["offered"])
    return best


def describe(run: dict[str, float]) -> str:
    return (
        f"{run['rps']:6.0f} req/s  p50 {run['p50']:5.1f}  p99 {run['p99']:6.1f}  max {run['max']:6.1f} ms  "
        f"failed {run['errors']:.0f}  CPU {run['cpu_percent']:3.0f} % of the limit (throttled in "
        f"{run['throttled_percent']:3.0f} % of periods)  {run['memory_mib']:.0f} MiB  host busy "
        f"{run['machine_cores']:.2f} cores (other {run['other_cores']:.2f})  {verdict(run)}"
    )


def verdict(run: dict[str, float]) -> str:
    """ok/FAIL for a paced step; the closed loop is only the ceiling the steps start from."""
    if not run["offered"]:
        return "(ceiling)"
    return "ok" if run["ok"] else "FAIL"


def say(output: common.BenchOutput, what: str, run: dict[str, float]) -> None:
    output.line(f"   {what}: {describe(run)}")


def cpu_model() -> str:
    """The host's CPU model (/proc/cpuinfo), for the record: the figures scale with it."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=int, default=5, choices=range(1, 601), metavar="S", help="s per run (5)")
    parser.add_argument("--rounds", type=int, default=3, choices=range(1, 101), metavar="N", help="runs per server (3)")
    parser.add_argument("--connections", type=int, default=32, choices=range(1, 10001), metavar="N", help="(32)")
    parser.add_argument("--env", action="append", default=[], type=env_pair, metavar="KEY=VALUE", help="container env")
    parser.add_argument("--only", choices=("compare", "capacity"), help="one part (both)")
    parser.add_argument("--config", type=Path, help=f"settings file (default: {CONFIG_FILE_NAME} beside provision.py)")
    parser.add_argument("--cpu", type=int, metavar="UNITS", help="the task's CPU units (the settings', 256)")
    parser.add_argument("--memory", type=int, metavar="MIB", help="the task's memory (the settings', 512)")
    parser.add_argument(
        "--health-check", choices=("task", "none"), default="task", help="capacity: the task's health check, or none"
    )


def env_pair(pair: str) -> str:
    if "=" not in pair[1:]:
        raise argparse.ArgumentTypeError(f"{pair!r} is not KEY=VALUE")
    return pair


if __name__ == "__main__":
    sys.exit(common.main(__doc__, measure, options))
