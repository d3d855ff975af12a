"""The tags every resource gets at creation, in each service's own request shape.

The same tags go everywhere: the user's `tags` setting, a `Name`, and the
`deployer:stack` / `deployer:step` pair by which EC2 resources (which have no
names) are found again. Each AWS API spells a tag differently (`Key`/`Value`,
`key`/`value`, a plain map, EC2's tag specifications), so each gets a function
returning its own TypedDict: mypy then checks the shape against the API.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from deployer.settings import Settings
from deployer.steps.base import REGION_TAG, STACK_TAG, STEP_TAG, Existing, Step, StepContext

if TYPE_CHECKING:
    from mypy_boto3_ec2.literals import ResourceTypeType
    from mypy_boto3_ec2.type_defs import FilterTypeDef, TagSpecificationTypeDef
    from mypy_boto3_ecr.type_defs import TagTypeDef as EcrTagTypeDef
    from mypy_boto3_ecs.type_defs import TagTypeDef as EcsTagTypeDef
    from mypy_boto3_elbv2.type_defs import TagTypeDef as Elbv2TagTypeDef
    from mypy_boto3_iam.type_defs import TagTypeDef as IamTagTypeDef
    from mypy_boto3_kms.type_defs import TagTypeDef as KmsTagTypeDef


def stack_tags(settings: Settings, step: str) -> dict[str, str]:
    """The tags as a plain map: the shape CloudWatch Logs takes, and the source of every other shape."""
    return {
        **settings.tags,
        "Name": f"{settings.stack}-{step}",
        STACK_TAG: settings.stack,
        STEP_TAG: step,
    }


def elbv2_tags(settings: Settings, step: str) -> list[Elbv2TagTypeDef]:
    return [{"Key": key, "Value": value} for key, value in stack_tags(settings, step).items()]


def iam_tags(settings: Settings, step: str, region: str) -> list[IamTagTypeDef]:
    """IAM is global: a role also carries the region of the stack that made it."""
    tags = {**stack_tags(settings, step), REGION_TAG: region}
    return [{"Key": key, "Value": value} for key, value in tags.items()]


def ecr_tags(settings: Settings, step: str) -> list[EcrTagTypeDef]:
    return [{"Key": key, "Value": value} for key, value in stack_tags(settings, step).items()]


def kms_tags(settings: Settings, step: str) -> list[KmsTagTypeDef]:
    """KMS spells them TagKey/TagValue (KMS API reference, Tag:
    https://docs.aws.amazon.com/kms/latest/APIReference/API_Tag.html)."""
    return [{"TagKey": key, "TagValue": value} for key, value in stack_tags(settings, step).items()]


def ecs_tags(settings: Settings, step: str) -> list[EcsTagTypeDef]:
    """ECS alone spells them in lower case."""
    return [{"key": key, "value": value} for key, value in stack_tags(settings, step).items()]


def ec2_tag_specifications(
    settings: Settings, step: str, resource_type: ResourceTypeType
) -> list[TagSpecificationTypeDef]:
    """EC2 tags a resource in its create call only through a specification naming the resource type."""
    return [
        {
            "ResourceType": resource_type,
            "Tags": [{"Key": key, "Value": value} for key, value in stack_tags(settings, step).items()],
        }
    ]


def ec2_tag_filters(settings: Settings, step: str) -> list[FilterTypeDef]:
    """Find an EC2 resource of a step by its tags: EC2 resources have no name to look up."""
    return [
        {"Name": f"tag:{STACK_TAG}", "Values": [settings.stack]},
        {"Name": f"tag:{STEP_TAG}", "Values": [step]},
    ]


T = TypeVar("T")


def tag_map(items: Iterable[Mapping[str, Any]] | None) -> dict[str, str]:
    """A describe answer's tags as a plain map, whichever spelling: `Key`/`Value`, ECS's `key`/`value`,
    KMS's `TagKey`/`TagValue`."""
    found: dict[str, str] = {}
    for item in items or ():
        key = item.get("Key", item.get("key", item.get("TagKey")))
        value = item.get("Value", item.get("value", item.get("TagValue")))
        if isinstance(key, str):
            found[key] = value if isinstance(value, str) else ""
    return found


def ours(found: Mapping[str, str], stack: str, region: str | None = None) -> bool:
    """The one adoption rule: the resource carries this stack's tag (and, for global IAM, this region's)."""
    return found.get(STACK_TAG) == stack and (region is None or found.get(REGION_TAG) == region)


def adopt(
    ctx: StepContext, step: Step[Any], found: Existing[T], name: str, found_tags: Mapping[str, str], *, global_: bool
) -> Existing[T]:
    """A resource found by its name is ours only with our tags; anything else is refused, never touched.

    `global_`: an IAM resource, which every region's stack of this name would see.
    """
    if ours(found_tags, ctx.settings.stack, ctx.clients.region if global_ else None):
        return found
    raise step.collision(name, dict(found_tags))
