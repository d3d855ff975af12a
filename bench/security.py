"""Run Prowler on the default and the private stack provisioned into moto: FAIL counts by severity on
each stack's own resources, before (issue 11's baseline) and after, and issue 11's CI gate.

What it measures
    The security findings of the stacks the tool provisions (public: the default settings, stack
    flask-site; private: `network = "private"`, `log_kms_key = "create"` and HTTPS on a domain with the FIPS
    and post-quantum TLS policy (its public hosted zone made first), stack private-site), both in one moto
    server and one scan:
    1. A moto server (`python -m moto.server`) on a free loopback port, with IAM's managed policies loaded
       and ECS services reported running; fake credentials, region us-east-1, no AWS configuration.
    2. The real provision script into it, as a user runs it, once per stack:
       `provision.py --image public.ecr.aws/docker/library/python:3.12-slim --no-wait --stack <name>
       --state-file <tmp> --config <tmp toml>` (no image build, no Docker), AWS_ENDPOINT_URL at moto.
    3. Prowler from its own virtualenv (scripts/setup-prowler.sh; its pins clash with the project's):
       `prowler aws --services ecs ecr elbv2 ec2 vpc cloudwatch iam kms --region us-east-1
       --scan-unused-services --output-formats json-ocsf ...` against the same endpoint.
    4. Its findings sorted by bench/security_findings.py: a FAIL is the stack's when its resource's ARN or
       name contains the stack's names or ids (state file, plus the default security group and network
       ACLs of the stack's VPC, which AWS makes and the state may not record) or it lives in the stack's
       VPC; moto's artefacts (it runs no tasks) are filtered by check and resource;
       the rest is account-level (password policy, CloudTrail alarms, moto's default VPC, ...), but
       what is the other stack's.
    The report: per network, FAILs by severity with their check ids, on the stack and account-level, the
    wall times; then the stack's FAIL counts by severity before (BASELINE, recorded) and after (this run).

Targets (issue 11's gate; `--gate` is how CI runs it, scripts/security-gate.sh)
    Per network: the stack was provisioned and scanned; the scan saw it (PASS or FAIL findings on its
    resources from each of REQUIRED_SERVICES); no refused FAIL on its resources: none high or critical,
    but `ecs_service_no_assign_public_ip` on the public network; no medium or low one that README.md's
    "Security" table does not list (nor, on the private stack, one the table says one of its settings
    clears). A refused stack gets one paragraph naming each offending check id, severity and resource.

Variants
    --network public|private  one stack only (default: both)
    --setting 'key = value'   any other line of the provision config (TOML), repeatable; with `domain`, a
                              public hosted zone for the domain's parent is made first
    --provision-arg=ARG       an extra provision.py argument, repeatable (`=` form for ARGs starting --)
    --gate                    CI: a missing Prowler fails (exit 1) instead of skipping (exit 2)

How to run it (from the repository root, in its virtualenv)
    scripts/setup-prowler.sh    # once: Prowler in .prowler-venv (or $PROWLER_VENV)
    python bench/security.py [--network private] [--gate] [--json] [--quiet] [--keep DIR]
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
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import boto3

from bench import common
from bench.security_findings import (
    PRIVATE_SETTINGS,
    SEVERITIES,
    Finding,
    Listed,
    ReadmeTableError,
    Scan,
    StackIdentity,
    classify_stacks,
    load_findings,
    readme_security_table,
    refusals,
    severity_figures,
    severity_rows,
    stack_identity,
    unseen_services,
    verdict,
)

IMAGE = "public.ecr.aws/docker/library/python:3.12-slim"  # --image: no build, no push, no Docker
SERVICES = ("ecs", "ecr", "elbv2", "ec2", "vpc", "cloudwatch", "iam", "kms")
NETWORKS = ("public", "private")
# One moto server holds both stacks, so neither name may contain the other (a stack's resources are found
# by its name in their ARNs and names); the public one keeps the default name, as a user's would.
STACKS = {"public": "flask-site", "private": "private-site"}
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
# MOTO_EC2_LOAD_DEFAULT_AMIS=false: without it moto seeds every account with its AMI catalogue and over a
# thousand unencrypted EBS snapshots behind it (each an ec2_ebs_snapshots_encrypted FAIL and 2,300 of
# Prowler's 2,500 findings); a real account owns none of them and the stack launches no instance.
MOTO_SWITCHES = {
    "MOTO_IAM_LOAD_MANAGED_POLICIES": "true",
    "MOTO_ECS_SERVICE_RUNNING": "1",
    "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",
    "MOTO_ACM_VALIDATION_WAIT": "0",  # the private stack's certificate is issued at once (moto's default: 60 s)
}
PROVISION_TIMEOUT = 300
PROWLER_TIMEOUT = 1200
README = common.REPO_ROOT / "README.md"

# "Before": the stack's FAILs by severity as the seed made it, before any of issue 11's hardening:
# measured with this script's scan (Prowler 5.46.0, moto, the public default; the private network did
# not exist) on 2026-11-30 in a checkout of commit 881887b (`git archive 881887b`). High:
# ec2_networkacl_allow_ingress_any_port, ec2_securitygroup_default_restrict_traffic,
# ecs_service_no_assign_public_ip, ecs_task_definitions_containers_readonly_access. Medium:
# cloudwatch_log_group_kms_encryption_enabled, cloudwatch_log_group_retention_policy_specific_days_enabled,
# ec2_networkacl_allow_ingress_tcp_port_22 and _3389, ecs_cluster_container_insights_enabled,
# elbv2_deletion_protection, elbv2_logging_enabled, elbv2_nlb_tls_termination_enabled,
# vpc_endpoint_for_ec2_enabled, vpc_flow_logs_enabled, vpc_subnet_separate_private_public. Low:
# ecs_task_definitions_logging_block_mode.
BASELINE: dict[str, dict[str, int] | None] = {
    "public": {"critical": 0, "high": 4, "medium": 11, "low": 1, "informational": 0},
    "private": None,
}
BASELINE_WHEN = "seed, commit 881887b, 2026-11-30"


def default_prowler() -> Path:
    venv = os.environ.get("PROWLER_VENV") or str(common.REPO_ROOT / ".prowler-venv")
    return Path(venv) / "bin" / "prowler"


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--prowler", type=Path, default=default_prowler(), help="the prowler command (default: %(default)s)"
    )
    parser.add_argument(
        "--network",
        choices=(*NETWORKS, "both"),
        default="both",
        help='the stack(s) to scan; private adds network = "private" to the provision config (default: both)',
    )
    parser.add_argument(
        "--setting", action="append", default=[], metavar="'KEY = VALUE'", help="a provision config line (TOML)"
    )
    parser.add_argument(
        "--provision-arg", action="append", default=[], metavar="ARG", help="an extra provision.py argument"
    )
    parser.add_argument("--gate", action="store_true", help="CI: a missing Prowler fails instead of skipping")
    parser.add_argument("--keep", type=Path, help="copy each stack's state file, findings and logs to DIR/<network>")


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


def provision_config(args: argparse.Namespace, network: str) -> str:
    lines = list(args.setting)
    if network == "private":
        lines.extend(PRIVATE_SETTINGS)
    return "".join(f"{line}\n" for line in lines)


def moto_client(service: Literal["ec2", "route53"], endpoint: str) -> Any:
    """A client of the moto server with the fake credentials (the scripts' environment is not this process's)."""
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=common.REGION,
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


def vpc_owned_ids(endpoint: str, vpc_ids: list[str]) -> list[str]:
    """What AWS makes with a VPC and the state file may not record: its default security group and
    network ACLs (the default one, which the subnets keep until the stack has its own)."""
    if not vpc_ids:
        return []
    ec2 = moto_client("ec2", endpoint)
    in_vpc = [{"Name": "vpc-id", "Values": vpc_ids}]
    acls = ec2.describe_network_acls(Filters=in_vpc)["NetworkAcls"]
    groups = ec2.describe_security_groups(Filters=[*in_vpc, {"Name": "group-name", "Values": ["default"]}])
    return [acl["NetworkAclId"] for acl in acls] + [group["GroupId"] for group in groups["SecurityGroups"]]


@dataclass
class StackScan:
    """One network's stack, provisioned and scanned (or why not: `error`)."""

    network: str
    stack: str = ""
    findings: int = 0
    scan: Scan | None = None
    error: str = ""
    seconds: dict[str, float] | None = None


