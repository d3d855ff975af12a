"""Settings: defaults, overridden by `deploy.toml`, overridden by command-line flags.

Everything is validated here, before any AWS call, so a typo never leaves half a
stack behind. Names of AWS resources are derived from the stack name alone
(`Names`), which is what lets a lost state file be recovered by name.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from deployer import awsrules
from deployer.errors import SettingsError
from deployer.s3state import S3Location, is_s3_url, parse_s3_url

# Fargate's task-level CPU units and the memory (MiB) each one accepts (AWS ECS
# developer guide, "Task CPU and memory").
FARGATE_MEMORY_BY_CPU: dict[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4097, 1024)),
    1024: tuple(range(2048, 8193, 1024)),
    2048: tuple(range(4096, 16385, 1024)),
    4096: tuple(range(8192, 30721, 1024)),
    8192: tuple(range(16384, 61441, 4096)),
    16384: tuple(range(32768, 122881, 8192)),
}

# The only values CloudWatch Logs PutRetentionPolicy accepts (moto accepts any).
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)

# The longest suffix appended to the stack name in a name limited to 32
# characters (load balancer and target group names).
_LONGEST_ELB_SUFFIX = "-nlb"
MAX_STACK_LENGTH = 32 - len(_LONGEST_ELB_SUFFIX)
# IAM role names: at most 64 characters (IAM User Guide, "IAM object quotas"); see Names.
MAX_ROLE_NAME_LENGTH = 64
_ROLE_SUFFIXES = {"execution": "-exec", "task": "-task", "flow-logs": "-flow"}
MAX_REGION_LENGTH = MAX_ROLE_NAME_LENGTH - MAX_STACK_LENGTH - 1 - max(len(s) for s in _ROLE_SUFFIXES.values())
_STACK_PATTERN = re.compile(r"^[a-z][a-z0-9-]*[a-z0-9]$")
_POLICY_ARN_PATTERN = re.compile(r"^arn:aws[a-z-]*:iam::(aws|\d{12}):policy/[\w+=,.@/-]+$")
# A KMS key ARN (KMS API reference, "Key ARN": arn:<partition>:kms:<region>:<account>:key/<key id>;
# https://docs.aws.amazon.com/kms/latest/developerguide/concepts.html#key-id-key-ARN). CloudWatch Logs takes
# only a key ARN in kmsKeyId, not an alias or a bare id (Logs API reference, AssociateKmsKey:
# https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_AssociateKmsKey.html).
_KMS_KEY_ARN_PATTERN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):kms:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):key/(?P<key>[A-Za-z0-9-]{1,128})$"
)
# `log_kms_key = "create"`: the stack makes its own key (deployer/steps/keys.py).
CREATE_LOG_KEY = "create"
# Policies that give the site's code the run of the account, by the policy's name (the ARN's last path
# segment, in any case, any partition, AWS managed or the account's own): AdministratorAccess and its
# service-specific variants (AdministratorAccess-Amplify, ...), PowerUserAccess, and every *FullAccess
# (names such as AmazonDynamoDBFullAccess_v2 have it inside). AWS managed policy reference:
# https://docs.aws.amazon.com/aws-managed-policy/latest/reference/policy-list.html
_BROAD_POLICY = re.compile(r"^(administratoraccess.*|poweruseraccess|.*fullaccess.*)$", re.IGNORECASE)
_IMAGE_PATTERN = re.compile(r"^[a-z0-9][\w.:/@-]*$", re.IGNORECASE)
# The container definition's `user`: user, user:group, uid, uid:gid, user:gid or uid:group
# (ECS API reference, ContainerDefinition "user":
# https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_ContainerDefinition.html).
_USER_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$")
# A build argument is only of use under a name a Dockerfile can refer to ($NAME, ${NAME}):
# BuildKit's Dockerfile lexer reads a variable name as letters, digits and '_', and a '$'
# followed by a digit as a positional parameter (processName in
# https://github.com/moby/buildkit/blob/master/frontend/dockerfile/shell/lex.go), the POSIX
# shell rule for a name (https://pubs.opengroup.org/onlinepubs/9699919799/basedefs/V1_chap03.html#tag_03_235).
# Any other name would be passed to the build and never used.
_BUILD_ARG_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# The severities of ECR's scan findings, lowest first (ECR API reference, ImageScanFinding `severity`:
# https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_ImageScanFinding.html; its UNDEFINED has no
# rank and is not a threshold). `fail_on_scan` names one of them, or "none" (no check); see deployer/scan.py.
SCAN_SEVERITIES = ("INFORMATIONAL", "LOW", "MEDIUM", "HIGH", "CRITICAL")
SCAN_OFF = "none"

# `network`: public = tasks with public addresses in the public subnets; private = tasks in
# private subnets behind one NAT gateway (deployer/steps/private.py).
NETWORK_MODES = ("public", "private")
# Never opened to the internet (Prowler's ec2_networkacl_allow_ingress_tcp_port_22 / _3389 checks).
ADMIN_PORTS = (22, 3389)

# HTTPS on the user's domain (`domain`, `certificate_arn`; deployer/steps/certificates.py, dns.py and the
# TLS listener in loadbalancer.py). The NLB terminates TLS on HTTPS_PORT and forwards to the container
# port; the plain listener (listener_port) forwards to REDIRECT_PORT, where the site answers every request
# with a permanent redirect to https://<domain> (an NLB cannot redirect: website/app.py does).
HTTPS_PORT = 443
REDIRECT_PORT = 8081
# The choice, and AWS's recommended TLS 1.3 policy for NLB listeners; the FIPS + post-quantum
# policy is stricter (see tls_policy in the README's Security table).
# Steps at once (deployer/parallel.py); beyond 16 nothing is gained: the widest wave of the stack's graph holds
# 11 steps with every setting on (9 by default; `--dry-run` prints the waves), and AWS's request rates come nearer.
DEFAULT_PARALLELISM = 4
MAX_PARALLELISM = 16
DEFAULT_TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
# `tls_policy`: the NLB policies that accept TLS 1.2 and 1.3 only (AWS, "Security policies for your Network
# Load Balancer": https://docs.aws.amazon.com/elasticloadbalancing/latest/network/describe-ssl-policies.html).
# "FIPS" names pass Prowler's elbv2_listener_fips_tls_enabled, "PQ-2025-09" its elbv2_listener_pqc_tls_enabled.
TLS_POLICIES = (
    DEFAULT_TLS_POLICY,
    *(
        f"ELBSecurityPolicy-TLS13-{variant}-{date}"
        for variant, date in (
            ("1-2-Res", "2021-06"),
            ("1-2-Ext1", "2021-06"),
            ("1-2-Ext2", "2021-06"),
            ("1-3", "2021-06"),
            ("1-2-FIPS", "2023-04"),
            ("1-2-Res-FIPS", "2023-04"),
            ("1-2-Ext0-FIPS", "2023-04"),
            ("1-2-Ext1-FIPS", "2023-04"),
            ("1-2-Ext2-FIPS", "2023-04"),
            ("1-3-FIPS", "2023-04"),
            ("1-2-PQ", "2025-09"),
            ("1-2-Res-PQ", "2025-09"),
            ("1-2-Ext1-PQ", "2025-09"),
            ("1-2-Ext2-PQ", "2025-09"),
            ("1-3-PQ", "2025-09"),
            ("1-2-FIPS-PQ", "2025-09"),
            ("1-2-Res-FIPS-PQ", "2025-09"),
            ("1-2-Ext0-FIPS-PQ", "2025-09"),
            ("1-2-Ext1-FIPS-PQ", "2025-09"),
            ("1-2-Ext2-FIPS-PQ", "2025-09"),
            ("1-3-FIPS-PQ", "2025-09"),
        )
    ),
)
# A public DNS name ACM can issue for: labels of letters, digits and '-' (not first or last), at least
# two labels, the last not all digits (ACM API reference, RequestCertificate DomainName pattern:
# https://docs.aws.amazon.com/acm/latest/APIReference/API_RequestCertificate.html). Checked in lower case.
_DOMAIN_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_DOMAIN_PATTERN = re.compile(rf"^({_DOMAIN_LABEL}\.)+(?![0-9]+$){_DOMAIN_LABEL}$")
MAX_DOMAIN_LENGTH = 253
# "The first domain name ... cannot exceed 64 octets (characters), including periods" (same page): the
# certificate's common name.
MAX_COMMON_NAME_LENGTH = 64
# An ACM certificate ARN: arn:<partition>:acm:<region>:<account>:certificate/<id> (ACM API reference,
# DescribeCertificate CertificateArn; https://docs.aws.amazon.com/acm/latest/userguide/authen-overview.html).
_CERTIFICATE_ARN_PATTERN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):acm:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):certificate/[A-Za-z0-9-]{1,128}$"
)

# Service autoscaling (deployer/steps/scaling.py). The ceiling: a Network Load Balancer takes at most 500 targets
# per Availability Zone ("Quotas for your Network Load Balancers",
# https://docs.aws.amazon.com/elasticloadbalancing/latest/network/load-balancer-limits.html). The tasks spread over
# two zones, a rollout runs up to twice the count (maximumPercent 200), and with a domain each task is a target of
# two target groups: 250 tasks x 2 x 2 / 2 zones = 500.
MAX_TASKS = 250
DEFAULT_SCALE_CPU_PERCENT = 60
SCALE_PERCENT_RANGE = (10, 90)
ROLLOUT_SURGE = 2  # deploymentConfiguration.maximumPercent 200 (deployer/steps/ecs.py)
# AWS reserves the first four addresses and the last one of every subnet
# (https://docs.aws.amazon.com/vpc/latest/userguide/subnet-sizing.html); one more per subnet is kept for the
# NLB's node (public subnets) or another interface of the stack (the NAT gateway's).
SUBNET_RESERVED_ADDRESSES = 6

CONFIG_FILE_NAME = "deploy.toml"
PROJECT_DIR = Path(__file__).resolve().parent.parent  # beside provision.py; relative paths start here


@dataclass(frozen=True)
class Settings:
    """What to deploy. Field names are the keys of `deploy.toml`."""

    stack: str = "flask-site"
    region: str | None = None
    vpc_cidr: str = "172.31.0.0/16"
    subnet_cidrs: tuple[str, ...] = ("172.31.32.0/20", "172.31.48.0/20")
    network: str = "public"
    private_subnet_cidrs: tuple[str, ...] = ("172.31.64.0/20", "172.31.80.0/20")
    availability_zones: tuple[str, ...] = ()
    listener_port: int = 80
    container_port: int = 8080
    cpu: int = 256
    memory: int = 512
    desired_count: int = 1
    min_tasks: int | None = None
    max_tasks: int | None = None
    scale_cpu_percent: int = DEFAULT_SCALE_CPU_PERCENT
    scale_memory_percent: int | None = None
    log_retention_days: int = 14
    health_check_interval: int = 10
    healthy_threshold: int = 2
    unhealthy_threshold: int = 2
    deregistration_delay: int = 30
    task_role_policy_arns: tuple[str, ...] = ()
    allow_broad_task_role: bool = False
    container_insights: bool = True
    tags: dict[str, str] = field(default_factory=dict)
    image: str | None = None
    build_context: str = "website"
    dockerfile: str = "Dockerfile"
    build_args: dict[str, str] = field(default_factory=dict)
    container_user: str | None = None
    service_wait_timeout: int = 1200
    max_failed_tasks: int = 3
    flow_logs: bool = True
    log_kms_key: str | None = None
    fail_on_scan: str = "CRITICAL"
    domain: str | None = None
    certificate_arn: str | None = None
    tls_policy: str = DEFAULT_TLS_POLICY
    # Where the state lives: a path, or s3://BUCKET/KEY for a team (deployer/s3state.py); --state-file wins.
    state_file: str | None = None
    # How many steps run at once (deployer/parallel.py says why 4 keeps far from AWS's request rates); 1: one
    # after another, in the stack's order.
    parallelism: int = DEFAULT_PARALLELISM

    @property
    def state_location(self) -> S3Location | None:
        """The S3 bucket and key of an s3:// state_file (None for a local file)."""
        if self.state_file is None or not is_s3_url(self.state_file):
            return None
        return parse_s3_url(self.state_file, where="--state-file or deploy.toml's state_file")

    @property
    def names(self) -> Names:
        return Names(self.stack, self.region or "")

    @property
    def task_range(self) -> tuple[int, int]:
        """(min, max) tasks. Both default to desired_count; max_tasks to the larger of it and min_tasks."""
        low = self.desired_count if self.min_tasks is None else self.min_tasks
        high = max(low, self.desired_count) if self.max_tasks is None else self.max_tasks
        return low, high

    @property
    def autoscaling(self) -> bool:
        """max_tasks above min_tasks: Application Auto Scaling owns the service's desired count."""
        low, high = self.task_range
        return high > low

    @property
    def task_count(self) -> int:
        """The desired count a new service starts with (desired_count within min..max); without autoscaling the
        count the service keeps."""
        low, high = self.task_range
        return min(max(self.desired_count, low), high)

    @property
    def https(self) -> bool:
        """A domain makes the site HTTPS: a TLS listener on 443 and port 80 redirecting to it."""
        return self.domain is not None

    @property
    def managed_dns(self) -> bool:
        """The stack makes the certificate, its validation record and the alias in the account's hosted
        zone; with `certificate_arn` the user's DNS is elsewhere and the stack touches no zone."""
        return self.domain is not None and self.certificate_arn is None


