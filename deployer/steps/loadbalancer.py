"""The Network Load Balancer: target groups, load balancer, listeners.

The target group is tuned for deploy speed: a 10 s TCP health check with
thresholds 2/2 and a 30 s deregistration delay (AWS's 300 s default adds about
five minutes to every deploy and teardown). The NLB is created with its security
group, because AWS cannot add one to an NLB created without. All are found
by name (the listeners by their port on our load balancer).

With a domain (`settings.https`) the NLB terminates TLS on HTTPS_PORT and forwards to the
target group; port 80 forwards to a second target group on the container's REDIRECT_PORT,
where the site answers with a permanent redirect to https://<domain>. An NLB has no redirect
action: "redirect" and "fixed-response" are Application Load Balancer actions
(https://docs.aws.amazon.com/elasticloadbalancing/latest/application/rule-action-types.html),
and a TCP listener adds no header (X-Forwarded-Proto) the site could tell plain HTTP by; the
port a connection arrives on is the only signal.

The NLB has deletion protection on (AWS Security Hub control ELB.6): AWS then answers
DeleteLoadBalancer with OperationNotPermitted ("Load balancer '<arn>' cannot be deleted because
deletion protection is enabled"; botocore's elbv2 model lists OperationNotPermittedException for
DeleteLoadBalancer, and the answer is quoted in aws-cloudformation/rain#187 and
rebuy-de/aws-nuke#1240). Teardown turns it off first, and says so.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

from botocore.exceptions import ClientError

from deployer.clients import error_code, error_message
from deployer.errors import DeployerError
from deployer.retry import CERTIFICATE_NOT_YET_AT_ELB, NEW_NETWORK_NOT_VISIBLE_TO_ELB, NEW_RESOURCE_NOT_FOUND, Retry
from deployer.settings import HTTPS_PORT, REDIRECT_PORT, Settings
from deployer.state import Ids
from deployer.steps import certificates, tags
from deployer.steps.aws import absent_if
from deployer.steps.base import Converged, Existing, Step, StepContext
from deployer.zones import by_id, fargate_runs_in

if TYPE_CHECKING:
    from mypy_boto3_elbv2.type_defs import (
        ActionTypeDef,
        CreateTargetGroupOutputTypeDef,
        DescribeLoadBalancersInputTypeDef,
        DescribeTargetGroupsInputTypeDef,
        ListenerTypeDef,
        LoadBalancerTypeDef,
        ModifyListenerInputTypeDef,
        TargetGroupTypeDef,
    )

DEREGISTRATION_DELAY = "deregistration_delay.timeout_seconds"
# Off by default on an NLB: each zone's node then sends only to targets in its own zone, so a zone
# whose task is down (or has none) drops its share of visitors. Key and default: the ELBv2 API's
# LoadBalancerAttribute ("The default for Network Load Balancers ... is false"),
# https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_LoadBalancerAttribute.html
CROSS_ZONE = "load_balancing.cross_zone.enabled"
# Off by default ("The default is false", same page); on, nothing deletes the NLB until it is turned off.
DELETION_PROTECTION = "deletion_protection.enabled"
# The load balancer attributes the stack sets, with what the output calls each when it turns it on.
LB_ATTRIBUTES = {CROSS_ZONE: "cross-zone load balancing on", DELETION_PROTECTION: "deletion protection on"}


# A TCP target group's HealthCheckTimeoutSeconds defaults to 10 s, may be 2-120 s (botocore elbv2
# 2015-12-01, CreateTargetGroup HealthCheckTimeoutSeconds), and for a Network Load Balancer may not
# exceed the interval (5-300 s): AWS answers ValidationError "Health check timeout '10' must be smaller
# than or equal to the interval '5'" (the rule in aws-cdk's NetworkTargetGroup, aws/aws-cdk#26031; the
# message as moto's elbv2 reproduces it for CreateTargetGroup). Left to its default, an interval under
# 10 s is refused mid-deploy, so the timeout is always sent: 10 s, or the interval if shorter.
DEFAULT_TCP_HEALTH_CHECK_TIMEOUT = 10


class HealthCheck(TypedDict):
    """The tunable part of the TCP health check: keyword arguments of CreateTargetGroup and
    ModifyTargetGroup, and fields of the described target group, under the same names."""

    HealthCheckIntervalSeconds: int
    HealthCheckTimeoutSeconds: int
    HealthyThresholdCount: int
    UnhealthyThresholdCount: int


def _health_check(settings: Settings) -> HealthCheck:
    """One source for the values the target group is created with and converged to."""
    return {
        "HealthCheckIntervalSeconds": settings.health_check_interval,
        "HealthCheckTimeoutSeconds": min(DEFAULT_TCP_HEALTH_CHECK_TIMEOUT, settings.health_check_interval),
        "HealthyThresholdCount": settings.healthy_threshold,
        "UnhealthyThresholdCount": settings.unhealthy_threshold,
    }


@dataclass(frozen=True)
class LiveTargetGroup:
    target_group: TargetGroupTypeDef
    attributes: dict[str, str]


class TargetGroupStep(Step[LiveTargetGroup]):
    """The container port's target group: where the site is served (over the TCP listener, or TLS with a domain)."""

    name = "target-group"
    resource = "target group"
    needs = ("vpc",)

    def group_name(self, settings: Settings) -> str:
        return settings.names.target_group

    def port(self, settings: Settings) -> int:
        return settings.container_port

    def find_recorded(self, ctx: StepContext, ids: Ids) -> Existing[LiveTargetGroup] | None:
        return self._describe(ctx, arn=ids["arn"])

    def find_unrecorded(self, ctx: StepContext) -> Existing[LiveTargetGroup] | None:
        name = self.group_name(ctx.settings)
        found = self._describe(ctx, name=name)
        return None if found is None else tags.adopt(ctx, self, found, name, _tags(ctx, found.ids), global_=False)

    def _describe(self, ctx: StepContext, arn: str = "", name: str = "") -> Existing[LiveTargetGroup] | None:
        elbv2 = ctx.clients.elbv2
        query: DescribeTargetGroupsInputTypeDef = {"TargetGroupArns": [arn]} if arn else {"Names": [name]}
        groups = absent_if(lambda: elbv2.describe_target_groups(**query)["TargetGroups"], "TargetGroupNotFound")
        if groups is None:
            return None
        group = groups[0]
        attributes = elbv2.describe_target_group_attributes(TargetGroupArn=group["TargetGroupArn"])["Attributes"]
        live = LiveTargetGroup(group, {a["Key"]: a["Value"] for a in attributes if "Key" in a and "Value" in a})
        return Existing({"name": group["TargetGroupName"], "arn": group["TargetGroupArn"]}, live)

    def create(self, ctx: StepContext) -> Ids:
        settings = ctx.settings
        # CreateTargetGroup cannot answer TargetGroupNotFound or an EC2 code (botocore's elbv2 model);
        # a VPC made a moment ago comes back as ValidationError (see NEW_NETWORK_NOT_VISIBLE_TO_ELB).
        group = ctx.retry(lambda: self._create(ctx), *_not_yet_visible(ctx, "vpc"))["TargetGroups"][0]
        ids = {"name": group["TargetGroupName"], "arn": group["TargetGroupArn"]}
        ctx.remember(self.name, ids)
        ctx.retry(
            lambda: ctx.clients.elbv2.modify_target_group_attributes(
                TargetGroupArn=ids["arn"],
                Attributes=[{"Key": DEREGISTRATION_DELAY, "Value": str(settings.deregistration_delay)}],
            ),
            NEW_RESOURCE_NOT_FOUND,
        )
        return ids

    def _create(self, ctx: StepContext) -> CreateTargetGroupOutputTypeDef:
        settings = ctx.settings
        return ctx.clients.elbv2.create_target_group(
            Name=self.group_name(settings),
            Protocol="TCP",
            Port=self.port(settings),
            VpcId=ctx.ids("vpc")["id"],
            TargetType="ip",
            HealthCheckProtocol="TCP",
            **_health_check(settings),
            Tags=tags.elbv2_tags(settings, self.name),
        )

    def converge(self, ctx: StepContext, existing: Existing[LiveTargetGroup]) -> Converged:
        settings = ctx.settings
        group = existing.live.target_group
        fixed = {
            "port": (group.get("Port"), self.port(settings)),
            "protocol": (group.get("Protocol"), "TCP"),
            "target type": (group.get("TargetType"), "ip"),
            "VPC": (group.get("VpcId"), ctx.ids("vpc")["id"]),
        }
        for what, (have, want) in fixed.items():
            if have != want:
                raise self.drift(existing.ids, f"has {what} {have}, not {want}")
        changes: list[str] = []
        elbv2 = ctx.clients.elbv2
        arn = existing.ids["arn"]
        health = _health_check(settings)
        differs: dict[str, object] = {key: value for key, value in health.items() if group.get(key) != value}
        if differs or group.get("HealthCheckProtocol") != "TCP":
            differs["HealthCheckProtocol"] = "TCP"
            ctx.change(
                changes,
                "health check " + ", ".join(f"{k}={v}" for k, v in differs.items()),
                lambda: elbv2.modify_target_group(TargetGroupArn=arn, HealthCheckProtocol="TCP", **health),
            )
        delay = str(settings.deregistration_delay)
        if existing.live.attributes.get(DEREGISTRATION_DELAY) != delay:
            ctx.change(
                changes,
                f"deregistration delay {delay} s",
                lambda: elbv2.modify_target_group_attributes(
                    TargetGroupArn=arn, Attributes=[{"Key": DEREGISTRATION_DELAY, "Value": delay}]
                ),
            )
        return Converged(existing.ids, changes)

    def delete(self, ctx: StepContext, ids: Ids) -> None:
        # ResourceInUse while the listener that forwarded to it is still being deleted.
        ctx.delete_when_free(
            lambda: ctx.clients.elbv2.delete_target_group(TargetGroupArn=ids["arn"]), "TargetGroupNotFound"
        )


