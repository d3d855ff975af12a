"""Print the site's CloudWatch log events, and with --follow keep printing new ones (see README)."""

import sys

from deployer.cli import logs_main

if __name__ == "__main__":
    sys.exit(logs_main())
