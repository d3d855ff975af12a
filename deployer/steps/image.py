"""The container image the service runs.

Two ways to get one:

* `--image URI` (or `image` in deploy.toml): deploy an existing image as it is,
  no build, no push.
* Otherwise the site in `build_context` (default `website/`) is built with the
  Docker SDK for linux/amd64 and pushed to the stack's ECR repository, tagged with
  a hash of the build context. If the registry already holds that tag, nothing is
  built or pushed. The state records the repository, the tag and the digest, and
  the task definition runs `repository@sha256:<digest>`, so what runs changes only
  with a new task-definition revision.
* In local mode (`--local`) the emulator has no registry: the image is built into
  the local engine only (if it lacks the tag) and nothing is pushed; the state
  records the local tag and image id (see deployer/local.py).

Teardown deletes nothing here: pushed images go with the repository, and an image
from elsewhere is not ours to delete.
"""

from __future__ import annotations

from pathlib import Path

from deployer.baseimage import resolve_build_args
from deployer.errors import DeployerError
from deployer.images import BuildSpec, ImageBuilder, ecr_auth
from deployer.local import local_image
from deployer.settings import PROJECT_DIR
from deployer.state import Ids
from deployer.steps.base import Converged, Existing, Step, StepContext


class ImageStep(Step[Ids]):
    name = "image"
    resource = "container image"
    background = True  # a build and push take minutes and need only the repository

    def find_recorded(self, ctx: StepContext, ids: Ids) -> Existing[Ids] | None:
        return Existing(ids, ids)

    def find_unrecorded(self, ctx: StepContext) -> Existing[Ids] | None:
        return None

    def create(self, ctx: StepContext) -> Ids:
        return self._wanted(ctx)

    def converge(self, ctx: StepContext, existing: Existing[Ids]) -> Converged:
        wanted = self._wanted(ctx)
        if wanted == existing.ids:
            return Converged(existing.ids)
        return Converged(wanted, [f"image -> {wanted.get('tag') or wanted['uri']}"])

    def delete(self, ctx: StepContext, ids: Ids) -> str | None:
        """Nothing to delete: a pushed image goes with the repository, and an image given with
        --image is not ours, so it is only forgotten."""
        return None if "repository" in ids else "forgotten"

    def _wanted(self, ctx: StepContext) -> Ids:
        if ctx.settings.image is not None:
            return {"uri": ctx.settings.image}
        return self._built(ctx, _builder(ctx))

    def _built(self, ctx: StepContext, builder: ImageBuilder) -> Ids:
        """The site's image in the stack's repository: looked up by its content tag, built only if missing."""
        spec = build_spec(ctx)
        tag = spec.content_tag()
        repository = ctx.ids("repository")["uri"]
        if ctx.local:  # the emulator has no registry: build into the local engine, push nothing
            return local_image(builder, spec, f"{repository}:{tag}", ctx.dry_run, ctx.say)
        data = ctx.clients.ecr.get_authorization_token()["authorizationData"][0]
        auth = ecr_auth(data["authorizationToken"], data["proxyEndpoint"])
        digest = builder.registry_digest(f"{repository}:{tag}", auth)
        if digest is None and ctx.dry_run:
            return {"uri": f"{repository}:{tag} (to be built)", "repository": repository, "tag": tag}
        if digest is None:
            builder.build(spec, f"{repository}:{tag}")
            digest = builder.push(repository, tag, auth)
        return {"uri": f"{repository}@{digest}", "repository": repository, "tag": tag, "digest": digest}


def build_spec(ctx: StepContext) -> BuildSpec:
    settings = ctx.settings
    context = Path(settings.build_context)
    if not context.is_absolute():
        context = PROJECT_DIR / context
    build_args = resolve_build_args(  # the local stand-in base when the default cannot be pulled
        _builder(ctx).client,
        settings.build_args,
        ctx.say,
        dockerfile=context / settings.dockerfile,
        pull=not ctx.dry_run,
    )
    return BuildSpec(context=context, dockerfile=settings.dockerfile, build_args=build_args)


def _builder(ctx: StepContext) -> ImageBuilder:
    if ctx.images is None:
        raise DeployerError(
            "No Docker engine was set up for this run",
            where="the image step",
            todo="Pass --image URI, or run provision.py where a Docker engine is reachable",
        )
    return ctx.images
