"""`provision.py --print-policy`: the IAM policy the tool needs, all of it and nothing more.

* Coverage (in-process moto): every call of provision (building the image, through a fake
  builder), a repair of hand-made changes, a failed and a good redeploy, rollback, status,
  logs and teardown is recorded; each must map to an action the generated policy allows,
  and each action of the policy must be needed by a recorded call (or be the Docker
  engine's registry push, which is not boto3).
* Scoping (unit): changing actions are held to the stack's ARNs or tags; PassRole and the
  service-linked role are conditioned; ARNs carry the partition, region and account given.
* README: the "Permissions needed" list is the policy's, for the default settings.

The enforced test (moto's IAM authorization, a separate server process) is in
tests/test_policy_enforced.py.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest

from deployer import observe, policy, runner
from deployer.clients import AwsClients
from deployer.images import BuildSpec, ImageBuilder, RegistryAuth
from deployer.probe import UrlAnswer
from deployer.rollout import DeploymentFailedError
from deployer.settings import Settings
from deployer.state import State
from deployer.steps.base import StepContext
from tests.conftest import (
    ACCOUNT,
    DOMAIN,
    REGION,
    ZONE,
    CallLog,
    RecordingOutput,
    hosted_zone,
    lost_state,
    recorded_clients,
)
from tests.rollouts import Rollout
from tests.scans import answer_scans
from tests.test_readme import readme_text, section

DIGEST = "sha256:" + "cd" * 32
READS = ("Describe", "List", "Get", "FilterLogEvents", "BatchGetImage", "GetDownloadUrlForLayer")
# Calls other branches are adding (tag reads, load-balancer attributes): in the table ahead of them. Remove an
# entry once its call lands; the coverage test then holds it to being used.
ANTICIPATED: set[tuple[str, str]] = set()
# Made only when a scalable target exists on the service without a record: a lost state of a stack that scaled,
# whatever the settings now say (the default policy allows it; test_with_autoscaling_... makes the call).
NOT_IN_DEFAULT_PHASES = {("application-autoscaling", "ListTagsForResource")}
# Reads made only to explain a failure: teardown names the network interfaces that still hold a subnet,
# VPC or security group AWS kept refusing to delete (deployer/steps/network.py, `blocked`).
ERROR_PATHS = {("ec2", "DescribeNetworkInterfaces")}
# IAM quotas: "Managed policies attached to an IAM role" and "... to an IAM user", 10 each by default
# (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html).
MANAGED_POLICIES_PER_ROLE = 10
ROLE_POLICIES = tuple(f"arn:aws:iam::{ACCOUNT}:policy/site-policy-{n}" for n in range(8))


def _no_engine() -> Any:
    raise AssertionError("the fake builder never talks to a Docker engine")


class PushedBuilder(ImageBuilder):
    """Build and push without Docker: the registry never has the tag, the push returns a digest."""

    def __init__(self) -> None:
        super().__init__(RecordingOutput(), connect=_no_engine)

    def registry_digest(self, reference: str, auth: RegistryAuth) -> str | None:
        return None

    def build(self, spec: BuildSpec, reference: str) -> None:
        self.builds += 1

    def push(self, repository: str, tag: str, auth: RegistryAuth) -> str:
        self.pushes += 1
        return DIGEST


def allowed(document: dict[str, Any]) -> set[str]:
    return {action for statement in document["Statement"] for action in statement["Action"]}


def run_phases(ctx: StepContext, calls: CallLog, serving: Rollout) -> dict[str, set[tuple[str, str]]]:  # noqa: PLR0915 - one phase after another
    """Every (service, operation) each phase sends, with the image built and pushed (a fake engine)."""
    settings = replace(ctx.settings, image=None, build_args={"BASE_IMAGE": "fake/base:1"})
    ctx = replace(ctx, settings=settings, images=PushedBuilder())
    answer_scans(ctx.clients.ecr)  # the pushed image's scan on push: clean (moto never scans on push)
    hand = recorded_clients(CallLog())  # changes made by hand in the console: not the tool's calls
    phases: dict[str, set[tuple[str, str]]] = {}

    def phase(name: str, run: Any) -> None:
        calls.clear()
        run()
        phases[name] = set(calls.calls)

    phase("provision", lambda: runner.provision(ctx))

    # Hand-made changes that provision puts back (each converge call is in tests/test_converge.py too).
    nlb_group, vpc = ctx.ids("nlb-security-group")["id"], ctx.ids("vpc")["id"]
    hand.ec2.authorize_security_group_ingress(
        GroupId=nlb_group,
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
    )
    interface = hand.ec2.create_network_interface(SubnetId=ctx.ids("subnet-1")["id"])["NetworkInterface"]
    hand.ec2.replace_route(
        RouteTableId=ctx.ids("route-table")["id"],
        DestinationCidrBlock="0.0.0.0/0",
        NetworkInterfaceId=interface["NetworkInterfaceId"],
    )
    loose = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
    }
    hand.iam.update_assume_role_policy(RoleName=ctx.ids("execution-role")["name"], PolicyDocument=json.dumps(loose))
    # What a role of an earlier version holds: converge detaches it (the inline policy replaces it).
    hand.iam.attach_role_policy(
        RoleName=ctx.ids("execution-role")["name"],
        PolicyArn="arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy",
    )
    hand.ecs.update_cluster(
        cluster=ctx.ids("cluster")["name"], settings=[{"name": "containerInsights", "value": "disabled"}]
    )
    hand.iam.put_role_policy(
        RoleName=ctx.ids("task-role")["name"],
        PolicyName="by-hand",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        ),
    )
    repository = ctx.ids("repository")["name"]
    hand.ecr.put_image_tag_mutability(repositoryName=repository, imageTagMutability="MUTABLE")
    hand.ecr.put_image_scanning_configuration(
        repositoryName=repository, imageScanningConfiguration={"scanOnPush": False}
    )
    hand.elbv2.modify_target_group(TargetGroupArn=ctx.ids("target-group")["arn"], HealthCheckIntervalSeconds=30)
    hand.elbv2.modify_listener(ListenerArn=ctx.ids("listener")["arn"], Port=8081)
    intruder = hand.ec2.create_security_group(GroupName="by-hand", Description="by hand", VpcId=vpc)["GroupId"]
    balancer = ctx.ids("load-balancer")["arn"]
    hand.elbv2.set_security_groups(LoadBalancerArn=balancer, SecurityGroups=[intruder])
    elsewhere = hand.ec2.create_subnet(
        VpcId=vpc, CidrBlock="172.31.96.0/20", AvailabilityZone=ctx.ids("subnet-2")["availability_zone"]
    )["Subnet"]["SubnetId"]
    hand.elbv2.set_subnets(LoadBalancerArn=balancer, Subnets=[ctx.ids("subnet-1")["id"], elsewhere])
    acl = ctx.ids("network-acl")["id"]
    hand.ec2.replace_network_acl_entry(
        NetworkAclId=acl, RuleNumber=100, Protocol="-1", RuleAction="allow", Egress=False, CidrBlock="0.0.0.0/0"
    )
    phase("repair", lambda: runner.provision(ctx))
    hand.ec2.delete_network_interface(NetworkInterfaceId=interface["NetworkInterfaceId"])
    hand.ec2.delete_security_group(GroupId=intruder)
    hand.ec2.delete_subnet(SubnetId=elsewhere)

    failing = replace(ctx, settings=replace(settings, cpu=512, memory=1024))
    serving.failed_tasks, serving.stopped_reason = 3, "Essential container in task exited"

    def failed_redeploy() -> None:
        with pytest.raises(DeploymentFailedError):
            runner.provision(failing)

    phase("failed redeploy", failed_redeploy)
    serving.failed_tasks, serving.stopped_reason = 0, None
    redeployed = replace(ctx, settings=replace(settings, cpu=1024, memory=2048))
    phase("redeploy", lambda: runner.provision(redeployed))
    phase("rollback", lambda: runner.rollback(redeployed))
    _log_key_phases(phase, hand, redeployed)
    # network = "private" and back: the NAT gateway, its address and the private route table, made and removed.
    phase(
        "private",
        lambda: runner.provision(replace(redeployed, settings=replace(redeployed.settings, network="private"))),
    )
    phase("public again", lambda: runner.provision(redeployed))
    phase("status", lambda: observe.collect_status(ctx.clients, ctx.state, lambda url: UrlAnswer(url, 200)))
    group = ctx.ids("log-group")["name"]
    phase("logs", lambda: observe.tail(ctx.clients.logs, group, 0, follow=False, write=lambda _event: None))
    # A lost state file: every named resource is found again by name and adopted only with our tags (read);
    # the account's certificates are looked at for the stack's tag (one of the user's is there).
    hand.acm.request_certificate(DomainName="www.example.org", ValidationMethod="DNS")
    phase("lost state", lambda: runner.discover(lost_state(redeployed)))
    phase("teardown", lambda: runner.teardown(redeployed))
    return phases


def _log_key_phases(phase: Callable[[str, Any], None], hand: AwsClients, ctx: StepContext) -> None:
    """log_kms_key = "create": the stack's key, changed by hand and put back, then turned off (removed)."""
    keyed = replace(ctx, settings=replace(ctx.settings, log_kms_key="create"))
    phase("log key", lambda: runner.provision(keyed))
    key = keyed.ids("log-key")["id"]
    hand.kms.disable_key(KeyId=key)
    hand.kms.disable_key_rotation(KeyId=key)
    loose = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "kms:*"}]}
    hand.kms.put_key_policy(KeyId=key, PolicyName="default", Policy=json.dumps(loose))
    stray = hand.kms.create_key()["KeyMetadata"]["KeyId"]  # the alias moved to a key since scheduled for deletion
    hand.kms.update_alias(AliasName=keyed.settings.names.log_key_alias, TargetKeyId=stray)
    hand.kms.schedule_key_deletion(KeyId=stray, PendingWindowInDays=7)
    phase("log key repair", lambda: runner.provision(keyed))
    phase("log key off", lambda: runner.provision(ctx))


