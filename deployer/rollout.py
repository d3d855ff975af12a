"""Waiting for a deployment until the site is really served, or failing fast with the reason.

"Done" means all three: ECS reports the new deployment's `rolloutState` COMPLETED,
the target group reports the tasks healthy, and the site URL answers HTTP 200 —
not merely that the API calls returned. While waiting, new service events and the
reasons of stopped tasks are shown as they appear. A rollback is a failure that says
why (the circuit breaker and the tasks' stop reasons, or the deployment alarm that
fired and CloudWatch's reason for it) and which revision runs now; after
`max_failed_tasks` failed launches the wait stops at once instead of waiting for
ECS's own threshold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from deployer.errors import DeployerError
from deployer.probe import probe

if TYPE_CHECKING:
    from mypy_boto3_ecs.type_defs import DeploymentTypeDef, ServiceTypeDef, TaskTypeDef

    from deployer.steps.base import StepContext

# A role made moments ago is not yet assumable by ECS: the launch fails with a stopped task whose
# reason is "ECS was unable to assume the role '<arn>' that was provided for this task. ..."
# (pulumi/pulumi-awsx#927: it cleared by itself ~30 s later). Such a task launched within 2 minutes
# (Terraform's ECS propagationTimeout, see ROLE_NOT_ASSUMABLE in deployer/retry.py) of the role's
# CreateDate is "not yet", not a failed launch; later, the same reason is a real failure.
ROLE_PROPAGATION_SECONDS = 120.0
_ROLE_NOT_ASSUMABLE = re.compile(r"ECS was unable to assume the role '?(arn:[^' ]+)")


class DeploymentFailedError(DeployerError):
    """The new deployment did not serve: rolled back, or too many tasks failed."""

    exit_code = 1


def site_status(url: str, via: str | None = None) -> int | None:
    """`StepContext.probe`'s default: the HTTP status the site answers with, None when it does not answer."""
    return probe(url, via=via).status


