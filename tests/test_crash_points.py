"""Kill provision or teardown right after ANY API call; the next run must converge.

The hardest instant is right after AWS has served a call and before the tool heard
the answer: the resource exists, the state file does not know it. Here a botocore
`after-call` hook raises `Killed` (a BaseException, so nothing in the tool can
catch it, like a SIGKILL) right after the n-th call was served by in-process moto.
The process is dead from then on, on every thread: the steps still running beside
the one that was killed (deployer/parallel.py runs several at once) send no more
calls, hear no more answers and save nothing more (`Killer`). A brand new process
is then simulated once every thread of the dead one has ended: a new StepContext
whose state comes from the state file on disk only, with fresh clients, runs the
same command again.

Every crash point is tried, not a sample. The points are numbered by a clean
recording made once at collection time one step after another (Scheduler(slots=1):
the same numbering in every run), so each case has a pytest id like
`provision-after-call-02-CreateVpc`. The run that is killed is the parallel one
(the runner's default scheduler), killed after its n-th call: with several steps
at once the n-th call may belong to another step than in the recording, and
differ from run to run; the id names the recorded one. The next run is parallel
too; for every `RANDOM_EVERY`-th point it is run once more with its steps started
in a seeded random order (the order in which steps finished must not matter).
After the second provision the account must hold exactly the clean run's stack
(same counts per kind, same names, same configuration once identifiers are read
through the state), and a teardown must leave the account as it was. After the
second teardown nothing may be left.
"""

from __future__ import annotations

import json
import os
import random
import re
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import moto.settings
import pytest
from moto import mock_aws

from deployer import runner
from deployer.clients import AwsClients
from deployer.ledger import Ledger
from deployer.parallel import DEFAULT_SCHEDULER, Scheduler
from deployer.settings import Settings
from deployer.state import State, StateFile
from deployer.steps.base import StepContext
from tests.conftest import ACCOUNT, DOMAIN, IMAGE, REGION, CallLog, hosted_zone, make_context, recorded_clients
from tests.inventory import EXPECTED_WITH_DOMAIN, added, inventory

if TYPE_CHECKING:
    from mypy_boto3_ec2.literals import VpcAttributeNameType
    from mypy_boto3_ec2.type_defs import FilterTypeDef, IpPermissionOutputTypeDef, TagTypeDef

# With the stack's own log key (log_kms_key = "create"), flow logs (the default), a domain in the account's
# hosted zone and autoscaling on CPU and memory: every step but the private network's is wanted, so every call
# of those steps is a crash point.
SETTINGS = Settings(
    stack="crash-site",
    region=REGION,
    image=IMAGE,
    log_kms_key="create",
    domain=DOMAIN,
    max_tasks=4,
    scale_memory_percent=70,
)

# One of everything: the reference the clean recording is checked against, so a duplicate in the
# reference cannot hide. Autoscaling: the target, two policies and their two alarms each.
ONE_STACK = {
    **EXPECTED_WITH_DOMAIN,
    "kms_keys": 1,
    "aliases": 1,
    "scalable_targets": 1,
    "scaling_policies": 2,
    "alarms": EXPECTED_WITH_DOMAIN["alarms"] + 4,
}

# One step after another in the stack's order: the clean recording, whose calls number the crash points.
SEQUENTIAL = Scheduler(slots=1)
# Every this-many-th crash point is tried a second time, the next run starting its steps in a random order.
RANDOM_EVERY = 4

# Crash points where the tool is known not to converge: (phase, operation, occurrence of
# that operation in the phase, 1-based) -> reason. Keyed by operation rather than by call
# number so that the entries survive unrelated changes to the call sequence.
KNOWN_BUGS: dict[tuple[str, str, int], str] = {}

# Each VPC attribute the stack sets, and the key describe_vpc_attribute answers it under.
DNS_ATTRIBUTES: tuple[tuple[VpcAttributeNameType, Literal["EnableDnsSupport", "EnableDnsHostnames"]], ...] = (
    ("enableDnsSupport", "EnableDnsSupport"),
    ("enableDnsHostnames", "EnableDnsHostnames"),
)


class Killed(BaseException):
    """The process died right after AWS served a call: nothing in the tool may catch this."""