def test_every_call_is_allowed_and_every_action_is_needed(ctx: StepContext, calls: CallLog, serving: Rollout) -> None:
    phases = run_phases(ctx, calls, serving)
    settings = replace(ctx.settings, image=None)
    document = policy.document(settings, "aws", REGION, ACCOUNT)
    granted = allowed(document)

    made: set[tuple[str, str]] = set().union(*phases.values()) - policy.NO_PERMISSION
    unknown = sorted(call for call in made if not policy.grants(call[0], call[1], settings))
    assert not unknown, f"calls the policy table does not know: {unknown}"
    for name, recorded in phases.items():
        for call in sorted(recorded - policy.NO_PERMISSION):
            missing = {action for action, _group in policy.grants(call[0], call[1], settings)} - granted
            assert not missing, f"{name}: {call} needs {missing}, which the policy does not allow"

    needed = {
        action
        for call in made | ANTICIPATED | ERROR_PATHS | NOT_IN_DEFAULT_PHASES
        for action, _ in policy.grants(call[0], call[1], settings)
    }
    engine = {action for row in policy.TABLE if row.service == policy.ENGINE for action in row.actions.split()}
    unused = sorted(granted - needed - engine)
    assert not unused, f"the policy allows actions no phase needs: {unused}"
    assert not (ANTICIPATED | ERROR_PATHS) & made, "a call listed as anticipated or error-only is made: unlist it"
    phases_run = (
        "provision",
        "repair",
        "failed redeploy",
        "redeploy",
        "rollback",
        "private",
        "public again",
        "status",
        "logs",
        "lost state",
    )
    for phase in (*phases_run, "teardown"):
        assert phases[phase], f"the {phase} phase made no call"


