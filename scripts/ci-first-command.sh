#!/usr/bin/env bash
# CI: the README's first command, word for word, where a newcomer types it: a fresh clone (no .venv,
# no state) and a python that cannot import boto3. Then the site must answer on http://127.0.0.1:8080
# with its title, a second run must install nothing, and `python teardown.py --local` must leave no
# container, no emulator process and no open port.
#
#   scripts/ci-first-command.sh      # after scripts/setup-docker.sh (.ci/run); about 2 minutes cold
#
# - The clone is `git clone` of this repository (its committed HEAD) into a temporary folder.
# - The python: this machine's `python` if it cannot import boto3. If it can (CI's image has boto3
#   in its system python), a bare interpreter of the same version stands in for a newcomer's:
#   `python -m venv --without-pip` made outside the clone, first in PATH as `python`. So the first
#   run really creates the clone's .venv and installs requirements-local.txt from PyPI.
# - The engine: CI has installed it already (scripts/setup-docker.sh), so this proves the Python
#   half of the bare-machine path; tests/test_bootstrap.py proves the engine half's decisions and
#   that `scripts/setup-docker.sh --engine` installs nothing where everything is in place.
# - Port 8080 (the README's default) must be free; the script waits up to PORT_WAIT seconds for it.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
PORT=8080
PORT_WAIT="${PORT_WAIT:-600}"
STACK=flask-site
CONTAINER="$STACK-local-web"

log() { printf 'ci-first-command: %s\n' "$*" >&2; }
die() {
    printf 'ci-first-command: FAILED: %s\n' "$*" >&2
    exit 1
}
now() { date +%s.%N; }
seconds_since() { awk -v s="$1" -v e="$(now)" 'BEGIN { printf "%.1f", e - s }'; }
# run NAME WHAT SCRIPT: `python SCRIPT --local` as a user types it, output in $work/NAME.{out,err};
# on failure, its stderr and exit; on success, the seconds it took in $elapsed.
run() {
    local name=$1 what=$2 script=$3 started
    log "\$ python $script --local    ($what)"
    started=$(now)
    python "$script" --local >"$work/$name.out" 2>"$work/$name.err" || {
        show "$work/$name.err"
        die "python $script --local failed ($what)"
    }
    elapsed=$(seconds_since "$started")
}
port_listening() { ss -Htln "sport = :$1" | grep -q .; }
show() { sed 's/^/ci-first-command:   | /' "$@" >&2; }

