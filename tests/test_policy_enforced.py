"""The generated policy, enforced: the scripts run as an IAM user that holds only it.

moto checks IAM permissions once `settings.INITIAL_NO_AUTH_ACTION_COUNT` requests have been
served (moto/core/authorization.py; the environment variable of that name is read once, at
import). Its server's `POST /moto-api/reset-auth` sets that count and restarts the request
count at 0 (what moto's own `set_initial_no_auth_action_count` does in server mode), so:
"inf" lets the admin set-up through (create the user, its access key, its policy), "0"
enforces every request after it. It runs in a server process of its own: enforcement is
process-wide and must not reach the in-process tests.

What moto enforces (moto/iam/access_control.py): the action, against Resource "*" for every
service but IAM (which passes the role's ARN), and every Condition of a statement is checked
against an empty request context, so a conditioned statement never matches. The user's policy
is therefore the generated one with each Resource widened to "*" and the conditions dropped:
this proves the action list (every call of provision, a redeploy, status, logs and teardown
is allowed; taking one action out breaks its phase), while tests/test_policy.py checks the
scoping. moto does not check the permission-only actions AWS evaluates beside a call
(iam:PassRole, ec2:CreateTags and the other tag-on-create checks, iam:CreateServiceLinkedRole):
removing iam:PassRole still lets provision through, so it is not in the removal sample.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest

from deployer import policy
from deployer.settings import Settings
from tests.conftest import ACCOUNT, IMAGE, PROJECT_DIR, REGION, MotoServer, script_env

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient

SECOND_IMAGE = "public.ecr.aws/docker/library/python:3.13-slim"
USER = "deployer"


@pytest.fixture(scope="module")
def enforcing_server() -> Iterator[MotoServer]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "MOTO_"))}
    env.update(MOTO_IAM_LOAD_MANAGED_POLICIES="true", MOTO_ECS_SERVICE_RUNNING="1", MOTO_EC2_LOAD_DEFAULT_AMIS="false")
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = MotoServer(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                _post(server, "reset-auth", "inf")
                break
            except urllib.error.URLError as exc:  # not listening yet
                if isinstance(exc, urllib.error.HTTPError) or time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=30)


def moto_actions(actions: list[str]) -> list[str]:
    """The actions as moto names them: it authorizes CloudWatch's requests under the prefix `monitoring` (the
    service's endpoint prefix), AWS under `cloudwatch` (the Service Authorization Reference, "Actions defined by
    Amazon CloudWatch": https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazoncloudwatch.html)."""
    named: list[str] = []
    for action in actions:
        named.append(action)
        if action.startswith("cloudwatch:"):
            named.append("monitoring:" + action.removeprefix("cloudwatch:"))
    return named


