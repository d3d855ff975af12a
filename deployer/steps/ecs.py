"""ECS: the cluster, the task definition, and the Fargate service behind the NLB.

The task definition is compared field by field with what the settings and earlier
steps ask for; any difference registers a new revision, and the service then
moves to it. The service runs in the public subnets with a public IP (the stack
has no NAT gateway), takes traffic only from the NLB's security group, and rolls
back a failing deployment (circuit breaker, and the deployment alarms of deployer/steps/alarms.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import ClientError

from deployer.clients import error_message
from deployer.errors import DeployerError
from deployer.retry import (
    NEW_NETWORK_NOT_VISIBLE_TO_ECS,
    ROLE_NOT_ASSUMABLE,
    SERVICE_LINKED_ROLE_NOT_READY,
    SERVICE_NOT_READY,
    SERVICE_STILL_DEPLOYING,
    Retry,
)
from deployer.rollout import RolloutWatch
from deployer.settings import REDIRECT_PORT, Settings
from deployer.state import Ids
from deployer.steps import tags
from deployer.steps.alarms import deployment_alarms
from deployer.steps.aws import absent_if
from deployer.steps.base import Converged, Existing, Step, StepContext
from deployer.steps.iam import ensure_service_linked_role
from deployer.steps.loadbalancer import health_check

if TYPE_CHECKING:
    from mypy_boto3_ecs.literals import ClusterFieldType, TaskDefinitionStatusType
    from mypy_boto3_ecs.type_defs import (
        ClusterTypeDef,
        ContainerDefinitionTypeDef,
        CreateClusterResponseTypeDef,
        CreateServiceResponseTypeDef,
        DeleteServiceResponseTypeDef,
        DeploymentConfigurationTypeDef,
        HealthCheckTypeDef,
        KeyValuePairTypeDef,
        LoadBalancerTypeDef,
        NetworkConfigurationTypeDef,
        RegisterTaskDefinitionRequestTypeDef,
        ServiceTypeDef,
        TaskDefinitionTypeDef,
        UpdateServiceRequestTypeDef,
    )

# The site's image answers /healthz through this stdlib script (slim images have no curl). It runs every 10 s
# inside the task's CPU limit: `-I -S` (isolated, no `site` import) keeps Python's start-up to what the script needs,
# see website/healthcheck.py (the Dockerfile's HEALTHCHECK runs the same command).
SITE_HEALTH_CHECK: HealthCheckTypeDef = {
    "command": ["CMD", "python", "-I", "-S", "/app/healthcheck.py"],
    "interval": 10,
    "timeout": 5,
    "retries": 3,
    "startPeriod": 15,
}

# The user website/Dockerfile's `USER` line runs the site as (tests/test_website.py holds them equal).
# Set in the container definition too, so the task runs as it even if the image's default changes.
SITE_USER = "10001:10001"

# The only writable place in the container: the root filesystem is read-only
# (ContainerDefinition readonlyRootFilesystem, AWS Security Hub control ECS.5). A task volume with a
# name only is a bind mount on the task's ephemeral storage, empty at start and gone with the task,
# supported on Fargate (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/bind-mounts.html).
# ECS creates it 0755 root-owned unless the image declares the path as a VOLUME, whose mode it keeps:
# website/Dockerfile declares VOLUME /tmp (mode 1777). Local mode and the e2e mount a tmpfs here.
SCRATCH_VOLUME = "tmp"
SCRATCH_PATH = "/tmp"

# awslogs: never block the site's stdout when CloudWatch Logs is slow; buffer up to 25 MiB, then drop
# (LogConfiguration options `mode` and `max-buffer-size`, API reference
# https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_LogConfiguration.html; AWS blog
# "Preventing log loss with non-blocking mode in the AWSLogs container log driver").
LOG_MODE = "non-blocking"
LOG_MAX_BUFFER_SIZE = "25m"

# With a domain: the site's own name, for its redirect (REDIRECT_PORT answers 301 to https://SITE_DOMAIN<path>)
# and its HSTS header; the Host header is never used for the redirect (an open redirect).
SITE_DOMAIN: Final = "SITE_DOMAIN"


def _ports(settings: Settings) -> list[int]:
    """The container's ports: the site's, and with a domain the redirect's (see deployer/steps/loadbalancer.py)."""
    return [settings.container_port, *([REDIRECT_PORT] if settings.https else [])]


