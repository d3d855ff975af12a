"""Issue 11, "Image": an image in the stack's repository is deployed only once its scan on push is clean enough.

The registry's answers are scripted with botocore hooks (tests/scans.py): moto never scans on
push and, once asked to scan, invents one HIGH finding, while AWS answers IN_PROGRESS, then
COMPLETE with the image's real findings. The build and push go through a fake engine whose
registry remembers what was pushed, so a re-run finds the tag and builds nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

import pytest

from deployer import runner, scan
from deployer.errors import EXIT_USER_ERROR, SettingsError, WaitTimeoutError
from deployer.images import BuildSpec, ImageBuilder, RegistryAuth
from deployer.scan import ImageScanError
from deployer.settings import Settings, validate
from deployer.steps.base import StepContext
from deployer.steps.image import SCAN_DIGEST, SCAN_THRESHOLD, ImageStep
from deployer.steps.registry import RepositoryStep
from tests.conftest import REGION, CallLog, FakeClock, RecordingOutput, planning
from tests.rollouts import Rollout
from tests.scans import CLEAN, NOT_STARTED, RUNNING, ScanScript, answer_scans, finding, scanned

DESCRIBE = ("ecr", "DescribeImageScanFindings")


def _no_engine() -> Any:
    raise AssertionError("the fake builder never talks to a Docker engine")


class RegistryBuilder(ImageBuilder):
    """A build and push without Docker; the registry remembers pushed tags (digest: a hash of the tag)."""

    def __init__(self) -> None:
        super().__init__(RecordingOutput(), connect=_no_engine)
        self.registry: dict[str, str] = {}

    def registry_digest(self, reference: str, auth: RegistryAuth) -> str | None:
        return self.registry.get(reference)

    def build(self, spec: BuildSpec, reference: str) -> None:
        self.builds += 1

    def push(self, repository: str, tag: str, auth: RegistryAuth) -> str:
        self.pushes += 1
        digest = "sha256:" + hashlib.sha256(tag.encode()).hexdigest()
        self.registry[f"{repository}:{tag}"] = digest
        return digest


@pytest.fixture
def settings() -> Settings:
    return Settings(stack="test-site", region=REGION, build_args={"BASE_IMAGE": "fake/base:1"})


@pytest.fixture
def built(ctx: StepContext) -> StepContext:
    """The run's context with the fake engine, and the repository in place."""
    ctx = replace(ctx, images=RegistryBuilder())
    runner.provision_step(ctx, RepositoryStep())
    return ctx


def image_step(ctx: StepContext) -> tuple[str, dict[str, str], list[str]]:
    return runner.provision_step(ctx, ImageStep())


def builder(ctx: StepContext) -> RegistryBuilder:
    assert isinstance(ctx.images, RegistryBuilder)
    return ctx.images


def with_threshold(ctx: StepContext, value: str) -> StepContext:
    return replace(ctx, settings=replace(ctx.settings, fail_on_scan=value))


def test_waits_for_the_scan_to_start_and_finish_then_records_the_verdict(
    built: StepContext, clock: FakeClock, output: RecordingOutput
) -> None:
    script = answer_scans(built.clients.ecr, NOT_STARTED, RUNNING, RUNNING, CLEAN)
    started = clock.now()
    outcome, ids, _ = image_step(built)
    assert outcome == "created"
    assert len(script.asked) == 4
    assert clock.now() - started == 3 * scan.DELAY  # paced on the run's clock, as botocore's waiter
    assert script.asked[0]["imageId"] == {"imageDigest": ids["digest"]}
    assert script.asked[0]["repositoryName"] == built.ids("repository")["name"]
    assert ids[SCAN_DIGEST] == ids["digest"] and ids[SCAN_THRESHOLD] == "CRITICAL"
    assert built.state.get("image") == ids
    assert any("waiting for the scan" in line and "not started yet" in line for line in output.lines)
    assert any("IN_PROGRESS" in line for line in output.lines)


def test_a_critical_finding_refuses_the_image_naming_it_and_keeps_the_image(built: StepContext) -> None:
    answer_scans(
        built.clients.ecr,
        scanned(finding("CVE-2026-0001", "CRITICAL", "openssl", "3.0.2"), finding("CVE-2026-0002", "LOW")),
    )
    with pytest.raises(ImageScanError) as refused:
        image_step(built)
    message = refused.value.message
    assert refused.value.exit_code == EXIT_USER_ERROR
    assert "CVE-2026-0001 (CRITICAL, openssl 3.0.2, https://security-tracker.debian.org/tracker/CVE-2026-0001)" in (
        message
    )
    assert "1 scan finding(s) at or above CRITICAL" in message and "CVE-2026-0002" not in message
    assert "fail_on_scan" in message
    recorded = built.state.get("image")
    assert recorded is not None and recorded["digest"].startswith("sha256:")
    assert SCAN_THRESHOLD not in recorded  # no verdict: the next run asks again