def _post(server: MotoServer, path: str, body: str = "") -> None:
    request = urllib.request.Request(
        f"{server.url}/moto-api/{path}",
        data=body.encode(),
        method="POST",
        headers={"Content-Type": "text/plain"},  # a form body would leave moto's request.data empty
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 200


@dataclass
class Deployer:
    """The IAM user the scripts run as, on a server that enforces its policy."""

    server: MotoServer
    tmp_path: Path
    key: dict[str, str]

    def admin_iam(self) -> IAMClient:
        """IAM as the emulator's root (allowed only while enforcement is off)."""
        return boto3.client(
            "iam",
            region_name=REGION,
            endpoint_url=self.server.url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def grant(self, without: str = "") -> None:
        """The generated policy (widened, see the module's docstring), less `without`; then enforce."""
        document = policy.document(Settings(image=IMAGE), "aws", REGION, ACCOUNT)
        statements = [
            {"Effect": "Allow", "Action": moto_actions(actions), "Resource": "*"}
            for statement in document["Statement"]
            if (actions := [action for action in statement["Action"] if action != without])
        ]
        assert without == "" or all(without not in s["Action"] for s in statements)
        _post(self.server, "reset-auth", "inf")
        self.admin_iam().put_user_policy(
            UserName=USER,
            PolicyName="deployer",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}),
        )
        _post(self.server, "reset-auth", "0")

    def run(self, script: str, *args: str) -> subprocess.CompletedProcess[str]:
        env = script_env(self.server, self.tmp_path)
        env.update(AWS_ACCESS_KEY_ID=self.key["AccessKeyId"], AWS_SECRET_ACCESS_KEY=self.key["SecretAccessKey"])
        config = self.tmp_path / "deploy.toml"
        config.write_text('stack = "enforced"\n')
        flags = ["--config", str(config)] if script == "provision.py" else []
        return subprocess.run(
            [sys.executable, str(PROJECT_DIR / script), *flags, *args],
            cwd=self.tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def ok(self, script: str, *args: str) -> subprocess.CompletedProcess[str]:
        done = self.run(script, *args)
        assert done.returncode == 0, f"{script} {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}"
        return done


@pytest.fixture
def deployer(enforcing_server: MotoServer, tmp_path: Path) -> Iterator[Deployer]:
    _post(enforcing_server, "reset-auth", "inf")
    _post(enforcing_server, "reset")
    user = Deployer(enforcing_server, tmp_path, {})
    iam = user.admin_iam()
    iam.create_user(UserName=USER)
    key = iam.create_access_key(UserName=USER)["AccessKey"]
    user.key = {"AccessKeyId": key["AccessKeyId"], "SecretAccessKey": key["SecretAccessKey"]}
    _post(enforcing_server, "reset-auth", "0")
    yield user
    _post(enforcing_server, "reset-auth", "inf")


def test_print_policy_needs_no_permission_and_writes_nothing(deployer: Deployer) -> None:
    printed = deployer.ok("provision.py", "--print-policy", "--image", IMAGE)  # the user has no policy yet
    assert json.loads(printed.stdout) == policy.documents(
        Settings(stack="enforced", region=REGION, image=IMAGE), "aws", REGION, ACCOUNT
    )
    assert sorted(path.name for path in deployer.tmp_path.iterdir()) == ["deploy.toml"]
    as_json = deployer.ok("provision.py", "--print-policy", "--output", "json")  # the site built: the push too
    actions = {
        action
        for document in json.loads(as_json.stdout)
        for statement in document["Statement"]
        for action in statement["Action"]
    }
    assert {"ecr:PutImage", "ecr:GetAuthorizationToken"} <= actions


def test_the_policy_allows_a_whole_lifecycle(deployer: Deployer) -> None:
    started = time.monotonic()
    deployer.grant()
    deployer.ok("provision.py", "--image", IMAGE, "--no-wait")
    deployer.ok("provision.py", "--image", SECOND_IMAGE, "--no-wait")  # a redeploy: a new revision
    status = json.loads(deployer.ok("status.py", "--output", "json").stdout)
    assert status["service"]["error"] is None and status["service"]["image"] == SECOND_IMAGE
    deployer.ok("logs.py", "--since", "1h")
    deployer.ok("teardown.py", "--yes")
    assert not (deployer.tmp_path / "state.json").exists()
    print(f"enforced lifecycle: {time.monotonic() - started:.1f} s")


# Each sample action taken out of the policy, and the phase that must then fail naming it.
REMOVALS = [
    ("ec2:CreateVpc", "provision.py"),
    ("elasticloadbalancing:CreateListener", "provision.py"),
    ("logs:FilterLogEvents", "logs.py"),
    ("ecs:DeleteService", "teardown.py"),
]
ARGS = {"provision.py": ("--image", IMAGE, "--no-wait"), "logs.py": ("--since", "1h"), "teardown.py": ("--yes",)}


@pytest.mark.parametrize(("action", "script"), REMOVALS)
def test_taking_an_action_out_breaks_its_phase(deployer: Deployer, action: str, script: str) -> None:
    if script != "provision.py":  # a stack to read or tear down, provisioned with the whole policy
        deployer.grant()
        deployer.ok("provision.py", *ARGS["provision.py"])
    deployer.grant(without=action)
    failed = deployer.run(script, *ARGS[script])
    assert failed.returncode != 0, f"{script} succeeded without {action}"
    assert action in failed.stderr, failed.stderr[-2000:]
    assert "AccessDenied" in failed.stderr or "not authorized" in failed.stderr, failed.stderr[-2000:]
