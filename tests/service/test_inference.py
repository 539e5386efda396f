"""Behaviour of the rag-worker HTTP service (src/rag_worker/inference.py)."""

import pytest
from fastapi.testclient import TestClient

from src.rag_worker.inference import app

BUILD_VARIABLES = ("VERSION", "ENVIRONMENT", "GIT_COMMIT", "BUILD_TIMESTAMP")


@pytest.fixture
def client():
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def clean_env(monkeypatch):
    for name in BUILD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_health_reports_build_variables_from_environment(client, clean_env):
    clean_env.setenv("VERSION", "1.4.2")
    clean_env.setenv("ENVIRONMENT", "staging")
    clean_env.setenv("GIT_COMMIT", "0123456789abcdef0123456789abcdef01234567")
    clean_env.setenv("BUILD_TIMESTAMP", "2024-05-01T12:34:56Z")

    response = client.get("/health")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {
        "status": "ok",
        "version": "1.4.2",
        "environment": "staging",
        "git_commit": "0123456789abcdef0123456789abcdef01234567",
        "build_timestamp": "2024-05-01T12:34:56Z",
    }


def test_health_defaults_to_unknown_when_variables_are_missing(client, clean_env):
    response = client.get("/health")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "version": "unknown",
        "environment": "unknown",
        "git_commit": "unknown",
        "build_timestamp": "unknown",
    }


def test_health_treats_empty_variables_as_unknown(client, clean_env):
    # The Dockerfile turns an empty --build-arg into an empty ENV value.
    clean_env.setenv("VERSION", "")
    clean_env.setenv("GIT_COMMIT", "abc1234")

    body = client.get("/health").json()

    assert body["version"] == "unknown"
    assert body["git_commit"] == "abc1234"
    assert body["environment"] == "unknown"


def test_health_reads_environment_at_request_time(client, clean_env):
    clean_env.setenv("VERSION", "1.0.0")
    assert client.get("/health").json()["version"] == "1.0.0"

    clean_env.setenv("VERSION", "2.0.0")
    assert client.get("/health").json()["version"] == "2.0.0"


def test_ping_answers_200_for_sagemaker(client):
    response = client.get("/ping")

    assert response.status_code == 200


def test_ping_rejects_post(client):
    assert client.post("/ping").status_code == 405


def test_unknown_path_is_404(client):
    response = client.get("/invocations-that-do-not-exist")

    assert response.status_code == 404


# --- POST /invocations: SageMaker's inference contract -----------------------------------------


def test_invocations_answers_json_for_a_query(client, clean_env):
    clean_env.setenv("VERSION", "1.2.3")
    response = client.post("/invocations", json={"query": "what is RAG?", "top_k": 3})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {
        "query": "what is RAG?",
        "top_k": 3,
        "documents": [],
        "version": "1.2.3",
    }


def test_invocations_defaults_top_k(client):
    assert client.post("/invocations", json={"query": "q"}).json()["top_k"] == 5


def test_invocations_returns_what_retrieve_finds(client, monkeypatch):
    from src.rag_worker import inference

    monkeypatch.setattr(
        inference, "retrieve", lambda query, top_k: [{"id": f"{query}-{i}"} for i in range(top_k)]
    )
    body = client.post("/invocations", json={"query": "q", "top_k": 2}).json()
    assert body["documents"] == [{"id": "q-0"}, {"id": "q-1"}]


def test_invocations_accepts_a_charset_parameter(client):
    response = client.post(
        "/invocations",
        content=b'{"query": "q"}',
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 200


@pytest.mark.parametrize("content_type", ["text/csv", "application/x-npy", None])
def test_invocations_refuses_other_content_types_with_415(client, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/invocations", content=b"1,2,3", headers=headers)
    assert response.status_code == 415
    assert "application/json" in response.json()["error"]


@pytest.mark.parametrize(
    "body, reason",
    [
        (b"{not json", "the body is not JSON"),
        (b"\xff\xfe", "the body is not JSON"),
        (b"[1, 2]", 'the body must be a JSON object: {"query": "<text>"}'),
        (b"{}", '"query" must be a non-empty string'),
        (b'{"query": "  "}', '"query" must be a non-empty string'),
        (b'{"query": 7}', '"query" must be a non-empty string'),
        (b'{"query": "q", "top_k": 0}', '"top_k" must be an integer from 1 to 100'),
        (b'{"query": "q", "top_k": 101}', '"top_k" must be an integer from 1 to 100'),
        (b'{"query": "q", "top_k": true}', '"top_k" must be an integer from 1 to 100'),
        (b'{"query": "q", "top_k": "3"}', '"top_k" must be an integer from 1 to 100'),
    ],
)
def test_invocations_refuses_bad_bodies_with_400_and_a_reason(client, body, reason):
    response = client.post(
        "/invocations", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json() == {"error": reason}


def test_invocations_rejects_get(client):
    assert client.get("/invocations").status_code == 405