@dataclass(frozen=True)
class Names:
    """Deterministic AWS names, all prefixed with the stack name.

    IAM is global while everything else (and the state file) is per region, so the role names
    also carry the region: the same stack name in two regions gets two pairs of roles. `region`
    is the run's region (the steps pass the clients' region; empty only when it is not known yet).
    """

    stack: str
    region: str = ""

    @property
    def load_balancer(self) -> str:
        return f"{self.stack}{_LONGEST_ELB_SUFFIX}"

    @property
    def target_group(self) -> str:
        return f"{self.stack}-tg"

    @property
    def redirect_target_group(self) -> str:
        """Port 80's target group when the site has a domain: the container's redirect port."""
        return f"{self.stack}-rd"

    # Role names (at most 64 characters, IAM's RoleName limit): a 28-character stack, the region
    # and a 5-character suffix leave MAX_REGION_LENGTH = 30 characters for the region, twice the
    # longest region code today (14, e.g. ap-southeast-4).
    # Roles of schema-1 states were named `<stack>-execution-role` / `<stack>-task-role`; a state
    # recording those names keeps using them (found by the recorded name), see docs/design.md.
    @property
    def execution_role(self) -> str:
        return f"{self.stack}-{self.region}{_ROLE_SUFFIXES['execution']}"

    @property
    def task_role(self) -> str:
        return f"{self.stack}-{self.region}{_ROLE_SUFFIXES['task']}"

    @property
    def flow_logs_role(self) -> str:
        return f"{self.stack}-{self.region}{_ROLE_SUFFIXES['flow-logs']}"

    @property
    def flow_log_group(self) -> str:
        """The VPC's rejected traffic (deployer/steps/flowlogs.py)."""
        return f"/vpc/{self.stack}/rejected"

    @property
    def log_key_alias(self) -> str:
        """The alias of the key `log_kms_key = "create"` makes: how a lost state finds the key again."""
        return f"alias/{self.stack}-logs"

    @property
    def repository(self) -> str:
        return self.stack

    @property
    def log_group(self) -> str:
        return f"/ecs/{self.stack}"

    @property
    def cluster(self) -> str:
        return f"{self.stack}-cluster"

    @property
    def task_family(self) -> str:
        return f"{self.stack}-web"

    @property
    def service(self) -> str:
        return f"{self.stack}-web"

    @property
    def container(self) -> str:
        return "web"

    def security_group(self, role: str) -> str:
        return f"{self.stack}-{role}-sg"

    @property
    def unhealthy_alarm(self) -> str:
        """The deployment alarm on the target group's UnHealthyHostCount (deployer/steps/alarms.py)."""
        return f"{self.stack}-unhealthy-targets"

    @property
    def shortfall_alarm(self) -> str:
        """The deployment alarm on running tasks below desired (Container Insights' task counts)."""
        return f"{self.stack}-task-shortfall"

    @property
    def cpu_policy(self) -> str:
        """The target-tracking policy on the service's average CPU (deployer/steps/scaling.py)."""
        return f"{self.stack}-cpu"

    @property
    def memory_policy(self) -> str:
        return f"{self.stack}-memory"


