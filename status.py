"""Show what the state file records and how the deployed site is doing; changes nothing (see README)."""

import sys

from deployer.cli import status_main

if __name__ == "__main__":
    sys.exit(status_main())