def test_every_table_row_names_a_group_and_every_group_is_used() -> None:
    used = {row.group for row in policy.TABLE}
    assert used <= set(policy.GROUPS), sorted(used - set(policy.GROUPS))
    assert set(policy.GROUPS) == used, sorted(set(policy.GROUPS) - used)
    for group in policy.GROUPS.values():
        assert group.references and all(page.startswith("https://docs.aws.amazon.com/") for page in group.references)


def statements_of(settings: Settings, partition: str = "aws-cn", region: str = "cn-north-1") -> list[dict[str, Any]]:
    return policy.statements(settings, partition, region, "210987654321")


def test_changing_actions_are_scoped_to_the_stack() -> None:
    for statement in statements_of(Settings(stack="my-site")):
        writes = [a for a in statement["Action"] if not a.split(":", 1)[1].startswith(READS)]
        unscopable = set(writes) - policy.UNSCOPED_WRITES
        if unscopable and statement["Resource"] == ["*"]:
            assert "Condition" in statement, f"{statement['Sid']} allows {sorted(unscopable)} on every resource"


def test_arns_carry_the_partition_region_account_and_names() -> None:
    for statement in statements_of(Settings(stack="my-site")):
        for arn in statement["Resource"]:
            if arn == "*":
                continue
            parts = arn.split(":")
            assert parts[1] == "aws-cn", arn
            assert parts[3] in ("cn-north-1", ""), arn  # IAM is global: no region
            assert parts[4] == "210987654321", arn
    text = json.dumps(statements_of(Settings(stack="my-site")))
    for name in ("my-site-nlb", "my-site-tg", "my-site-cluster", "/ecs/my-site", "my-site-cn-north-1-exec"):
        assert name in text
    assert "flask-site" not in text