class Killer:
    """The `before-call` and `after-call` hooks of one process: numbers the calls AWS served (`points`, from
    every thread) and kills the process right after call `at`. From then on the process is dead on every thread:
    a call does not leave it, the answer to a call already on its way is not heard, and nothing reaches the
    disk (`persist`), so no step running beside the killed one changes AWS or the state after the crash."""

    def __init__(self, at: int | None = None) -> None:
        self.at = at
        self.points: list[str] = []
        self.dead = False
        self._lock = threading.Lock()  # the steps' threads call at once: one numbering, one instant of death

    def install(self, clients: AwsClients) -> None:
        for client in clients.every():
            client.meta.events.register("before-call", self.before_call)
            client.meta.events.register("after-call", self.after_call)

    def before_call(self, **_: Any) -> None:
        with self._lock:
            if self.dead:
                raise Killed("the process is gone: this call never leaves it")

    def after_call(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        with self._lock:
            if self.dead:
                raise Killed(f"the process is gone: AWS served {model.name}, nobody heard the answer")
            point = self.point(model, context)
            if point is None:
                return
            self.points.append(point)
            if self.kills():
                self.dead = True
                raise Killed(f"killed right after call {len(self.points)} ({point}) was served")

    def point(self, model: Any, context: dict[str, Any]) -> str | None:
        """The name a served call is numbered under (None: not numbered)."""
        return str(model.name)

    def kills(self) -> bool:
        """Whether the call just numbered is the last one the process lives through."""
        return len(self.points) == self.at

    def persist(self, save: Callable[[State], None]) -> Callable[[State], None]:
        """`save`, as long as the process lives (a save is all done before the death, or not done)."""

        def persist(state: State) -> None:
            with self._lock:
                if self.dead:
                    raise Killed("the process is gone: nothing more reaches the disk")
                save(state)

        return persist


def new_process(state_path: Path, killer: Killer | None = None) -> StepContext:
    """A context as a freshly started CLI builds it: the state comes from the file on disk only."""
    clients = recorded_clients(CallLog())
    ctx = make_context(clients, SETTINGS, state_path, state=load(state_path))
    if killer is None:
        return ctx
    killer.install(clients)
    return replace(ctx, ledger=Ledger(ctx.state, killer.persist(StateFile(state_path).save)))


def the_dead_process_is_gone() -> None:
    """Every thread of the killed run has ended (a step the run did not wait for, the image, too): nothing of the
    dead process is left to act while the next one runs."""
    for thread in threading.enumerate():
        if thread.name.startswith("deployer-"):
            thread.join(timeout=60)
            assert not thread.is_alive(), f"{thread.name} outlived its process"


def load(state_path: Path) -> State:
    return StateFile(state_path).load() or State(stack=SETTINGS.stack, region=REGION, account_id=ACCOUNT)


# --- what the account holds ------------------------------------------------------------------

EC2_ID = re.compile(r"^[a-z]+-[0-9a-f]{8,17}$")
KMS_KEY_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")  # random too


# Target tracking's alarms: TargetTracking-<resource id>-AlarmHigh-<uuid> (the uuid differs in every run).
TRACKING_ALARM = re.compile(r"^(TargetTracking-.*-Alarm(High|Low))-[0-9a-f-]+$")


def label(identifier: str) -> str:
    """A name that is the same in every run: the resource's name, or '*' for EC2 IDs (random)."""
    if identifier.startswith("arn:") and ":scalingPolicy:" in identifier:  # ...:scalingPolicy:<id>:resource/...
        return identifier.rsplit(":", 1)[-1]  # policyName/NAME
    if TRACKING_ALARM.match(identifier):
        return TRACKING_ALARM.sub(r"\1", identifier)
    if identifier.startswith("arn:"):
        parts = identifier.split(":", 5)[5].split("/")
        kind = parts[0]
        if kind == "targetgroup":  # targetgroup/NAME/hash
            return parts[1]
        if kind in ("loadbalancer", "listener"):  # loadbalancer/net/NAME/hash[/listener hash]
            return f"{kind}/{parts[2]}"
        if kind == "certificate":  # certificate/<random id>
            return kind
        return "/".join(parts)  # cluster/NAME, task-definition/FAMILY:REVISION, service/CLUSTER/NAME
    if EC2_ID.match(identifier) or KMS_KEY_ID.match(identifier):
        return "*"
    return identifier  # log groups, roles, repositories are listed by name


def shape(new: dict[str, set[str]]) -> dict[str, list[str]]:
    """Per kind, the sorted labels of the resources: counts plus every name that does not vary."""
    return {kind: sorted(label(identifier) for identifier in ids) for kind, ids in new.items()}


def counts(new: dict[str, set[str]]) -> dict[str, int]:
    return {kind: len(ids) for kind, ids in new.items()}


def _tags(tags: Sequence[TagTypeDef] | None) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in tags or []}


