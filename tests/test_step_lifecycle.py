"""Every step, against moto: create, find by state / by name or tag, re-run, delete, delete again."""

from __future__ import annotations

from dataclasses import replace

import pytest

from deployer import runner
from deployer.runner import provision_step
from deployer.settings import Settings
from deployer.stack import steps_by_name
from deployer.steps.base import StepContext
from tests.conftest import DOMAIN, IMAGE, REGION, CallLog, hosted_zone
from tests.steps_helpers import STEP_NAMES, delete_all, provision_through

# Keys that identify the resource itself (the others are context, such as the VPC of a gateway).
IDENTITY_KEYS = ("id", "arn", "name", "uri")


@pytest.fixture
def settings() -> Settings:
    """Every step wanted: a private network, the stack's own log key (log_kms_key = "create"), flow logs on,
    a domain in the account's hosted zone, autoscaling on CPU and memory."""
    return Settings(
        stack="test-site",
        region=REGION,
        image=IMAGE,
        log_kms_key="create",
        network="private",
        domain=DOMAIN,
        max_tasks=4,
        scale_memory_percent=70,
    )


@pytest.fixture(autouse=True)
def zone(ctx: StepContext) -> str:
    """The domain's public hosted zone, which a user of `domain` has."""
    return hosted_zone(ctx.clients)


def identity(ids: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in ids.items() if key in IDENTITY_KEYS}


@pytest.mark.parametrize("name", STEP_NAMES)
def test_create_records_ids_and_find_by_state_returns_them(ctx: StepContext, name: str) -> None:
    step = provision_through(ctx, name)
    recorded = ctx.state.get(name)
    assert recorded and identity(recorded), f"{name} recorded no identifiers"
    found = step.find(ctx, recorded)
    assert found is not None
    assert found.ids == recorded


@pytest.mark.parametrize("name", [n for n in STEP_NAMES if n != "image"])
def test_find_without_state_uses_name_or_tags(ctx: StepContext, name: str) -> None:
    step = provision_through(ctx, name)
    recorded = ctx.state.get(name)
    assert recorded is not None
    found = step.find(ctx, None)
    assert found is not None, f"{name} cannot be found without its recorded identifiers"
    assert identity(found.ids) == identity(recorded)


@pytest.mark.parametrize("name", STEP_NAMES)
def test_rerun_is_unchanged_without_changing_calls(ctx: StepContext, calls: CallLog, name: str) -> None:
    step = provision_through(ctx, name)
    before = ctx.state.get(name)
    calls.clear()
    outcome, ids, changes = provision_step(ctx, step)
    assert (outcome, changes) == ("unchanged", [])
    assert ids == before
    assert calls.changing() == []


@pytest.mark.parametrize("name", [n for n in STEP_NAMES if n != "image"])
def test_lost_state_adopts_the_existing_resource(ctx: StepContext, calls: CallLog, name: str) -> None:
    step = provision_through(ctx, name)
    before = ctx.state.get(name)
    assert before is not None
    ctx.state.forget(name)
    calls.clear()
    outcome, ids, _ = provision_step(ctx, step)
    assert outcome in ("unchanged", "updated")
    assert identity(ids) == identity(before)
    assert not [call for call in calls.changing() if call[1].startswith(("Create", "Register"))]


# moto keeps a deleted VPC's default network ACL; AWS deletes it with the VPC (the step only forgets it,
# see tests/test_network_hardening.py).
@pytest.mark.parametrize("name", [n for n in STEP_NAMES if n not in ("image", "default-network-acl")])
def test_delete_removes_it_and_deleting_again_is_harmless(ctx: StepContext, name: str) -> None:
    step = provision_through(ctx, name)
    recorded = ctx.state.get(name)
    assert recorded is not None
    delete_all(ctx)
    assert step.find(ctx, recorded) is None
    step.delete(ctx, recorded)  # already gone: counts as deleted
    assert step.find(ctx, recorded) is None


@pytest.mark.parametrize(
    "name",
    [
        "log-key",
        "log-group",
        "flow-log-group",
        "flow-logs-role",
        "flow-log",
        "repository",
        "task-role",
        "listener",
        "cluster",
        "service",
    ],
)
def test_resource_deleted_by_hand_is_created_again(ctx: StepContext, name: str) -> None:
    provision_through(ctx, "service")
    step = steps_by_name()[name]
    old = ctx.state.get(name)
    assert old is not None
    step.delete(ctx, old)
    outcome, ids, _ = provision_step(ctx, step)
    assert outcome == "created"
    assert step.find(ctx, ids) is not None


def test_external_image_is_taken_as_given_and_only_forgotten_at_teardown(ctx: StepContext, calls: CallLog) -> None:
    """With --image (the `ctx` fixture's settings): no build, no push, no registry call; the image is found
    only through the state; another --image is an update; teardown deletes nothing and says "forgotten"."""
    step = steps_by_name()["image"]
    provision_through(ctx, "repository")
    calls.clear()
    assert provision_step(ctx, step) == ("created", {"uri": IMAGE}, [])
    assert calls.calls == []
    assert ctx.state.get("image") == {"uri": IMAGE}
    assert step.find(ctx, None) is None  # no name or tag to look an external image up by
    found = step.find(ctx, {"uri": IMAGE})
    assert found is not None and found.ids == {"uri": IMAGE}

    other = IMAGE.replace(":3.12-slim", ":3.13-slim")
    moved = replace(ctx, settings=replace(ctx.settings, image=other))
    assert provision_step(moved, step) == ("updated", {"uri": other}, [f"image -> {other}"])
    assert provision_step(moved, step) == ("unchanged", {"uri": other}, [])
    assert calls.calls == []

    pushed = {"uri": "r@sha256:00", "repository": "r", "tag": "t", "digest": "sha256:00"}
    assert step.delete(ctx, pushed) is None  # goes with the repository: reported "deleted"
    assert step.delete(ctx, {"uri": other}) == "forgotten"
    assert calls.calls == []
    report = runner.teardown(moved)
    assert [(line.step, line.outcome) for line in report.steps] == [("image", "forgotten"), ("repository", "deleted")]
    assert ctx.state.resources == []
