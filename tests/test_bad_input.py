"""Bad input: one paragraph on stderr (what, where, what to do), exit code 2, no traceback, nothing lost.

"Nothing lost" means: the state file, if there is one, is byte-for-byte what it
was, no stray temporary file is left beside it, and the emulator holds no AWS
resource the run was not supposed to create. Most cases run the real scripts as
a user would (`run_script`, or `run_bare` when an environment variable must be
absent); settings that are refused before any AWS call run in-process, with
`connect` replaced by a trap so that reaching AWS fails the test.

The catalogue of every kind of bad input, one row each through the real scripts, is
tests/test_bad_input_catalogue.py (which imports the helpers below); this file keeps
what a row cannot say: the same refusal from teardown.py as from provision.py, every
malformed shape of a state file, boundaries, a really provisioned stack, and the
refusals checked in-process.
"""

from __future__ import annotations

import ctypes
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from deployer import cli
from deployer.settings import MAX_STACK_LENGTH, Settings, validate
from deployer.stack import build_steps
from tests.conftest import ACCOUNT, IMAGE, PROJECT_DIR, REGION, MotoServer, RunScript, script_env

if TYPE_CHECKING:
    from mypy_boto3_ec2.type_defs import FilterTypeDef

STACK = "test-site"
OTHER_ACCOUNT = "210987654321"

# Every step in creation order (deployer/stack.py), used to check what a failed run recorded.
# The default (public) settings' steps, in order.
STEP_ORDER = [step.name for step in build_steps() if step.wanted(Settings())]


# --------------------------------------------------------------------------- helpers


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str


