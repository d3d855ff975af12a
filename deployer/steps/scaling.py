"""Service autoscaling: Application Auto Scaling owns the ECS service's desired count between min and max tasks.

With `max_tasks` above `min_tasks` (`Settings.autoscaling`) the service is registered as a scalable target
(namespace `ecs`, resource `service/<cluster>/<service>`, dimension `ecs:service:DesiredCount`) and gets
target-tracking policies on the service's average CPU and, with `scale_memory_percent`, memory. Application
Auto Scaling then makes and owns each policy's two `TargetTracking-…` CloudWatch alarms, and deletes them
with the policy; deregistering the target deletes its policies (API reference, DeregisterScalableTarget:
https://docs.aws.amazon.com/autoscaling/application/APIReference/API_DeregisterScalableTarget.html).

Only the scalable target can carry tags (TagResource: "you cannot tag a scaling policy or scheduled action"):
a policy is this stack's when it sits on this stack's (tagged) target. A target on this stack's service that
is not tagged as this stack's was registered by someone else; it is refused, never adopted: two owners of one
desired count would undo each other's changes (and teardown would deregister what someone else relies on).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from botocore.exceptions import ClientError

from deployer.clients import error_code, error_message
from deployer.errors import DeployerError, ForeignResourceError
from deployer.retry import NEW_SCALABLE_TARGET_NOT_VISIBLE, SCALABLE_TARGET_NOT_READY, SCALING_BUSY, Retry
from deployer.settings import Settings
from deployer.state import Ids
from deployer.steps import tags
from deployer.steps.aws import absent_if
from deployer.steps.base import STACK_TAG, Converged, Existing, Step, StepContext, single
from deployer.steps.iam import ensure_service_linked_role

if TYPE_CHECKING:
    from mypy_boto3_application_autoscaling.literals import MetricTypeType
    from mypy_boto3_application_autoscaling.type_defs import (
        ScalableTargetTypeDef,
        ScalingPolicyTypeDef,
        TargetTrackingScalingPolicyConfigurationTypeDef,
    )

NAMESPACE: Final = "ecs"
DIMENSION: Final = "ecs:service:DesiredCount"
TARGET_STEP: Final = "scalable-target"
# The cooldowns: after a scale-out another may follow a minute later, after a scale-in the next waits 5
# minutes, so a spike is met quickly and tasks are not stopped in a short lull only to be started again. (Target
# tracking's own alarms decide when: a few minutes above the target, longer well below it.)
SCALE_OUT_COOLDOWN: Final = 60
SCALE_IN_COOLDOWN: Final = 300
# The service's average CPU and memory over its tasks, as ECS reports them to CloudWatch (PredefinedMetricType,
# https://docs.aws.amazon.com/autoscaling/application/APIReference/API_PredefinedMetricSpecification.html).
METRICS: Final[dict[str, MetricTypeType]] = {
    "cpu": "ECSServiceAverageCPUUtilization",
    "memory": "ECSServiceAverageMemoryUtilization",
}
GONE: Final = "ObjectNotFoundException"
# How RegisterScalableTarget says the role is missing or not usable yet (deployer/retry.py SCALABLE_TARGET_NOT_READY).
ROLE_NOT_ASSUMABLE: Final = "unable to assume iam role"

# Application Auto Scaling's role for ECS, made on the account's first RegisterScalableTarget for an ECS service with
# the caller's iam:CreateServiceLinkedRole ("Service-linked roles for Application Auto Scaling",
# https://docs.aws.amazon.com/autoscaling/application/userguide/application-auto-scaling-service-linked-roles.html).
LINKED_ROLE: Final = "AWSServiceRoleForApplicationAutoScaling_ECSService"
LINKED_ROLE_SERVICE: Final = "ecs.application-autoscaling.amazonaws.com"


def resource_id(cluster: str, service: str) -> str:
    return f"service/{cluster}/{service}"


def _service_resource(ctx: StepContext) -> str | None:
    """The scalable target's resource ID: the recorded service's, or None while there is no service."""
    service = ctx.recorded("service")
    return None if service is None else resource_id(service["cluster"], service["name"])


class ScalableTargetStep(Step["ScalableTargetTypeDef"]):
    """The service registered with Application Auto Scaling, between min_tasks and max_tasks."""

    name = TARGET_STEP
    resource = "scalable target"
    needs = ("service",)  # it scales the service
    # Back to a fixed count: deregistered before the service is set to it, so the scaler cannot change it after.
    removed_first = True

    def wanted(self, settings: Settings) -> bool:
        return settings.autoscaling

    def check(self, ctx: StepContext) -> None:
        """A target someone else registered on our (existing) service is refused before the run changes anything."""
        if ctx.recorded(self.name) is None:
            self.find_unrecorded(ctx)

    def find_recorded(self, ctx: StepContext, ids: Ids) -> Existing[ScalableTargetTypeDef] | None:
        return self._describe(ctx, ids["resource_id"])

    def find_unrecorded(self, ctx: StepContext) -> Existing[ScalableTargetTypeDef] | None:
        resource = _service_resource(ctx)
        if resource is None:
            return None  # a scalable target of ours scales our service: without it there is none
        found = self._describe(ctx, resource)
        if found is None:
            return None
        found_tags = ctx.clients.autoscaling.list_tags_for_resource(ResourceARN=found.ids["arn"])["Tags"]
        if not tags.ours(found_tags, ctx.settings.stack):
            raise self._foreign(ctx, resource, found_tags)
        return found

    def _describe(self, ctx: StepContext, resource: str) -> Existing[ScalableTargetTypeDef] | None:
        pages = ctx.clients.autoscaling.get_paginator("describe_scalable_targets").paginate(
            ServiceNamespace=NAMESPACE, ResourceIds=[resource], ScalableDimension=DIMENSION
        )
        matches = [t for page in pages for t in page["ScalableTargets"] if t["ResourceId"] == resource]
        target = single(matches, "scalable target", lambda t: t.get("ScalableTargetARN", t["ResourceId"]))
        if target is None:
            return None
        return Existing({"resource_id": resource, "arn": target.get("ScalableTargetARN", "")}, target)

    def _foreign(self, ctx: StepContext, resource: str, found_tags: dict[str, str]) -> ForeignResourceError:
        """Someone registered our service with Application Auto Scaling by hand (or another tool did)."""
        stack = found_tags.get(STACK_TAG)
        whose = f"tagged {STACK_TAG}={stack}" if stack else f"without the {STACK_TAG} tag"
        return ForeignResourceError(
            self.name,
            self.resource,
            resource,
            what=f"The ECS service {resource.rsplit('/', 1)[-1]} is already registered with Application Auto Scaling "
            f"(scalable target {resource}, {whose}): this stack did not register it, so it is not adopted, changed "
            "or deregistered; two owners of one desired count would undo each other's changes",
            where=f"step '{self.name}', {self.resource} {resource}",
            todo="If nothing else needs it, deregister it (aws application-autoscaling deregister-scalable-target "
            f"--service-namespace ecs --scalable-dimension {DIMENSION} --resource-id {resource}) and run again; to "
            f"let this stack manage it, tag it {STACK_TAG}={ctx.settings.stack} (aws application-autoscaling "
            "tag-resource) and run again",
        )

    def create(self, ctx: StepContext) -> Ids:
        resource = resource_id(ctx.ids("service")["cluster"], ctx.ids("service")["name"])
        low, high = ctx.settings.task_range
        arn = register(
            ctx,
            lambda: ctx.clients.autoscaling.register_scalable_target(
                ServiceNamespace=NAMESPACE,
                ResourceId=resource,
                ScalableDimension=DIMENSION,
                MinCapacity=low,
                MaxCapacity=high,
                Tags=tags.stack_tags(ctx.settings, self.name),
            )["ScalableTargetARN"],
        )
        return {"resource_id": resource, "arn": arn}

    def converge(self, ctx: StepContext, existing: Existing[ScalableTargetTypeDef]) -> Converged:
        """min/max as the settings say. RegisterScalableTarget updates in place (only the parameters sent), and
        moves the service's current count into the new range at once: "If it's below the minimum capacity or
        above the maximum capacity, Application Auto Scaling adjusts the capacity of the scalable target to place
        it within these bounds" (API reference, RegisterScalableTarget:
        https://docs.aws.amazon.com/autoscaling/application/APIReference/API_RegisterScalableTarget.html)."""
        live = (existing.live["MinCapacity"], existing.live["MaxCapacity"])
        low, high = ctx.settings.task_range
        if live == (low, high):
            return Converged(existing.ids)
        changes: list[str] = []
        ctx.change(
            changes,
            f"tasks {live[0]}..{live[1]} -> {low}..{high} (a count outside the range moves into it at once)",
            lambda: register(
                ctx,
                lambda: ctx.clients.autoscaling.register_scalable_target(
                    ServiceNamespace=NAMESPACE,
                    ResourceId=existing.ids["resource_id"],
                    ScalableDimension=DIMENSION,
                    MinCapacity=low,
                    MaxCapacity=high,
                )["ScalableTargetARN"],
            ),
        )
        return Converged(existing.ids, changes)

    def delete(self, ctx: StepContext, ids: Ids) -> None:
        """Deregister; AWS deletes the target's policies, and with them their alarms."""
        absent_if(
            lambda: ctx.retry(
                lambda: ctx.clients.autoscaling.deregister_scalable_target(
                    ServiceNamespace=NAMESPACE, ResourceId=ids["resource_id"], ScalableDimension=DIMENSION
                ),
                SCALING_BUSY,
            ),
            GONE,
        )