# The tags deployer/steps/tags.py adds to the user's: these on every resource, and the region on the
# IAM roles (global resources), so the roles are the resources with the most tags of ours.
OWN_TAG_KEYS = ("Name", "deployer:stack", "deployer:step", "deployer:region")

# The roles `security_group` is called with (deployer/stack.py's SecurityGroupStep roles).
SECURITY_GROUP_ROLES = ("nlb", "task")

# Every `Names` property -> the kind of AWS name it is (a key of awsrules.NAME_RULES). A new
# property must be added here: `derived_names` refuses to check a name it has no rule for.
NAME_KINDS: dict[str, str] = {
    "load_balancer": "load-balancer",
    "target_group": "target-group",
    "redirect_target_group": "target-group",
    "execution_role": "iam-role",
    "task_role": "iam-role",
    "repository": "ecr-repository",
    "log_group": "log-group",
    "flow_log_group": "log-group",
    "flow_logs_role": "iam-role",
    "log_key_alias": "kms-alias",
    "cluster": "ecs-name",
    "task_family": "ecs-name",
    "service": "ecs-name",
    "container": "ecs-name",
    "unhealthy_alarm": "alarm",
    "shortfall_alarm": "alarm",
    "cpu_policy": "scaling-policy",
    "memory_policy": "scaling-policy",
}


