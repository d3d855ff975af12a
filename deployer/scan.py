"""The registry's scan of an image: wait for it, and refuse an image with findings at or above `fail_on_scan`.

The stack's repository scans every pushed image (`scanOnPush`, deployer/steps/registry.py).
Before the image step lets the task definition run a new image, `check` asks
`DescribeImageScanFindings` for that image (by digest, or by tag for an `--image` given as
`repository:tag`; the repository's tags are immutable, so a tag names one digest) and:

* waits while the scan has not started (`ScanNotFoundException`, just after a push) or runs
  (`IN_PROGRESS`, and `PENDING` under enhanced scanning), polling every DELAY seconds for at
  most BUDGET seconds: botocore's `ImageScanComplete` waiter (ecr waiters-2.json: delay 5,
  maxAttempts 60, success on COMPLETE, failure on FAILED), paced on the run's clock, and
  also waiting out ScanNotFoundException, which that waiter would fail on;
* reads the findings when the scan is `COMPLETE` (basic scanning: `findings`), or `ACTIVE`
  (the registry's enhanced scanning by Amazon Inspector, continuous: `enhancedFindings`);
* refuses, naming the status and AWS's description, every status that gives no result:
  FAILED, UNSUPPORTED_IMAGE, SCAN_ELIGIBILITY_EXPIRED, FINDINGS_UNAVAILABLE, LIMIT_EXCEEDED,
  IMAGE_ARCHIVED (and any status this version does not know);
* refuses an image with findings at or above the threshold, naming each one (name,
  severity, package and version where given, its URI).

Severities without a rank (basic scanning's UNDEFINED, Inspector's UNTRIAGED) never fail the
check: no threshold names them. Sources: docs/aws-behaviour.md, "Image scan".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from deployer.clients import error_code
from deployer.errors import DeployerError, WaitTimeoutError
from deployer.settings import SCAN_OFF, SCAN_SEVERITIES, Settings

if TYPE_CHECKING:
    from mypy_boto3_ecr import ECRClient
    from mypy_boto3_ecr.type_defs import (
        DescribeImageScanFindingsResponseTypeDef,
        EnhancedImageScanFindingTypeDef,
        ImageIdentifierTypeDef,
        ImageScanFindingTypeDef,
    )

    from deployer.steps.base import StepContext

# botocore's ImageScanComplete waiter (ecr 2015-09-21 waiters-2.json): a poll every 5 s, 60 polls.
DELAY = 5.0
BUDGET = DELAY * 60
READY = frozenset({"COMPLETE", "ACTIVE"})  # ACTIVE: enhanced continuous scanning, its findings are there
RUNNING = frozenset({"IN_PROGRESS", "PENDING"})
NOT_STARTED = "not started yet"  # ScanNotFoundException: scan on push has not begun (or never will)
PAGE_SIZE = 1000  # DescribeImageScanFindings maxResults: at most 1000
NAMED_AT_MOST = 20  # findings named in the refusal; the rest are counted


class ImageScanError(DeployerError):
    """The image's scan refuses it, or gives no result to judge it by."""


@dataclass(frozen=True)
class Finding:
    name: str
    severity: str
    package: str
    uri: str

    def describe(self) -> str:
        details = ", ".join(part for part in (self.severity, self.package, self.uri) if part)
        return f"{self.name} ({details})"


@dataclass(frozen=True)
class Target:
    """An image in the stack's repository, as DescribeImageScanFindings names it."""

    repository: str
    image: ImageIdentifierTypeDef
    uri: str  # what the user knows the image as, for messages


def threshold(settings: Settings) -> str | None:
    """The lowest severity that refuses an image, upper case; None when the check is off."""
    value = settings.fail_on_scan
    return None if value.lower() == SCAN_OFF else value.upper()


def covers(passed: str, wanted: str) -> bool:
    """An image that passed at `passed` also passes at `wanted` when `wanted` is no lower."""
    return SCAN_SEVERITIES.index(passed) <= SCAN_SEVERITIES.index(wanted)


def _ranks_at_least(severity: str, threshold: str) -> bool:
    """Whether a finding's severity is `threshold` or above; unranked ones (UNDEFINED, UNTRIAGED) never are."""
    return severity in SCAN_SEVERITIES and SCAN_SEVERITIES.index(severity) >= SCAN_SEVERITIES.index(threshold)


def check(ctx: StepContext, target: Target, at_or_above: str) -> str:
    """Wait for the image's scan and refuse it if it has findings at or above `at_or_above`;
    returns the digest the scan answered for."""
    first = _wait(ctx, target)
    findings = _findings(first)
    token = first.get("nextToken")
    while token:
        page = ctx.clients.ecr.describe_image_scan_findings(
            repositoryName=target.repository, imageId=target.image, maxResults=PAGE_SIZE, nextToken=token
        )
        findings.extend(_findings(page))
        token = page.get("nextToken")
    digest = first["imageId"].get("imageDigest") or target.image.get("imageDigest", "")
    failing = [f for f in findings if _ranks_at_least(f.severity, at_or_above)]
    if failing:
        raise _refused(target, digest, at_or_above, failing)
    ctx.say(f"  scan of {target.uri}: {len(findings)} finding(s), none at or above {at_or_above}")
    return digest


