"""Make moto's ECR answer DescribeImageScanFindings as AWS does after a push with scan on push on.

moto never scans on push: an image has a scan only after StartImageScan, so it answers
ScanNotFoundException for ever, and once scanned it returns one made-up HIGH finding
(CVE-9999-9999 in "moto_fake"). AWS starts the scan itself when `scanOnPush` is on and
answers IN_PROGRESS, then COMPLETE with the real findings (ECR user guide, "Scan images
for OS vulnerabilities": https://docs.aws.amazon.com/AmazonECR/latest/userguide/image-scanning-basic.html).
A `before-call` hook answers each call with the next document (or error) of a script
instead, so a test says exactly what the registry answers, in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders

OPERATION = "DescribeImageScanFindings"
Answer = dict[str, Any] | tuple[str, str]  # a response document, or an error (code, message)


def finding(name: str, severity: str, package: str = "openssl", version: str = "1.1.1") -> dict[str, Any]:
    """A basic-scanning finding, shaped as AWS returns it (package in the attributes)."""
    return {
        "name": name,
        "severity": severity,
        "uri": f"https://security-tracker.debian.org/tracker/{name}",
        "attributes": [{"key": "package_version", "value": version}, {"key": "package_name", "value": package}],
    }


def scanned(*findings: dict[str, Any], status: str = "COMPLETE", description: str = "") -> dict[str, Any]:
    """A DescribeImageScanFindings answer: the status, and the findings with their counts by severity."""
    counts: dict[str, int] = {}
    for item in findings:
        counts[item["severity"]] = counts.get(item["severity"], 0) + 1
    answer: dict[str, Any] = {"imageScanStatus": {"status": status, "description": description}}
    if status in ("COMPLETE", "ACTIVE"):
        key = "enhancedFindings" if status == "ACTIVE" else "findings"
        answer["imageScanFindings"] = {"findingSeverityCounts": counts, key: list(findings)}
    return answer


CLEAN = scanned()
RUNNING = scanned(status="IN_PROGRESS")
NOT_STARTED = ("ScanNotFoundException", "Image scan does not exist for the image")


@dataclass
class ScanScript:
    """The answers still to give (the last one repeats), and the parameters of every call answered."""

    answers: list[Answer]
    asked: list[dict[str, Any]] = field(default_factory=list)

    def next(self, params: dict[str, Any]) -> Answer:
        self.asked.append(params)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def answer_scans(client: Any, *answers: Answer) -> ScanScript:
    """Answer every DescribeImageScanFindings call of `client` with `answers` in order (default: a clean
    COMPLETE scan); the image and repository of the call are echoed, as AWS does."""
    script = ScanScript(list(answers) or [CLEAN])

    def keep(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["api_params"] = dict(params)

    def answer(model: Any, context: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        if model.name != OPERATION:
            return None
        params = context.get("api_params", {})
        given = script.next(params)
        if isinstance(given, tuple):
            code, message = given
            error = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": 400}}
            return AWSResponse("https://injected", 400, HTTPHeaders(), None), error
        image = dict(params.get("imageId", {}))
        image.setdefault("imageDigest", "sha256:" + "ee" * 32)
        document = {"repositoryName": params.get("repositoryName"), "imageId": image, **given}
        return AWSResponse("https://injected", 200, HTTPHeaders(), None), {
            **document,
            "ResponseMetadata": {"HTTPStatusCode": 200},
        }

    client.meta.events.register(f"before-parameter-build.ecr.{OPERATION}", keep)
    # On the generic event and last, so the tests' call log (tests/conftest.py) still sees the call: botocore
    # runs handlers of a more specific event name first, and the first answer ends the call.
    client.meta.events.register_last("before-call", answer)
    return script
