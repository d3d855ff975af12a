#!/usr/bin/env bash
# Puts a local Docker engine, a local base image and an emulated ECR registry in place, so the
# image build/push tests run on this machine without reaching any registry on the internet.
#
#   sudo scripts/setup-docker.sh          # idempotent: re-runs take about a second
#   sudo scripts/setup-docker.sh --engine # only what `python provision.py --local` needs: steps 1-3
#                                         # with docker.io and debootstrap (no registry, Chromium, wrk)
#   REGISTRY_HOSTS="123456789012.dkr.ecr.us-east-1.amazonaws.com 123456789012.dkr.ecr.eu-west-1.amazonaws.com" \
#       scripts/setup-docker.sh           # serve more ECR regions from the same registry
#
# What it does (each step only when it is not already done):
#   1. apt-get installs docker.io, docker-registry, debootstrap, openssl, apache2-utils, chromium,
#      fonts-liberation (so the browser tests render text), ca-certificates.
#   2. starts dockerd in the background (log: /var/log/dockerd.log).
#   3. builds flask-deployer/base:bookworm (Debian bookworm minbase + python3, python3-venv) with
#      debootstrap from the apt mirror, because no image can be pulled here. The rootfs tarball is
#      cached in /var/cache/flask-deployer/, so a later run re-imports it instead of bootstrapping.
#   4. runs Debian's docker-registry on 127.0.0.1:443 as the ECR endpoint moto hands out
#      (https://123456789012.dkr.ecr.us-east-1.amazonaws.com, user AWS, password
#      123456789012-auth-token), with its own test CA (log: /var/log/flask-deployer-registry.log).
#   5. prints a summary.
# With --engine it does steps 1-3 only, installing just docker.io, debootstrap and ca-certificates:
# what local mode needs to build and run the site (provision.py --local runs it on a machine without
# an engine, see deployer/bootstrap.py).
#
# What this sandbox needed (measured on a Debian bookworm Firecracker VM, kernel 6.18, 2 cores, root,
# cgroup v1 hybrid hierarchy, no systemd, Docker Hub unreachable):
#   - no init system: dockerd is started here with setsid/nohup and spawns its own containerd
#     (/var/run/docker/containerd). Package scripts cannot start services (policy-rc.d exits 101).
#   - storage: overlay2 works on the ext4 root. The script still probes an overlay mount first and
#     uses --storage-driver=vfs when that fails or dockerd does not come up with overlay2; the choice
#     is kept in /var/lib/flask-deployer/dockerd-storage-driver so images stay visible across restarts.
#   - networking: iptables (nf_tables backend) and bridges DO work here (a throw-away dockerd with
#     default networking ran a bridge container that reached PyPI through NAT). dockerd is still run
#     with --iptables=false --ip6tables=false --bridge=none --ip-forward=false, so that it leaves the
#     machine's firewall and sysctls alone; there is no docker0 bridge and every container and build
#     uses host networking (`docker run --network host`, `docker build --network host`, docker-py
#     `network_mode="host"`). Set DOCKERD_FLAGS="" to get Docker's default bridge networking.
#   - TLS: outbound HTTPS goes through this machine's TLS setup, whose CA is in the host bundle
#     /etc/ssl/certs/ca-certificates.crt. The base image carries a copy of that bundle and sets
#     PIP_CERT to it, so pip inside builds reaches PyPI.
#   - dockerd treats registries that resolve to 127.0.0.0/8 as "insecure" (its default
#     --insecure-registry 127.0.0.0/8): it would accept any certificate there. The test CA is
#     installed under /etc/docker/certs.d anyway, and the registry is always served over TLS with
#     htpasswd auth, as ECR is; the wrong-password refusal is real.
#   - the Docker client in /usr/local/bin (28.x) comes first in PATH and talks to the Debian
#     engine (20.10, API 1.41) by API version negotiation; docker.io's own client is /usr/bin/docker.
set -euo pipefail

log() { printf 'setup-docker: %s\n' "$*" >&2; }
die() {
    printf 'setup-docker: ERROR: %s\n' "$*" >&2
    exit 1
}

