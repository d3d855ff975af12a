"""The AWS contract layer: every request the tests send is checked against what AWS would accept.

- `model`: the botocore service model's constraints (required, lengths, patterns, enums, ranges).
- `rules`: the table of AWS rules the model does not carry, each with its public source.
- `hook`: the botocore hook and the `create_client` patch that puts it on every client.
- `plugin`: the pytest side (autouse, the `contract_exempt` marker); `tests/contract_site/`
  carries it into the scripts the tests run as subprocesses.
"""

from tests.contract.hook import ContractViolation, check_request, drain, install, patch_botocore
from tests.contract.model import Violation, check_params, skipped_patterns
from tests.contract.rules import RULES, Request, Rule

__all__ = [
    "RULES",
    "ContractViolation",
    "Request",
    "Rule",
    "Violation",
    "check_params",
    "check_request",
    "drain",
    "install",
    "patch_botocore",
    "skipped_patterns",
]
