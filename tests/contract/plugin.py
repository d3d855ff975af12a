"""The pytest side of the contract layer (loaded by tests/conftest.py's `pytest_plugins`).

- At configure time every botocore client the test process creates gets the hook.
- `@pytest.mark.contract_exempt("why")` turns it off for a test that sends a request AWS
  would refuse on purpose (also for its subprocesses: CONTRACT_EXEMPT is in their env).
- A violation fails the test that sent it, even if the code under test swallowed the
  exception: the call phase re-raises what the hook caught.
- CONTRACT_OFF=1 disables the layer (to time the suite without it).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator

import pytest

from tests.contract.hook import EXEMPT_VARIABLE, ContractViolation, drain, enabled, patch_botocore

pytest_plugins = ["pytester"]  # tests/test_contract.py runs a pytest session of its own


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "contract_exempt(reason): the test sends a request AWS would refuse on purpose")
    if enabled():
        patch_botocore()


@pytest.fixture(autouse=True)
def aws_contract(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    marker = request.node.get_closest_marker("contract_exempt")
    if marker is not None:
        monkeypatch.setenv(EXEMPT_VARIABLE, str(marker.args[0] if marker.args else "exempt"))
    else:
        monkeypatch.delenv(EXEMPT_VARIABLE, raising=False)
    drain()
    yield


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    try:
        return (yield)
    finally:
        caught = drain()
        if caught and item.get_closest_marker("contract_exempt") is None:
            raise (
                caught[0]
                if len(caught) == 1
                else ContractViolation(
                    caught[0].service, caught[0].operation, [v for c in caught for v in c.violations]
                )
            )
