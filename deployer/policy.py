"""The IAM policy the deploying identity needs: `python provision.py --print-policy`.

One table, `TABLE`, says for each AWS call the tool makes (boto3 service name and
operation, as botocore names them) which IAM actions AWS checks for it, and under
which statement (`GROUPS`: resources and condition). Besides the action of the call
itself, a call can need others that AWS checks alongside it: tags given in a create
call (`ec2:CreateTags`, `elasticloadbalancing:AddTags`, `ecs:TagResource`, ...), the
roles a task definition names (`iam:PassRole`), the service-linked role ECS creates on
first use (`iam:CreateServiceLinkedRole`). The image push and the registry lookup go
through the Docker engine, not boto3 (`ENGINE`): they need ECR's registry actions.

`document(settings, partition, region, account)` groups the rows that apply (the
registry rows only when the image is built, not given with `image`/`--image`) into one
statement per group, with the stack's ARNs; `documents(...)` packs those statements
into as many documents as a managed policy's 6,144 characters require. Where AWS cannot scope an action to a
resource (Describe*, List*, ecr:GetAuthorizationToken, ...) the statement's Resource is
"*"; each group cites the Service Authorization Reference page that says so.
`sts:GetCallerIdentity` needs no permission (AWS answers it for any valid credentials).

tests/test_policy.py records every call of provision, redeploy, rollback, status,
logs and teardown and checks both ways: every call is allowed, every action is used.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from deployer.settings import Names, Settings
from deployer.state import State
from deployer.steps.base import STACK_TAG, SUPERSEDED

REFERENCE = "https://docs.aws.amazon.com/service-authorization/latest/reference/"
EC2_PAGE = REFERENCE + "list_amazonec2.html"
ELB_PAGE = REFERENCE + "list_awselasticloadbalancingv2.html"
ECS_PAGE = REFERENCE + "list_amazonelasticcontainerservice.html"
ECR_PAGE = REFERENCE + "list_amazonelasticcontainerregistry.html"
LOGS_PAGE = REFERENCE + "list_amazoncloudwatchlogs.html"
IAM_PAGE = REFERENCE + "list_awsidentityandaccessmanagementiam.html"
KMS_PAGE = REFERENCE + "list_awskeymanagementservice.html"
ACM_PAGE = REFERENCE + "list_awscertificatemanager.html"
ROUTE53_PAGE = REFERENCE + "list_amazonroute53.html"
AAS_PAGE = REFERENCE + "list_awsapplicationautoscaling.html"
CLOUDWATCH_PAGE = REFERENCE + "list_amazoncloudwatch.html"
# What PutScalingPolicy and DeleteScalingPolicy need of the caller besides Application Auto Scaling's own actions:
# target tracking makes and deletes its CloudWatch alarms with the caller's permissions, and reads and scales the
# service (Application Auto Scaling user guide, "Permissions required for actions on target services and CloudWatch":
# https://docs.aws.amazon.com/autoscaling/application/userguide/security_iam_id-based-policy-examples.html).
AAS_CALLER_PAGE = (
    "https://docs.aws.amazon.com/autoscaling/application/userguide/security_iam_id-based-policy-examples.html"
)
# Route 53's condition keys take record names normalised: lower case, no trailing dot (Route 53 developer
# guide, "Using IAM policy conditions for fine-grained access control to manage DNS records":
# https://docs.aws.amazon.com/Route53/latest/DeveloperGuide/specifying-conditions-route53.html).
ROUTE53_RECORDS_PAGE = "https://docs.aws.amazon.com/Route53/latest/DeveloperGuide/specifying-conditions-route53.html"
S3_PAGE = REFERENCE + "list_amazons3.html"
ECR_PUSH_PAGE = "https://docs.aws.amazon.com/AmazonECR/latest/userguide/image-push-iam.html"

MANAGED_POLICY_LIMIT = 6144  # characters, white space not counted (IAM and STS quotas)
ENGINE = "engine"  # the Docker engine's registry calls (deployer/images.py), not boto3
ECS_SERVICE_LINKED_ROLE = "ecs.amazonaws.com"
AAS_SERVICE_LINKED_ROLE = "ecs.application-autoscaling.amazonaws.com"
ALARMS_SERVICE_LINKED_ROLE = "ssm.alarms.cloudwatch.amazonaws.com"

# IAM's prefix for each boto3 service name, where they differ.
PREFIX = {"elbv2": "elasticloadbalancing"}

EC2 = "arn:{partition}:ec2:{region}:{account}:"
EC2_CREATES = (
    "CreateVpc",
    "CreateSubnet",
    "CreateInternetGateway",
    "CreateRouteTable",
    "CreateSecurityGroup",
    "CreateFlowLogs",
    "CreateNetworkAcl",
    "AllocateAddress",
    "CreateNatGateway",
)
ELB = "arn:{partition}:elasticloadbalancing:{region}:{account}:"
# loadbalancer/net/<name>/<id> and listener/net/<name>/<id>/<id>; targetgroup/<name>/<id>
ELB_ARNS = (
    ELB + "*/net/{load_balancer}/*",
    ELB + "targetgroup/{target_group}/*",
    ELB + "targetgroup/{redirect_target_group}/*",
)
ECS = "arn:{partition}:ecs:{region}:{account}:"
# cluster/<cluster>, and what lives in it: service/<cluster>/<service>, task/<cluster>/<id>
ECS_ARNS = (ECS + "*/{cluster}", ECS + "*/{cluster}/*")
REPOSITORY = "arn:{partition}:ecr:{region}:{account}:repository/{repository}"
LOG_GROUP = "arn:{partition}:logs:{region}:{account}:log-group:{log_group}"
EXECUTION_ROLE = "arn:{partition}:iam::{account}:role/{execution_role}"
TASK_ROLE = "arn:{partition}:iam::{account}:role/{task_role}"
FLOW_LOGS_ROLE = "arn:{partition}:iam::{account}:role/{flow_logs_role}"
ECS_ROLES = (EXECUTION_ROLE, TASK_ROLE)
ROLES = (*ECS_ROLES, FLOW_LOGS_ROLE)
FLOW_LOG_GROUP = "arn:{partition}:logs:{region}:{account}:log-group:{flow_log_group}"
KMS_KEYS = "arn:{partition}:kms:{region}:{account}:key/*"
KMS_ALIAS = "arn:{partition}:kms:{region}:{account}:{log_key_alias}"
OURS = {f"aws:ResourceTag/{STACK_TAG}": "{stack}"}
CERTIFICATES = "arn:{partition}:acm:{region}:{account}:certificate/*"
DNS = ("validation-record", "dns-alias")  # the steps whose records Route 53 deletes
HOSTED_ZONES = "arn:{partition}:route53:::hostedzone/*"  # the zone is found at run time: any of the account's
TAGGED = {f"aws:RequestTag/{STACK_TAG}": "{stack}"}
# A scalable target's ARN ends in an ID AWS makes up; the namespace and dimension keys hold it to ECS desired counts.
SCALABLE_TARGETS = "arn:{partition}:application-autoscaling:{region}:{account}:scalable-target/*"
ECS_DESIRED_COUNT = {
    "application-autoscaling:service-namespace": "ecs",
    "application-autoscaling:scalable-dimension": "ecs:service:DesiredCount",
}
ALARMS = "arn:{partition}:cloudwatch:{region}:{account}:alarm:"
# Target tracking names its two alarms TargetTracking-<resource id>-AlarmHigh-<uuid> / -AlarmLow-<uuid>.
TARGET_TRACKING_ALARMS = ALARMS + "TargetTracking-service/{cluster}/{service}-*"


@dataclass(frozen=True)
class Group:
    """One statement: where its actions apply, on what condition, and the pages that say AWS supports it."""

    resources: tuple[str, ...]
    references: tuple[str, ...]
    condition: dict[str, dict[str, Any]] | None = None


# Statements are kept few and their ARNs short: a managed policy holds at most 6,144 characters.
GROUPS: dict[str, Group] = {
    # Actions these pages list with no resource type, so Resource must be "*": EC2's and Elastic Load
    # Balancing's Describe*; ECS's DescribeTaskDefinition, ListTaskDefinitions, ListTasks (by cluster, not
    # resource) and DeregisterTaskDefinition, DeleteTaskDefinitions (see UNSCOPED_WRITES); ECR's
    # GetAuthorizationToken (registry-wide); CloudWatch Logs' DescribeLogGroups (lists by prefix).
    # KMS's ListKeys and ListAliases (account-wide lists); ACM's ListCertificates; Route 53's ListHostedZones
    # and ListHostedZonesByName.
    "Unscoped": Group(("*",), (EC2_PAGE, ELB_PAGE, ECS_PAGE, ECR_PAGE, LOGS_PAGE, KMS_PAGE, ACM_PAGE, ROUTE53_PAGE)),
    # EC2 resources have no names: a new one is allowed only with the stack's tag in the request. The VPC
    # that a subnet, route table or security group goes into is authorized by Ec2Tagged: it must be ours.
    "Ec2CreateVpc": Group((EC2 + "vpc/*",), (EC2_PAGE,), {"StringEquals": TAGGED}),
    "Ec2Create": Group(
        tuple(
            EC2 + kind + "/*"
            for kind in (
                "subnet",
                "internet-gateway",
                "route-table",
                "security-group",
                "vpc-flow-log",
                "network-acl",
                "elastic-ip",
                "natgateway",
            )
        ),
        (EC2_PAGE,),
        {"StringEquals": TAGGED},
    ),
    # CreateTags only as part of a create call (its TagSpecifications); the creates allowed are EC2_CREATES.
    "Ec2TagOnCreate": Group((EC2 + "*/*",), (EC2_PAGE,), {"StringLike": {"ec2:CreateAction": "Create*"}}),
    # Changes and deletes (and the VPC a create places a resource in): only what carries the stack's tag.
    "Ec2Tagged": Group((EC2 + "*/*",), (EC2_PAGE,), {"StringEquals": OURS}),
    # Teardown gives the main role back to the VPC's original main route table, which AWS created with the
    # VPC, untagged: the association can only be scoped to route tables of the account and region.
    "Ec2MainRouteTable": Group((EC2 + "route-table/*",), (EC2_PAGE,)),
    # The VPC's default security group and default network ACL, which AWS created with the VPC, untagged:
    # emptied (deployer/steps/firewall.py), and the subnets' ACL association moved off and back onto the
    # default ACL. Scoped to those resource types of the account and region.
    "Ec2VpcDefaults": Group(
        (EC2 + "security-group/*", EC2 + "network-acl/*", EC2 + "subnet/*"),
        (EC2_PAGE,),
    ),
    "Elb": Group(ELB_ARNS, (ELB_PAGE,)),
    # AddTags only as part of those create calls, as in ELB's "ELB API permissions to tag resources during creation".
    "ElbTagOnCreate": Group(
        ("*",),
        (
            ELB_PAGE,
            "https://docs.aws.amazon.com/elasticloadbalancing/latest/userguide/tagging-resources-during-creation.html",
        ),
        {
            "StringEquals": {
                "elasticloadbalancing:CreateAction": ["CreateListener", "CreateLoadBalancer", "CreateTargetGroup"]
            }
        },
    ),
    # RegisterTaskDefinition takes no resource type: a new revision is held to the stack's tag in the request.
    "EcsRegister": Group(("*",), (ECS_PAGE,), {"StringEquals": TAGGED}),
    "Ecs": Group(ECS_ARNS, (ECS_PAGE,)),
    # TagResource only as part of those create calls, as in ECS's "Grant permission to tag resources on creation".
    "EcsTagOnCreate": Group(
        ("*",),
        (ECS_PAGE, "https://docs.aws.amazon.com/AmazonECS/latest/developerguide/supported-iam-actions-tagging.html"),
        {"StringEquals": {"ecs:CreateAction": ["CreateCluster", "CreateService", "RegisterTaskDefinition"]}},
    ),
    # The repository, and the image push and pull through the Docker engine (ECR's push permissions page).
    "Ecr": Group((REPOSITORY,), (ECR_PAGE, ECR_PUSH_PAGE)),
    "Logs": Group((LOG_GROUP, LOG_GROUP + ":*", FLOW_LOG_GROUP, FLOW_LOG_GROUP + ":*"), (LOGS_PAGE,)),
    "IamRoles": Group(ROLES, (IAM_PAGE,)),
    # Only the task role gets managed policies, only those the settings name (the execution role's
    # permissions are its inline policy, deployer/steps/iam.py).
    "IamAttach": Group((TASK_ROLE,), (IAM_PAGE,), {"ArnEquals": {"iam:PolicyARN": "{policy_arns}"}}),
    # An inline policy can say anything: only on the execution role and the flow-logs role, whose
    # policies the tool writes.
    "IamExecutionInline": Group((EXECUTION_ROLE, FLOW_LOGS_ROLE), (IAM_PAGE,)),
    "IamPassRole": Group(ECS_ROLES, (IAM_PAGE,), {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}),
    # CreateFlowLogs passes the flow-logs role to the flow logs service (VPC user guide, "IAM role for
    # publishing flow logs": https://docs.aws.amazon.com/vpc/latest/userguide/flow-logs-iam-role.html).
    "IamPassFlowLogsRole": Group(
        (FLOW_LOGS_ROLE,), (IAM_PAGE,), {"StringEquals": {"iam:PassedToService": "vpc-flow-logs.amazonaws.com"}}
    ),
    # log_kms_key = "create": a new key only with the stack's tag in the request (CreateKey has no
    # resource: the key does not exist yet).
    "KmsCreate": Group(("*",), (KMS_PAGE,), {"StringEquals": TAGGED}),
    # Reads of keys in the region: the stack's key is found through its alias, or by its tags among them.
    "KmsRead": Group((KMS_KEYS,), (KMS_PAGE,)),
    # Changes: only a key that carries the stack's tag.
    "KmsTagged": Group((KMS_KEYS,), (KMS_PAGE,), {"StringEquals": OURS}),
    # Alias calls are authorized on the alias and on its key (KMS developer guide, "Controlling access to
    # aliases": https://docs.aws.amazon.com/kms/latest/developerguide/alias-access.html); aliases carry no tags.
    "KmsAlias": Group((KMS_ALIAS, KMS_KEYS), (KMS_PAGE,)),
    # A domain (deployer/steps/certificates.py): a new certificate only with the stack's tag, for the domain
    # alone, validated by DNS. RequestCertificate has no resource (the certificate does not exist yet).
    "AcmRequest": Group(
        ("*",),
        (ACM_PAGE,),
        {
            "StringEquals": {**TAGGED, "acm:ValidationMethod": "DNS"},
            "ForAllValues:StringEquals": {"acm:DomainNames": ["{domain}"]},
        },
    ),
    # The tags given with RequestCertificate (terraform-provider-aws#11903: AccessDenied without it).
    "AcmTagOnCreate": Group((CERTIFICATES,), (ACM_PAGE,), {"StringEquals": TAGGED}),
    # Reads of the region's certificates: the stack's, found by its tags, and a `certificate_arn` of the user's.
    "AcmRead": Group((CERTIFICATES,), (ACM_PAGE,)),
    "AcmTagged": Group((CERTIFICATES,), (ACM_PAGE,), {"StringEquals": OURS}),
    # Records cannot be tagged, and the zone is found at run time: reads on the account's zones; writes
    # (UPSERT) held to the domain's two names (the alias, and ACM's `_<token>.<domain>` validation record)
    # and their two types.
    "Route53Read": Group((HOSTED_ZONES,), (ROUTE53_PAGE,)),
    "Route53Records": Group(
        (HOSTED_ZONES,),
        (ROUTE53_PAGE, ROUTE53_RECORDS_PAGE),
        {
            "ForAllValues:StringLike": {
                "route53:ChangeResourceRecordSetsNormalizedRecordNames": ["{domain}", "_*.{domain}"]
            },
            "ForAllValues:StringEquals": {
                "route53:ChangeResourceRecordSetsRecordTypes": ["A", "CNAME"],
                "route53:ChangeResourceRecordSetsActions": ["UPSERT"],
            },
        },
    ),
    # Deletes: the domain's two names and every record name the state file records (after a change of
    # `domain`, the previous domain's alias and validation record; `--print-policy` reads the state), the two
    # types and the one action.
    "Route53Delete": Group(
        (HOSTED_ZONES,),
        (ROUTE53_PAGE, ROUTE53_RECORDS_PAGE),
        {
            "ForAllValues:StringLike": {"route53:ChangeResourceRecordSetsNormalizedRecordNames": "{record_names}"},
            "ForAllValues:StringEquals": {
                "route53:ChangeResourceRecordSetsRecordTypes": ["A", "CNAME"],
                "route53:ChangeResourceRecordSetsActions": ["DELETE"],
            },
        },
    ),
    "Route53Change": Group(("arn:{partition}:route53:::change/*",), (ROUTE53_PAGE,)),
    # Autoscaling (deployer/steps/scaling.py): a new scalable target only with the stack's tag in the request;
    # updates, policies and the deregistration only on a target that carries it.
    "AasRegister": Group((SCALABLE_TARGETS,), (AAS_PAGE,), {"StringEquals": {**TAGGED, **ECS_DESIRED_COUNT}}),
    "AasTagged": Group((SCALABLE_TARGETS,), (AAS_PAGE,), {"StringEquals": {**OURS, **ECS_DESIRED_COUNT}}),
    # A lost state reads the tags of a target on the stack's service to tell ours from someone else's.
    "AasRead": Group((SCALABLE_TARGETS,), (AAS_PAGE,)),
    # The deployment alarms (deployer/steps/alarms.py), by name; DescribeAlarms on the region's alarms, read-only
    # (the service's alarms in status and the rollout watcher, target tracking's in PutScalingPolicy).
    "Alarms": Group((ALARMS + "{unhealthy_alarm}", ALARMS + "{shortfall_alarm}"), (CLOUDWATCH_PAGE,)),
    "AlarmsRead": Group((ALARMS + "*",), (CLOUDWATCH_PAGE,)),
    "CloudWatchTargetTracking": Group((TARGET_TRACKING_ALARMS,), (CLOUDWATCH_PAGE, AAS_CALLER_PAGE)),
    "IamAasLinkedRole": Group(
        (
            "arn:{partition}:iam::{account}:role/aws-service-role/ecs.application-autoscaling.amazonaws.com/"
            "AWSServiceRoleForApplicationAutoScaling_ECSService",
        ),
        (
            IAM_PAGE,
            "https://docs.aws.amazon.com/autoscaling/application/userguide/application-auto-scaling-service-linked-roles.html",
        ),
        {"StringEquals": {"iam:AWSServiceName": AAS_SERVICE_LINKED_ROLE}},
    ),
    # The alarms' OpsItem action (deployer/steps/alarms.py): PutMetricAlarm makes CloudWatch's role on first use.
    "IamAlarmsLinkedRole": Group(
        (
            "arn:{partition}:iam::{account}:role/aws-service-role/ssm.alarms.cloudwatch.amazonaws.com/"
            "AWSServiceRoleForCloudWatchAlarms_ActionSSM",
        ),
        (IAM_PAGE, "https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/using-service-linked-roles.html"),
        {"StringEquals": {"iam:AWSServiceName": ALARMS_SERVICE_LINKED_ROLE}},
    ),
    # A state kept in S3 (deployer/s3state.py): its bucket, and the state object and its lock.
    "StateBucket": Group(("arn:{partition}:s3:::{state_bucket}",), (S3_PAGE,)),
    "StateObjects": Group(
        ("arn:{partition}:s3:::{state_bucket}/{state_key}", "arn:{partition}:s3:::{state_bucket}/{state_key}.lock"),
        (S3_PAGE,),
    ),
    "IamEcsLinkedRole": Group(
        ("arn:{partition}:iam::{account}:role/aws-service-role/ecs.amazonaws.com/AWSServiceRoleForECS",),
        (IAM_PAGE,),
        {"StringEquals": {"iam:AWSServiceName": ECS_SERVICE_LINKED_ROLE}},
    ),
}


@dataclass(frozen=True)
class Row:
    """`operations` of boto3 `service` need `actions` (default: the operation's own action) under `group`."""

    service: str
    operations: str
    group: str
    actions: str = ""
    built_only: bool = False  # only when the image is built and pushed (not with `image`)
    when: Callable[[Settings], bool] | None = None  # only for settings where this holds,
    # or when the state records one of these steps (a setting turned off: provision removes their resources)
    recorded: tuple[str, ...] = ()


def _managed_dns(settings: Settings) -> bool:
    return settings.managed_dns


def _https(settings: Settings) -> bool:
    return settings.https


def _autoscaling(settings: Settings) -> bool:
    return settings.autoscaling


def _s3_state(settings: Settings) -> bool:
    return settings.state_location is not None


SCALING = ("scalable-target", "cpu-scaling", "memory-scaling")  # what going back to a fixed count removes


TABLE: tuple[Row, ...] = (
    Row(
        "ec2",
        "DescribeAddresses DescribeAvailabilityZones DescribeFlowLogs DescribeInternetGateways DescribeNatGateways "
        "DescribeNetworkAcls DescribeNetworkInterfaces DescribeRouteTables DescribeSecurityGroups DescribeSubnets "
        "DescribeVpcAttribute DescribeVpcs",
        "Unscoped",
    ),
    Row("ec2", "CreateVpc", "Ec2CreateVpc"),
    Row("ec2", " ".join(EC2_CREATES[1:]), "Ec2Create"),
    Row("ec2", " ".join(EC2_CREATES), "Ec2TagOnCreate", actions="ec2:CreateTags"),
    Row(
        "ec2",
        "AssociateRouteTable AttachInternetGateway AuthorizeSecurityGroupIngress CreateFlowLogs CreateNatGateway "
        "CreateNetworkAcl CreateNetworkAclEntry CreateRoute CreateRouteTable CreateSecurityGroup CreateSubnet "
        "DeleteFlowLogs DeleteInternetGateway DeleteNatGateway DeleteNetworkAcl DeleteRouteTable "
        "DeleteSecurityGroup DeleteSubnet DeleteVpc DetachInternetGateway DisassociateRouteTable ModifyVpcAttribute "
        "ReleaseAddress ReplaceRoute ReplaceNetworkAclEntry RevokeSecurityGroupIngress",
        "Ec2Tagged",
    ),
    Row(
        "ec2",
        "DeleteNetworkAclEntry ReplaceNetworkAclAssociation RevokeSecurityGroupEgress RevokeSecurityGroupIngress",
        "Ec2VpcDefaults",
    ),
    Row("ec2", "ReplaceRouteTableAssociation", "Ec2MainRouteTable"),
    Row(
        "elbv2",
        "DescribeListeners DescribeLoadBalancerAttributes DescribeLoadBalancers DescribeTags "
        "DescribeTargetGroupAttributes DescribeTargetGroups DescribeTargetHealth",
        "Unscoped",
    ),
    Row(
        "elbv2",
        "CreateListener CreateLoadBalancer CreateTargetGroup DeleteListener DeleteLoadBalancer DeleteTargetGroup "
        "ModifyListener ModifyLoadBalancerAttributes ModifyTargetGroup ModifyTargetGroupAttributes "
        "SetSecurityGroups SetSubnets",
        "Elb",
    ),
    Row(
        "elbv2",
        "CreateListener CreateLoadBalancer CreateTargetGroup",
        "ElbTagOnCreate",
        actions="elasticloadbalancing:AddTags",
    ),
    Row("ecs", "DescribeTaskDefinition ListTaskDefinitions ListTasks", "Unscoped"),
    Row("ecs", "RegisterTaskDefinition", "EcsRegister"),
    Row("ecs", "DeregisterTaskDefinition DeleteTaskDefinitions", "Unscoped"),
    Row(
        "ecs",
        "CreateCluster CreateService DeleteCluster DeleteService DescribeClusters "
        "DescribeServices DescribeTasks UpdateCluster UpdateService",
        "Ecs",
    ),
    Row("ecs", "CreateCluster CreateService RegisterTaskDefinition", "EcsTagOnCreate", actions="ecs:TagResource"),
    Row("ecs", "RegisterTaskDefinition CreateService UpdateService", "IamPassRole", actions="iam:PassRole"),
    Row("ecs", "CreateCluster CreateService", "IamEcsLinkedRole", actions="iam:CreateServiceLinkedRole"),
    Row("ecr", "GetAuthorizationToken", "Unscoped", built_only=True),
    Row(
        "ecr",
        "CreateRepository DeleteRepository DescribeRepositories GetLifecyclePolicy ListTagsForResource "
        "PutImageScanningConfiguration PutImageTagMutability PutLifecyclePolicy",
        "Ecr",
    ),
    # The scan of an image in the repository (deployer/scan.py); also for an `image` that names the repository.
    Row("ecr", "DescribeImageScanFindings", "Ecr"),
    Row("ecr", "CreateRepository", "Ecr", actions="ecr:TagResource"),
    Row(ENGINE, "lookup", "Ecr", actions="ecr:BatchGetImage", built_only=True),
    Row(
        ENGINE,
        "push",
        "Ecr",
        actions="ecr:BatchCheckLayerAvailability ecr:BatchGetImage ecr:CompleteLayerUpload ecr:InitiateLayerUpload "
        "ecr:PutImage ecr:UploadLayerPart",
        built_only=True,
    ),
    Row(ENGINE, "pull", "Ecr", actions="ecr:BatchGetImage ecr:GetDownloadUrlForLayer", built_only=True),
    Row("logs", "DescribeLogGroups", "Unscoped"),
    Row(
        "logs",
        "AssociateKmsKey CreateLogGroup DeleteLogGroup DisassociateKmsKey FilterLogEvents ListTagsForResource "
        "PutRetentionPolicy",
        "Logs",
    ),
    # CreateLogGroup's `tags`: "you must have the logs:TagResource and logs:TagLogGroup permissions".
    Row("logs", "CreateLogGroup", "Logs", actions="logs:TagResource logs:TagLogGroup"),
    Row(
        "iam",
        "CreateRole DeleteRole DeleteRolePolicy DetachRolePolicy GetRole GetRolePolicy ListAttachedRolePolicies "
        "ListRolePolicies UpdateAssumeRolePolicy",
        "IamRoles",
    ),
    Row("iam", "CreateRole", "IamRoles", actions="iam:TagRole"),
    Row("iam", "PutRolePolicy", "IamExecutionInline"),
    Row("iam", "AttachRolePolicy", "IamAttach", when=lambda settings: bool(settings.task_role_policy_arns)),
    Row("ec2", "CreateFlowLogs", "IamPassFlowLogsRole", actions="iam:PassRole"),
    Row("kms", "ListAliases ListKeys", "Unscoped"),
    # CreateKey's Tags need kms:TagResource (KMS API reference, CreateKey: "Tags").
    Row("kms", "CreateKey", "KmsCreate", actions="kms:CreateKey kms:TagResource"),
    Row("kms", "DescribeKey ListResourceTags", "KmsRead"),
    Row(
        "kms",
        "EnableKey EnableKeyRotation GetKeyPolicy GetKeyRotationStatus PutKeyPolicy ScheduleKeyDeletion",
        "KmsTagged",
    ),
    Row("kms", "CreateAlias DeleteAlias UpdateAlias", "KmsAlias"),
    # A domain in the account's hosted zone (managed_dns), or a certificate of the user's (https only).
    # Also without a domain: a lost state or `--sweep` looks for a certificate the stack made when it had one.
    # Also without a domain: `--sweep` and a lost state look for the stack's certificate among the region's.
    Row("acm", "ListCertificates", "Unscoped"),
    Row("acm", "ListTagsForCertificate", "AcmRead"),
    Row("acm", "RequestCertificate", "AcmRequest", when=_managed_dns),
    Row(
        "acm",
        "RequestCertificate",
        "AcmTagOnCreate",
        actions="acm:AddTagsToCertificate",
        when=_managed_dns,
    ),
    Row("acm", "DescribeCertificate", "AcmRead", when=_https, recorded=("certificate",)),
    Row("acm", "DeleteCertificate", "AcmTagged", when=_managed_dns, recorded=("certificate",)),
    Row("route53", "ListHostedZones ListHostedZonesByName", "Unscoped", when=_managed_dns),
    Row("route53", "ListResourceRecordSets", "Route53Read", when=_managed_dns, recorded=DNS),
    Row("route53", "ChangeResourceRecordSets", "Route53Records", when=_managed_dns),
    Row("route53", "ChangeResourceRecordSets", "Route53Delete", when=_managed_dns, recorded=DNS),
    Row("route53", "GetChange", "Route53Change", when=_managed_dns, recorded=DNS),
    # The deployment alarms: tags only with PutMetricAlarm's Tags (CloudWatch API reference, PutMetricAlarm: "Tags").
    Row("cloudwatch", "DescribeAlarms", "AlarmsRead"),
    Row("cloudwatch", "DeleteAlarms ListTagsForResource PutMetricAlarm", "Alarms"),
    Row("cloudwatch", "PutMetricAlarm", "Alarms", actions="cloudwatch:TagResource"),
    # The state in S3. HeadBucket is s3:ListBucket, which also makes a missing state answer 404 rather than 403
    # (GetObject's API reference); CreateBucket with tags needs s3:TagResource too (CreateBucket's API reference).
    Row("s3", "HeadBucket", "StateBucket", actions="s3:ListBucket", when=_s3_state),
    Row("s3", "CreateBucket", "StateBucket", actions="s3:CreateBucket s3:TagResource", when=_s3_state),
    Row(
        "s3", "GetBucketVersioning GetBucketTagging PutBucketVersioning PutBucketPolicy", "StateBucket", when=_s3_state
    ),
    Row("s3", "PutPublicAccessBlock", "StateBucket", actions="s3:PutBucketPublicAccessBlock", when=_s3_state),
    Row("s3", "PutBucketEncryption", "StateBucket", actions="s3:PutEncryptionConfiguration", when=_s3_state),
    Row("s3", "GetObject PutObject DeleteObject", "StateObjects", when=_s3_state),
    # The alarms' OpsItem action: the account's first makes CloudWatch's service-linked role with these rights.
    Row("cloudwatch", "PutMetricAlarm", "IamAlarmsLinkedRole", actions="iam:CreateServiceLinkedRole"),
    # Also without autoscaling: status, `--sweep` and a lost state look for a scalable target on the service.
    Row("application-autoscaling", "DescribeScalableTargets", "Unscoped"),
    Row("application-autoscaling", "ListTagsForResource", "AasRead"),
    Row(
        "application-autoscaling",
        "DescribeScalingPolicies DescribeScalingActivities",
        "Unscoped",
        when=_autoscaling,
        recorded=SCALING,
    ),
    Row(
        "application-autoscaling",
        "RegisterScalableTarget",
        "AasRegister",
        actions="application-autoscaling:RegisterScalableTarget application-autoscaling:TagResource",
        when=_autoscaling,
    ),
    Row("application-autoscaling", "RegisterScalableTarget PutScalingPolicy", "AasTagged", when=_autoscaling),
    Row(
        "application-autoscaling",
        "DeleteScalingPolicy DeregisterScalableTarget",
        "AasTagged",
        when=_autoscaling,
        recorded=SCALING,
    ),
    Row(
        "application-autoscaling",
        "PutScalingPolicy",
        "CloudWatchTargetTracking",
        actions="cloudwatch:PutMetricAlarm cloudwatch:DeleteAlarms",
        when=_autoscaling,
    ),
    Row(
        "application-autoscaling",
        "DeleteScalingPolicy DeregisterScalableTarget",
        "CloudWatchTargetTracking",
        actions="cloudwatch:DeleteAlarms",
        when=_autoscaling,
        recorded=SCALING,
    ),
    Row(
        "application-autoscaling",
        "PutScalingPolicy",
        "AlarmsRead",
        actions="cloudwatch:DescribeAlarms",
        when=_autoscaling,
    ),
    Row(
        "application-autoscaling",
        "RegisterScalableTarget PutScalingPolicy",
        "Ecs",
        actions="ecs:DescribeServices ecs:UpdateService",
        when=_autoscaling,
    ),
    # The account's first scalable target of ECS: Application Auto Scaling makes its role with the caller's rights
    # (and so does the tool, after "Unable to assume IAM role": the same action on the same role).
    Row(
        "application-autoscaling",
        "RegisterScalableTarget",
        "IamAasLinkedRole",
        actions="iam:CreateServiceLinkedRole",
        when=_autoscaling,
    ),
)

# Changing actions left on every resource: the revisions of the stack's family could be named by ARN
# (task-definition/<family>:*), but whether DeregisterTaskDefinition and DeleteTaskDefinitions accept a
# resource could not be confirmed from the reference here, and a wrong resource would refuse teardown.
UNSCOPED_WRITES = frozenset({"ecs:DeregisterTaskDefinition", "ecs:DeleteTaskDefinitions"})

# Calls every valid identity may make: AWS checks no permission for them.
NO_PERMISSION = {("sts", "GetCallerIdentity")}


def grants(
    service: str, operation: str, settings: Settings, recorded: frozenset[str] = frozenset()
) -> list[tuple[str, str]]:
    """(action, group) pairs the call `service`/`operation` needs under `settings`, with a state recording the
    steps `recorded`; empty for a call the table does not know."""
    found: list[tuple[str, str]] = []
    for row in TABLE:
        if row.service != service or operation not in row.operations.split():
            continue
        wanted = row.when is None or row.when(settings) or bool(recorded & set(row.recorded))
        if (row.built_only and settings.image is not None) or not wanted:
            continue
        actions = row.actions.split() or [f"{PREFIX.get(service, service)}:{operation}"]
        found.extend((action, row.group) for action in actions)
    return found


def statements(
    settings: Settings, partition: str, region: str, account: str, state: State | None = None
) -> list[dict[str, Any]]:
    """One Allow statement per group that has actions under these settings (and, with `state`, what removing
    the resources it records that the settings no longer want needs), in `GROUPS` order."""
    recorded = frozenset(record.step for record in state.resources) if state else frozenset()
    actions: dict[str, set[str]] = {}
    for row in TABLE:
        for operation in row.operations.split():
            for action, sid in grants(row.service, operation, settings, recorded):
                actions.setdefault(sid, set()).add(action)
    values = _values(settings, partition, region, account, state)
    found: list[dict[str, Any]] = []
    for sid, group in GROUPS.items():
        if sid not in actions:
            continue
        statement: dict[str, Any] = {
            "Sid": sid,
            "Effect": "Allow",
            "Action": sorted(actions[sid]),
            "Resource": [_fill(resource, values) for resource in group.resources],
        }
        if group.condition:
            statement["Condition"] = _fill(group.condition, values)
        found.append(statement)
    return found


def document(
    settings: Settings, partition: str, region: str, account: str, state: State | None = None
) -> dict[str, Any]:
    """Every statement in one document: what the tests check the calls against."""
    return {"Version": "2012-10-17", "Statement": statements(settings, partition, region, account, state)}


def documents(
    settings: Settings, partition: str, region: str, account: str, state: State | None = None
) -> list[dict[str, Any]]:
    """The statements packed, in order, into as few documents as fit a managed policy each (what
    --print-policy prints): one document outgrew the 6,144 characters IAM allows a managed policy
    once the stack had flow logs, a network ACL and a log key. A statement is never split, so each
    document grants whole groups."""
    packed: list[list[dict[str, Any]]] = [[]]
    for statement in statements(settings, partition, region, account, state):
        if packed[-1] and size(_wrap([*packed[-1], statement])) > MANAGED_POLICY_LIMIT:
            packed.append([])
        packed[-1].append(statement)
    return [_wrap(group) for group in packed]


def size(policy: dict[str, Any]) -> int:
    """The characters IAM counts against its quotas: white space is not counted."""
    return len(json.dumps(policy, separators=(",", ":")))


def _wrap(statements: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": statements}


def actions_by_service(settings: Settings) -> dict[str, list[str]]:
    """Every action the policy allows, by IAM service prefix (the README's list)."""
    found: dict[str, set[str]] = {}
    for statement in statements(settings, "aws", "us-east-1", "123456789012"):
        for action in statement["Action"]:
            prefix, name = action.split(":", 1)
            found.setdefault(prefix, set()).add(name)
    return {prefix: sorted(names) for prefix, names in sorted(found.items())}


def _values(settings: Settings, partition: str, region: str, account: str, state: State | None) -> dict[str, Any]:
    names = Names(settings.stack, region)  # the role names carry the region the policy is for
    return {
        "record_names": record_names(settings, state),
        "partition": partition,
        "region": region,
        "account": account,
        "stack": settings.stack,
        "load_balancer": names.load_balancer,
        "target_group": names.target_group,
        "cluster": names.cluster,
        "service": names.service,
        "task_family": names.task_family,
        "repository": names.repository,
        "log_group": names.log_group,
        "execution_role": names.execution_role,
        "task_role": names.task_role,
        "flow_log_group": names.flow_log_group,
        "flow_logs_role": names.flow_logs_role,
        "log_key_alias": names.log_key_alias,
        "redirect_target_group": names.redirect_target_group,
        "unhealthy_alarm": names.unhealthy_alarm,
        "shortfall_alarm": names.shortfall_alarm,
        "domain": settings.domain or "",
        "state_bucket": settings.state_location.bucket if settings.state_location else "",
        "state_key": settings.state_location.key if settings.state_location else "",
        "policy_arns": sorted(set(settings.task_role_policy_arns)),
    }


def record_names(settings: Settings, state: State | None) -> list[str]:
    """The DNS names the stack may delete records at: the domain's (the alias, ACM's `_<token>.<domain>`) and
    each the state records (a previous domain's), normalised as Route 53's condition keys take them."""
    names = {settings.domain, f"_*.{settings.domain}"} if settings.domain else set()
    for record in state.resources if state else []:
        if record.step in DNS:
            kept = [record.ids, *json.loads(record.ids.get(SUPERSEDED, "[]"))]
            names |= {ids["name"].rstrip(".").lower() for ids in kept if "name" in ids}
    return sorted(names)


def _fill(template: Any, values: dict[str, Any]) -> Any:
    """Templates filled in: strings with `values`; "{policy_arns}" alone becomes the list itself."""
    if isinstance(template, dict):
        return {key: _fill(value, values) for key, value in template.items()}
    if isinstance(template, list):
        return [_fill(item, values) for item in template]
    if template in ("{policy_arns}", "{record_names}"):  # lists, not strings
        return values[template.strip("{}")]
    return template.format(**values) if isinstance(template, str) and template != "*" else template
