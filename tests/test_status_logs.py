"""status.py and logs.py: what they show, that they only read, and how they refuse.

In-process tests run against moto with the conftest fixtures; the script tests run
the real status.py and logs.py against the moto server. The site URL moto records
is a made-up NLB name, so no test ever probes it: in-process tests inject a fake
probe, and the script tests point the state's URL at a server on 127.0.0.1. An
autouse guard makes any other name lookup fail the test.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from deployer import cli, observe, runner, views
from deployer import clients as clients_module
from deployer import probe as probes
from deployer.clients import AwsClients, build_clients
from deployer.state import StateFile
from deployer.steps.base import StepContext
from tests.conftest import IMAGE, PROJECT_DIR, REGION, CallLog, MotoServer, RunScript, script_env
from tests.steps_helpers import wanted_steps

STREAM = "web/web/0f1e2d3c4b5a"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection from this process to a name other than loopback fails the test instead of leaving."""
    real = socket.getaddrinfo

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in LOOPBACK:
            raise AssertionError(f"a test tried to reach {host!r}; tests talk to loopback only")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)


class FakeProbe:
    """Answers for the site URL without sending anything, and remembers what it was asked."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.asked: list[str] = []

    def __call__(self, url: str) -> probes.UrlAnswer:
        self.asked.append(url)
        return probes.UrlAnswer(url, status=self.status, seconds=0.01)


@pytest.fixture
def provisioned(ctx: StepContext, monkeypatch: pytest.MonkeyPatch, calls: CallLog) -> StepContext:
    """A whole stack in moto; its service reports 1 of 1 task running."""
    monkeypatch.setenv("MOTO_ECS_SERVICE_RUNNING", "1")
    runner.provision(ctx, wait=False)
    calls.clear()
    return ctx


@pytest.fixture
def recorded_commands(monkeypatch: pytest.MonkeyPatch, calls: CallLog) -> None:
    """The clients status_main and logs_main build for themselves record their calls too."""

    def build(session: boto3.Session, config: Config | None = None) -> AwsClients:
        clients = build_clients(session, config)
        for client in clients.every():
            client.meta.events.register("before-call", calls.record)
        return clients

    monkeypatch.setattr(clients_module, "build_clients", build)


def put_events(ctx: StepContext, *events: tuple[float, str]) -> None:
    """(seconds since the epoch, message) into one stream of the stack's log group, as awslogs writes them."""
    logs, group = ctx.clients.logs, ctx.ids("log-group")["name"]
    if not logs.describe_log_streams(logGroupName=group, logStreamNamePrefix=STREAM)["logStreams"]:
        logs.create_log_stream(logGroupName=group, logStreamName=STREAM)
    logs.put_log_events(
        logGroupName=group,
        logStreamName=STREAM,
        logEvents=[{"timestamp": int(when * 1000), "message": message} for when, message in events],
    )


def messages(output: str) -> list[str]:
    """The messages of `timestamp stream message` lines, after checking each line's shape."""
    found = []
    for line in output.splitlines():
        match = re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (\S+) (.*)", line)
        assert match is not None, f"not a 'timestamp stream message' line: {line!r}"
        assert match.group(1) == STREAM
        found.append(match.group(2))
    return found


# ---------------------------------------------------------------- status, in-process