class RedirectTargetGroupStep(TargetGroupStep):
    """With a domain: port 80's target group, the container's REDIRECT_PORT, where the site answers every
    request with a permanent redirect to https://<domain>. Same TCP health check: a TCP connect needs no HTTP
    answer, so the redirect never fails it. Removed with the domain once the listener and the service left it."""

    name = "redirect-target-group"

    def group_name(self, settings: Settings) -> str:
        return settings.names.redirect_target_group

    def port(self, settings: Settings) -> int:
        return REDIRECT_PORT

    def wanted(self, settings: Settings) -> bool:
        return settings.https


class LoadBalancerStep(Step["LoadBalancerTypeDef"]):
    name = "load-balancer"
    resource = "network load balancer"
    wait_deferred = True  # the listener and the service need its ARN, not an active NLB
    # Its subnets and group; and an internet-facing load balancer is refused in a VPC without an internet
    # gateway ("InvalidSubnet: VPC vpc-... has no internet gateway", openshift/installer#1110). At teardown its
    # public addresses must be gone before the gateway can be detached (see InternetGatewayStep.delete).
    needs = ("subnet-1", "subnet-2", "nlb-security-group", "internet-gateway")

    def find_recorded(self, ctx: StepContext, ids: Ids) -> Existing[LoadBalancerTypeDef] | None:
        return self._describe(ctx, arn=ids["arn"])

    def find_unrecorded(self, ctx: StepContext) -> Existing[LoadBalancerTypeDef] | None:
        name = ctx.settings.names.load_balancer
        found = self._describe(ctx, name=name)
        return None if found is None else tags.adopt(ctx, self, found, name, _tags(ctx, found.ids), global_=False)

    def _describe(self, ctx: StepContext, arn: str = "", name: str = "") -> Existing[LoadBalancerTypeDef] | None:
        elbv2 = ctx.clients.elbv2
        query: DescribeLoadBalancersInputTypeDef = {"LoadBalancerArns": [arn]} if arn else {"Names": [name]}
        balancers = absent_if(lambda: elbv2.describe_load_balancers(**query)["LoadBalancers"], "LoadBalancerNotFound")
        return Existing(_lb_ids(balancers[0]), balancers[0]) if balancers is not None else None

    def create(self, ctx: StepContext) -> Ids:
        with _zone_refusal(ctx):
            balancer = ctx.retry(
                lambda: ctx.clients.elbv2.create_load_balancer(
                    Name=ctx.settings.names.load_balancer,
                    Type="network",
                    Scheme="internet-facing",
                    IpAddressType="ipv4",
                    Subnets=self._subnets(ctx),
                    SecurityGroups=[ctx.ids("nlb-security-group")["id"]],
                    Tags=tags.elbv2_tags(ctx.settings, self.name),
                ),
                *_not_yet_visible(ctx, "subnet-1", "subnet-2", "nlb-security-group"),
            )["LoadBalancers"][0]
        ids = _lb_ids(balancer)
        ctx.remember(self.name, ids)
        # AWS has no attribute argument on CreateLoadBalancer: cross-zone and deletion protection are set right after.
        ctx.retry(
            lambda: ctx.clients.elbv2.modify_load_balancer_attributes(
                LoadBalancerArn=ids["arn"], Attributes=[{"Key": key, "Value": "true"} for key in LB_ATTRIBUTES]
            ),
            NEW_RESOURCE_NOT_FOUND,
        )
        return ids

    def converge(self, ctx: StepContext, existing: Existing[LoadBalancerTypeDef]) -> Converged:
        live = existing.live
        if live.get("Type") != "network" or live.get("Scheme") != "internet-facing":
            raise self.drift(existing.ids, f"is {live.get('Scheme')} {live.get('Type')}, not an internet-facing NLB")
        changes: list[str] = []
        elbv2 = ctx.clients.elbv2
        arn = existing.ids["arn"]
        subnets = self._subnets(ctx)
        if sorted(zone["SubnetId"] for zone in live.get("AvailabilityZones", []) if "SubnetId" in zone) != sorted(
            subnets
        ):
            with _zone_refusal(ctx):
                ctx.change(changes, "subnets reset", lambda: elbv2.set_subnets(LoadBalancerArn=arn, Subnets=subnets))
        groups = [ctx.ids("nlb-security-group")["id"]]
        live_groups = live.get("SecurityGroups", [])
        if not live_groups:
            raise self.drift(existing.ids, "has no security group (an NLB created or left without one cannot get one)")
        if sorted(live_groups) != groups:
            ctx.change(
                changes,
                "security group reset",
                lambda: elbv2.set_security_groups(LoadBalancerArn=arn, SecurityGroups=groups),
            )
        live_attributes = _attributes(ctx, arn)
        off = [key for key in LB_ATTRIBUTES if live_attributes.get(key) != "true"]
        if off:
            ctx.change(
                changes,
                ", ".join(LB_ATTRIBUTES[key] for key in off),
                lambda: elbv2.modify_load_balancer_attributes(
                    LoadBalancerArn=arn, Attributes=[{"Key": key, "Value": "true"} for key in off]
                ),
            )
        return Converged(existing.ids, changes)

    def wait(self, ctx: StepContext, ids: Ids) -> None:
        """Until the NLB is active (AWS takes minutes, moto answers at once); a failed NLB fails at once.

        `active_impaired` ends the wait too, with a warning: AWS's LoadBalancerState says the load balancer
        "is routing traffic but does not have the resources it needs to scale" (ELBv2 API reference,
        https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_LoadBalancerState.html).
        It serves, so the site can be verified; waiting for `active` could last the whole timeout.

        Our own poll rather than botocore's waiter: it sleeps through the context (instant in tests), its
        timeout is in seconds, and the waiter has no acceptor for the `failed` state.
        """

        def status() -> str | None:
            found = self._describe(ctx, arn=ids["arn"])
            state = found.live.get("State", {}) if found else {}
            if state.get("Code") == "active":
                return None
            if found is not None and state.get("Code") == "active_impaired":
                ctx.output.warn(
                    f"The load balancer {ids['name']} is active_impaired: it routes traffic but AWS reports it "
                    f"lacks the resources to scale ({state.get('Reason') or 'AWS gave no reason'}); "
                    "python status.py shows its state"
                )
                return None
            if found is None or state.get("Code") == "failed":
                raise DeployerError(
                    f"The load balancer {ids['arn']} {'failed: ' + state.get('Reason', '') if found else 'is gone'}",
                    where=f"step '{self.name}'",
                    todo="Look at the load balancer in the EC2 console, then run the same command again",
                )
            return str(state.get("Code", "provisioning"))

        ctx.poll("the load balancer to be active", ctx.settings.service_wait_timeout, status)

    def delete(self, ctx: StepContext, ids: Ids) -> None:
        """Deletion protection off (if on), then the delete. Interrupted in between, the next teardown finds it
        off and deletes; the next provision turns it on again."""
        elbv2 = ctx.clients.elbv2
        arn = ids["arn"]
        attributes = absent_if(lambda: _attributes(ctx, arn), "LoadBalancerNotFound")
        if attributes is None:
            return  # already gone
        if attributes.get(DELETION_PROTECTION) == "true":
            turned_off = absent_if(
                lambda: elbv2.modify_load_balancer_attributes(
                    LoadBalancerArn=arn, Attributes=[{"Key": DELETION_PROTECTION, "Value": "false"}]
                ),
                "LoadBalancerNotFound",
            )
            if turned_off is None:
                return
            ctx.say(f"{self.name:<22} deletion protection turned off, so that it can be deleted")
        deleted = absent_if(lambda: elbv2.delete_load_balancer(LoadBalancerArn=arn), "LoadBalancerNotFound")
        if deleted is None:
            return  # already gone: nothing to wait for
        ctx.poll(
            "the load balancer to be deleted",
            ctx.settings.service_wait_timeout,
            lambda: None if self._describe(ctx, arn=ids["arn"]) is None else "deleting",
        )

    def _subnets(self, ctx: StepContext) -> list[str]:
        return [ctx.ids("subnet-1")["id"], ctx.ids("subnet-2")["id"]]