class Unordered(list[Any]):
    """A collection whose order AWS does not define: compared sorted, once identifiers are symbolic."""


def _rules(permissions: Sequence[IpPermissionOutputTypeDef]) -> Unordered:
    rules = []
    for perm in permissions:
        base = (perm["IpProtocol"], perm.get("FromPort"), perm.get("ToPort"))
        rules += [(*base, r["CidrIp"], r.get("Description")) for r in perm.get("IpRanges", [])]
        rules += [(*base, p["GroupId"], p.get("Description")) for p in perm.get("UserIdGroupPairs", [])]
    return Unordered(rules)


def configuration(clients: AwsClients, state: State) -> Any:
    """The stack's settings as AWS reports them, every identifier the state records replaced by
    `<step.key>`: equal between two runs that built the same stack and recorded it alike."""
    ids = {record.step: record.ids for record in state.resources}
    names = SETTINGS.names
    ec2, elbv2, ecs, iam = clients.ec2, clients.elbv2, clients.ecs, clients.iam
    vpc_id = ids["vpc"]["id"]
    in_vpc: list[FilterTypeDef] = [{"Name": "vpc-id", "Values": [vpc_id]}]
    vpc = ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0]
    groups = ec2.describe_security_groups(Filters=in_vpc)["SecurityGroups"]
    defaults = {g["GroupId"]: "<the VPC's default group>" for g in groups if g["GroupName"] == "default"}
    roles = {}
    for role_name in (names.execution_role, names.task_role, names.flow_logs_role):
        role = iam.get_role(RoleName=role_name)["Role"]
        roles[role_name] = {
            "trust": role["AssumeRolePolicyDocument"],
            "attached": sorted(
                p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]
            ),
            "inline": sorted(iam.list_role_policies(RoleName=role_name)["PolicyNames"]),
        }
    repository = clients.ecr.describe_repositories(repositoryNames=[names.repository])["repositories"][0]
    (target_group,) = elbv2.describe_target_groups(Names=[names.target_group])["TargetGroups"]
    target_attributes = elbv2.describe_target_group_attributes(TargetGroupArn=target_group["TargetGroupArn"])
    (balancer,) = elbv2.describe_load_balancers(Names=[names.load_balancer])["LoadBalancers"]
    definition = ecs.describe_task_definition(taskDefinition=names.task_family)["taskDefinition"]
    services = ecs.describe_services(cluster=names.cluster, services=[names.service])["services"]
    found = {
        "state": [(record.step, sorted(record.ids)) for record in state.resources],
        "url recorded": state.outputs == {"url": f"https://{DOMAIN}"},
        "certificate": _certificate(clients, ids["certificate"]["arn"]),
        "records": _records(clients, ids["dns-alias"]["zone"]),
        "vpc": {
            "cidr": vpc["CidrBlock"],
            "tags": _tags(vpc.get("Tags")),
            "dns": [
                ec2.describe_vpc_attribute(VpcId=vpc_id, Attribute=attribute)[key]["Value"]
                for attribute, key in DNS_ATTRIBUTES
            ],
        },
        "subnets": Unordered(
            (s["SubnetId"], s["CidrBlock"], s["AvailabilityZone"], _tags(s.get("Tags")))
            for s in ec2.describe_subnets(Filters=in_vpc)["Subnets"]
        ),
        "internet gateways": Unordered(
            (g["InternetGatewayId"], [(a["VpcId"], a["State"]) for a in g["Attachments"]], _tags(g.get("Tags")))
            for g in ec2.describe_internet_gateways(Filters=[{"Name": "attachment.vpc-id", "Values": [vpc_id]}])[
                "InternetGateways"
            ]
        ),
        "route tables": Unordered(
            (
                t["RouteTableId"],
                Unordered((r.get("DestinationCidrBlock"), r.get("GatewayId")) for r in t["Routes"]),
                Unordered((a.get("Main", False), a.get("RouteTableAssociationId")) for a in t["Associations"]),
                _tags(t.get("Tags")),
            )
            for t in ec2.describe_route_tables(Filters=in_vpc)["RouteTables"]
        ),
        "security groups": Unordered(
            (g["GroupName"], g["GroupId"], _rules(g["IpPermissions"]), _tags(g.get("Tags"))) for g in groups
        ),
        "log groups": [
            (g["logGroupName"], g.get("retentionInDays"), g.get("kmsKeyId"))
            for prefix in (names.log_group, names.flow_log_group)
            for g in clients.logs.describe_log_groups(logGroupNamePrefix=prefix)["logGroups"]
        ],
        "flow logs": [
            (f["ResourceId"], f["TrafficType"], f["LogGroupName"], f["DeliverLogsPermissionArn"], _tags(f.get("Tags")))
            for f in ec2.describe_flow_logs()["FlowLogs"]
        ],
        "log key": {
            "alias": clients.kms.describe_key(KeyId=names.log_key_alias)["KeyMetadata"]["Arn"],
            "rotation": clients.kms.get_key_rotation_status(KeyId=ids["log-key"]["id"])["KeyRotationEnabled"],
        },
        "roles": roles,
        "repository": {
            "mutability": repository["imageTagMutability"],
            "scan on push": repository["imageScanningConfiguration"]["scanOnPush"],
            "lifecycle": json.loads(
                clients.ecr.get_lifecycle_policy(repositoryName=names.repository)["lifecyclePolicyText"]
            ),
        },
        "target group": {
            **{
                key: target_group.get(key)
                for key in (
                    "TargetGroupArn",
                    "Protocol",
                    "Port",
                    "VpcId",
                    "TargetType",
                    "HealthCheckProtocol",
                    "HealthCheckIntervalSeconds",
                    "HealthyThresholdCount",
                    "UnhealthyThresholdCount",
                )
            },
            "attributes": {a["Key"]: a["Value"] for a in target_attributes["Attributes"]},
        },
        "load balancer": {
            "arn": balancer["LoadBalancerArn"],
            "type": (balancer["Type"], balancer["Scheme"]),
            "subnets": Unordered(z["SubnetId"] for z in balancer["AvailabilityZones"]),
            "security groups": balancer.get("SecurityGroups"),
            # Listed in the order they were made (moto); steps run at once make them in any order.
            "listeners": Unordered(
                (
                    listener["ListenerArn"],
                    listener["Protocol"],
                    listener["Port"],
                    listener["DefaultActions"],
                    listener.get("Certificates"),
                    listener.get("SslPolicy"),
                )
                for listener in elbv2.describe_listeners(LoadBalancerArn=balancer["LoadBalancerArn"])["Listeners"]
            ),
        },
        "cluster": [
            (c["clusterArn"], c["status"]) for c in ecs.describe_clusters(clusters=[names.cluster])["clusters"]
        ],
        "task definition": {
            key: definition.get(key)
            for key in (
                "taskDefinitionArn",
                "revision",
                "status",
                "cpu",
                "memory",
                "networkMode",
                "executionRoleArn",
                "taskRoleArn",
                "containerDefinitions",
            )
        },
        "service": [
            {
                key: service.get(key)
                for key in (
                    "serviceArn",
                    "status",
                    "taskDefinition",
                    "desiredCount",
                    "launchType",
                    "networkConfiguration",
                    "loadBalancers",
                    "deploymentConfiguration",
                    "availabilityZoneRebalancing",
                )
            }
            for service in services
        ],
        "alarms": Unordered(  # the same: in the order they were made
            (a["AlarmName"], a.get("MetricName"), a.get("Dimensions"), a["EvaluationPeriods"], a.get("Metrics"))
            for a in clients.cloudwatch.describe_alarms(AlarmNames=[names.unhealthy_alarm, names.shortfall_alarm])[
                "MetricAlarms"
            ]
        ),
        "scaling": _scaling(clients, f"service/{names.cluster}/{names.service}"),
    }
    references = {**defaults}
    for record in state.resources:
        for key, value in record.ids.items():
            references.setdefault(value, f"<{record.step}.{key}>")
            # The alarms' dimensions name the load balancer and target group by their ARN's end (net/NAME/ID,
            # targetgroup/NAME/ID): the same symbol for it.
            if value.startswith("arn:") and ":elasticloadbalancing:" in value:
                end = value.split(":", 5)[5].removeprefix("loadbalancer/")
                references.setdefault(end, f"<{record.step}.{key} suffix>")
    return symbolic(found, references)


