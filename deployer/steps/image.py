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

Scan on push (deployer/scan.py): an image in the stack's repository (the one built here,
or an `--image` that names that repository) is deployed only once its scan shows no
finding at or above `fail_on_scan`. A refused image stays recorded (its digest, so a re-run
neither rebuilds nor forgets it) and the step fails before the task definition, so the
service keeps its current revision. The verdict is recorded beside the image's ids
(`scan_digest`, `scan_threshold`: identifiers only, no findings), so a re-run with the
same image and a threshold no stricter makes no scan call. An `--image` from anywhere else
is not ours to scan: its registry's scan, if any, is its owner's business. In local mode
there is no registry and so no scan.

Teardown deletes nothing here: pushed images go with the repository, and an image
from elsewhere is not ours to delete.
"""

from __future__ import annotations

from pathlib import Path

from deployer import scan
from deployer.baseimage import resolve_build_args
from deployer.errors import DeployerError
from deployer.images import BuildSpec, ImageBuilder, ecr_auth
from deployer.local import local_image
from deployer.settings import PROJECT_DIR
from deployer.state import Ids
from deployer.steps.base import Converged, Existing, Step, StepContext

# The scan verdict recorded with the image's ids: the digest that passed, and the threshold it passed at.
SCAN_DIGEST = "scan_digest"
SCAN_THRESHOLD = "scan_threshold"


class ImageStep(Step[Ids]):
    name = "image"
    resource = "container image"
    cancellable = True  # a build and push take minutes; cancelled, nothing is pushed or recorded (ImageBuilder)
    needs = ("repository",)  # pushed there, and scanned there (`_target`)

    def find_recorded(self, ctx: StepContext, ids: Ids) -> Existing[Ids] | None:
        return Existing(ids, ids)

    def find_unrecorded(self, ctx: StepContext) -> Existing[Ids] | None:
        return None

    def create(self, ctx: StepContext) -> Ids:
        return self._checked(ctx, self._wanted(ctx), None)

    def converge(self, ctx: StepContext, existing: Existing[Ids]) -> Converged:
        wanted = self._checked(ctx, self._wanted(ctx), existing.ids)
        if _image(wanted) == _image(existing.ids):
            return Converged(wanted)  # at most a new verdict on the same image: nothing changed in AWS
        return Converged(wanted, [f"image -> {wanted.get('tag') or wanted['uri']}"])

    def delete(self, ctx: StepContext, ids: Ids) -> str | None:
        """Nothing to delete: a pushed image goes with the repository, and an image given with
        --image is not ours, so it is only forgotten."""
        return None if "repository" in ids else "forgotten"

    def _checked(self, ctx: StepContext, ids: Ids, recorded: Ids | None) -> Ids:
        """The image's ids with its scan verdict: the recorded one if it covers the threshold, else a new scan's.

        Before scanning, the image is recorded (with any weaker verdict it had), so a refusal loses nothing.
        """
        threshold = scan.threshold(ctx.settings)
        kept = _verdict(ids, recorded)
        if threshold is None or (kept and scan.covers(kept[SCAN_THRESHOLD], threshold)):
            return {**ids, **kept}
        target = _target(ctx, ids)
        if target is None:
            return {**ids, **kept}
        if ctx.dry_run:
            ctx.say(f"  scan of {target.uri}: checked against fail_on_scan={threshold} by the real run")
            return {**ids, **kept}
        ctx.remember(self.name, {**ids, **kept})
        digest = scan.check(ctx, target, threshold)
        return {**ids, SCAN_DIGEST: digest, SCAN_THRESHOLD: threshold}

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


def _image(ids: Ids) -> Ids:
    """The image itself, without its scan verdict."""
    return {key: value for key, value in ids.items() if key not in (SCAN_DIGEST, SCAN_THRESHOLD)}


def _verdict(ids: Ids, recorded: Ids | None) -> Ids:
    """The recorded verdict, if it is about this very image (same URI: a digest, or an immutable tag)."""
    if recorded is None or SCAN_THRESHOLD not in recorded or recorded.get("uri") != ids.get("uri"):
        return {}
    return {SCAN_DIGEST: recorded[SCAN_DIGEST], SCAN_THRESHOLD: recorded[SCAN_THRESHOLD]}


def _target(ctx: StepContext, ids: Ids) -> scan.Target | None:
    """The image as the scan API names it, if it lives in the stack's repository and a registry scans it.

    Not in local mode (the emulator has no registry), not for an image still to be built (a dry run),
    and not for an image from another repository: that one is not ours to scan.
    """
    if ctx.local:
        ctx.say("  scan skipped: the local emulator has no registry, so no scan on push")
        return None
    repository = ctx.recorded("repository")
    if repository is None:
        return None
    if "repository" in ids:  # built here: scanned by digest, once pushed (not while "to be built")
        return scan.Target(repository["name"], {"imageDigest": ids["digest"]}, ids["uri"]) if "digest" in ids else None
    uri, base = ids["uri"], repository["uri"]
    if not uri.startswith((base + ":", base + "@")):
        return None
    if "@" in uri[len(base) :]:  # repository@sha256:... or repository:tag@sha256:...
        return scan.Target(repository["name"], {"imageDigest": uri.rsplit("@", 1)[1]}, uri)
    return scan.Target(repository["name"], {"imageTag": uri[len(base) + 1 :]}, uri)


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