class PortListener(Step["ListenerTypeDef"]):
    """A listener of our load balancer, found by its port (listeners have no name)."""

    @abstractmethod
    def port(self, settings: Settings) -> int:
        """The port that identifies the listener on our load balancer."""

    def find_recorded(self, ctx: StepContext, ids: Ids) -> Existing[ListenerTypeDef] | None:
        listeners = absent_if(
            lambda: ctx.clients.elbv2.describe_listeners(ListenerArns=[ids["arn"]])["Listeners"],
            "ListenerNotFound",
            "LoadBalancerNotFound",
        )
        return Existing(ids, listeners[0]) if listeners else None

    def find_unrecorded(self, ctx: StepContext) -> Existing[ListenerTypeDef] | None:
        balancer = ctx.recorded("load-balancer")
        if balancer is None:
            return None  # listeners belong to our load balancer: without it there is none
        paginator = ctx.clients.elbv2.get_paginator("describe_listeners")
        listeners = absent_if(
            lambda: [
                item for page in paginator.paginate(LoadBalancerArn=balancer["arn"]) for item in page["Listeners"]
            ],
            "LoadBalancerNotFound",
        )
        for listener in listeners or []:
            if listener.get("Port") == self.port(ctx.settings):
                return Existing({"arn": listener["ListenerArn"]}, listener)
        return None

    def delete(self, ctx: StepContext, ids: Ids) -> None:
        absent_if(
            lambda: ctx.clients.elbv2.delete_listener(ListenerArn=ids["arn"]),
            "ListenerNotFound",
            "LoadBalancerNotFound",
        )


