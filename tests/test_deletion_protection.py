"""Issue 11: the NLB's deletion protection is on, put back when turned off, and turned off by teardown first.

moto deletes a protected load balancer without a word. AWS refuses: DeleteLoadBalancer answers
OperationNotPermitted, "Load balancer '<arn>' cannot be deleted because deletion protection is
enabled" (botocore's elbv2 model lists the error for the operation; the message as quoted in
aws-cloudformation/rain#187 and rebuy-de/aws-nuke#1240). `refuse_protected_deletes` makes moto
answer the same (tests/faults.py), so these tests prove the order of teardown's calls.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from deployer import runner
from deployer.clients import AwsClients
from deployer.steps.base import StepContext
from deployer.steps.loadbalancer import DELETION_PROTECTION
from tests.conftest import CallLog, RecordingOutput, make_context, planning, recorded_clients
from tests.faults import Refusal, answer_errors
from tests.inventory import inventory
from tests.rollouts import Rollout
from tests.steps_helpers import provision_through


def protection(clients: AwsClients, arn: str) -> str | None:
    answer = clients.elbv2.describe_load_balancer_attributes(LoadBalancerArn=arn)["Attributes"]
    return {a.get("Key"): a.get("Value") for a in answer}.get(DELETION_PROTECTION)


def refuse_protected_deletes(clients: AwsClients) -> list[str]:
    """DeleteLoadBalancer through `clients` is refused as AWS refuses it while protection is on;
    returns the list of refusals served."""
    look = recorded_clients(CallLog())  # reads the emulator's state beside the tool's clients
    refused: list[str] = []

    def rule(params: dict[str, object]) -> Refusal | None:
        arn = str(params["LoadBalancerArn"])
        if protection(look, arn) != "true":
            return None
        refused.append(arn)
        return (
            "OperationNotPermitted",
            f"Load balancer '{arn}' cannot be deleted because deletion protection is enabled",
        )

    answer_errors(clients.elbv2, "DeleteLoadBalancer", rule)
    return refused


def test_deletion_protection_is_on_and_put_back(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "load-balancer")
    arn = ctx.ids("load-balancer")["arn"]
    assert protection(ctx.clients, arn) == "true"

    ctx.clients.elbv2.modify_load_balancer_attributes(
        LoadBalancerArn=arn, Attributes=[{"Key": DELETION_PROTECTION, "Value": "false"}]
    )
    calls.clear()
    assert runner.provision_step(planning(ctx), step)[2] == ["deletion protection on"]  # dry run: described
    assert calls.changing() == [] and protection(ctx.clients, arn) == "false"

    outcome, _, changes = runner.provision_step(ctx, step)
    assert (outcome, changes) == ("updated", ["deletion protection on"])
    assert protection(ctx.clients, arn) == "true"
    calls.clear()
    assert runner.provision_step(ctx, step)[::2] == ("unchanged", [])
    assert calls.changing() == []


@pytest.mark.contract_exempt("it deletes a protected load balancer on purpose, to see the hook refuse it")
def test_the_refusal_hook_refuses_like_aws(ctx: StepContext) -> None:
    provision_through(ctx, "load-balancer")
    arn = ctx.ids("load-balancer")["arn"]
    refused = refuse_protected_deletes(ctx.clients)
    with pytest.raises(ClientError) as raised:
        ctx.clients.elbv2.delete_load_balancer(LoadBalancerArn=arn)
    assert raised.value.response["Error"]["Code"] == "OperationNotPermitted"
    assert refused == [arn]


def test_teardown_turns_protection_off_first_and_says_so(
    ctx: StepContext, calls: CallLog, output: RecordingOutput, serving: Rollout
) -> None:
    before = inventory(ctx.clients)
    runner.provision(ctx)
    refused = refuse_protected_deletes(ctx.clients)
    calls.clear()

    runner.teardown(ctx)

    assert refused == []  # never asked while protected
    elb_changes = [op for service, op in calls.changing() if service == "elbv2"]
    at = elb_changes.index("DeleteLoadBalancer")
    assert elb_changes[at - 1] == "ModifyLoadBalancerAttributes"
    assert any("deletion protection turned off" in line for line in output.lines), output.lines
    assert inventory(ctx.clients) == before


def test_a_teardown_interrupted_after_turning_protection_off_converges(
    ctx: StepContext, state_path: Path, serving: Rollout
) -> None:
    before = inventory(ctx.clients)
    runner.provision(ctx)
    arn = ctx.ids("load-balancer")["arn"]
    refuse_protected_deletes(ctx.clients)
    service = ctx.clients.elbv2.meta.service_model.service_id.hyphenize()

    def interrupt(**_: object) -> None:
        raise KeyboardInterrupt  # Ctrl-C right after AWS turned protection off

    ctx.clients.elbv2.meta.events.register(f"after-call.{service}.ModifyLoadBalancerAttributes", interrupt)
    with pytest.raises(KeyboardInterrupt):
        runner.teardown(ctx)
    ctx.clients.elbv2.meta.events.unregister(f"after-call.{service}.ModifyLoadBalancerAttributes", interrupt)
    assert protection(ctx.clients, arn) == "false"

    # A new run from the state file on disk: provision puts protection back, then teardown deletes everything.
    again = make_context(ctx.clients, ctx.settings, state_path)
    assert again.ids("load-balancer")["arn"] == arn
    report = runner.provision(again, wait=False)
    assert ("load-balancer", "updated") in [(line.step, line.outcome) for line in report.steps]
    assert protection(again.clients, arn) == "true"
    runner.teardown(again)
    assert inventory(again.clients) == before