def _environment(settings: Settings) -> list[KeyValuePairTypeDef]:
    environment: list[KeyValuePairTypeDef] = [{"name": "PORT", "value": str(settings.container_port)}]
    if settings.domain is not None:
        environment.append({"name": SITE_DOMAIN, "value": settings.domain})
    return environment


# ECS moves tasks to the zone that runs fewer of them after a zone's trouble ("Balancing an Amazon ECS
# service across Availability Zones",
# https://docs.aws.amazon.com/AmazonECS/latest/developerguide/service-rebalancing.html). A create without it
# defaults to ENABLED, an update keeps the service's value (CreateService/UpdateService in botocore's ecs
# model): sent on both so a service made before the default, or changed by hand, gets it too.
AZ_REBALANCING: Final = "ENABLED"

NOT_FOUND_CODES = ("ClusterNotFoundException", "ServiceNotFoundException", "ServiceNotActiveException")

# CloudWatch Container Insights, the cluster's one setting (ClusterSetting in the ECS API reference: name
# `containerInsights`, values `enhanced`, `enabled`, `disabled`;
# https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_ClusterSetting.html). `enabled` is the
# standard level: cluster- and service-level metrics, billed as custom metrics (deployer/cost.py);
# `enhanced` adds per-task and per-container metrics at several times the cost, so it is not offered.
CONTAINER_INSIGHTS: Final = "containerInsights"


def _container_insights(settings: Settings) -> str:
    return "enabled" if settings.container_insights else "disabled"


class ClusterStep(Step["ClusterTypeDef"]):
    name = "cluster"
    resource = "ECS cluster"

    def find_recorded(self, ctx: StepContext, ids: Ids) -> Existing[ClusterTypeDef] | None:
        return self._describe(ctx, ids["name"])

    def find_unrecorded(self, ctx: StepContext) -> Existing[ClusterTypeDef] | None:
        name = ctx.settings.names.cluster
        found = self._describe(ctx, name, with_tags=True)
        if found is None:
            return None
        return tags.adopt(ctx, self, found, name, tags.tag_map(found.live.get("tags")), global_=False)

    def _describe(self, ctx: StepContext, name: str, with_tags: bool = False) -> Existing[ClusterTypeDef] | None:
        # DescribeClusters leaves out the settings (and the tags) unless `include` names them (API reference,
        # https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_DescribeClusters.html).
        include: list[ClusterFieldType] = ["SETTINGS", "TAGS"] if with_tags else ["SETTINGS"]
        clusters = ctx.clients.ecs.describe_clusters(clusters=[name], include=include)["clusters"]
        active = [c for c in clusters if c.get("status") == "ACTIVE"]
        if not active:
            return None
        return Existing({"name": active[0]["clusterName"], "arn": active[0]["clusterArn"]}, active[0])

    def create(self, ctx: StepContext) -> Ids:
        def create() -> CreateClusterResponseTypeDef:
            return ctx.clients.ecs.create_cluster(
                clusterName=ctx.settings.names.cluster,
                settings=[{"name": CONTAINER_INSIGHTS, "value": _container_insights(ctx.settings)}],
                tags=tags.ecs_tags(ctx.settings, self.name),
            )

        try:
            answer = create()
        except ClientError as exc:
            if not SERVICE_LINKED_ROLE_NOT_READY.matches(exc):
                raise
            # The account's first cluster: make sure the role ECS needs can come into being at all.
            ensure_ecs_service_linked_role(ctx)
            answer = ctx.retry(create, SERVICE_LINKED_ROLE_NOT_READY)
        cluster = answer["cluster"]
        return {"name": cluster["clusterName"], "arn": cluster["clusterArn"]}

    def converge(self, ctx: StepContext, existing: Existing[ClusterTypeDef]) -> Converged:
        """Container Insights as the settings say. UpdateCluster takes the same `settings` as
        UpdateClusterSettings (botocore's ecs model; moto implements only UpdateCluster)."""
        wanted = _container_insights(ctx.settings)
        live = {s.get("name"): s.get("value") for s in existing.live.get("settings", [])}.get(CONTAINER_INSIGHTS)
        if live == wanted:
            return Converged(existing.ids)
        changes: list[str] = []
        ctx.change(
            changes,
            f"Container Insights {live or 'unset'} -> {wanted}",
            lambda: ctx.clients.ecs.update_cluster(
                cluster=existing.ids["name"], settings=[{"name": CONTAINER_INSIGHTS, "value": wanted}]
            ),
        )
        return Converged(existing.ids, changes)

    def delete(self, ctx: StepContext, ids: Ids) -> None:
        ctx.delete_when_free(lambda: ctx.clients.ecs.delete_cluster(cluster=ids["name"]), "ClusterNotFoundException")