def register(ctx: StepContext, call: Callable[[], str]) -> str:
    """RegisterScalableTarget, with the care the account's first registration for ECS needs.

    The first answer "Unable to assume IAM role" (SCALABLE_TARGET_NOT_READY) may mean the service-linked role is
    being made, or that it never will be because these credentials may not make it: `ensure_linked_role` tells the
    two apart before the budget is waited out. A caller without iam:CreateServiceLinkedRole may also be refused
    outright, with AccessDeniedException naming that action (AWS gives no code of its own for it: "If this role
    doesn't exist, you must have permissions to create it or a permission error occurs", "How Application Auto
    Scaling works with IAM"), which is explained the same way.
    """
    try:
        return ctx.retry(call, SCALING_BUSY)
    except ClientError as exc:
        if _linked_role_denied(exc):
            raise _linked_role_error(exc) from exc
        if not SCALABLE_TARGET_NOT_READY.matches(exc):
            raise
        if ROLE_NOT_ASSUMABLE in error_message(exc).lower():
            ensure_linked_role(ctx)
    try:
        return ctx.retry(call, SCALABLE_TARGET_NOT_READY, SCALING_BUSY)
    except ClientError as exc:
        if _linked_role_denied(exc):
            raise _linked_role_error(exc) from exc
        raise


