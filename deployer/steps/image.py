"""The container image the service runs.

For now the image is given with `--image URI` (or `image` in deploy.toml) and is
deployed as it is: no build, no push. The record survives in the state, so a
re-run without `--image` keeps running the same image. Teardown deletes nothing
here: an image pushed to the stack's repository goes with the repository, and an
image from elsewhere is not ours to delete.
"""

from __future__ import annotations

from deployer.errors import SettingsError
from deployer.state import Ids
from deployer.steps.base import Converged, Existing, Step, StepContext


class ImageStep(Step[str]):
    name = "image"
    resource = "container image"

    def find_recorded(self, ctx: StepContext, ids: Ids) -> Existing[str] | None:
        return Existing(ids, ids["uri"])

    def find_unrecorded(self, ctx: StepContext) -> Existing[str] | None:
        return None

    def create(self, ctx: StepContext) -> Ids:
        if ctx.settings.image is None:
            raise missing_image_error()
        return {"uri": ctx.settings.image}

    def converge(self, ctx: StepContext, existing: Existing[str]) -> Converged:
        wanted = ctx.settings.image
        if wanted is None or wanted == existing.live:
            return Converged(existing.ids)
        return Converged({"uri": wanted}, [f"image -> {wanted}"])

    def delete(self, ctx: StepContext, ids: Ids) -> None:
        return None


def missing_image_error() -> SettingsError:
    return SettingsError(
        "No image to deploy: building the site's image is not available yet",
        where="provision.py without --image, and no image recorded in the state file",
        todo="Pass --image URI with an image the tasks can pull (for example an ECR or public registry "
        "reference); nothing was created",
    )