def test_a_refused_image_is_refused_again_without_a_rebuild(built: StepContext) -> None:
    script = answer_scans(built.clients.ecr, scanned(finding("CVE-2026-0001", "CRITICAL")))
    for _ in range(2):
        with pytest.raises(ImageScanError):
            image_step(built)
    assert builder(built).builds == 1 and builder(built).pushes == 1
    assert len(script.asked) == 2


def test_a_high_finding_passes_the_default_and_is_refused_at_high(built: StepContext) -> None:
    script = answer_scans(built.clients.ecr, scanned(finding("CVE-2026-0003", "HIGH", "zlib", "1.3")))
    _, ids, _ = image_step(built)
    assert ids[SCAN_THRESHOLD] == "CRITICAL"
    with pytest.raises(ImageScanError, match=r"CVE-2026-0003 \(HIGH, zlib 1.3"):
        image_step(with_threshold(built, "high"))  # case-insensitive; a stricter threshold asks again
    assert len(script.asked) == 2


def test_a_finding_without_a_rank_never_refuses(built: StepContext) -> None:
    answer_scans(built.clients.ecr, scanned(finding("CVE-2026-0006", "UNDEFINED")))
    _, ids, _ = image_step(with_threshold(built, "INFORMATIONAL"))
    assert ids[SCAN_THRESHOLD] == "INFORMATIONAL"


def test_a_verdict_at_a_stricter_threshold_covers_a_laxer_one(built: StepContext, calls: CallLog) -> None:
    script = answer_scans(built.clients.ecr, CLEAN)
    _, ids, _ = image_step(with_threshold(built, "MEDIUM"))
    assert ids[SCAN_THRESHOLD] == "MEDIUM"
    calls.clear()
    outcome, again, _ = image_step(built)  # CRITICAL: MEDIUM's pass already says so
    assert outcome == "unchanged" and again == ids
    assert DESCRIBE not in calls.calls and len(script.asked) == 1


def test_a_no_op_rerun_of_an_accepted_image_makes_no_scan_call(built: StepContext, calls: CallLog) -> None:
    script = answer_scans(built.clients.ecr, CLEAN)
    _, ids, _ = image_step(built)
    calls.clear()
    outcome, again, changes = image_step(built)
    assert (outcome, again, changes) == ("unchanged", ids, [])
    assert DESCRIBE not in calls.calls and len(script.asked) == 1
    assert builder(built).builds == 1


def test_none_turns_the_check_off(built: StepContext, calls: CallLog) -> None:
    script = answer_scans(built.clients.ecr, scanned(finding("CVE-2026-0001", "CRITICAL")))
    _, ids, _ = image_step(with_threshold(built, "None"))
    assert script.asked == [] and DESCRIBE not in calls.calls
    assert SCAN_THRESHOLD not in ids


@pytest.mark.parametrize(
    ("status", "description"),
    [
        ("FAILED", "UnsupportedImageError: The operating system is not supported"),
        ("UNSUPPORTED_IMAGE", "The operating system and/or package manager are not supported."),
        ("SCAN_ELIGIBILITY_EXPIRED", "The scan duration has lapsed for this image."),
        ("FINDINGS_UNAVAILABLE", ""),
    ],
)
def test_a_scan_without_a_result_refuses_naming_the_status(built: StepContext, status: str, description: str) -> None:
    answer_scans(built.clients.ecr, RUNNING, scanned(status=status, description=description))
    with pytest.raises(ImageScanError) as refused:
        image_step(built)
    assert f"ended with status {status}" in refused.value.message
    assert description in refused.value.message
    assert "start-image-scan" in refused.value.message


def test_a_scan_that_never_starts_times_out_naming_the_image(built: StepContext, clock: FakeClock) -> None:
    script = answer_scans(built.clients.ecr, NOT_STARTED)
    started = clock.now()
    with pytest.raises(WaitTimeoutError) as timed_out:
        image_step(built)
    assert clock.now() - started == scan.BUDGET
    assert len(script.asked) == int(scan.BUDGET / scan.DELAY) + 1
    message = timed_out.value.message
    recorded = built.state.get("image")
    assert recorded is not None and recorded["uri"] in message
    assert "after 300 s (last status: not started yet)" in message and "start-image-scan" in message
    assert timed_out.value.exit_code == EXIT_USER_ERROR


def test_an_image_gone_from_the_repository_is_refused(built: StepContext) -> None:
    answer_scans(built.clients.ecr, ("ImageNotFoundException", "The image requested does not exist"))
    with pytest.raises(ImageScanError, match="is not in the repository"):
        image_step(built)


def test_enhanced_scanning_findings_are_read_and_named(built: StepContext) -> None:
    critical = {
        "severity": "CRITICAL",
        "title": "CVE-2026-0009 - glibc",
        "findingArn": "arn:aws:inspector2:us-east-1:123456789012:finding/abc",
        "packageVulnerabilityDetails": {
            "vulnerabilityId": "CVE-2026-0009",
            "sourceUrl": "https://nvd.nist.gov/vuln/detail/CVE-2026-0009",
            "vulnerablePackages": [{"name": "glibc", "version": "2.36"}],
        },
    }
    answer_scans(built.clients.ecr, scanned(status="PENDING"), scanned(critical, status="ACTIVE"))
    with pytest.raises(ImageScanError, match=r"CVE-2026-0009 \(CRITICAL, glibc 2.36, https://nvd.nist.gov/"):
        image_step(built)