def _linked_role_denied(exc: ClientError) -> bool:
    return error_code(exc) in ("AccessDenied", "AccessDeniedException") and "iam:CreateServiceLinkedRole" in (
        error_message(exc)
    )


def ensure_linked_role(ctx: StepContext) -> None:
    """Create AWSServiceRoleForApplicationAutoScaling_ECSService if it is missing (as for ECS's own role)."""
    ensure_service_linked_role(
        ctx, LINKED_ROLE, LINKED_ROLE_SERVICE, "first ECS service autoscaling in this account", _linked_role_error
    )


def _linked_role_error(exc: ClientError) -> DeployerError:
    return DeployerError(
        f"Application Auto Scaling cannot scale the service: its service-linked role {LINKED_ROLE} does not exist, "
        f"and these credentials may not create it: they lack iam:CreateServiceLinkedRole for {LINKED_ROLE_SERVICE} "
        f"(AWS: {error_message(exc)})",
        where=f"step '{TARGET_STEP}', the account's first autoscaling of an ECS service",
        todo=f"Grant iam:CreateServiceLinkedRole on arn:aws:iam::*:role/aws-service-role/{LINKED_ROLE_SERVICE}/"
        f"{LINKED_ROLE} (condition iam:AWSServiceName = {LINKED_ROLE_SERVICE}), or have an administrator run once: "
        f"aws iam create-service-linked-role --aws-service-name {LINKED_ROLE_SERVICE}; then run provision.py again "
        "(or set max_tasks equal to min_tasks to deploy without autoscaling)",
    )