def assert_refused(result: Outcome | subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Exit code 2 and one paragraph on stderr that says what, where and what to do; no traceback."""
    err = result.stderr
    context = f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{err}"
    assert "Traceback" not in err, context
    assert result.returncode == 2, context
    paragraph = err.strip()
    assert paragraph.startswith("error: "), context
    assert "\n\n" not in paragraph, f"more than one paragraph\n{context}"
    assert re.search(r"Where: .+\. [A-Z]", paragraph), f"no 'Where: ...' followed by what to do\n{context}"
    for fragment in fragments:
        assert fragment.lower() in paragraph.lower(), f"{fragment!r} missing\n{context}"
    assert "Site URL" not in result.stdout, context


def state_json(**changes: Any) -> str:
    """A well-formed state file for STACK in REGION and ACCOUNT that records one VPC."""
    data: dict[str, Any] = {
        "schema_version": 1,
        "stack": STACK,
        "region": REGION,
        "account_id": ACCOUNT,
        "resources": [{"step": "vpc", "ids": {"id": "vpc-0123456789abcdef0"}}],
        "outputs": {},
    }
    data.update(changes)
    return json.dumps(data, indent=2) + "\n"


@dataclass
class Snapshot:
    """The bytes of the state file and the names beside it (but the settings file), to compare after a run."""

    path: Path
    content: bytes | None
    folder: list[str]

    @classmethod
    def take(cls, path: Path) -> Snapshot:
        content = path.read_bytes() if path.is_file() else None
        return cls(path, content, sorted(set(os.listdir(path.parent)) - {"deploy.toml"}))

    def assert_unchanged(self) -> None:
        now = Snapshot.take(self.path)
        assert now.content == self.content, "the state file changed"
        assert now.folder == self.folder, "files appeared or vanished beside the state file"


def aws_resources(server: MotoServer) -> dict[str, list[str]]:
    """What the emulator holds that provision.py could have created (the default VPC excluded)."""

    session = boto3.Session(region_name=REGION)
    ec2 = session.client("ec2", endpoint_url=server.url)
    elbv2 = session.client("elbv2", endpoint_url=server.url)
    iam = session.client("iam", endpoint_url=server.url)
    logs = session.client("logs", endpoint_url=server.url)
    ecr = session.client("ecr", endpoint_url=server.url)
    ecs = session.client("ecs", endpoint_url=server.url)

    tagged: list[FilterTypeDef] = [{"Name": "tag-key", "Values": ["deployer:stack"]}]
    found = {
        "vpcs": [v["VpcId"] for v in ec2.describe_vpcs(Filters=tagged)["Vpcs"]],
        "subnets": [s["SubnetId"] for s in ec2.describe_subnets(Filters=tagged)["Subnets"]],
        "security_groups": [g["GroupId"] for g in ec2.describe_security_groups(Filters=tagged)["SecurityGroups"]],
        "roles": [r["RoleName"] for r in iam.list_roles()["Roles"]],
        "log_groups": [g["logGroupName"] for g in logs.describe_log_groups()["logGroups"]],
        "repositories": [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]],
        "clusters": ecs.list_clusters()["clusterArns"],
        "load_balancers": [b["LoadBalancerName"] for b in elbv2.describe_load_balancers()["LoadBalancers"]],
        "target_groups": [g["TargetGroupName"] for g in elbv2.describe_target_groups()["TargetGroups"]],
    }
    return {kind: sorted(names) for kind, names in found.items() if names}


def run_bare(
    tmp_path: Path,
    server: MotoServer,
    script: str,
    *args: str,
    drop: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Like `run_script`, but can remove variables from the environment (`drop`)."""
    environment = script_env(server, tmp_path)
    for name in drop:
        environment.pop(name, None)
    environment.update(env or {})
    config = tmp_path / "deploy.toml"
    if not config.exists():
        config.write_text("")
    flags = ["--config", str(config)] if script == "provision.py" else []
    return subprocess.run(
        [sys.executable, str(PROJECT_DIR / script), *flags, *args],
        cwd=tmp_path,
        env=environment,
        input="",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def provision_args(*extra: str) -> tuple[str, ...]:
    return ("--stack", STACK, "--image", IMAGE, "--no-wait", *extra)


def script_args(script: str) -> tuple[str, ...]:
    """Arguments with which each script gets as far as reading the state file."""
    return provision_args() if script == "provision.py" else ("--yes",)


def recorded_steps(path: Path) -> list[str]:
    return [entry["step"] for entry in json.loads(path.read_text())["resources"]]


@pytest.fixture
def provisioned(server: MotoServer, run_script: RunScript, tmp_path: Path) -> Path:
    """A stack really provisioned on the emulator; returns its state file."""
    result = run_script("provision.py", *provision_args(), server=server)
    assert result.returncode == 0, result.stderr
    return tmp_path / "state.json"


@pytest.fixture
def in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., Outcome]:
    """Run `provision_main` in-process for input refused before any AWS call (reaching AWS fails the test)."""

    def no_aws(*_: Any, **__: Any) -> None:
        raise AssertionError("the run reached AWS: the input should have been refused before")

    monkeypatch.setattr(cli, "connect", no_aws)
    config = tmp_path / "deploy.toml"

    def run(*args: str, toml: str = "") -> Outcome:
        config.write_text(toml)
        code = cli.provision_main(
            ["--config", str(config), "--state-file", str(tmp_path / "state.json"), "--image", IMAGE, *args]
        )
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return run


# --------------------------------------------------------------------------- settings (no AWS call)


@pytest.mark.parametrize(
    "stack",
    [
        pytest.param("a" * (MAX_STACK_LENGTH + 1), id="too-long"),
        pytest.param("Test-site", id="uppercase"),
        pytest.param("1site", id="leading-digit"),
        pytest.param("site-", id="trailing-hyphen"),
        pytest.param("my--site", id="double-hyphen"),
        pytest.param("internal-x", id="internal-prefix"),
        pytest.param("my_site", id="underscore"),
        pytest.param("", id="empty"),
    ],
)
def test_invalid_stack_name_is_refused(in_process: Callable[..., Outcome], tmp_path: Path, stack: str) -> None:
    result = in_process("--stack", stack)
    assert_refused(result, "stack", f"'{stack}'")
    assert not (tmp_path / "state.json").exists()


def test_longest_stack_name_is_accepted() -> None:
    """The boundary of the too-long case: 28 characters fit the 32-character load balancer name."""
    assert MAX_STACK_LENGTH == 28
    validate(Settings(stack="a" * MAX_STACK_LENGTH))


@pytest.mark.parametrize(
    ("toml", "fragments"),
    [
        pytest.param("cpu = 256\nmemory = 4096\n", ("cpu", "memory", "4096"), id="cpu-memory-pair"),
        pytest.param("log_retention_days = 8\n", ("log_retention_days", "8", "14"), id="log-retention"),
        pytest.param("colour = 'red'\n", ("unknown", "colour", "deploy.toml"), id="unknown-key"),
        pytest.param("cpu = '256'\n", ("cpu", "int", "deploy.toml"), id="wrong-type-str"),
        pytest.param("desired_count = true\n", ("desired_count", "int"), id="wrong-type-bool"),
        pytest.param("subnet_cidrs = '10.0.0.0/24'\n", ("subnet_cidrs",), id="wrong-type-list"),
        pytest.param("cpu = = 256\n", ("toml", "line 1", "deploy.toml"), id="malformed-toml"),
        pytest.param("[tags\nteam = 'web'\n", ("toml", "deploy.toml"), id="malformed-table"),
        pytest.param('vpc_cidr = "10.0.0.1/16"\n', ("vpc_cidr", "10.0.0.1/16"), id="cidr-host-bits"),
        pytest.param(
            'vpc_cidr = "10.0.0.0/16"\nsubnet_cidrs = ["10.0.0.0/24", "10.0.0.0/24"]\n',
            ("subnet_cidrs", "overlap"),
            id="overlapping-subnets",
        ),
        pytest.param("listener_port = 70000\n", ("listener_port", "70000"), id="port-range"),
        pytest.param(
            'task_role_policy_arns = ["AmazonS3ReadOnlyAccess"]\n', ("task_role_policy_arns", "arn"), id="policy-arn"
        ),
        pytest.param('tags = { "aws:owner" = "me" }\n', ("tags", "aws:"), id="reserved-tag"),
    ],
)
def test_invalid_settings_file_is_refused(
    in_process: Callable[..., Outcome], tmp_path: Path, toml: str, fragments: tuple[str, ...]
) -> None:
    result = in_process("--stack", STACK, toml=toml)
    assert_refused(result, *fragments)
    assert not (tmp_path / "state.json").exists()


def test_missing_config_file_is_refused(in_process: Callable[..., Outcome], tmp_path: Path) -> None:
    missing = tmp_path / "elsewhere" / "missing.toml"
    result = in_process("--stack", STACK, "--config", str(missing))
    assert_refused(result, "--config", str(missing), "does not exist")
    assert not (tmp_path / "state.json").exists()


def test_settings_refusal_leaves_an_existing_state_untouched(
    in_process: Callable[..., Outcome], tmp_path: Path
) -> None:
    (tmp_path / "state.json").write_text(state_json())
    before = Snapshot.take(tmp_path / "state.json")
    assert_refused(in_process(toml="cpu = 256\nmemory = 4096\n"), "cpu")
    before.assert_unchanged()


# --------------------------------------------------------------------------- credentials


def test_no_credentials_is_refused_by_teardown(server: MotoServer, tmp_path: Path) -> None:
    """provision.py's case is the catalogue's row 'no-credentials'."""
    state = tmp_path / "state.json"
    state.write_text(state_json())
    before = Snapshot.take(state)
    result = run_bare(
        tmp_path,
        server,
        "teardown.py",
        *script_args("teardown.py"),
        drop=("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
        env={"AWS_EC2_METADATA_DISABLED": "true"},
    )
    assert_refused(result, "credentials", "AWS_PROFILE")
    before.assert_unchanged()
    assert aws_resources(server) == {}


# --------------------------------------------------------------------------- state file


CORRUPT_STATES = [
    pytest.param(b"{not json", id="not-json"),
    pytest.param(b"", id="empty"),
    pytest.param(b"[]\n", id="top-level-list"),
    pytest.param(json.dumps({"schema_version": 1, "stack": STACK}).encode(), id="missing-keys"),
    pytest.param(state_json(stack=5).encode(), id="stack-not-text"),
    pytest.param(state_json(resources={"vpc": "vpc-1"}).encode(), id="resources-not-list"),
    pytest.param(state_json(outputs=["http://x"]).encode(), id="outputs-not-object"),
    pytest.param(state_json(schema_version=99).encode(), id="unknown-schema-version"),
    pytest.param(
        state_json(resources=[{"step": "vpc", "ids": ["vpc-1"]}]).encode(),
        id="ids-not-object",
    ),
    pytest.param(
        b"\xff\xfe{garbage",
        id="not-utf8",
    ),
]


@pytest.mark.parametrize("script", ["provision.py", "teardown.py"])
@pytest.mark.parametrize("content", CORRUPT_STATES)
def test_corrupt_state_file_is_refused_and_kept(
    server: MotoServer, run_script: RunScript, tmp_path: Path, script: str, content: bytes
) -> None:
    state = tmp_path / "state.json"
    state.write_bytes(content)
    before = Snapshot.take(state)
    result = run_script(script, *script_args(script), server=server)
    assert_refused(result, "state file", "corrupt", "left exactly as it is", "state.json")
    before.assert_unchanged()
    assert aws_resources(server) == {}


def test_state_path_that_is_a_folder_is_refused_by_teardown(
    server: MotoServer, run_script: RunScript, tmp_path: Path
) -> None:
    """provision.py's case is the catalogue's row 'state-path-is-folder'."""
    state = tmp_path / "state.json"
    state.mkdir()
    (state / "keep.txt").write_text("x")
    result = run_script("teardown.py", *script_args("teardown.py"), server=server)
    assert_refused(result, "state file", "cannot be read", "state.json")
    assert state.is_dir()
    assert os.listdir(state) == ["keep.txt"]
    assert aws_resources(server) == {}


PR_CAPBSET_DROP = 24  # <linux/prctl.h>
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2  # <linux/capability.h>: what lets root read a file whatever its mode


def without_root_file_access() -> None:
    """In the child, before exec: as root, drop the two capabilities that bypass file modes (from the bounding
    set, so the exec'd script runs as root without them: a mode-000 file is unreadable, the folders stay root's)."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), f"prctl(PR_CAPBSET_DROP, {capability}) failed")


@pytest.mark.parametrize("script", ["provision.py", "teardown.py"])
def test_unreadable_state_file_is_refused(server: MotoServer, tmp_path: Path, script: str) -> None:
    """Runs as root too (CI): the script is started without root's power to read any file."""
    state = tmp_path / "state.json"
    state.write_text(state_json())
    state.chmod(0o000)
    config = tmp_path / "deploy.toml"
    config.write_text("")
    flags = ["--config", str(config)] if script == "provision.py" else []
    try:
        result = subprocess.run(
            [sys.executable, str(PROJECT_DIR / script), *flags, *script_args(script)],
            cwd=tmp_path,
            env=script_env(server, tmp_path),
            input="",
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            preexec_fn=without_root_file_access,  # two prctl calls in the child, no lock taken
        )
        assert_refused(result, "state file", "cannot be read", "permission")
    finally:
        state.chmod(0o600)
    assert state.read_text() == state_json()
    assert aws_resources(server) == {}


def test_state_file_of_another_account_is_refused(server: MotoServer, run_script: RunScript, provisioned: Path) -> None:
    data = json.loads(provisioned.read_text())
    assert data["account_id"] == ACCOUNT
    data["account_id"] = OTHER_ACCOUNT
    provisioned.write_text(json.dumps(data, indent=2) + "\n")
    before = Snapshot.take(provisioned)
    resources = aws_resources(server)
    assert resources["vpcs"]
    for script in ("provision.py", "teardown.py"):
        result = run_script(script, *script_args(script), server=server)
        assert_refused(result, "account", f"'{OTHER_ACCOUNT}'", f"'{ACCOUNT}'", "nothing was changed")
        before.assert_unchanged()
        assert aws_resources(server) == resources, f"{script} changed AWS resources"


def test_state_file_never_holds_credentials(server: MotoServer, run_script: RunScript, tmp_path: Path) -> None:
    secrets = {
        "AWS_ACCESS_KEY_ID": "FAKEEXAMPLEKEYID0001",
        "AWS_SECRET_ACCESS_KEY": "secret-value-wJalrXUtnFEMI",
        "AWS_SESSION_TOKEN": "auth-token-FwoGZXIvYXdzEXAMPLE",
    }
    result = run_script("provision.py", *provision_args(), server=server, env=secrets)
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "state.json").read_text()
    for forbidden in ("testing", "AWS_SECRET", "auth-token", "secret", *secrets.values()):
        assert forbidden not in text, forbidden
    assert set(json.loads(text)) == {
        "schema_version",
        "updated_at",
        "stack",
        "region",
        "account_id",
        "resources",
        "outputs",
    }


# --------------------------------------------------------------------------- teardown


def test_teardown_answered_no_deletes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state.json"
    state.write_text(state_json())
    before = Snapshot.take(state)

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    def no_aws(*_: Any, **__: Any) -> None:
        raise AssertionError("the run reached AWS after the answer 'no'")

    monkeypatch.setattr(sys, "stdin", Terminal("no\n"))
    monkeypatch.setattr(cli, "connect", no_aws)
    code = cli.teardown_main(["--state-file", str(state)])
    captured = capsys.readouterr()
    prompt, asked, refusal = captured.err.partition("Type 'yes' to confirm: ")
    assert asked and "Delete all 1 resources" in prompt, "the question goes to stderr, so stdout stays parseable"
    assert_refused(Outcome(code, captured.out, refusal), "cancelled", "nothing was deleted", "yes")
    before.assert_unchanged()
