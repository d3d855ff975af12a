"""Throughput and latency of the site: gunicorn in the container against Flask's development server.

What it measures
    Requests per second and latency percentiles (p50, p90, p99) of the same three
    pages -- /, /about and /projects, requested in turn -- served two ways:

    1. gunicorn  -- the site's image (website/, built here through the deployer's
       own `ImageBuilder` with BASE_IMAGE=flask-deployer/base:bookworm, so an
       unchanged site reuses the build cache) run as the task definition would run
       it: its own CMD and gunicorn.conf.py, host networking, only PORT set (so
       WEB_CONCURRENCY, GUNICORN_THREADS and the rest keep their defaults);
    2. flask-dev -- Flask's development server (werkzeug, `app.run(threaded=True)`)
       in a subprocess of this virtualenv's Python, importing website/app.py.

    Both listen on a free port of 127.0.0.1 and are loaded by `wrk` (Debian's
    package) with 32 keep-alive connections on 2 wrk threads; a small Lua script
    rotates the three paths and prints wrk's own latency histogram as JSON. Every
    page is first checked to answer 200 on both servers, and both get a warm-up
    run that is not counted. Then the two are measured in turns (the order
    alternates each round), `--rounds` rounds of `--duration` seconds each, so a
    burst of load from something else on the machine hits both alike; the figures
    reported are the medians over the rounds.

    For each run the report also shows the CPU the server used (its processes'
    user+system time from /proc, in cores), the CPU wrk used (to show the load
    generator is not the bottleneck) and the whole machine's busy CPU from
    /proc/stat; "rest" is what neither used -- for gunicorn mostly dockerd and the
    container shim carrying its access log (gunicorn.conf.py logs every request
    to stdout), otherwise anything else competing for the cores. When other
    processes kept more than a quarter of a core busy during the development
    server's runs, the report warns that the figures are disturbed.

    Nothing but loopback is ever contacted: the servers, wrk and the health
    checks all use 127.0.0.1.

Targets (exit code 0 when all are met, 1 otherwise)
    gunicorn requests/s >= 2 x the development server's; gunicorn p99 <= 50 ms;
    no failed requests (socket errors, timeouts, non-2xx/3xx answers) on either.

Exit code 2 (skipped) when no Docker engine answers, the base image
flask-deployer/base:bookworm is missing (scripts/setup-docker.sh makes both) or
wrk is not installed (`apt-get install -y wrk`).

How to run it (from the repository root, in its virtualenv)
    python bench/website.py                 # a readable report (about 40 s)
    python bench/website.py --json          # the same figures as one JSON document
    python bench/website.py --rounds 5 --duration 10
    python bench/website.py --env WEB_CONCURRENCY=3 --env GUNICORN_THREADS=2
                                            # try other container settings
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import docker  # noqa: E402
import docker.errors  # noqa: E402
from docker.models.containers import Container  # noqa: E402

from deployer.errors import DeployerError  # noqa: E402
from deployer.images import BuildSpec, ImageBuilder  # noqa: E402

WEBSITE = REPO_ROOT / "website"
BASE_IMAGE = "flask-deployer/base:bookworm"
BENCH_REPOSITORY = "flask-deployer/bench-website"
PAGES = ("/", "/about", "/projects")
HOST = "127.0.0.1"
CONNECTIONS = 32
WRK_THREADS = 2
WRK_TIMEOUT_SECONDS = 2
WARM_UP_SECONDS = 3
DEFAULT_DURATION = 5
DEFAULT_ROUNDS = 3
START_TIMEOUT_SECONDS = 60

MIN_RATIO = 2.0
MAX_P99_MS = 50.0
EXIT_SKIPPED = 2
DISTURBED_CORES = 0.25  # other processes' CPU during the flask-dev runs above which a warning is printed

GUNICORN = "gunicorn"
FLASK_DEV = "flask-dev"

# wrk's Lua hooks: each thread rotates the paths; at the end the summary goes to stdout as one JSON line.
WRK_SCRIPT = """
local paths = {%(paths)s}
local i = 0
request = function()
  i = i %% #paths + 1
  return wrk.format("GET", paths[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%(marker)s{"requests":%%d,"duration_us":%%d,"bytes":%%d,"connect":%%d,"read":%%d,"write":%%d,' ..
    '"status":%%d,"timeout":%%d,"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,"max_us":%%d}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""
WRK_MARKER = "WRK-JSON "

# The development server, as `flask run` would start it but threaded and without the reloader or debugger.
DEV_SERVER = """
import sys
sys.path.insert(0, sys.argv[1])
from app import app
app.run(host=sys.argv[2], port=int(sys.argv[3]), threaded=True, debug=False, use_reloader=False)
"""


class MissingPrerequisiteError(Exception):
    """Something this benchmark needs is not on this machine."""


class BenchError(Exception):
    """A server did not start or answer as it should."""


@dataclass
class Run:
    """One wrk run against one server."""

    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    server_cores: float | None
    wrk_cores: float
    machine_cores: float


@dataclass
class ServerResult:
    name: str
    description: str
    runs: list[Run] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return statistics.median(run.rps for run in self.runs)

    @property
    def p50_ms(self) -> float:
        return statistics.median(run.p50_ms for run in self.runs)

    @property
    def p99_ms(self) -> float:
        return statistics.median(run.p99_ms for run in self.runs)

    @property
    def errors(self) -> int:
        return sum(run.errors for run in self.runs)

    def to_json(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "rps": round(self.rps, 1),
            "p50_ms": round(self.p50_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
            "errors": self.errors,
            "runs": [asdict(run) for run in self.runs],
        }


@dataclass(frozen=True)
class Target:
    name: str
    value: float
    limit: float
    at_least: bool  # True: value >= limit; False: value <= limit
    unit: str = ""
    decimals: int = 2

    @property
    def met(self) -> bool:
        return self.value >= self.limit if self.at_least else self.value <= self.limit

    def describe(self) -> str:
        sign = ">=" if self.at_least else "<="
        return f"{self.name}: {self.value:.{self.decimals}f}{self.unit} (target {sign} {self.limit:g}{self.unit})"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": round(self.value, 3),
            "limit": self.limit,
            "at_least": self.at_least,
            "met": self.met,
        }


@dataclass
class Server:
    """A started server: where it answers, and how to read the CPU time of its processes."""

    name: str
    description: str
    url: str
    pids: Callable[[], list[int]]
    diagnostics: Callable[[], str]


# --- preconditions ------------------------------------------------------------------------------


def docker_client() -> docker.DockerClient:
    """The engine with the base image, or MissingPrerequisiteError saying what is missing."""
    try:
        client = docker.from_env(timeout=600)
        client.ping()  # type: ignore[no-untyped-call]
    except docker.errors.DockerException as exc:
        raise MissingPrerequisiteError(f"no Docker engine is reachable ({exc}); run scripts/setup-docker.sh") from exc
    try:
        client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound as exc:
        raise MissingPrerequisiteError(f"the base image {BASE_IMAGE} is missing; run scripts/setup-docker.sh") from exc
    return client


def wrk_path() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise MissingPrerequisiteError("wrk is not installed (Debian: apt-get install -y wrk)")
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            answer.read()
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return error.code


def wait_until_up(server: Server, alive: Callable[[], bool]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if not alive():
            raise BenchError(f"{server.name} exited while starting:\n{server.diagnostics()}")
        try:
            if status_of(f"{server.url}/healthz") == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise BenchError(
        f"{server.name} did not answer {server.url}/healthz within {START_TIMEOUT_SECONDS}s:\n{server.diagnostics()}"
    )


def check_pages(server: Server) -> None:
    for path in PAGES:
        status = status_of(f"{server.url}{path}")
        if status != 200:
            raise BenchError(f"{server.name} answered {status} for {path}")


# --- the two servers ----------------------------------------------------------------------------


def build_image(client: docker.DockerClient, echo: bool) -> str:
    """The site's image under a local tag named by its content; cached layers make an unchanged site instant."""
    spec = BuildSpec(context=WEBSITE, dockerfile="Dockerfile", build_args={"BASE_IMAGE": BASE_IMAGE})
    reference = f"{BENCH_REPOSITORY}:{spec.content_tag()}"
    builder = ImageBuilder(connect=lambda: client, progress=lambda line: say(line, echo))
    builder.build(spec, reference)
    return reference


@contextmanager
def gunicorn_server(client: docker.DockerClient, image: str, extra_env: dict[str, str]) -> Iterator[Server]:
    port = free_port()
    environment = {"PORT": str(port), **extra_env}
    container: Container = client.containers.run(
        image, environment=environment, network_mode="host", detach=True, name=f"bench-website-{uuid.uuid4().hex[:8]}"
    )
    try:
        settings = " ".join(f"{key}={value}" for key, value in environment.items())
        server = Server(
            GUNICORN,
            f"gunicorn in the container ({settings}; everything else as gunicorn.conf.py says)",
            f"http://{HOST}:{port}",
            pids=lambda: container_pids(container),
            diagnostics=lambda: container_logs(container),
        )
        wait_until_up(server, lambda: container_running(container))
        yield server
    finally:
        container.remove(force=True)


def container_running(container: Container) -> bool:
    container.reload()
    return container.status in {"created", "running"}


def container_pids(container: Container) -> list[int]:
    top = cast("dict[str, Any]", container.top())  # the stubs say str; the engine answers a JSON object
    column = top["Titles"].index("PID")
    return [int(process[column]) for process in top["Processes"]]


def container_logs(container: Container) -> str:
    return bytes(container.logs(tail=30)).decode(errors="replace")


@contextmanager
def flask_dev_server(scratch: Path) -> Iterator[Server]:
    port = free_port()
    log_path = scratch / "flask-dev.log"
    environment = {key: value for key, value in os.environ.items() if not key.startswith("FLASK_")}
    environment["PYTHONDONTWRITEBYTECODE"] = "1"  # nothing written into website/
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", DEV_SERVER, str(WEBSITE), HOST, str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
        )
    try:
        server = Server(
            FLASK_DEV,
            f"Flask's development server (werkzeug, threaded) on Python {sys.version.split()[0]}",
            f"http://{HOST}:{port}",
            pids=lambda: [process.pid],
            diagnostics=lambda: log_path.read_text(errors="replace")[-3000:],
        )
        wait_until_up(server, lambda: process.poll() is None)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- measuring ----------------------------------------------------------------------------------


def cpu_seconds(pids: list[int]) -> float | None:
    """User+system CPU time of these processes so far, from /proc/PID/stat; None where /proc cannot tell."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
    return total / ticks


def machine_busy_seconds() -> float:
    """CPU time the whole machine spent busy (all cores), from /proc/stat."""
    values = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(wrk: str, script: Path, server: Server, seconds: int, connections: int) -> Run:
    pids = server.pids()
    server_before = cpu_seconds(pids)
    wrk_before = children_cpu_seconds()
    machine_before = machine_busy_seconds()
    started = time.monotonic()
    done = subprocess.run(
        [
            wrk,
            "-t",
            str(WRK_THREADS),
            "-c",
            str(connections),
            "-d",
            f"{seconds}s",
            "--timeout",
            f"{WRK_TIMEOUT_SECONDS}s",
            "-s",
            str(script),
            server.url,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
    )
    elapsed = time.monotonic() - started
    machine = machine_busy_seconds() - machine_before
    wrk_cpu = children_cpu_seconds() - wrk_before
    server_after = cpu_seconds(pids)
    lines = [line for line in done.stdout.splitlines() if line.startswith(WRK_MARKER)]
    if done.returncode != 0 or not lines:
        raise BenchError(f"wrk failed on {server.name} (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
    data = json.loads(lines[-1][len(WRK_MARKER) :])
    wall = data["duration_us"] / 1e6
    server_cores = None
    if server_before is not None and server_after is not None:
        server_cores = round((server_after - server_before) / elapsed, 2)
    return Run(
        requests=data["requests"],
        seconds=round(wall, 3),
        rps=round(data["requests"] / wall, 1),
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        errors=sum(data[key] for key in ("connect", "read", "write", "status", "timeout")),
        server_cores=server_cores,
        wrk_cores=round(wrk_cpu / elapsed, 2),
        machine_cores=round(machine / elapsed, 2),
    )


@dataclass
class Measurement:
    image: str
    connections: int
    rounds: int
    duration: int
    results: dict[str, ServerResult]
    load_average: tuple[float, float, float]


def measure(duration: int, rounds: int, connections: int, extra_env: dict[str, str], echo: bool) -> Measurement:
    client = docker_client()
    wrk = wrk_path()
    say(f"== building the site's image from {WEBSITE}", echo)
    image = build_image(client, echo)
    try:
        return measure_image(
            client,
            wrk=wrk,
            image=image,
            duration=duration,
            rounds=rounds,
            connections=connections,
            extra_env=extra_env,
            echo=echo,
        )
    finally:
        try:
            client.images.remove(image, noprune=True)  # the layers stay as build cache
        except docker.errors.APIError as exc:
            say(f"   (could not remove {image}: {exc})", echo)


def measure_image(
    client: docker.DockerClient,
    *,
    wrk: str,
    image: str,
    duration: int,
    rounds: int,
    connections: int,
    extra_env: dict[str, str],
    echo: bool,
) -> Measurement:
    load_average = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-website-") as folder, ExitStack() as stack:
        scratch = Path(folder)
        script = scratch / "pages.lua"
        script.write_text(WRK_SCRIPT % {"paths": ", ".join(f'"{path}"' for path in PAGES), "marker": WRK_MARKER})
        servers = [
            stack.enter_context(flask_dev_server(scratch)),
            stack.enter_context(gunicorn_server(client, image, extra_env)),
        ]
        results = {server.name: ServerResult(server.name, server.description) for server in servers}
        for server in servers:
            check_pages(server)
            say(f"== {server.name}: {server.url}, warm-up {WARM_UP_SECONDS} s (not counted)", echo)
            run_wrk(wrk, script, server, WARM_UP_SECONDS, connections)
        for number in range(rounds):
            order = servers if number % 2 == 0 else servers[::-1]
            for server in order:
                run = run_wrk(wrk, script, server, duration, connections)
                results[server.name].runs.append(run)
                say(f"   round {number + 1} {server.name}: {run.rps:.0f} req/s, p99 {run.p99_ms:.1f} ms", echo)
        return Measurement(image, connections, rounds, duration, results, load_average)


def targets(measurement: Measurement) -> list[Target]:
    gunicorn = measurement.results[GUNICORN]
    dev = measurement.results[FLASK_DEV]
    return [
        Target("gunicorn / flask-dev requests/s", gunicorn.rps / dev.rps, MIN_RATIO, at_least=True, unit="x"),
        Target("gunicorn p99 latency", gunicorn.p99_ms, MAX_P99_MS, at_least=False, unit=" ms"),
        Target("failed requests (both servers)", gunicorn.errors + dev.errors, 0, at_least=False, decimals=0),
    ]


def say(line: str, echo: bool) -> None:
    if echo:
        print(line, file=sys.stderr, flush=True)


def other_load(measurement: Measurement) -> float:
    """Cores busy with neither the server nor wrk while the development server was measured (no container
    log traffic then): about 0 on a quiet machine; more means something else competed and disturbed the runs."""
    rests = [
        run.machine_cores - run.server_cores - run.wrk_cores
        for run in measurement.results[FLASK_DEV].runs
        if run.server_cores is not None
    ]
    return max(rests, default=0.0)


def print_report(measurement: Measurement, checks: list[Target]) -> None:
    print(
        f"{measurement.connections} connections, pages {', '.join(PAGES)} in turn; {measurement.rounds} rounds of "
        f"{measurement.duration} s per server (medians below); wrk {WRK_THREADS} threads"
    )
    load = ", ".join(f"{value:.2f}" for value in measurement.load_average)
    print(f"image {measurement.image}; load average before the runs: {load}")
    print()
    for result in measurement.results.values():
        print(f"{result.name}: {result.description}")
        print(
            f"  {result.rps:8.0f} req/s   p50 {result.p50_ms:6.1f} ms   p99 {result.p99_ms:6.1f} ms"
            f"   failed {result.errors}"
        )
        for number, run in enumerate(result.runs, 1):
            cpu = f"wrk {run.wrk_cores:.2f}, machine {run.machine_cores:.2f}"
            if run.server_cores is not None:
                rest = max(0.0, run.machine_cores - run.server_cores - run.wrk_cores)
                cpu = f"server {run.server_cores:.2f}, {cpu} (rest {rest:.2f})"
            print(
                f"    round {number}: {run.rps:7.0f} req/s  p50 {run.p50_ms:5.1f}  p90 {run.p90_ms:5.1f}  "
                f"p99 {run.p99_ms:5.1f}  max {run.max_ms:6.1f} ms  CPU cores: {cpu}"
            )
        print()
    other = other_load(measurement)
    if other > DISTURBED_CORES:
        print(f"warning: up to {other:.2f} cores were busy with other processes during the runs; the figures are")
        print("         disturbed -- run again on a quiet machine")
        print()
    print("targets:")
    for check in checks:
        print(f"  {'PASS' if check.met else 'FAIL'}  {check.describe()}")
    print("PASS: all targets met" if all(c.met for c in checks) else "FAIL: some targets are not met")


def parse_env(pairs: list[str]) -> dict[str, str]:
    parsed: dict[str, str] = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            raise SystemExit(f"--env {pair!r} is not KEY=VALUE")
        parsed[key] = value
    return parsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON document")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument("--duration", type=int, default=DEFAULT_DURATION, help="seconds per measured run")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="measured runs per server")
    parser.add_argument("--connections", type=int, default=CONNECTIONS, help="concurrent connections")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the container, e.g. WEB_CONCURRENCY=3 (repeatable)",
    )
    args = parser.parse_args(argv)
    if args.duration < 1 or args.rounds < 1 or args.connections < 1:
        parser.error("--duration, --rounds and --connections must be at least 1")
    try:
        measurement = measure(args.duration, args.rounds, args.connections, parse_env(args.env), not args.quiet)
    except MissingPrerequisiteError as exc:
        print(f"SKIP: {exc}", file=sys.stderr)
        return EXIT_SKIPPED
    except (BenchError, DeployerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    checks = targets(measurement)
    met = all(check.met for check in checks)
    if args.json:
        document = {
            "image": measurement.image,
            "pages": list(PAGES),
            "connections": measurement.connections,
            "rounds": measurement.rounds,
            "seconds_per_round": measurement.duration,
            "load_average_before": list(measurement.load_average),
            "servers": {name: result.to_json() for name, result in measurement.results.items()},
            "ratio": round(measurement.results[GUNICORN].rps / measurement.results[FLASK_DEV].rps, 3),
            "targets": [check.to_json() for check in checks],
            "other_load_cores": round(other_load(measurement), 2),
            "disturbed": other_load(measurement) > DISTURBED_CORES,
            "pass": met,
        }
        print(json.dumps(document, indent=2))
    else:
        print_report(measurement, checks)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
