"""Delete every resource provision.py recorded in the state file (see README)."""

import sys

from deployer.cli import teardown_main

if __name__ == "__main__":
    sys.exit(teardown_main())
