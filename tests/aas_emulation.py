"""Make moto's Application Auto Scaling (5.2) answer as AWS does where it does not: botocore hooks on one client.

`install(client)` puts them on an application-autoscaling client, in-process (mock_aws) or against a moto
server; what AWS does on its own side (deleting a deregistered target's policies, an updated policy's old
alarms, moving the service's count into a new range) is done through separate, unhooked clients of the same
endpoint, so the tool's call log shows only the tool's calls. Self-contained: a script subprocess can install
it too (`tags_file` keeps the tags across processes, which moto does not store at all).

What moto does otherwise, and AWS's answer the hooks give instead (API reference,
https://docs.aws.amazon.com/autoscaling/application/APIReference/):

* ListTagsForResource / TagResource / UntagResource: not implemented; RegisterScalableTarget ignores `Tags`.
  Here: tags kept per target ARN, given at registration of a new target only ("Use this parameter to tag the
  scalable target when it is created. To tag an existing scalable target, use the TagResource operation",
  RegisterScalableTarget), ResourceNotFoundException for an ARN that is no target.
* DeregisterScalableTarget leaves the target's policies (and their alarms); AWS: "Deregistering a scalable target
  deletes the scaling policies and the scheduled actions that are associated with it".
* DeregisterScalableTarget / DeleteScalingPolicy of something missing: moto answers ValidationException; AWS
  answers ObjectNotFoundException ("For any operation that deletes or deregisters a resource, this exception is
  thrown if the resource cannot be found", ObjectNotFoundException).
* PutScalingPolicy without a registered target: moto makes the policy; AWS answers ObjectNotFoundException ("You
  cannot create a scaling policy until you have registered the resource as a scalable target").
* PutScalingPolicy on an existing policy: moto makes two new TargetTracking-* alarms and keeps the old two; AWS
  keeps one pair per target-tracking policy (the old ones are deleted here).
* RegisterScalableTarget: AWS moves the resource's current capacity into MinCapacity..MaxCapacity ("it changes
  the resource's current capacity to a value that is inside of this range"); moto leaves the ECS service alone.
* DescribeScalingPolicies ignores `PolicyNames` in moto: filtered here.
* DescribeScalingActivities: not implemented; answered with `activities` (a test sets them; default none).
"""

from __future__ import annotations

import json
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import botocore.session
from botocore.awsrequest import AWSResponse

from tests.faults import error_answer, keep_params, ok_answer

SERVICE = "application-auto-scaling"
# The emulation installed on each client, for a test that sets what it answers (e.g. `activities`).
INSTALLED: weakref.WeakKeyDictionary[Any, AutoScalingEmulation] = weakref.WeakKeyDictionary()
# The environment variable naming the tags file of a script the tests run (conftest.script_env): the emulation then
# goes on every Application Auto Scaling client the script makes (tests/contract_site/sitecustomize.py).
TAGS_FILE_VARIABLE = "AAS_EMULATION_TAGS_FILE"
_shadowing: list[bool] = []
# The tags of every target, shared by the clients of this process (a test's "new process" after a crash builds new
# clients against the same moto account); targets' ARNs end in random IDs, so no two tests share one.
_TAGS: dict[str, dict[str, str]] = {}  # non-empty while the emulation makes its own (unemulated) client
ANSWERED = ("ListTagsForResource", "TagResource", "UntagResource", "DescribeScalingActivities", "PutScalingPolicy")


