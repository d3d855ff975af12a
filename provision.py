"""Deploy the website to AWS ECS Fargate behind a Network Load Balancer (see README)."""

from deployer.bootstrap import ensure_ready

if __name__ == "__main__":
    ensure_ready("provision")  # standard library only: boto3 and docker may not be installed yet
    from deployer.cli import exit_process, provision_main

    exit_process(provision_main())