def _wait(ctx: StepContext, target: Target) -> DescribeImageScanFindingsResponseTypeDef:
    """The first page of a finished scan; waits while it has not started or still runs."""
    deadline = ctx.clock.now() + BUDGET
    last = ""
    while True:
        answer = _ask(ctx.clients.ecr, target)
        status = NOT_STARTED if answer is None else answer["imageScanStatus"].get("status", "")
        if answer is not None and status in READY:
            return answer
        if answer is not None and status not in RUNNING:
            raise _no_result(target, status, answer["imageScanStatus"].get("description", ""))
        if status != last:
            ctx.say(f"  waiting for the scan of {target.uri}: {status}")
            last = status
        if ctx.clock.now() >= deadline:
            raise _timed_out(target, status)
        ctx.pause(DELAY)


def _ask(ecr: ECRClient, target: Target) -> DescribeImageScanFindingsResponseTypeDef | None:
    """One poll; None while no scan exists for the image yet."""
    try:
        return ecr.describe_image_scan_findings(
            repositoryName=target.repository, imageId=target.image, maxResults=PAGE_SIZE
        )
    except ClientError as exc:
        if error_code(exc) == "ScanNotFoundException":
            return None
        if error_code(exc) == "ImageNotFoundException":
            raise ImageScanError(
                f"The image {target.uri} is not in the repository {target.repository} (deleted by hand?), so its "
                "scan cannot be read",
                where="step 'image', DescribeImageScanFindings",
                todo="Run again: a built image is pushed anew; for --image, push the image again or name another",
            ) from exc
        raise


def _findings(answer: DescribeImageScanFindingsResponseTypeDef) -> list[Finding]:
    found = answer.get("imageScanFindings", {})
    return [*map(_basic, found.get("findings", [])), *map(_enhanced, found.get("enhancedFindings", []))]


def _basic(finding: ImageScanFindingTypeDef) -> Finding:
    """Basic scanning: the package is in the attributes `package_name` and `package_version`."""
    attributes = {a["key"]: a.get("value", "") for a in finding.get("attributes", [])}
    package = " ".join(p for p in (attributes.get("package_name"), attributes.get("package_version")) if p)
    return Finding(finding.get("name", "?"), finding.get("severity", "UNDEFINED"), package, finding.get("uri", ""))


def _enhanced(finding: EnhancedImageScanFindingTypeDef) -> Finding:
    """Enhanced scanning (Amazon Inspector): the vulnerability and packages are in `packageVulnerabilityDetails`."""
    details = finding.get("packageVulnerabilityDetails", {})
    packages = ", ".join(
        " ".join(p for p in (package.get("name"), package.get("version")) if p)
        for package in details.get("vulnerablePackages", [])
    )
    name = details.get("vulnerabilityId") or finding.get("title") or finding.get("findingArn", "?")
    uri = details.get("sourceUrl") or next(iter(details.get("referenceUrls", [])), "") or finding.get("findingArn", "")
    return Finding(name, finding.get("severity", "UNTRIAGED").upper(), packages, uri)


def _kept(target: Target) -> str:
    return (
        f"step 'image', the scan of {target.uri}; the image stays in the repository and in the state file, "
        "and the service keeps running its current revision"
    )


def _refused(target: Target, digest: str, at_or_above: str, failing: list[Finding]) -> ImageScanError:
    named = "; ".join(f.describe() for f in failing[:NAMED_AT_MOST])
    more = f"; and {len(failing) - NAMED_AT_MOST} more" if len(failing) > NAMED_AT_MOST else ""
    return ImageScanError(
        f"The image {target.uri} ({digest}) has {len(failing)} scan finding(s) at or above {at_or_above}, "
        f"so it is not deployed: {named}{more}",
        where=_kept(target),
        todo="Fix what the findings name (e.g. rebuild on an updated base image, or update the packages named) "
        f'and run again; to deploy it anyway, set fail_on_scan to a higher severity or "{SCAN_OFF}"',
    )


def _no_result(target: Target, status: str, description: str) -> ImageScanError:
    said = f": {description}" if description else ""
    return ImageScanError(
        f"The registry's scan of {target.uri} ended with status {status}{said}, so the image cannot be checked",
        where=_kept(target),
        todo="Look at the image's scan in the ECR console; after a FAILED scan, start one with `aws ecr "
        f"start-image-scan --repository-name {target.repository}` and run again; to deploy the image unchecked, "
        f'set fail_on_scan = "{SCAN_OFF}"',
    )


def _timed_out(target: Target, status: str) -> WaitTimeoutError:
    return WaitTimeoutError(
        f"Gave up waiting for the scan of {target.uri} after {BUDGET:.0f} s (last status: {status})",
        where=_kept(target),
        todo="Run the same command again to wait once more. If no scan ever starts (an image pushed while "
        f"scan on push was off), start one with `aws ecr start-image-scan --repository-name {target.repository}`; "
        f'to deploy the image unchecked, set fail_on_scan = "{SCAN_OFF}"',
    )