work=$(mktemp -d /tmp/ci-first-command.XXXXXX)
site="$work/site"
built_image=""
cleanup() {
    local status=$?
    if [ -f "$site/state.local.json" ] && [ -x "$site/.venv/bin/python" ]; then
        log "cleaning up: python teardown.py --local"
        (cd "$site" && .venv/bin/python teardown.py --local >/dev/null 2>&1) || true
    fi
    [ -z "$built_image" ] || docker image rm "$built_image" >/dev/null 2>&1 || true
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT

# --- 0. port 8080 free ------------------------------------------------------------------------------
waited=0
while port_listening "$PORT"; do
    [ "$waited" -lt "$PORT_WAIT" ] || die "port $PORT stays in use: $(ss -Htlnp "sport = :$PORT" | tr -s ' ')"
    [ "$waited" -gt 0 ] || log "port $PORT is in use; waiting up to ${PORT_WAIT}s for it to be free"
    sleep 5
    waited=$((waited + 5))
done

# --- 1. a fresh clone and a bare python ------------------------------------------------------------
git clone --quiet "$REPO" "$site"
[ ! -e "$site/.venv" ] || die "the clone has a .venv"
if python -c 'import boto3' 2>/dev/null; then
    log "this machine's python ($(command -v python)) imports boto3; a bare interpreter stands in for a newcomer's"
    python -m venv --without-pip "$work/bare-python"
    export PATH="$work/bare-python/bin:$PATH"
    hash -r
fi
if python -c 'import boto3' 2>/dev/null; then die "$(command -v python) still imports boto3"; fi
log "python is $(command -v python) ($(python -V 2>&1)), without boto3, docker or moto"
cd "$site"

# --- 2. the README's first command, cold -----------------------------------------------------------
run first "fresh clone, no .venv" provision.py
cold=$elapsed
built_image=$(awk '$1 == "image" && $2 == "created" { print $3 }' "$work/first.out")
show "$work/first.err"
grep -E '^  (base image:|building )' "$work/first.out" | show || true
tail -n 3 "$work/first.out" | show
grep -q '^setup: .*creating .venv and installing requirements-local.txt' "$work/first.err" ||
    die "the first run did not say it creates .venv"
[ -x .venv/bin/python ] || die "no .venv/bin/python after the first run"
grep -q "^Site URL: http://127.0.0.1:$PORT\$" "$work/first.out" || die "no 'Site URL: http://127.0.0.1:$PORT'"

# --- 3. the site answers with its title ------------------------------------------------------------
python - "$PORT" <<'EOF' || die "http://127.0.0.1:$PORT/ did not answer as expected"
import html, re, sys, tomllib, urllib.request

port = sys.argv[1]
owner = tomllib.load(open("website/site.toml", "rb"))["owner"]
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy
with opener.open(f"http://127.0.0.1:{port}/", timeout=10) as answer:
    status, page = answer.status, answer.read().decode()
title = html.unescape(re.search(r"<title>(.*?)</title>", page, re.S).group(1).strip())
expected = f"{owner['name']} — {owner['tagline']}"
print(f"ci-first-command: GET http://127.0.0.1:{port}/ -> {status}, <title>{title}</title>", file=sys.stderr)
sys.exit(0 if status == 200 and title == expected else f"expected 200 and title {expected!r}")
EOF

# --- 4. the same command again: nothing installed, nothing built -----------------------------------
touch "$work/before-second-run"
sleep 1 # coarse file times: anything pip writes from now on is newer than the marker
run second again provision.py
warm=$elapsed
if grep -q '^setup: ' "$work/second.err"; then die "the second run installed something: $(grep '^setup: ' "$work/second.err")"; fi
changed=$(find .venv -newer "$work/before-second-run" -print -quit)
[ -z "$changed" ] || die "the second run changed .venv ($changed)"
if grep -q '^  building ' "$work/second.out"; then die "the second run built the image again"; fi
grep -q "^local container  *unchanged  *$CONTAINER" "$work/second.out" || die "the second run replaced the container"
log "second run: no set-up line, .venv untouched, no build, container unchanged"

# --- 5. teardown leaves nothing --------------------------------------------------------------------
emulator_pid=$(python -c 'import json; print(json.load(open("state.local.json.emulator.json"))["pid"])')
emulator_port=$(python -c 'import json; print(json.load(open("state.local.json.emulator.json"))["port"])')
run down "leaves nothing" teardown.py
down=$elapsed
[ -z "$(docker ps -aq --filter "name=^/$CONTAINER\$")" ] || die "container $CONTAINER is still there"
if [ -d "/proc/$emulator_pid" ] && ! grep -q '^State:.*Z' "/proc/$emulator_pid/status" 2>/dev/null; then
    die "the emulator (pid $emulator_pid) still runs"
fi
if port_listening "$PORT"; then die "port $PORT is still in use"; fi
if port_listening "$emulator_port"; then die "the emulator's port $emulator_port is still in use"; fi
leftovers=$(find . -maxdepth 1 -name 'state*' ! -name state.json.example)
[ -z "$leftovers" ] || die "files left: $leftovers"
log "teardown: no container, no emulator process (pid $emulator_pid), ports $PORT and $emulator_port free, no state files"

log "times: first command cold ${cold}s (venv + pip + build + deploy), second run ${warm}s, teardown ${down}s"
