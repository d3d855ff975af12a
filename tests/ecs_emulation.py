"""What moto's ECS leaves out of CreateService: the deployment configuration and zone rebalancing.

moto 5.2.1's CreateService handler does not pass `deploymentConfiguration` (circuit breaker,
percentages, alarms) or `availabilityZoneRebalancing` to its model, so DescribeServices answers
neither; its UpdateService sets every given field on the service, so both appear after an update.
AWS keeps what CreateService is given, fills in its defaults (maximumPercent 200,
minimumHealthyPercent 100, the circuit breaker off) and defaults `availabilityZoneRebalancing` to
ENABLED on a create (CreateService in botocore's ecs model).

The emulation patches moto's CreateService handler in the pytest process rather than hooking the
clients: an after-call hook would need extra calls (an UpdateService per create), which the tests
that count calls (tests/conftest.py CallLog, tests/test_crash_points.py) would see, while the patch
adds none. It also covers the ThreadedMotoServer the script tests use, which serves from this
process. The patch is installed once and stays for the session: it only makes moto closer to AWS.
"""

from __future__ import annotations

from typing import Any

from moto.ecs.responses import EC2ContainerServiceResponse

# AWS's values for the fields CreateService is not given (DeploymentConfiguration in the ECS API reference,
# https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_DeploymentConfiguration.html).
DEFAULT_DEPLOYMENT: dict[str, Any] = {
    "deploymentCircuitBreaker": {"enable": False, "rollback": False},
    "maximumPercent": 200,
    "minimumHealthyPercent": 100,
}
DEFAULT_REBALANCING = "ENABLED"

_original = EC2ContainerServiceResponse.create_service


def _create_service(self: EC2ContainerServiceResponse) -> Any:
    """moto's CreateService, then the two fields kept on the new service as AWS keeps them."""
    result = _original(self)
    service = self.ecs_backend._get_service(self._get_param("cluster", "default"), self._get_param("serviceName"))
    # The attributes moto's UpdateService sets (and its answers read) for these fields; the model declares neither.
    vars(service).update(
        deployment_configuration={**DEFAULT_DEPLOYMENT, **(self._get_param("deploymentConfiguration") or {})},
        availability_zone_rebalancing=self._get_param("availabilityZoneRebalancing") or DEFAULT_REBALANCING,
    )
    return result


def keep_service_settings() -> None:
    """Make moto's CreateService keep the deployment configuration and zone rebalancing (idempotent)."""
    EC2ContainerServiceResponse.create_service = _create_service  # type: ignore[method-assign]
