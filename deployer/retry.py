"""Retries for what AWS answers while it is still catching up (eventual consistency).

botocore's `standard` retry mode covers throttling and 5xx answers only. A few other
answers are known to mean "not yet" rather than "no", and each gets a bounded time
budget (the values Terraform's AWS provider settled on, see docs/aws-behaviour.md,
"Retry budgets"); anything else fails at once, so a permanent error such as a bad
subnet never turns into a retry storm.

ECS and IAM report some of these states only in the error message, under a generic
code (`InvalidParameterException`, `ClientException`, `NoSuchEntity`): those rules
pair the code with a full, distinctive phrase of the message AWS sends (the same
phrases Terraform matches, see docs/aws-behaviour.md, "Messages matched"), so a
permanent error under the same code, such as "Role is not valid", fails at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from botocore.exceptions import ClientError

from deployer.clients import error_code, error_message

T = TypeVar("T")

FIRST_DELAY = 2.0
MAX_DELAY = 30.0


@dataclass(frozen=True)
class Retry:
    """Which answers mean "not yet", and how long to keep asking."""

    why: str
    # Codes that mean "not yet" whatever the message says.
    codes: frozenset[str]
    budget_seconds: float
    # (code, phrase): AWS gives no specific code for these, so the code matches only
    # when the message contains the phrase (case-insensitive).
    messages: tuple[tuple[str, str], ...] = ()

    def matches(self, exc: ClientError) -> bool:
        code = error_code(exc)
        if code in self.codes:
            return True
        message = error_message(exc).lower()
        return any(code == wanted and phrase.lower() in message for wanted, phrase in self.messages)


# A resource made a moment ago is not yet visible to the next call that names it
# (EC2 API guide, "Eventual consistency": https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html;
# 5 minutes is Terraform's ec2PropagationTimeout).
NEW_RESOURCE_NOT_FOUND = Retry(
    "a new resource is not visible yet",
    frozenset(
        {
            "InvalidVpcID.NotFound",
            "InvalidSubnetID.NotFound",
            "InvalidGroup.NotFound",
            "InvalidInternetGatewayID.NotFound",
            "InvalidRouteTableID.NotFound",
            "InvalidGatewayID.NotFound",
            "LoadBalancerNotFound",
            "TargetGroupNotFound",
            "RepositoryNotFoundException",
            "ResourceNotFoundException",
        }
    ),
    budget_seconds=300,
)

# A role made a moment ago, named by PutRolePolicy or AttachRolePolicy: IAM answers NoSuchEntity with
# "The role with name <name> cannot be found." A missing *policy* answers the same code
# with "Policy <arn> does not exist or is not attachable." (getmoto/moto#6482 quotes
# AWS's answer), which is a setting to fix, so only the role's phrase is retried.
# 2 minutes: Terraform's IAM propagationTimeout (docs/aws-behaviour.md, "Retry budgets").
ROLE_NOT_VISIBLE = Retry(
    "a new IAM role is not visible yet",
    frozenset(),
    budget_seconds=120,
    messages=(("NoSuchEntity", "The role with name"),),
)

# IAM is global and eventually consistent: ECS may not be able to assume a role made
# seconds ago. ECS's sentence for it is "ECS was unable to assume the role '<arn>' that
# was provided for this task. Please verify that the role being passed has the proper
# trust relationship and permissions and that your IAM user has permissions to pass this
# role." (pulumi/pulumi-awsx#927 shows it as a launch failure that cleared by itself
# ~30 s later); an API answer carrying it is retried for the same reason. Only that
# sentence is: the same codes carry permanent errors that also mention a role, such as
# "Role is not valid" (ClientException from RegisterTaskDefinition for a wrong role ARN,
# fabfuel/ecs-deploy#231), and a missing iam:PassRole permission comes as
# AccessDeniedException (docs/aws-behaviour.md, "Messages matched").
# 2 minutes: Terraform's ECS propagationTimeout,
# https://github.com/hashicorp/terraform-provider-aws/blob/main/internal/service/ecs/consts.go
ROLE_NOT_ASSUMABLE = Retry(
    "a new IAM role is not assumable yet",
    frozenset(),
    budget_seconds=120,
    messages=(
        ("InvalidParameterException", "ECS was unable to assume the role"),
        ("ClientException", "ECS was unable to assume the role"),
    ),
)

# CreateFlowLogs naming a role made seconds ago: EC2 answers InvalidParameter "Unable to assume given
# IAM role" until IAM has propagated the role to the flow logs service. A wrong role (another trust
# policy) answers the same, so the rule is used only right after this run created the role
# (StepContext.fresh). The code, phrase and budget (iamPropagationTimeout, 2 minutes) are Terraform's
# resourceLogFlowCreate:
# https://github.com/hashicorp/terraform-provider-aws/blob/main/internal/service/ec2/vpc_flow_log.go
FLOW_LOGS_ROLE_NOT_ASSUMABLE = Retry(
    "a new IAM role is not assumable by the flow logs service yet",
    frozenset(),
    budget_seconds=120,
    messages=(("InvalidParameter", "Unable to assume given IAM role"),),
)

# CreateService before the listener's link to the target group, the cluster, or the
# ECS service-linked role have propagated. The codes and phrases are exactly those of
# Terraform's retryServiceCreate, with its budget: propagationTimeout + serviceCreateTimeout
# = 2 + 2 minutes (https://github.com/hashicorp/terraform-provider-aws/blob/main/internal/service/ecs/service.go).
SERVICE_NOT_READY = Retry(
    "the load balancer or the ECS service-linked role is not ready for the service yet",
    frozenset({"ClusterNotFoundException"}),
    budget_seconds=240,
    messages=(
        # "The target group with targetGroupArn <arn> does not have an associated load balancer."
        ("InvalidParameterException", "does not have an associated load balancer"),
        # "Unable to assume the service linked role. Please verify that the ECS service linked role exists."
        ("InvalidParameterException", "Unable to assume the service linked role"),
        # "Unable to assume role and validate the specified targetGroupArn. Please verify that
        # the ECS service role being passed has the proper permissions."
        ("InvalidParameterException", "verify that the ECS service role being passed has the proper permissions"),
    ),
)

# CreateCluster in an account that has never used ECS: ECS makes its service-linked role
# AWSServiceRoleForECS on the first call and answers InvalidParameterException "Unable to assume
# the service linked role. Please verify that the ECS service linked role exists." until it can
# use it. Terraform's retryClusterCreate retries exactly that phrase for propagationTimeout, 2 min
# (https://github.com/hashicorp/terraform-provider-aws/blob/main/internal/service/ecs/cluster.go).
# The role is made with the caller's permissions: without iam:CreateServiceLinkedRole it never
# appears, which ClusterStep checks instead of waiting the budget out (ensure_ecs_service_linked_role).
SERVICE_LINKED_ROLE_NOT_READY = Retry(
    "the ECS service-linked role is being created",
    frozenset(),
    budget_seconds=120,
    messages=(("InvalidParameterException", "Unable to assume the service linked role"),),
)

# A subnet or security group made a moment ago, named by CreateLoadBalancer: ELBv2 answers with
# its own codes, SubnetNotFound and InvalidSecurityGroup (botocore's elbv2 model lists them as
# CreateLoadBalancer's errors; it can return no EC2 "*.NotFound" code). A new VPC named by
# CreateTargetGroup: ValidationError "The VPC ID 'vpc-…' is not found" (ansible/ansible#31919,
# https://github.com/ansible/ansible/issues/31919). A wrong id answers the same, so these are retried
# only right after this run created the resource (StepContext.fresh), within the EC2 budget.
NEW_NETWORK_NOT_VISIBLE_TO_ELB = Retry(
    "a new subnet, security group or VPC is not visible to the load balancer service yet",
    frozenset({"SubnetNotFound", "InvalidSecurityGroup"}),
    budget_seconds=300,
    messages=(("ValidationError", "The VPC ID"),),
)

# The same for CreateService/UpdateService: ECS wraps EC2's answer in InvalidParameterException,
# "Error retrieving subnet information for [subnet-…]: The subnet ID 'subnet-…' does not exist
# (ErrorCode: InvalidSubnetID.NotFound)" (AWS's wording, which moto's ECS backend reproduces:
# https://github.com/getmoto/moto/blob/master/moto/ecs/models.py) and "Error retrieving
# security group information for [sg-…]: The security group 'sg-…' does not exist (ErrorCode:
# InvalidGroup.NotFound)". Terraform's retryServiceCreate does not list them (its subnets are
# usually old); here they are retried only right after this run created the subnet or group.
NEW_NETWORK_NOT_VISIBLE_TO_ECS = Retry(
    "a new subnet or security group is not visible to ECS yet",
    frozenset(),
    budget_seconds=300,
    messages=(
        ("InvalidParameterException", "Error retrieving subnet information for"),
        ("InvalidParameterException", "Error retrieving security group information for"),
    ),
)

# Teardown: a dependency (network interfaces of the NLB or of stopped tasks, a public
# IP mapped through the gateway) lingers for minutes after its owner is deleted
# (docs/aws-behaviour.md, "Teardown"; 20 minutes covers Terraform's subnet delete timeout).
STILL_IN_USE = Retry(
    "a dependency is still being released",
    frozenset(
        {
            "DependencyViolation",
            "InvalidGroup.InUse",
            "ResourceInUse",
            "ClusterContainsServicesException",
            "ClusterContainsTasksException",
            "UpdateInProgressException",
        }
    ),
    budget_seconds=1200,
)

# A certificate ACM issued a moment ago: "After successful completion of the RequestCertificate action,
# there is a delay of several seconds before you can retrieve information about the new certificate"
# (ACM API reference, RequestCertificate:
# https://docs.aws.amazon.com/acm/latest/APIReference/API_RequestCertificate.html); meanwhile
# DescribeCertificate answers ResourceNotFoundException, as it does for a wrong ARN, so the rule is used
# only right after this run requested the certificate (StepContext.fresh). 5 minutes: the time Terraform
# gives a new certificate to show its validation records (certificateDNSValidationAssignmentTimeout,
# https://github.com/hashicorp/terraform-provider-aws/blob/main/internal/service/acm/certificate.go).
NEW_CERTIFICATE_NOT_VISIBLE = Retry(
    "a new ACM certificate is not visible yet",
    frozenset({"ResourceNotFoundException"}),
    budget_seconds=300,
)

# ELB's view of a certificate lags ACM's: CreateListener and ModifyListener answer CertificateNotFound (in
# botocore's elbv2 model for both) for a certificate ACM has just issued. Terraform retries both on that code
# for 5 minutes (resourceListenerCreate / resourceListenerUpdate, `tfresource.RetryWhenAWSErrCodeEquals(...,
# elbv2.ErrCodeCertificateNotFoundException)`, internal/service/elbv2/listener.go). The TLS listener's
# certificate was checked to exist and be ISSUED just before (certificates.wait_issued), so the code there
# means "not yet".
CERTIFICATE_NOT_YET_AT_ELB = Retry(
    "the load balancer does not see the new certificate yet",
    frozenset({"CertificateNotFound"}),
    budget_seconds=300,
)

# DeleteCertificate while a load balancer still holds the certificate: ACM answers ResourceInUseException
# ("The certificate is in use by another Amazon Web Services service in the caller's account", ACM API
# reference, DeleteCertificate: https://docs.aws.amazon.com/acm/latest/APIReference/API_DeleteCertificate.html),
# and ELB releases it some time after the listener stops using it. The code is ACM's exception shape name
# (the shape has no other error code); ECS and ELB spell theirs ResourceInUse (STILL_IN_USE). 20 minutes:
# Terraform's certificateCrossServicePropagationTimeout, with which resourceCertificateDelete retries it
# (https://github.com/hashicorp/terraform-provider-aws/blob/main/internal/service/acm/certificate.go).
CERTIFICATE_IN_USE = Retry(
    "the load balancer has not released the certificate yet",
    frozenset({"ResourceInUseException"}),
    budget_seconds=1200,
)

# DeleteService while ECS is still rolling out: InvalidParameterException "The service
# cannot be stopped while deployments are active." The phrase and the 20-minute budget
# (the delete timeout) are Terraform's resourceServiceDelete, in the same service.go.
SERVICE_STILL_DEPLOYING = Retry(
    "the service still has an active deployment",
    frozenset(),
    budget_seconds=1200,
    messages=(("InvalidParameterException", "The service cannot be stopped while deployments are active"),),
)


def with_retries(
    call: Callable[[], T],
    rules: tuple[Retry, ...],
    sleep: Callable[[float], None],
    clock: Callable[[], float],
    say: Callable[[str], None],
) -> T:
    """Run `call`; while it fails with an answer a rule calls transient, wait and try again."""
    started = clock()
    delay = FIRST_DELAY
    while True:
        try:
            return call()
        except ClientError as exc:
            rule = next((rule for rule in rules if rule.matches(exc)), None)
            if rule is None or clock() - started + delay > rule.budget_seconds:
                raise
            say(f"  AWS says {error_code(exc)} ({rule.why}); retrying in {delay:.0f} s")
            sleep(delay)
            delay = min(delay * 2, MAX_DELAY)


# Application Auto Scaling (deployer/steps/scaling.py). Its budgets are Terraform's propagationTimeout for the
# service, 2 minutes (internal/service/appautoscaling/consts.go in
# https://github.com/hashicorp/terraform-provider-aws).
#
# RegisterScalableTarget in an account that has never scaled an ECS service: Application Auto Scaling makes its
# service-linked role AWSServiceRoleForApplicationAutoScaling_ECSService with the caller's permissions, and answers
# ValidationException "Unable to assume IAM role: arn:aws:iam::<account>:role/aws-service-role/
# ecs.application-autoscaling.amazonaws.com/AWSServiceRoleForApplicationAutoScaling_ECSService" until it can use it
# (aws-samples/amazon-bedrock-samples#253 quotes it; aws/aws-cdk#4108). A service made a moment ago answers
# ValidationException "ECS service doesn't exist: service/<cluster>/<service>". Terraform's registerScalableTarget
# retries exactly these two phrases (internal/service/appautoscaling/target.go). ValidationException also carries
# permanent errors (a bad MinCapacity), hence the phrases.
SCALABLE_TARGET_NOT_READY = Retry(
    "the Application Auto Scaling service-linked role or the new service is not ready yet",
    frozenset(),
    budget_seconds=120,
    messages=(
        ("ValidationException", "Unable to assume IAM role"),
        ("ValidationException", "ECS service doesn't exist"),
    ),
)

# PutScalingPolicy right after RegisterScalableTarget: ObjectNotFoundException ("the scalable target with the
# specified service namespace, resource ID, and scalable dimension does not exist", API reference, Errors:
# https://docs.aws.amazon.com/autoscaling/application/APIReference/API_PutScalingPolicy.html) until the new target
# is visible ("there might be a brief delay until the operation achieves eventual consistency", RegisterScalableTarget
# in the same reference). A target deregistered by hand answers the same, so the code is retried only right after
# this run registered the target (StepContext.fresh). Terraform's resourcePolicyCreate / resourcePolicyUpdate retry it
# for propagationTimeout (internal/service/appautoscaling/policy.go).
NEW_SCALABLE_TARGET_NOT_VISIBLE = Retry(
    "the new scalable target is not visible yet",
    frozenset({"ObjectNotFoundException"}),
    budget_seconds=120,
)

# FailedResourceAccessException: Application Auto Scaling could not reach the policy's CloudWatch alarms through its
# service-linked role ("unable to retrieve the alarms associated with a scaling policy due to a client error", API
# reference, Common errors of PutScalingPolicy / DescribeScalingPolicies), which a role made or changed a moment ago
# does while IAM propagates ("is not authorized to perform", "Rate exceeded", "token included in the request is
# invalid" are the messages Terraform's resourcePolicyCreate retries; resourcePolicyUpdate and resourcePolicyDelete
# retry the code whatever the message, policy.go above). ConcurrentUpdateException: "you request an update to an
# Application Auto Scaling resource that already has a pending update" (API reference, the errors of
# RegisterScalableTarget, PutScalingPolicy, DeleteScalingPolicy, DeregisterScalableTarget): by that definition it
# passes once the pending update is applied. Terraform does not list it; it is retried within the same budget.
SCALING_BUSY = Retry(
    "Application Auto Scaling is still applying an earlier change or cannot reach the alarms yet",
    frozenset({"FailedResourceAccessException", "ConcurrentUpdateException"}),
    budget_seconds=120,
)
