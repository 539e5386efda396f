#!/usr/bin/env bash
# Run the CI (.ci/run: make test and every e2e leg) on another Debian release's userland, on this
# machine, beside the host's own harness: a debootstrap'ed chroot (default Debian 13, trixie) in a
# network, mount and pid namespace of its own, where the chroot's harness installs and runs its own
# dockerd, registries and moto. For a maintainer on Debian 12 who must know that tests/e2e/harness.sh
# and the suite work on Debian 13 (or the other way round), without a second machine.
#
# It is the other release's userland (packages, python3, docker.io, iptables) on this machine's
# kernel: what depends on the kernel (cgroup version, nf_tables, overlayfs) is the host's.
#
# Usage (as root):
#   release-chroot.sh up          debootstrap the rootfs (cached: a second run reuses it), create the
#                                 network namespace, start the namespace's init
#   release-chroot.sh ci [REF]    up, then a fresh `git clone` of REF (default HEAD) of this repository
#                                 into the chroot and `CI=true bash .ci/run` there (log: $STATE/ci-*.log)
#   release-chroot.sh run CMD...  run CMD in the chroot (cwd: the clone, if any), e.g. `run bash`,
#                                 `run bash tests/e2e/harness.sh down`
#   release-chroot.sh status      what runs in the namespace
#   release-chroot.sh down        stop everything in the namespace, delete the namespace, its veth
#                                 pair and NAT rules; the rootfs stays (with what the chroot's
#                                 harness installed and cached: the next ci starts warm)
#   release-chroot.sh purge       down, then delete the rootfs: the next up starts from debootstrap
#
# Environment:
#   RAGBUILD_CHROOT_RELEASE  Debian codename, default trixie
#   RAGBUILD_CHROOT_NET      the /30 of the veth pair, default 10.231.90 (.1 host, .2 namespace)
#
# Never touches the host's /var/tmp/ragbuild-e2e, /var/lib/docker, docker0, dockerd or registries:
# the chroot's harness uses the chroot's own paths, its loopback and bridges are the namespace's.

set -Eeuo pipefail

RELEASE=${RAGBUILD_CHROOT_RELEASE:-trixie}
[[ $RELEASE =~ ^[a-z]+$ ]] || { echo "RAGBUILD_CHROOT_RELEASE must be a Debian codename" >&2; exit 2; }
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=/var/cache/ragbuild-e2e/chroot-$RELEASE
ROOT=$CACHE/rootfs
STATE=/var/tmp/ragbuild-chroot-$RELEASE
NS=rbe-$RELEASE
NET=${RAGBUILD_CHROOT_NET:-10.231.90}
VETH_HOST=rbe-${RELEASE:0:6}0
VETH_NS=rbe-${RELEASE:0:6}1
CLONE=/root/ragbuild          # inside the chroot
RULE=(-m comment --comment "ragbuild chroot $RELEASE")
PACKAGES=ca-certificates,curl,git,make,python3,python3-venv,iproute2,iptables,procps,kmod
PATH_IN=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

