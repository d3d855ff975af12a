"""The whole stack as an ordered list of steps: provision walks it forwards.

Teardown walks the resources the state records in this order reversed, using the step
with the recorded name; order here is the dependency order.
"""

from __future__ import annotations

from typing import Any

from deployer.steps.alarms import AlarmStep
from deployer.steps.base import Step
from deployer.steps.certificates import CertificateStep
from deployer.steps.dns import AliasRecordStep, ValidationRecordStep
from deployer.steps.ecs import ClusterStep, ServiceStep, TaskDefinitionStep
from deployer.steps.firewall import DefaultNetworkAclStep, DefaultSecurityGroupStep, NetworkAclStep
from deployer.steps.flowlogs import FlowLogStep
from deployer.steps.iam import RoleStep
from deployer.steps.image import ImageStep
from deployer.steps.keys import KeyStep
from deployer.steps.loadbalancer import (
    HttpsListenerStep,
    ListenerStep,
    LoadBalancerStep,
    RedirectTargetGroupStep,
    TargetGroupStep,
)
from deployer.steps.logs import LogGroupStep
from deployer.steps.network import (
    InternetGatewayStep,
    PrivateSubnetStep,
    RouteTableStep,
    SecurityGroupStep,
    SubnetStep,
    VpcStep,
)
from deployer.steps.private import NatAddressStep, NatGatewayStep, PrivateRouteTableStep
from deployer.steps.registry import RepositoryStep
from deployer.steps.scaling import ScalableTargetStep, ScalingPolicyStep


def build_steps() -> list[Step[Any]]:
    return [
        # The repository comes first so the image can be built and pushed while the network, IAM and
        # load-balancer steps run (every step starts once its needs are done: deployer/parallel.py).
        RepositoryStep(),
        ImageStep(),
        # With a domain in the account's hosted zone: requested first, beside the others, so that ACM's
        # validation runs while the network, the roles and the NLB are built (only the TLS listener needs it).
        CertificateStep(),
        VpcStep(),
        DefaultSecurityGroupStep(),
        SubnetStep(0),
        SubnetStep(1),
        InternetGatewayStep(),
        RouteTableStep(),
        # Its record written once the certificate names it (a few seconds), then the wait for ISSUED in the
        # meanwhile; before the private network, whose NAT gateway takes minutes.
        ValidationRecordStep(),
        # network = "private" only (Step.wanted): after the public route table, so a switch back to
        # public removes them (newest first) before anything they depend on.
        PrivateSubnetStep(0),
        PrivateSubnetStep(1),
        NatAddressStep(),
        NatGatewayStep(),
        PrivateRouteTableStep(),
        # After every subnet it guards; the default ACL is emptied only once no subnet uses it.
        NetworkAclStep(),
        DefaultNetworkAclStep(),
        SecurityGroupStep("nlb"),
        SecurityGroupStep("task"),
        # The key (log_kms_key = "create") before the groups it encrypts; the flow log after its
        # VPC, group and role, so teardown deletes it before them.
        KeyStep(),
        LogGroupStep(),
        LogGroupStep("flow-logs"),
        RoleStep("flow-logs"),
        FlowLogStep(),
        RoleStep("execution"),
        RoleStep("task"),
        TargetGroupStep(),
        RedirectTargetGroupStep(),  # a domain: port 80 goes to the site's redirect port
        LoadBalancerStep(),
        ListenerStep(),
        # Before the service: with a domain port 80 forwards to the redirect target group, and ECS refuses a
        # service whose target group no listener uses. Starts once the certificate is issued (validation-record).
        HttpsListenerStep(),
        AliasRecordStep(),  # its INSYNC wait deferred to the end
        ClusterStep(),
        TaskDefinitionStep(),
        # Before the service, whose deploymentConfiguration.alarms names them: a rollout that turns targets
        # unhealthy, or leaves the service short of tasks, rolls back.
        AlarmStep("unhealthy"),
        AlarmStep("shortfall"),
        ServiceStep(),
        # max_tasks above min_tasks (Step.wanted): Application Auto Scaling then owns the service's desired count.
        # After the service they scale; going back to a fixed count removes them, policies first.
        ScalableTargetStep(),
        ScalingPolicyStep("cpu"),
        ScalingPolicyStep("memory"),
    ]


def steps_by_name() -> dict[str, Step[Any]]:
    return {step.name: step for step in build_steps()}