MODE=all
case "${1:-}" in
"") ;;
--engine) MODE=engine ;;
*) die "unknown argument '$1' (usage: scripts/setup-docker.sh [--engine])" ;;
esac

[ "$(id -u)" -eq 0 ] || die "must run as root"

ACCOUNT=123456789012
REGISTRY_USER=AWS
REGISTRY_PASSWORD="${ACCOUNT}-auth-token"
REGISTRY_HOSTS="${REGISTRY_HOSTS:-${ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com}"
read -r -a HOSTS <<<"$REGISTRY_HOSTS"
[ "${#HOSTS[@]}" -gt 0 ] || die "REGISTRY_HOSTS is empty"
PRIMARY_HOST="${HOSTS[0]}"

BASE_IMAGE=flask-deployer/base:bookworm
SUITE=bookworm
BASE_PACKAGES=python3,python3-venv,ca-certificates
CACHE_DIR=/var/cache/flask-deployer
STATE_DIR=/var/lib/flask-deployer
REG_DIR="$STATE_DIR/registry"
REG_CONFIG="$REG_DIR/config.yml"
REG_PIDFILE=/run/flask-deployer-registry.pid
REG_LOG=/var/log/flask-deployer-registry.log
DOCKERD_LOG=/var/log/dockerd.log
DOCKERD_PIDFILE=/var/run/docker.pid
DRIVER_FILE="$STATE_DIR/dockerd-storage-driver"
DOCKERD_TIMEOUT="${DOCKERD_TIMEOUT:-60}"
REGISTRY_TIMEOUT="${REGISTRY_TIMEOUT:-30}"
# dockerd runs without iptables and without the docker0 bridge (see the header); DOCKERD_FLAGS overrides.
read -r -a DOCKERD_ARGS <<<"${DOCKERD_FLAGS---iptables=false --ip6tables=false --bridge=none --ip-forward=false}"

started_at=$(date +%s)

# --- 1. packages --------------------------------------------------------------------------------
PACKAGES=(docker.io docker-registry debootstrap openssl apache2-utils chromium fonts-liberation ca-certificates curl wrk)
[ "$MODE" = all ] || PACKAGES=(docker.io debootstrap ca-certificates)

install_packages() {
    local missing=() pkg status
    for pkg in "${PACKAGES[@]}"; do
        status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
        [ "$status" = "install ok installed" ] || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        log "packages: all present"
        return
    fi
    log "packages: installing ${missing[*]}"
    # No init system here: make sure package scripts do not try to start dockerd or the registry.
    local own_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        own_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    local ok=1
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || ok=""
    [ -z "$own_policy" ] || rm -f /usr/sbin/policy-rc.d
    [ -n "$ok" ] || die "apt-get install ${missing[*]} failed"
    log "packages: installed"
}

# --- 2. dockerd ---------------------------------------------------------------------------------
docker_up() { docker info >/dev/null 2>&1; }

overlay_works() {
    # Can this kernel mount overlayfs on the filesystem that holds /var/lib/docker?
    mkdir -p /var/lib/docker
    local probe
    probe=$(mktemp -d /var/lib/docker/overlay-probe.XXXXXX)
    mkdir -p "$probe"/{lower,upper,work,merged}
    local ok=1
    if mount -t overlay overlay -o "lowerdir=$probe/lower,upperdir=$probe/upper,workdir=$probe/work" \
        "$probe/merged" 2>/dev/null; then
        umount "$probe/merged"
        ok=0
    fi
    rm -rf "$probe"
    return "$ok"
}

