"""docker_config.py: what the docker client's configuration says (credential helpers, contexts)."""

from ragbuild.docker_config import DockerConfig
from registry_fakes import *  # noqa: F401,F403 (the shared fakes, clean_env included)
from registry_fakes import clean_env  # noqa: F401 (autouse)


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
