"""What moto cannot show: ECS rolling a deployment out and the NLB finding the tasks healthy.

moto never runs a task: a deployment stays IN_PROGRESS and no target is registered.
These hooks rewrite moto's answers the way AWS answers once a rollout has gone well
(or badly), so the tool's wait can be tested end to end. Used by tests and benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import boto3


@dataclass
class Rollout:
    """How the emulated rollout goes: it completes after `polls_until_done` looks, or fails."""

    polls_until_done: int = 0
    failed_tasks: int = 0
    roll_back_to: str | None = None  # a task-definition ARN the circuit breaker returns to
    events: list[str] = field(default_factory=list)
    stopped_reason: str | None = None  # one stopped task, with this reason and an essential container's exit
    # (alarm name, reason): with `roll_back_to`, a deployment alarm failed the rollout, not the circuit breaker
    alarm: tuple[str, str] | None = None
    polls: int = 0
    endpoint: str | None = None  # the emulator the clients talk to (set by install)
    desired: int = 1  # the service's desired count last answered: as many targets turn healthy

    def install(self, ecs: Any, elbv2: Any) -> None:
        url = ecs.meta.endpoint_url  # a moto server's, or ECS's own under in-process moto (no use to CloudWatch)
        self.endpoint = None if url.endswith(".amazonaws.com") else url
        ecs.meta.events.register("after-call.ecs.DescribeServices", self._services)
        ecs.meta.events.register("after-call.ecs.ListTasks", self._list_tasks)
        ecs.meta.events.register("after-call.ecs.DescribeTasks", self._describe_tasks)
        elbv2.meta.events.register("after-call.elastic-load-balancing-v2.DescribeTargetHealth", self._targets)

    def _services(self, parsed: dict[str, Any], **_: Any) -> None:
        self.polls += 1
        for service in parsed.get("services", []):
            desired = service.get("desiredCount", 0)
            self.desired = desired
            deployments = service.get("deployments", [])
            for deployment in deployments:
                deployment["taskDefinition"] = service.get("taskDefinition")
                deployment["desiredCount"] = desired
            primary = deployments[0] if deployments else None
            if primary is None:
                continue
            service["events"] = [
                {"id": f"event-{n}", "message": message} for n, message in reversed(list(enumerate(self.events)))
            ]
            if self.roll_back_to:
                failed = {**primary, "status": "ACTIVE", "rolloutState": "FAILED", "failedTasks": self.failed_tasks}
                if self.alarm is not None:
                    self._fire(service)
                    # Not ECS's exact text (the watcher reads the alarm from CloudWatch, never this).
                    failed["rolloutStateReason"] = f"ECS deployment {primary.get('id')} failed: alarm detected."
                primary.update(taskDefinition=self.roll_back_to, rolloutState="COMPLETED", runningCount=desired)
                service["taskDefinition"] = self.roll_back_to
                deployments.append(failed)
            elif self.failed_tasks:
                primary.update(failedTasks=self.failed_tasks, rolloutState="IN_PROGRESS", runningCount=0)
            elif self.polls > self.polls_until_done:
                primary.update(rolloutState="COMPLETED", runningCount=desired, failedTasks=0)
                service["runningCount"] = desired

    def _fire(self, service: dict[str, Any]) -> None:
        """The alarm goes into ALARM, set through a client of its own so no test counts the call."""
        assert self.alarm is not None
        name, reason = self.alarm
        region = service["serviceArn"].split(":")[3]
        cloudwatch = boto3.client("cloudwatch", region_name=region, endpoint_url=self.endpoint)
        cloudwatch.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason=reason)

    def _list_tasks(self, parsed: dict[str, Any], **_: Any) -> None:
        if self.stopped_reason:
            parsed["taskArns"] = ["arn:aws:ecs:us-east-1:123456789012:task/test/stopped1"]

    def _describe_tasks(self, parsed: dict[str, Any], **_: Any) -> None:
        if self.stopped_reason:
            parsed["tasks"] = [
                {
                    "taskArn": "arn:aws:ecs:us-east-1:123456789012:task/test/stopped1",
                    "taskDefinitionArn": "arn:aws:ecs:us-east-1:123456789012:task-definition/test-site-web:2",
                    "stoppedReason": self.stopped_reason,
                    "containers": [{"name": "web", "exitCode": 3, "reason": None}],
                }
            ]
            parsed["failures"] = []

    def _targets(self, parsed: dict[str, Any], **_: Any) -> None:
        if self.polls > self.polls_until_done and not self.failed_tasks and not self.roll_back_to:
            parsed["TargetHealthDescriptions"] = [
                {"Target": {"Id": f"10.0.0.{n}", "Port": 8080}, "TargetHealth": {"State": "healthy"}}
                for n in range(1, max(self.desired, 1) + 1)
            ]