class ListenerStep(PortListener):
    """The plain TCP listener (listener_port): it serves the site, or with a domain forwards to the redirect."""

    name = "listener"
    resource = "listener"
    needs = ("load-balancer", "target-group", "redirect-target-group")  # with a domain it forwards to the redirect

    def port(self, settings: Settings) -> int:
        return settings.listener_port

    def create(self, ctx: StepContext) -> Ids:
        listener = ctx.retry(
            lambda: ctx.clients.elbv2.create_listener(
                LoadBalancerArn=ctx.ids("load-balancer")["arn"],
                Protocol="TCP",
                Port=ctx.settings.listener_port,
                DefaultActions=_forward(self._target(ctx)),
                Tags=tags.elbv2_tags(ctx.settings, self.name),
            ),
            NEW_RESOURCE_NOT_FOUND,
        )["Listeners"][0]
        return {"arn": listener["ListenerArn"]}

    def _target(self, ctx: StepContext) -> str:
        """With a domain, the redirect target group; else the site's. A domain set or removed switches it."""
        return ctx.ids("redirect-target-group" if ctx.settings.https else "target-group")["arn"]

    def converge(self, ctx: StepContext, existing: Existing[ListenerTypeDef]) -> Converged:
        target = self._target(ctx)
        port = ctx.settings.listener_port
        if (
            existing.live.get("Protocol") == "TCP"
            and existing.live.get("Port") == port
            and _forwards_to(existing.live) == target
        ):
            return Converged(existing.ids)
        changes: list[str] = []
        ctx.change(
            changes,
            f"TCP {port} -> {'redirect ' if ctx.settings.https else ''}target group",
            lambda: ctx.clients.elbv2.modify_listener(
                ListenerArn=existing.ids["arn"], Protocol="TCP", Port=port, DefaultActions=_forward(target)
            ),
        )
        return Converged(existing.ids, changes)