class ScalingPolicyStep(Step["ScalingPolicyTypeDef"]):
    """`ScalingPolicyStep("cpu")` / `("memory")`: a target-tracking policy on the service's average CPU / memory."""

    resource = "scaling policy"
    removed_first = True  # before its target (teardown order), before the service's count is set
    needs = (TARGET_STEP,)

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.name = f"{kind}-scaling"

    def wanted(self, settings: Settings) -> bool:
        return settings.autoscaling and (self.kind == "cpu" or settings.scale_memory_percent is not None)

    def policy_name(self, settings: Settings) -> str:
        return settings.names.cpu_policy if self.kind == "cpu" else settings.names.memory_policy

    def target_value(self, settings: Settings) -> float:
        percent = settings.scale_cpu_percent if self.kind == "cpu" else settings.scale_memory_percent
        if percent is None:
            raise RuntimeError(f"step '{self.name}' runs only with a target (Step.wanted)")
        return float(percent)

    def find_recorded(self, ctx: StepContext, ids: Ids) -> Existing[ScalingPolicyTypeDef] | None:
        return self._describe(ctx, ids["resource_id"], ids["name"])

    def find_unrecorded(self, ctx: StepContext) -> Existing[ScalingPolicyTypeDef] | None:
        """Only on this stack's scalable target: a policy has no tags, the target it belongs to does."""
        target = ctx.recorded(TARGET_STEP)
        if target is None:
            return None
        return self._describe(ctx, target["resource_id"], self.policy_name(ctx.settings))

    def _describe(self, ctx: StepContext, resource: str, name: str) -> Existing[ScalingPolicyTypeDef] | None:
        pages = ctx.clients.autoscaling.get_paginator("describe_scaling_policies").paginate(
            ServiceNamespace=NAMESPACE, ResourceId=resource, ScalableDimension=DIMENSION, PolicyNames=[name]
        )
        matches = [
            p
            for page in pages
            for p in page["ScalingPolicies"]
            if p["PolicyName"] == name and p["ResourceId"] == resource
        ]
        policy = single(matches, "scaling policy", lambda p: p["PolicyARN"])
        if policy is None:
            return None
        return Existing({"name": name, "arn": policy["PolicyARN"], "resource_id": resource}, policy)

    def create(self, ctx: StepContext) -> Ids:
        return self._put(ctx, ctx.ids(TARGET_STEP)["resource_id"])

    def _put(self, ctx: StepContext, resource: str) -> Ids:
        """PutScalingPolicy creates or replaces the policy of that name (and its alarms) on the target."""
        name = self.policy_name(ctx.settings)
        rules: tuple[Retry, ...] = (SCALING_BUSY,)
        if ctx.fresh(NEW_SCALABLE_TARGET_NOT_VISIBLE.budget_seconds, TARGET_STEP):
            rules = (*rules, NEW_SCALABLE_TARGET_NOT_VISIBLE)
        answer = ctx.retry(
            lambda: ctx.clients.autoscaling.put_scaling_policy(
                PolicyName=name,
                ServiceNamespace=NAMESPACE,
                ResourceId=resource,
                ScalableDimension=DIMENSION,
                PolicyType="TargetTrackingScaling",
                TargetTrackingScalingPolicyConfiguration=self.configuration(ctx.settings),
            ),
            *rules,
        )
        return {"name": name, "arn": answer["PolicyARN"], "resource_id": resource}

    def configuration(self, settings: Settings) -> TargetTrackingScalingPolicyConfigurationTypeDef:
        return {
            "TargetValue": self.target_value(settings),
            "PredefinedMetricSpecification": {"PredefinedMetricType": METRICS[self.kind]},
            "ScaleOutCooldown": SCALE_OUT_COOLDOWN,
            "ScaleInCooldown": SCALE_IN_COOLDOWN,
            "DisableScaleIn": False,
        }

    def converge(self, ctx: StepContext, existing: Existing[ScalingPolicyTypeDef]) -> Converged:
        differences = _differences(existing.live, self.configuration(ctx.settings))
        if not differences:
            return Converged(existing.ids)
        change = f"target tracking {', '.join(differences)} changed"
        if ctx.dry_run:
            return Converged(existing.ids, [change])
        return Converged(self._put(ctx, existing.ids["resource_id"]), [change])

    def delete(self, ctx: StepContext, ids: Ids) -> None:
        """DeleteScalingPolicy; AWS deletes the policy's TargetTracking alarms with it. Already gone (also when the
        target was deregistered, which deletes its policies) counts as deleted."""
        absent_if(
            lambda: ctx.retry(
                lambda: ctx.clients.autoscaling.delete_scaling_policy(
                    PolicyName=ids["name"],
                    ServiceNamespace=NAMESPACE,
                    ResourceId=ids["resource_id"],
                    ScalableDimension=DIMENSION,
                ),
                SCALING_BUSY,
            ),
            GONE,
        )


def _differences(live: ScalingPolicyTypeDef, wanted: TargetTrackingScalingPolicyConfigurationTypeDef) -> list[str]:
    """Names of the wanted settings the live policy does not have (a step or predictive policy differs in type)."""
    if live.get("PolicyType") != "TargetTrackingScaling":
        return ["PolicyType"]
    config = live.get("TargetTrackingScalingPolicyConfiguration") or {"TargetValue": -1.0}
    metric = config.get("PredefinedMetricSpecification", {}).get("PredefinedMetricType")
    found = {
        "TargetValue": float(config["TargetValue"]),
        "metric": None if "CustomizedMetricSpecification" in config else metric,
        "ScaleOutCooldown": config.get("ScaleOutCooldown"),
        "ScaleInCooldown": config.get("ScaleInCooldown"),
        "DisableScaleIn": bool(config.get("DisableScaleIn", False)),
    }
    expected = {
        "TargetValue": wanted["TargetValue"],
        "metric": wanted.get("PredefinedMetricSpecification", {}).get("PredefinedMetricType"),
        "ScaleOutCooldown": wanted.get("ScaleOutCooldown"),
        "ScaleInCooldown": wanted.get("ScaleInCooldown"),
        "DisableScaleIn": wanted.get("DisableScaleIn", False),
    }
    return [key for key in expected if found[key] != expected[key]]
