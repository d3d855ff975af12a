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

Targets
    gunicorn requests/s >= 2 x the development server's; gunicorn p99 <= 50 ms; no failed requests
    (socket errors, timeouts, non-2xx/3xx). Skipped without the engine or the base image
    (scripts/setup-docker.sh) or wrk (`apt-get install -y wrk`). Only 127.0.0.1 is contacted.

How to run it (from the repository root, in its virtualenv; about 40 s on a quiet machine)
    python bench/website.py [--json] [--quiet] [--rounds 5] [--duration 10] [--connections 32]
    python bench/website.py --env WEB_CONCURRENCY=3 --env GUNICORN_THREADS=2   # other container settings
"""

from __future__ import annotations

import argparse
import json
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
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import docker

from bench import common
from deployer.images import BuildSpec, ImageBuilder
from deployer.local import free_port

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
def gunicorn(client: docker.DockerClient, image: str, env: dict[str, str]) -> Iterator[Server]:
    port = free_port()
    environment = {"PORT": str(port), **env}
    container = client.containers.run(
        image, environment=environment, network_mode="host", detach=True, name=f"bench-website-{uuid.uuid4().hex[:8]}"
    )
    try:

        def pids() -> list[int]:
            top = cast("dict[str, Any]", container.top())  # the stubs say str; the engine answers a JSON object
            return [int(process[top["Titles"].index("PID")]) for process in top["Processes"]]

        settings = " ".join(f"{key}={value}" for key, value in environment.items())
        description = f"gunicorn in the container ({settings}; the rest as gunicorn.conf.py says)"
        server = Server("gunicorn", description, f"http://127.0.0.1:{port}", pids, [])

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
    """CPU seconds so far: the server's processes (utime + stime), wrk's (our children), the machine's busy."""
    server = [Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[11:13] for pid in pids]
    machine = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    wrk = resource.getrusage(resource.RUSAGE_CHILDREN)
    ticks = os.sysconf("SC_CLK_TCK")
    busy = sum(machine) - machine[3] - machine[4]  # less idle and iowait
    return sum(int(u) + int(s) for u, s in server) / ticks, wrk.ru_utime + wrk.ru_stime, busy / ticks


def run_wrk(script: Path, server: Server, seconds: int, connections: int) -> dict[str, float]:
    pids, started = server.pids(), time.monotonic()
    before = cpu_now(pids)
    command = ["wrk", *WRK, "-c", str(connections), "-d", f"{seconds}s", "-s", str(script), server.url]
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
    client = common.docker_engine(timeout=600)
    spec = BuildSpec(common.WEBSITE, "Dockerfile", {"BASE_IMAGE": common.BASE_IMAGE})
    image = f"flask-deployer/bench-website:{spec.content_tag()}"  # an unchanged site reuses the build cache
    images = common.LocalImages(client, noprune=True, references=[image])
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="bench-website-") as folder, ExitStack() as stack:
        stack.callback(images.remove_all)
        ImageBuilder(output, connect=lambda: client).build(spec, image)
        script = Path(folder) / "pages.lua"
        script.write_text(WRK_SCRIPT)
        env = dict(pair.split("=", 1) for pair in args.env)
        servers = [stack.enter_context(flask_dev(Path(folder))), stack.enter_context(gunicorn(client, image, env))]
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


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=int, default=5, choices=range(1, 601), metavar="S", help="s per run (5)")
    parser.add_argument("--rounds", type=int, default=3, choices=range(1, 101), metavar="N", help="runs per server (3)")
    parser.add_argument("--connections", type=int, default=32, choices=range(1, 10001), metavar="N", help="(32)")
    parser.add_argument("--env", action="append", default=[], type=env_pair, metavar="KEY=VALUE", help="container env")


def env_pair(pair: str) -> str:
    if "=" not in pair[1:]:
        raise argparse.ArgumentTypeError(f"{pair!r} is not KEY=VALUE")
    return pair


if __name__ == "__main__":
    sys.exit(common.main(__doc__, measure, options))