def _scaling(clients: AwsClients, resource_id: str) -> Any:
    """The service's scalable target (its range and tags) and its policies (by name: moto gives an updated policy a
    new ARN), with their targets and cooldowns."""
    autoscaling = clients.autoscaling
    targets = autoscaling.describe_scalable_targets(ServiceNamespace="ecs", ResourceIds=[resource_id])
    policies = autoscaling.describe_scaling_policies(ServiceNamespace="ecs", ResourceId=resource_id)
    return {
        "targets": [
            (
                t["MinCapacity"],
                t["MaxCapacity"],
                autoscaling.list_tags_for_resource(ResourceARN=t["ScalableTargetARN"])["Tags"],
            )
            for t in targets["ScalableTargets"]
        ],
        "policies": Unordered(
            (p["PolicyName"], p.get("TargetTrackingScalingPolicyConfiguration"), len(p.get("Alarms", [])))
            for p in policies["ScalingPolicies"]
        ),
    }


def _certificate(clients: AwsClients, arn: str) -> Any:
    detail = clients.acm.describe_certificate(CertificateArn=arn)["Certificate"]
    tags = clients.acm.list_tags_for_certificate(CertificateArn=arn)["Tags"]
    return (arn, detail["DomainName"], detail["Status"], sorted((tag["Key"], tag.get("Value")) for tag in tags))


