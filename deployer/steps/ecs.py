"""ECS: the cluster, the task definition, and the Fargate service behind the NLB.

The task definition is compared field by field with what the settings and earlier
steps ask for; any difference registers a new revision, and the service then
moves to it. The service runs in the public subnets with a public IP (the stack
has no NAT gateway), takes traffic only from the NLB's security group, and rolls
back a failing deployment (circuit breaker).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deployer.retry import ROLE_NOT_ASSUMABLE, SERVICE_NOT_READY, SERVICE_STILL_DEPLOYING
from deployer.rollout import RolloutWatch
from deployer.state import Ids
from deployer.steps import tags
from deployer.steps.aws import absent_if
from deployer.steps.base import Converged, Existing, Step, StepContext
from deployer.steps.loadbalancer import site_url

if TYPE_CHECKING:
    from mypy_boto3_ecs.literals import TaskDefinitionStatusType
    from mypy_boto3_ecs.type_defs import (
        ClusterTypeDef,
        ContainerDefinitionTypeDef,
        CreateServiceResponseTypeDef,
        DeleteServiceResponseTypeDef,
        DeploymentConfigurationTypeDef,
        HealthCheckTypeDef,
        LoadBalancerTypeDef,
        NetworkConfigurationTypeDef,
        RegisterTaskDefinitionRequestTypeDef,
        ServiceTypeDef,
        TaskDefinitionTypeDef,
        UpdateServiceRequestTypeDef,
    )

# The site's image answers /healthz through this stdlib script (slim images have no curl).
SITE_HEALTH_CHECK: HealthCheckTypeDef = {
    "command": ["CMD", "python", "/app/healthcheck.py"],
    "interval": 10,
    "timeout": 5,
    "retries": 3,
    "startPeriod": 15,
}

NOT_FOUND_CODES = ("ClusterNotFoundException", "ServiceNotFoundException", "ServiceNotActiveException")


class ClusterStep(Step["ClusterTypeDef"]):
    name = "cluster"
    resource = "ECS cluster"

    def find_recorded(self, ctx: StepContext, ids: Ids) -> Existing[ClusterTypeDef] | None:
        return self._describe(ctx, ids["name"])

    def find_unrecorded(self, ctx: StepContext) -> Existing[ClusterTypeDef] | None:
        return self._describe(ctx, ctx.settings.names.cluster)

    def _describe(self, ctx: StepContext, name: str) -> Existing[ClusterTypeDef] | None:
        clusters = ctx.clients.ecs.describe_clusters(clusters=[name])["clusters"]
        active = [c for c in clusters if c.get("status") == "ACTIVE"]
        if not active:
            return None
        return Existing({"name": active[0]["clusterName"], "arn": active[0]["clusterArn"]}, active[0])

    def create(self, ctx: StepContext) -> Ids:
        cluster = ctx.clients.ecs.create_cluster(
            clusterName=ctx.settings.names.cluster,
            tags=tags.ecs_tags(ctx.settings, self.name),
        )["cluster"]
        return {"name": cluster["clusterName"], "arn": cluster["clusterArn"]}

    def delete(self, ctx: StepContext, ids: Ids) -> None:
        ctx.delete_when_free(lambda: ctx.clients.ecs.delete_cluster(cluster=ids["name"]), "ClusterNotFoundException")


class TaskDefinitionStep(Step["TaskDefinitionTypeDef"]):
    name = "task-definition"
    resource = "task definition"
    needs = ("image",)

    def find_recorded(self, ctx: StepContext, ids: Ids) -> Existing[TaskDefinitionTypeDef] | None:
        return self._latest(ctx, ids["family"])

    def find_unrecorded(self, ctx: StepContext) -> Existing[TaskDefinitionTypeDef] | None:
        return self._latest(ctx, ctx.settings.names.task_family)

    def _latest(self, ctx: StepContext, family: str) -> Existing[TaskDefinitionTypeDef] | None:
        """The family's latest ACTIVE revision: what a new deployment would run."""
        # ECS answers a family with no ACTIVE revision with the generic ClientException.
        definition = absent_if(
            lambda: ctx.clients.ecs.describe_task_definition(taskDefinition=family)["taskDefinition"],
            "ClientException",
        )
        if definition is None or definition.get("status") != "ACTIVE":
            return None
        return Existing({"family": family, "arn": definition["taskDefinitionArn"]}, definition)

    def registered(self, ctx: StepContext) -> TaskDefinitionTypeDef:
        """The recorded revision as ECS holds it (local mode runs its container)."""
        arn = ctx.ids(self.name)["arn"]
        return ctx.clients.ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]

    def create(self, ctx: StepContext) -> Ids:
        return self._register(ctx)

    def converge(self, ctx: StepContext, existing: Existing[TaskDefinitionTypeDef]) -> Converged:
        wanted = self.definition(ctx)
        differences = _differences(existing.live, wanted)
        if not differences:
            return Converged(existing.ids)
        change = f"new revision ({', '.join(differences)} changed)"
        if ctx.dry_run:
            return Converged({**existing.ids, "arn": f"{existing.ids['family']}:(next revision)"}, [change])
        return Converged(self._register(ctx), [change])

    def _register(self, ctx: StepContext) -> Ids:
        request: RegisterTaskDefinitionRequestTypeDef = {
            **self.definition(ctx),
            "tags": tags.ecs_tags(ctx.settings, self.name),
        }
        definition = ctx.retry(
            lambda: ctx.clients.ecs.register_task_definition(**request),
            ROLE_NOT_ASSUMABLE,
        )["taskDefinition"]
        return {"family": definition["family"], "arn": definition["taskDefinitionArn"]}

    def definition(self, ctx: StepContext) -> RegisterTaskDefinitionRequestTypeDef:
        """The task definition the settings ask for, in RegisterTaskDefinition's shape."""
        settings = ctx.settings
        return {
            "family": settings.names.task_family,
            "requiresCompatibilities": ["FARGATE"],
            "networkMode": "awsvpc",
            "cpu": str(settings.cpu),
            "memory": str(settings.memory),
            "runtimePlatform": {"operatingSystemFamily": "LINUX", "cpuArchitecture": "X86_64"},
            "executionRoleArn": ctx.ids("execution-role")["arn"],
            "taskRoleArn": ctx.ids("task-role")["arn"],
            "containerDefinitions": [self._container(ctx)],
        }

    def _container(self, ctx: StepContext) -> ContainerDefinitionTypeDef:
        """The one container: the image, its port, and logs to the stack's log group."""
        settings = ctx.settings
        names = settings.names
        image = ctx.ids("image")
        container: ContainerDefinitionTypeDef = {
            "name": names.container,
            "image": image["uri"],
            "essential": True,
            "portMappings": [{"containerPort": settings.container_port, "protocol": "tcp"}],
            "environment": [{"name": "PORT", "value": str(settings.container_port)}],
            "logConfiguration": {
                "logDriver": "awslogs",
                "options": {
                    "awslogs-group": ctx.ids("log-group")["name"],
                    "awslogs-region": ctx.clients.region,
                    "awslogs-stream-prefix": names.container,
                },
            },
        }
        if "tag" in image:  # built from our site: its health check is known to work inside it
            container["healthCheck"] = SITE_HEALTH_CHECK
        return container

    def delete(self, ctx: StepContext, ids: Ids) -> None:
        """Every revision of the family: deregister the active ones, then delete them all."""
        ecs = ctx.clients.ecs
        family = ids["family"]
        for arn in _revisions(ctx, family, "ACTIVE"):
            ecs.deregister_task_definition(taskDefinition=arn)
        inactive = _revisions(ctx, family, "INACTIVE")
        for start in range(0, len(inactive), 10):  # DeleteTaskDefinitions takes at most 10
            ecs.delete_task_definitions(taskDefinitions=inactive[start : start + 10])