def test_status_shows_every_step_and_the_service(
    provisioned: StepContext, state_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    probe = FakeProbe()
    assert cli.status_main(["--state-file", str(state_path)], probe=probe) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    for step in wanted_steps():
        ids = provisioned.ids(step.name)
        assert any(line.split()[:2] == [step.name, runner.primary(ids)] for line in lines), step.name
    service_line = next(line for line in lines if line.split()[:1] == ["service"])
    assert service_line.endswith("ACTIVE, 1 running / 1 desired / 0 pending")
    assert re.search(r"task definition\s+test-site-web:1$", out, re.MULTILINE)
    assert re.search(rf"image\s+{re.escape(IMAGE)}$", out, re.MULTILINE)
    assert re.search(r"deployment\s+PRIMARY\s+test-site-web:1\s+COMPLETED: 1 running / 1 desired", out)
    assert "digest           not recorded" in out  # --image: nothing was pushed, so no digest
    url = provisioned.state.outputs["url"]
    assert probe.asked == [url]
    assert f"Site {url}: HTTP 200" in out


def test_status_json_has_the_service_target_health_and_load_balancer(
    provisioned: StepContext, state_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    elbv2, group = provisioned.clients.elbv2, provisioned.ids("target-group")["arn"]
    elbv2.register_targets(TargetGroupArn=group, Targets=[{"Id": "172.31.32.10"}, {"Id": "172.31.48.10"}])
    assert cli.status_main(["--state-file", str(state_path), "--output", "json"], probe=FakeProbe(503)) == 0
    report = json.loads(capsys.readouterr().out)  # one document, nothing else on stdout
    assert [line["step"] for line in report["resources"]] == [step.name for step in wanted_steps()]
    service = report["service"]
    assert (service["status"], service["running"], service["desired"], service["pending"]) == ("ACTIVE", 1, 1, 0)
    assert (service["task_definition"], service["image"], service["digest"]) == ("test-site-web:1", IMAGE, None)
    assert [(d["status"], d["rollout_state"]) for d in service["deployments"]] == [("PRIMARY", "COMPLETED")]
    assert report["target_health"]["counts"] == {"healthy": 2}
    assert report["load_balancer"]["state"] == "active"
    assert (report["url"]["status"], report["url"]["error"]) == (503, None)


def test_status_reports_a_part_deleted_by_hand_and_goes_on(
    provisioned: StepContext, state_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arn = provisioned.ids("load-balancer")["arn"]
    provisioned.clients.elbv2.modify_load_balancer_attributes(  # by hand, AWS needs protection off too
        LoadBalancerArn=arn, Attributes=[{"Key": "deletion_protection.enabled", "Value": "false"}]
    )
    provisioned.clients.elbv2.delete_load_balancer(LoadBalancerArn=arn)
    assert cli.status_main(["--state-file", str(state_path), "--output", "json"], probe=FakeProbe()) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["load_balancer"]["error"].startswith("LoadBalancerNotFound")
    assert report["service"]["running"] == 1  # the rest is still read

    assert cli.status_main(["--state-file", str(state_path)], probe=FakeProbe()) == 0
    balancer_line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("  load-balancer"))
    assert "LoadBalancerNotFound" in balancer_line


def test_status_shows_the_recorded_digest_and_an_image_the_state_does_not_record(
    provisioned: StepContext, state_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A built image's digest lives in the state's image record; the task definition names the image it runs."""
    repository = provisioned.ids("repository")["uri"]
    digest = "sha256:" + "ab" * 32
    provisioned.state.record(
        "image", {"uri": f"{repository}@{digest}", "repository": repository, "tag": "3f2a9c1e", "digest": digest}
    )
    provisioned.ledger.save()
    assert cli.status_main(["--state-file", str(state_path)], probe=FakeProbe()) == 0
    out = capsys.readouterr().out
    assert re.search(rf"digest\s+{digest}$", out, re.MULTILINE)
    assert f"{IMAGE}  (the state records {repository}@{digest})" in out  # the service still runs the old image


def test_status_and_logs_make_only_read_calls_and_take_no_lock(
    provisioned: StepContext,
    state_path: Path,
    calls: CallLog,
    recorded_commands: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    put_events(provisioned, (time.time() - 5, "worker started"))
    state_file = StateFile(state_path)
    # Another run holds the lock: provision and teardown would refuse; readers do not care.
    lock = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": "provision.py"})
    state_file.lock_path.write_text(lock)
    saved = (state_path.read_bytes(), state_file.backup_path.read_bytes(), state_path.stat().st_mtime_ns)
    calls.clear()

    assert cli.status_main(["--state-file", str(state_path), "--output", "json"], probe=FakeProbe()) == 0
    assert json.loads(capsys.readouterr().out)["service"]["running"] == 1
    assert cli.logs_main(["--state-file", str(state_path)]) == 0
    polls: list[float] = []
    assert cli.logs_main(["--state-file", str(state_path), "--follow"], sleep=_stop_after(2, polls)) == 0
    assert polls == [observe.FOLLOW_SECONDS] * 2

    operations = {operation for _service, operation in calls.calls}
    assert {"GetCallerIdentity", "DescribeServices", "DescribeTargetHealth", "FilterLogEvents"} <= operations
    assert [call for call in calls.changing() if call != ("logs", "FilterLogEvents")] == []  # it reads
    assert (state_path.read_bytes(), state_file.backup_path.read_bytes(), state_path.stat().st_mtime_ns) == saved
    assert state_file.lock_path.read_text() == lock
    assert messages(capsys.readouterr().out) == ["worker started"] * 2  # once per run: --follow printed it once


def _stop_after(polls: int, log: list[float]) -> Callable[[float], None]:
    def sleep(seconds: float) -> None:
        log.append(seconds)
        if len(log) >= polls:
            raise KeyboardInterrupt  # what Ctrl-C raises in the real sleep

    return sleep


def test_status_refuses_a_missing_or_corrupt_state_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "state.json"
    assert cli.status_main(["--state-file", str(missing)], probe=FakeProbe()) == 2
    assert "error: There is no state file, so there is no stack to show" in capsys.readouterr().err
    assert not missing.exists() and not StateFile(missing).lock_path.exists()

    missing.write_text("{not json")
    assert cli.status_main(["--state-file", str(missing)], probe=FakeProbe()) == 2
    assert "The state file is corrupt" in capsys.readouterr().err
    assert missing.read_text() == "{not json"
    assert cli.logs_main(["--state-file", str(missing)]) == 2


def test_status_and_logs_refuse_another_accounts_state(
    provisioned: StepContext, state_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    provisioned.state.account_id = "999999999999"
    provisioned.ledger.save()
    saved = state_path.read_bytes()
    assert cli.status_main(["--state-file", str(state_path)], probe=(probe := FakeProbe())) == 2
    assert cli.logs_main(["--state-file", str(state_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("The state file belongs to account '999999999999', but this run uses account '123456789012'") == 2
    assert probe.asked == [] and state_path.read_bytes() == saved


# ---------------------------------------------------------------- logs, in-process


def test_logs_prints_the_events_in_order(
    provisioned: StepContext, state_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = time.time()
    put_events(provisioned, (now - 30, "GET / 200"), (now - 20, "GET /about 200\n"))
    assert cli.logs_main(["--state-file", str(state_path)]) == 0
    out = capsys.readouterr().out
    assert messages(out) == ["GET / 200", "GET /about 200"]
    stamp = datetime.fromtimestamp(int((now - 30) * 1000) / 1000, UTC)
    assert out.startswith(stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z ")


def test_logs_since_leaves_older_events_out(
    provisioned: StepContext, state_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = time.time()
    put_events(provisioned, (now - 2 * 3600, "two hours ago"), (now - 60, "a minute ago"))
    half_an_hour_ago = datetime.fromtimestamp(now - 1800, UTC)
    for since, expected in (
        ("10m", ["a minute ago"]),
        ("3h", ["two hours ago", "a minute ago"]),
        (half_an_hour_ago.isoformat(), ["a minute ago"]),
        (half_an_hour_ago.strftime("%Y-%m-%dT%H:%M:%S"), ["a minute ago"]),  # no offset: UTC
    ):
        assert cli.logs_main(["--state-file", str(state_path), "--since", since]) == 0
        assert messages(capsys.readouterr().out) == expected, since
    assert cli.logs_main(["--state-file", str(state_path)]) == 0  # default: the last 10 minutes
    assert messages(capsys.readouterr().out) == ["a minute ago"]


def test_logs_refuses_a_since_it_cannot_read(state_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.logs_main(["--state-file", str(state_path), "--since", "yesterday"]) == 2
    assert "--since 'yesterday' is neither a duration nor an ISO time" in capsys.readouterr().err


def test_parse_since() -> None:
    assert observe.parse_since("2h", now=10_000.0) == (10_000 - 7200) * 1000
    assert observe.parse_since("90s", now=100.0) == 10_000
    assert observe.parse_since("1w", now=10.0) == 0  # never before the epoch
    assert observe.parse_since("2025-01-31T09:00:00+01:00", now=0) == observe.parse_since("2025-01-31T08:00Z", now=0)
    assert observe.parse_since("2025-01-31T08:00", now=0) == 1_738_310_400_000


def test_logs_follow_prints_an_event_added_between_polls_once(
    provisioned: StepContext, state_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    put_events(provisioned, (time.time() - 5, "worker started"))  # re-read by every poll (30 s overlap)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 1:  # a new event, and one CloudWatch accepted late (older than the last poll)
            put_events(provisioned, (time.time() - 10, "buffered by the agent"), (time.time(), "GET / 200"))
        if len(slept) == 3:
            raise KeyboardInterrupt

    assert cli.logs_main(["--state-file", str(state_path), "--follow"], sleep=sleep) == 0
    captured = capsys.readouterr()
    assert messages(captured.out) == ["worker started", "buffered by the agent", "GET / 200"]
    assert slept == [observe.FOLLOW_SECONDS] * 3
    assert captured.err == ""  # Ctrl-C: no traceback, no message


def test_logs_reads_every_page(provisioned: StepContext, calls: CallLog) -> None:
    now = time.time()
    put_events(provisioned, *((now - 50 + second, f"line {second}") for second in range(5)))
    calls.clear()
    written: list[str] = []
    group = provisioned.ids("log-group")["name"]
    observe.tail(
        provisioned.clients.logs,
        group,
        int((now - 60) * 1000),
        follow=False,
        write=lambda event: written.append(views.format_event(event)),
        page_size=2,
    )
    assert [line.split(" ", 2)[2] for line in written] == [f"line {second}" for second in range(5)]
    assert calls.calls.count(("logs", "FilterLogEvents")) == 3


def test_logs_without_a_log_group_record(
    provisioned: StepContext, state_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    provisioned.state.forget("log-group")
    provisioned.ledger.save()
    assert cli.logs_main(["--state-file", str(state_path)]) == 2
    assert "The state file records no log group" in capsys.readouterr().err


def test_logs_explains_a_log_group_deleted_by_hand(
    provisioned: StepContext, state_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    provisioned.clients.logs.delete_log_group(logGroupName=provisioned.ids("log-group")["name"])
    assert cli.logs_main(["--state-file", str(state_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: AWS says the resource does not exist") and "Where: log group /ecs/test-site." in err


# ---------------------------------------------------------------- the URL probe, against loopback


class _Site(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/" else 503)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:  # no access lines in the test output
        pass


@pytest.fixture
def site() -> Iterator[str]:
    """A stand-in for the deployed site on 127.0.0.1."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_probe_url_reports_the_status_or_why_there_was_none(site: str) -> None:
    assert probes.probe(site).status == 200
    down = probes.probe(site + "down")
    assert (down.status, down.error) == (503, None)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    refused = probes.probe(f"http://127.0.0.1:{port}/")
    assert refused.status is None and "refused" in str(refused.error)
    with socket.socket() as silent:  # accepts the connection (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        quiet: list[probes.UrlAnswer] = []
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        worker = threading.Thread(target=lambda: quiet.append(probes.probe(url, timeout=0.3)), daemon=True)
        worker.start()
        worker.join(5)  # a probe that ignored its timeout would hang here, not forever
    assert quiet, "the probe ignored its timeout"
    assert (quiet[0].status, quiet[0].error) == (None, "no answer within 0.3 s")
    assert probes.probe("ftp://127.0.0.1/").error == "not an http(s) URL"


# ---------------------------------------------------------------- the real scripts, against the moto server


def test_scripts_against_the_server(
    server: MotoServer, run_script: RunScript, tmp_path: Path, site: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (
        run_script("provision.py", "--stack", "script-site", "--image", IMAGE, "--no-wait", server=server).returncode
        == 0
    )
    state_path = tmp_path / "state.json"
    state = json.loads(state_path.read_text())
    state["outputs"]["url"] = site  # moto's NLB name is made up: the probe goes to loopback instead
    state_path.write_text(json.dumps(state))
    saved = state_path.read_bytes()

    text = run_script("status.py", server=server)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    for record in state["resources"]:
        assert any(line.split()[:2] == [record["step"], runner.primary(record["ids"])] for line in lines)
    assert "ACTIVE, 1 running / 1 desired / 0 pending" in text.stdout
    assert f"Site {site}: HTTP 200" in text.stdout
    as_json = run_script("status.py", "--output", "json", server=server)
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["service"]["running"] == 1 and report["url"]["status"] == 200
    assert "target_health" in report and report["load_balancer"]["state"] == "active"

    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    logs = build_clients(boto3.Session(region_name=REGION)).logs
    group = next(r["ids"]["name"] for r in state["resources"] if r["step"] == "log-group")
    logs.create_log_stream(logGroupName=group, logStreamName=STREAM)
    logs.put_log_events(
        logGroupName=group,
        logStreamName=STREAM,
        logEvents=[
            {"timestamp": int((time.time() - 7200) * 1000), "message": "old"},
            {"timestamp": int(time.time() * 1000), "message": "Listening at: http://0.0.0.0:8080"},
        ],
    )
    tailed = run_script("logs.py", "--since", "1h", server=server)
    assert tailed.returncode == 0, tailed.stderr
    assert messages(tailed.stdout) == ["Listening at: http://0.0.0.0:8080"]

    follow = subprocess.Popen(
        [sys.executable, str(PROJECT_DIR / "logs.py"), "--follow"],
        cwd=tmp_path,
        env=script_env(server, tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(60, follow.kill)
    watchdog.start()
    try:
        assert follow.stdout is not None
        first = follow.stdout.readline()  # printed (and flushed) before the first sleep
        follow.send_signal(signal.SIGINT)
        out, err = follow.communicate(timeout=30)
    finally:
        watchdog.cancel()
    assert messages(first + out) == ["Listening at: http://0.0.0.0:8080"]
    assert (follow.returncode, err) == (0, "")

    assert state_path.read_bytes() == saved
    assert not (tmp_path / "state.json.lock").exists()


def test_scripts_refuse_a_missing_state_file(run_script: RunScript, tmp_path: Path) -> None:
    for script in ("status.py", "logs.py"):
        result = run_script(script)
        assert result.returncode == 2
        assert result.stderr.startswith("error: There is no state file") and "Traceback" not in result.stderr
        assert f"Where: {Path('state.json')}." in result.stderr
    assert list(tmp_path.glob("state.json*")) == []
