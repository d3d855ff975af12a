#!/usr/bin/env bash
# Installs a pinned Prowler (PyPI `prowler`, the AWS security scanner bench/security.py runs against a
# stack provisioned into moto) into a virtualenv of its own: its pins (boto3 1.40 against the project's
# 1.43, pydantic, ...) clash with the project's, so it never goes into .venv.
#
#   scripts/setup-prowler.sh                       # idempotent: a re-run installs nothing (about a second)
#   PROWLER_VENV=/opt/flask-deployer/prowler-venv scripts/setup-prowler.sh   # somewhere else
#   PIP_CACHE_DIR=/var/cache/flask-deployer/pip scripts/setup-prowler.sh    # pip keeps its downloads there
#                                                  (scripts/security-gate.sh sets both from PROWLER_CACHE)
#
# What it does (each step only when it is not already done):
#   1. creates the virtualenv $PROWLER_VENV (default: .prowler-venv in the repository, gitignored)
#      with a python 3.10-3.13 (prowler 5.46.0 requires >=3.10,<3.14): $PROWLER_PYTHON, else
#      python3.11, python3.12, python3.
#   2. pip installs prowler==$PROWLER_VERSION into it and writes a marker file naming the version, so
#      an interrupted install is redone, and a changed pin reinstalls.
#   3. prints the path of the prowler command and its version.
# Cold install measured here (Debian, Python 3.11, 2 shared cores, PyPI over the network): 9 min 05 s wall
# (544 s for pip), a 2.3 GB virtualenv: prowler pulls the SDKs of every cloud it scans (Azure, GCP, M365,
# Kubernetes, ...). The re-run: 0.01 s.
set -euo pipefail
cd "$(dirname "$0")/.."

# The pin. 5.46.0 was the newest release on PyPI when the harness was written; bump it here only.
PROWLER_VERSION=5.46.0
PROWLER_VENV="${PROWLER_VENV:-$PWD/.prowler-venv}"
MARKER="$PROWLER_VENV/.prowler-$PROWLER_VERSION-installed"

log() { printf 'setup-prowler: %s\n' "$*" >&2; }
die() {
    printf 'setup-prowler: ERROR: %s\n' "$*" >&2
    exit 1
}

supported() { "$1" -c 'import sys; sys.exit(not ((3, 10) <= sys.version_info[:2] <= (3, 13)))' 2>/dev/null; }

pick_python() {
    local candidate
    for candidate in ${PROWLER_PYTHON:-} python3.11 python3.12 python3; do
        if command -v "$candidate" >/dev/null 2>&1 && supported "$candidate"; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

if [ -f "$MARKER" ] && [ -x "$PROWLER_VENV/bin/prowler" ]; then
    log "prowler $PROWLER_VERSION is already installed in $PROWLER_VENV: nothing to do"
else
    started=$(date +%s)
    if [ ! -x "$PROWLER_VENV/bin/python" ] || ! supported "$PROWLER_VENV/bin/python"; then
        PYTHON=$(pick_python) || die "no python 3.10-3.13 found (set PROWLER_PYTHON)"
        log "creating the virtualenv $PROWLER_VENV with $PYTHON ($("$PYTHON" --version 2>&1))"
        rm -rf "$PROWLER_VENV"
        "$PYTHON" -m venv "$PROWLER_VENV"
    else
        log "reusing the virtualenv $PROWLER_VENV"
    fi
    rm -f "$PROWLER_VENV"/.prowler-*-installed
    log "pip installing prowler==$PROWLER_VERSION (a cold install takes a few minutes)"
    "$PROWLER_VENV/bin/python" -m pip install --quiet --upgrade pip
    "$PROWLER_VENV/bin/python" -m pip install --quiet "prowler==$PROWLER_VERSION"
    installed=$("$PROWLER_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("prowler"))')
    [ "$installed" = "$PROWLER_VERSION" ] || die "pip installed prowler $installed, not $PROWLER_VERSION"
    touch "$MARKER"
    log "installed prowler $PROWLER_VERSION in $(($(date +%s) - started)) s"
fi
log "prowler: $PROWLER_VENV/bin/prowler ($PROWLER_VERSION)"
