"""The ECR repository: immutable tags, scan on push, and the seed's lifecycle rule.

Scan on push is what the image step reads before an image is deployed (deployer/scan.py);
immutable tags are what let it trust a tag to name one digest.

The repository is found by its deterministic name. Teardown deletes it with its
images (`force`), since the images were pushed by this tool.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from deployer.retry import NEW_RESOURCE_NOT_FOUND
from deployer.state import Ids
from deployer.steps import tags
from deployer.steps.aws import absent_if
from deployer.steps.base import Converged, Existing, Step, StepContext

if TYPE_CHECKING:
    from mypy_boto3_ecr.type_defs import RepositoryTypeDef

LIFECYCLE_POLICY: dict[str, Any] = {
    "rules": [
        {
            "rulePriority": 1,
            "description": "Expire untagged images beyond 1",
            "selection": {"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 1},
            "action": {"type": "expire"},
        }
    ]
}


@dataclass(frozen=True)
class LiveRepository:
    repository: RepositoryTypeDef
    lifecycle_policy: Any


class RepositoryStep(Step[LiveRepository]):
    name = "repository"
    resource = "ECR repository"

    def find_recorded(self, ctx: StepContext, ids: Ids) -> Existing[LiveRepository] | None:
        return self._describe(ctx, ids["name"])

    def find_unrecorded(self, ctx: StepContext) -> Existing[LiveRepository] | None:
        """Only a repository with our tags: teardown deletes it with `force`, images included."""
        name = ctx.settings.names.repository
        found = self._describe(ctx, name)
        if found is None:
            return None
        answer = ctx.clients.ecr.list_tags_for_resource(resourceArn=found.ids["arn"])
        return tags.adopt(ctx, self, found, name, tags.tag_map(answer.get("tags")), global_=False)

    def _describe(self, ctx: StepContext, name: str) -> Existing[LiveRepository] | None:
        ecr = ctx.clients.ecr
        repositories = absent_if(
            lambda: ecr.describe_repositories(repositoryNames=[name])["repositories"], "RepositoryNotFoundException"
        )
        if repositories is None:
            return None
        policy = absent_if(
            lambda: ecr.get_lifecycle_policy(repositoryName=name)["lifecyclePolicyText"],
            "LifecyclePolicyNotFoundException",
        )
        live = LiveRepository(repositories[0], None if policy is None else json.loads(policy))
        return Existing(_ids(repositories[0]), live)

    def create(self, ctx: StepContext) -> Ids:
        name = ctx.settings.names.repository
        repository = ctx.clients.ecr.create_repository(
            repositoryName=name,
            imageTagMutability="IMMUTABLE",
            imageScanningConfiguration={"scanOnPush": True},
            tags=tags.ecr_tags(ctx.settings, self.name),
        )["repository"]
        ids = _ids(repository)
        ctx.remember(self.name, ids)
        ctx.retry(
            lambda: ctx.clients.ecr.put_lifecycle_policy(
                repositoryName=name, lifecyclePolicyText=json.dumps(LIFECYCLE_POLICY)
            ),
            NEW_RESOURCE_NOT_FOUND,
        )
        return ids

    def converge(self, ctx: StepContext, existing: Existing[LiveRepository]) -> Converged:
        ecr = ctx.clients.ecr
        name = existing.ids["name"]
        live = existing.live.repository
        changes: list[str] = []
        if not live.get("imageScanningConfiguration", {}).get("scanOnPush"):
            ctx.change(
                changes,
                "scan on push on",
                lambda: ecr.put_image_scanning_configuration(
                    repositoryName=name, imageScanningConfiguration={"scanOnPush": True}
                ),
            )
        if live.get("imageTagMutability") != "IMMUTABLE":
            ctx.change(
                changes,
                "tags immutable",
                lambda: ecr.put_image_tag_mutability(repositoryName=name, imageTagMutability="IMMUTABLE"),
            )
        if existing.live.lifecycle_policy != LIFECYCLE_POLICY:
            ctx.change(
                changes,
                "lifecycle policy reset",
                lambda: ecr.put_lifecycle_policy(repositoryName=name, lifecyclePolicyText=json.dumps(LIFECYCLE_POLICY)),
            )
        return Converged(existing.ids, changes)

    def delete(self, ctx: StepContext, ids: Ids) -> None:
        absent_if(
            lambda: ctx.clients.ecr.delete_repository(repositoryName=ids["name"], force=True),
            "RepositoryNotFoundException",
        )


def _ids(repository: RepositoryTypeDef) -> Ids:
    return {
        "name": repository["repositoryName"],
        "arn": repository["repositoryArn"],
        "uri": repository["repositoryUri"],
    }
