# rag-worker image: a FastAPI service (src/rag_worker) served by uvicorn on
# port 8080, the port SageMaker calls /ping on.
#
# Three stages: the builder installs the installer (uv) and turns the
# private-index build args into uv flags; the lock stage resolves
# requirements.txt to every package's exact version and splits that list in
# two; the final stage installs them into a virtualenv at /opt/venv with that
# uv, mounted from the builder, so no installer, cache, build tool or
# private-index setting reaches the image.
#
# Layer order (top = changes least): base -> user -> the venv's dependencies
# of dependencies -> the venv's direct requirements -> source -> build
# metadata. A change under src/ rebuilds only the `COPY src/` layer; the build
# metadata (which changes every build through BUILD_TIMESTAMP) is declared
# after it and adds labels/env only, no filesystem layer, so it never forces a
# dependency reinstall. Bumping a pin in requirements.txt rebuilds the direct
# requirements' layer only, unless the bump changes what they depend on (see
# the lock stage).
#
# Needs BuildKit (DOCKER_BUILDKIT=1 or buildx; ragbuild always uses it): the
# RUN --mount flags are in the Dockerfile frontend built into Docker >= 18.09's
# BuildKit, so no `# syntax=` line (no frontend image to pull).

# Base for both stages. Override with --build-arg PYTHON_IMAGE=... (e.g. a
# digest-pinned or mirrored python:3.11-slim).
ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------- builder --
FROM ${PYTHON_IMAGE} AS builder

# Package-index settings, for building through a private mirror or offline
# from a wheel directory, given with --build-arg in pip's names. pip reads
# them from the environment (it installs uv); uv gets them as flags, mapped
# below. They are declared in this stage only: ARGs are per stage, so none
# reaches the final image (not its env, not its history). An ARG that is not
# passed with --build-arg is not set at all in RUN's environment; pip ignores
# PIP_* variables whose value is empty and the mapping skips them, so
# building with none of them (or with e.g. `--build-arg PIP_NO_INDEX=`) uses
# the defaults (PyPI).
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_NO_INDEX
ARG PIP_TRUSTED_HOST

ENV PIP_DISABLE_PIP_VERSION_CHECK=1

# What the host lends a build, as BuildKit secrets (ragbuild passes them;
# docs/troubleshooting.md): ragbuild-host-ca, the CA bundle the host's pip
# trusts (a TLS-inspecting proxy's CA), and ragbuild-host-index, the host pip's
# index settings as PIP_NAME=value lines (--host-index). Every RUN that
# downloads mounts both; a secret is a file under /run/secrets only for the
# RUN that mounts it, so neither reaches a layer, the env or the history, and
# a build without them (plain `docker build .`) mounts nothing and runs as
# before. Two scripts, which hold no value:
# - /opt/uv/host-env CMD...: runs CMD with PIP_CERT and SSL_CERT_FILE (what
#   pip and uv read) naming the CA when it is mounted, and the index
#   settings exported when they are;
# - /opt/uv/pip-to-uv CMD...: runs CMD with pip's index variables appended as
#   uv's flags (https://docs.astral.sh/uv/reference/cli/#uv-pip-install):
#   PIP_INDEX_URL -> --index-url, PIP_EXTRA_INDEX_URL -> --extra-index-url,
#   PIP_FIND_LINKS -> --find-links (each a space-separated list, as in pip),
#   PIP_TRUSTED_HOST -> --allow-insecure-host, PIP_NO_INDEX with one of pip's
#   true values (1, yes, y, true, t, on; any case) -> --no-index.
# The values are read with printenv, never as $VAR: BuildKit prints each RUN
# step with the build args it names substituted (`#6 [builder 3/3] RUN for v
# in https://user:token@...`), so a token in a private index URL would be in
# every build log. printenv reads the same environment and shows only the name.
RUN mkdir -p /opt/uv \
    && printf '%s\n' '#!/bin/sh' \
        'ca=/run/secrets/ragbuild-host-ca index=/run/secrets/ragbuild-host-index' \
        'if [ -s "$ca" ]; then export PIP_CERT="$ca" SSL_CERT_FILE="$ca"; fi' \
        'if [ -s "$index" ]; then' \
        '    while IFS= read -r line; do case "$line" in PIP_*=*) export "$line" ;; esac; done <"$index"' \
        'fi' \
        'exec "$@"' >/opt/uv/host-env \
    && printf '%s\n' '#!/bin/sh' \
        'for v in $(printenv PIP_INDEX_URL); do set -- "$@" --index-url "$v"; done' \
        'for v in $(printenv PIP_EXTRA_INDEX_URL); do set -- "$@" --extra-index-url "$v"; done' \
        'for v in $(printenv PIP_FIND_LINKS); do set -- "$@" --find-links "$v"; done' \
        'for v in $(printenv PIP_TRUSTED_HOST); do set -- "$@" --allow-insecure-host "$v"; done' \
        'case "$(printenv PIP_NO_INDEX | tr A-Z a-z)" in 1|y|yes|t|true|on) set -- "$@" --no-index ;; esac' \
        'exec "$@"' >/opt/uv/pip-to-uv \
    && chmod 0755 /opt/uv/host-env /opt/uv/pip-to-uv

