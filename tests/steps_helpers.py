"""Drive the real steps one at a time, as the runner does."""

from __future__ import annotations

from typing import Any

from deployer.runner import provision_step, teardown_order
from deployer.settings import Settings
from deployer.stack import build_steps
from deployer.steps.base import Step, StepContext

STEP_NAMES = [step.name for step in build_steps()]
# The VPC's default security group and network ACL: AWS makes them with the VPC, so a first
# provision finds and empties them ("updated", not "created").
VPC_DEFAULTS = ("default-security-group", "default-network-acl")


def wanted_steps(settings: Settings | None = None) -> list[Step[Any]]:
    """The steps a provision with these settings (default: the defaults, a public stack) runs, in order."""
    return [step for step in build_steps() if step.wanted(settings or Settings())]


def first_outcomes(settings: Settings | None = None) -> list[str]:
    """The outcomes of a first provision into an empty account."""
    return ["updated" if step.name in VPC_DEFAULTS else "created" for step in wanted_steps(settings)]


def provision_through(ctx: StepContext, name: str) -> Step[Any]:
    """Provision every wanted step up to and including `name`; returns that step."""
    for step in build_steps():
        if not step.wanted(ctx.settings) and step.name != name:
            continue  # as the runner does: a step the settings turn off is skipped
        provision_step(ctx, step)
        if step.name == name:
            return step
    raise KeyError(name)


def delete_all(ctx: StepContext) -> None:
    """Delete what the state records, in the order teardown does (the stack's, reversed)."""
    known = {step.name: step for step in build_steps()}
    for record in teardown_order(ctx.state):
        known[record.step].delete(ctx, record.ids)
        ctx.state.forget(record.step)