@dataclass
class Provisioned:
    """A stack provisioned into the moto server: its identity and where its files are."""

    network: str
    identity: StackIdentity
    seconds: float
    files: list[Path]


def provision_stack(
    args: argparse.Namespace, network: str, endpoint: str, environment: Mapping[str, str], scratch: Path
) -> Provisioned:
    """`provision.py --image` of the `network` stack (STACKS names it) into the moto server at `endpoint`."""
    folder = scratch / network
    folder.mkdir()
    state_path, config_path = folder / "state.json", folder / "deploy.toml"
    config_path.write_text(provision_config(args, network))
    domain = tomllib.loads(config_path.read_text()).get("domain")
    if isinstance(domain, str):  # the domain's public hosted zone (its parent's), which a user of `domain` has
        zone = domain.split(".", 1)[1]
        moto_client("route53", endpoint).create_hosted_zone(Name=zone, CallerReference=STACKS[network])
    provision = [sys.executable, str(common.REPO_ROOT / "provision.py"), "--image", IMAGE, "--no-wait"]
    provision += ["--stack", STACKS[network], "--state-file", str(state_path), "--config", str(config_path)]
    provision += args.provision_arg
    log_path = folder / "provision.log"
    seconds, _ = common.timed(lambda: run_logged(provision, environment, log_path, PROVISION_TIMEOUT, "provision"))
    state = json.loads(state_path.read_text())
    vpcs = [r["ids"]["id"] for r in state["resources"] if r["step"] == "vpc"]
    return Provisioned(network, stack_identity(state, vpc_owned_ids(endpoint, vpcs)), seconds, [state_path, log_path])