launch_dockerd() {
    local driver=$1
    log "dockerd: starting with --storage-driver=$driver ${DOCKERD_ARGS[*]} (log: $DOCKERD_LOG)"
    printf '\n==== %s setup-docker: dockerd --storage-driver=%s %s\n' "$(date -Is)" "$driver" \
        "${DOCKERD_ARGS[*]}" >>"$DOCKERD_LOG"
    setsid nohup dockerd --storage-driver="$driver" "${DOCKERD_ARGS[@]}" \
        </dev/null >>"$DOCKERD_LOG" 2>&1 &
    local pid=$! waited=0
    while ! docker_up; do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "dockerd: exited during start-up; last log lines:"
            tail -n 15 "$DOCKERD_LOG" | sed 's/^/setup-docker:   | /' >&2
            return 1
        fi
        if [ "$waited" -ge "$DOCKERD_TIMEOUT" ]; then
            log "dockerd: no answer after ${DOCKERD_TIMEOUT}s; stopping it (pid $pid); last log lines:"
            tail -n 15 "$DOCKERD_LOG" | sed 's/^/setup-docker:   | /' >&2
            kill "$pid" 2>/dev/null || true
            sleep 2
            return 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    log "dockerd: up after ~${waited}s (pid $pid)"
}

start_dockerd() {
    if docker_up; then
        log "dockerd: already running ($(docker info -f '{{.Driver}}') storage)"
        return
    fi
    if [ -f "$DOCKERD_PIDFILE" ] && kill -0 "$(cat "$DOCKERD_PIDFILE")" 2>/dev/null; then
        die "dockerd (pid $(cat "$DOCKERD_PIDFILE")) is running but 'docker info' fails; see $DOCKERD_LOG"
    fi
    rm -f "$DOCKERD_PIDFILE"
    mkdir -p "$STATE_DIR"
    local driver
    if [ -f "$DRIVER_FILE" ]; then
        driver=$(cat "$DRIVER_FILE") # keep the driver the images were stored with
    elif overlay_works; then
        driver=overlay2
    else
        log "dockerd: overlayfs cannot be mounted here; using vfs (slower, uses more disk)"
        driver=vfs
    fi
    if ! launch_dockerd "$driver"; then
        [ "$driver" != vfs ] || die "dockerd did not start; see $DOCKERD_LOG"
        log "dockerd: retrying with --storage-driver=vfs"
        driver=vfs
        launch_dockerd vfs || die "dockerd did not start with vfs either; see $DOCKERD_LOG"
    fi
    echo "$driver" >"$DRIVER_FILE"
}

# --- 3. base image ------------------------------------------------------------------------------
apt_mirror() {
    # The Debian mirror apt uses for "$SUITE" (deb822 .sources first, then one-line sources.list).
    if [ -n "${DEBIAN_MIRROR:-}" ]; then
        echo "$DEBIAN_MIRROR"
        return
    fi
    local uri
    uri=$(awk -v suite="$SUITE" '
        function flush() { if (!found && uris != "" && (" " suites " ") ~ (" " suite " ")) { split(uris, u, " "); print u[1]; found = 1 } uris = ""; suites = "" }
        /^[[:space:]]*$/ { flush(); next }
        /^URIs:/ { uris = $0; sub(/^URIs:[[:space:]]*/, "", uris) }
        /^Suites:/ { suites = $0; sub(/^Suites:[[:space:]]*/, "", suites) }
        END { flush() }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
        uri=$(awk -v suite="$SUITE" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) while ($i !~ /\]$/) i++; if ($2 ~ /^\[/) i++; if ($(i + 1) == suite) { print $i; exit } }' \
            /etc/apt/sources.list)
    fi
    [ -n "$uri" ] || die "no apt source for $SUITE found in /etc/apt; set DEBIAN_MIRROR"
    echo "$uri"
}

unmount_under() {
    local dir=$1
    # Deepest first; debootstrap leaves proc/sys mounted in the target when it fails.
    awk -v d="$dir" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/mounts | sort -r |
        while read -r m; do umount -l "$m" 2>/dev/null || true; done
}

