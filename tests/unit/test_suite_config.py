"""The test configuration of setup.cfg [tool:pytest], as a user meets it: a bare ``pytest`` from the
repository root runs the unit and service tests only; the e2e suite (whose fixtures install
packages and start a Docker daemon) runs only when named, as ``make e2e`` and .ci/run do."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def collected(*args: str) -> list:
    """The test ids ``pytest --collect-only -q`` lists from the repository root."""
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           *args], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return [line for line in done.stdout.splitlines() if "::" in line]


def test_a_bare_pytest_collects_unit_and_service_tests_but_no_e2e_test():
    ids = collected()
    folders = {test_id.split("/")[1] for test_id in ids}
    assert folders == {"unit", "service"}


def test_the_e2e_suite_is_collected_when_named():
    ids = collected("tests/e2e")
    assert ids and all(test_id.startswith("tests/e2e/") for test_id in ids)