class HttpsListenerStep(PortListener):
    """With a domain: TLS on HTTPS_PORT with the certificate and `tls_policy`, forwarding to the site's target group.

    Created only once the certificate is ISSUED: ELB refuses a certificate that is not yet with
    UnsupportedCertificate ("... must have a fully-qualified domain name, a supported signature, and a supported
    key size"), a code missing from botocore's CreateListener errors and a message that does not say "not issued"
    (DataBiosphere/azul#8321: a listener created 17 s before the certificate's IssuedAt). The wait runs in the
    step `validation-record` while the NLB provisions; here it is one look (certificates.wait_issued).

    No AlpnPolicy: the NLB does not translate HTTP/2, and the site's server speaks HTTP/1.1 only.
    """

    name = "https-listener"
    resource = "TLS listener"
    # The certificate must be ISSUED: `validation-record` waits for that (this step starts once
    # it has). ACM refuses to delete a certificate a listener uses, so teardown deletes the listener first.
    needs = ("load-balancer", "target-group", "certificate", "validation-record")

    def port(self, settings: Settings) -> int:
        return HTTPS_PORT

    def wanted(self, settings: Settings) -> bool:
        return settings.https

    def check(self, ctx: StepContext) -> None:
        """The user's own certificate (`certificate_arn`, else nothing to look at): issued, and for the domain."""
        certificates.check_external(ctx)

    def create(self, ctx: StepContext) -> Ids:
        arn = certificates.certificate_arn(ctx)
        certificates.wait_issued(ctx, arn)
        listener = ctx.retry(
            lambda: ctx.clients.elbv2.create_listener(
                LoadBalancerArn=ctx.ids("load-balancer")["arn"],
                Protocol="TLS",
                Port=HTTPS_PORT,
                # "You must provide exactly one certificate" for a TLS listener, without IsDefault (ELBv2 API
                # reference, Certificate: https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_Certificate.html).
                Certificates=[{"CertificateArn": arn}],
                # Always sent: an API caller's default is ELBSecurityPolicy-2016-08, which accepts TLS 1.0
                # (https://docs.aws.amazon.com/elasticloadbalancing/latest/network/describe-ssl-policies.html).
                SslPolicy=ctx.settings.tls_policy,
                DefaultActions=_forward(ctx.ids("target-group")["arn"]),
                Tags=tags.elbv2_tags(ctx.settings, self.name),
            ),
            NEW_RESOURCE_NOT_FOUND,
            CERTIFICATE_NOT_YET_AT_ELB,
        )["Listeners"][0]
        return {"arn": listener["ListenerArn"]}

    def converge(self, ctx: StepContext, existing: Existing[ListenerTypeDef]) -> Converged:
        """ModifyListener with only what differs. Protocol is sent only when the listener is not TLS (changed by
        hand): moto refuses Protocol="TLS" on ModifyListener (UnsupportedProtocol), AWS does not; and SslPolicy
        only when it differs, as ModifyListener checks the name against the policies it knows (moto knows no
        FIPS policy: SSLPolicyNotFound). A new certificate (another domain) must be ISSUED first, as on create."""
        live, settings = existing.live, ctx.settings
        arn = certificates.certificate_arn(ctx)
        target = ctx.ids("target-group")["arn"]
        request: ModifyListenerInputTypeDef = {"ListenerArn": existing.ids["arn"]}
        changes: list[str] = []
        if live.get("Protocol") != "TLS" or live.get("Port") != HTTPS_PORT:
            request["Protocol"] = "TLS"
            request["Port"] = HTTPS_PORT
            changes.append(f"TLS on port {HTTPS_PORT}")
        if [c.get("CertificateArn") for c in live.get("Certificates", [])] != [arn]:
            request["Certificates"] = [{"CertificateArn": arn}]
            changes.append(f"certificate {arn}")
        if live.get("SslPolicy") != settings.tls_policy:
            request["SslPolicy"] = settings.tls_policy
            changes.append(f"security policy {settings.tls_policy}")
        if _forwards_to(live) != target:
            request["DefaultActions"] = _forward(target)
            changes.append("forward to the target group")
        if changes and not ctx.dry_run:
            if "Certificates" in request:
                certificates.wait_issued(ctx, arn)
            ctx.retry(lambda: ctx.clients.elbv2.modify_listener(**request), CERTIFICATE_NOT_YET_AT_ELB)
        return Converged(existing.ids, changes)


