"""Delete every resource provision.py recorded in the state file (see README)."""

from deployer.bootstrap import ensure_ready

if __name__ == "__main__":
    ensure_ready("teardown")  # standard library only: boto3 and docker may not be installed yet
    from deployer.cli import exit_process, teardown_main

    exit_process(teardown_main())