def derived_names(names: Names) -> list[tuple[str, str, str]]:
    """Every AWS name the stack derives, as (what derives it, the name, its kind in awsrules.NAME_RULES)."""
    derived: list[tuple[str, str, str]] = []
    for attribute in dir(type(names)):  # dir: inherited properties too
        if not isinstance(getattr(type(names), attribute), property):
            continue
        if attribute not in NAME_KINDS:
            raise RuntimeError(f"Names.{attribute} has no kind in settings.NAME_KINDS: add one, so it is checked")
        derived.append((attribute, getattr(names, attribute), NAME_KINDS[attribute]))
    for role in SECURITY_GROUP_ROLES:
        derived.append((f"security_group({role!r})", names.security_group(role), "security-group"))
    return derived


def validate_names(names: Names) -> None:
    """Every name derived from the stack name satisfies every rule AWS applies to its kind of name."""
    for _attribute, name, kind in derived_names(names):
        rule = awsrules.NAME_RULES[kind]
        problem = rule.problem(name)
        if problem is not None:
            _fail(
                "stack",
                f"the {rule.what} '{name}' derived from stack '{names.stack}' would be refused by AWS: {problem} "
                f"({rule.source})",
                "Choose another stack name (see the Settings section of the README), e.g. 'my-site'",
            )


def load_settings(
    config_path: Path | None, overrides: dict[str, Any], fallback: dict[str, Any] | None = None
) -> Settings:
    """Build validated settings: defaults < `fallback` (the state's stack and region) < `deploy.toml` < flags."""
    values: dict[str, Any] = dict(fallback or {})
    if config_path is not None and config_path.exists():
        values.update(_read_toml(config_path))
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            values[key] = {**values[key], **value}  # e.g. --build-arg adds to deploy.toml's build_args
        elif value is not None:
            values[key] = value
    settings = _coerce(values, str(config_path) if config_path else "flags")
    validate(settings)
    return settings


def configured_value(config_path: Path, key: str) -> str | None:
    """One text setting of deploy.toml, for the commands that read no other (teardown, status and logs read
    `state_file` and `region` from it: where the state is, and where to reach it from)."""
    if not config_path.is_file():
        return None
    value = _read_toml(config_path).get(key)
    if value is not None and not isinstance(value, str):
        raise SettingsError(
            f"Setting '{key}' must be of type str, got {value!r}",
            where=str(config_path),
            todo="Correct the value (see the Settings section of the README)",
        )
    return value


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise SettingsError(
            f"Cannot read the settings file: {exc.strerror}",
            where=str(path),
            todo="Check the file's permissions, or pass --config with another path",
        ) from exc
    except UnicodeDecodeError as exc:
        raise SettingsError("The settings file is not UTF-8 text", where=str(path), todo="Save it as UTF-8") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(
            f"The settings file is not valid TOML: {exc}",
            where=str(path),
            todo="Fix the syntax (see the Settings section of the README)",
        ) from exc


