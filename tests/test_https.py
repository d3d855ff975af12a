"""HTTPS on the user's domain through the runner, in-process (the scripts' lifecycle: tests/test_https_scripts.py).

The account holds a public hosted zone for example.com; Route 53 answers as AWS does where moto does not
(tests/route53_emulation.py). What the step modules do on their own is tested beside them
(test_certificates.py, test_dns.py, test_https_listener.py); here, the stack as a whole.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import pytest

from deployer import cost, runner
from deployer.errors import DeployerError
from deployer.parallel import Scheduler
from deployer.stack import build_steps
from deployer.steps.base import StepContext
from tests.conftest import DOMAIN, CallLog, FakeSite, hosted_zone
from tests.faults import inject_errors
from tests.inventory import EXPECTED_COUNTS, EXPECTED_WITH_DOMAIN, added, inventory
from tests.rollouts import Rollout
from tests.route53_emulation import emulate_route53

if TYPE_CHECKING:
    from mypy_boto3_route53.type_defs import ResourceRecordSetTypeDef

HTTPS_STEPS = ("certificate", "validation-record", "redirect-target-group", "https-listener", "dns-alias")


@pytest.fixture
def https(ctx: StepContext) -> StepContext:
    """The test stack with `domain`, in an account with the domain's public hosted zone."""
    hosted_zone(ctx.clients)
    emulate_route53(ctx.clients.route53)
    return replace(ctx, settings=replace(ctx.settings, domain=DOMAIN))


def counts(new: dict[str, set[str]]) -> dict[str, int]:
    """Resources by kind; task-definition revisions left out (each settings change registers one, and the
    earlier ones stay as rollback targets)."""
    return {kind: len(ids) for kind, ids in new.items() if kind != "task_definitions"}


def without_revisions(expected: dict[str, int]) -> dict[str, int]:
    return {kind: count for kind, count in expected.items() if kind != "task_definitions"}


def test_a_rerun_makes_no_changing_call(https: StepContext, calls: CallLog) -> None:
    runner.provision(https, wait=False)
    calls.clear()
    report = runner.provision(https, wait=False)
    assert calls.changing() == []
    assert {line.outcome for line in report.steps} == {"unchanged"}


def test_the_site_is_served_when_the_domain_answers_through_the_nlb(
    https: StepContext, serving: Rollout, site: FakeSite
) -> None:
    """Done when https://<domain>/healthz answers 200, asked through the NLB's name (the handshake names the
    domain: deployer/probe.py), so the domain's DNS cannot hold the check up."""
    report = runner.provision(https)
    assert report.outputs["url"] == f"https://{DOMAIN}"
    assert site.asked[-1] == f"https://{DOMAIN}/healthz"
    assert site.via[-1] == https.ids("load-balancer")["dns_name"]


def test_a_domain_outside_every_zone_is_refused_before_any_change(ctx: StepContext, calls: CallLog) -> None:
    hosted_zone(ctx.clients, "example.org")
    calls.clear()
    elsewhere = replace(ctx, settings=replace(ctx.settings, domain=DOMAIN))
    with pytest.raises(DeployerError) as refused:
        runner.provision(elsewhere, wait=False)
    assert refused.value.exit_code == 2
    assert "example.org" in refused.value.message
    assert calls.changing() == []
    assert elsewhere.state.resources == []


def test_the_plan_refuses_it_too(ctx: StepContext) -> None:
    planned = replace(ctx, settings=replace(ctx.settings, domain=DOMAIN), dry_run=True)
    with pytest.raises(DeployerError):
        runner.plan(planned)


def test_adding_then_removing_the_domain(https: StepContext, calls: CallLog) -> None:
    """A stack made without a domain gets one, then loses it: what it added is removed, in an order AWS
    accepts (the listener before the certificate, the service before the redirect target group)."""
    plain = replace(https, settings=replace(https.settings, domain=None))
    before = inventory(plain.clients)
    runner.provision(plain, wait=False)
    runner.provision(https, wait=False)
    assert counts(added(before, inventory(https.clients))) == without_revisions(EXPECTED_WITH_DOMAIN)
    report = runner.provision(plain, wait=False)
    removed = [line.step for line in report.steps if line.outcome == "removed"]
    assert sorted(removed) == sorted(HTTPS_STEPS)
    assert counts(added(before, inventory(plain.clients))) == without_revisions(EXPECTED_COUNTS)
    calls.clear()
    runner.provision(plain, wait=False)
    assert calls.changing() == []


def test_teardown_of_a_stack_that_got_its_domain_later(https: StepContext) -> None:
    """The certificate and the redirect target group are created after the service and the listeners that
    use them; the state records them in the stack's order all the same, and teardown deletes their users first
    (the graph reversed, not creation order)."""
    plain = replace(https, settings=replace(https.settings, domain=None))
    before = inventory(plain.clients)
    runner.provision(plain, wait=False)
    runner.provision(https, wait=False)
    recorded = [record.step for record in https.state.resources]
    assert recorded == [step.name for step in build_steps() if step.name in recorded]
    assert recorded.index("certificate") < recorded.index("service")
    events: list[tuple[str, str]] = []
    runner.teardown(https, Scheduler(observe=lambda event, step: events.append((event, step))))
    assert events.index(("finish", "service")) < events.index(("start", "redirect-target-group"))
    assert events.index(("finish", "https-listener")) < events.index(("start", "certificate"))
    assert inventory(https.clients) == before


def test_the_estimate_prices_the_tls_listener_and_nothing_for_the_certificate(https: StepContext) -> None:
    lines = {line.item: line for line in cost.estimate(https.settings)}
    assert lines["NLB TLS listener"].monthly_usd > 0
    assert lines["ACM certificate and Route 53 records"].monthly_usd == 0
    plain = {line.item for line in cost.estimate(replace(https.settings, domain=None))}
    assert not plain & {"NLB TLS listener", "ACM certificate and Route 53 records"}


def test_the_load_balancer_not_yet_seeing_the_new_certificate_is_waited_out(https: StepContext) -> None:
    """ELB answers CertificateNotFound for a certificate ACM issued a moment ago (its view lags); moto never
    does. Retried, as Terraform retries it, then the TLS listener is made."""
    lag = inject_errors(
        https.clients.elbv2,
        "CreateListener",
        "CertificateNotFound",
        "Certificate 'arn:aws:acm:us-east-1:123456789012:certificate/x' not found",
        times=2,
        when=lambda params: params.get("Protocol") == "TLS",
    )
    runner.provision(https, wait=False)
    assert lag.served == 2
    assert https.recorded("https-listener") is not None


def test_a_users_record_at_the_domain_stops_the_run_before_any_change(https: StepContext, calls: CallLog) -> None:
    """Found by the alias step's look before the first write, not after the certificate and its validation
    record were made."""
    zone = https.clients.route53.list_hosted_zones_by_name(DNSName="example.com")["HostedZones"][0]["Id"]
    record: ResourceRecordSetTypeDef = {
        "Name": DOMAIN,
        "Type": "A",
        "TTL": 300,
        "ResourceRecords": [{"Value": "192.0.2.10"}],
    }
    https.clients.route53.change_resource_record_sets(
        HostedZoneId=zone, ChangeBatch={"Changes": [{"Action": "CREATE", "ResourceRecordSet": record}]}
    )
    calls.clear()
    with pytest.raises(DeployerError) as refused:
        runner.provision(https, wait=False)
    assert refused.value.exit_code == 2 and "not overwritten" in refused.value.message
    assert calls.changing() == []
    assert https.state.resources == []
