"""HTTP entry point of the RAG worker image.

Run inside the image as ``uvicorn src.rag_worker.inference:app --port 8080``.

Endpoints:

* ``GET /health`` reports the build metadata that the Dockerfile bakes into
  the image as environment variables (VERSION, ENVIRONMENT, GIT_COMMIT,
  BUILD_TIMESTAMP), so a running container can be traced back to its build.
* ``GET /ping`` is SageMaker's health contract: SageMaker calls it on port
  8080 and treats any 200 as healthy.

The variables are read on every request rather than at import time, so the
answer always matches the process environment.
"""

from __future__ import annotations

import os

from fastapi import FastAPI, Response

UNKNOWN = "unknown"

# Name in the JSON answer -> environment variable set by the image.
BUILD_INFO_VARIABLES = {
    "version": "VERSION",
    "environment": "ENVIRONMENT",
    "git_commit": "GIT_COMMIT",
    "build_timestamp": "BUILD_TIMESTAMP",
}

app = FastAPI(title="rag-worker")


def build_info() -> dict[str, str]:
    """Build metadata from the environment; missing or empty values are "unknown"."""
    return {
        field: os.environ.get(variable) or UNKNOWN
        for field, variable in BUILD_INFO_VARIABLES.items()
    }


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok", **build_info()}


@app.get("/ping")
def ping() -> Response:
    return Response(status_code=200)