def test_pass_role_and_the_service_linked_role_are_conditioned() -> None:
    by_action = {a: s for s in statements_of(Settings(stack="my-site")) for a in s["Action"]}
    by_sid = {s["Sid"]: s for s in statements_of(Settings(stack="my-site"))}
    flow = by_sid["IamPassFlowLogsRole"]
    assert flow["Condition"] == {"StringEquals": {"iam:PassedToService": "vpc-flow-logs.amazonaws.com"}}
    assert flow["Resource"] == ["arn:aws-cn:iam::210987654321:role/my-site-cn-north-1-flow"]
    passing = by_sid["IamPassRole"]
    assert passing["Condition"] == {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}
    assert sorted(passing["Resource"]) == [
        "arn:aws-cn:iam::210987654321:role/my-site-cn-north-1-exec",
        "arn:aws-cn:iam::210987654321:role/my-site-cn-north-1-task",
    ]
    linked = by_action["iam:CreateServiceLinkedRole"]
    assert linked["Condition"] == {"StringEquals": {"iam:AWSServiceName": "ecs.amazonaws.com"}}
    assert linked["Resource"] == [
        "arn:aws-cn:iam::210987654321:role/aws-service-role/ecs.amazonaws.com/AWSServiceRoleForECS"
    ]
    assert by_action["ec2:CreateVpc"]["Condition"] == {"StringEquals": {"aws:RequestTag/deployer:stack": "my-site"}}
    assert by_action["ec2:DeleteVpc"]["Condition"] == {"StringEquals": {"aws:ResourceTag/deployer:stack": "my-site"}}
    assert "ec2:CreateAction" in by_action["ec2:CreateTags"]["Condition"]["StringLike"]


def test_attach_is_held_to_the_task_role_and_the_policies_the_settings_name() -> None:
    extra = "arn:aws-cn:iam::aws:policy/AmazonS3ReadOnlyAccess"
    by_action = {
        a: s for s in statements_of(Settings(stack="my-site", task_role_policy_arns=(extra,))) for a in s["Action"]
    }
    assert by_action["iam:AttachRolePolicy"]["Condition"] == {"ArnEquals": {"iam:PolicyARN": [extra]}}
    assert by_action["iam:AttachRolePolicy"]["Resource"] == [
        "arn:aws-cn:iam::210987654321:role/my-site-cn-north-1-task"
    ]
    # Without task role policies nothing is ever attached: the action is not in the policy at all.
    assert "iam:AttachRolePolicy" not in {a for s in statements_of(Settings()) for a in s["Action"]}


def test_inline_policies_only_on_the_execution_and_flow_logs_roles() -> None:
    by_action = {a: s for s in statements_of(Settings(stack="my-site")) for a in s["Action"]}
    assert by_action["iam:PutRolePolicy"]["Resource"] == [
        "arn:aws-cn:iam::210987654321:role/my-site-cn-north-1-exec",
        "arn:aws-cn:iam::210987654321:role/my-site-cn-north-1-flow",
    ]


