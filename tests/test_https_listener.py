"""HTTPS on the user's domain, ELB side (issue 12): the TLS listener on 443, port 80 forwarding to the redirect
target group, the ports they need in the security groups and the network ACL, and the task's second port.

moto is made to answer TLS-listener calls as AWS does (tests/elb_emulation.py). The new steps are run in the
stack's designed order (`STEPS`): the certificate is requested directly here, and `validation-record` is
left out (its wait is `certificates.wait_issued`, which the TLS listener calls itself before creating).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError

from deployer.errors import DeployerError
from deployer.runner import provision_step
from deployer.settings import DEFAULT_TLS_POLICY, REDIRECT_PORT
from deployer.stack import build_steps
from deployer.steps.base import Step, StepContext
from deployer.steps.firewall import wanted_entries
from deployer.steps.loadbalancer import HttpsListenerStep, RedirectTargetGroupStep, site_url
from tests.conftest import ACCOUNT, DOMAIN, CallLog, planning
from tests.elb_emulation import TlsListeners

if TYPE_CHECKING:
    from mypy_boto3_elbv2.type_defs import ListenerTypeDef

OTHER_POLICY = "ELBSecurityPolicy-TLS13-1-3-2021-06"


def design_steps() -> list[Step[Any]]:
    """The stack's steps but the certificate and the DNS ones: these tests record a certificate themselves
    and need no hosted zone (those steps: tests/test_certificates.py, tests/test_dns.py)."""
    return [step for step in build_steps() if step.name not in ("certificate", "validation-record", "dns-alias")]


STEPS = {step.name: step for step in design_steps()}
ORDER = list(STEPS)


@pytest.fixture
def tls(ctx: StepContext) -> TlsListeners:
    emulation = TlsListeners(ACCOUNT)
    emulation.install(ctx.clients.elbv2, ctx.clients.acm)
    return emulation


def with_domain(ctx: StepContext, **settings: Any) -> StepContext:
    return replace(ctx, settings=replace(ctx.settings, domain=DOMAIN, **settings))


def request_certificate(ctx: StepContext, domain: str = DOMAIN) -> str:
    """A certificate as the `certificate` step records it (ACM issues it at once in tests)."""
    arn = ctx.clients.acm.request_certificate(DomainName=domain, ValidationMethod="DNS")["CertificateArn"]
    ctx.remember("certificate", {"arn": arn, "domain": domain})
    return arn


def provision(ctx: StepContext) -> dict[str, str]:
    """What runner.provision does with the steps: each wanted one found, created or converged, then the
    unwanted ones the state records removed, newest first. Returns each step's outcome."""
    outcomes = {}
    for step in STEPS.values():
        if step.wanted(ctx.settings):
            outcomes[step.name] = provision_step(ctx, step)[0]
    for name in reversed(ORDER):
        ids = ctx.state.get(name)
        if ids is not None and not STEPS[name].wanted(ctx.settings):
            STEPS[name].delete(ctx, ids)
            ctx.ledger.forget(name)
            outcomes[name] = "removed"
    return outcomes


def provisioned(ctx: StepContext) -> tuple[StepContext, str]:
    """The stack provisioned with the domain: its context and its certificate."""
    https = with_domain(ctx)
    certificate = request_certificate(https)
    provision(https)
    return https, certificate


def teardown(ctx: StepContext) -> None:
    for name in reversed(ORDER):
        ids = ctx.state.get(name)
        if ids is not None:
            STEPS[name].delete(ctx, ids)
            ctx.ledger.forget(name)


def listener(ctx: StepContext, step: str) -> ListenerTypeDef:
    return ctx.clients.elbv2.describe_listeners(ListenerArns=[ctx.ids(step)["arn"]])["Listeners"][0]


def forwards_to(found: ListenerTypeDef) -> list[str | None]:
    return [action.get("TargetGroupArn") for action in found.get("DefaultActions", [])]


def ingress(ctx: StepContext, step: str) -> set[tuple[int, str]]:
    group = ctx.clients.ec2.describe_security_groups(GroupIds=[ctx.ids(step)["id"]])["SecurityGroups"][0]
    return {
        (rule.get("FromPort", -1), source)
        for rule in group.get("IpPermissions", [])
        for source in [
            *(r.get("CidrIp", "") for r in rule.get("IpRanges", [])),
            *(p.get("GroupId", "") for p in rule.get("UserIdGroupPairs", [])),
        ]
    }


def acl_entries(ctx: StepContext) -> set[tuple[bool, int, int, str]]:
    acl = ctx.clients.ec2.describe_network_acls(NetworkAclIds=[ctx.ids("network-acl")["id"]])["NetworkAcls"][0]
    return {
        (e.get("Egress", False), e.get("RuleNumber", 0), e.get("PortRange", {}).get("From", -1), e.get("CidrBlock", ""))
        for e in acl.get("Entries", [])
    }


def task_definition(ctx: StepContext) -> tuple[list[int], dict[str, str]]:
    arn = ctx.ids("task-definition")["arn"]
    container = ctx.clients.ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]["containerDefinitions"][
        0
    ]
    ports = [p.get("containerPort", 0) for p in container.get("portMappings", [])]
    return ports, {e.get("name", ""): e.get("value", "") for e in container.get("environment", [])}


