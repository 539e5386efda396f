"""diagnose.py: what a stopped container said, read as a user would want it told."""

from __future__ import annotations

import json

import pytest

from ragbuild import diagnose


@pytest.mark.parametrize(
    "said, hint",
    [
        ("exec /app/serve: permission denied", "/app/serve is not executable"),
        (
            "exec /app/serve: exec format error",
            "/app/serve has no #! line, or is a binary of another",
        ),
        ("Traceback ...\nModuleNotFoundError: fastapi", ""),
    ],
)
def test_exec_hints_name_the_usual_cause(said, hint):
    assert diagnose.exec_hint(said, None).startswith(hint)
    assert bool(diagnose.exec_hint(said, None)) == bool(hint)


def test_an_oom_kill_is_named_in_the_state():
    state = diagnose.parse_state(
        json.dumps({"Status": "exited", "Running": False, "ExitCode": 137, "OOMKilled": True})
    )
    assert state.describe() == "exited (exit 137, killed: out of memory)"
    assert diagnose.parse_state("not json") == diagnose.State()
