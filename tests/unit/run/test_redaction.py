"""run/redaction.py: what a printout never shows (secret build-arg values, URL credentials)."""

from __future__ import annotations
import pytest
from ragbuild.run.redaction import redact_argv, redact_value


@pytest.mark.parametrize(
    "key, value, shown",
    [
        ("API_TOKEN", "x", "***"),
        ("DB_PASSWORD", "x", "***"),
        ("aws_secret_access_key", "x", "***"),
        ("API_KEY", "x", "***"),
        ("PIP_INDEX_URL", "https://user:tok@mirror/simple", "https://***@mirror/simple"),
        ("PIP_INDEX_URL", "https://mirror/simple", "https://mirror/simple"),
        ("MONKEY", "banana", "banana"),  # KEY only as a whole part
        ("PYTHON_IMAGE", "python:3.11-slim", "python:3.11-slim"),
    ],
)
def test_redact_value(key, value, shown):
    assert redact_value(key, value) == shown


def test_redact_argv_handles_both_build_arg_spellings_and_urls_anywhere():
    argv = (
        "docker",
        "build",
        "--build-arg",
        "API_TOKEN=x",
        "--build-arg=API_KEY=y",
        "--cache-from",
        "https://u:p@cache.example/x",
        "--build-arg",
        "NOTE=a=b",
        ".",
    )
    assert redact_argv(argv) == (
        "docker",
        "build",
        "--build-arg",
        "API_TOKEN=***",
        "--build-arg=API_KEY=***",
        "--cache-from",
        "https://***@cache.example/x",
        "--build-arg",
        "NOTE=a=b",
        ".",
    )