ECS_SERVICE_LINKED_ROLE = "AWSServiceRoleForECS"


def ensure_ecs_service_linked_role(ctx: StepContext) -> None:
    """After "Unable to assume the service linked role": create AWSServiceRoleForECS if it is missing (ECS makes
    it on an account's first CreateCluster, with the caller's permissions)."""
    ensure_service_linked_role(
        ctx, ECS_SERVICE_LINKED_ROLE, "ecs.amazonaws.com", "first use of ECS in this account", _ecs_role_refused
    )


def _ecs_role_refused(exc: ClientError) -> DeployerError:
    return DeployerError(
        f"ECS cannot create its cluster because the ECS service-linked role {ECS_SERVICE_LINKED_ROLE} "
        "does not exist, and these credentials may not create it: they lack "
        "iam:CreateServiceLinkedRole for ecs.amazonaws.com (AWS: " + error_message(exc) + ")",
        where="step 'cluster', the account's first ECS cluster",
        todo="Grant iam:CreateServiceLinkedRole (condition iam:AWSServiceName = ecs.amazonaws.com), or have "
        "an administrator run once: aws iam create-service-linked-role --aws-service-name "
        "ecs.amazonaws.com; then run provision.py again",
    )


class TaskDefinitionStep(Step["TaskDefinitionTypeDef"]):
    name = "task-definition"
    resource = "task definition"
    needs = ("image", "execution-role", "task-role", "log-group")  # what `definition` names

    def find_recorded(self, ctx: StepContext, ids: Ids) -> Existing[TaskDefinitionTypeDef] | None:
        return self._latest(ctx, ids["family"])

    def find_unrecorded(self, ctx: StepContext) -> Existing[TaskDefinitionTypeDef] | None:
        family = ctx.settings.names.task_family
        found_tags: dict[str, str] = {}
        found = self._latest(ctx, family, found_tags)
        if found is None:
            return None
        return tags.adopt(ctx, self, found, found.ids["arn"], found_tags, global_=False)

    def _latest(
        self, ctx: StepContext, family: str, found_tags: dict[str, str] | None = None
    ) -> Existing[TaskDefinitionTypeDef] | None:
        """The family's latest ACTIVE revision: what a new deployment would run (its tags into `found_tags`)."""
        ecs = ctx.clients.ecs
        # ECS answers a family with no ACTIVE revision with the generic ClientException.
        answer = absent_if(
            lambda: (
                ecs.describe_task_definition(taskDefinition=family, include=["TAGS"])
                if found_tags is not None
                else ecs.describe_task_definition(taskDefinition=family)
            ),
            "ClientException",
        )
        definition = None if answer is None else answer["taskDefinition"]
        if answer is None or definition is None or definition.get("status") != "ACTIVE":
            return None
        if found_tags is not None:
            found_tags.update(tags.tag_map(answer.get("tags")))
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
            "volumes": [{"name": SCRATCH_VOLUME}],
        }

    def _container(self, ctx: StepContext) -> ContainerDefinitionTypeDef:
        """The one container: the image, its port, logs to the stack's log group, and its hardening.

        Read-only root filesystem with one scratch bind mount at /tmp, every Linux capability dropped
        (linuxParameters.capabilities.drop; Fargate allows adding only SYS_PTRACE, dropping any), and a
        non-root `user`: `container_user`, else SITE_USER for the site built here, else the image's own.
        """
        settings = ctx.settings
        names = settings.names
        image = ctx.ids("image")
        container: ContainerDefinitionTypeDef = {
            "name": names.container,
            "image": image["uri"],
            "essential": True,
            "portMappings": [{"containerPort": port, "protocol": "tcp"} for port in _ports(settings)],
            "environment": _environment(settings),
            "logConfiguration": {
                "logDriver": "awslogs",
                "options": {
                    "awslogs-group": ctx.ids("log-group")["name"],
                    "awslogs-region": ctx.clients.region,
                    "awslogs-stream-prefix": names.container,
                    "mode": LOG_MODE,
                    "max-buffer-size": LOG_MAX_BUFFER_SIZE,
                },
            },
            "readonlyRootFilesystem": True,
            "mountPoints": [{"sourceVolume": SCRATCH_VOLUME, "containerPath": SCRATCH_PATH, "readOnly": False}],
            "linuxParameters": {"capabilities": {"drop": ["ALL"]}},
        }
        built = "tag" in image  # built from our site: its health check and user are known
        if built:
            container["healthCheck"] = SITE_HEALTH_CHECK
        user = settings.container_user or (SITE_USER if built else None)
        if user is not None:
            container["user"] = user
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
    # What it is created with (`_create`: cluster, revision, subnets, group, target groups, alarms) and what its
    # wait asks through (the NLB's name, the target group's health). Also, without a read:
    # * the listeners: ECS refuses a service whose target group no listener of a load balancer uses (with a
    #   domain, the site's group is the TLS listener's and the redirect's the plain listener's);
    # * the route tables: the tasks pull their image through them (the public one to the internet gateway,
    #   the private one to the NAT gateway), and visitors reach the NLB through the public one;
    # * the network ACL: a subnet made by this run starts on the VPC's default ACL, which an earlier run emptied,
    #   so the tasks could not pull their image until the stack's ACL holds their subnets.
    needs = (
        "cluster",
        "task-definition",
        "subnet-1",
        "subnet-2",
        "private-subnet-1",
        "private-subnet-2",
        "task-security-group",
        "route-table",
        "private-route-table",
        "network-acl",
        "target-group",
        "redirect-target-group",
        "load-balancer",
        "listener",
        "https-listener",
        "unhealthy-alarm",
        "shortfall-alarm",
    )

    def find_recorded(self, ctx: StepContext, ids: Ids) -> Existing[ServiceTypeDef] | None:
        return self._describe(ctx, ids["cluster"], ids["name"])

    def find_unrecorded(self, ctx: StepContext) -> Existing[ServiceTypeDef] | None:
        cluster = ctx.recorded("cluster")
        if cluster is None:
            return None  # a service lives in our cluster: without it there is none
        name = ctx.settings.names.service
        found = self._describe(ctx, cluster["name"], name, with_tags=True)
        if found is None:
            return None
        return tags.adopt(ctx, self, found, name, tags.tag_map(found.live.get("tags")), global_=False)

    def _describe(
        self, ctx: StepContext, cluster: str, name: str, with_tags: bool = False
    ) -> Existing[ServiceTypeDef] | None:
        ecs = ctx.clients.ecs
        services = absent_if(
            lambda: (
                ecs.describe_services(cluster=cluster, services=[name], include=["TAGS"])
                if with_tags
                else ecs.describe_services(cluster=cluster, services=[name])
            )["services"],
            *NOT_FOUND_CODES,
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
            lambda: self._create(ctx, cluster, name, task_definition),
            SERVICE_NOT_READY,
            ROLE_NOT_ASSUMABLE,
            *_network_not_yet_visible(ctx),
        )["service"]
        return {"cluster": cluster, "name": name, "arn": service["serviceArn"]}

    def _create(self, ctx: StepContext, cluster: str, name: str, task_definition: str) -> CreateServiceResponseTypeDef:
        return ctx.clients.ecs.create_service(
            cluster=cluster,
            serviceName=name,
            taskDefinition=task_definition,
            desiredCount=ctx.settings.task_count,
            launchType="FARGATE",
            platformVersion="LATEST",
            networkConfiguration=self._network(ctx),
            loadBalancers=self._load_balancers(ctx),
            deploymentConfiguration=self._deployment(ctx),
            availabilityZoneRebalancing=AZ_REBALANCING,
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
        count = _desired_count(ctx.settings, live.get("desiredCount", 0))
        if count is not None:
            update["desiredCount"] = count
            changes.append(f"desired count {live.get('desiredCount')} -> {count}")
        if _network_key(live.get("networkConfiguration")) != _network_key(self._network(ctx)):
            update["networkConfiguration"] = self._network(ctx)
            changes.append("network configuration")
        if _lb_key(live.get("loadBalancers", [])) != _lb_key(self._load_balancers(ctx)):
            update["loadBalancers"] = self._load_balancers(ctx)
            changes.append("load balancer attachment")
        wanted = self._deployment(ctx)
        # AWS always reports both fields; `--local`'s emulator (moto) reports neither after CreateService, and
        # an absent answer is not a difference to converge (it would update the service on every run).
        reported = live.get("deploymentConfiguration")
        if reported is not None and _deployment_key(reported) != _deployment_key(wanted):
            update["deploymentConfiguration"] = wanted
            alarms = ", ".join(wanted["alarms"]["alarmNames"])
            changes.append(f"deployment configuration: circuit breaker and alarms ({alarms}) with rollback on")
        if live.get("availabilityZoneRebalancing") not in (None, AZ_REBALANCING):
            update["availabilityZoneRebalancing"] = AZ_REBALANCING
            changes.append("Availability Zone rebalancing on")
        if changes and not ctx.dry_run:  # one change per field set in `update`
            ctx.retry(
                lambda: ctx.clients.ecs.update_service(**update),
                SERVICE_NOT_READY,
                ROLE_NOT_ASSUMABLE,
                *_network_not_yet_visible(ctx),
            )
        return Converged(existing.ids, changes)

    def wait(self, ctx: StepContext, ids: Ids) -> None:
        """Until the new revision serves: rollout completed, targets healthy, the URL answers 200."""
        url, via = health_check(ctx)
        RolloutWatch(ctx, ids["cluster"], ids["name"], ctx.ids("task-definition")["arn"], url, via).wait()

    def roll_to(self, ctx: StepContext, ids: Ids, revision: str) -> None:
        """Point the service at an earlier revision (`--rollback`) and wait until it serves."""
        ctx.retry(
            lambda: ctx.clients.ecs.update_service(cluster=ids["cluster"], service=ids["name"], taskDefinition=revision)
        )
        ctx.say(f"service                rolling back to {revision.rsplit('/', 1)[-1]}")
        url, via = health_check(ctx)
        RolloutWatch(ctx, ids["cluster"], ids["name"], revision, url, via).wait()

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
        """Public: the public subnets, each task with a public address (to pull its image). Private:
        the private subnets without one, out through the NAT gateway (deployer/steps/private.py)."""
        private = ctx.settings.network == "private"
        subnets = ("private-subnet-1", "private-subnet-2") if private else ("subnet-1", "subnet-2")
        return {
            "awsvpcConfiguration": {
                "subnets": [ctx.ids(step)["id"] for step in subnets],
                "securityGroups": [ctx.ids("task-security-group")["id"]],
                "assignPublicIp": "DISABLED" if private else "ENABLED",
            }
        }

    def _load_balancers(self, ctx: StepContext) -> list[LoadBalancerTypeDef]:
        """The site's target group on the container port; with a domain also port 80's redirect target group on
        REDIRECT_PORT. ECS registers each task in both ("Register multiple target groups with a service", up to
        five; UpdateService moves "from a single target group to multiple target groups" and back:
        https://docs.aws.amazon.com/AmazonECS/latest/developerguide/register-multiple-targetgroups.html)."""
        groups = ["target-group", *(["redirect-target-group"] if ctx.settings.https else [])]
        return [
            {
                "targetGroupArn": ctx.ids(group)["arn"],
                "containerName": ctx.settings.names.container,
                "containerPort": port,
            }
            for group, port in zip(groups, _ports(ctx.settings), strict=True)
        ]

    def _deployment(self, ctx: StepContext) -> DeploymentConfigurationTypeDef:
        """Rolling updates that keep every task until its replacement runs (100..200 %), failed by the
        circuit breaker (tasks that do not start) or by the stack's deployment alarms (deployer/steps/alarms.py:
        targets unhealthy while the tasks stay up), and rolled back either way."""
        return {
            "deploymentCircuitBreaker": {"enable": True, "rollback": True},
            "maximumPercent": 200,
            "minimumHealthyPercent": 100,
            "alarms": {"alarmNames": deployment_alarms(ctx.settings), "enable": True, "rollback": True},
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
    if _volumes_key(live.get("volumes")) != _volumes_key(wanted.get("volumes")):
        differences.append("volumes")
    live_containers = live.get("containerDefinitions", [])
    if len(live_containers) != 1:
        return [*differences, "containers"]
    container, want = live_containers[0], wanted["containerDefinitions"][0]
    for key in ("name", "image", "essential", "logConfiguration", "healthCheck", "user"):
        if container.get(key) != want.get(key):
            differences.append(key)
    if bool(container.get("readonlyRootFilesystem")) != bool(want.get("readonlyRootFilesystem")):
        differences.append("readonlyRootFilesystem")
    if _mounts_key(container.get("mountPoints")) != _mounts_key(want.get("mountPoints")):
        differences.append("mountPoints")
    if _linux_key(container.get("linuxParameters")) != _linux_key(want.get("linuxParameters")):
        differences.append("linuxParameters")
    if _pairs(container.get("environment", [])) != _pairs(want["environment"]):
        differences.append("environment")
    ports = [(p.get("containerPort"), p.get("protocol", "tcp")) for p in container.get("portMappings", [])]
    if ports != [(p["containerPort"], p["protocol"]) for p in want["portMappings"]]:
        differences.append("port")
    return differences


SUBNET_STEPS = ("subnet-1", "subnet-2", "private-subnet-1", "private-subnet-2")


def _network_not_yet_visible(ctx: StepContext) -> tuple[Retry, ...]:
    """ "Error retrieving subnet information" means "not yet" only right after this run made the network."""
    rule = NEW_NETWORK_NOT_VISIBLE_TO_ECS
    return (rule,) if ctx.fresh(rule.budget_seconds, *SUBNET_STEPS, "task-security-group") else ()


def _volumes_key(volumes: Any) -> list[tuple[str, str]]:
    """Task volumes by name and configuration; ECS may answer a bind mount with an empty `host: {}`."""
    keys = []
    for volume in volumes or []:
        config = {k: v for k, v in volume.items() if k != "name" and v not in (None, {}, [])}
        keys.append((volume.get("name", ""), repr(sorted(config.items()))))
    return sorted(keys)


def _mounts_key(mounts: Any) -> list[tuple[str, str, bool]]:
    return sorted(
        (m.get("sourceVolume", ""), m.get("containerPath", ""), bool(m.get("readOnly"))) for m in mounts or []
    )


def _linux_key(parameters: Any) -> list[tuple[str, str]]:
    """linuxParameters without the empty values ECS may add; capability lists in sorted order."""
    keys = []
    for name, given in (parameters or {}).items():
        value = {k: sorted(v) for k, v in (given or {}).items() if v} if name == "capabilities" else given
        if value not in (None, {}, []):
            keys.append((name, repr(value)))
    return sorted(keys)


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


def _desired_count(settings: Settings, live: int) -> int | None:
    """The desiredCount an UpdateService sends, or None to leave it out.

    With autoscaling the scaler owns the count: sending it would undo what the scaler chose, so it is sent
    only to bring a count outside min..max back into the range (Terraform's aws_ecs_service documentation
    likewise tells users of Application Auto Scaling to ignore changes to desired_count after the create).
    Without autoscaling the settings' count is the count.
    """
    if settings.autoscaling:
        low, high = settings.task_range
        clamped = min(max(live, low), high)
        return None if clamped == live else clamped
    return None if live == settings.task_count else settings.task_count


def _deployment_key(config: Any) -> tuple[object, ...]:
    """The deploymentConfiguration fields the stack sets, comparably (ECS adds others, e.g. `strategy`)."""
    config = config or {}
    breaker = config.get("deploymentCircuitBreaker") or {}
    alarms = config.get("alarms") or {}
    return (
        bool(breaker.get("enable")),
        bool(breaker.get("rollback")),
        config.get("maximumPercent"),
        config.get("minimumHealthyPercent"),
        tuple(sorted(alarms.get("alarmNames") or [])),
        bool(alarms.get("enable")),
        bool(alarms.get("rollback")),
    )
