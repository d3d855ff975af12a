"""Autoscaling and the deployment alarms through the real scripts, against a moto server (issue 13's lifecycle).

moto runs no task, so provision runs with --no-wait (what the wait proves is tested in-process:
tests/test_rollout.py, tests/test_alarms.py). Application Auto Scaling is emulated where moto lacks it
(tests/aas_emulation.py, installed in the scripts by tests/contract_site/sitecustomize.py), and moto's
CreateService keeps the deployment configuration as AWS does (tests/ecs_emulation.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from deployer.clients import AwsClients
from deployer.settings import Names, Settings
from tests.conftest import IMAGE, REGION, MotoServer, RunScript
from tests.inventory import EXPECTED_COUNTS, EXPECTED_WITH_SCALING, added, inventory
from tests.steps_helpers import wanted_steps
from tests.test_scripts import server_clients

STACK = "scaled-site"
NAMES = Names(STACK, REGION)
SCALING_STEPS = ("scalable-target", "cpu-scaling")
ALARM_STEPS = ("unhealthy-alarm", "shortfall-alarm")
RESOURCE_ID = f"service/{NAMES.cluster}/{NAMES.service}"
OTHER_IMAGE = IMAGE.rsplit(":", 1)[0] + ":v2"


def state_of(folder: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((folder / "state.json").read_text())
    return document


def service(clients: AwsClients) -> dict[str, Any]:
    described = clients.ecs.describe_services(cluster=NAMES.cluster, services=[NAMES.service])["services"]
    return dict(described[0])


def target(clients: AwsClients) -> tuple[int, int] | None:
    found = clients.autoscaling.describe_scalable_targets(ServiceNamespace="ecs", ResourceIds=[RESOURCE_ID])
    targets = found["ScalableTargets"]
    return (targets[0]["MinCapacity"], targets[0]["MaxCapacity"]) if targets else None


def cpu_target(clients: AwsClients) -> float:
    policies = clients.autoscaling.describe_scaling_policies(ServiceNamespace="ecs", ResourceId=RESOURCE_ID)
    (policy,) = [p for p in policies["ScalingPolicies"] if p["PolicyName"] == NAMES.cpu_policy]
    return float(policy["TargetTrackingScalingPolicyConfiguration"]["TargetValue"])


def test_autoscaling_from_plan_to_teardown(
    server: MotoServer, run_script: RunScript, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clients = server_clients(server, monkeypatch)
    before = inventory(clients)
    provision = ("provision.py", "--stack", STACK, "--image", IMAGE, "--no-wait")
    scaled = (*provision, "--max-tasks", "4")

    plan = run_script(*scaled, "--dry-run", server=server)
    assert plan.returncode == 0, plan.stderr
    for step in (*ALARM_STEPS, *SCALING_STEPS):
        assert f"{step:<22} create" in plan.stdout, plan.stdout
    assert "1..4 task(s)" in plan.stdout and "at 1..4 tasks" in plan.stdout, plan.stdout
    assert inventory(clients) == before, "a plan changes nothing"

    first = run_script(*scaled, server=server)
    assert first.returncode == 0, first.stderr
    state = state_of(tmp_path)
    settings = Settings(stack=STACK, region=REGION, image=IMAGE, max_tasks=4)
    assert {r["step"] for r in state["resources"]} == {s.name for s in wanted_steps(settings)}
    assert {kind: len(ids) for kind, ids in added(before, inventory(clients)).items()} == EXPECTED_WITH_SCALING
    assert target(clients) == (1, 4) and cpu_target(clients) == 60.0
    live = service(clients)
    assert live["deploymentConfiguration"]["alarms"] == {
        "alarmNames": [NAMES.unhealthy_alarm, NAMES.shortfall_alarm],
        "enable": True,
        "rollback": True,
    }
    assert live["availabilityZoneRebalancing"] == "ENABLED"

    again = run_script(*scaled, server=server)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count(" unchanged ") == len(state["resources"]), again.stdout
    assert state_of(tmp_path)["resources"] == state["resources"]

    # The scaler has moved the service to 3 tasks; a new image is deployed and the count is left alone.
    clients.ecs.update_service(cluster=NAMES.cluster, service=NAMES.service, desiredCount=3)
    redeploy = run_script(*provision, "--max-tasks", "4", "--image", OTHER_IMAGE, server=server)
    assert redeploy.returncode == 0, redeploy.stderr
    assert "desired count" not in redeploy.stdout
    assert service(clients)["desiredCount"] == 3

    status = run_script("status.py", server=server)
    assert status.returncode == 0, status.stderr
    assert "Autoscaling: 1..4 tasks, now 3 desired" in status.stdout, status.stdout
    assert NAMES.cpu_policy in status.stdout and NAMES.unhealthy_alarm in status.stdout

    wider = run_script(*scaled[:-1], "6", "--config", str(_toml(tmp_path, "scale_cpu_percent = 50\n")), server=server)
    assert wider.returncode == 0, wider.stderr
    assert target(clients) == (1, 6) and cpu_target(clients) == 50.0
    tracking = {name for name in inventory(clients)["alarms"] if name.startswith("TargetTracking-")}
    assert len(tracking) == 2, f"one pair of target tracking alarms, for the policy as it is now: {tracking}"

    fixed = run_script(*provision, "--config", str(_toml(tmp_path, "")), server=server)
    assert fixed.returncode == 0, fixed.stderr
    for step in SCALING_STEPS:
        assert f"{step:<22} removed" in fixed.stdout, fixed.stdout
    assert target(clients) is None and service(clients)["desiredCount"] == 1
    # Three revisions: the first image, the second, the first again (each kept for --rollback).
    left = {kind: len(ids) for kind, ids in added(before, inventory(clients)).items()}
    assert left == {**EXPECTED_COUNTS, "task_definitions": 3}

    down = run_script("teardown.py", "--yes", server=server)
    assert down.returncode == 0, down.stderr
    assert inventory(clients) == before, f"left behind: {added(before, inventory(clients))}"


def _toml(folder: Path, text: str) -> Path:
    """A deploy.toml beside the scratch folder (a later --config replaces the one run_script passes)."""
    path = folder.parent / f"{folder.name}-deploy.toml"
    path.write_text(text)
    return path