@dataclass
class RolloutWatch:
    """One wait: remembers what it has already shown."""

    ctx: StepContext
    cluster: str
    service: str
    task_definition: str
    url: str
    via: str | None = None  # ask the URL through this host (the load balancer): see loadbalancer.health_check
    events_seen: set[str] | None = None
    stopped_seen: set[str] = field(default_factory=set)
    reasons: list[str] = field(default_factory=list)
    not_yet: int = 0  # stopped launches that failed only because IAM had not caught up

    def wait(self) -> None:
        if self.parked:
            self.ctx.poll(f"{self.service} to settle at 0 tasks", self.ctx.settings.service_wait_timeout, self.status)
            self.ctx.say(
                f"  the stack is parked: desired_count is 0, so no task runs and {self.url} does not answer; "
                "set desired_count above 0 and run provision.py to serve the site"
            )
            return
        self.ctx.poll(f"{self.service} to serve the new revision", self.ctx.settings.service_wait_timeout, self.status)

    @property
    def parked(self) -> bool:
        """desired_count = 0: nothing can become healthy or answer, so done is "0 running, rollout completed"."""
        return self.ctx.settings.desired_count == 0

    def status(self) -> str | None:
        """None once the site is served; otherwise what is still missing."""
        service = self._service()
        self._show_events(service)
        primary = next((d for d in service.get("deployments", []) if d.get("status") == "PRIMARY"), None)
        if primary is None:
            return "no deployment yet"
        failed = primary.get("failedTasks", 0)
        if failed or any(d.get("rolloutState") == "FAILED" for d in service.get("deployments", [])):
            self._show_stopped_tasks()  # only failed launches leave stopped tasks worth explaining
        self._fail_if_rolled_back(service, primary)
        failed -= min(failed, self.not_yet)
        if failed >= self.ctx.settings.max_failed_tasks:
            limit = self.ctx.settings.max_failed_tasks
            raise self._failure(f"{failed} task launches failed (max_failed_tasks is {limit})", service)
        running, desired = primary.get("runningCount", 0), primary.get("desiredCount", 0)
        if primary.get("rolloutState") != "COMPLETED":
            return f"rollout {primary.get('rolloutState', 'IN_PROGRESS')}, {running}/{desired} tasks running"
        if self.parked:
            still = service.get("runningCount", 0)
            return None if still == 0 else f"{still} task(s) still running, stopping"
        targets = self._target_states()
        healthy = targets.count("healthy")
        if healthy < max(desired, 1) or healthy != len(targets):
            return f"targets {', '.join(sorted(targets)) or 'not registered yet'} ({healthy}/{desired} healthy)"
        answer = self.ctx.probe(self.url, self.via)
        if answer != 200:
            return f"{self.url} answers {answer or 'nothing'}"
        return None

    def _service(self) -> ServiceTypeDef:
        services = self.ctx.clients.ecs.describe_services(cluster=self.cluster, services=[self.service])["services"]
        if not services:
            raise DeploymentFailedError(
                f"The service {self.service} disappeared during the deployment",
                where=f"cluster {self.cluster}",
                todo="Run provision.py again",
            )
        return services[0]

    def _show_events(self, service: ServiceTypeDef) -> None:
        events = service.get("events", [])
        if self.events_seen is None:  # what happened before this wait is history
            self.events_seen = {event["id"] for event in events if "id" in event}
            return
        for event in reversed(events):  # ECS lists the newest first
            if event.get("id") and event["id"] not in self.events_seen:
                self.events_seen.add(event["id"])
                self.ctx.say(f"  event: {event.get('message', '')}")

    def _show_stopped_tasks(self) -> None:
        ecs = self.ctx.clients.ecs
        pages = ecs.get_paginator("list_tasks").paginate(
            cluster=self.cluster, serviceName=self.service, desiredStatus="STOPPED"
        )
        arns = [arn for page in pages for arn in page["taskArns"]]
        new = [arn for arn in arns if arn not in self.stopped_seen]
        if not new:
            return
        for task in ecs.describe_tasks(cluster=self.cluster, tasks=new[:100])["tasks"]:
            self.stopped_seen.add(task["taskArn"])
            containers = "; ".join(
                f"{c.get('name')}: {c.get('reason') or 'exit code ' + str(c.get('exitCode'))}"
                for c in task.get("containers", [])
                if c.get("reason") or c.get("exitCode") not in (None, 0)
            )
            reason = f"{task.get('stoppedReason', 'stopped')}" + (f" ({containers})" if containers else "")
            revision = task.get("taskDefinitionArn", "").rsplit("/", 1)[-1]
            if self._role_not_yet_assumable(task):
                self.not_yet += 1
                self.ctx.say(f"  task stopped ({revision}): {reason} (the new IAM role is not usable yet; waiting)")
                continue
            self.reasons.append(f"{revision}: {reason}")
            self.ctx.say(f"  task stopped ({revision}): {reason}")

    def _role_not_yet_assumable(self, task: TaskTypeDef) -> bool:
        """ECS could not assume a role that was made less than ROLE_PROPAGATION_SECONDS before the launch."""
        match = _ROLE_NOT_ASSUMABLE.search(task.get("stoppedReason", ""))
        launched = task.get("createdAt") or task.get("stoppedAt")
        if match is None or launched is None:
            return False
        try:
            role = self.ctx.clients.iam.get_role(RoleName=match.group(1).rsplit("/", 1)[-1])["Role"]
        except ClientError:
            return False  # gone or not readable: a real failure
        return (launched - role["CreateDate"]).total_seconds() < ROLE_PROPAGATION_SECONDS

    def _fail_if_rolled_back(self, service: ServiceTypeDef, primary: DeploymentTypeDef) -> None:
        ours = [d for d in service.get("deployments", []) if d.get("taskDefinition") == self.task_definition]
        if primary.get("taskDefinition") != self.task_definition or any(
            d.get("rolloutState") == "FAILED" for d in ours
        ):
            ecs_says = next((d.get("rolloutStateReason") for d in ours if d.get("rolloutStateReason")), None)
            said = f" (ECS: {ecs_says})" if ecs_says else ""
            fired = self._alarms_fired(service)
            if fired:
                # Which alarm is read from CloudWatch now; ECS's own reason says what it reacted to.
                raise self._failure(
                    f"the deployment alarm {fired} and ECS rolled the service back{said}", service, fired
                )
            raise self._failure(f"the deployment circuit breaker rolled the service back{said}", service)

    def _alarms_fired(self, service: ServiceTypeDef) -> str:
        """The service's deployment alarms now in ALARM, with CloudWatch's reason ("" when none is).

        ECS fails a deployment when one of these alarms goes into ALARM ("How CloudWatch alarms detect Amazon ECS
        deployment failures", https://docs.aws.amazon.com/AmazonECS/latest/developerguide/deployment-alarm-failure.html);
        which alarm it was is read from CloudWatch, not from ECS's event text.
        """
        config = service.get("deploymentConfiguration")
        alarms = config.get("alarms") if config else None
        names = alarms.get("alarmNames", []) if alarms and alarms.get("enable") else []
        if not names:
            return ""
        try:
            answer = self.ctx.clients.cloudwatch.describe_alarms(AlarmNames=names, StateValue="ALARM")
        except ClientError:
            return ""  # not readable (e.g. no cloudwatch:DescribeAlarms): the rollback is still reported
        # Filtered here too: moto ignores StateValue when AlarmNames is given; AWS applies both.
        return "; ".join(
            f"{alarm['AlarmName']} fired ({alarm.get('StateReason', 'no reason given')})"
            for alarm in answer["MetricAlarms"]
            if alarm.get("StateValue") == "ALARM"
        )

    def _failure(self, what: str, service: ServiceTypeDef, alarm: str = "") -> DeploymentFailedError:
        running = service.get("taskDefinition", "?").rsplit("/", 1)[-1]
        wanted = self.task_definition.rsplit("/", 1)[-1]
        reasons = "; ".join(self.reasons[-3:]) or "ECS gave no stopped-task reason yet"
        why = "" if alarm and not self.reasons else f" Why the tasks stopped: {reasons}."
        return DeploymentFailedError(
            f"The new revision {wanted} did not start serving: {what}.{why} The service now runs {running}",
            where=f"service {self.service} in cluster {self.cluster}",
            todo="Read the task's logs (python logs.py --since 30m), fix the site, and run provision.py again; "
            "python provision.py --rollback returns to the last revision that served",
        )

    def _target_states(self) -> list[str]:
        target_group = self.ctx.ids("target-group")["arn"]
        answer = self.ctx.clients.elbv2.describe_target_health(TargetGroupArn=target_group)
        return [d.get("TargetHealth", {}).get("State", "unknown") for d in answer["TargetHealthDescriptions"]]
