#!/usr/bin/env bash
# End-to-end test harness for ragbuild.
#
# Brings up, idempotently, everything the e2e suite needs on this machine
# (a machine with no network except the Debian and PyPI package registries):
#   - a Docker engine (Debian's docker.io; client /usr/bin/docker),
#   - a local base image python:3.11-slim: the engine's own when it has one (pulled, or made
#     by other means), else pulled or debootstrap'ed (no image registry may be reachable); the
#     other engines get the first engine's by docker save | docker load,
#   - a wheel mirror served on the docker bridge for `pip install` in builds,
#     over http and over https (a certificate from a test CA only the host side
#     knows: $STATE/mirror-tls/ca.crt, never installed anywhere; /private/ asks
#     for a user and token, as a private index does),
#   - a plain http registry on localhost,
#   - an ECR-shaped TLS registry with htpasswd auth on
#     123456789012.dkr.ecr.us-east-1.amazonaws.com:443 (mapped to 127.0.0.1),
#   - a moto server standing in for the AWS ECR API,
#   - the suite's legs (clients and engines beyond the first; see "legs" below): the buildx
#     plugin, Debian 13's docker 26, a second dockerd over TCP ("remote") and a docker 26 dockerd
#     with the containerd image store ("multiplatform"),
# and tears down what it started.
#
# Usage:
#   harness.sh up [--with-buildessential] [--with-realistic]
#                                           bring everything up, write env file;
#                                           --with-realistic also mirrors benchmarks/
#                                           requirements*.txt (~120 wheels, make bench)
#   harness.sh engine                       only the docker engine and the base image (make engine);
#                                           with DOCKER_HOST set, that engine's
#   harness.sh base-image HOST [CLIENT]     give the engine at HOST the first engine's base image
#                                           (docker save | docker load, as up does for its engines)
#   harness.sh down                         stop what `up` started (keeps caches)
#   harness.sh env                          print the env file path if up
#   harness.sh status                       show what runs
#   harness.sh stop-registry|start-registry stop/start the plain registry (fault tests)
#
# Environment:
#   RAGBUILD_E2E_STATE  state dir (pid files, logs, env file); default /var/tmp/ragbuild-e2e
#   RAGBUILD_E2E_CACHE  cache dir (rootfs tarballs, wheels);  default /var/cache/ragbuild-e2e
#
# Only 127.0.0.1/localhost, the docker bridge and our own containers are ever
# contacted, plus the Debian mirror apt uses and PyPI through pip.

set -Eeuo pipefail

HARNESS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
REPO=$(cd "$(dirname "$HARNESS")/../.." && pwd)
STATE=${RAGBUILD_E2E_STATE:-/var/tmp/ragbuild-e2e}
CACHE=${RAGBUILD_E2E_CACHE:-/var/cache/ragbuild-e2e}
ENV_FILE=$STATE/env
DOCKERD=/usr/sbin/dockerd
DOCKER=/usr/bin/docker   # the legacy leg's client and the harness's own (the other legs: E2E_LEG_*)
BASE_IMAGE=python:3.11-slim
BE_IMAGE=python:3.11-slim-buildessential
SELFTEST_IMAGE=ragbuild-e2e-selftest
ECR_ACCOUNT=123456789012
ECR_REGION=us-east-1
ECR_HOST=$ECR_ACCOUNT.dkr.ecr.$ECR_REGION.amazonaws.com
ECR_USER=AWS
ECR_PASSWORD=$ECR_ACCOUNT-auth-token
HOSTS_MARK="# ragbuild-e2e harness"
CERTS_D=/etc/docker/certs.d/$ECR_HOST
DEFAULT_WHEEL_PORT=18631
DEFAULT_PLAIN_PORT=18632
DEFAULT_MOTO_PORT=18633
DEFAULT_TLS_WHEEL_PORT=18636
WAIT_DOCKER=60
WAIT_SERVICE=30
MIN_BOTOCORE=1.31.0     # first botocore honouring AWS_ENDPOINT_URL
export DEBIAN_FRONTEND=noninteractive

# ---------------------------------------------------------------- helpers

log() { printf '[harness] %s\n' "$*" >&2; }
die() { printf '[harness] ERROR: %s\n' "$*" >&2; exit 1; }
trap 'rc=$?; printf "[harness] ERROR: command failed (exit %s) at line %s: %s\n" "$rc" "$LINENO" "$BASH_COMMAND" >&2' ERR

now() { date +%s.%N; }
TIMINGS=()
# step NAME FUNC ARGS... : run FUNC, print and record how long it took.
step() {
    local name=$1 t0 t1 dt
    shift
    t0=$(now)
    log "== $name"
    "$@"
    t1=$(now)
    dt=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    TIMINGS+=("$(printf '%-24s %7ss' "$name" "$dt")")
    log "-- $name done in ${dt}s"
}

# wait_until SECONDS DESCRIPTION CMD... : poll CMD until it succeeds.
wait_until() {
    local timeout=$1 desc=$2 deadline
    shift 2
    deadline=$(( $(date +%s) + timeout ))
    until "$@" >/dev/null 2>&1; do
        if (( $(date +%s) >= deadline )); then
            log "timed out after ${timeout}s waiting for $desc"
            return 1
        fi
        sleep 0.2
    done
}

pidfile() { printf '%s/%s.pid' "$STATE" "$1"; }

# cmdline_of PID : the process' command line, space separated.
cmdline_of() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null; }

# svc_pid NAME MATCH : print the pid of our service NAME if it is alive and
# its command line still contains MATCH (guards against pid reuse).
svc_pid() {
    local f pid
    f=$(pidfile "$1")
    [[ -s $f ]] || return 1
    pid=$(<"$f")
    [[ $pid =~ ^[0-9]+$ && -d /proc/$pid ]] || return 1
    [[ $(cmdline_of "$pid") == *"$2"* ]] || return 1
    # a zombie is not alive
    [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]] || return 1
    printf '%s\n' "$pid"
}

# start_bg NAME LOG CMD... : start CMD detached (own session), record its pid.
start_bg() {
    local name=$1 logf=$2
    shift 2
    # fd 9 holds the harness lock: services must not inherit it
    setsid "$@" >"$logf" 2>&1 </dev/null 9>&- &
    echo $! >"$(pidfile "$name")"
    disown $! 2>/dev/null || true
}

# stop_pid NAME PID [GRACE] : SIGTERM, wait, then SIGKILL.
stop_pid() {
    local name=$1 pid=$2 grace=${3:-15} i
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < grace * 5; i++)); do
        [[ -d /proc/$pid && $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]] || return 0
        sleep 0.2
    done
    log "$name (pid $pid) ignored SIGTERM for ${grace}s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
}

# stop_svc NAME MATCH [GRACE]
stop_svc() {
    local pid
    if pid=$(svc_pid "$1" "$2"); then
        stop_pid "$1" "$pid" "${3:-15}"
    fi
    rm -f "$(pidfile "$1")"
}

port_in_use() { ss -Htln "sport = :$1" 2>/dev/null | grep -q .; }

# choose_port NAME DEFAULT : reuse the port saved for NAME if still free,
# else DEFAULT if free, else a free one from 20000-29999.
choose_port() {
    local name=$1 def=$2 saved f p i
    f=$STATE/$name.port
    if [[ -s $f ]]; then
        saved=$(<"$f")
        if ! port_in_use "$saved"; then echo "$saved"; return; fi
    fi
    if ! port_in_use "$def"; then echo "$def" >"$f"; echo "$def"; return; fi
    for ((i = 0; i < 200; i++)); do
        p=$((20000 + RANDOM % 10000))
        if ! port_in_use "$p"; then echo "$p" >"$f"; echo "$p"; return; fi
    done
    die "no free TCP port found for $name"
}

show_log_tail() { [[ -f $1 ]] && { log "last lines of $1:"; tail -n "${2:-20}" "$1" >&2; } || true; }

version_ge() { [[ $(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1) == "$2" ]]; }

# Real interpreter (not a pyenv shim), so pid command lines are recognisable.
PY=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null) || die "python3 not found"

# ---------------------------------------------------------------- packages

wait_for_other_apt() {
    local deadline=$(( $(date +%s) + 900 )) said=
    while pgrep -x 'apt|apt-get|dpkg|aptitude|unattended-upgr' >/dev/null 2>&1; do
        [[ -n $said ]] || { log "another apt/dpkg is running ($(pgrep -a -x 'apt|apt-get|dpkg' | head -n1)); waiting for it"; said=1; }
        (( $(date +%s) < deadline )) || die "apt/dpkg still busy after 15 minutes"
        sleep 2
    done
}

APT_UPDATED=
apt_install() {
    local apt=(apt-get -o DPkg::Lock::Timeout=600 -o Acquire::Retries=3)
    wait_for_other_apt
    if [[ -z $APT_UPDATED ]]; then
        log "apt-get update"
        "${apt[@]}" update -qq >"$STATE/apt.log" 2>&1 || { show_log_tail "$STATE/apt.log"; die "apt-get update failed"; }
        APT_UPDATED=1
    fi
    wait_for_other_apt
    log "apt-get install $*"
    # Keep package maintainer scripts from starting services (docker, registry):
    # we run our own instances with our own configs.
    local made_policy=
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        made_policy=1
    fi
    local rc=0
    "${apt[@]}" install -y -qq "$@" >>"$STATE/apt.log" 2>&1 || rc=$?
    [[ -z $made_policy ]] || rm -f /usr/sbin/policy-rc.d
    (( rc == 0 )) || { show_log_tail "$STATE/apt.log" 30; die "apt-get install $* failed"; }
}

need_rootfs_build() {
    # debootstrap is needed only when an image and its cached tarball are missing
    ! $DOCKER image inspect "$BASE_IMAGE" >/dev/null 2>&1 && [[ ! -s $CACHE/rootfs-python311.tar ]] && return 0
    if [[ -n $WITH_BE ]]; then
        ! $DOCKER image inspect "$BE_IMAGE" >/dev/null 2>&1 && [[ ! -s $CACHE/rootfs-python311-buildessential.tar ]] && return 0
    fi
    return 1
}

