#!/usr/bin/env bash
# The README's test command: installs what the tests need into .venv (once), then runs
# the linters, the type checker and the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
# Reinstall only when the pinned requirements changed.
stamp=.venv/.requirements-installed
if [ ! -f "$stamp" ] || ! cmp -s <(cat requirements.txt requirements-dev.txt) "$stamp"; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
    cat requirements.txt requirements-dev.txt > "$stamp"
fi

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
