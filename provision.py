"""Deploy the website to AWS ECS Fargate behind a Network Load Balancer (see README)."""

import sys

from deployer.cli import provision_main

if __name__ == "__main__":
    sys.exit(provision_main())