log() { printf '[chroot %s] %s\n' "$RELEASE" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# The Debian mirror the host's apt uses (the harness's apt_mirror: the same rules).
mirror() {
    # shellcheck disable=SC1090
    (set +Eeu; trap - ERR; source <(sed -n '/^apt_mirror() {/,/^}/p' "$HERE/harness.sh"); apt_mirror)
}

# ------------------------------------------------------------------ rootfs

ensure_rootfs() {
    if [[ -f $ROOT/.ragbuild-rootfs-ok ]]; then
        log "rootfs cached in $ROOT ($(sed -n 's/^PRETTY_NAME="\(.*\)"/\1/p' "$ROOT/etc/os-release"))"
    else
        command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null
        local tmp=$ROOT.tmp m
        m=$(mirror)
        rm -rf --one-file-system "$tmp"
        mkdir -p "$CACHE" "$STATE"
        log "debootstrap --variant=minbase $RELEASE from $m (log: $STATE/debootstrap.log)"
        debootstrap --variant=minbase --include="$PACKAGES" "$RELEASE" "$tmp" "$m" >"$STATE/debootstrap.log" 2>&1 \
            || { tail -n 20 "$STATE/debootstrap.log" >&2; die "debootstrap failed"; }
        # sources as a fresh install writes them (deb822), with updates and security
        rm -f "$tmp/etc/apt/sources.list"
        printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb\nURIs: %s-security\nSuites: %s-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
            "$m" "$RELEASE" "$RELEASE" "${m%/debian}/debian" "$RELEASE" >"$tmp/etc/apt/sources.list.d/debian.sources"
        echo "ragbuild-$RELEASE" >"$tmp/etc/hostname"
        touch "$tmp/.ragbuild-rootfs-ok"
        mv "$tmp" "$ROOT"
        log "rootfs ready in $ROOT ($(du -sh --one-file-system "$ROOT" | cut -f1))"
    fi
    # this machine's provisioning: its resolver, its hosts (`vm` is 127.0.0.1 here, which the
    # suite uses) but the host's harness's line (the chroot's harness keeps its own), and the CAs it
    # adds (an egress proxy's, for PyPI)
    cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
    local mark="# ragbuild-e2e harness" hosts
    hosts=$(grep -vF "$mark" /etc/hosts; grep -F "$mark" "$ROOT/etc/hosts" 2>/dev/null || true)
    printf '%s\n' "$hosts" >"$ROOT/etc/hosts"
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/"
        chroot "$ROOT" update-ca-certificates >/dev/null 2>&1 || die "update-ca-certificates in the chroot failed"
    fi
}

# ------------------------------------------------------------------ network namespace

ensure_net() {
    if ! ip netns list | grep -qw "^$NS"; then
        ip netns add "$NS"
    fi
    if ! ip link show "$VETH_HOST" >/dev/null 2>&1; then
        ip link add "$VETH_HOST" type veth peer name "$VETH_NS"
        ip link set "$VETH_NS" netns "$NS"
    fi
    ip addr replace "$NET.1/30" dev "$VETH_HOST"
    ip link set "$VETH_HOST" up
    ip -n "$NS" addr replace "$NET.2/30" dev "$VETH_NS"
    ip -n "$NS" link set "$VETH_NS" up
    ip -n "$NS" link set lo up
    ip -n "$NS" route replace default via "$NET.1"
    sysctl -qw net.ipv4.ip_forward=1
    # the host's docker sets FORWARD's policy to DROP: accept the namespace's traffic explicitly
    iptables -C FORWARD -i "$VETH_HOST" "${RULE[@]}" -j ACCEPT 2>/dev/null \
        || iptables -I FORWARD -i "$VETH_HOST" "${RULE[@]}" -j ACCEPT
    iptables -C FORWARD -o "$VETH_HOST" -m conntrack --ctstate RELATED,ESTABLISHED "${RULE[@]}" -j ACCEPT 2>/dev/null \
        || iptables -I FORWARD -o "$VETH_HOST" -m conntrack --ctstate RELATED,ESTABLISHED "${RULE[@]}" -j ACCEPT
    iptables -t nat -C POSTROUTING -s "$NET.0/30" ! -o "$VETH_HOST" "${RULE[@]}" -j MASQUERADE 2>/dev/null \
        || iptables -t nat -A POSTROUTING -s "$NET.0/30" ! -o "$VETH_HOST" "${RULE[@]}" -j MASQUERADE
}

remove_net() {
    while iptables -D FORWARD -i "$VETH_HOST" "${RULE[@]}" -j ACCEPT 2>/dev/null; do :; done
    while iptables -D FORWARD -o "$VETH_HOST" -m conntrack --ctstate RELATED,ESTABLISHED "${RULE[@]}" -j ACCEPT 2>/dev/null; do :; done
    while iptables -t nat -D POSTROUTING -s "$NET.0/30" ! -o "$VETH_HOST" "${RULE[@]}" -j MASQUERADE 2>/dev/null; do :; done
    ! ip link show "$VETH_HOST" >/dev/null 2>&1 || ip link del "$VETH_HOST"
    ! ip netns list | grep -qw "^$NS" || ip netns del "$NS"
}

# ------------------------------------------------------------------ the namespace's init

# unshares : the unshare processes holding a namespace of this rootfs (normally one: its pidfile's)
unshares() {
    local p
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        [[ $(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline") == "unshare --mount --pid "*" init $ROOT " ]] && echo "$p"
    done
}

# first_child PID : its first child (an unshare's: the first process of its pid namespace)
first_child() { local c; c=$(cat "/proc/$1/task/$1/children" 2>/dev/null) && c=${c%% *} && [[ -n $c ]] && echo "$c"; }

# init_pid : the pid (host's view) of the chroot's init once it runs (its mounts made)
init_pid() {
    local u p
    [[ -s $STATE/unshare.pid ]] || return 1
    u=$(<"$STATE/unshare.pid")
    [[ " $(unshares | tr '\n' ' ') " == *" $u "* ]] && p=$(first_child "$u") || return 1
    [[ $(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline") == "/bin/bash -c cd /; trap"* ]] || return 1
    echo "$p"
}

# Mounts made by the init, in its own mount namespace (so they die with it): the rootfs bound onto
# itself and made the root with pivot_root, as on a machine the root is a mount point (docker 26's
# `docker import` makes / rslave: EINVAL on a plain chroot's directory; runc's pivot_root wants it
# too); a sysfs of the network namespace, the host's cgroup tree, /dev, a fresh /run, /lib/modules ro.
# shellcheck disable=SC2016  # expanded by the init's bash
MOUNT_SCRIPT='
set -e
R=$1
mount --bind "$R" "$R"
mount -t proc proc "$R/proc"
mount -t sysfs sysfs "$R/sys"
mount --rbind /sys/fs/cgroup "$R/sys/fs/cgroup"
mount --rbind /dev "$R/dev"
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs "$R/run"
mkdir -p "$R/run/lock" "$R/.old-root"
if [ -d /lib/modules ]; then
    mkdir -p "$R/lib/modules"
    mount --bind /lib/modules "$R/lib/modules"
    mount -o remount,bind,ro "$R/lib/modules"
fi
cd "$R"
pivot_root . .old-root
umount -l /.old-root
# bash as pid 1 reaps the orphans (daemons started with setsid) and exits on SIGTERM
exec /usr/bin/env -i PATH='"$PATH_IN"' /bin/bash -c "cd /; trap \"exit 0\" TERM; while :; do sleep 3600 & wait \$!; done"
'

ensure_init() {
    local p i
    if p=$(init_pid); then
        log "namespace init running (pid $p)"
        return
    fi
    mkdir -p "$STATE"
    log "starting the namespace's init (netns $NS, own mount and pid namespaces, chroot $ROOT)"
    setsid nsenter --net="/run/netns/$NS" -- unshare --mount --pid --fork --kill-child --propagation private -- \
        /bin/bash -c "$MOUNT_SCRIPT" init "$ROOT" >"$STATE/init.log" 2>&1 </dev/null &
    echo $! >"$STATE/unshare.pid"
    for ((i = 0; i < 50; i++)); do
        p=$(init_pid) && break
        sleep 0.2
    done
    [[ -n $p ]] || { cat "$STATE/init.log" >&2; die "the namespace's init did not start"; }
    in_chroot true || die "cannot enter the chroot"
    in_chroot curl -sf -o /dev/null --max-time 20 "$(mirror)/dists/$RELEASE/Release" \
        || die "the namespace does not reach the Debian mirror (check the NAT rule and /etc/resolv.conf)"
    log "namespace init running (pid $p); the Debian mirror answers from inside"
}

# in_chroot CMD... : CMD in the chroot's namespaces, root and (if present) the clone
in_chroot() {
    local p wd=/
    p=$(init_pid) || die "not up; run: $0 up"
    [[ -d $ROOT$CLONE ]] && wd=$CLONE
    # shellcheck disable=SC2016  # $0 and $@ of the inner sh
    nsenter --target "$p" --mount --pid --net --root --wd -- \
        /usr/bin/env -i HOME=/root PATH="$PATH_IN" LANG=C.UTF-8 TERM="${TERM:-dumb}" ${CI:+CI="$CI"} \
        /bin/sh -c 'cd "$0" && exec "$@"' "$wd" "$@"
}

# pids_inside INIT : every process of INIT's pid namespace (host pids), INIT last
pids_inside() {
    local init=$1 ns p
    ns=$(readlink "/proc/$init/ns/pid") || return 0
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        [[ $p != "$init" && $(readlink "/proc/$p/ns/pid" 2>/dev/null) == "$ns" ]] && echo "$p"
    done
    echo "$init"
}

# ------------------------------------------------------------------ commands

cmd_up() {
    ensure_rootfs
    ensure_net
    ensure_init
    log "up: $(sed -n 's/^PRETTY_NAME="\(.*\)"/\1/p' "$ROOT/etc/os-release"), $(in_chroot python3 -V), kernel $(uname -r) (the host's)"
}

cmd_ci() {
    local ref=${1:-HEAD} sha logf rc=0 t0=$SECONDS
    sha=$(git -C "$REPO" rev-parse --verify "$ref^{commit}") || die "no commit $ref in $REPO"
    cmd_up
    log "fresh clone of $REPO at $ref ($sha) into $CLONE"
    rm -rf --one-file-system "${ROOT:?}$CLONE"
    git clone --quiet --no-hardlinks "$REPO" "$ROOT$CLONE"
    git -C "$ROOT$CLONE" checkout --quiet --detach "$sha"
    logf=$STATE/ci-$(date -u +%Y%m%dT%H%M%SZ).log
    log "CI=true bash .ci/run in the chroot (log: $logf)"
    CI=true in_chroot bash .ci/run 2>&1 | tee "$logf" || rc=${PIPESTATUS[0]}
    log "ci on $RELEASE at $sha: exit $rc in $((SECONDS - t0)) s (log: $logf)"
    return "$rc"
}

cmd_status() {
    local p
    if p=$(init_pid); then
        log "namespace init: pid $p; processes inside:"
        ps -o pid=,args= -p "$(pids_inside "$p" | paste -sd, -)" >&2
    else
        log "not running"
    fi
    ip netns list | grep -w "^$NS" >&2 || log "no network namespace $NS"
}

# stop_namespace UNSHARE_PID : SIGTERM to every process of its pid namespace but the init, up to
# 30 s, then the init's exit kills what is left (SIGKILL) and drops its mount namespace
stop_namespace() {
    local u=$1 init pids i
    init=$(first_child "$u") || { kill -TERM "$u" 2>/dev/null; return 0; }
    mapfile -t pids < <(pids_inside "$init")
    log "stopping ${#pids[@]} process(es) in the namespace of unshare pid $u"
    ((${#pids[@]} < 2)) || kill -TERM "${pids[@]:0:${#pids[@]}-1}" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
        (( $(pids_inside "$init" | wc -l) <= 1 )) && break
        sleep 0.2
    done
    kill -TERM "$init" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do [[ -d /proc/$init ]] || break; sleep 0.2; done
    [[ ! -d /proc/$init ]] || kill -KILL "$init" 2>/dev/null || true
}

cmd_down() {
    local u
    for u in $(unshares); do stop_namespace "$u"; done
    rm -f "$STATE/unshare.pid"
    ! awk -v d="$ROOT/" 'index($2, d) == 1 { f = 1 } END { exit !f }' /proc/mounts \
        || die "something is still mounted below $ROOT in the host's mount namespace"
    remove_net
    log "down (rootfs kept in $ROOT)"
}

main() {
    [[ $(id -u) == 0 ]] || die "must run as root"
    local cmd=${1:-}
    shift || true
    mkdir -p "$STATE"
    case $cmd in
        up) cmd_up ;;
        ci) cmd_ci "$@" ;;
        run) (($#)) || set -- bash; in_chroot "$@" ;;
        status) cmd_status ;;
        down) cmd_down ;;
        purge) cmd_down; rm -rf --one-file-system "$ROOT" "$ROOT.tmp"; log "deleted $ROOT" ;;
        *) die "usage: $0 up | ci [REF] | run CMD... | status | down | purge" ;;
    esac
}

main "$@"
