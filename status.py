"""Show what the state file records and how the deployed site is doing; changes nothing (see README)."""

from deployer.bootstrap import ensure_ready

if __name__ == "__main__":
    ensure_ready("status")  # standard library only: boto3 and docker may not be installed yet
    from deployer.cli import exit_process, status_main

    exit_process(status_main())