def test_the_registry_push_is_only_there_when_the_image_is_built() -> None:
    built = allowed(policy.document(Settings(), "aws", REGION, ACCOUNT))
    given = allowed(policy.document(Settings(image="example.com/site:1"), "aws", REGION, ACCOUNT))
    push = {"ecr:PutImage", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload"}
    assert push | {"ecr:GetAuthorizationToken", "ecr:BatchCheckLayerAvailability"} <= built
    assert not (push | {"ecr:GetAuthorizationToken"}) & given


@pytest.mark.parametrize(
    "settings",
    [Settings(), Settings(image="example.com/site:1"), Settings(stack="s" * 28, task_role_policy_arns=ROLE_POLICIES)],
    ids=["built", "given", "long-names"],
)
def test_printed_policies_each_fit_a_managed_policy_and_together_are_the_whole(settings: Settings) -> None:
    printed = policy.documents(settings, "aws", REGION, ACCOUNT)
    assert all(policy.size(document) <= policy.MANAGED_POLICY_LIMIT for document in printed)
    together = [statement for document in printed for statement in document["Statement"]]
    assert together == policy.document(settings, "aws", REGION, ACCOUNT)["Statement"]
    assert len(printed) <= MANAGED_POLICIES_PER_ROLE


def test_a_smaller_limit_splits_between_statements_and_keeps_each_within_it(monkeypatch: pytest.MonkeyPatch) -> None:
    whole = policy.document(Settings(), "aws", REGION, ACCOUNT)
    largest = max(policy.size({"Version": "2012-10-17", "Statement": [s]}) for s in whole["Statement"])
    monkeypatch.setattr(policy, "MANAGED_POLICY_LIMIT", largest + 10)
    printed = policy.documents(Settings(), "aws", REGION, ACCOUNT)
    assert len(printed) > 2
    assert all(policy.size(document) <= largest + 10 for document in printed)
    assert [s for document in printed for s in document["Statement"]] == whole["Statement"]


SERVICE_LINE = re.compile(r"^\* `([a-z0-9-]+)`: (.+)$")


def test_the_readme_lists_exactly_the_policy_of_the_default_settings() -> None:
    body = section(readme_text(), "Permissions needed")
    listed = {
        match.group(1): [name.strip("` ") for name in match.group(2).split(",")]
        for match in map(SERVICE_LINE.match, body.splitlines())
        if match
    }
    assert listed == policy.actions_by_service(Settings())
    assert "python provision.py --print-policy" in body


# The statements a domain adds (deployer/policy.py): each of their actions must be needed by a call below.
DOMAIN_GROUPS = (
    *("AcmRequest", "AcmTagOnCreate", "AcmRead", "AcmTagged"),
    *("Route53Read", "Route53Records", "Route53Delete", "Route53Change"),
)


@dataclass
class Phase:
    """One run: its calls, the record changes it sent, and the policy a user would print before it
    (`--print-policy` with its settings and the state file as it was)."""

    calls: set[tuple[str, str]]
    changes: list[tuple[str, str]]  # (action, normalised record name) of each ChangeResourceRecordSets
    document: dict[str, Any]
    settings: Settings
    recorded: frozenset[str]


def run_phase(
    calls: CallLog, run_ctx: StepContext, run: Callable[[], object], changes: list[tuple[str, str]] | None = None
) -> Phase:
    """Run one phase: its calls (and the record `changes` it sent), and the policy printed before it from the state
    file as the user has it then."""
    before = run_ctx.state
    state = State(before.stack, before.region, before.account_id, copy.deepcopy(before.resources))
    document = policy.document(run_ctx.settings, "aws", REGION, ACCOUNT, state)
    recorded = frozenset(record.step for record in state.resources)
    calls.clear()
    run()
    return Phase(set(calls.calls), list(changes or []), document, run_ctx.settings, recorded)


def assert_groups_needed(settings: Settings, groups: tuple[str, ...], needed: set[str]) -> None:
    """The policy for `settings` has every statement of `groups`, and each allows only actions a call needed."""
    statements = policy.statements(settings, "aws", REGION, ACCOUNT)
    for statement in statements:
        if statement["Sid"] in groups:
            unused = set(statement["Action"]) - needed
            assert not unused, f"{statement['Sid']} allows actions no call needs: {sorted(unused)}"
    assert {statement["Sid"] for statement in statements} >= set(groups)


def domain_phases(ctx: StepContext, calls: CallLog) -> dict[str, Phase]:
    """A domain in the account's zone: provision, re-run, a new domain (the old one retired), status, the
    domain removed, added back, a lost state found again, teardown."""
    hosted_zone(ctx.clients)
    with_domain = replace(ctx, settings=replace(ctx.settings, domain=DOMAIN))
    moved = replace(ctx, settings=replace(ctx.settings, domain=f"shop.{ZONE}"))
    changes: list[tuple[str, str]] = []

    def record_change(params: dict[str, Any], **_: Any) -> None:
        for change in params["ChangeBatch"]["Changes"]:
            changes.append((change["Action"], change["ResourceRecordSet"]["Name"].rstrip(".").lower()))

    ctx.clients.route53.meta.events.register("provide-client-params.route53.ChangeResourceRecordSets", record_change)
    phases: dict[str, Phase] = {}

    def phase(name: str, run_ctx: StepContext, run: Callable[[], object]) -> None:
        changes.clear()
        phases[name] = run_phase(calls, run_ctx, run, changes)

    phase("provision", with_domain, lambda: runner.provision(with_domain))
    phase("re-run", with_domain, lambda: runner.provision(with_domain))
    phase("new domain", moved, lambda: runner.provision(moved))
    status = lambda: observe.collect_status(ctx.clients, ctx.state, lambda url: UrlAnswer(url, 200))  # noqa: E731
    phase("status", moved, status)
    phase("domain removed", ctx, lambda: runner.provision(ctx))
    phase("domain again", moved, lambda: runner.provision(moved))
    phase("lost state", moved, lambda: runner.discover(lost_state(moved)))
    phase("teardown", moved, lambda: runner.teardown(moved))
    return phases


def check_allowed(phases: dict[str, Phase]) -> set[str]:
    """Every call of every phase is allowed by the policy printed before it, and every record change it sent
    is to a name that policy's Route 53 condition allows; returns the actions the calls need."""
    needed: set[str] = set()
    for name, phase in phases.items():
        granted = allowed(phase.document)
        for call in sorted(phase.calls - policy.NO_PERMISSION):
            grants = {action for action, _ in policy.grants(call[0], call[1], phase.settings, phase.recorded)}
            assert grants, f"{name}: the policy table does not know {call}"
            assert grants <= granted, f"{name}: {call} needs {grants - granted}, which the policy does not allow"
            needed |= grants
        by_sid = {statement["Sid"]: statement for statement in phase.document["Statement"]}
        for action, record in phase.changes:
            sid = "Route53Records" if action == "UPSERT" else "Route53Delete"
            condition = by_sid[sid]["Condition"]
            patterns = condition["ForAllValues:StringLike"]["route53:ChangeResourceRecordSetsNormalizedRecordNames"]
            assert any(fnmatch.fnmatchcase(record, pattern) for pattern in patterns), f"{name}: {action} {record}"
            assert action in condition["ForAllValues:StringEquals"]["route53:ChangeResourceRecordSetsActions"]
    return needed


def test_with_a_domain_every_call_is_allowed_and_every_domain_action_is_needed(
    ctx: StepContext, calls: CallLog, serving: Rollout
) -> None:
    phases = domain_phases(ctx, calls)
    needed = check_allowed(phases)
    assert {action for phase in phases.values() for action, _ in phase.changes} == {"UPSERT", "DELETE"}
    assert_groups_needed(replace(ctx.settings, domain=DOMAIN), DOMAIN_GROUPS, needed)


def test_with_a_certificate_of_the_users_no_zone_is_touched_and_every_call_is_allowed(
    ctx: StepContext, calls: CallLog, serving: Rollout
) -> None:
    arn = ctx.clients.acm.request_certificate(DomainName=DOMAIN, ValidationMethod="DNS")["CertificateArn"]
    settings = replace(ctx.settings, domain=DOMAIN, certificate_arn=arn)
    external = replace(ctx, settings=settings)
    calls.clear()
    runner.provision(external)
    runner.teardown(external)
    made = set(calls.calls)
    assert not {call for call in made if call[0] == "route53"}, "DNS is the user's: no hosted zone is touched"
    document = policy.document(settings, "aws", REGION, ACCOUNT)
    check_allowed({"provision and teardown": Phase(made, [], document, settings, frozenset())})
    sids = {statement["Sid"] for statement in policy.statements(settings, "aws", REGION, ACCOUNT)}
    assert "AcmRead" in sids and not sids & {"AcmRequest", "AcmTagged", "Route53Records", "Route53Delete"}


SCALING_GROUPS = ("AasRegister", "AasTagged", "AasRead", "CloudWatchTargetTracking", "Alarms", "AlarmsRead")


def scaling_phases(ctx: StepContext, calls: CallLog) -> dict[str, Phase]:
    """Autoscaling: provision, re-run, a new range and targets, a redeploy and a rollback with the scaler's count,
    status, a lost state found again (with the settings of the stack, and with none), back to a fixed count (the
    scaling removed), scaling again, teardown."""
    scaled = replace(ctx, settings=replace(ctx.settings, max_tasks=4, scale_memory_percent=70))
    wider = replace(ctx, settings=replace(scaled.settings, max_tasks=6, scale_cpu_percent=50))
    redeployed = replace(wider, settings=replace(wider.settings, cpu=512, memory=1024))
    phases: dict[str, Phase] = {}

    def phase(name: str, run_ctx: StepContext, run: Callable[[], object]) -> None:
        phases[name] = run_phase(calls, run_ctx, run)

    phase("provision", scaled, lambda: runner.provision(scaled))
    phase("re-run", scaled, lambda: runner.provision(scaled))
    phase("new range", wider, lambda: runner.provision(wider))
    phase("redeploy", redeployed, lambda: runner.provision(redeployed))
    phase("rollback", redeployed, lambda: runner.rollback(redeployed))
    status = lambda: observe.collect_status(ctx.clients, ctx.state, lambda url: UrlAnswer(url, 200))  # noqa: E731
    phase("status", redeployed, status)
    phase("lost state", redeployed, lambda: runner.discover(lost_state(redeployed)))
    phase("lost state, default settings", ctx, lambda: runner.discover(lost_state(ctx)))
    phase("fixed count", ctx, lambda: runner.provision(ctx))
    phase("scaling again", scaled, lambda: runner.provision(scaled))
    phase("teardown", scaled, lambda: runner.teardown(scaled))
    return phases


def test_with_autoscaling_every_call_is_allowed_and_every_scaling_action_is_needed(
    ctx: StepContext, calls: CallLog, serving: Rollout
) -> None:
    phases = scaling_phases(ctx, calls)
    needed = check_allowed(phases)
    made = {call for phase in phases.values() for call in phase.calls}
    assert {
        ("application-autoscaling", "ListTagsForResource"),
        ("application-autoscaling", "DeregisterScalableTarget"),
    } <= made
    assert_groups_needed(replace(ctx.settings, max_tasks=4, scale_memory_percent=70), SCALING_GROUPS, needed)


def test_the_default_policy_has_no_scaling_change() -> None:
    sids = {statement["Sid"] for statement in policy.statements(Settings(), "aws", REGION, ACCOUNT)}
    assert "AasRead" in sids and not sids & {"AasRegister", "AasTagged", "CloudWatchTargetTracking"}


def test_the_domain_bounds_the_request_and_the_record_names() -> None:
    by_sid = {s["Sid"]: s for s in statements_of(Settings(stack="my-site", domain=DOMAIN))}
    request = by_sid["AcmRequest"]["Condition"]
    assert request["ForAllValues:StringEquals"] == {"acm:DomainNames": [DOMAIN]}
    assert request["StringEquals"]["acm:ValidationMethod"] == "DNS"
    names = by_sid["Route53Records"]["Condition"]["ForAllValues:StringLike"]
    assert names == {"route53:ChangeResourceRecordSetsNormalizedRecordNames": [DOMAIN, f"_*.{DOMAIN}"]}
    assert by_sid["AcmTagged"]["Condition"] == {"StringEquals": {"aws:ResourceTag/deployer:stack": "my-site"}}
