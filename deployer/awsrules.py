"""The rules AWS applies to the names and tags the deployer sends, in one place, each with its source.

moto accepts most names and tags AWS refuses, so a rule missing here shows up only on a
real account, half-way through a deploy. `deployer.settings.validate` checks every name
`Names` derives and every tag against these rules before the first AWS call.

Sources: the botocore service models (`botocore/data/<service>/<version>/service-2.json`,
the same text as the API references linked below): a member's `pattern`, `min` and `max`,
and its documentation where the model has no pattern.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True)
class NameRule:
    """What AWS accepts as one kind of name."""

    what: str  # the kind of name, for messages: "EC2 security group name"
    max_length: int
    pattern: re.Pattern[str]  # the whole name must match
    allowed: str  # the pattern in words, for messages
    source: str  # where the rule is published
    min_length: int = 1
    forbidden_prefixes: tuple[str, ...] = ()  # compared without regard to case

    def problem(self, name: str) -> str | None:
        """Why AWS would refuse `name`, or None."""
        if not self.min_length <= len(name) <= self.max_length:
            return f"it has {len(name)} characters; AWS allows {self.min_length} to {self.max_length}"
        for prefix in self.forbidden_prefixes:
            if name.lower().startswith(prefix.lower()):
                return f"it starts with '{prefix}', which AWS refuses"
        if not self.pattern.fullmatch(name):
            return f"AWS allows only {self.allowed}"
        return None


_ELB_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
_ELB_ALLOWED = "letters, digits and hyphens, not starting or ending with a hyphen"
_ECS_NAME = re.compile(r"[A-Za-z0-9_-]+")
_ECS_ALLOWED = "letters, digits, underscores and hyphens"

# Name kind -> rule. Keys are the kinds `deployer.settings.NAME_KINDS` maps each `Names` property to.
NAME_RULES: dict[str, NameRule] = {
    # elbv2 CreateLoadBalancer `Name` (botocore elbv2 2015-12-01, LoadBalancerName):
    # https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_CreateLoadBalancer.html
    "load-balancer": NameRule(
        "load balancer name",
        32,
        _ELB_NAME,
        _ELB_ALLOWED,
        "https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_CreateLoadBalancer.html",
        forbidden_prefixes=("internal-",),
    ),
    # elbv2 CreateTargetGroup `Name` (botocore elbv2 2015-12-01, TargetGroupName):
    # https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_CreateTargetGroup.html
    "target-group": NameRule(
        "target group name",
        32,
        _ELB_NAME,
        _ELB_ALLOWED,
        "https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_CreateTargetGroup.html",
    ),
    # iam CreateRole `RoleName` (botocore iam 2010-05-08, roleNameType: min 1, max 64, pattern [\w+=,.@-]+):
    # https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateRole.html
    "iam-role": NameRule(
        "IAM role name",
        64,
        re.compile(r"[A-Za-z0-9_+=,.@-]+"),
        "letters, digits and _+=,.@-",
        "https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateRole.html",
    ),
    # ecr CreateRepository `repositoryName` (botocore ecr 2015-09-21, RepositoryName: min 2, max 256, pattern):
    # https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_CreateRepository.html
    "ecr-repository": NameRule(
        "ECR repository name",
        256,
        re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*"),
        "lowercase letters and digits, separated by '.', '_', '__', hyphens or '/'",
        "https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_CreateRepository.html",
        min_length=2,
    ),
    # logs CreateLogGroup `logGroupName` (botocore logs 2014-03-28, LogGroupName: min 1, max 512,
    # pattern [\.\-_/#A-Za-z0-9]+; "Log group names can't start with the string aws/"):
    # https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_CreateLogGroup.html
    "log-group": NameRule(
        "CloudWatch log group name",
        512,
        re.compile(r"[.\-_/#A-Za-z0-9]+"),
        "letters, digits and . - _ / #",
        "https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_CreateLogGroup.html",
        forbidden_prefixes=("aws/",),
    ),
    # ecs CreateCluster `clusterName`, CreateService `serviceName`, RegisterTaskDefinition `family` and
    # ContainerDefinition `name` (botocore ecs 2014-11-13 docs: "Up to 255 letters (uppercase and
    # lowercase), numbers, underscores, and hyphens are allowed"):
    # https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_CreateService.html
    "ecs-name": NameRule(
        "ECS name (cluster, service, task family or container)",
        255,
        _ECS_NAME,
        _ECS_ALLOWED,
        "https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_CreateService.html",
    ),
    # cloudwatch PutMetricAlarm `AlarmName` (botocore cloudwatch 2010-08-01, AlarmName: min 1, max 255, no pattern):
    # https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html
    "alarm": NameRule(
        "CloudWatch alarm name",
        255,
        re.compile(r"[\x20-\x7e]+"),
        "printable ASCII characters",
        "https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html",
    ),
    # application-autoscaling PutScalingPolicy `PolicyName` (botocore application-autoscaling 2016-02-06,
    # PolicyName: min 1, max 256, pattern \p{Print}+):
    # https://docs.aws.amazon.com/autoscaling/application/APIReference/API_PutScalingPolicy.html
    "scaling-policy": NameRule(
        "scaling policy name",
        256,
        re.compile(r"[\x20-\x7e]+"),
        "printable ASCII characters",
        "https://docs.aws.amazon.com/autoscaling/application/APIReference/API_PutScalingPolicy.html",
    ),
    # ec2 CreateSecurityGroup `GroupName` (botocore ec2 2016-11-15 docs: "Up to 255 characters in length.
    # Can't start with sg-. Valid characters: a-z, A-Z, 0-9, spaces, and ._-:/()#,@[]+=&;{}!$*"):
    # https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateSecurityGroup.html
    "security-group": NameRule(
        "EC2 security group name",
        255,
        re.compile(r"[A-Za-z0-9 ._\-:/()#,@\[\]+=&;{}!$*]+"),
        "letters, digits, spaces and ._-:/()#,@[]+=&;{}!$*",
        "https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateSecurityGroup.html",
        forbidden_prefixes=("sg-",),
    ),
    # kms CreateAlias `AliasName` (botocore kms 2014-11-01, AliasNameType: min 1, max 256,
    # pattern ^[a-zA-Z0-9:/_-]+$; "must begin with alias/ ... cannot begin with alias/aws/"):
    # https://docs.aws.amazon.com/kms/latest/APIReference/API_CreateAlias.html
    "kms-alias": NameRule(
        "KMS alias name",
        256,
        re.compile(r"alias/[A-Za-z0-9:/_-]+"),
        "alias/ followed by letters, digits and :/_-",
        "https://docs.aws.amazon.com/kms/latest/APIReference/API_CreateAlias.html",
        forbidden_prefixes=("alias/aws/",),
    ),
}


# Tags. The strictest services the deployer tags (ELBv2, IAM, ECS, CloudWatch Logs) share one rule
# for keys and values: pattern [\p{L}\p{Z}\p{N}_.:/=+\-@]*, key 1-128 characters, value at most 256
# (botocore elbv2 TagKey/TagValue, iam tagKeyType/tagValueType, ecs TagKey/TagValue, logs
# TagKey/TagValue; https://docs.aws.amazon.com/IAM/latest/APIReference/API_Tag.html). EC2 and ECR
# accept more; the deployer sends the same tags everywhere, so the strictest rule applies.
TAG_SOURCE = "https://docs.aws.amazon.com/IAM/latest/APIReference/API_Tag.html"
MAX_TAG_KEY_LENGTH = 128
MAX_TAG_VALUE_LENGTH = 256
# At most 50 tags on a resource: botocore iam tagListType (max 50), ecs Tags (max 50), logs Tags
# (max 50); ELBv2 and EC2 quotas: https://docs.aws.amazon.com/elasticloadbalancing/latest/network/load-balancer-limits.html,
# https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/Using_Tags.html#tag-restrictions
MAX_TAGS_PER_RESOURCE = 50
# The tag punctuation AWS accepts besides \p{L} (letters), \p{Z} (separators) and \p{N} (numbers).
TAG_PUNCTUATION = "_.:/=+-@"
TAG_ALLOWED = "letters, digits and spaces of any script, and _ . : / = + - @"
# "aws:" is reserved for AWS in any case, in keys (and, says ECS, in values):
# https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_Tag.html
RESERVED_TAG_PREFIX = "aws:"
RESERVED_TAG_SOURCE = "https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_Tag.html"


def bad_tag_characters(text: str) -> str:
    """The characters of `text` that AWS's tag pattern [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]* refuses ('' if none).

    Python's `re` has no \\p classes: a character's Unicode general category (L*, Z*, N*) decides.
    """
    bad = [c for c in text if c not in TAG_PUNCTUATION and unicodedata.category(c)[0] not in "LZN"]
    return "".join(dict.fromkeys(bad))
