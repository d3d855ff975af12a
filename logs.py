"""Print the site's CloudWatch log events, and with --follow keep printing new ones (see README)."""

from deployer.bootstrap import ensure_ready

if __name__ == "__main__":
    ensure_ready("logs")  # standard library only: boto3 and docker may not be installed yet
    from deployer.cli import exit_process, logs_main

    exit_process(logs_main())