def test_every_page_of_findings_is_read(built: StepContext) -> None:
    first = {**scanned(finding("CVE-2026-0004", "LOW")), "nextToken": "page-2"}
    script = answer_scans(built.clients.ecr, first, scanned(finding("CVE-2026-0005", "CRITICAL")))
    with pytest.raises(ImageScanError, match="CVE-2026-0005"):
        image_step(built)
    assert script.asked[1]["nextToken"] == "page-2"


def test_an_image_setting_in_the_stacks_repository_is_scanned_by_tag(built: StepContext) -> None:
    script = answer_scans(built.clients.ecr, CLEAN)
    uri = f"{built.ids('repository')['uri']}:v1"
    _, ids, _ = image_step(replace(built, settings=replace(built.settings, image=uri, build_args={})))
    assert script.asked[0]["imageId"] == {"imageTag": "v1"}
    assert ids["uri"] == uri and ids[SCAN_THRESHOLD] == "CRITICAL" and ids[SCAN_DIGEST].startswith("sha256:")
    assert "tag" not in ids and "repository" not in ids  # still an image given, not one built here


def test_an_image_setting_by_digest_is_scanned_by_digest(built: StepContext) -> None:
    script = answer_scans(built.clients.ecr, CLEAN)
    digest = "sha256:" + "ab" * 32
    uri = f"{built.ids('repository')['uri']}:v1@{digest}"
    image_step(replace(built, settings=replace(built.settings, image=uri, build_args={})))
    assert script.asked[0]["imageId"] == {"imageDigest": digest}


def test_an_image_from_elsewhere_is_not_ours_to_scan(built: StepContext, calls: CallLog) -> None:
    script = answer_scans(built.clients.ecr, scanned(finding("CVE-2026-0001", "CRITICAL")))
    other = replace(built.settings, image="public.ecr.aws/docker/library/python:3.12-slim", build_args={})
    _, ids, _ = image_step(replace(built, settings=other))
    assert script.asked == [] and DESCRIBE not in calls.calls and SCAN_THRESHOLD not in ids


def test_local_mode_has_no_registry_scan(built: StepContext, output: RecordingOutput) -> None:
    script = answer_scans(built.clients.ecr, CLEAN)
    uri = f"{built.ids('repository')['uri']}:v1"
    image_step(replace(built, local=True, settings=replace(built.settings, image=uri, build_args={})))
    assert script.asked == []
    assert any("scan skipped: the local emulator has no registry" in line for line in output.lines)


def test_a_dry_run_makes_no_scan_call(built: StepContext, calls: CallLog) -> None:
    script = answer_scans(built.clients.ecr, CLEAN)
    runner.plan(planning(built))
    assert script.asked == [] and DESCRIBE not in calls.calls


@pytest.mark.parametrize("value", ["CRITICAL", "high", "Medium", "low", "INFORMATIONAL", "none", "NONE"])
def test_fail_on_scan_accepts_the_severities_and_none(value: str) -> None:
    validate(Settings(fail_on_scan=value))


@pytest.mark.parametrize("value", ["", "severe", "UNDEFINED", "off"])
def test_fail_on_scan_refuses_anything_else(value: str) -> None:
    with pytest.raises(SettingsError, match="fail_on_scan") as refused:
        validate(Settings(fail_on_scan=value))
    assert refused.value.exit_code == EXIT_USER_ERROR


def test_a_refused_image_leaves_the_service_on_its_revision(ctx: StepContext, serving: Rollout) -> None:
    ctx = replace(ctx, images=RegistryBuilder(), settings=replace(ctx.settings, image=None))
    script: ScanScript = answer_scans(ctx.clients.ecr, CLEAN, scanned(finding("CVE-2026-0001", "CRITICAL")))
    runner.provision(ctx)
    accepted = ctx.state.get("image")
    revision = ctx.ids("task-definition")["arn"]
    service = ctx.ids("service")

    changed = replace(ctx, settings=replace(ctx.settings, build_args={"BASE_IMAGE": "fake/base:2"}))
    for _ in range(2):  # a re-run refuses again, without building again
        with pytest.raises(ImageScanError, match="CVE-2026-0001"):
            runner.provision(changed)
    assert builder(ctx).builds == 2 and len(script.asked) == 3
    refused = changed.state.get("image")
    assert accepted is not None and refused is not None and refused["digest"] != accepted["digest"]
    assert changed.ids("task-definition")["arn"] == revision
    live = ctx.clients.ecs.describe_services(cluster=ctx.ids("cluster")["name"], services=[service["name"]])
    assert live["services"][0]["taskDefinition"] == revision
