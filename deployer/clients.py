"""The one place where AWS clients are built.

Credentials, region and endpoint come from the standard boto3 chain (environment,
`AWS_PROFILE`, config files), the region optionally from `--region`, and
`AWS_ENDPOINT_URL` points every client at an emulator. Steps never build clients:
they receive an `AwsClients`, so tests can hand them clients with hooks attached.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import boto3
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, ProfileNotFound

from deployer.errors import AwsSetupError, StoppedError

if TYPE_CHECKING:
    from mypy_boto3_acm import ACMClient
    from mypy_boto3_application_autoscaling import ApplicationAutoScalingClient
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ecr import ECRClient
    from mypy_boto3_ecs import ECSClient
    from mypy_boto3_elbv2 import ElasticLoadBalancingv2Client
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_kms import KMSClient
    from mypy_boto3_logs import CloudWatchLogsClient
    from mypy_boto3_route53 import Route53Client
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sts import STSClient

DEFAULT_MAX_ATTEMPTS = 8


def client_config() -> Config:
    """botocore's "standard" mode retries throttling, 5xx answers and lost connections with capped
    backoff (8 attempts, or AWS_MAX_ATTEMPTS); everything else is handled (or refused) by the steps."""
    attempts = os.environ.get("AWS_MAX_ATTEMPTS", "")
    return Config(
        retries={"mode": "standard", "max_attempts": int(attempts) if attempts.isdigit() else DEFAULT_MAX_ATTEMPTS},
        connect_timeout=10,
        read_timeout=60,
        user_agent_extra="flask-fargate-deployer",
    )


@dataclass(frozen=True)
class AwsClients:
    """Typed clients for every service the stack touches, all in one region."""

    region: str
    ec2: EC2Client
    elbv2: ElasticLoadBalancingv2Client
    ecs: ECSClient
    iam: IAMClient
    ecr: ECRClient
    logs: CloudWatchLogsClient
    sts: STSClient
    kms: KMSClient
    acm: ACMClient
    route53: Route53Client  # a global service: its endpoint is the same whatever the region
    autoscaling: ApplicationAutoScalingClient  # Application Auto Scaling (ECS service scaling), not EC2's
    cloudwatch: CloudWatchClient
    s3: S3Client  # only for a state kept in S3 (deployer/s3state.py); the stack has no bucket

    def every(self) -> tuple[BaseClient, ...]:
        """Every client, for what must see every call (the tests' recorders and the contract hook)."""
        return tuple(getattr(self, item.name) for item in fields(self) if item.name != "region")


def create_session(region: str | None) -> boto3.Session:
    """A session whose region is `region`, or the chain's; refuses a missing or unknown one."""
    try:
        session = boto3.Session(region_name=region) if region else boto3.Session()
    except ProfileNotFound as exc:
        raise AwsSetupError(
            f"The AWS profile '{exc.kwargs.get('profile', '')}' does not exist",
            where="AWS_PROFILE and the AWS config and credentials files",
            todo="Set AWS_PROFILE to a profile listed by `aws configure list-profiles`, or unset it",
        ) from exc
    resolved = session.region_name
    if not resolved:
        raise AwsSetupError(
            "No AWS region is configured",
            where="--region, deploy.toml 'region', AWS_REGION / AWS_DEFAULT_REGION or the AWS config file",
            todo="Pass --region us-east-1 (or the region you deploy to), or set AWS_DEFAULT_REGION",
        )
    known = {
        name
        for partition in session.get_available_partitions()
        for name in session.get_available_regions("ecs", partition_name=partition)
    }
    if resolved not in known:
        raise AwsSetupError(
            f"Unknown AWS region '{resolved}'",
            where="--region, deploy.toml 'region' or the AWS configuration",
            todo=f"Use a region where ECS runs, for example {', '.join(sorted(known)[:4])}",
        )
    return session


def build_clients(session: boto3.Session, config: Config | None = None) -> AwsClients:
    """Build every client from one session, after checking that credentials exist."""
    config = config or client_config()
    try:
        credentials = session.get_credentials()
    except BotoCoreError as exc:
        raise AwsSetupError(
            f"The AWS credentials are incomplete or unreadable: {exc}",
            where="the standard chain: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ~/.aws/credentials",
            todo="Set both the access key id and the secret access key, or fix the profile, and run again",
        ) from exc
    if credentials is None:
        raise AwsSetupError(
            "No AWS credentials were found",
            where="the standard chain: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, "
            "~/.aws/credentials, SSO or an instance role",
            todo="Configure credentials (for example `aws configure` or `export AWS_PROFILE=...`) and run again",
        )
    region = session.region_name
    return AwsClients(
        region=region,
        ec2=session.client("ec2", config=config),
        elbv2=session.client("elbv2", config=config),
        ecs=session.client("ecs", config=config),
        iam=session.client("iam", config=config),
        ecr=session.client("ecr", config=config),
        logs=session.client("logs", config=config),
        sts=session.client("sts", config=config),
        kms=session.client("kms", config=config),
        acm=session.client("acm", config=config),
        route53=session.client("route53", config=config),
        autoscaling=session.client("application-autoscaling", config=config),
        cloudwatch=session.client("cloudwatch", config=config),
        s3=session.client("s3", config=config),
    )


def account_id(clients: AwsClients) -> str:
    """The account the credentials belong to; the first call, so it also proves they work."""
    try:
        return clients.sts.get_caller_identity()["Account"]
    except NoCredentialsError as exc:
        raise AwsSetupError(
            "No AWS credentials were found",
            where="the standard boto3 chain",
            todo="Configure credentials and run again",
        ) from exc
    except ClientError as exc:
        raise AwsSetupError(
            f"AWS refused the credentials ({error_code(exc)}): {error_message(exc)}",
            where="sts:GetCallerIdentity",
            todo="Check that the access key is active and the profile is the one you meant",
        ) from exc
    except BotoCoreError as exc:
        raise AwsSetupError(
            f"Cannot reach AWS: {exc}",
            where="sts:GetCallerIdentity (AWS_ENDPOINT_URL, network or proxy)",
            todo="Check the network, or that the emulator named by AWS_ENDPOINT_URL is running",
        ) from exc


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))


def error_message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", str(exc)))


@dataclass(frozen=True)
class Connection:
    """Clients for one region, and who they act as: what every command starts from."""

    clients: AwsClients
    account_id: str
    partition: str


def connect(region: str | None) -> Connection:
    """Session, clients and the STS identity check, in that order, for every command."""
    session = create_session(region)
    clients = build_clients(session)
    return Connection(clients, account_id(clients), session.get_partition_for_region(clients.region))


@contextmanager
def refused_once_stopped(clients: AwsClients, stop: threading.Event) -> Iterator[None]:
    """While the block runs, once `stop` is set no stack call leaves: each raises StoppedError before it is sent.

    A run that stops (a failed step, a Ctrl-C; deployer/parallel.py) lets its running steps end after the call
    they are in, so the resource that call made is recorded and none is made after it. The S3 client is left
    alone: it keeps the state (saves, the lock's release) and belongs to no step.
    """
    hook = f"deployer-stop-{uuid.uuid4()}"

    def refuse(**_: object) -> None:
        if stop.is_set():
            raise StoppedError("the run is stopping")

    stack = [client for client in clients.every() if client is not clients.s3]
    for client in stack:
        client.meta.events.register("before-call", refuse, unique_id=hook)
    try:
        yield
    finally:
        for client in stack:
            client.meta.events.unregister("before-call", unique_id=hook)