def _forward(target_group: str) -> list[ActionTypeDef]:
    return [{"Type": "forward", "TargetGroupArn": target_group}]


def _forwards_to(listener: ListenerTypeDef) -> str | None:
    """The one target group a listener's default action forwards to; None for anything else."""
    actions = [(a.get("Type"), a.get("TargetGroupArn")) for a in listener.get("DefaultActions", [])]
    return actions[0][1] if len(actions) == 1 and actions[0][0] == "forward" else None


@contextmanager
def _zone_refusal(ctx: StepContext) -> Iterator[None]:
    """ELB refuses some zones for load balancers (`AvailabilityZoneNotSupported`, e.g. "The following
    Availability Zones us-west-1a cannot be associated with a load balancer": widdix/mastodon-on-aws#13,
    aws/copilot-cli#1298). The subnets already exist and cannot move to another zone, so this is not
    retried with other zones: the error names the zone and the zones to put in `availability_zones`."""
    try:
        yield
    except ClientError as exc:
        if error_code(exc) != "AvailabilityZoneNotSupported":
            raise
        message = error_message(exc)
        ours = [ctx.ids(name).get("availability_zone", "") for name in ("subnet-1", "subnet-2")]
        region = ctx.region_zones()
        named = [z for z in region if z.name in message or z.zone_id in message]
        refused = named or [z for z in region if z.name in ours]
        others = sorted(
            (z for z in region if z not in refused and fargate_runs_in(ctx.clients.region, z.zone_id)), key=by_id
        )
        suggestion = (
            f"availability_zones = [{', '.join(repr(z.zone_id) for z in others[:2])}]".replace("'", '"')
            if len(others) >= 2
            else "two zones (this region has too few others where Fargate runs: deploy to another region)"
        )
        raise DeployerError(
            f"AWS does not support a load balancer in availability zone {' or '.join(map(str, refused))} "
            f"(AvailabilityZoneNotSupported: {message})",
            where=f"step 'load-balancer', subnets in {', '.join(ours)}",
            todo=f"Set {suggestion} in deploy.toml, then run teardown.py and provision.py again (a subnet "
            "cannot move to another zone)",
        ) from exc