class ServiceStep(Step["ServiceTypeDef"]):
    name = "service"
    resource = "ECS service"
    wait_deferred = True

    def find_recorded(self, ctx: StepContext, ids: Ids) -> Existing[ServiceTypeDef] | None:
        return self._describe(ctx, ids["cluster"], ids["name"])

    def find_unrecorded(self, ctx: StepContext) -> Existing[ServiceTypeDef] | None:
        cluster = ctx.recorded("cluster")
        if cluster is None:
            return None  # a service lives in our cluster: without it there is none
        return self._describe(ctx, cluster["name"], ctx.settings.names.service)

    def _describe(self, ctx: StepContext, cluster: str, name: str) -> Existing[ServiceTypeDef] | None:
        services = absent_if(
            lambda: ctx.clients.ecs.describe_services(cluster=cluster, services=[name])["services"], *NOT_FOUND_CODES
        )
        active = [s for s in services or [] if s.get("status") == "ACTIVE"]
        if not active:
            return None
        return Existing({"cluster": cluster, "name": name, "arn": active[0]["serviceArn"]}, active[0])

    def create(self, ctx: StepContext) -> Ids:
        cluster = ctx.ids("cluster")["name"]
        name = ctx.settings.names.service
        task_definition = ctx.ids("task-definition")["arn"]
        service = ctx.retry(
            lambda: self._create(ctx, cluster, name, task_definition), SERVICE_NOT_READY, ROLE_NOT_ASSUMABLE
        )["service"]
        return {"cluster": cluster, "name": name, "arn": service["serviceArn"]}

    def _create(self, ctx: StepContext, cluster: str, name: str, task_definition: str) -> CreateServiceResponseTypeDef:
        return ctx.clients.ecs.create_service(
            cluster=cluster,
            serviceName=name,
            taskDefinition=task_definition,
            desiredCount=ctx.settings.desired_count,
            launchType="FARGATE",
            platformVersion="LATEST",
            networkConfiguration=self._network(ctx),
            loadBalancers=self._load_balancers(ctx),
            deploymentConfiguration=self._deployment(),
            clientToken=ctx.client_token(self.name, cluster, task_definition)[:36],
            propagateTags="SERVICE",
            enableECSManagedTags=True,
            tags=tags.ecs_tags(ctx.settings, self.name),
        )

    def converge(self, ctx: StepContext, existing: Existing[ServiceTypeDef]) -> Converged:
        live = existing.live
        update: UpdateServiceRequestTypeDef = {"cluster": existing.ids["cluster"], "service": existing.ids["name"]}
        changes = []
        task_definition = ctx.ids("task-definition")["arn"]
        if live.get("taskDefinition") != task_definition:
            update["taskDefinition"] = task_definition
            changes.append(f"task definition -> {task_definition.rsplit('/', 1)[-1]}")
        if live.get("desiredCount") != ctx.settings.desired_count:
            update["desiredCount"] = ctx.settings.desired_count
            changes.append(f"desired count {live.get('desiredCount')} -> {ctx.settings.desired_count}")
        if _network_key(live.get("networkConfiguration")) != _network_key(self._network(ctx)):
            update["networkConfiguration"] = self._network(ctx)
            changes.append("network configuration")
        if _lb_key(live.get("loadBalancers", [])) != _lb_key(self._load_balancers(ctx)):
            update["loadBalancers"] = self._load_balancers(ctx)
            changes.append("load balancer attachment")
        # moto drops deploymentConfiguration on CreateService; AWS always reports it.
        breaker = live.get("deploymentConfiguration", {}).get("deploymentCircuitBreaker")
        if breaker is not None and (not breaker.get("enable") or not breaker.get("rollback")):
            update["deploymentConfiguration"] = self._deployment()
            changes.append("circuit breaker with rollback on")
        if changes and not ctx.dry_run:  # one change per field set in `update`
            ctx.retry(lambda: ctx.clients.ecs.update_service(**update), SERVICE_NOT_READY, ROLE_NOT_ASSUMABLE)
        return Converged(existing.ids, changes)

    def wait(self, ctx: StepContext, ids: Ids) -> None:
        """Until the new revision serves: rollout completed, targets healthy, the URL answers 200."""
        RolloutWatch(ctx, ids["cluster"], ids["name"], ctx.ids("task-definition")["arn"], site_url(ctx)).wait()

    def roll_to(self, ctx: StepContext, ids: Ids, revision: str) -> None:
        """Point the service at an earlier revision (`--rollback`) and wait until it serves."""
        ctx.retry(
            lambda: ctx.clients.ecs.update_service(cluster=ids["cluster"], service=ids["name"], taskDefinition=revision)
        )
        ctx.say(f"service                rolling back to {revision.rsplit('/', 1)[-1]}")
        RolloutWatch(ctx, ids["cluster"], ids["name"], revision, site_url(ctx)).wait()

    def delete(self, ctx: StepContext, ids: Ids) -> None:
        """Scale to 0, delete with force, and wait until ECS reports it INACTIVE (or forgets it)."""
        if absent_if(lambda: self._remove(ctx, ids), *NOT_FOUND_CODES) is not None:
            self._drain(ctx, ids)

    def _remove(self, ctx: StepContext, ids: Ids) -> DeleteServiceResponseTypeDef:
        """Scale to 0, then delete with `force`, which does not wait for the scale-down to finish."""
        ecs = ctx.clients.ecs
        ecs.update_service(cluster=ids["cluster"], service=ids["name"], desiredCount=0)
        return ctx.retry(
            lambda: ecs.delete_service(cluster=ids["cluster"], service=ids["name"], force=True),
            SERVICE_STILL_DEPLOYING,
        )

    def _drain(self, ctx: StepContext, ids: Ids) -> None:
        """A deleted service stays DRAINING until its tasks stop; the steps after it need it gone."""

        def status() -> str | None:
            answer = ctx.clients.ecs.describe_services(cluster=ids["cluster"], services=[ids["name"]])
            states = [s.get("status") for s in answer["services"]]
            if not states or states == ["INACTIVE"]:  # MISSING (in failures) counts as done
                return None
            return str(states[0])

        ctx.poll(f"service {ids['name']} to drain", ctx.settings.service_wait_timeout, status)

    def _network(self, ctx: StepContext) -> NetworkConfigurationTypeDef:
        return {
            "awsvpcConfiguration": {
                "subnets": [ctx.ids("subnet-1")["id"], ctx.ids("subnet-2")["id"]],
                "securityGroups": [ctx.ids("task-security-group")["id"]],
                "assignPublicIp": "ENABLED",
            }
        }

    def _load_balancers(self, ctx: StepContext) -> list[LoadBalancerTypeDef]:
        return [
            {
                "targetGroupArn": ctx.ids("target-group")["arn"],
                "containerName": ctx.settings.names.container,
                "containerPort": ctx.settings.container_port,
            }
        ]

    def _deployment(self) -> DeploymentConfigurationTypeDef:
        return {
            "deploymentCircuitBreaker": {"enable": True, "rollback": True},
            "maximumPercent": 200,
            "minimumHealthyPercent": 100,
        }


