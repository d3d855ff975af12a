"""Issue 11: CloudWatch Container Insights as a cluster setting, on by default, converged, in the estimate.

moto answers DescribeClusters with the cluster's settings whatever `include` says; AWS leaves
them out unless `include` names SETTINGS (ECS API reference, DescribeClusters `include`).
`settings_only_when_asked` makes moto answer like AWS, so a step that forgot to ask would see
no setting and "change" it on every run.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from deployer import cost, runner
from deployer.steps.base import StepContext
from deployer.steps.ecs import CONTAINER_INSIGHTS
from tests.conftest import CallLog, planning
from tests.steps_helpers import provision_through


def settings_only_when_asked(ctx: StepContext) -> None:
    ecs = ctx.clients.ecs

    def keep(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["include"] = list(params.get("include", []))

    def strip(parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if "SETTINGS" not in context.get("include", []):
            for cluster in parsed.get("clusters", []):
                cluster.pop("settings", None)

    ecs.meta.events.register("before-parameter-build.ecs.DescribeClusters", keep)
    ecs.meta.events.register("after-call.ecs.DescribeClusters", strip)


def insights(ctx: StepContext) -> str | None:
    answer = ctx.clients.ecs.describe_clusters(clusters=[ctx.ids("cluster")["name"]], include=["SETTINGS"])
    settings = answer["clusters"][0].get("settings", [])
    return {s.get("name"): s.get("value") for s in settings}.get(CONTAINER_INSIGHTS)


def test_container_insights_is_on_and_put_back_after_a_hand_change(ctx: StepContext, calls: CallLog) -> None:
    settings_only_when_asked(ctx)
    step = provision_through(ctx, "cluster")
    assert insights(ctx) == "enabled"
    unasked = ctx.clients.ecs.describe_clusters(clusters=[ctx.ids("cluster")["name"]])["clusters"][0]
    assert "settings" not in unasked  # the hook answers like AWS
    calls.clear()
    assert runner.provision_step(ctx, step)[::2] == ("unchanged", [])  # a no-op run: nothing to change
    assert calls.changing() == []

    ctx.clients.ecs.update_cluster(
        cluster=ctx.ids("cluster")["name"], settings=[{"name": CONTAINER_INSIGHTS, "value": "disabled"}]
    )
    calls.clear()
    described = runner.provision_step(planning(ctx), step)[2]
    assert described == ["Container Insights disabled -> enabled"]  # dry run: described, not made
    assert calls.changing() == [] and insights(ctx) == "disabled"

    outcome, _, changes = runner.provision_step(ctx, step)
    assert (outcome, changes) == ("updated", described)
    assert calls.changing() == [("ecs", "UpdateCluster")]
    assert insights(ctx) == "enabled"
    calls.clear()
    assert runner.provision_step(ctx, step)[::2] == ("unchanged", [])
    assert calls.changing() == []


def test_the_setting_turns_it_off(ctx: StepContext, calls: CallLog) -> None:
    step = provision_through(ctx, "cluster")
    ctx = replace(ctx, settings=replace(ctx.settings, container_insights=False))
    outcome, _, changes = runner.provision_step(ctx, step)
    assert (outcome, changes) == ("updated", ["Container Insights enabled -> disabled"])
    assert insights(ctx) == "disabled"


def test_a_cluster_created_with_it_off(ctx: StepContext) -> None:
    ctx = replace(ctx, settings=replace(ctx.settings, container_insights=False))
    provision_through(ctx, "cluster")
    assert insights(ctx) == "disabled"


def test_its_cost_is_in_the_estimate_only_when_on(ctx: StepContext) -> None:
    on = {line.item: line for line in cost.estimate(ctx.settings)}
    off = {line.item for line in cost.estimate(replace(ctx.settings, container_insights=False))}
    line = on["Container Insights"]
    assert "Container Insights" not in off
    expected = cost.ASSUMED_CONTAINER_INSIGHTS_METRICS * cost.CUSTOM_METRIC_MONTH
    assert expected < line.monthly_usd < expected + 1  # the metrics, and a little log ingestion
    assert "metrics" in line.basis and "GB" in line.basis