def scan_stacks(args: argparse.Namespace, networks: tuple[str, ...], output: common.BenchOutput) -> list[StackScan]:
    """Provision each network's stack into one moto server, run Prowler once over them all, and sort its
    findings per stack (one scan, not one per stack: Prowler's start and checks take minutes)."""
    started = time.perf_counter()
    prowler = Path(args.prowler)
    errors: dict[str, str] = dict.fromkeys(networks, "")
    with tempfile.TemporaryDirectory(prefix="security-") as tmp:
        scratch = Path(tmp)
        environment = {
            **common.clean_environment(scratch),
            **FAKE_CREDENTIALS,
            "AWS_DEFAULT_REGION": common.REGION,
            "HOME": str(scratch),  # Prowler and boto3 find no configuration of this machine's user
        }
        findings_dir, prowler_log = scratch / "prowler", scratch / "prowler.log"
        stacks: list[Provisioned] = []
        with moto_process(scratch, environment) as endpoint:
            environment["AWS_ENDPOINT_URL"] = endpoint
            for network in (n for n in networks if not errors[n]):
                output.line(f"moto server on {endpoint}; provisioning the {network} stack '{STACKS[network]}'")
                try:
                    stacks.append(provision_stack(args, network, endpoint, environment, scratch))
                except common.BenchError as exc:
                    errors[network] = str(exc)
            if not stacks:
                return [StackScan(network, error=errors[network]) for network in networks]
            output.line(f"provisioned {', '.join(s.network for s in stacks)}; running Prowler ({prowler})")
            scan_command = [str(prowler), "aws", "--services", *SERVICES, "--region", common.REGION]
            scan_command += ["--scan-unused-services", "--output-formats", "json-ocsf", "--output-filename", "scan"]
            scan_command += ["--output-directory", str(findings_dir), "--no-banner", "--no-color"]
            scan_command += ["--ignore-exit-code-3"]  # 3: the scan found FAILs, which is what it is for
            try:
                prowler_seconds, _ = common.timed(
                    lambda: run_logged(scan_command, environment, prowler_log, PROWLER_TIMEOUT, "Prowler")
                )
            except common.BenchError as exc:
                return [StackScan(network, error=errors[network] or str(exc)) for network in networks]
        findings_path = findings_dir / "scan.ocsf.json"
        if not findings_path.exists():
            failure = f"Prowler wrote no {findings_path.name}:\n{log_tail(prowler_log)}"
            return [StackScan(network, error=errors[network] or failure) for network in networks]
        findings = load_findings(findings_path)
        if args.keep:
            keep_files(args.keep, stacks, [findings_path, prowler_log])
    total = round(time.perf_counter() - started, 1)
    scans = classify_stacks(findings, [stack.identity for stack in stacks])
    scanned = {}
    for stack, scan in zip(stacks, scans, strict=True):
        seconds = {"provision": round(stack.seconds, 1), "prowler": round(prowler_seconds, 1), "total": total}
        scanned[stack.network] = StackScan(stack.network, stack.identity.stack, len(findings), scan, seconds=seconds)
    return [scanned.get(network) or StackScan(network, error=errors[network]) for network in networks]


def keep_files(keep: Path, stacks: list[Provisioned], shared: list[Path]) -> None:
    """--keep: each stack's state file, provision log and identity in DIR/<network>, with the scan's files."""
    for stack in stacks:
        folder = keep / stack.network
        folder.mkdir(parents=True, exist_ok=True)
        for kept in [*stack.files, *shared]:
            shutil.copy2(kept, folder / kept.name)
        identity_record = {
            "stack": stack.identity.stack,
            "tokens": sorted(stack.identity.tokens),
            "vpc_ids": sorted(stack.identity.vpc_ids),
        }
        (folder / "identity.json").write_text(json.dumps(identity_record, indent=2) + "\n")


