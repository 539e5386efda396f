#!/bin/sh
# Makes the fixtures of test_build_failure.py: the output of real failed builds, on the e2e
# harness's engines (docs/test-harness.md): Debian 12's docker 20.10 (`legacy`: /usr/bin/docker,
# DOCKER_BUILDKIT=1), the docker 28 client with buildx 0.13 on the same daemon (`modern`), and
# the docker 26 daemon (`d26`, skipped when it is not up). `-tty` fixtures are what docker writes
# to a terminal (its live progress display), recorded with script(1).
#
# Needs: python:3.11-slim on the engines; PyPI reachable only through a TLS-inspecting proxy
# whose CA the host trusts (this project's machine): `pip install` in a RUN fails verification,
# and with the host's CA as a build secret succeeds. Run from anywhere:
#     sh tests/unit/build_failures/make-fixtures.sh
# Each fixture is docker's stderr with the legacy client's `#N sha256:...` lines dropped; it
# carries no CA bytes (the CA is a secret file, never printed) and no credentials.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-$HERE}
WORK=$(mktemp -d)
BRIDGE=${E2E_BRIDGE_IP:-172.17.0.1}
CA=${CA:-/etc/ssl/certs/ca-certificates.crt}
D26_HOST=${E2E_MULTI_HOST:-tcp://127.0.0.1:18635}
TAG=ragbuild-fixture-$$
trap 'kill $P407 $P403 2>/dev/null; rm -rf "$WORK"' EXIT

engine() {  # engine NAME -> the command line that builds on it
    case $1 in
        legacy) echo "env DOCKER_BUILDKIT=1 /usr/bin/docker" ;;
        modern) echo "/usr/local/bin/docker" ;;
        d26) echo "/usr/local/bin/docker -H $D26_HOST" ;;
    esac
}

trim() { grep -v '^#[0-9]* sha256:[0-9a-f]*$' | grep -v '^Script \(started\|done\)'; }

# fixture NAME ENGINE DOCKERFILE [build options...]: build, expect a failure, save the output
fixture() {
    name=$1 eng=$2 file=$3; shift 3
    [ "$eng" = d26 ] && ! $(engine d26) version >/dev/null 2>&1 && { echo "skip $name.$eng"; return; }
    mkdir -p "$WORK/$name" && printf '%s\n' "$file" > "$WORK/$name/Dockerfile"
    (cd "$WORK/$name" && timeout 600 $(engine "$eng") build -t "$TAG" "$@" . 2>&1 >/dev/null) \
        | trim > "$OUT/$name.$eng.txt"
    echo "made $name.$eng.txt"
}

# fixture_tty NAME ENGINE DOCKERFILE [build options...]: the same, on a terminal
fixture_tty() {
    name=$1 eng=$2 file=$3; shift 3
    mkdir -p "$WORK/$name" && printf '%s\n' "$file" > "$WORK/$name/Dockerfile"
    (cd "$WORK/$name" && timeout 600 script -qec "$(engine "$eng") build -t $TAG $* ." "$WORK/tty" \
        >/dev/null 2>&1)
    trim < "$WORK/tty" > "$OUT/$name.$eng-tty.txt"
    echo "made $name.$eng-tty.txt"
}

PIP='FROM python:3.11-slim
RUN pip install --no-cache-dir --retries 1 --timeout 10 six'
UV='FROM python:3.11-slim
RUN --mount=type=secret,id=ca PIP_CERT=/run/secrets/ca pip install --no-cache-dir uv
RUN uv pip install --system --no-cache six'
for eng in legacy modern; do
    fixture tls-pip $eng "$PIP"
    fixture_tty tls-pip $eng "$PIP"
    fixture tls-uv $eng "$UV" --secret "id=ca,src=$CA"
done

python3 "$HERE/refusing_proxy.py" "$BRIDGE" 18751 "407 Proxy Authentication Required" & P407=$!
python3 "$HERE/refusing_proxy.py" "$BRIDGE" 18752 "403 Forbidden" & P403=$!
sleep 1
fixture proxy407-pip legacy "$PIP" --build-arg "HTTPS_PROXY=http://$BRIDGE:18751"
fixture proxy403-pip legacy "$PIP" --build-arg "HTTPS_PROXY=http://$BRIDGE:18752"
# uv itself comes from the cache of tls-uv's build (a proxy build arg does not change the key)
fixture proxy407-uv modern "$UV" --secret "id=ca,src=$CA" --build-arg "HTTPS_PROXY=http://$BRIDGE:18751"
fixture proxy403-uv modern "$UV" --secret "id=ca,src=$CA" --build-arg "HTTPS_PROXY=http://$BRIDGE:18752"

for eng in legacy modern d26; do
    fixture frontend $eng '# syntax=docker/dockerfile:1.7
FROM python:3.11-slim
RUN true'
    fixture base-dns $eng 'FROM nonexistent.invalid/x
RUN true'
    fixture base-missing $eng "FROM ${E2E_REGISTRY:-localhost:18632}/ragbuild-fixture/nope:1
RUN true"
done
fixture_tty frontend modern '# syntax=docker/dockerfile:1.7
FROM python:3.11-slim
RUN true'
fixture base-pull legacy "$PIP" --pull
fixture base-pull modern "$PIP" --pull
fixture base-x509 legacy "FROM ${E2E_ECR_HOST:-123456789012.dkr.ecr.us-east-1.amazonaws.com}/ragbuild-fixture/x:1
RUN true"

# none of the kinds: a step that fails on its own after one that recovered from a TLS failure;
# the engine's containers without DNS (the d26 engine's network); a step's long output
RECOVERED='FROM python:3.11-slim
RUN pip install --no-cache-dir --retries 0 six || echo recovered
RUN echo compiling; exit 3'
fixture other-after-tls legacy "$RECOVERED" --no-cache
fixture other-after-tls modern "$RECOVERED" --no-cache
fixture other-dns d26 "$PIP"
fixture_tty other-long modern 'FROM python:3.11-slim
RUN for i in $(seq 1 40); do echo line-$i; done; exit 3'

for eng in legacy modern d26; do $(engine $eng) image rm "$TAG" >/dev/null 2>&1; done
exit 0