def _records(clients: AwsClients, zone: str) -> Any:
    """The zone's records but its own NS and SOA; the alias target by DNS name (moto's zone id is fixed)."""
    answer = clients.route53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
    return Unordered(
        (r["Name"], r["Type"], r.get("AliasTarget", {}).get("DNSName"), r.get("ResourceRecords"))
        for r in answer
        if r["Type"] not in ("NS", "SOA")
    )


def symbolic(value: Any, references: dict[str, str]) -> Any:
    if isinstance(value, Unordered):
        return sorted((symbolic(item, references) for item in value), key=repr)
    if isinstance(value, str):
        return references.get(value, value)
    if isinstance(value, dict):
        return {key: symbolic(item, references) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [symbolic(item, references) for item in value]
    return value


# --- the clean recording, made once at collection time ---------------------------------------


@dataclass(frozen=True)
class Recording:
    provision_calls: list[str]
    teardown_calls: list[str]
    counts: dict[str, int]
    shape: dict[str, list[str]]
    configuration: Any
    left_after_teardown: dict[str, set[str]]


@contextmanager
def isolated_environment() -> Iterator[Path]:
    """What conftest's autouse `isolated_aws` does for a test, for the recording made before any test."""
    with pytest.MonkeyPatch.context() as patch, tempfile.TemporaryDirectory() as folder:
        for name in list(os.environ):
            if name.startswith(("AWS_", "MOTO_")):
                patch.delenv(name)
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.setenv("AWS_DEFAULT_REGION", REGION)
        patch.setenv("AWS_CONFIG_FILE", str(Path(folder) / "no-aws-config"))
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(Path(folder) / "no-aws-credentials"))
        patch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
        patch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
        patch.setattr(moto.settings, "ACM_VALIDATION_WAIT", 0)
        yield Path(folder)


@cache
def clean_recording() -> Recording:
    """A clean provision and teardown, one step after another: the calls each makes (numbered the same in every
    run), and the stack provision leaves."""
    with isolated_environment() as folder, mock_aws():
        state_path = folder / "state.json"
        hosted_zone(recorded_clients(CallLog()))
        before = inventory(recorded_clients(CallLog()))
        provision_killer = Killer()
        provision(new_process(state_path, provision_killer), SEQUENTIAL)
        new = added(before, inventory(recorded_clients(CallLog())))
        settled = configuration(recorded_clients(CallLog()), load(state_path))
        teardown_killer = Killer()
        runner.teardown(new_process(state_path, teardown_killer), SEQUENTIAL)
        left = added(before, inventory(recorded_clients(CallLog())))
        return Recording(provision_killer.points, teardown_killer.points, counts(new), shape(new), settled, left)


