"""Retries for what AWS answers while it is still catching up (eventual consistency).

botocore's `standard` retry mode covers throttling and 5xx answers only. A few other
answers are known to mean "not yet" rather than "no", and each gets a bounded time
budget (the values Terraform's AWS provider settled on, see
shared/research/aws-failure-modes.md); anything else fails at once, so a permanent
error such as a bad subnet never turns into a retry storm.

ECS and IAM report some of these states only in the error message, under a generic
code (`InvalidParameterException`, `ClientException`): those rules also match a
message fragment, and say so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from botocore.exceptions import ClientError

from deployer.clients import error_code, error_message

T = TypeVar("T")

FIRST_DELAY = 2.0
MAX_DELAY = 30.0


@dataclass(frozen=True)
class Retry:
    """Which answers mean "not yet", and how long to keep asking."""

    why: str
    codes: frozenset[str]
    budget_seconds: float
    # AWS gives no specific code for these: match a fragment of the message as well.
    message_fragments: tuple[str, ...] = ()

    def matches(self, exc: ClientError) -> bool:
        if error_code(exc) not in self.codes:
            return False
        if not self.message_fragments:
            return True
        message = error_message(exc).lower()
        return any(fragment.lower() in message for fragment in self.message_fragments)


# A resource made a moment ago is not yet visible to the next call that names it.
NEW_RESOURCE_NOT_FOUND = Retry(
    "a new resource is not visible yet",
    frozenset(
        {
            "InvalidVpcID.NotFound",
            "InvalidSubnetID.NotFound",
            "InvalidGroup.NotFound",
            "InvalidInternetGatewayID.NotFound",
            "InvalidRouteTableID.NotFound",
            "InvalidGatewayID.NotFound",
            "LoadBalancerNotFound",
            "TargetGroupNotFound",
            "RepositoryNotFoundException",
            "ResourceNotFoundException",
        }
    ),
    budget_seconds=300,
)

# A role made a moment ago, named by AttachRolePolicy. A missing *policy* answers the same
# code; only the message tells them apart, and a missing policy is a setting to fix.
ROLE_NOT_VISIBLE = Retry(
    "a new IAM role is not visible yet",
    frozenset({"NoSuchEntity"}),
    budget_seconds=120,
    message_fragments=("role with name", "cannot be found"),
)

# IAM is global and eventually consistent: ECS may not be able to assume a role made
# seconds ago (~2 minutes, Terraform's propagationTimeout).
ROLE_NOT_ASSUMABLE = Retry(
    "a new IAM role is not assumable yet",
    frozenset({"InvalidParameterException", "ClientException"}),
    budget_seconds=120,
    message_fragments=("assume", "role"),
)

# CreateService before the listener's link to the target group, the ECS service-linked
# role or the roles have propagated (~4 minutes, Terraform's serviceCreateWithRetry).
SERVICE_NOT_READY = Retry(
    "the load balancer or the ECS service-linked role is not ready for the service yet",
    frozenset({"InvalidParameterException", "ClusterNotFoundException"}),
    budget_seconds=240,
    message_fragments=(
        "does not have an associated load balancer",
        "unable to assume the service linked role",
        "verify that the ecs service role being passed has the proper permissions",
        "unable to assume role",
        "cluster not found",
    ),
)

# Teardown: a dependency (network interfaces of the NLB or of stopped tasks, a public
# IP mapped through the gateway) lingers for minutes after its owner is deleted.
STILL_IN_USE = Retry(
    "a dependency is still being released",
    frozenset(
        {
            "DependencyViolation",
            "InvalidGroup.InUse",
            "ResourceInUse",
            "ClusterContainsServicesException",
            "ClusterContainsTasksException",
            "UpdateInProgressException",
        }
    ),
    budget_seconds=1200,
)

# "The service cannot be stopped while deployments are active": DeleteService while ECS
# is still rolling out (InvalidParameterException, message only).
SERVICE_STILL_DEPLOYING = Retry(
    "the service still has an active deployment",
    frozenset({"InvalidParameterException"}),
    budget_seconds=1200,
    message_fragments=("deployments are active", "draining"),
)


def with_retries(
    call: Callable[[], T],
    rules: tuple[Retry, ...],
    sleep: Callable[[float], None],
    clock: Callable[[], float],
    say: Callable[[str], None],
) -> T:
    """Run `call`; while it fails with an answer a rule calls transient, wait and try again."""
    started = clock()
    delay = FIRST_DELAY
    while True:
        try:
            return call()
        except ClientError as exc:
            rule = next((rule for rule in rules if rule.matches(exc)), None)
            if rule is None or clock() - started + delay > rule.budget_seconds:
                raise
            say(f"  AWS says {error_code(exc)} ({rule.why}); retrying in {delay:.0f} s")
            sleep(delay)
            delay = min(delay * 2, MAX_DELAY)