ensure_packages() {
    local pkgs=()
    [[ -x $DOCKERD && -x /usr/bin/docker ]] || pkgs+=(docker.io)
    command -v docker-registry >/dev/null || pkgs+=(docker-registry)
    command -v htpasswd >/dev/null || pkgs+=(apache2-utils)
    command -v openssl >/dev/null || pkgs+=(openssl)
    command -v curl >/dev/null || pkgs+=(curl)
    command -v nginx >/dev/null || pkgs+=(nginx)  # the wheel mirror (ensure_wheel_server)
    command -v ss >/dev/null && command -v ip >/dev/null || pkgs+=(iproute2)
    [[ -s /etc/ssl/certs/ca-certificates.crt ]] || pkgs+=(ca-certificates)
    "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1 || pkgs+=(python3-venv)  # ensure_python_tools
    if ! command -v debootstrap >/dev/null && need_rootfs_build; then pkgs+=(debootstrap); fi
    if ((${#pkgs[@]})); then
        apt_install "${pkgs[@]}"
    else
        log "apt packages already installed"
    fi
    [[ -x /usr/bin/docker && -x $DOCKERD ]] || die "/usr/bin/docker or dockerd missing after installing docker.io"
}

botocore_of_aws() { aws --version 2>&1 | sed -n 's#.*botocore/\([0-9.]*\).*#\1#p'; }

# moto[server] and the aws CLI come from python3 when it has them (an interpreter of the user's
# own, e.g. pyenv), else from a venv of the harness's: Debian's python3 has no pip and refuses
# system-wide installs (PEP 668, /usr/lib/python3*/EXTERNALLY-MANAGED) on Debian 12 and 13 alike.
# The venv's aws is linked into /usr/local/bin, where a user's own install would put it.
TOOLS_VENV=$CACHE/tools-venv
MOTO_PY=
ensure_python_tools() {
    local want=() tools_py=$TOOLS_VENV/bin/python link=
    MOTO_PY=$PY
    if ! "$PY" -c 'import moto.server, flask, flask_cors' >/dev/null 2>&1; then
        MOTO_PY=$tools_py
        "$tools_py" -c 'import moto.server, flask, flask_cors' >/dev/null 2>&1 || want+=("moto[server]")
    fi
    if ! command -v aws >/dev/null 2>&1; then
        want+=(awscli) link=1
    else
        local bc
        bc=$(botocore_of_aws)
        if [[ -z $bc ]] || ! version_ge "$bc" "$MIN_BOTOCORE"; then
            log "aws CLI $(command -v aws) uses botocore '${bc:-?}' (< $MIN_BOTOCORE, ignores AWS_ENDPOINT_URL): installing a newer one"
            want+=("awscli>=1.29.0") link=1
        fi
    fi
    if ((${#want[@]})); then
        if [[ ! -x $tools_py ]]; then
            log "python3 -m venv $TOOLS_VENV"
            "$PY" -m venv "$TOOLS_VENV" >"$STATE/pip-tools.log" 2>&1 \
                || { show_log_tail "$STATE/pip-tools.log" 30; die "python3 -m venv $TOOLS_VENV failed"; }
        fi
        log "pip install ${want[*]} (into $TOOLS_VENV)"
        "$tools_py" -m pip install -q "${want[@]}" >>"$STATE/pip-tools.log" 2>&1 \
            || { show_log_tail "$STATE/pip-tools.log" 30; die "pip install ${want[*]} failed"; }
        [[ -z $link ]] || ln -sf "$TOOLS_VENV/bin/aws" /usr/local/bin/aws
        hash -r
    else
        log "moto[server] and awscli already installed"
    fi
    "$MOTO_PY" -c 'import moto.server, flask, flask_cors' >/dev/null 2>&1 || die "moto[server] does not import in $MOTO_PY"
    command -v aws >/dev/null || die "aws CLI not on PATH after installing awscli"
    local bc
    bc=$(botocore_of_aws)
    version_ge "${bc:-0}" "$MIN_BOTOCORE" || die "aws CLI $(command -v aws): botocore ${bc:-?} too old for AWS_ENDPOINT_URL"
}

# ---------------------------------------------------------------- docker engine

ensure_dockerd() {
    if svc_pid dockerd dockerd >/dev/null && $DOCKER info >/dev/null 2>&1; then
        log "docker engine (started by this harness, pid $(svc_pid dockerd dockerd)) is running"
        return
    fi
    if $DOCKER info >/dev/null 2>&1; then
        log "docker engine ${DOCKER_HOST:+at $DOCKER_HOST }already running (not ours: down will leave it alone)"
        rm -f "$(pidfile dockerd)"
        return
    fi
    # Someone else's dockerd may be starting right now.
    if [[ -s /var/run/docker.pid ]]; then
        local p
        p=$(</var/run/docker.pid)
        if [[ $p =~ ^[0-9]+$ && -d /proc/$p ]] && [[ $(cmdline_of "$p") == *dockerd* ]]; then
            log "dockerd pid $p exists but does not answer yet; waiting for it"
            wait_until "$WAIT_DOCKER" "dockerd pid $p" $DOCKER info \
                || die "dockerd (pid $p, not started by the harness) does not answer 'docker info'"
            return
        fi
        log "removing stale /var/run/docker.pid (pid $p not alive)"
        rm -f /var/run/docker.pid
    fi
    log "starting dockerd (log: $STATE/dockerd.log)"
    start_bg dockerd "$STATE/dockerd.log" "$DOCKERD"
    if ! wait_until "$WAIT_DOCKER" "docker engine" $DOCKER info; then
        show_log_tail "$STATE/dockerd.log" 30
        die "dockerd did not come up within ${WAIT_DOCKER}s"
    fi
    svc_pid dockerd dockerd >/dev/null || { show_log_tail "$STATE/dockerd.log" 30; die "dockerd exited"; }
}

BRIDGE_IP=
detect_bridge() {
    BRIDGE_IP=$(ip -4 -o addr show dev docker0 2>/dev/null | awk '{split($4, a, "/"); print a[1]; exit}')
    [[ -n $BRIDGE_IP ]] || die "docker0 has no IPv4 address (is dockerd running with its default bridge?)"
    [[ $BRIDGE_IP == 172.17.0.1 ]] || log "WARNING: docker0 is $BRIDGE_IP, not 172.17.0.1; using $BRIDGE_IP"
}

# ---------------------------------------------------------------- base image

# The Debian mirror apt uses (deb822 or one-line format), for the system's own suite (bookworm
# on Debian 12, trixie on 13): the same mirror serves bookworm for debootstrap and trixie's packages.
apt_mirror() {
    local m= codename
    codename=$(. /etc/os-release 2>/dev/null; echo "${VERSION_CODENAME:-bookworm}")
    m=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk -v codename="$codename" '
        BEGIN { RS = ""; FS = "\n" }
        {
            types = uris = suites = ""; enabled = 1
            for (i = 1; i <= NF; i++) {
                if ($i ~ /^Types:/)   types = $i
                if ($i ~ /^URIs:/)    uris = $i
                if ($i ~ /^Suites:/)  suites = $i
                if ($i ~ /^Enabled:[ \t]*no/) enabled = 0
            }
            if (enabled && types ~ /[ \t]deb([ \t]|$)/ && suites ~ ("[ \t]" codename "([ \t]|$)")) {
                sub(/^URIs:[ \t]*/, "", uris); split(uris, u, /[ \t]+/); print u[1]; exit
            }
        }')
    if [[ -z $m ]]; then
        m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
            | awk -v codename="$codename" '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) { if ($(i+1) == codename) { print $i; exit } break } }')
    fi
    printf '%s\n' "${m:-http://deb.debian.org/debian}"
}

# umount anything still mounted below DIR (debootstrap mounts proc/sys/dev).
umount_below() {
    local dir mnts
    dir=$(readlink -f "$1")
    mnts=$(awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r)
    [[ -z $mnts ]] || while read -r m; do umount -l "$m" || true; done <<<"$mnts"
    ! awk -v d="$dir/" 'index($2, d) == 1 { found = 1 } END { exit !found }' /proc/mounts
}

# build_rootfs TARBALL INCLUDES : debootstrap a bookworm rootfs and tar it.
build_rootfs() {
    local tar=$1 include=$2 root mirror
    command -v debootstrap >/dev/null || apt_install debootstrap
    mkdir -p "$CACHE"
    root=$CACHE/rootfs-build.$$
    mirror=$(apt_mirror)
    log "debootstrap bookworm from $mirror with $include (log: $STATE/debootstrap.log)"
    if ! debootstrap --variant=minbase --include="$include" bookworm "$root" "$mirror" >"$STATE/debootstrap.log" 2>&1; then
        umount_below "$root" || true
        show_log_tail "$STATE/debootstrap.log" 30
        die "debootstrap failed"
    fi
    umount_below "$root" || die "could not unmount filesystems below $root"
    # Like the official image: pip may install system-wide, python/pip on PATH.
    rm -f "$root"/usr/lib/python3*/EXTERNALLY-MANAGED
    mkdir -p "$root/usr/local/bin"
    ln -sf /usr/bin/python3 "$root/usr/local/bin/python"
    [[ -e $root/usr/bin/pip3 ]] && ln -sf /usr/bin/pip3 "$root/usr/local/bin/pip"
    chroot "$root" apt-get clean >/dev/null 2>&1 || true
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/tmp/* "$root"/var/log/*.log
    tar -C "$root" --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
        -cf "$tar.tmp" .
    mv -f "$tar.tmp" "$tar"
    umount_below "$root" && rm -rf --one-file-system "$root"
    log "cached rootfs: $tar ($(du -h "$tar" | cut -f1))"
}

# ensure_image TAG TARBALL INCLUDES
ensure_image() {
    local tag=$1 tar=$2 include=$3 id
    if $DOCKER image inspect "$tag" >/dev/null 2>&1; then
        log "image $tag present"
    else
        [[ -s $tar ]] || build_rootfs "$tar" "$include"
        log "docker import $tar as $tag"
        $DOCKER import \
            -c 'CMD ["python3"]' \
            -c 'ENV LANG=C.UTF-8' \
            -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            -m "ragbuild e2e: debootstrap bookworm ($include)" \
            "$tar" "$tag" >/dev/null || die "docker import of $tar failed"
    fi
    id=$($DOCKER image inspect -f '{{.Id}}' "$tag")
    if [[ -f $STATE/image-ok.${id#sha256:} ]]; then
        return
    fi
    log "checking python3 -m venv and useradd in $tag"
    $DOCKER run --rm --network none "$tag" sh -ec '
        python3 -m venv /tmp/venv
        /tmp/venv/bin/python -c "import sys; assert sys.version_info[:2] == (3, 11), sys.version"
        /tmp/venv/bin/pip --version >/dev/null
        useradd --create-home --shell /usr/sbin/nologin e2e
        id e2e >/dev/null
        pip --version >/dev/null' >"$STATE/image-check.log" 2>&1 \
        || { show_log_tail "$STATE/image-check.log"; die "image $tag lacks a working venv/useradd/pip"; }
    touch "$STATE/image-ok.${id#sha256:}"
}

ensure_base_images() {
    ensure_image "$BASE_IMAGE" "$CACHE/rootfs-python311.tar" python3,python3-pip,python3-venv,ca-certificates
    if [[ -n $WITH_BE ]]; then
        ensure_image "$BE_IMAGE" "$CACHE/rootfs-python311-buildessential.tar" \
            python3,python3-pip,python3-venv,ca-certificates,build-essential
    fi
}

# ---------------------------------------------------------------- wheel mirror

WHEELS=$CACHE/wheels
# The benchmarks' realistic set (hundreds of MB) only with `up --with-realistic`.
requirement_files() {
    local f bench=()
    shopt -s nullglob globstar
    [[ -z $WITH_REALISTIC ]] || bench=("$REPO"/benchmarks/**/requirements*.txt)
    for f in "$REPO"/src/rag_worker/requirements*.txt "${bench[@]}"; do
        [[ -f $f ]] && printf '%s\n' "$f"
    done
    shopt -u nullglob globstar
}

# pip_wheel_in_base_image REQDIR ARGS... : `pip wheel ARGS` into $WHEELS by the base image's Python,
# the one the builds install with (the harness's own python3 may be another: Debian 13's is 3.13,
# whose wheels of compiled packages such as pydantic-core a 3.11 image cannot install). REQDIR is
# /req in the container; PyPI through the host's network and the host's CA bundle (an egress proxy
# the host trusts is trusted here too).
pip_wheel_in_base_image() {
    local req=$1 bundle=/etc/ssl/certs/ca-certificates.crt
    shift
    $DOCKER run --rm --network host -v "$WHEELS:/wheels" -v "$req:/req:ro" -v "$bundle:$bundle:ro" \
        -e PIP_CERT="$bundle" -e PIP_DISABLE_PIP_VERSION_CHECK=1 -e PIP_DEFAULT_TIMEOUT=120 \
        "$BASE_IMAGE" python3 -m pip wheel -q --prefer-binary --find-links /wheels -w /wheels "$@"
}

ensure_wheels() {
    local files=() key tmpreq=
    mapfile -t files < <(requirement_files)
    if ((${#files[@]} == 0)); then
        log "WARNING: src/rag_worker/requirements.txt not found; mirroring unpinned fastapi + uvicorn"
        tmpreq=$(mktemp)
        printf 'fastapi\nuvicorn\n' >"$tmpreq"
        files=("$tmpreq")
    fi
    # base tools too, for Dockerfiles that upgrade pip/setuptools/wheel, and the
    # Dockerfile's installer (its `ARG UV_VERSION=`)
    local extras=(pip setuptools wheel)
    extras+=($(sed -n 's/^ARG UV_VERSION=\([0-9][0-9.]*\).*/uv==\1/p' "$REPO/Dockerfile" 2>/dev/null | head -n 1))
    key=$( { printf 'extras: %s\n' "${extras[*]}"; for f in "${files[@]}"; do printf '== %s\n' "${f#"$REPO"/}"; cat "$f"; done; } | sha256sum | cut -d' ' -f1)
    mkdir -p "$WHEELS"
    if [[ -f $WHEELS/.requirements.sha256 && $(<"$WHEELS/.requirements.sha256") == "$key" ]] \
        && compgen -G "$WHEELS/*.whl" >/dev/null; then
        log "wheels up to date in $WHEELS ($(ls "$WHEELS"/*.whl | wc -l) wheels)"
        [[ -z $tmpreq ]] || rm -f "$tmpreq"
        return
    fi
    log "pip wheel -> $WHEELS from: ${files[*]#"$REPO"/} ${extras[*]}"
    # one resolution per file: a file may pin another version of a package in another
    # (benchmarks/requirements-realistic-bump.txt)
    local failed='' req i=0
    req=$(mktemp -d)
    : >"$STATE/pip-wheels.log"
    for f in "${files[@]}" ""; do
        local what=(-r "/req/$i.txt")
        if [[ -n $f ]]; then cp "$f" "$req/$i.txt"; else what=("${extras[@]}"); fi
        i=$((i + 1))
        pip_wheel_in_base_image "$req" "${what[@]}" >>"$STATE/pip-wheels.log" 2>&1 || failed=1
    done
    rm -rf "$req"
    if [[ -n $failed ]]; then
        [[ -z $tmpreq ]] || rm -f "$tmpreq"
        show_log_tail "$STATE/pip-wheels.log" 30
        die "pip wheel for the mirror failed"
    fi
    [[ -z $tmpreq ]] || rm -f "$tmpreq"
    # only a real requirements file makes the cache authoritative
    if [[ -z $tmpreq ]]; then echo "$key" >"$WHEELS/.requirements.sha256"; else rm -f "$WHEELS/.requirements.sha256"; fi
    log "$(ls "$WHEELS"/*.whl | wc -l) wheels in $WHEELS"
}

WHEEL_PORT=
WHEEL_CONF=$STATE/wheels-nginx.conf
# The wheel mirror: nginx serving $WHEELS as a find-links directory (its autoindex page). Like
# PyPI's file host it answers HTTP Range requests, so uv reads a wheel's METADATA from its zip
# directory without downloading the wheel. Python's http.server, the mirror before, answers none
# (and listens with a backlog of 5): uv's resolution then streamed every wheel, 4-9 s of a cold
# build of the realistic set (run 7 in `git show 9b045af:benchmarks/README.md`).
ensure_wheel_server() {
    local pid
    if pid=$(svc_pid wheels "-c $WHEEL_CONF") && grep -q "listen $BRIDGE_IP:" "$WHEEL_CONF" 2>/dev/null; then
        WHEEL_PORT=$(<"$STATE/wheels.port")
        if curl -sf -o /dev/null --max-time 5 "http://$BRIDGE_IP:$WHEEL_PORT/"; then
            log "wheel mirror running (nginx, pid $pid) at http://$BRIDGE_IP:$WHEEL_PORT/"
            return
        fi
        stop_pid wheels "$pid" 5
    fi
    if pid=$(svc_pid wheels "--directory $WHEELS"); then  # an earlier harness's http.server
        stop_pid wheels "$pid" 5
    fi
    rm -f "$(pidfile wheels)"
    WHEEL_PORT=$(choose_port wheels "$DEFAULT_WHEEL_PORT")
    mkdir -p "$STATE/wheels-nginx"
    cat >"$WHEEL_CONF" <<EOF
# written by tests/e2e/harness.sh: the wheel mirror
daemon off;
user root;
worker_processes 2;
pid $STATE/wheels-nginx/nginx.pid;
error_log stderr;
events { worker_connections 512; }
http {
    access_log off;
    sendfile on;
    default_type application/octet-stream;
    client_body_temp_path $STATE/wheels-nginx/body;
    proxy_temp_path $STATE/wheels-nginx/proxy;
    fastcgi_temp_path $STATE/wheels-nginx/fastcgi;
    uwsgi_temp_path $STATE/wheels-nginx/uwsgi;
    scgi_temp_path $STATE/wheels-nginx/scgi;
    server {
        listen $BRIDGE_IP:$WHEEL_PORT;
        root $WHEELS;
        autoindex on;
    }
}
EOF
    log "starting wheel mirror (nginx) on http://$BRIDGE_IP:$WHEEL_PORT/"
    start_bg wheels "$STATE/wheels.log" nginx -c "$WHEEL_CONF"
    wait_until "$WAIT_SERVICE" "wheel mirror" curl -sf -o /dev/null --max-time 2 "http://$BRIDGE_IP:$WHEEL_PORT/" \
        || { show_log_tail "$STATE/wheels.log"; die "wheel mirror did not answer on $BRIDGE_IP:$WHEEL_PORT"; }
}

# ---------------------------------------------------------------- wheel mirror over https

# The same wheels over https, for builds that must trust a CA the host trusts and the base image
# does not (a TLS-inspecting proxy's, a private index's): a fresh test CA made here, known only to
# the host side (its certificate stays in $MIRROR_TLS_DIR, never in the system store, never in an
# image), signs a certificate for the docker bridge's address. The builds of every leg reach the
# mirror at that address (the other engines' containers through the host), so the certificate
# names only it. /private/ serves the same directory behind HTTP basic auth (user
# $TLS_MIRROR_USER, the token in $MIRROR_TLS_DIR/token, random per state dir): a build that
# installs from it proves the credentials reached pip and uv. A separate nginx from the http
# mirror's, so bringing this one up never interrupts builds using that one.
MIRROR_TLS_DIR=$STATE/mirror-tls
E2E_TLS_MIRROR_CA=$MIRROR_TLS_DIR/ca.crt
TLS_MIRROR_USER=ragbuild-e2e
TLS_WHEEL_PORT=
TLS_WHEEL_CONF=$STATE/wheels-tls-nginx.conf
TLS_WHEEL_LOG=$STATE/wheels-tls-access.log

# the cert is ours, for $BRIDGE_IP, signed by the CA and valid for a day more
mirror_cert_ok() {
    local d=$MIRROR_TLS_DIR
    [[ -s $d/ca.crt && -s $d/ca.key && -s $d/server.crt && -s $d/server.key && -s $d/token && -s $d/htpasswd ]] \
        && openssl x509 -checkend 86400 -noout -in "$d/server.crt" >/dev/null \
        && openssl verify -CAfile "$d/ca.crt" "$d/server.crt" >/dev/null 2>&1 \
        && openssl x509 -noout -ext subjectAltName -in "$d/server.crt" 2>/dev/null | grep -qx "[[:space:]]*IP Address:$BRIDGE_IP"
}

ensure_mirror_cert() {
    mirror_cert_ok && return
    log "creating a test CA (host side only) and a certificate for $BRIDGE_IP in $MIRROR_TLS_DIR"
    rm -rf "$MIRROR_TLS_DIR"
    mkdir -p "$MIRROR_TLS_DIR"
    chmod 755 "$MIRROR_TLS_DIR"
    (
        cd "$MIRROR_TLS_DIR" &&
        # a name of its own per state dir: its bytes are what the suite looks for in images
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 \
            -subj "/CN=ragbuild e2e mirror test CA $(openssl rand -hex 8)" -keyout ca.key -out ca.crt \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" \
            -addext "subjectKeyIdentifier=hash" &&
        openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=$BRIDGE_IP" \
            -keyout server.key -out server.csr &&
        printf '%s\n' "subjectAltName=IP:$BRIDGE_IP" "basicConstraints=critical,CA:FALSE" \
            "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" \
            "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid,issuer" >server.ext &&
        openssl x509 -req -sha256 -days 825 -in server.csr -CA ca.crt -CAkey ca.key \
            -CAcreateserial -extfile server.ext -out server.crt &&
        rm -f server.csr &&
        echo "ragbuild-e2e-token-$(openssl rand -hex 12)" >token &&
        printf '%s:%s\n' "$TLS_MIRROR_USER" "$(openssl passwd -apr1 "$(<token)")" >htpasswd &&
        chmod 600 ca.key server.key token &&
        chmod 644 ca.crt server.crt htpasswd
    ) >"$STATE/openssl-mirror.log" 2>&1 || { show_log_tail "$STATE/openssl-mirror.log"; die "openssl failed"; }
}

tls_mirror_url() { printf 'https://%s:%s/' "$BRIDGE_IP" "$TLS_WHEEL_PORT"; }

# an answer over TLS verified with the test CA only, and 401 from /private/ without credentials
# and 200 with them
tls_mirror_answers() {
    local url
    url=$(tls_mirror_url)
    curl -sf -o /dev/null --max-time 5 --cacert "$E2E_TLS_MIRROR_CA" --noproxy '*' "$url" \
        && [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 5 --cacert "$E2E_TLS_MIRROR_CA" --noproxy '*' \
            "${url}private/") == 401 ]] \
        && curl -sf -o /dev/null --max-time 5 --cacert "$E2E_TLS_MIRROR_CA" --noproxy '*' \
            -u "$TLS_MIRROR_USER:$(<"$MIRROR_TLS_DIR/token")" "${url}private/"
}

# the https mirror's nginx configuration (its access log names the user and the client (pip/...,
# uv/...) of each request, never a password: the suite reads it to see what a build fetched how)
tls_wheel_conf() {
    cat <<EOF
# written by tests/e2e/harness.sh: the wheel mirror over https (test CA: $E2E_TLS_MIRROR_CA)
# server certificate sha256 $(sha256sum <"$MIRROR_TLS_DIR/server.crt" | cut -d' ' -f1)
daemon off;
user root;
worker_processes 1;
pid $STATE/wheels-tls-nginx/nginx.pid;
error_log stderr;
events { worker_connections 512; }
http {
    log_format rbe '\$remote_addr "\$remote_user" "\$request" \$status "\$http_user_agent"';
    access_log $TLS_WHEEL_LOG rbe;
    sendfile on;
    default_type application/octet-stream;
    client_body_temp_path $STATE/wheels-tls-nginx/body;
    proxy_temp_path $STATE/wheels-tls-nginx/proxy;
    fastcgi_temp_path $STATE/wheels-tls-nginx/fastcgi;
    uwsgi_temp_path $STATE/wheels-tls-nginx/uwsgi;
    scgi_temp_path $STATE/wheels-tls-nginx/scgi;
    server {
        listen $BRIDGE_IP:$TLS_WHEEL_PORT ssl;
        ssl_certificate $MIRROR_TLS_DIR/server.crt;
        ssl_certificate_key $MIRROR_TLS_DIR/server.key;
        root $WHEELS;
        autoindex on;
        location /private/ {
            alias $WHEELS/;
            autoindex on;
            auth_basic "ragbuild e2e private index";
            auth_basic_user_file $MIRROR_TLS_DIR/htpasswd;
        }
    }
}
EOF
}

ensure_tls_wheel_server() {
    local pid
    ensure_mirror_cert
    # running with the configuration it would be started with now (same port, cert, bridge)?
    if pid=$(svc_pid wheels-tls "-c $TLS_WHEEL_CONF") && TLS_WHEEL_PORT=$(<"$STATE/wheels-tls.port") \
        && [[ $(tls_wheel_conf) == "$(<"$TLS_WHEEL_CONF")" ]] && tls_mirror_answers; then
        log "https wheel mirror running (nginx, pid $pid) at $(tls_mirror_url)"
        return
    fi
    [[ -z ${pid:-} ]] || stop_pid wheels-tls "$pid" 5
    rm -f "$(pidfile wheels-tls)"
    TLS_WHEEL_PORT=$(choose_port wheels-tls "$DEFAULT_TLS_WHEEL_PORT")
    mkdir -p "$STATE/wheels-tls-nginx"
    tls_wheel_conf >"$TLS_WHEEL_CONF"
    log "starting https wheel mirror (nginx) on $(tls_mirror_url)"
    start_bg wheels-tls "$STATE/wheels-tls.log" nginx -c "$TLS_WHEEL_CONF"
    wait_until "$WAIT_SERVICE" "https wheel mirror" tls_mirror_answers \
        || { show_log_tail "$STATE/wheels-tls.log"; die "https wheel mirror did not answer on $BRIDGE_IP:$TLS_WHEEL_PORT"; }
}

pip_build_args() {
    printf -- '--build-arg PIP_FIND_LINKS=http://%s:%s/ --build-arg PIP_NO_INDEX=1 --build-arg PIP_TRUSTED_HOST=%s' \
        "$BRIDGE_IP" "$WHEEL_PORT" "$BRIDGE_IP"
}

# A BuildKit build that installs every mirrored requirements file into a venv
# from the mirror alone, the way the worker's Dockerfile does. Skipped when
# the image, the wheels and the mirror are those already checked.
check_wheel_mirror_from_build() {
    local d files=() f i=0 rc=0 key
    mapfile -t files < <(requirement_files)
    key="$($DOCKER image inspect -f '{{.Id}}' "$BASE_IMAGE") $(cat "$WHEELS/.requirements.sha256" 2>/dev/null) $(pid_or_empty wheels "-c $WHEEL_CONF") $(pip_build_args)"
    if [[ -f $STATE/mirror-ok && $(<"$STATE/mirror-ok") == "$key" ]]; then
        log "mirror already checked with this image, wheels and server"
        return
    fi
    d=$(mktemp -d)
    if ((${#files[@]})); then
        for f in "${files[@]}"; do cp "$f" "$d/r$i.txt"; i=$((i + 1)); done
    else
        printf 'fastapi\nuvicorn\n' >"$d/r0.txt"
    fi
    cat >"$d/Dockerfile" <<EOF
FROM $BASE_IMAGE
ARG PIP_FIND_LINKS
ARG PIP_NO_INDEX
ARG PIP_TRUSTED_HOST
COPY r*.txt /tmp/req/
RUN python3 -m venv /tmp/venv && for r in /tmp/req/r*.txt; do /tmp/venv/bin/pip install -r "\$r" || exit 1; done \\
    && /tmp/venv/bin/pip list
EOF
    # shellcheck disable=SC2046
    DOCKER_BUILDKIT=1 $DOCKER build --no-cache --progress=plain $(pip_build_args) \
        -t "$SELFTEST_IMAGE:mirror" "$d" >"$STATE/mirror-check.log" 2>&1 || rc=$?
    rm -rf "$d"
    $DOCKER image rm "$SELFTEST_IMAGE:mirror" >/dev/null 2>&1 || true
    if ((rc)); then
        rm -f "$STATE/mirror-ok"
        show_log_tail "$STATE/mirror-check.log" 30
        die "a docker build could not pip install the requirements from the wheel mirror alone"
    fi
    echo "$key" >"$STATE/mirror-ok"
    log "a docker build pip-installed ${#files[@]} requirements file(s) from the mirror alone"
}

# ---------------------------------------------------------------- registries

PLAIN_DIR=$STATE/registry-plain
PLAIN_PORT=
write_plain_config() {
    mkdir -p "$PLAIN_DIR/data"
    cat >"$PLAIN_DIR/config.yml" <<EOF
version: 0.1
log:
  level: info
  fields:
    service: ragbuild-e2e-plain-registry
storage:
  filesystem:
    rootdirectory: $PLAIN_DIR/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$PLAIN_PORT
  secret: ragbuild-e2e-plain
  headers:
    X-Content-Type-Options: [nosniff]
EOF
}

start_plain_registry() {
    local pid
    if pid=$(svc_pid registry-plain "$PLAIN_DIR/config.yml"); then
        PLAIN_PORT=$(<"$STATE/registry-plain.port")
        if curl -sf -o /dev/null --max-time 5 "http://127.0.0.1:$PLAIN_PORT/v2/"; then
            log "plain registry running (pid $pid) at localhost:$PLAIN_PORT"
            return
        fi
        stop_pid registry-plain "$pid" 5
    fi
    rm -f "$(pidfile registry-plain)"
    PLAIN_PORT=$(choose_port registry-plain "$DEFAULT_PLAIN_PORT")
    write_plain_config
    log "starting plain registry on localhost:$PLAIN_PORT"
    start_bg registry-plain "$STATE/registry-plain.log" docker-registry serve "$PLAIN_DIR/config.yml"
    wait_until "$WAIT_SERVICE" "plain registry" curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$PLAIN_PORT/v2/" \
        || { show_log_tail "$STATE/registry-plain.log"; die "plain registry did not answer on 127.0.0.1:$PLAIN_PORT"; }
}

stop_plain_registry() {
    stop_svc registry-plain "$PLAIN_DIR/config.yml" 10
}

ECR_DIR=$STATE/registry-ecr
TLS_DIR=$ECR_DIR/tls
E2E_ECR_CA=$TLS_DIR/ca.crt

ensure_ecr_cert() {
    if [[ -s $TLS_DIR/server.crt && -s $TLS_DIR/server.key && -s $E2E_ECR_CA ]] \
        && openssl x509 -checkend 86400 -noout -in "$TLS_DIR/server.crt" >/dev/null \
        && openssl verify -CAfile "$E2E_ECR_CA" "$TLS_DIR/server.crt" >/dev/null 2>&1; then
        return
    fi
    log "creating a test CA and a certificate for $ECR_HOST"
    mkdir -p "$TLS_DIR"
    (
        cd "$TLS_DIR" &&
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 \
            -subj "/CN=ragbuild e2e test CA" -keyout ca.key -out ca.crt \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" \
            -addext "subjectKeyIdentifier=hash" &&
        openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=$ECR_HOST" \
            -keyout server.key -out server.csr &&
        printf '%s\n' "subjectAltName=DNS:$ECR_HOST" "basicConstraints=critical,CA:FALSE" \
            "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" \
            "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid,issuer" >server.ext &&
        openssl x509 -req -sha256 -days 825 -in server.csr -CA ca.crt -CAkey ca.key \
            -CAcreateserial -extfile server.ext -out server.crt &&
        rm -f server.csr &&
        chmod 600 ca.key server.key
    ) >"$STATE/openssl.log" 2>&1 || { show_log_tail "$STATE/openssl.log"; die "openssl failed"; }
}

ensure_hosts_entry() {
    if grep -qF "$HOSTS_MARK" /etc/hosts; then
        :
    elif awk -v h="$ECR_HOST" '$1 !~ /^#/ { for (i = 2; i <= NF; i++) if ($i == h) f = 1 } END { exit !f }' /etc/hosts; then
        log "/etc/hosts already maps $ECR_HOST (not ours; left alone)"
    else
        log "mapping $ECR_HOST to 127.0.0.1 in /etc/hosts"
        printf '127.0.0.1 %s %s\n' "$ECR_HOST" "$HOSTS_MARK" >>/etc/hosts
    fi
    [[ $(getent ahostsv4 "$ECR_HOST" | awk '{print $1; exit}') == 127.0.0.1 ]] \
        || die "$ECR_HOST does not resolve to 127.0.0.1 (check /etc/hosts)"
}

remove_hosts_entry() {
    grep -qF "$HOSTS_MARK" /etc/hosts || return 0
    local rest
    rest=$(grep -vF "$HOSTS_MARK" /etc/hosts || true)
    # rewrite in place (/etc/hosts may be a bind mount that cannot be replaced)
    printf '%s\n' "$rest" >/etc/hosts
    log "removed $ECR_HOST from /etc/hosts"
}

ensure_docker_certs_d() {
    mkdir -p "$CERTS_D"
    if ! cmp -s "$E2E_ECR_CA" "$CERTS_D/ca.crt"; then
        cp "$E2E_ECR_CA" "$CERTS_D/ca.crt"
        log "installed CA as $CERTS_D/ca.crt"
    fi
}

remove_docker_certs_d() {
    if [[ -f $CERTS_D/ca.crt ]] && cmp -s "$E2E_ECR_CA" "$CERTS_D/ca.crt"; then
        rm -f "$CERTS_D/ca.crt"
        rmdir "$CERTS_D" 2>/dev/null || true
        log "removed $CERTS_D"
    fi
}

write_ecr_config() {
    mkdir -p "$ECR_DIR/data"
    htpasswd -Bbn "$ECR_USER" "$ECR_PASSWORD" >"$ECR_DIR/htpasswd.tmp" && mv -f "$ECR_DIR/htpasswd.tmp" "$ECR_DIR/htpasswd"
    cat >"$ECR_DIR/config.yml" <<EOF
version: 0.1
log:
  level: info
  fields:
    service: ragbuild-e2e-ecr-registry
storage:
  filesystem:
    rootdirectory: $ECR_DIR/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:443
  host: https://$ECR_HOST
  secret: ragbuild-e2e-ecr
  tls:
    certificate: $TLS_DIR/server.crt
    key: $TLS_DIR/server.key
  headers:
    X-Content-Type-Options: [nosniff]
auth:
  htpasswd:
    realm: $ECR_HOST
    path: $ECR_DIR/htpasswd
EOF
}

ecr_v2_status() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 3 --cacert "$E2E_ECR_CA" \
        --resolve "$ECR_HOST:443:127.0.0.1" "$@" "https://$ECR_HOST/v2/"
}
ecr_answers() { [[ $(ecr_v2_status) == 401 ]]; }

ensure_ecr_registry() {
    local pid
    ensure_ecr_cert
    ensure_hosts_entry
    ensure_docker_certs_d
    if pid=$(svc_pid registry-ecr "$ECR_DIR/config.yml") && ecr_answers; then
        log "ECR-shaped registry running (pid $pid) at https://$ECR_HOST"
    else
        [[ -z ${pid:-} ]] || stop_pid registry-ecr "$pid" 5
        rm -f "$(pidfile registry-ecr)"
        if port_in_use 443; then
            die "127.0.0.1:443 is taken by another process: $(ss -Htlnp 'sport = :443' | head -n1)"
        fi
        write_ecr_config
        log "starting ECR-shaped TLS registry on 127.0.0.1:443"
        start_bg registry-ecr "$STATE/registry-ecr.log" docker-registry serve "$ECR_DIR/config.yml"
        wait_until "$WAIT_SERVICE" "ECR-shaped registry" ecr_answers \
            || { show_log_tail "$STATE/registry-ecr.log"; die "TLS registry did not answer 401 on https://$ECR_HOST/v2/"; }
    fi
    # the API must verify against our CA and honour the password
    [[ $(ecr_v2_status -u "$ECR_USER:$ECR_PASSWORD") == 200 ]] || die "TLS registry refuses $ECR_USER/$ECR_PASSWORD"
    [[ $(ecr_v2_status -u "$ECR_USER:wrong") == 401 ]] || die "TLS registry accepts a wrong password"
}

# A tiny image (one file) to push in the self-checks.
ensure_selftest_image() {
    $DOCKER image inspect "$SELFTEST_IMAGE:tiny" >/dev/null 2>&1 && return
    local d
    d=$(mktemp -d)
    echo "ragbuild e2e harness self-test" >"$d/README"
    tar -C "$d" -c . | $DOCKER import -m "ragbuild e2e self-test" - "$SELFTEST_IMAGE:tiny" >/dev/null
    rm -rf "$d"
}

# delete_manifest BASEURL REPO TAG CURLARGS... : remove the pushed self-test tag
delete_manifest() {
    local base=$1 repo=$2 tag=$3 digest
    shift 3
    digest=$(curl -sfI --max-time 10 "$@" \
        -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
        -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
        "$base/v2/$repo/manifests/$tag" | tr -d '\r' | awk 'tolower($1) == "docker-content-digest:" { print $2 }') || true
    [[ -n $digest ]] || die "pushed $repo:$tag not found at $base"
    curl -sf -o /dev/null --max-time 10 -X DELETE "$@" "$base/v2/$repo/manifests/$digest" \
        || die "could not delete $repo@$digest at $base"
}

check_registries_push() {
    local cfg rc=0
    ensure_selftest_image
    cfg=$(mktemp -d)   # throwaway client config: root's docker config stays logged out
    # (set -e does not apply inside a group used with ||: chain with &&)
    {
        $DOCKER tag "$SELFTEST_IMAGE:tiny" "localhost:$PLAIN_PORT/$SELFTEST_IMAGE:harness" &&
        DOCKER_CONFIG=$cfg $DOCKER push "localhost:$PLAIN_PORT/$SELFTEST_IMAGE:harness" &&
        printf '%s' "$ECR_PASSWORD" | DOCKER_CONFIG=$cfg $DOCKER login -u "$ECR_USER" --password-stdin "$ECR_HOST" &&
        $DOCKER tag "$SELFTEST_IMAGE:tiny" "$ECR_HOST/$SELFTEST_IMAGE:harness" &&
        DOCKER_CONFIG=$cfg $DOCKER push "$ECR_HOST/$SELFTEST_IMAGE:harness"
    } >"$STATE/push-check.log" 2>&1 || rc=$?
    rm -rf "$cfg"
    $DOCKER image rm "localhost:$PLAIN_PORT/$SELFTEST_IMAGE:harness" "$ECR_HOST/$SELFTEST_IMAGE:harness" >/dev/null 2>&1 || true
    if ((rc)); then
        show_log_tail "$STATE/push-check.log" 30
        die "docker login/push to the test registries failed"
    fi
    delete_manifest "http://127.0.0.1:$PLAIN_PORT" "$SELFTEST_IMAGE" harness
    delete_manifest "https://$ECR_HOST" "$SELFTEST_IMAGE" harness \
        --cacert "$E2E_ECR_CA" --resolve "$ECR_HOST:443:127.0.0.1" -u "$ECR_USER:$ECR_PASSWORD"
    # and drop the (now empty) repository so the catalogs the tests see are theirs
    rm -rf "$PLAIN_DIR/data/docker/registry/v2/repositories/$SELFTEST_IMAGE" \
        "$ECR_DIR/data/docker/registry/v2/repositories/$SELFTEST_IMAGE"
    log "docker push works to localhost:$PLAIN_PORT and (after docker login) to $ECR_HOST"
}

# ---------------------------------------------------------------- legs: clients and engines
#
# The suite runs its core cases once per leg (tests/e2e/conftest.py, fixture `leg`); each leg is a
# docker client against an engine:
#   legacy          /usr/bin/docker 20.10 (Debian 12), BuildKit built in; the engine above
#   modern          a docker 23+ client with the buildx plugin (`docker build` is buildx):
#                   /usr/local/bin/docker when it is 23+, else Debian 13's docker-cli 26
#   remote          /usr/bin/docker against a second dockerd over TCP (a docker context)
#   multiplatform   Debian 13's docker 26 client and dockerd with the containerd image store,
#                   over TCP: builds an index of several platforms
# On Debian 13 the packaged docker.io is 26 (no 20.10 client: no legacy leg) and docker-buildx is
# a package of its own. On Debian 12 the two trixie packages come through a private apt
# configuration that knows only trixie (the system's sources, pins and lists are never touched, so
# nothing else can be upgraded): docker-buildx is installed with dpkg (it needs libc6 >= 2.34 only),
# docker.io + docker-cli are unpacked (dpkg -x) under the cache, never installed.

BUILDX_PLUGIN=/usr/libexec/docker/cli-plugins/docker-buildx
TRIXIE_APT=$CACHE/apt-trixie
TRIXIE_DEBS=$CACHE/debs-trixie
DOCKER26_ROOT=$CACHE/docker26
DEFAULT_REMOTE_PORT=18634
DEFAULT_MULTI_PORT=18635
ENGINES=$STATE/engines
# own bridges for the second engines: never --bridge=none next to the first daemon (that deletes
# docker0); subnets away from docker's default pools (172.17-31.0.0/16, 192.168.0.0/16)
REMOTE_BRIDGE=rbe-remote0
REMOTE_CIDR=10.231.1.1/24
MULTI_BRIDGE=rbe-multi0
MULTI_CIDR=10.231.2.1/24
E2E_CONTEXT=remote   # the docker context the suite creates for the remote engine

on_trixie() { local v; v=$(</etc/debian_version); [[ $v == 13* || $v == trixie* ]]; }

trixie_apt() {
    apt-get -o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$TRIXIE_APT/sources" \
        -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts="$TRIXIE_APT/prefs" \
        -o Dir::State::Lists="$TRIXIE_APT/lists" -o Dir::Cache="$TRIXIE_APT/cache" \
        -o Debug::NoLocking=1 -o Acquire::Retries=3 "$@"
}

# trixie_debs PKG... : Debian 13's .deb of each PKG in $TRIXIE_DEBS (downloaded once)
trixie_debs() {
    local p missing=()
    mkdir -p "$TRIXIE_DEBS"
    for p in "$@"; do compgen -G "$TRIXIE_DEBS/${p}_*.deb" >/dev/null || missing+=("$p"); done
    ((${#missing[@]})) || return 0
    mkdir -p "$TRIXIE_APT"/{sources,prefs,lists/partial,cache/archives/partial}
    printf 'Types: deb\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$(apt_mirror)" >"$TRIXIE_APT/sources/trixie.sources"
    log "apt-get download ${missing[*]} from trixie (private apt lists in $TRIXIE_APT)"
    trixie_apt update -qq >"$STATE/apt-trixie.log" 2>&1 || { show_log_tail "$STATE/apt-trixie.log"; die "apt-get update of trixie failed"; }
    (cd "$TRIXIE_DEBS" && trixie_apt download "${missing[@]}") >>"$STATE/apt-trixie.log" 2>&1 \
        || { show_log_tail "$STATE/apt-trixie.log"; die "apt-get download ${missing[*]} from trixie failed"; }
}

ensure_buildx() {
    if [[ -x $BUILDX_PLUGIN ]] && /usr/bin/docker buildx version >/dev/null 2>&1; then
        log "buildx plugin: $(/usr/bin/docker buildx version 2>/dev/null | awk '{print $2; exit}')"
        return
    fi
    # packaged where the release has it (Debian 13, Ubuntu); Debian 12 gets trixie's
    if on_trixie || apt-cache policy docker-buildx 2>/dev/null | grep -q 'Candidate: [0-9]'; then
        apt_install docker-buildx
    else
        trixie_debs docker-buildx
        log "dpkg -i docker-buildx (trixie's; depends on libc6 >= 2.34 only)"
        dpkg -i "$TRIXIE_DEBS"/docker-buildx_*.deb >>"$STATE/apt-trixie.log" 2>&1 \
            || { show_log_tail "$STATE/apt-trixie.log"; die "dpkg -i docker-buildx failed"; }
    fi
    /usr/bin/docker buildx version >/dev/null 2>&1 || die "docker buildx does not work after installing docker-buildx"
}

# Debian 13's docker 26 (dockerd + client): packaged on Debian 13, unpacked under the cache on 12.
DOCKER26_DOCKERD=
DOCKER26_CLIENT=
ensure_docker26() {
    if on_trixie; then
        DOCKER26_DOCKERD=/usr/sbin/dockerd DOCKER26_CLIENT=/usr/bin/docker
        return
    fi
    DOCKER26_DOCKERD=$DOCKER26_ROOT/usr/sbin/dockerd DOCKER26_CLIENT=$DOCKER26_ROOT/usr/bin/docker
    [[ -x $DOCKER26_DOCKERD && -x $DOCKER26_CLIENT ]] && return
    trixie_debs docker.io docker-cli
    rm -rf "$DOCKER26_ROOT.tmp"
    local d
    for d in "$TRIXIE_DEBS"/docker.io_*.deb "$TRIXIE_DEBS"/docker-cli_*.deb; do
        dpkg -x "$d" "$DOCKER26_ROOT.tmp" || die "dpkg -x $d failed"
    done
    rm -rf "$DOCKER26_ROOT" && mv "$DOCKER26_ROOT.tmp" "$DOCKER26_ROOT"
    log "unpacked docker 26 into $DOCKER26_ROOT: $("$DOCKER26_CLIENT" --version)"
}

client_major() { "$1" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1; }

MODERN_CLIENT=
choose_modern_client() {
    local c major
    for c in /usr/local/bin/docker /usr/bin/docker "$DOCKER26_CLIENT"; do
        [[ -x $c ]] || continue
        major=$(client_major "$c")
        if [[ $major =~ ^[0-9]+$ ]] && ((major >= 23)) && "$c" buildx version >/dev/null 2>&1; then
            MODERN_CLIENT=$c
            echo "$c" >"$STATE/modern-client"
            log "modern leg: $c ($("$c" version --format '{{.Client.Version}}' 2>/dev/null)) with buildx"
            return
        fi
    done
    die "no docker 23+ client with the buildx plugin (looked at /usr/local/bin/docker, /usr/bin/docker, $DOCKER26_CLIENT)"
}

ensure_bridge() {
    local name=$1 cidr=$2
    ip link show "$name" >/dev/null 2>&1 || ip link add "$name" type bridge || die "ip link add $name failed"
    ip -4 addr show dev "$name" | grep -qF "inet $cidr " || ip addr replace "$cidr" dev "$name"
    ip link set "$name" up
}

remove_bridge() { ! ip link show "$1" >/dev/null 2>&1 || ip link del "$1" || true; }

engine_port_file() { printf '%s/engine-%s.port' "$STATE" "$1"; }  # choose_port's file
engine_answers() { DOCKER_HOST=tcp://127.0.0.1:$2 "$1" info >/dev/null 2>&1; }

# ensure_engine NAME DEFAULT_PORT BRIDGE CIDR DOCKERD CLIENT [EXTRA DOCKERD ARGS...]
# A second dockerd beside the first: own data-root, exec-root, pidfile, containerd namespace,
# TCP socket on 127.0.0.1 and bridge (--iptables=false: it leaves the first daemon's rules alone).
# Its containers reach the wheel mirror on docker0's address through the host.
ENGINE_PORT=
ensure_engine() {
    local name=$1 def=$2 bridge=$3 cidr=$4 dockerd=$5 client=$6 pid dir exec_root
    shift 6
    dir=$ENGINES/$name exec_root=/run/rbe-$name
    if pid=$(svc_pid "engine-$name" "--data-root $dir/data") && ENGINE_PORT=$(<"$(engine_port_file "$name")") \
        && engine_answers "$client" "$ENGINE_PORT"; then
        log "engine $name running (pid $pid) at tcp://127.0.0.1:$ENGINE_PORT"
        return
    fi
    [[ -z ${pid:-} ]] || stop_pid "engine-$name" "$pid" 30
    rm -f "$(pidfile "engine-$name")"
    ENGINE_PORT=$(choose_port "engine-$name" "$def")
    ensure_bridge "$bridge" "$cidr"
    mkdir -p "$dir/data" "$exec_root"
    log "starting engine $name: $dockerd on tcp://127.0.0.1:$ENGINE_PORT, bridge $bridge (log: $dir/dockerd.log)"
    # its own docker-proxy/containerd-shim first on PATH (the unpacked tree's, when there is one)
    PATH="$(dirname "$dockerd"):$(dirname "$(dirname "$dockerd")")/bin:$PATH" \
        start_bg "engine-$name" "$dir/dockerd.log" "$dockerd" \
        --data-root "$dir/data" --exec-root "$exec_root" --pidfile "$dir/dockerd.pid" \
        -H "tcp://127.0.0.1:$ENGINE_PORT" --bridge "$bridge" --iptables=false --ip-masq=false \
        --containerd-namespace "rbe-$name" --containerd-plugins-namespace "rbe-$name-plugins" "$@"
    if ! wait_until "$WAIT_DOCKER" "engine $name" engine_answers "$client" "$ENGINE_PORT"; then
        show_log_tail "$dir/dockerd.log" 30
        die "engine $name did not answer on tcp://127.0.0.1:$ENGINE_PORT within ${WAIT_DOCKER}s"
    fi
    ip link show docker0 >/dev/null 2>&1 || die "docker0 vanished after starting engine $name"
}

# What makes two engines' copies of an image the same image for BuildKit's cache: its config's
# creation time and its layers (the ID alone cannot say: the containerd image store names an
# image by its manifest, the classic store by its config).
FINGERPRINT='{{.Created}} {{json .RootFS.Layers}}'

# give_base_image CLIENT HOST : the first engine's base image on the engine at HOST, by `docker
# save` from the first engine into `docker load` there, whatever made it on the first engine (the
# harness's import, a pull, a contributor's own): never from the harness's rootfs tarball, which a
# machine the harness did not set up has not got. The same image on every engine, so a cache one
# engine pushes matches on another; one already the same is kept, another of that name replaced.
give_base_image() {
    local client=$1 host=$2 want have
    want=$($DOCKER image inspect -f "$FINGERPRINT" "$BASE_IMAGE" 2>/dev/null) \
        || die "$BASE_IMAGE is not on the first engine ($DOCKER image inspect failed)"
    have=$(DOCKER_HOST=$host "$client" image inspect -f "$FINGERPRINT" "$BASE_IMAGE" 2>/dev/null || true)
    if [[ $have == "$want" ]]; then
        log "$BASE_IMAGE on $host is the first engine's"
        return
    fi
    log "docker save $BASE_IMAGE (the first engine's) | docker load into $host${have:+ (replacing another $BASE_IMAGE there)}"
    $DOCKER save "$BASE_IMAGE" | DOCKER_HOST=$host "$client" load -q >/dev/null \
        || die "docker save $BASE_IMAGE | docker load into $host failed"
    have=$(DOCKER_HOST=$host "$client" image inspect -f "$FINGERPRINT" "$BASE_IMAGE" 2>/dev/null || true)
    [[ $have == "$want" ]] || die "after docker load, $BASE_IMAGE on $host is not the first engine's ($have; want $want)"
}

REMOTE_PORT=
ensure_remote_engine() {
    ensure_engine remote "$DEFAULT_REMOTE_PORT" "$REMOTE_BRIDGE" "$REMOTE_CIDR" "$DOCKERD" /usr/bin/docker
    REMOTE_PORT=$ENGINE_PORT
    give_base_image /usr/bin/docker "tcp://127.0.0.1:$REMOTE_PORT"
}

MULTI_PORT=
ensure_multiplatform_engine() {
    local dir=$ENGINES/multiplatform
    mkdir -p "$dir"
    printf '{"features": {"containerd-snapshotter": true}}\n' >"$dir/daemon.json"
    ensure_engine multiplatform "$DEFAULT_MULTI_PORT" "$MULTI_BRIDGE" "$MULTI_CIDR" "$DOCKER26_DOCKERD" \
        "$DOCKER26_CLIENT" --config-file "$dir/daemon.json"
    MULTI_PORT=$ENGINE_PORT
    DOCKER_HOST=tcp://127.0.0.1:$MULTI_PORT "$DOCKER26_CLIENT" info --format '{{.DriverStatus}}' 2>/dev/null \
        | grep -q 'io.containerd.snapshotter' || die "engine multiplatform does not use the containerd image store"
    give_base_image "$DOCKER26_CLIENT" "tcp://127.0.0.1:$MULTI_PORT"
}

# The legs for the env file: E2E_LEGS (names, in order) and per leg E2E_LEG_<NAME>_DOCKER (the
# client), _HOST (DOCKER_HOST, empty: the local socket) and _CAN (what it can do, comma list).
legs_env() {
    local legs=() remote multi modern
    remote=$(<"$(engine_port_file remote)") multi=$(<"$(engine_port_file multiplatform)")
    modern=$(<"$STATE/modern-client")
    ensure_docker26
    leg_line() {
        legs+=("$1")
        echo "export E2E_LEG_${1^^}_DOCKER=$2"
        echo "export E2E_LEG_${1^^}_HOST=$3"
        echo "export E2E_LEG_${1^^}_CAN=$4"
    }
    on_trixie || leg_line legacy /usr/bin/docker "" ""
    leg_line modern "$modern" "" buildx
    leg_line remote /usr/bin/docker "tcp://127.0.0.1:$remote" buildx,remote
    leg_line multiplatform "$DOCKER26_CLIENT" "tcp://127.0.0.1:$multi" buildx,multi-platform
    echo "export E2E_LEGS=\"${legs[*]}\""
    echo "export E2E_REMOTE_CONTEXT=$E2E_CONTEXT"
    echo "export E2E_REMOTE_HOST=tcp://127.0.0.1:$remote"
    echo "export E2E_REMOTE_BRIDGE_IP=${REMOTE_CIDR%/*}"
    echo "export E2E_MULTI_HOST=tcp://127.0.0.1:$multi"
    echo "export E2E_REMOTE_ENGINE_PID=$(pid_or_empty engine-remote "--data-root $ENGINES/remote/data")"
    echo "export E2E_MULTI_ENGINE_PID=$(pid_or_empty engine-multiplatform "--data-root $ENGINES/multiplatform/data")"
}

stop_engine() {
    local name=$1 bridge=$2
    stop_svc "engine-$name" "--data-root $ENGINES/$name/data" 30
    remove_bridge "$bridge"
    # its exec-root (sockets, netns files), once nothing is mounted below it; data-root stays
    if [[ -d /run/rbe-$name ]] && ! svc_pid "engine-$name" "--data-root $ENGINES/$name/data" >/dev/null; then
        umount_below "/run/rbe-$name" && rm -rf --one-file-system "/run/rbe-$name" || true
    fi
}


# ---------------------------------------------------------------- moto

MOTO_PORT=
moto_answers() { curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$MOTO_PORT/moto-api/"; }

# aws_local ARGS... : the aws CLI against moto only (never a real endpoint)
aws_local() {
    env -u AWS_PROFILE -u AWS_SESSION_TOKEN -u AWS_ENDPOINT_URL_ECR \
        AWS_ENDPOINT_URL="http://127.0.0.1:$MOTO_PORT" AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
        AWS_DEFAULT_REGION="$ECR_REGION" AWS_EC2_METADATA_DISABLED=true \
        AWS_CONFIG_FILE=/nonexistent AWS_SHARED_CREDENTIALS_FILE=/nonexistent \
        aws --cli-connect-timeout 5 --cli-read-timeout 20 "$@"
}

ensure_moto() {
    local pid
    if pid=$(svc_pid moto "moto.server") && MOTO_PORT=$(<"$STATE/moto.port") && moto_answers; then
        log "moto server running (pid $pid) at http://127.0.0.1:$MOTO_PORT"
    else
        [[ -z ${pid:-} ]] || stop_pid moto "$pid" 5
        rm -f "$(pidfile moto)"
        MOTO_PORT=$(choose_port moto "$DEFAULT_MOTO_PORT")
        log "starting moto server on 127.0.0.1:$MOTO_PORT"
        start_bg moto "$STATE/moto.log" "$MOTO_PY" -m moto.server -H 127.0.0.1 -p "$MOTO_PORT"
        wait_until "$WAIT_SERVICE" "moto server" moto_answers \
            || { show_log_tail "$STATE/moto.log"; die "moto server did not answer on 127.0.0.1:$MOTO_PORT"; }
    fi
    local pw repo=ragbuild-e2e-selftest key
    key="$(pid_or_empty moto moto.server) $MOTO_PORT $(command -v aws)"
    if [[ -f $STATE/moto-ok && $(<"$STATE/moto-ok") == "$key" ]]; then
        log "aws CLI already checked against this moto server"
        return
    fi
    pw=$(aws_local ecr get-login-password 2>"$STATE/aws-check.log") \
        || { show_log_tail "$STATE/aws-check.log"; die "aws ecr get-login-password against moto failed"; }
    [[ $pw == "$ECR_PASSWORD" ]] || die "aws ecr get-login-password printed '$pw', expected '$ECR_PASSWORD'"
    aws_local ecr create-repository --repository-name "$repo" >/dev/null 2>"$STATE/aws-check.log" \
        || { show_log_tail "$STATE/aws-check.log"; die "aws ecr create-repository against moto failed"; }
    aws_local ecr describe-repositories --repository-names "$repo" --query 'repositories[0].repositoryUri' \
        --output text 2>"$STATE/aws-check.log" | grep -qF "$ECR_HOST/$repo" \
        || { show_log_tail "$STATE/aws-check.log"; die "aws ecr describe-repositories against moto failed"; }
    aws_local ecr delete-repository --force --repository-name "$repo" >/dev/null 2>&1 || true
    echo "$key" >"$STATE/moto-ok"
    log "aws ecr get-login-password/create-repository/describe-repositories work against moto"
}

# ---------------------------------------------------------------- env file

pid_or_empty() { svc_pid "$1" "$2" 2>/dev/null || true; }

write_env_file() {
    local tmp=$ENV_FILE.tmp
    [[ -n $BRIDGE_IP ]] || detect_bridge
    [[ -n $WHEEL_PORT ]] || WHEEL_PORT=$(<"$STATE/wheels.port")
    [[ -n $TLS_WHEEL_PORT ]] || TLS_WHEEL_PORT=$(<"$STATE/wheels-tls.port")
    [[ -n $PLAIN_PORT ]] || PLAIN_PORT=$(<"$STATE/registry-plain.port")
    [[ -n $MOTO_PORT ]] || MOTO_PORT=$(<"$STATE/moto.port")
    {
        echo "# written by tests/e2e/harness.sh up on $(date -u +%FT%TZ); source it"
        echo "export DOCKER=$DOCKER"
        echo "export RAGBUILD_E2E_STATE=$STATE"
        echo "export RAGBUILD_E2E_CACHE=$CACHE"
        echo "export E2E_HARNESS=$HARNESS"
        echo "export E2E_BASE_IMAGE=$BASE_IMAGE"
        echo "export E2E_BRIDGE_IP=$BRIDGE_IP"
        echo "export E2E_WHEEL_MIRROR=http://$BRIDGE_IP:$WHEEL_PORT/"
        echo "export E2E_PIP_BUILD_ARGS=\"$(pip_build_args)\""
        echo "export E2E_TLS_MIRROR=$(tls_mirror_url)"
        echo "export E2E_TLS_MIRROR_CA=$E2E_TLS_MIRROR_CA"
        echo "export E2E_TLS_MIRROR_USER=$TLS_MIRROR_USER"
        echo "export E2E_TLS_MIRROR_TOKEN=$(<"$MIRROR_TLS_DIR/token")"
        echo "export E2E_TLS_MIRROR_LOG=$TLS_WHEEL_LOG"
        echo "export E2E_REGISTRY=localhost:$PLAIN_PORT"
        echo "export E2E_ECR_HOST=$ECR_HOST"
        echo "export E2E_ECR_USER=$ECR_USER"
        echo "export E2E_ECR_PASSWORD=$ECR_PASSWORD"
        echo "export E2E_ECR_CA=$E2E_ECR_CA"
        echo "export AWS_ENDPOINT_URL=http://127.0.0.1:$MOTO_PORT"
        echo "export AWS_ACCESS_KEY_ID=testing"
        echo "export AWS_SECRET_ACCESS_KEY=testing"
        echo "export AWS_DEFAULT_REGION=$ECR_REGION"
        echo "export AWS_EC2_METADATA_DISABLED=true"
        echo "export E2E_WHEEL_MIRROR_PID=$(pid_or_empty wheels "-c $WHEEL_CONF")"
        echo "export E2E_TLS_MIRROR_PID=$(pid_or_empty wheels-tls "-c $TLS_WHEEL_CONF")"
        echo "export E2E_PLAIN_REGISTRY_PID=$(pid_or_empty registry-plain "$PLAIN_DIR/config.yml")"
        echo "export E2E_ECR_REGISTRY_PID=$(pid_or_empty registry-ecr "$ECR_DIR/config.yml")"
        echo "export E2E_MOTO_PID=$(pid_or_empty moto moto.server)"
        echo "export E2E_DOCKERD_PID=$(pid_or_empty dockerd dockerd)"
    } >"$tmp"
    # the legs also in a file of their own, which an older harness's `up` leaves alone
    legs_env >"$STATE/legs.env.tmp"
    cat "$STATE/legs.env.tmp" >>"$tmp"
    mv -f "$STATE/legs.env.tmp" "$STATE/legs.env"
    mv -f "$tmp" "$ENV_FILE"
}

# ---------------------------------------------------------------- commands

WITH_BE=
WITH_REALISTIC=
cmd_up() {
    local a t0
    for a in "$@"; do
        case $a in
            --with-buildessential) WITH_BE=1 ;;
            --with-realistic) WITH_REALISTIC=1 ;;
            *) die "unknown option for up: $a" ;;
        esac
    done
    t0=$(now)
    # a failed up must not leave an env file that claims everything is up
    trap '[[ -n ${UP_OK:-} ]] || rm -f "$ENV_FILE"' EXIT
    step "apt packages" ensure_packages
    step "python tools" ensure_python_tools
    step "docker engine" ensure_dockerd
    detect_bridge
    step "base image(s)" ensure_base_images
    step "wheel cache" ensure_wheels
    step "wheel mirror" ensure_wheel_server
    step "mirror from build" check_wheel_mirror_from_build
    step "https wheel mirror" ensure_tls_wheel_server
    step "plain registry" start_plain_registry
    step "ECR TLS registry" ensure_ecr_registry
    step "push checks" check_registries_push
    step "moto server" ensure_moto
    step "buildx plugin" ensure_buildx
    step "docker 26" ensure_docker26
    step "modern client" choose_modern_client
    step "remote engine" ensure_remote_engine
    step "multi-platform engine" ensure_multiplatform_engine
    write_env_file
    UP_OK=1
    TIMINGS+=("$(printf '%-24s %7ss' total "$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')")")
    log "timings:"
    printf '[harness]   %s\n' "${TIMINGS[@]}" >&2
    log "up. source the env file:"
    echo "$ENV_FILE"
}

# `make engine`: only what a build needs on a machine without one (Debian or Ubuntu, as root):
# Debian's docker.io, the buildx plugin (ensure_buildx: Debian 13's docker-buildx, installed with
# dpkg on Debian 12, so a Docker 23+ client there builds too), dockerd started, and python:3.11-slim
# pulled, or made with debootstrap when no image registry answers. The same steps as `up`.
cmd_engine() {
    local pkgs=()
    [[ -x $DOCKERD && -x /usr/bin/docker ]] || pkgs+=(docker.io)
    ((${#pkgs[@]})) && apt_install "${pkgs[@]}"
    step "buildx plugin" ensure_buildx  # the suite's own step: Debian 13's package on 12 too
    step "docker engine" ensure_dockerd
    if ! $DOCKER image inspect "$BASE_IMAGE" >/dev/null 2>&1 \
        && ! timeout 120 $DOCKER pull -q "$BASE_IMAGE" >"$STATE/pull.log" 2>&1; then
        log "no registry gave $BASE_IMAGE ($(tail -n1 "$STATE/pull.log")): making it with debootstrap"
    fi
    step "base image(s)" ensure_base_images
    log "engine ready: $($DOCKER version --format 'client {{.Client.Version}}, server {{.Server.Version}}'); $BASE_IMAGE present"
}

# `base-image HOST [CLIENT]`: give the engine at HOST (any engine, the harness's or not) the first
# engine's base image, as `up` gives its second and third engines (give_base_image).
cmd_base_image() {
    local host=${1:-} client=${2:-/usr/bin/docker}
    [[ -n $host ]] || die "usage: $HARNESS base-image HOST [CLIENT] (e.g. tcp://127.0.0.1:2375)"
    DOCKER_HOST=$host "$client" info >/dev/null 2>&1 || die "no engine answers $client info at $host"
    give_base_image "$client" "$host"
}

cmd_down() {
    stop_engine multiplatform "$MULTI_BRIDGE"
    stop_engine remote "$REMOTE_BRIDGE"
    stop_svc moto moto.server 10
    stop_svc registry-ecr "$ECR_DIR/config.yml" 10
    stop_svc registry-plain "$PLAIN_DIR/config.yml" 10
    stop_svc wheels-tls "-c $TLS_WHEEL_CONF" 5
    stop_svc wheels "-c $WHEEL_CONF" 5
    stop_svc wheels "--directory $WHEELS" 5  # an earlier harness's http.server
    local pid
    if pid=$(svc_pid dockerd dockerd); then
        stop_pid dockerd "$pid" 30
        [[ -d /proc/$pid ]] || rm -f /var/run/docker.pid 2>/dev/null || true
    elif $DOCKER info >/dev/null 2>&1; then
        log "docker engine was not started by the harness: left running"
    fi
    rm -f "$(pidfile dockerd)"
    remove_docker_certs_d
    remove_hosts_entry
    rm -f "$ENV_FILE" "$STATE/legs.env"
    log "down (caches kept in $CACHE)"
}

cmd_env() {
    [[ -s $ENV_FILE ]] || die "not up (no $ENV_FILE); run: bash $HARNESS up"
    svc_pid moto moto.server >/dev/null && svc_pid registry-ecr "$ECR_DIR/config.yml" >/dev/null \
        && $DOCKER info >/dev/null 2>&1 || die "env file exists but services are down; run: bash $HARNESS up"
    echo "$ENV_FILE"
}

cmd_status() {
    local n m pid
    for n in dockerd:dockerd wheels:"-c $WHEEL_CONF" wheels-tls:"-c $TLS_WHEEL_CONF" registry-plain:"$PLAIN_DIR/config.yml" \
        registry-ecr:"$ECR_DIR/config.yml" moto:moto.server \
        engine-remote:"--data-root $ENGINES/remote/data" engine-multiplatform:"--data-root $ENGINES/multiplatform/data"; do
        m=${n#*:}; n=${n%%:*}
        if pid=$(svc_pid "$n" "$m"); then printf '%-21s running (pid %s)\n' "$n" "$pid"; else printf '%-21s not running (by the harness)\n' "$n"; fi
    done
    if $DOCKER info >/dev/null 2>&1; then echo "docker engine    answers"; else echo "docker engine    does not answer"; fi
    [[ -s $ENV_FILE ]] && echo "env file         $ENV_FILE" || echo "env file         none"
}

cmd_stop_registry() {
    stop_plain_registry
    [[ ! -s $ENV_FILE ]] || write_env_file
    log "plain registry stopped"
}

cmd_start_registry() {
    [[ -s $STATE/registry-plain.port ]] || die "plain registry was never set up; run: bash $HARNESS up"
    local saved
    saved=$(<"$STATE/registry-plain.port")
    if ! svc_pid registry-plain "$PLAIN_DIR/config.yml" >/dev/null && port_in_use "$saved"; then
        die "port $saved of the plain registry is taken by another process"
    fi
    start_plain_registry
    [[ $PLAIN_PORT == "$saved" ]] || die "plain registry came back on $PLAIN_PORT instead of $saved"
    [[ ! -s $ENV_FILE ]] || write_env_file
    log "plain registry started (localhost:$PLAIN_PORT)"
}

main() {
    local cmd=${1:-}
    [[ -n $cmd ]] || die "usage: $0 up [--with-buildessential] [--with-realistic] | engine | base-image HOST [CLIENT] | down | env | status | stop-registry | start-registry"
    shift
    [[ $(id -u) == 0 ]] || die "must run as root (installs packages, edits /etc/hosts, binds :443)"
    mkdir -p "$STATE" "$CACHE"
    # one harness command at a time
    exec 9>"$STATE/.lock"
    flock -w 900 9 || die "another harness command holds $STATE/.lock"
    case $cmd in
        up) cmd_up "$@" ;;
        engine) cmd_engine ;;
        base-image) cmd_base_image "$@" ;;
        down) cmd_down ;;
        env) cmd_env ;;
        status) cmd_status ;;
        stop-registry) cmd_stop_registry ;;
        start-registry) cmd_start_registry ;;
        *) die "unknown command '$cmd' (up | engine | base-image | down | env | status | stop-registry | start-registry)" ;;
    esac
}

main "$@"