def _coerce(values: dict[str, Any], source: str) -> Settings:
    """Check each value's type against the field it sets; unknown keys are typos."""
    known = {f.name: f for f in fields(Settings)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise SettingsError(
            f"Unknown setting(s): {', '.join(unknown)}",
            where=source,
            todo=f"Use only the settings listed in the README: {', '.join(sorted(known))}",
        )
    coerced: dict[str, Any] = {}
    for key, value in values.items():
        coerced[key] = _coerce_value(key, value, Settings.__dataclass_fields__[key].type, source)
    return replace(Settings(), **coerced)


def _coerce_value(key: str, value: Any, annotation: Any, source: str) -> Any:
    expected = str(annotation)
    if expected == "bool" and isinstance(value, bool):
        return value
    if expected == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if expected == "bool" and isinstance(value, bool):
        return value
    if expected == "int | None" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if expected in ("str", "str | None") and isinstance(value, str):
        return value
    if (
        expected == "tuple[str, ...]"
        and isinstance(value, list | tuple)
        and all(isinstance(item, str) for item in value)
    ):
        return tuple(value)
    if (
        expected == "dict[str, str]"
        and isinstance(value, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    ):
        return dict(value)
    raise SettingsError(
        f"Setting '{key}' must be of type {expected}, got {value!r}",
        where=source,
        todo="Correct the value (see the Settings section of the README)",
    )


def validate(settings: Settings) -> None:
    """Refuse anything AWS would refuse later, half-way through a deploy."""
    validate_stack(settings.stack)
    validate_names(settings.names)
    if settings.region is not None and len(settings.region) > MAX_REGION_LENGTH:
        _fail(
            "region",
            f"'{settings.region}' is longer than {MAX_REGION_LENGTH} characters, which the IAM role names "
            f"(<stack>-<region>-exec, at most {MAX_ROLE_NAME_LENGTH} characters) cannot hold",
            "Use an AWS region code such as eu-west-1",
        )
    _validate_build(settings)
    _validate_network(settings)
    if settings.state_location is not None:
        parse_s3_url(settings.state_file or "", where="--state-file or deploy.toml's state_file")
    _validate_task(settings)
    _validate_scaling(settings)
    _validate_tags(settings.tags)
    for arn in settings.task_role_policy_arns:
        if not _POLICY_ARN_PATTERN.match(arn):
            _fail(
                "task_role_policy_arns",
                f"'{arn}' is not an IAM policy ARN",
                "Use ARNs like arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess",
            )
    _validate_task_role(settings)
    if settings.image is not None and not _IMAGE_PATTERN.match(settings.image):
        _fail(
            "image",
            f"'{settings.image}' is not an image reference",
            "Pass a reference like 123456789012.dkr.ecr.us-east-1.amazonaws.com/site:tag",
        )
    validate_log_kms_key(settings.log_kms_key, settings.region)
    _validate_domain(settings)
    if settings.fail_on_scan.upper() not in SCAN_SEVERITIES and settings.fail_on_scan.lower() != SCAN_OFF:
        _fail(
            "fail_on_scan",
            f"'{settings.fail_on_scan}' is not a scan severity",
            f'Use one of {", ".join(SCAN_SEVERITIES)} (any case), or "{SCAN_OFF}" to deploy without the check',
        )
    if settings.container_user is not None and not _USER_PATTERN.match(settings.container_user):
        _fail(
            "container_user",
            f"'{settings.container_user}' is not a user for the container",
            "Use a user or UID, optionally with a group or GID: 10001:10001, app, app:app",
        )


def validate_log_kms_key(value: str | None, region: str | None) -> None:
    """`log_kms_key`: unset, "create", or the ARN of a KMS key in the stack's region.

    CloudWatch Logs uses a key only in the log group's own region ("the KMS key must be in the same
    Region as the log group", https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html);
    the partition is checked against the connected one before the first change (`check_log_kms_key`).
    """
    if value is None or value == CREATE_LOG_KEY:
        return
    match = _KMS_KEY_ARN_PATTERN.match(value)
    if match is None:
        _fail(
            "log_kms_key",
            f"'{value}' is neither \"create\" nor the ARN of a KMS key (CloudWatch Logs takes a key ARN, not an "
            "alias or a key id)",
            "Give a key ARN such as arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab, "
            'log_kms_key = "create" to let the stack make one, or leave it out for AWS-managed encryption',
        )
    elif region is not None and match["region"] != region:
        _fail(
            "log_kms_key",
            f"the key {value} is in region {match['region']}, the stack in {region}: CloudWatch Logs can only use "
            "a key of the log group's own region",
            f'Give a key of {region}, or log_kms_key = "create"',
        )


def check_log_kms_key(value: str | None, partition: str, region: str) -> None:
    """The same check once the connection's partition and region are known (before any change)."""
    validate_log_kms_key(value, region)
    match = _KMS_KEY_ARN_PATTERN.match(value or "")
    if match is not None and match["partition"] != partition:
        _fail(
            "log_kms_key",
            f"the key {value} is in partition {match['partition']}, the credentials in {partition}",
            f"Give a key ARN starting arn:{partition}:kms:{region}:",
        )


def _validate_domain(settings: Settings) -> None:
    """`domain`, `certificate_arn` and `tls_policy`, and the ports a domain takes (443 and REDIRECT_PORT)."""
    if settings.domain is not None:
        validate_domain(settings.domain)
        if settings.listener_port == HTTPS_PORT:
            _fail(
                "listener_port",
                f"port {HTTPS_PORT} is the TLS listener's when a domain is set; listener_port is the plain "
                "listener that redirects to it",
                "Leave listener_port at 80",
            )
        if settings.container_port == REDIRECT_PORT:
            _fail(
                "container_port",
                f"port {REDIRECT_PORT} is where the container answers with the redirect to https when a domain is set",
                "Use another container_port, e.g. 8080",
            )
    if settings.certificate_arn is not None:
        if settings.domain is None:
            _fail(
                "certificate_arn",
                "a certificate is used for a domain, and none is set",
                "Give the name the site answers on too: --domain www.example.com (it must be one of the "
                "certificate's names)",
            )
        validate_certificate_arn(settings.certificate_arn, settings.region)
    if settings.tls_policy not in TLS_POLICIES:
        _fail(
            "tls_policy",
            f"'{settings.tls_policy}' is not a TLS 1.3 security policy of Network Load Balancers",
            f"Use one of {', '.join(TLS_POLICIES)}",
        )


def validate_domain(domain: str) -> None:
    """A lower-case DNS name without a trailing dot, one site's name (no wildcard), ACM's length limits."""
    if domain.startswith("*."):
        _fail(
            "domain",
            f"'{domain}' is a wildcard: the site answers on one name, which the alias record, the redirect and "
            "the certificate are made for, and a wildcard names none",
            "Set domain to the name the site answers on (e.g. www.example.com); to use a wildcard certificate you "
            "already have, pass it with --certificate-arn",
        )
    if domain != domain.lower() or domain.endswith(".") or not _DOMAIN_PATTERN.match(domain):
        _fail(
            "domain",
            f"'{domain}' is not a DNS name of the form www.example.com",
            'Write the name in lower case, without a scheme, path, port or trailing dot: domain = "www.example.com"',
        )
    if len(domain) > MAX_COMMON_NAME_LENGTH:
        _fail(
            "domain",
            f"'{domain}' has {len(domain)} characters; a certificate's first name may have at most "
            f"{MAX_COMMON_NAME_LENGTH}",
            "Use a shorter name",
        )


def validate_certificate_arn(value: str, region: str | None) -> None:
    """An ACM certificate ARN of the stack's region (an NLB uses certificates of its own region only)."""
    match = _CERTIFICATE_ARN_PATTERN.match(value)
    if match is None:
        _fail(
            "certificate_arn",
            f"'{value}' is not the ARN of an ACM certificate",
            "Give an ARN such as arn:aws:acm:us-east-1:123456789012:certificate/1234abcd-12ab-34cd-56ef-1234567890ab "
            "(aws acm list-certificates shows them)",
        )
    elif region is not None and match["region"] != region:
        _fail(
            "certificate_arn",
            f"the certificate {value} is in region {match['region']}, the stack in {region}: a load balancer can "
            "only use a certificate of its own region",
            f"Request or import the certificate in {region}, or leave out certificate_arn to let the stack request one",
        )


def check_certificate_arn(value: str | None, partition: str, region: str, account_id: str) -> None:
    """The same check once the connection's partition, region and account are known (before any change)."""
    if value is None:
        return
    validate_certificate_arn(value, region)
    match = _CERTIFICATE_ARN_PATTERN.match(value)
    if match is not None and (match["partition"], match["account"]) != (partition, account_id):
        _fail(
            "certificate_arn",
            f"the certificate {value} belongs to account {match['account']} ({match['partition']}), the credentials "
            f"to {account_id} ({partition}): a load balancer can only use a certificate of its own account",
            f"Give a certificate of account {account_id}",
        )


def broad_policies(arns: tuple[str, ...]) -> list[str]:
    """The ARNs among `arns` that name an administrative policy (see _BROAD_POLICY)."""
    return [arn for arn in arns if _BROAD_POLICY.match(arn.rsplit("/", 1)[-1])]


def _validate_task_role(settings: Settings) -> None:
    """An administrative task role needs saying so: the site's code runs with it, and so does anyone who
    gets code execution in the site (a vulnerable dependency, an injection)."""
    broad = broad_policies(settings.task_role_policy_arns)
    if broad and not settings.allow_broad_task_role:
        _fail(
            "task_role_policy_arns",
            f"{', '.join(broad)} would give the site's code, and anyone who gets code execution in it, those "
            "rights over the account (administrative, power-user or full-access policies)",
            "Name a policy that allows only the calls the site makes (e.g. AmazonS3ReadOnlyAccess, or one of your "
            "own); if the site really needs this one, pass --allow-broad-task-role (or set allow_broad_task_role "
            "= true in deploy.toml)",
        )


def validate_build_args(build_args: dict[str, str], image: str | None) -> None:
    """Every build argument has a name a Dockerfile can use, and there is something to build.

    Build arguments come from `--build-arg` and from deploy.toml's `build_args` (merged by
    `load_settings`), so both are checked here. With `image`, nothing is built: build
    arguments would be silently ignored, so the combination is refused.
    """
    for name in build_args:
        if not _BUILD_ARG_NAME_PATTERN.fullmatch(name):
            _fail(
                "build_args",
                f"'{name}' is not a valid build argument name",
                "Use a plain name: letters, digits and _, not starting with a digit (a Dockerfile's ARG "
                "can only be referred to by such a name), e.g. --build-arg APP_VERSION=1.2",
            )
    if image is not None and build_args:
        _fail(
            "build_args",
            f"build arguments ({', '.join(sorted(build_args))}) are given with image '{image}', which is deployed "
            "as it is: nothing is built, so they would be ignored",
            "Leave out --image (and deploy.toml's image) to build the site with them, or remove the build "
            "arguments (--build-arg flags and deploy.toml's build_args)",
        )


def _validate_build(settings: Settings) -> None:
    validate_build_args(settings.build_args, settings.image)
    if settings.image is not None:
        return
    context = Path(settings.build_context)
    context = context if context.is_absolute() else PROJECT_DIR / context
    if not (context / settings.dockerfile).is_file():
        _fail(
            "build_context",
            f"there is no {settings.dockerfile} in {context}",
            "Point build_context and dockerfile at the site to build, or pass --image URI",
        )


def validate_stack(stack: str) -> None:
    if len(stack) > MAX_STACK_LENGTH or not _STACK_PATTERN.match(stack) or "--" in stack:
        _fail(
            "stack",
            f"Invalid stack name '{stack}': it prefixes every resource name, and the strictest rule "
            f"(load balancer and target group names, at most 32 characters) allows {MAX_STACK_LENGTH} "
            "characters of lowercase letters, digits and single hyphens, starting with a letter and "
            "not ending with a hyphen",
            "Choose a name like 'my-site'",
        )
    if stack.startswith("internal-"):
        _fail(
            "stack",
            f"Invalid stack name '{stack}': load balancer names may not start with 'internal-'",
            "Choose another name",
        )


def _validate_network(settings: Settings) -> None:
    vpc = _network("vpc_cidr", settings.vpc_cidr)
    if not 16 <= vpc.prefixlen <= 28:
        _fail("vpc_cidr", f"{vpc} has a /{vpc.prefixlen} prefix; AWS allows /16 to /28", "Use e.g. 172.31.0.0/16")
    if len(settings.subnet_cidrs) != 2:
        _fail(
            "subnet_cidrs",
            "exactly two subnet CIDRs are needed (one per availability zone)",
            "Give two CIDRs inside vpc_cidr",
        )
    subnets = [_network("subnet_cidrs", cidr) for cidr in settings.subnet_cidrs]
    for subnet in subnets:
        if not subnet.subnet_of(vpc):
            _fail("subnet_cidrs", f"{subnet} is not inside the VPC's {vpc}", "Pick subnets inside vpc_cidr")
    if subnets[0].overlaps(subnets[1]):
        _fail("subnet_cidrs", f"{subnets[0]} and {subnets[1]} overlap", "Pick two disjoint subnets")
    if settings.network not in NETWORK_MODES:
        _fail(
            "network",
            f"'{settings.network}' is not a network mode",
            'Use "public" (tasks with public addresses in the public subnets) or "private" (tasks in '
            "private subnets behind a NAT gateway)",
        )
    if settings.network == "private":
        _validate_private_subnets(settings, vpc, subnets)
    # At least two, by zone name or zone ID; whether the region has them is checked before the first write
    # (deployer/zones.py), since only AWS knows the account's zones.
    if settings.availability_zones and len(set(settings.availability_zones)) < 2:
        _fail(
            "availability_zones",
            "give at least two different zones (names or zone IDs; the subnets go in the first two), or none "
            "to let the tool choose",
            'e.g. availability_zones = ["use1-az1", "use1-az2"]',
        )
    for key in ("listener_port", "container_port"):
        port = getattr(settings, key)
        if not 1 <= port <= 65535:
            _fail(key, f"port {port} is outside 1-65535", "Use a valid TCP port")
    if settings.listener_port in ADMIN_PORTS:
        _fail(
            "listener_port",
            f"port {settings.listener_port} is a remote-administration port (SSH, RDP): the stack's network ACL "
            "never opens it to the internet (deployer/steps/firewall.py)",
            "Serve the site on another port, e.g. 80 or 8080",
        )


def _validate_private_subnets(
    settings: Settings, vpc: ipaddress.IPv4Network, public: list[ipaddress.IPv4Network]
) -> None:
    """Checked only in private mode: a custom vpc_cidr need not carry private CIDRs it does not use."""
    key = "private_subnet_cidrs"
    if len(settings.private_subnet_cidrs) != 2:
        _fail(key, "exactly two private subnet CIDRs are needed (one per availability zone)", "Give two CIDRs")
    private = [_network(key, cidr) for cidr in settings.private_subnet_cidrs]
    for subnet in private:
        if not subnet.subnet_of(vpc):
            _fail(key, f"{subnet} is not inside the VPC's {vpc}", "Pick subnets inside vpc_cidr")
        for other in public:
            if subnet.overlaps(other):
                _fail(key, f"{subnet} overlaps the public subnet {other}", "Pick CIDRs apart from subnet_cidrs")
    if private[0].overlaps(private[1]):
        _fail(key, f"{private[0]} and {private[1]} overlap", "Pick two disjoint subnets")


def _validate_task(settings: Settings) -> None:
    allowed = FARGATE_MEMORY_BY_CPU.get(settings.cpu)
    if allowed is None or settings.memory not in allowed:
        pairs = "; ".join(f"cpu {cpu}: memory {mem[0]}-{mem[-1]}" for cpu, mem in FARGATE_MEMORY_BY_CPU.items())
        _fail(
            "cpu/memory",
            f"Fargate does not accept cpu {settings.cpu} with memory {settings.memory}",
            f"Use a supported pair ({pairs}; memory in steps of 1024 up to cpu 4096)",
        )
    if settings.log_retention_days not in LOG_RETENTION_DAYS:
        _fail(
            "log_retention_days",
            f"CloudWatch Logs does not accept {settings.log_retention_days} days",
            f"Use one of {', '.join(map(str, LOG_RETENTION_DAYS))}",
        )
    ranges = {
        "desired_count": (0, MAX_TASKS),
        # botocore elbv2 CreateTargetGroup HealthCheckIntervalSeconds (min 5, max 300); the timeout sent with it
        # (deployer/steps/loadbalancer.py) is then always within 2-120 and at most the interval.
        "health_check_interval": (5, 300),
        "healthy_threshold": (2, 10),
        "unhealthy_threshold": (2, 10),
        "deregistration_delay": (0, 3600),
        "service_wait_timeout": (1, 86400),
        "max_failed_tasks": (1, 100),
        "parallelism": (1, MAX_PARALLELISM),
    }
    for key, (low, high) in ranges.items():
        value = getattr(settings, key)
        if not low <= value <= high:
            _fail(key, f"{value} is outside {low}-{high}", "Use a value in that range")


def _validate_scaling(settings: Settings) -> None:
    """min_tasks..max_tasks within 1..MAX_TASKS, a parked stack not mixed with them, and room in the subnets."""
    for key in ("min_tasks", "max_tasks"):
        value = getattr(settings, key)
        if value is not None and not 1 <= value <= MAX_TASKS:
            _fail(
                key,
                f"{value} is outside 1-{MAX_TASKS} (the ceiling is explained in the README)",
                "Use a value in that range",
            )
    low, high = settings.task_range
    if low > high:
        _fail(
            "min_tasks/max_tasks",
            f"min_tasks {low} is above max_tasks {high}",
            "Set max_tasks to at least min_tasks (equal values turn autoscaling off)",
        )
    if settings.desired_count == 0 and (settings.min_tasks is not None or settings.max_tasks is not None):
        _fail(
            "desired_count",
            "desired_count 0 parks the stack (no task runs), but min_tasks/max_tasks ask for tasks",
            "Leave out min_tasks and max_tasks to park the stack, or set desired_count to at least 1",
        )
    low_percent, high_percent = SCALE_PERCENT_RANGE
    for key in ("scale_cpu_percent", "scale_memory_percent"):
        value = getattr(settings, key)
        if value is not None and not low_percent <= value <= high_percent:
            _fail(
                key,
                f"{value} is outside {low_percent}-{high_percent} (percent of the task's {key[6:-8]})",
                "Use a value in that range",
            )
    _validate_subnet_room(settings, high)


def _validate_subnet_room(settings: Settings, high: int) -> None:
    """A rollout of max_tasks runs up to ROLLOUT_SURGE times as many tasks, each with an address in one of the
    two subnets the service uses; ECS spreads them over the two zones, so each subnet holds half."""
    key = "private_subnet_cidrs" if settings.network == "private" else "subnet_cidrs"
    needed = -(-high * ROLLOUT_SURGE // 2)
    for cidr in getattr(settings, key):
        free = ipaddress.IPv4Network(cidr).num_addresses - SUBNET_RESERVED_ADDRESSES
        if free < needed:
            _fail(
                key,
                f"{cidr} has {free} addresses for tasks, but {high} tasks and a rollout's second set "
                f"({high * ROLLOUT_SURGE} in all, {needed} per subnet) need {needed}",
                "Use larger subnets (e.g. /24 holds 250 addresses) or a lower max_tasks",
            )


def _validate_tags(tags: dict[str, str]) -> None:
    """User tags go on every resource, beside our own three (deployer/steps/tags.py), so the strictest
    service's rules apply (deployer/awsrules.py)."""
    for key, value in tags.items():
        if key.lower().startswith((awsrules.RESERVED_TAG_PREFIX, "deployer:")):
            _fail(
                "tags",
                f"tag key '{key}' is reserved (AWS reserves 'aws:' in any case, {awsrules.RESERVED_TAG_SOURCE}; "
                "the deployer uses 'deployer:', and IAM compares tag keys regardless of case)",
                "Keys may not start with 'aws:' or 'deployer:' (in any case); rename the tag",
            )
        if not 1 <= len(key) <= awsrules.MAX_TAG_KEY_LENGTH:
            _fail(
                "tags",
                f"tag key '{key}' has {len(key)} characters; AWS allows 1 to {awsrules.MAX_TAG_KEY_LENGTH}",
                "Shorten the key",
            )
        if len(value) > awsrules.MAX_TAG_VALUE_LENGTH:
            _fail(
                "tags",
                f"the value of tag '{key}' is longer than {awsrules.MAX_TAG_VALUE_LENGTH} characters",
                "Shorten it",
            )
        if value.lower().startswith(awsrules.RESERVED_TAG_PREFIX):
            _fail(
                "tags",
                f"the value of tag '{key}' starts with 'aws:', which AWS reserves ({awsrules.RESERVED_TAG_SOURCE})",
                "Change the value",
            )
        for what, text in (("key", key), ("value", value)):
            bad = awsrules.bad_tag_characters(text)
            if bad:
                _fail(
                    "tags",
                    f"the {what} of tag '{key}' ({text!r}) has characters ELBv2, IAM, ECS and CloudWatch Logs "
                    f"refuse: {' '.join(repr(c) for c in bad)} ({awsrules.TAG_SOURCE})",
                    f"Use only {awsrules.TAG_ALLOWED}",
                )
    own = OWN_TAG_KEYS
    total = len(set(tags) | set(own))  # a user's Name is replaced by ours
    if total > awsrules.MAX_TAGS_PER_RESOURCE:
        _fail(
            "tags",
            f"{len(tags)} tags are given; with the deployer's own {len(own)} ({', '.join(own)}) "
            f"each resource would get {total}, and AWS allows at most {awsrules.MAX_TAGS_PER_RESOURCE} per resource",
            f"Give at most {awsrules.MAX_TAGS_PER_RESOURCE - len(own)} tags",
        )


def _network(key: str, cidr: str) -> ipaddress.IPv4Network:
    try:
        return ipaddress.IPv4Network(cidr)
    except ValueError as exc:
        raise SettingsError(
            f"Setting '{key}': {exc}", where="settings", todo="Use an IPv4 CIDR such as 172.31.0.0/16"
        ) from exc


def _fail(key: str, what: str, todo: str) -> None:
    raise SettingsError(
        f"Invalid setting '{key}': {what}", where="settings (defaults, deploy.toml or flags)", todo=todo
    )
