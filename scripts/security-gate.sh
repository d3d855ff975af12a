#!/usr/bin/env bash
# CI's security gate (issue 11, "Prove it"): a pinned Prowler in its own virtualenv, then
# bench/security.py --gate, which provisions the default stack and the `network = "private"` stack
# into a moto server each (provision.py --image, no Docker) and scans them. It fails (exit 1, one
# paragraph per refused stack naming each check id, severity and resource) on a high or critical FAIL on
# a stack's resources (but ecs_service_no_assign_public_ip on the public default), on a medium or low FAIL
# README.md's "Security" table does not list, on a scan that saw none of a stack's resources in a
# required service, and on a stack it could not provision or scan (a missing Prowler included).
#
#   scripts/security-gate.sh                 # after ./test.sh has made .venv (.ci/run)
#   PROWLER_VENV=/somewhere scripts/security-gate.sh
#   scripts/security-gate.sh --keep DIR      # extra arguments go to bench/security.py
#
# PROWLER_CACHE (.ci/run sets it to /var/cache/flask-deployer when it can write there): the Prowler
# virtualenv and pip's cache live under it instead of the clone, so a second run on the same machine
# reuses the install (scripts/setup-prowler.sh does nothing when the pinned version is there).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "${PROWLER_CACHE:-}" ]; then
    export PROWLER_VENV="${PROWLER_VENV:-$PROWLER_CACHE/prowler-venv}"
    export PIP_CACHE_DIR="${PIP_CACHE_DIR:-$PROWLER_CACHE/pip}"
fi
log() { printf 'security-gate: %s\n' "$*" >&2; }
[ -x .venv/bin/python ] || {
    log "ERROR: no .venv here; run ./test.sh first (it makes .venv)"
    exit 1
}
started=$SECONDS
scripts/setup-prowler.sh
installed=$SECONDS
status=0
.venv/bin/python bench/security.py --gate "$@" || status=$?
log "Prowler setup $((installed - started)) s, the gate $((SECONDS - installed)) s: $([ $status = 0 ] && echo passed || echo "FAILED (exit $status)")"
exit $status