def _revisions(ctx: StepContext, family: str, status: TaskDefinitionStatusType) -> list[str]:
    arns: list[str] = []
    paginator = ctx.clients.ecs.get_paginator("list_task_definitions")
    for page in paginator.paginate(familyPrefix=family, status=status):
        arns.extend(arn for arn in page["taskDefinitionArns"] if arn.rsplit("/", 1)[-1].rsplit(":", 1)[0] == family)
    return arns


def _differences(live: Any, wanted: RegisterTaskDefinitionRequestTypeDef) -> list[str]:
    """Names of the wanted fields whose live value differs (ECS adds defaults we ignore)."""
    differences = [
        key
        for key in (
            "cpu",
            "memory",
            "networkMode",
            "executionRoleArn",
            "taskRoleArn",
            "runtimePlatform",
            "requiresCompatibilities",
        )
        if live.get(key) != wanted.get(key)
    ]
    live_containers = live.get("containerDefinitions", [])
    if len(live_containers) != 1:
        return [*differences, "containers"]
    container, want = live_containers[0], wanted["containerDefinitions"][0]
    for key in ("name", "image", "essential", "logConfiguration", "healthCheck"):
        if container.get(key) != want.get(key):
            differences.append(key)
    if _pairs(container.get("environment", [])) != _pairs(want["environment"]):
        differences.append("environment")
    ports = [(p.get("containerPort"), p.get("protocol", "tcp")) for p in container.get("portMappings", [])]
    if ports != [(p["containerPort"], p["protocol"]) for p in want["portMappings"]]:
        differences.append("port")
    return differences


def _pairs(environment: Any) -> list[tuple[str, str]]:
    return sorted((item["name"], item["value"]) for item in environment)


def _network_key(config: Any) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    vpc = (config or {}).get("awsvpcConfiguration", {})
    return (
        tuple(sorted(vpc.get("subnets", []))),
        tuple(sorted(vpc.get("securityGroups", []))),
        vpc.get("assignPublicIp", "DISABLED"),
    )


def _lb_key(balancers: Any) -> list[tuple[str, str, int]]:
    return sorted((b.get("targetGroupArn"), b.get("containerName"), b.get("containerPort")) for b in balancers)