def service_targets(ctx: StepContext) -> list[tuple[str, int]]:
    ids = ctx.ids("service")
    service = ctx.clients.ecs.describe_services(cluster=ids["cluster"], services=[ids["name"]])["services"][0]
    return [(b.get("targetGroupArn", ""), b.get("containerPort", 0)) for b in service.get("loadBalancers", [])]


def assert_https(ctx: StepContext, certificate: str) -> None:
    """Everything a domain adds, as AWS would hold it."""
    site, redirect = ctx.ids("target-group")["arn"], ctx.ids("redirect-target-group")["arn"]
    tls = listener(ctx, "https-listener")
    assert (tls.get("Protocol"), tls.get("Port"), tls.get("SslPolicy")) == ("TLS", 443, DEFAULT_TLS_POLICY)
    assert [c.get("CertificateArn") for c in tls.get("Certificates", [])] == [certificate]
    assert forwards_to(tls) == [site] and not tls.get("AlpnPolicy")
    assert forwards_to(listener(ctx, "listener")) == [redirect]
    group = ctx.clients.elbv2.describe_target_groups(TargetGroupArns=[redirect])["TargetGroups"][0]
    assert (group.get("TargetGroupName"), group.get("Port"), group.get("Protocol")) == ("test-site-rd", 8081, "TCP")
    assert (group.get("HealthCheckProtocol"), group.get("HealthCheckIntervalSeconds")) == ("TCP", 10)
    nlb = ctx.ids("nlb-security-group")["id"]
    assert ingress(ctx, "nlb-security-group") == {(80, "0.0.0.0/0"), (443, "0.0.0.0/0")}
    assert ingress(ctx, "task-security-group") == {(8080, nlb), (REDIRECT_PORT, nlb)}
    vpc = ctx.settings.vpc_cidr
    assert {(False, 105, 443, "0.0.0.0/0"), (False, 115, 8081, vpc), (True, 115, 8081, vpc)} <= acl_entries(ctx)
    assert task_definition(ctx) == ([8080, 8081], {"PORT": "8080", "SITE_DOMAIN": DOMAIN})
    assert service_targets(ctx) == [(site, 8080), (redirect, 8081)]
    assert site_url(ctx) == f"https://{DOMAIN}"


def assert_plain(ctx: StepContext) -> None:
    """Nothing of the domain is left: the stack as it is without one."""
    site = ctx.ids("target-group")["arn"]
    assert forwards_to(listener(ctx, "listener")) == [site]
    nlb = ctx.ids("nlb-security-group")["id"]
    assert ingress(ctx, "nlb-security-group") == {(80, "0.0.0.0/0")}
    assert ingress(ctx, "task-security-group") == {(8080, nlb)}
    ours = {(egress, number) for egress, number, _, _ in acl_entries(ctx) if number != 32767}
    assert ours == {(e.egress, e.number) for e in wanted_entries(ctx.settings)}
    assert not {number for _, number, _, _ in acl_entries(ctx)} & {105, 115}
    assert task_definition(ctx) == ([8080], {"PORT": "8080"})
    assert service_targets(ctx) == [(site, 8080)]
    assert site_url(ctx).startswith("http://")


def test_a_domain_adds_the_tls_listener_the_redirect_and_their_ports(
    ctx: StepContext, tls: TlsListeners, calls: CallLog
) -> None:
    https = with_domain(ctx)
    certificate = request_certificate(https)
    outcomes = provision(https)
    assert outcomes["https-listener"] == outcomes["redirect-target-group"] == "created"
    assert_https(https, certificate)
    calls.clear()
    assert set(provision(https).values()) == {"unchanged"}
    assert calls.changing() == []


def test_the_tls_listener_is_created_only_once_the_certificate_is_issued(ctx: StepContext, tls: TlsListeners) -> None:
    """AWS refuses a certificate that is not ISSUED yet (UnsupportedCertificate); the step waits for it first."""
    https = with_domain(ctx)
    certificate = request_certificate(https)
    tls.issuance.pending_describes = 3
    for name in ORDER[: ORDER.index("https-listener")]:
        provision_step(https, STEPS[name])
    with pytest.raises(ClientError) as refused:
        https.clients.elbv2.create_listener(
            LoadBalancerArn=https.ids("load-balancer")["arn"],
            Protocol="TLS",
            Port=443,
            Certificates=[{"CertificateArn": certificate}],
            SslPolicy=DEFAULT_TLS_POLICY,
            DefaultActions=[{"Type": "forward", "TargetGroupArn": https.ids("target-group")["arn"]}],
        )
    assert refused.value.response["Error"]["Code"] == "UnsupportedCertificate"
    assert provision_step(https, STEPS["https-listener"])[0] == "created"
    assert not tls.issuance.pending
    lines = https.output.lines  # type: ignore[attr-defined]  # RecordingOutput
    assert any("waiting for ACM to issue" in line for line in lines)


