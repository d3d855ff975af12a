"""Tests that catch (issue 9): each one fails on a bug a mutation round let through.

* teardown saving the state once at the end instead of after each delete;
* the route-table step making its table the main one during a dry run;
* the image's content tag ignoring the Dockerfile (also one outside the build context);
* `--local-port` out of range accepted;
* the `deployer:` tag prefix not reserved in the user's tags;
* the "tag already in the registry" path building or pushing anyway (without Docker: a fake
  builder that asks moto's ECR, the registry of the tests, what it holds).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

import pytest
from botocore.model import OperationModel

from deployer import cli, local, runner
from deployer.images import BuildSpec, ImageBuilder, RegistryAuth
from deployer.parallel import Scheduler
from deployer.settings import Settings
from deployer.stack import build_steps
from deployer.state import StateFile
from deployer.steps.base import StepContext
from deployer.steps.image import ImageStep, build_spec
from tests.conftest import IMAGE, PROJECT_DIR, READ_PREFIXES, CallLog, RecordingOutput, planning
from tests.rollouts import Rollout
from tests.scans import answer_scans
from tests.steps_helpers import provision_through
from tests.test_bad_input import Outcome, assert_refused

# The default (public) settings' steps, in order.
STEP_ORDER = [step.name for step in build_steps() if step.wanted(Settings())]


# --------------------------------------------------------------------------- teardown saves after each delete


class Crash(BaseException):
    """The process dies during a call: nothing in the tool may catch this (like a SIGKILL)."""


def saved_steps(state_path: Path) -> list[str]:
    """The steps the state file on disk records, in order."""
    on_disk = StateFile(state_path).load()
    assert on_disk is not None
    return [record.step for record in on_disk.resources]


def test_teardown_crash_leaves_a_state_file_without_the_resources_already_deleted(
    ctx: StepContext, state_path: Path, serving: Rollout
) -> None:
    runner.provision(ctx)
    assert saved_steps(state_path) == STEP_ORDER

    def crash_on_iam_change(model: OperationModel, **_: Any) -> None:
        if not model.name.startswith(READ_PREFIXES):
            raise Crash(model.name)

    # Teardown goes newest first: service ... target-group, then the task role (IAM's first change).
    ctx.clients.iam.meta.events.register("before-call", crash_on_iam_change)
    with pytest.raises(Crash):
        runner.teardown(ctx, Scheduler(slots=1))  # one at a time, so exactly the steps before the role are gone

    kept = STEP_ORDER[: STEP_ORDER.index("task-role") + 1]
    assert saved_steps(state_path) == kept, (
        "the state file on disk must have forgotten every resource deleted before the crash"
    )


# --------------------------------------------------------------------------- the dry run changes nothing


def main_tables(ctx: StepContext, vpc_id: str) -> list[str]:
    tables = ctx.clients.ec2.describe_route_tables(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "association.main", "Values": ["true"]}]
    )["RouteTables"]
    return [table["RouteTableId"] for table in tables]


def test_plan_of_a_route_table_that_is_not_main_makes_no_changing_call(ctx: StepContext, calls: CallLog) -> None:
    provision_through(ctx, "route-table")
    ours = ctx.ids("route-table")
    original = ours["original_main_route_table"]
    vpc_id = ctx.ids("vpc")["id"]
    assert main_tables(ctx, vpc_id) == [ours["id"]]
    # By hand, the VPC's original table becomes main again: ours exists but is not main.
    ctx.clients.ec2.replace_route_table_association(AssociationId=ours["main_association_id"], RouteTableId=original)
    assert main_tables(ctx, vpc_id) == [original]
    calls.clear()

    report = runner.plan(planning(ctx))

    assert calls.changing() == []
    assert main_tables(ctx, vpc_id) == [original]
    (line,) = [line for line in report.steps if line.step == "route-table"]
    assert (line.outcome, line.detail) == ("update", "made the main route table")


# --------------------------------------------------------------------------- the content tag and the Dockerfile


@pytest.fixture
def site_copy(tmp_path: Path) -> Path:
    """A copy of website/, whose .dockerignore excludes the Dockerfile (docker sends it anyway)."""
    copy = tmp_path / "site"
    shutil.copytree(PROJECT_DIR / "website", copy, ignore=shutil.ignore_patterns("__pycache__", ".mypy_cache"))
    assert "Dockerfile" in (copy / ".dockerignore").read_text().split()
    return copy


def test_content_tag_changes_with_the_dockerfile_content(site_copy: Path) -> None:
    spec = BuildSpec(context=site_copy, dockerfile="Dockerfile", build_args={})
    tag = spec.content_tag()
    dockerfile = site_copy / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + "\nLABEL edited=yes\n")
    assert spec.content_tag() != tag


@pytest.mark.parametrize("where", ["beside-the-context", "absolute-path"])
def test_content_tag_changes_with_a_dockerfile_docker_does_not_take_from_the_context(
    site_copy: Path, where: str
) -> None:
    """docker-py sends a Dockerfile from outside the context (or named by an absolute path) on its own: its
    content is not among the context's files, and must still change the tag."""
    outside = site_copy.parent / "Dockerfile.site"
    shutil.copy(site_copy / "Dockerfile", outside)
    name = "../Dockerfile.site" if where == "beside-the-context" else str(outside)
    spec = BuildSpec(context=site_copy, dockerfile=name, build_args={})
    tag = spec.content_tag()
    outside.write_text(outside.read_text() + "\nLABEL edited=yes\n")
    assert spec.content_tag() != tag


# --------------------------------------------------------------------------- refused before anything starts


def trap(what: str) -> Any:
    def sprung(*_: Any, **__: Any) -> NoReturn:
        raise AssertionError(f"{what}: the input should have been refused before")

    return sprung


