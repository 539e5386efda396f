"""docker_config.py: what the docker client's configuration says (credential helpers, contexts)."""

from ragbuild.docker_config import DockerConfig
from registry_fakes import *  # noqa: F401,F403 (the shared fakes, clean_env included)
from registry_fakes import clean_env  # noqa: F401 (autouse)

import json
import pytest
from ragbuild import docker_config


def test_cred_helper_is_found_by_host():
    """docker looks credHelpers up by the exact host key (config/configfile/file.go)."""
    helpers = {ECR: "ecr-login", "gcr.io": "gcloud", "bad.example": 7}
    assert DockerConfig(cred_helpers=helpers).credentials(ECR).helper == "ecr-login"
    assert (
        DockerConfig(cred_helpers={f"https://{ECR}": "ecr-login"}).credentials(ECR).helper is None
    )
    assert DockerConfig(cred_helpers=helpers).credentials("other.example").helper is None
    assert DockerConfig(cred_helpers=helpers).credentials("bad.example").helper is None
    assert DockerConfig(cred_helpers={}).credentials(ECR).helper is None


@pytest.mark.parametrize(
    "content, context, helpers",
    [
        (
            json.dumps(
                {"currentContext": "big-box", "credHelpers": {"r.example": "ecr-login"}}
            ).encode(),
            "big-box",
            {"r.example": "ecr-login"},
        ),
        (b"\xff\xfe not utf-8", None, {}),
        (b"{broken", None, {}),
        (b"[]", None, {}),
        (json.dumps({"currentContext": 3, "credHelpers": ["ecr-login"]}).encode(), None, {}),
        (
            json.dumps({"credHelpers": {"a": "", "b": None, "c": "gcloud"}}).encode(),
            None,
            # "": no helper for "a", not even credsStore (issue 23); null is "" to docker too
            {"a": "", "b": "", "c": "gcloud"},
        ),
    ],
)
def test_read_docker_config(tmp_path, content, context, helpers):
    (tmp_path / "config.json").write_bytes(content)
    config = docker_config.read_docker_config({"DOCKER_CONFIG": str(tmp_path)})
    assert (config.current_context, config.cred_helpers) == (context, helpers)


def test_a_missing_docker_config_is_nothing_set(tmp_path):
    assert docker_config.read_docker_config(
        {"DOCKER_CONFIG": str(tmp_path)}
    ) == docker_config.DockerConfig(str(tmp_path / "config.json"))