def counts(findings: list[Finding]) -> dict[str, int]:
    return {severity: sum(checks.values()) for severity, checks in severity_figures(findings).items()}


def before_after(results: list[StackScan]) -> list[str]:
    """The stack's FAILs by severity: BASELINE (recorded) and this run, one row each per network."""
    rows = [f"{'the stack FAILs by severity':<54}{''.join(f'{s:>15}' for s in SEVERITIES)}"]
    for result in results:
        before = BASELINE.get(result.network)
        after = counts(result.scan.stack) if result.scan else None
        for when, figures in ((f"before ({BASELINE_WHEN})", before), ("after (this run)", after)):
            cells = "".join(f"{figures[s] if figures else '-':>15}" for s in SEVERITIES)
            rows.append(f"  {result.network + ' ' + when:<52}{cells}")
    return rows


def stack_report(result: StackScan, listed: Mapping[str, Listed]) -> tuple[list[str], list[common.Target], str]:
    """Report lines, targets and the gate's paragraph ("" when it passes) for one network's stack."""
    name = f"{result.network} stack"
    if result.scan is None:
        paragraph = f"Security gate: the {name} was not scanned: {result.error}"
        target = common.Target.check(f"the {name} was provisioned and scanned", False)
        return [f"the {name}: not scanned (below)"], [target], paragraph
    scan, seconds = result.scan, result.seconds or {}
    lines = [
        f"the {name} '{result.stack}' in moto ({result.findings} findings; "
        f"{scan.stack_passes} PASS and {len(scan.stack)} FAIL on the stack's resources)",
        *severity_rows("FAILs on the stack's own resources", scan.stack),
        *severity_rows("FAILs account-level (not the stack's; moto's default VPC among them)", scan.account),
        *severity_rows("moto artefacts filtered out", scan.artefacts),
        f"wall time: provision {seconds.get('provision')} s, Prowler {seconds.get('prowler')} s, "
        f"whole run {seconds.get('total')} s",
    ]
    paragraph = verdict(result.stack, result.network, scan, listed)
    targets = [
        common.Target.check(f"the scan saw the {name} (every required service)", not unseen_services(scan)),
        common.Target(f"refused FAILs on the {name} (issue 11's gate)", len(refusals(scan, result.network, listed)), 0),
    ]
    return lines, targets, paragraph


def stack_figures(result: StackScan, listed: Mapping[str, Listed]) -> dict[str, Any]:
    if result.scan is None:
        return {"network": result.network, "error": result.error}
    scan = result.scan
    return {
        "network": result.network,
        "stack": result.stack,
        "findings": result.findings,
        "stack_passes": scan.stack_passes,
        "seen_services": sorted(scan.seen_services),
        "stack_fails": severity_figures(scan.stack),
        "account_fails": severity_figures(scan.account),
        "artefacts": severity_figures(scan.artefacts),
        "refused": [r.describe() for r in refusals(scan, result.network, listed)],
        "stack_fail_resources": sorted({f"{f.check_id} {f.uid}" for f in scan.stack}),
        "seconds": result.seconds,
    }


def measure(args: argparse.Namespace, output: common.BenchOutput) -> common.Result:
    prowler = Path(args.prowler)
    if not os.access(prowler, os.X_OK):
        missing = f"{prowler} is missing; run scripts/setup-prowler.sh"
        raise common.BenchError(missing) if args.gate else common.MissingPrerequisiteError(missing)
    try:
        listed = readme_security_table(README.read_text(encoding="utf-8"))
    except ReadmeTableError as exc:
        raise common.BenchError(str(exc)) from exc
    networks = NETWORKS if args.network == "both" else (args.network,)
    results = scan_stacks(args, networks, output)
    lines: list[str] = [f"Prowler {prowler}"]
    targets: list[common.Target] = []
    paragraphs: list[str] = []
    for result in results:
        stack_lines, stack_targets, paragraph = stack_report(result, listed)
        lines += stack_lines
        targets += stack_targets
        paragraphs += [paragraph] if paragraph else []
    lines += before_after(results)
    lines += paragraphs
    figures = {
        "prowler": str(prowler),
        "stacks": [stack_figures(result, listed) for result in results],
        "before": {"measured": BASELINE_WHEN, **{n: BASELINE.get(n) for n in networks}},
        "after": {r.network: counts(r.scan.stack) if r.scan else None for r in results},
        "gate": paragraphs,
    }
    if args.json:
        for paragraph in paragraphs:
            print(paragraph, file=sys.stderr)  # the text report holds them; beside JSON, stderr says why
    return common.Result(lines, figures, targets)


if __name__ == "__main__":
    sys.exit(common.main(__doc__, measure, options))
