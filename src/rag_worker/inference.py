"""HTTP entry point of the RAG worker image.

Run inside the image as ``uvicorn src.rag_worker.inference:app --port 8080``.

Endpoints:

* ``GET /health`` reports the build metadata that the Dockerfile bakes into
  the image as environment variables (VERSION, ENVIRONMENT, GIT_COMMIT,
  BUILD_TIMESTAMP), so a running container can be traced back to its build.
* ``GET /ping`` is SageMaker's health contract: SageMaker calls it on port
  8080 and treats any 200 as healthy.
* ``POST /invocations`` is SageMaker's inference contract
  (https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-inference-code.html):
  the body SageMaker passes through from ``InvokeEndpoint``. This worker takes
  ``application/json`` ``{"query": "<text>", "top_k": <1-100, default 5>}``
  and answers ``application/json`` ``{"query", "top_k", "documents",
  "version"}``; another content type is 415, a body that is not such an
  object is 400 with ``{"error": "<reason>"}``. ``documents`` comes from
  ``retrieve()``, the hook the retrieval pipeline plugs into (this repository
  ships none, so it returns no documents).

SageMaker starts the image as ``docker run IMAGE serve``: the image's
``serve`` (src/rag_worker/serve) starts this app with uvicorn on port 8080.

The variables are read on every request rather than at import time, so the
answer always matches the process environment.
"""

from __future__ import annotations

import os

import json

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

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


#: What /invocations accepts and answers (SageMaker passes the caller's ContentType through).
JSON_TYPE = "application/json"
DEFAULT_TOP_K = 5
MAX_TOP_K = 100


def retrieve(query: str, top_k: int) -> list:
    """The documents for ``query``, best first, at most ``top_k``: the retrieval pipeline's
    hook. This repository ships no index, so there are none."""
    return []


def _bad_request(reason: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status)


@app.post("/invocations")
async def invocations(request: Request) -> Response:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != JSON_TYPE:
        return _bad_request(f"content type {content_type or '(none)'!r} is not supported; send "
                            f"{JSON_TYPE}", status=415)
    try:
        payload = json.loads(await request.body())
    except ValueError:  # also a body that is not UTF-8
        return _bad_request("the body is not JSON")
    if not isinstance(payload, dict):
        return _bad_request('the body must be a JSON object: {"query": "<text>"}')
    query = payload.get("query")
    if not isinstance(query, str) or not query.strip():
        return _bad_request('"query" must be a non-empty string')
    top_k = payload.get("top_k", DEFAULT_TOP_K)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
        return _bad_request(f'"top_k" must be an integer from 1 to {MAX_TOP_K}')
    return JSONResponse({"query": query, "top_k": top_k, "documents": retrieve(query, top_k),
                         "version": build_info()["version"]})