# uv (https://docs.astral.sh/uv/) installs the requirements: it resolves and
# installs in parallel, and from its cache. Installed with the base image's
# pip from the same index as the requirements, into a directory of its own
# (--target: a wheel unpacked there, 1 s, where a venv takes 3 s more) that
# stays in this stage; /opt/uv/bin/uv is a static binary.
ARG UV_VERSION=0.13.9
RUN --mount=type=secret,id=ragbuild-host-ca --mount=type=secret,id=ragbuild-host-index \
    PIP_ROOT_USER_ACTION=ignore /opt/uv/host-env \
    python -m pip install --quiet --no-cache-dir --target /opt/uv "uv==${UV_VERSION}"

# The build args' pip settings as uv flags, one a line, in
# /opt/uv/index-args for the later stages' uv runs (the build args are this
# stage's only). The secret is not mounted here: its settings are read by
# each RUN that mounts it, and never written down.
RUN /opt/uv/pip-to-uv sh -c 'for a; do printf "%s\n" "$a"; done' sh >/opt/uv/index-args

# /opt/uv/uv-index: uv with the build args' flags, then the host's (the
# secrets, when mounted), after its own arguments, and with the settings
# every uv run of the later stages shares (its cache in the cache mount at
# /tmp/uv-cache, copies from it, no progress bars, no Python downloads). It
# finds uv and its files beside itself, wherever the directory is mounted.
# The build args' own variables are unset once read from index-args: BuildKit
# gives a stage built FROM this one this stage's build args too, and
# pip-to-uv must map only the secret's.
RUN printf '%s\n' '#!/bin/sh' 'set -e' 'here=$(dirname "$0")' \
        'while IFS= read -r a; do set -- "$@" "$a"; done <"$here/index-args"' \
        'unset PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_FIND_LINKS PIP_TRUSTED_HOST PIP_NO_INDEX' \
        'export UV_CACHE_DIR=/tmp/uv-cache UV_LINK_MODE=copy UV_NO_PROGRESS=1 UV_PYTHON_DOWNLOADS=never' \
        'exec "$here/host-env" "$here/pip-to-uv" "$here/bin/uv" "$@"' >/opt/uv/uv-index \
    && chmod 0755 /opt/uv/uv-index

# ------------------------------------------------------------------- lock --
FROM builder AS lock

# requirements.txt resolved to the exact version of every package it needs
# (`uv pip compile`, for the base image's Python, from the same index), split
# in two lists for the final stage's two install layers:
# - /lock/direct.txt: the packages requirements.txt names (compared by their
#   normalized names, PEP 503), the pins a team bumps;
# - /lock/transitive.txt: everything they depend on.
# The final stage mounts each list into its own RUN, and BuildKit keys a step
# on the content of what it mounts: a bump that leaves the dependencies as
# they were leaves transitive.txt as it was, so that layer (most of the venv:
# 213 of 262 MB on the realistic set in benchmarks/) stays cached, is not
# exported again, and is not pushed again. uv's wheel cache (the cache mount
# ragbuild-uv, kept by the engine between builds, never part of an image;
# `docker builder prune` empties it) serves every package it downloaded
# before. No index setting reaches the lists (no --emit-index-url): the index
# to install from is the builder's (the PIP_* build args); an --index-url or
# --find-links line inside requirements.txt is used by the resolution only,
# and an install that needs it fails loudly.
RUN --mount=type=bind,source=src/rag_worker/requirements.txt,target=/tmp/requirements.txt \
    --mount=type=cache,id=ragbuild-uv,target=/tmp/uv-cache \
    --mount=type=secret,id=ragbuild-host-ca --mount=type=secret,id=ragbuild-host-index \
    set -e; \
    mkdir /lock; \
    /opt/uv/uv-index pip compile --quiet --no-header --no-annotate \
        --python "$(command -v python)" -o /lock/all.txt /tmp/requirements.txt; \
    python -c 'import re; \
name = lambda line: re.sub(r"[-_.]+", "-", re.split(r"[\s\[=<>!~;@]", line.strip(), maxsplit=1)[0]).lower(); \
named = {name(l) for l in open("/tmp/requirements.txt") if l.strip() and l.lstrip()[0] not in "#-"}; \
pins = [l for l in open("/lock/all.txt") if l.strip() and not l.lstrip().startswith("#")]; \
open("/lock/direct.txt", "w").writelines(l for l in pins if name(l) in named); \
open("/lock/transitive.txt", "w").writelines(l for l in pins if name(l) not in named)'

# ------------------------------------------------------------------ final --
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH

# Unprivileged runtime user with a fixed numeric id (so orchestrators that
# require runAsNonRoot can verify it). The code stays root-owned and
# read-only to it.
# `serve`: SageMaker starts containers as `docker run IMAGE serve`, which
# replaces CMD; src/rag_worker/serve starts the same server as CMD does. Its
# mode is set here, in the image: git may well keep it as 0644, and then
# `serve` would be "executable file not found in $PATH" (exit 127) on
# SageMaker. (RUN chmod, not COPY --chmod: a plain non-BuildKit
# `docker build .` refuses --chmod.) `ragbuild --smoke-test` starts the image
# this same way.
COPY src/rag_worker/serve /usr/local/bin/serve
RUN groupadd --system --gid 10001 ragworker \
 && useradd --system --uid 10001 --gid ragworker --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin ragworker \
 && chmod 0755 /usr/local/bin/serve

# The dependency layers: the venv, first with what the direct requirements
# depend on, then with the direct requirements (the lock stage's two lists).
# uv and its flags come from the builder, each list from the lock stage,
# through bind mounts: none of them stays in the image, and `docker history`
# shows these commands, not the index settings. Each list is installed as it
# is (--no-deps: together they are the whole resolution, so the venv holds
# exactly the resolved packages), from uv's cache where it has them (uv-index:
# the builder's flags and settings). uv copies from its cache
# (UV_LINK_MODE=copy): hardlinks cannot cross mounts.
# COMPILE_BYTECODE=1 (--build-arg) writes .pyc files for every module, as pip
# does: the service then does not compile what it imports at each start
# (PYTHONDONTWRITEBYTECODE=1 above; the venv is read-only to its user), at the
# cost of ~86 MB more image and ~4 s more cold build on the realistic set
# (benchmarks/README.md, "Current figures"). Off by default (uv's default): a
# smaller image to pull.
ARG COMPILE_BYTECODE=0
RUN --mount=type=bind,from=builder,source=/opt/uv,target=/tmp/uv \
    --mount=type=bind,from=lock,source=/lock/transitive.txt,target=/tmp/pins.txt \
    --mount=type=cache,id=ragbuild-uv,target=/tmp/uv-cache \
    --mount=type=secret,id=ragbuild-host-ca --mount=type=secret,id=ragbuild-host-index \
    set -e; \
    if [ "${COMPILE_BYTECODE}" = 1 ]; then export UV_COMPILE_BYTECODE=1; fi; \
    /tmp/uv/bin/uv venv --quiet --python "$(command -v python)" /opt/venv; \
    if [ -s /tmp/pins.txt ]; then \
        /tmp/uv/uv-index pip install --quiet --no-deps --python /opt/venv/bin/python \
            -r /tmp/pins.txt; \
    fi
RUN --mount=type=bind,from=builder,source=/opt/uv,target=/tmp/uv \
    --mount=type=bind,from=lock,source=/lock/direct.txt,target=/tmp/pins.txt \
    --mount=type=cache,id=ragbuild-uv,target=/tmp/uv-cache \
    --mount=type=secret,id=ragbuild-host-ca --mount=type=secret,id=ragbuild-host-index \
    set -e; \
    if [ "${COMPILE_BYTECODE}" = 1 ]; then export UV_COMPILE_BYTECODE=1; fi; \
    if [ -s /tmp/pins.txt ]; then \
        /tmp/uv/uv-index pip install --quiet --no-deps --python /opt/venv/bin/python \
            -r /tmp/pins.txt; \
    fi

WORKDIR /app

# Source last among the filesystem layers: editing src/ rebuilds only this.
COPY src/ /app/src/

USER 10001:10001

EXPOSE 8080

# No curl in the image: probe /ping with the interpreter that is already there.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/ping', timeout=4)"]

# Build metadata, passed by ragbuild on every build. Each defaults to
# "unknown" (what /health reports for a missing value) so a plain
# `docker build .` still gives a consistent image; SOURCE_URL defaults to
# empty. Declared here, after every filesystem layer, because
# BUILD_TIMESTAMP differs on every build.
ARG VERSION=unknown
ARG ENVIRONMENT=unknown
ARG GIT_COMMIT=unknown
ARG BUILD_TIMESTAMP=unknown
ARG SOURCE_URL=

# org.opencontainers.image.created is not set here: OCI wants RFC 3339 and
# BUILD_TIMESTAMP is bash's %Y%m%d-%H%M%S, so ragbuild passes the same
# instant as `--label org.opencontainers.image.created=<RFC 3339>`; it also
# passes `--label org.ragbuild.repository=<image name or registry URI>`,
# which `ragbuild clean` goes by. org.ragbuild.project is informational
# only (images built FROM this one inherit it). The source label comes from
# `--build-arg SOURCE_URL=https://...`.
LABEL org.opencontainers.image.title="rag-worker" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${GIT_COMMIT}" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.ragbuild.project="rag-worker"

# Reported by GET /health.
ENV VERSION=${VERSION} \
    ENVIRONMENT=${ENVIRONMENT} \
    GIT_COMMIT=${GIT_COMMIT} \
    BUILD_TIMESTAMP=${BUILD_TIMESTAMP}

CMD ["uvicorn", "src.rag_worker.inference:app", "--host", "0.0.0.0", "--port", "8080"]