def site_url(ctx: StepContext) -> str:
    """https://<domain> with a domain (its alias record points at the NLB); else the NLB's own name."""
    if ctx.settings.domain is not None:
        return f"https://{ctx.settings.domain}"
    url = f"http://{ctx.ids('load-balancer')['dns_name']}"
    return url if ctx.settings.listener_port == 80 else f"{url}:{ctx.settings.listener_port}"


def health_check(ctx: StepContext) -> tuple[str, str | None]:
    """What the rollout asks before it calls a revision serving: the URL, and the host to ask it through.

    With a domain: `https://<domain>/healthz` through the NLB's own name, the handshake naming the domain and
    verifying the certificate for it (deployer/probe.py, `via`). The domain's DNS is left out of the check: the
    alias may still be propagating, this machine's resolver may hold an NXDOMAIN it cached before (Route 53's
    SOA gives 900 s), and with `certificate_arn` the DNS is the user's to set up. Without one: the site URL.
    """
    if ctx.settings.domain is not None:
        return f"https://{ctx.settings.domain}/healthz", ctx.ids("load-balancer")["dns_name"]
    return site_url(ctx), None


def _not_yet_visible(ctx: StepContext, *steps: str) -> tuple[Retry, ...]:
    """SubnetNotFound and the like mean "not yet" only right after this run made the resource."""
    rule = NEW_NETWORK_NOT_VISIBLE_TO_ELB
    return (rule,) if ctx.fresh(rule.budget_seconds, *steps) else ()


def _attributes(ctx: StepContext, arn: str) -> dict[str, str]:
    """A load balancer's attributes, as a map."""
    attributes = ctx.clients.elbv2.describe_load_balancer_attributes(LoadBalancerArn=arn)["Attributes"]
    return {a["Key"]: a["Value"] for a in attributes if "Key" in a and "Value" in a}


def _tags(ctx: StepContext, ids: Ids) -> dict[str, str]:
    """A target group's or load balancer's tags (found by name, adopted only when ours)."""
    descriptions = ctx.clients.elbv2.describe_tags(ResourceArns=[ids["arn"]])["TagDescriptions"]
    return tags.tag_map(descriptions[0].get("Tags") if descriptions else None)


def _lb_ids(balancer: LoadBalancerTypeDef) -> Ids:
    return {"name": balancer["LoadBalancerName"], "arn": balancer["LoadBalancerArn"], "dns_name": balancer["DNSName"]}
