"""HTTPS on the user's domain through the real scripts, against a moto server (issue 12's lifecycle).

The account has a public hosted zone for example.com, as a user of `domain` has. moto issues a requested
certificate at once here (conftest sets its validation wait to 0) and runs no task, so provision runs with
--no-wait; what a wait proves is tested in-process (tests/test_https.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from deployer.clients import AwsClients
from deployer.settings import DEFAULT_TLS_POLICY, Settings
from tests.conftest import DOMAIN, IMAGE, REGION, ZONE, MotoServer, RunScript, hosted_zone
from tests.inventory import EXPECTED_WITH_DOMAIN, added, inventory
from tests.steps_helpers import wanted_steps
from tests.test_scripts import server_clients

STACK = "tls-site"
NEW_STEPS = ("certificate", "validation-record", "redirect-target-group", "https-listener", "dns-alias")


def state_of(folder: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((folder / "state.json").read_text())
    return document


def ids_of(state: dict[str, Any], step: str) -> dict[str, str]:
    return next(record["ids"] for record in state["resources"] if record["step"] == step)


def records(clients: AwsClients, zone: str) -> dict[tuple[str, str], dict[str, Any]]:
    answer = clients.route53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
    return {(r["Name"].rstrip("."), r["Type"]): dict(r) for r in answer if r["Type"] not in ("NS", "SOA")}


def listeners(clients: AwsClients, balancer: str) -> dict[int, dict[str, Any]]:
    answer = clients.elbv2.describe_listeners(LoadBalancerArn=balancer)["Listeners"]
    return {listener["Port"]: dict(listener) for listener in answer}


def assert_https_in_place(clients: AwsClients, zone: str, state: dict[str, Any]) -> None:
    """The certificate ISSUED for the domain, its validation record in the zone, the alias to the NLB, TLS on
    443 with the certificate and the policy, port 80 to the redirect target group."""
    certificate = clients.acm.describe_certificate(CertificateArn=ids_of(state, "certificate")["arn"])["Certificate"]
    assert (certificate["Status"], certificate["DomainName"]) == ("ISSUED", DOMAIN)
    (validation,) = certificate["DomainValidationOptions"]
    in_zone = records(clients, zone)
    record = validation["ResourceRecord"]
    assert in_zone[(record["Name"].rstrip("."), "CNAME")]["ResourceRecords"] == [{"Value": record["Value"]}]
    balancer = ids_of(state, "load-balancer")
    alias = in_zone[(DOMAIN, "A")]["AliasTarget"]
    assert alias["DNSName"].rstrip(".").lower() == balancer["dns_name"].lower()
    by_port = listeners(clients, balancer["arn"])
    assert (by_port[443]["Protocol"], by_port[443]["SslPolicy"]) == ("TLS", DEFAULT_TLS_POLICY)
    assert by_port[443]["Certificates"] == [{"CertificateArn": certificate["CertificateArn"]}]
    redirect = ids_of(state, "redirect-target-group")["arn"]
    assert (by_port[80]["Protocol"], by_port[80]["DefaultActions"][0]["TargetGroupArn"]) == ("TCP", redirect)


def test_a_domain_in_the_accounts_zone_from_plan_to_teardown(
    server: MotoServer, run_script: RunScript, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clients = server_clients(server, monkeypatch)
    zone = hosted_zone(clients)
    before = inventory(clients)
    provision = ("provision.py", "--stack", STACK, "--image", IMAGE, "--no-wait")

    plan = run_script(*provision, "--domain", DOMAIN, "--dry-run", server=server)
    assert plan.returncode == 0, plan.stderr
    for step in NEW_STEPS:
        assert f"{step:<22} create" in plan.stdout, plan.stdout
    assert "ACM certificate and Route 53 records" in plan.stdout and "NLB TLS listener" in plan.stdout
    assert inventory(clients) == before, "a plan changes nothing"

    first = run_script(*provision, "--domain", DOMAIN, server=server)
    assert first.returncode == 0, first.stderr
    state = state_of(tmp_path)
    domain_settings = Settings(stack=STACK, region=REGION, image=IMAGE, domain=DOMAIN)
    assert {r["step"] for r in state["resources"]} == {s.name for s in wanted_steps(domain_settings)}
    assert state["outputs"]["url"] == f"https://{DOMAIN}" and f"Site URL: https://{DOMAIN}" in first.stdout
    new = added(before, inventory(clients))
    assert {kind: len(ids) for kind, ids in new.items()} == EXPECTED_WITH_DOMAIN

    assert_https_in_place(clients, zone, state)

    again = run_script(*provision, "--domain", DOMAIN, server=server)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count(" unchanged ") == len(state["resources"])
    assert state_of(tmp_path)["resources"] == state["resources"]

    status = run_script("status.py", server=server)
    assert status.returncode == 0, status.stderr
    assert f"Certificate for {DOMAIN}: ISSUED, expires " in status.stdout

    other = f"shop.{ZONE}"
    moved = run_script(*provision, "--domain", other, server=server)
    assert moved.returncode == 0, moved.stderr
    for step in ("certificate", "validation-record", "dns-alias"):
        assert f"{step:<22} retired" in moved.stdout, moved.stdout
    moved_state = state_of(tmp_path)
    assert all("superseded" not in record["ids"] for record in moved_state["resources"])
    names = {name for name, _type in records(clients, zone)}
    assert DOMAIN not in names and other in names
    assert not any(name.endswith(f".{DOMAIN}") for name in names), "the old validation record is gone"
    certificates = added(before, inventory(clients))["certificates"]
    assert certificates == {ids_of(moved_state, "certificate")["arn"]}, "only the new domain's certificate is left"

    down = run_script("teardown.py", "--yes", server=server)
    assert down.returncode == 0, down.stderr
    assert inventory(clients) == before, f"left behind: {added(before, inventory(clients))}"


def test_a_certificate_of_the_users_with_dns_elsewhere(
    server: MotoServer, run_script: RunScript, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clients = server_clients(server, monkeypatch)
    arn = clients.acm.request_certificate(DomainName=f"*.{ZONE}", ValidationMethod="DNS")["CertificateArn"]
    clients.acm.describe_certificate(CertificateArn=arn)  # moto issues it when it is next described
    before = inventory(clients)

    first = run_script(
        "provision.py",
        "--stack",
        STACK,
        "--image",
        IMAGE,
        "--no-wait",
        "--domain",
        DOMAIN,
        "--certificate-arn",
        arn,
        server=server,
    )
    assert first.returncode == 0, first.stderr
    state = state_of(tmp_path)
    steps = {record["step"] for record in state["resources"]}
    assert {"redirect-target-group", "https-listener"} <= steps
    assert not steps & {"certificate", "validation-record", "dns-alias"}, "no hosted zone is touched"
    dns_name = ids_of(state, "load-balancer")["dns_name"]
    assert f"Create this DNS record where the domain's DNS is managed: {DOMAIN} CNAME {dns_name}" in first.stdout
    assert listeners(clients, ids_of(state, "load-balancer")["arn"])[443]["Certificates"] == [{"CertificateArn": arn}]

    down = run_script("teardown.py", "--yes", server=server)
    assert down.returncode == 0, down.stderr
    assert inventory(clients) == before
    assert clients.acm.describe_certificate(CertificateArn=arn)["Certificate"]["Status"] == "ISSUED", "not ours"


def test_a_domain_outside_every_zone_is_refused_before_any_change(
    server: MotoServer, run_script: RunScript, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clients = server_clients(server, monkeypatch)
    hosted_zone(clients, "example.org")
    before = inventory(clients)
    refused = run_script("provision.py", "--image", IMAGE, "--no-wait", "--domain", DOMAIN, server=server)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "example.org" in refused.stderr and "Traceback" not in refused.stderr
    assert inventory(clients) == before