@pytest.fixture
def refused_early(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """provision_main in-process, where reaching AWS, the engine or the emulator fails the test."""
    monkeypatch.setattr(cli, "connect", trap("the run reached AWS"))
    monkeypatch.setattr(local, "ensure_emulator", trap("the run started the emulator"))
    monkeypatch.setattr(local, "require_engine", trap("the run looked for a Docker engine"))
    work = tmp_path / "work"
    work.mkdir()
    config = work / "deploy.toml"

    def run(*args: str, toml: str = "") -> Outcome:
        config.write_text(toml)
        code = cli.provision_main(["--config", str(config), "--state-file", str(work / "state.json"), *args])
        captured = capsys.readouterr()
        assert sorted(p.name for p in work.iterdir()) == ["deploy.toml"], "a refused run left files (lock, state)"
        return Outcome(code, captured.out, captured.err)

    return run


@pytest.mark.parametrize("port", ["0", "70000"])
def test_local_port_out_of_range_is_refused_before_the_emulator_or_aws(refused_early: Any, port: str) -> None:
    result = refused_early("--local", "--local-port", port)
    assert_refused(result, f"--local-port {port}", "1-65535", "command line")


@pytest.mark.parametrize("key", ["deployer:stack", "deployer:owner", "Deployer:Step", "DEPLOYER:team"])
def test_user_tag_with_the_reserved_deployer_prefix_is_refused_before_any_aws_call(
    refused_early: Any, key: str
) -> None:
    result = refused_early("--image", IMAGE, toml=f'tags = {{ "{key}" = "mine" }}\n')
    assert_refused(result, "'tags'", f"tag key '{key}' is reserved", "may not start with", "'deployer:'")


# --------------------------------------------------------------------------- tag already in the registry


def _no_engine() -> NoReturn:
    raise AssertionError("the fake builder must never talk to a Docker engine")


class RegistryBuilder(ImageBuilder):
    """No Docker: the registry is moto's ECR, asked through the AWS API for the tag; build and push
    are counted (a push puts a manifest into moto's ECR, as the engine would)."""

    def __init__(self, ctx: StepContext) -> None:
        super().__init__(RecordingOutput(), connect=_no_engine)
        self.ecr = ctx.clients.ecr
        self.asked: list[tuple[str, RegistryAuth]] = []

    def registry_digest(self, reference: str, auth: RegistryAuth) -> str | None:
        self.asked.append((reference, auth))
        repository, _, tag = reference.rpartition(":")
        images = self.ecr.describe_images(repositoryName=repository.rsplit("/", 1)[-1])["imageDetails"]
        digests = [image["imageDigest"] for image in images if tag in image.get("imageTags", [])]
        return digests[0] if digests else None

    def build(self, spec: BuildSpec, reference: str) -> None:
        self.builds += 1

    def push(self, repository: str, tag: str, auth: RegistryAuth) -> str:
        self.pushes += 1
        try:
            return put_manifest(self.ecr, repository.rsplit("/", 1)[-1], tag, f"pushed {tag}")
        except self.ecr.exceptions.ImageAlreadyExistsException:
            return "sha256:" + "00" * 32  # a push of a tag the registry holds: counted, the assertion says why


def put_manifest(ecr: Any, repository: str, tag: str, seed: str) -> str:
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1, "digest": seed},
        "layers": [],
    }
    answer = ecr.put_image(repositoryName=repository, imageManifest=json.dumps(manifest), imageTag=tag)
    return str(answer["image"]["imageId"]["imageDigest"])


@pytest.fixture
def building(ctx: StepContext) -> tuple[StepContext, RegistryBuilder]:
    """The context without --image (the site in website/ is built) and its fake builder."""
    built = replace(ctx, settings=replace(ctx.settings, image=None, build_args={"BASE_IMAGE": "fake/base:1"}))
    builder = RegistryBuilder(built)
    answer_scans(ctx.clients.ecr)  # scan on push answers clean, as AWS would (moto never scans on push)
    return replace(built, images=builder), builder


def test_image_whose_tag_is_already_in_the_registry_is_neither_built_nor_pushed(
    building: tuple[StepContext, RegistryBuilder], calls: CallLog
) -> None:
    ctx, builder = building
    provision_through(ctx, "repository")
    repository = ctx.ids("repository")
    tag = build_spec(ctx).content_tag()
    digest = put_manifest(ctx.clients.ecr, repository["name"], tag, "pushed earlier")
    calls.clear()

    outcome, ids, _ = runner.provision_step(ctx, ImageStep())

    assert (builder.builds, builder.pushes) == (0, 0)
    assert outcome == "created"
    assert ids == {
        "uri": f"{repository['uri']}@{digest}",
        "repository": repository["uri"],
        "tag": tag,
        "digest": digest,
        "scan_digest": digest,
        "scan_threshold": "CRITICAL",
    }
    assert ctx.state.get("image") == ids
    ((reference, auth),) = builder.asked
    assert reference == f"{repository['uri']}:{tag}"
    assert auth.username == "AWS" and auth.password  # moto's GetAuthorizationToken, decoded
    assert calls.changing() == []


def test_image_whose_tag_is_not_in_the_registry_is_built_and_pushed_once(
    building: tuple[StepContext, RegistryBuilder],
) -> None:
    ctx, builder = building
    provision_through(ctx, "repository")
    outcome, ids, _ = runner.provision_step(ctx, ImageStep())
    assert (outcome, builder.builds, builder.pushes) == ("created", 1, 1)
    again = runner.provision_step(ctx, ImageStep())
    assert again == ("unchanged", ids, [])
    assert (builder.builds, builder.pushes) == (1, 1)
