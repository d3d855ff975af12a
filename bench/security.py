"""Run Prowler on the default stack provisioned into moto: FAIL counts by severity on the stack's own resources.

What it measures
    The security findings of the stack the tool provisions (issue 11's baseline and, later, its gate).
    1. A moto server (`python -m moto.server`) on a free loopback port, with IAM's managed policies loaded
       and ECS services reported running; fake credentials, region us-east-1, no AWS configuration.
    2. The real provision script into it, as a user runs it:
       `provision.py --image public.ecr.aws/docker/library/python:3.12-slim --no-wait --state-file <tmp>
       --config <tmp toml>` (no image build, no Docker), with AWS_ENDPOINT_URL pointing at moto.
    3. Prowler from its own virtualenv (scripts/setup-prowler.sh; its pins clash with the project's):
       `prowler aws --services ecs ecr elbv2 ec2 vpc cloudwatch iam --region us-east-1
       --scan-unused-services --output-formats json-ocsf ...` against the same endpoint.
    4. Its findings sorted by bench/security_findings.py: a FAIL is the stack's when its resource's ARN or
       name contains the stack's names or ids (state file, plus the default security group and network
       ACL of the stack's VPC, which AWS makes and the state does not record) or it lives in the stack's
       VPC; moto's artefacts (it runs no tasks, seeds AMI snapshots) are filtered by check and resource;
       the rest is account-level (password policy, CloudTrail alarms, moto's default VPC, ...).
    The report: FAILs by severity with their check ids, on the stack and account-level, and the wall
    times (provision, Prowler, the whole run).

Targets
    The scan saw the stack (PASS or FAIL findings on its resources); no high or critical FAIL on the
    stack's resources, except `ecs_service_no_assign_public_ip` on the public network (issue 11's CI gate;
    the default stack of today fails it).

Variants
    --network private         adds `network = "private"` to the provision config (the setting issue 11
                              adds; until it exists provision refuses it as an unknown setting)
    --setting 'key = value'   any other line of the provision config (TOML), repeatable
    --provision-arg=ARG       an extra provision.py argument, repeatable (`=` form for ARGs starting --)

How to run it (from the repository root, in its virtualenv)
    scripts/setup-prowler.sh    # once: Prowler in .prowler-venv (or $PROWLER_VENV)
    python bench/security.py [--network private] [--json] [--quiet] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import boto3

from bench import common
from bench.security_findings import Finding, classify, load_findings, severity_figures, severity_rows, stack_identity

IMAGE = "public.ecr.aws/docker/library/python:3.12-slim"  # --image: no build, no push, no Docker
SERVICES = ("ecs", "ecr", "elbv2", "ec2", "vpc", "cloudwatch", "iam")
# The public default keeps public IPs on the tasks (no NAT gateway to pay for): issue 11 accepts this one.
ALLOWED_ON_PUBLIC = frozenset({"ecs_service_no_assign_public_ip"})
GATED_SEVERITIES = ("critical", "high")
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
MOTO_SWITCHES = {"MOTO_IAM_LOAD_MANAGED_POLICIES": "true", "MOTO_ECS_SERVICE_RUNNING": "1"}
PROVISION_TIMEOUT = 300
PROWLER_TIMEOUT = 1200


def default_prowler() -> Path:
    venv = os.environ.get("PROWLER_VENV") or str(common.REPO_ROOT / ".prowler-venv")
    return Path(venv) / "bin" / "prowler"


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--prowler", type=Path, default=default_prowler(), help="the prowler command (default: %(default)s)"
    )
    parser.add_argument(
        "--network",
        choices=("public", "private"),
        default="public",
        help='the stack\'s network; private adds network = "private" to the provision config',
    )
    parser.add_argument(
        "--setting", action="append", default=[], metavar="'KEY = VALUE'", help="a provision config line (TOML)"
    )
    parser.add_argument(
        "--provision-arg", action="append", default=[], metavar="ARG", help="an extra provision.py argument"
    )
    parser.add_argument("--keep", type=Path, help="copy the state file, Prowler's findings and logs here")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def log_tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no output)"


@contextmanager
def moto_process(scratch: Path, environment: Mapping[str, str]) -> Iterator[str]:
    """`python -m moto.server` on a free loopback port (its output in scratch/moto.log); yields its endpoint."""
    port = free_port()
    log_path = scratch / "moto.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            env={**environment, **MOTO_SWITCHES},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise common.BenchError(f"moto server exited ({process.returncode}):\n{log_tail(log_path)}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise common.BenchError(f"moto server not listening on :{port} after 30 s") from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_logged(command: list[str], environment: Mapping[str, str], log_path: Path, timeout: int, what: str) -> None:
    with log_path.open("wb") as log:
        try:
            finished = subprocess.run(
                command, env=dict(environment), stdout=log, stderr=subprocess.STDOUT, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise common.BenchError(f"{what} took more than {timeout} s:\n{log_tail(log_path)}") from exc
    if finished.returncode != 0:
        raise common.BenchError(f"{what} failed (exit {finished.returncode}):\n{log_tail(log_path)}")


def provision_config(args: argparse.Namespace) -> str:
    lines = list(args.setting)
    if args.network == "private":
        lines.append('network = "private"')
    return "".join(f"{line}\n" for line in lines)


def vpc_owned_ids(endpoint: str, vpc_ids: list[str]) -> list[str]:
    """What AWS makes with a VPC and the state file does not record: its default security group and
    network ACL (the subnets keep the default ACL until the stack has its own)."""
    if not vpc_ids:
        return []
    ec2: Any = boto3.client(
        "ec2",
        endpoint_url=endpoint,
        region_name=common.REGION,
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    in_vpc = [{"Name": "vpc-id", "Values": vpc_ids}]
    acls = ec2.describe_network_acls(Filters=in_vpc)["NetworkAcls"]
    groups = ec2.describe_security_groups(Filters=[*in_vpc, {"Name": "group-name", "Values": ["default"]}])
    return [acl["NetworkAclId"] for acl in acls] + [group["GroupId"] for group in groups["SecurityGroups"]]


def gated(findings: list[Finding], network: str) -> list[Finding]:
    """The stack's FAILs that issue 11's CI gate refuses: high or critical, but the public IP on public."""
    allowed = ALLOWED_ON_PUBLIC if network == "public" else frozenset()
    return [f for f in findings if f.severity in GATED_SEVERITIES and f.check_id not in allowed]


def measure(args: argparse.Namespace, output: common.BenchOutput) -> common.Result:
    prowler = Path(args.prowler)
    if not os.access(prowler, os.X_OK):
        raise common.MissingPrerequisiteError(f"{prowler} is missing; run scripts/setup-prowler.sh")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="security-") as tmp:
        scratch = Path(tmp)
        environment = {
            **common.clean_environment(scratch),
            **FAKE_CREDENTIALS,
            "AWS_DEFAULT_REGION": common.REGION,
            "HOME": str(scratch),  # Prowler and boto3 find no configuration of this machine's user
        }
        state_path, config_path, findings_dir = scratch / "state.json", scratch / "deploy.toml", scratch / "prowler"
        config_path.write_text(provision_config(args))
        with moto_process(scratch, environment) as endpoint:
            environment["AWS_ENDPOINT_URL"] = endpoint
            output.line(f"moto server on {endpoint}; provisioning the {args.network} stack")
            provision = [sys.executable, str(common.REPO_ROOT / "provision.py"), "--image", IMAGE, "--no-wait"]
            provision += ["--state-file", str(state_path), "--config", str(config_path), *args.provision_arg]
            provision_seconds, _ = common.timed(
                lambda: run_logged(provision, environment, scratch / "provision.log", PROVISION_TIMEOUT, "provision")
            )
            state = json.loads(state_path.read_text())
            vpcs = [r["ids"]["id"] for r in state["resources"] if r["step"] == "vpc"]
            identity = stack_identity(state, vpc_owned_ids(endpoint, vpcs))
            output.line(f"provisioned in {provision_seconds:.1f} s; running Prowler ({prowler})")
            scan_command = [str(prowler), "aws", "--services", *SERVICES, "--region", common.REGION]
            scan_command += ["--scan-unused-services", "--output-formats", "json-ocsf", "--output-filename", "scan"]
            scan_command += ["--output-directory", str(findings_dir), "--no-banner", "--no-color"]
            scan_command += ["--ignore-exit-code-3"]  # 3: the scan found FAILs, which is what it is for
            prowler_seconds, _ = common.timed(
                lambda: run_logged(scan_command, environment, scratch / "prowler.log", PROWLER_TIMEOUT, "Prowler")
            )
        findings_path = findings_dir / "scan.ocsf.json"
        if not findings_path.exists():
            raise common.BenchError(f"Prowler wrote no {findings_path.name}:\n{log_tail(scratch / 'prowler.log')}")
        findings = load_findings(findings_path)
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for kept in (state_path, findings_path, scratch / "provision.log", scratch / "prowler.log"):
                shutil.copy2(kept, args.keep / kept.name)
            identity_record = {
                "stack": identity.stack,
                "tokens": sorted(identity.tokens),
                "vpc_ids": sorted(identity.vpc_ids),
            }
            (args.keep / "identity.json").write_text(json.dumps(identity_record, indent=2) + "\n")
    total_seconds = time.perf_counter() - started
    scan = classify(findings, identity)
    refused = gated(scan.stack, args.network)
    lines = [
        f"Prowler {prowler} on the {args.network} stack '{identity.stack}' in moto "
        f"({len(findings)} findings; {scan.stack_passes} PASS and {len(scan.stack)} FAIL on the stack's resources)",
        *severity_rows("FAILs on the stack's own resources", scan.stack),
        *severity_rows("FAILs account-level (not the stack's; moto's default VPC among them)", scan.account),
        *severity_rows("moto artefacts filtered out", scan.artefacts),
        f"wall time: provision {provision_seconds:.1f} s, Prowler {prowler_seconds:.1f} s, "
        f"whole run {total_seconds:.1f} s",
    ]
    figures = {
        "network": args.network,
        "stack": identity.stack,
        "findings": len(findings),
        "stack_passes": scan.stack_passes,
        "stack_fails": severity_figures(scan.stack),
        "account_fails": severity_figures(scan.account),
        "artefacts": severity_figures(scan.artefacts),
        "gated": sorted({f.check_id for f in refused}),
        "stack_fail_resources": sorted({f"{f.check_id} {f.uid}" for f in scan.stack}),
        "seconds": {
            "provision": round(provision_seconds, 1),
            "prowler": round(prowler_seconds, 1),
            "total": round(total_seconds, 1),
        },
    }
    targets = [
        common.Target.check("the scan saw the stack's resources", scan.stack_passes + len(scan.stack) > 0),
        common.Target(f"high/critical FAILs on the stack ({args.network}; issue 11's gate)", len(refused), 0),
    ]
    return common.Result(lines, figures, targets)


if __name__ == "__main__":
    sys.exit(common.main(__doc__, measure, options))