@dataclass
class AutoScalingEmulation:
    """The emulated service: its tags (in `tags_file` if given) and the scaling activities it reports."""

    tags_file: Path | None = None
    activities: list[dict[str, Any]] = field(default_factory=list)
    _shadows: dict[str, Any] = field(default_factory=dict)
    _endpoint: str | None = None
    _region: str = "us-east-1"

    def install(self, client: Any) -> AutoScalingEmulation:
        endpoint = str(client.meta.endpoint_url)
        self._endpoint = None if "amazonaws.com" in endpoint else endpoint
        self._region = client.meta.region_name
        events = client.meta.events
        events.register(f"before-parameter-build.{SERVICE}", keep_params)
        # On the generic event, after the call recorders registered before it: the first answer ends the event.
        events.register("before-call", self._answer)
        events.register(f"after-call.{SERVICE}.RegisterScalableTarget", self._registered)
        events.register(f"after-call.{SERVICE}.PutScalingPolicy", self._policy_put)
        events.register(f"after-call.{SERVICE}.DeregisterScalableTarget", self._deregistered)
        events.register(f"after-call.{SERVICE}.DeleteScalingPolicy", self._not_found_code)
        events.register(f"after-call.{SERVICE}.DescribeScalingPolicies", self._named_policies)
        INSTALLED[client] = self
        return self

    # ------------------------------------------------------------------ answered here, before moto

    def _answer(self, model: Any, context: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        if model.service_model.service_name != "application-autoscaling" or model.name not in ANSWERED:
            return None
        params = context.get("api_params", {})
        if model.name == "DescribeScalingActivities":
            return ok_answer({"ScalingActivities": self._activities(params)})
        if model.name == "PutScalingPolicy":
            return self._put_policy(params, context)
        arn = params["ResourceARN"]
        if arn not in self._target_arns():
            return error_answer("ResourceNotFoundException", f"Scalable target with ARN {arn} not found")
        tags = self._load()
        if model.name == "TagResource":
            tags[arn] = {**tags.get(arn, {}), **params["Tags"]}
        elif model.name == "UntagResource":
            tags[arn] = {k: v for k, v in tags.get(arn, {}).items() if k not in params["TagKeys"]}
        else:
            return ok_answer({"Tags": dict(tags.get(arn, {}))})
        self._save(tags)
        return ok_answer({})

    def _activities(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Filtered by resource and dimension, at most MaxResults (API reference, DescribeScalingActivities)."""
        found = [
            activity
            for activity in self.activities
            if all(params.get(key) in (None, activity.get(key)) for key in ("ResourceId", "ScalableDimension"))
        ]
        return found[: params.get("MaxResults", 50)]

    def _put_policy(self, params: dict[str, Any], context: dict[str, Any]) -> tuple[AWSResponse, dict[str, Any]] | None:
        """No target: ObjectNotFoundException. Otherwise moto makes it; its earlier alarms are noted for deletion."""
        key = (params["ServiceNamespace"], params["ResourceId"], params["ScalableDimension"])
        if self._target(*key) is None:
            return error_answer("ObjectNotFoundException", _no_target(*key))
        policies = self._shadow("application-autoscaling").describe_scaling_policies(
            ServiceNamespace=key[0], ResourceId=key[1], ScalableDimension=key[2]
        )["ScalingPolicies"]
        context["old_alarms"] = [
            alarm["AlarmName"]
            for policy in policies
            if policy["PolicyName"] == params["PolicyName"]
            for alarm in policy.get("Alarms", [])
        ]
        return None

    # ------------------------------------------------------------------ moto's answer, made AWS's

    def _registered(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if "Error" in parsed:
            return
        params = context.get("api_params", {})
        arn = parsed["ScalableTargetARN"]
        tags = self._load()
        if arn not in tags:  # a new target (a re-registration keeps its tags and ignores Tags)
            tags[arn] = dict(params.get("Tags", {}))
            self._save(tags)
        target = self._target(params["ServiceNamespace"], params["ResourceId"], params["ScalableDimension"])
        if target is not None and params["ServiceNamespace"] == "ecs":
            self._into_range(params["ResourceId"], target["MinCapacity"], target["MaxCapacity"])

    def _into_range(self, resource_id: str, low: int, high: int) -> None:
        _, cluster, service = resource_id.split("/")
        ecs = self._shadow("ecs")
        for found in ecs.describe_services(cluster=cluster, services=[service])["services"]:
            count = found.get("desiredCount", 0)
            if not low <= count <= high:
                ecs.update_service(cluster=cluster, service=service, desiredCount=min(max(count, low), high))

    def _policy_put(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if "Error" in parsed:
            return
        current = {alarm["AlarmName"] for alarm in parsed.get("Alarms", [])}
        stale = [name for name in context.get("old_alarms", []) if name not in current]
        if stale:
            self._shadow("cloudwatch").delete_alarms(AlarmNames=stale)

    def _deregistered(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        """AWS deletes the target's policies (and so their alarms), and its tags go with it."""
        if self._not_found_code(parsed):
            return
        params = context.get("api_params", {})
        scaling = self._shadow("application-autoscaling")
        for policy in scaling.describe_scaling_policies(
            ServiceNamespace=params["ServiceNamespace"],
            ResourceId=params["ResourceId"],
            ScalableDimension=params["ScalableDimension"],
        )["ScalingPolicies"]:
            if policy["ResourceId"] == params["ResourceId"]:
                scaling.delete_scaling_policy(
                    PolicyName=policy["PolicyName"],
                    ServiceNamespace=params["ServiceNamespace"],
                    ResourceId=params["ResourceId"],
                    ScalableDimension=params["ScalableDimension"],
                )
        tags = self._load()
        live = self._target_arns()
        self._save({arn: value for arn, value in tags.items() if arn in live})

    def _not_found_code(self, parsed: dict[str, Any], **_: Any) -> bool:
        """moto's "No scalable target found" / "No scaling policy found" as AWS's ObjectNotFoundException;
        returns whether the call failed."""
        error = parsed.get("Error")
        if error is None:
            return False
        if error.get("Code") == "ValidationException" and str(error.get("Message", "")).startswith("No scal"):
            error["Code"] = "ObjectNotFoundException"
        return True

    def _named_policies(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        names = context.get("api_params", {}).get("PolicyNames")
        if names and "ScalingPolicies" in parsed:
            parsed["ScalingPolicies"] = [p for p in parsed["ScalingPolicies"] if p["PolicyName"] in names]

    # ------------------------------------------------------------------ the emulation's own look at moto

    def _shadow(self, service: str) -> Any:
        """An unhooked client of the same endpoint: what AWS does on its own side is no call of the tool's."""
        if service not in self._shadows:
            session: Any = boto3.Session(region_name=self._region)  # Any: one client of any service name
            _shadowing.append(True)
            try:
                self._shadows[service] = session.client(service, endpoint_url=self._endpoint)
            finally:
                _shadowing.pop()
        return self._shadows[service]

    def _targets(self) -> list[dict[str, Any]]:
        paginator = self._shadow("application-autoscaling").get_paginator("describe_scalable_targets")
        return [t for page in paginator.paginate(ServiceNamespace="ecs") for t in page["ScalableTargets"]]

    def _target(self, namespace: str, resource_id: str, dimension: str) -> dict[str, Any] | None:
        if namespace != "ecs":
            return None
        found = [t for t in self._targets() if (t["ResourceId"], t["ScalableDimension"]) == (resource_id, dimension)]
        return found[0] if found else None

    def _target_arns(self) -> set[str]:
        return {t["ScalableTargetARN"] for t in self._targets() if "ScalableTargetARN" in t}

    def _load(self) -> dict[str, dict[str, str]]:
        if self.tags_file is not None and self.tags_file.exists():
            loaded: dict[str, dict[str, str]] = json.loads(self.tags_file.read_text())
            return loaded
        return dict(_TAGS)

    def _save(self, tags: dict[str, dict[str, str]]) -> None:
        if self.tags_file is not None:
            self.tags_file.write_text(json.dumps(tags))
        else:
            _TAGS.clear()
            _TAGS.update(tags)


def install(client: Any, tags_file: Path | None = None) -> AutoScalingEmulation:
    """Emulate AWS's Application Auto Scaling on this client (see the module docstring)."""
    return AutoScalingEmulation(tags_file).install(client)


def emulate_every_client(tags_file: Path) -> None:
    """In a script's process: every Application Auto Scaling client it makes is emulated, the tags kept in
    `tags_file` so that a later script (teardown after provision) sees them."""
    original = botocore.session.Session.create_client

    def create_client(self: botocore.session.Session, *args: Any, **kwargs: Any) -> Any:
        client = original(self, *args, **kwargs)
        if client.meta.service_model.service_name == "application-autoscaling" and not _shadowing:
            install(client, tags_file)
        return client

    botocore.session.Session.create_client = create_client  # type: ignore[method-assign]


def of(client: Any) -> AutoScalingEmulation:
    """The emulation installed on this client."""
    return INSTALLED[client]


def _no_target(namespace: str, resource_id: str, dimension: str) -> str:
    return (
        f"No scalable target registered for service namespace: {namespace}, resource ID: {resource_id}, "
        f"scalable dimension: {dimension}"
    )
