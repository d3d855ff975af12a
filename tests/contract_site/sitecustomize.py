"""Loaded by every Python process the tests start with this folder on PYTHONPATH (see conftest.script_env).

It puts the AWS contract hook on every botocore client the script creates (and, for the tests' scripts, the
Application Auto Scaling emulation: tests/aas_emulation.py). A violation
raises ContractViolation from the call and, whatever the script then does with it, the
process ends with exit status 86 and the violation on stderr. Without botocore (a bare
interpreter in the bootstrap tests) or with CONTRACT_OFF=1 it does nothing.
"""

from __future__ import annotations

import atexit
import os
import sys

CONTRACT_EXIT = 86


def _report() -> None:
    from tests.contract.hook import drain, exempt  # noqa: PLC0415 - only once botocore is known to be there

    caught = drain()
    if caught and not exempt():
        sys.stdout.flush()
        for violation in caught:
            print(f"ContractViolation: {violation}", file=sys.stderr)
        sys.stderr.flush()
        os._exit(CONTRACT_EXIT)


if os.environ.get("CONTRACT_OFF") != "1":
    try:
        import botocore.session  # noqa: F401
    except ImportError:
        pass
    else:
        from tests.contract.hook import patch_botocore

        patch_botocore()
        atexit.register(_report)
        # Application Auto Scaling as AWS answers where moto does not (tests/aas_emulation.py).
        if os.environ.get("AAS_EMULATION_TAGS_FILE"):
            from pathlib import Path

            from tests.aas_emulation import emulate_every_client

            emulate_every_client(Path(os.environ["AAS_EMULATION_TAGS_FILE"]))
