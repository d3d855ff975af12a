"""Test-only script: send one request AWS would refuse (a 33-character target group name).

Run as a subprocess with `script_env`, it proves the contract's sitecustomize is active
there: the call raises ContractViolation and the process exits 86 with the rule on stderr.
"""

from __future__ import annotations

import sys

import boto3


def main() -> int:
    elbv2 = boto3.client("elbv2")
    try:
        elbv2.create_target_group(Name="n" * 33, Protocol="TCP", Port=80, VpcId="vpc-12345678", TargetType="ip")
    except Exception as exc:  # what a careless tool would do: swallow it and exit 0
        print(f"swallowed: {type(exc).__name__}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
