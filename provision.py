"""Deploy the website to AWS ECS Fargate behind a Network Load Balancer (see README)."""

from deployer.cli import exit_process, provision_main

if __name__ == "__main__":
    exit_process(provision_main())