build_rootfs() {
    local tarball=$1 mirror rootfs
    mirror=$(apt_mirror)
    rootfs=$(mktemp -d "$CACHE_DIR/rootfs.XXXXXX")
    # shellcheck disable=SC2064
    trap "unmount_under '$rootfs'; rm -rf '$rootfs' '$tarball.tmp'" EXIT
    log "base image: debootstrap --variant=minbase --include=$BASE_PACKAGES $SUITE from $mirror (a few minutes)"
    if ! debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$rootfs" "$mirror" \
        >"$CACHE_DIR/debootstrap.log" 2>&1; then
        tail -n 20 "$CACHE_DIR/debootstrap.log" | sed 's/^/setup-docker:   | /' >&2
        die "debootstrap failed; see $CACHE_DIR/debootstrap.log"
    fi
    unmount_under "$rootfs"

    # This machine's CA bundle, so TLS (pip -> PyPI) inside builds works through its TLS setup.
    cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"

    # Keep it small, and keep later `apt-get install`s in derived images small too.
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
        "$rootfs"/var/log/* "$rootfs"/tmp/* "$rootfs"/var/tmp/* \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
        "$rootfs"/usr/share/locale/* "$rootfs"/usr/share/lintian/* "$rootfs"/usr/share/linda/* \
        "$rootfs"/etc/machine-id "$rootfs"/root/.cache
    mkdir -p "$rootfs/var/lib/apt/lists/partial" "$rootfs/var/cache/apt/archives/partial"
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/flask-deployer-nodoc" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
    cat >"$rootfs/etc/apt/apt.conf.d/flask-deployer-clean" <<'EOF'
APT::Install-Recommends "false";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    : >"$rootfs/etc/machine-id"
    # Docker manages these per container.
    rm -f "$rootfs/etc/hostname"
    : >"$rootfs/etc/resolv.conf"

    tar --numeric-owner --xattrs -C "$rootfs" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    unmount_under "$rootfs"
    rm -rf "$rootfs"
    trap - EXIT
    log "base image: rootfs cached at $tarball ($(du -h "$tarball" | cut -f1))"
}

ensure_base_image() {
    if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        log "base image: $BASE_IMAGE present"
        return
    fi
    mkdir -p "$CACHE_DIR"
    # The cache key covers everything that shapes the rootfs, so changing the recipe rebuilds it.
    local recipe key tarball
    recipe="v1 $SUITE minbase $BASE_PACKAGES $(sha256sum /etc/ssl/certs/ca-certificates.crt | cut -c1-16)"
    key=$(printf '%s' "$recipe" | sha256sum | cut -c1-12)
    tarball="$CACHE_DIR/base-$SUITE-$key.tar"
    if [ -f "$tarball" ]; then
        log "base image: re-importing cached rootfs $tarball"
    else
        build_rootfs "$tarball"
    fi
    docker import \
        --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["bash"]' \
        --change "LABEL org.opencontainers.image.description=\"Debian $SUITE minbase + python3 (flask-deployer setup-docker.sh, rootfs $key)\"" \
        "$tarball" "$BASE_IMAGE" >/dev/null
    log "base image: imported $BASE_IMAGE"
}

# --- 4. emulated ECR registry -------------------------------------------------------------------
ensure_hosts_entries() {
    local host
    for host in "${HOSTS[@]}"; do
        if awk -v h="$host" '$1 == "127.0.0.1" { for (i = 2; i <= NF; i++) if ($i == h) found = 1 } END { exit !found }' /etc/hosts; then
            continue
        fi
        # Appended in place (not replaced): /etc/hosts may be a bind mount.
        printf '127.0.0.1 %s # flask-deployer emulated ECR\n' "$host" >>/etc/hosts
        log "registry: mapped $host to 127.0.0.1 in /etc/hosts"
    done
}

registry_restart_needed=""

ensure_certificates() {
    mkdir -p "$REG_DIR" "$REG_DIR/data"
    chmod 700 "$REG_DIR"
    if [ ! -f "$REG_DIR/ca.key" ] || [ ! -f "$REG_DIR/ca.crt" ]; then
        log "registry: creating test CA $REG_DIR/ca.crt"
        openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
            -subj "/CN=flask-deployer test registry CA" \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
            -keyout "$REG_DIR/ca.key" -out "$REG_DIR/ca.crt" 2>/dev/null
        rm -f "$REG_DIR/server.crt"
    fi
    local san="" host
    for host in "${HOSTS[@]}"; do san+="${san:+,}DNS:$host"; done
    # (Re)issue the server certificate when it is missing, not from this CA, or lacks a host.
    local reissue=""
    if [ ! -f "$REG_DIR/server.crt" ] || [ ! -f "$REG_DIR/server.key" ] ||
        ! openssl verify -CAfile "$REG_DIR/ca.crt" "$REG_DIR/server.crt" >/dev/null 2>&1; then
        reissue=1
    else
        for host in "${HOSTS[@]}"; do
            openssl x509 -in "$REG_DIR/server.crt" -noout -checkhost "$host" 2>/dev/null |
                grep -q 'does match' || reissue=1
        done
    fi
    if [ -n "$reissue" ]; then
        log "registry: issuing server certificate for ${HOSTS[*]}"
        openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=$PRIMARY_HOST" \
            -keyout "$REG_DIR/server.key" -out "$REG_DIR/server.csr" 2>/dev/null
        openssl x509 -req -sha256 -days 825 -in "$REG_DIR/server.csr" \
            -CA "$REG_DIR/ca.crt" -CAkey "$REG_DIR/ca.key" -CAcreateserial \
            -extfile <(printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' "$san") \
            -out "$REG_DIR/server.crt" 2>/dev/null
        rm -f "$REG_DIR/server.csr"
        registry_restart_needed=1
    fi
    for host in "${HOSTS[@]}"; do
        local dir="/etc/docker/certs.d/$host"
        if ! cmp -s "$REG_DIR/ca.crt" "$dir/ca.crt"; then
            mkdir -p "$dir"
            cp "$REG_DIR/ca.crt" "$dir/ca.crt"
            log "registry: installed the CA for dockerd at $dir/ca.crt"
        fi
    done
}

ensure_htpasswd() {
    if [ -f "$REG_DIR/htpasswd" ] &&
        htpasswd -vb "$REG_DIR/htpasswd" "$REGISTRY_USER" "$REGISTRY_PASSWORD" >/dev/null 2>&1; then
        return
    fi
    log "registry: writing $REG_DIR/htpasswd (bcrypt, user $REGISTRY_USER)"
    htpasswd -Bbn "$REGISTRY_USER" "$REGISTRY_PASSWORD" >"$REG_DIR/htpasswd.tmp"
    mv "$REG_DIR/htpasswd.tmp" "$REG_DIR/htpasswd"
    registry_restart_needed=1
}

ensure_registry_config() {
    local new="$REG_CONFIG.tmp"
    cat >"$new" <<EOF
# Written by scripts/setup-docker.sh: the emulated ECR registry for ${HOSTS[*]}.
version: 0.1
log:
  level: info
  fields:
    service: flask-deployer-registry
storage:
  filesystem:
    rootdirectory: $REG_DIR/data
  delete:
    enabled: true
  # No blob descriptor cache: after a manifest delete and a docker-registry garbage-collect run, a cached
  # descriptor would make the registry claim a deleted layer still exists, and the next push of
  # that layer would skip uploading it.
http:
  addr: 127.0.0.1:443
  # No http.host: upload URLs must name the host the client used, or a push through a second
  # REGISTRY_HOSTS name is sent to the first one, where the engine has no credentials (401).
  tls:
    certificate: $REG_DIR/server.crt
    key: $REG_DIR/server.key
  headers:
    X-Content-Type-Options: [nosniff]
auth:
  htpasswd:
    realm: flask-deployer-ecr
    path: $REG_DIR/htpasswd
EOF
    if cmp -s "$new" "$REG_CONFIG"; then
        rm -f "$new"
    else
        mv "$new" "$REG_CONFIG"
        log "registry: wrote $REG_CONFIG"
        registry_restart_needed=1
    fi
}

# Does 127.0.0.1:443 serve our registry, with our certificate and our credentials?
registry_answers() {
    local code
    code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 \
        --resolve "$PRIMARY_HOST:443:127.0.0.1" --cacert "$REG_DIR/ca.crt" \
        -u "$REGISTRY_USER:$REGISTRY_PASSWORD" "https://$PRIMARY_HOST/v2/" 2>/dev/null) || return 1
    [ "$code" = 200 ]
}

registry_pid() {
    local pid
    [ -f "$REG_PIDFILE" ] || return 1
    pid=$(cat "$REG_PIDFILE")
    kill -0 "$pid" 2>/dev/null && [[ "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" == *docker-registry* ]] &&
        echo "$pid"
}

start_registry() {
    local pid
    if pid=$(registry_pid); then
        if [ -z "$registry_restart_needed" ] && registry_answers; then
            log "registry: already serving https://$PRIMARY_HOST (pid $pid)"
            return
        fi
        log "registry: restarting (pid $pid) to pick up new configuration"
        kill "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    elif registry_answers && [ -z "$registry_restart_needed" ]; then
        log "registry: already serving https://$PRIMARY_HOST (started elsewhere)"
        return
    fi
    if ss -Htln 'sport = :443' | grep -q .; then
        die "something else listens on port 443: $(ss -Htlnp 'sport = :443' | tr -s ' ')"
    fi
    log "registry: starting docker-registry on 127.0.0.1:443 (log: $REG_LOG)"
    printf '\n==== %s setup-docker: docker-registry serve %s\n' "$(date -Is)" "$REG_CONFIG" >>"$REG_LOG"
    setsid nohup /usr/bin/docker-registry serve "$REG_CONFIG" </dev/null >>"$REG_LOG" 2>&1 &
    pid=$!
    echo "$pid" >"$REG_PIDFILE"
    local waited=0
    until registry_answers; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 15 "$REG_LOG" | sed 's/^/setup-docker:   | /' >&2
            die "docker-registry exited during start-up; see $REG_LOG"
        fi
        if [ "$waited" -ge $((REGISTRY_TIMEOUT * 10)) ]; then
            tail -n 15 "$REG_LOG" | sed 's/^/setup-docker:   | /' >&2
            die "docker-registry did not answer on https://$PRIMARY_HOST/v2/ within ${REGISTRY_TIMEOUT}s; see $REG_LOG"
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    log "registry: serving https://$PRIMARY_HOST (pid $pid)"
}

# --- run ----------------------------------------------------------------------------------------
install_packages
start_dockerd
ensure_base_image
if [ "$MODE" = engine ]; then
    log "done in $(($(date +%s) - started_at))s (engine and base image $BASE_IMAGE; no registry: --engine)"
    exit 0
fi
ensure_hosts_entries
ensure_certificates
ensure_htpasswd
ensure_registry_config
start_registry

# --- 5. summary ---------------------------------------------------------------------------------
image_id=$(docker image inspect -f '{{.Id}}' "$BASE_IMAGE")
image_size=$(docker image inspect -f '{{.Size}}' "$BASE_IMAGE")
dockerd_cmdline="(pid unknown)"
if [ -f "$DOCKERD_PIDFILE" ]; then
    dockerd_cmdline="pid $(cat "$DOCKERD_PIDFILE"): $(tr '\0' ' ' <"/proc/$(cat "$DOCKERD_PIDFILE")/cmdline" 2>/dev/null | sed "s/ $//" || true)"
fi
[[ "$dockerd_cmdline" != *--bridge=none* ]] || dockerd_cmdline+=" (no bridge: use --network host)"
log "done in $(($(date +%s) - started_at))s"
cat <<EOF
setup-docker: summary
setup-docker:   docker          server $(docker version -f '{{.Server.Version}}') (API $(docker version -f '{{.Server.APIVersion}}')), client $(docker version -f '{{.Client.Version}}')
setup-docker:   storage driver  $(docker info -f '{{.Driver}}')
setup-docker:   dockerd         $dockerd_cmdline
setup-docker:   base image      $BASE_IMAGE $image_id, $((image_size / 1000000)) MB
setup-docker:   registry        https://$PRIMARY_HOST (127.0.0.1:443, user $REGISTRY_USER, password $REGISTRY_PASSWORD)
EOF
for host in "${HOSTS[@]:1}"; do
    echo "setup-docker:                   https://$host (same registry)"
done