def test_certificate_and_policy_change_in_place_without_protocol(
    ctx: StepContext, tls: TlsListeners, calls: CallLog
) -> None:
    """ModifyListener carries only what differs and never Protocol (moto refuses Protocol="TLS" on it)."""
    https, _ = provisioned(ctx)
    step, arn = STEPS["https-listener"], https.ids("https-listener")["arn"]

    policy = with_domain(ctx, tls_policy=OTHER_POLICY)
    calls.clear()
    planned = step.converge(planning(policy), step.find(policy, policy.ids(step.name)))  # type: ignore[arg-type]
    assert planned.changes == [f"security policy {OTHER_POLICY}"] and calls.changing() == []
    assert provision_step(policy, step)[0] == "updated"
    assert tls.modified[-1] == {"ListenerArn": arn, "SslPolicy": OTHER_POLICY}

    renewed = request_certificate(policy, DOMAIN)
    assert provision_step(policy, step)[2] == [f"certificate {renewed}"]
    assert tls.modified[-1] == {"ListenerArn": arn, "Certificates": [{"CertificateArn": renewed}]}
    found = listener(policy, "https-listener")
    assert (found.get("SslPolicy"), found.get("Protocol"), found.get("Port")) == (OTHER_POLICY, "TLS", 443)
    assert [c.get("CertificateArn") for c in found.get("Certificates", [])] == [renewed]

    calls.clear()
    assert provision_step(policy, step)[0] == "unchanged"
    assert calls.changing() == []


def test_a_listener_on_443_turned_to_tcp_by_hand_is_made_tls_again(ctx: StepContext, tls: TlsListeners) -> None:
    """AWS drops the certificate and policy of a listener changed to TCP; turning it back sends all three."""
    https, certificate = provisioned(ctx)
    arn = https.ids("https-listener")["arn"]
    https.clients.elbv2.modify_listener(ListenerArn=arn, Protocol="TCP")
    assert provision_step(https, STEPS["https-listener"])[0] == "updated"
    assert tls.modified[-1] == {
        "ListenerArn": arn,
        "Protocol": "TLS",
        "Port": 443,
        "Certificates": [{"CertificateArn": certificate}],
        "SslPolicy": DEFAULT_TLS_POLICY,
    }
    assert_https(https, certificate)


def test_removing_the_domain_moves_port_80_and_the_service_back_and_adding_it_again_returns(
    ctx: StepContext, tls: TlsListeners, calls: CallLog
) -> None:
    https, certificate = provisioned(ctx)
    redirect = https.ids("redirect-target-group")["arn"]
    https_listener = https.ids("https-listener")["arn"]

    outcomes = provision(ctx)
    assert outcomes["https-listener"] == outcomes["redirect-target-group"] == "removed"
    assert {outcomes[name] for name in ("listener", "task-definition", "service")} == {"updated"}
    assert_plain(ctx)
    assert ctx.clients.elbv2.describe_target_groups(Names=["test-site-tg"])["TargetGroups"]
    with pytest.raises(ClientError, match="TargetGroupNotFound"):
        ctx.clients.elbv2.describe_target_groups(TargetGroupArns=[redirect])
    with pytest.raises(ClientError, match="ListenerNotFound"):
        ctx.clients.elbv2.describe_listeners(ListenerArns=[https_listener])
    calls.clear()
    assert set(provision(ctx).values()) == {"unchanged"}
    assert calls.changing() == []

    provision(https)
    assert_https(https, certificate)


def test_teardown_deletes_the_listeners_before_the_redirect_target_group_the_service_dropped(
    ctx: StepContext, tls: TlsListeners, calls: CallLog
) -> None:
    """Teardown deletes newest first in the stack's order: the service (which held the redirect target group),
    the TLS listener, port 80's listener, the load balancer, then both target groups."""
    balancer = provisioned(ctx)[0].ids("load-balancer")["arn"]
    calls.clear()
    teardown(ctx)
    deletes = [operation for _, operation in calls.changing() if operation.startswith("Delete")]
    assert deletes.index("DeleteService") < deletes.index("DeleteListener") < deletes.index("DeleteTargetGroup")
    assert deletes.count("DeleteListener") == deletes.count("DeleteTargetGroup") == 2
    with pytest.raises(ClientError, match="LoadBalancerNotFound"):
        ctx.clients.elbv2.describe_listeners(LoadBalancerArn=balancer)
    assert not ctx.clients.elbv2.describe_target_groups()["TargetGroups"]


def test_a_given_certificate_is_checked_before_any_change(ctx: StepContext, calls: CallLog) -> None:
    """--certificate-arn: the step's check reads the user's certificate (certificates.check_external)."""
    step = HttpsListenerStep()
    missing = f"arn:aws:acm:us-east-1:{ACCOUNT}:certificate/00000000-0000-0000-0000-000000000000"
    with pytest.raises(DeployerError, match="does not exist"):
        step.check(with_domain(ctx, certificate_arn=missing))
    assert calls.changing() == []
    assert not RedirectTargetGroupStep().wanted(ctx.settings) and not step.wanted(ctx.settings)