def crash_points(phase: str, every: int = 1) -> list[Any]:
    """The calls of the clean recording (every `every`-th of them), each named by its number and operation."""
    recording = clean_recording()
    calls = recording.provision_calls if phase == "provision" else recording.teardown_calls
    points = []
    for n, operation in enumerate(calls, start=1):
        if n % every:
            continue
        occurrence = calls[:n].count(operation)
        reason = KNOWN_BUGS.get((phase, operation, occurrence))
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        points.append(pytest.param(n, operation, id=f"{phase}-after-call-{n:02d}-{operation}", marks=marks))
    return points


@pytest.fixture
def clean() -> Recording:
    return clean_recording()


def provision(ctx: StepContext, scheduler: Scheduler = DEFAULT_SCHEDULER) -> None:
    runner.provision(ctx, wait=False, scheduler=scheduler)


Run = Callable[[StepContext, Scheduler], object]


def kill(run: Run, state_path: Path, at: int) -> Killer:
    """Run provision or teardown, several steps at once, in a process that dies right after call `at` was served;
    return once every thread of that process has ended."""
    killer = Killer(at)
    with pytest.raises(Killed):
        run(new_process(state_path, killer), DEFAULT_SCHEDULER)
    the_dead_process_is_gone()
    return killer


def in_random_order(seed: int) -> Scheduler:
    """The parallel runner starting, among the steps whose needs are done, one chosen at random (seeded)."""
    return Scheduler(pick=random.Random(seed).choice)


# --- the tests -------------------------------------------------------------------------------


def test_the_clean_recording_is_one_stack_that_teardown_removes(clean: Recording) -> None:
    assert clean.counts == ONE_STACK
    assert clean.shape["task_definitions"] == [f"task-definition/{SETTINGS.names.task_family}:1"]
    assert len(clean.provision_calls) > len(ONE_STACK) and clean.teardown_calls
    assert clean.left_after_teardown == {}


def provision_converges_after_a_kill(
    at: int, rerun: Scheduler, clean: Recording, observer: AwsClients, state_path: Path
) -> None:
    before = inventory(observer)
    killed = kill(provision, state_path, at)
    served = f"the killed run's calls: {killed.points}"

    provision(new_process(state_path), rerun)
    new = added(before, inventory(observer))
    assert shape(new) == clean.shape, f"counts {counts(new)}, wanted {clean.counts}; {served}"
    assert configuration(observer, load(state_path)) == clean.configuration, served

    runner.teardown(new_process(state_path))
    assert inventory(observer) == before, served
    assert load(state_path).resources == [], served


def teardown_converges_after_a_kill(at: int, rerun: Scheduler, observer: AwsClients, state_path: Path) -> None:
    before = inventory(observer)
    provision(new_process(state_path))
    killed = kill(runner.teardown, state_path, at)

    runner.teardown(new_process(state_path), rerun)
    after = inventory(observer)
    assert after == before, f"left behind: {added(before, after)}; the killed run's calls: {killed.points}"
    assert load(state_path).resources == [], f"the killed run's calls: {killed.points}"


@pytest.mark.parametrize(("at", "operation"), crash_points("provision"))
def test_provision_killed_after_a_call_converges_on_the_next_run(
    at: int, operation: str, clean: Recording, observer: AwsClients, state_path: Path
) -> None:
    provision_converges_after_a_kill(at, DEFAULT_SCHEDULER, clean, observer, state_path)


@pytest.mark.parametrize(("at", "operation"), crash_points("provision", every=RANDOM_EVERY))
def test_provision_killed_after_a_call_converges_whatever_order_the_next_run_takes(
    at: int, operation: str, clean: Recording, observer: AwsClients, state_path: Path
) -> None:
    provision_converges_after_a_kill(at, in_random_order(at), clean, observer, state_path)


@pytest.mark.parametrize(("at", "operation"), crash_points("teardown"))
def test_teardown_killed_after_a_call_converges_on_the_next_run(
    at: int, operation: str, observer: AwsClients, state_path: Path
) -> None:
    teardown_converges_after_a_kill(at, DEFAULT_SCHEDULER, observer, state_path)


@pytest.mark.parametrize(("at", "operation"), crash_points("teardown", every=RANDOM_EVERY))
def test_teardown_killed_after_a_call_converges_whatever_order_the_next_run_takes(
    at: int, operation: str, observer: AwsClients, state_path: Path
) -> None:
    teardown_converges_after_a_kill(at, in_random_order(at), observer, state_path)
