# rag-worker image: a FastAPI service (src/rag_worker) served by uvicorn on
# port 8080, the port SageMaker calls /ping on.
#
# Two stages: the builder creates a virtualenv at /opt/venv and installs the
# pinned requirements into it; the final stage copies only that venv and the
# source, so no pip cache, build tool or private-index setting reaches it.
#
# Layer order (top = changes least): base -> user -> venv -> source -> build
# metadata. A change under src/ rebuilds only the `COPY src/` layer; the build
# metadata (which changes every build through BUILD_TIMESTAMP) is declared
# after it and adds labels/env only, no filesystem layer, so it never forces a
# dependency reinstall.

# Base for both stages. Override with --build-arg PYTHON_IMAGE=... (e.g. a
# digest-pinned or mirrored python:3.11-slim).
ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------- builder --
FROM ${PYTHON_IMAGE} AS builder

# Package-index settings, for building through a private mirror or offline
# from a wheel directory. pip reads them from the environment. They are
# declared in this stage only: ARGs are per stage, so none reaches the final
# image (not its env, not its history). An ARG that is not passed with
# --build-arg is not set at all in RUN's environment, and pip ignores
# PIP_* variables whose value is empty, so building with none of them (or
# with e.g. `--build-arg PIP_NO_INDEX=`) uses pip's defaults.
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_NO_INDEX
ARG PIP_TRUSTED_HOST

ENV PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/venv

# Requirements alone first, so this expensive layer stays cached while only
# source files change.
COPY src/rag_worker/requirements.txt /tmp/requirements.txt
# pip and setuptools only install; the service never imports them. Removing
# them from the venv takes ~25 MB out of the final image.
RUN /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt \
 && /opt/venv/bin/pip uninstall --yes setuptools pip

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

WORKDIR /app

COPY --from=builder /opt/venv /opt/venv

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
