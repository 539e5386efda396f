"""The unit tests do not depend on the machine running them (conftest's autouse fixture)."""

import os

from plumbum import local

from conftest import MACHINE_VARS


def test_docker_and_aws_resolve_to_the_stubs_on_both_paths():
    for name in ("docker", "aws"):
        stub = str(local.which(name))  # plumbum's own copy of PATH, as the runner resolves
        assert "machine-stubs" in stub, stub
        assert os.environ["PATH"].split(os.pathsep)[0] == os.path.dirname(stub)


def test_the_machines_variables_are_cleared_for_the_runner_and_plumbum():
    for name in MACHINE_VARS:
        assert name not in os.environ, name
        assert name not in local.env, name
    assert os.listdir(os.environ["DOCKER_CONFIG"]) == []  # no user's config.json
