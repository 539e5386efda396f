"""The credential rules issue 23's differential (tests/e2e/test_registry_differential.py) found
ragbuild and docker push to disagree on, as docker decides them."""

from __future__ import annotations

import base64
import io
import json

import pytest

from ragbuild.credentials import docker_login, resolve_login
from ragbuild.docker_config import DockerConfig, _hostname, read_docker_config
from ragbuild.run.runner import Runner
from fakes import ClientSays

HOST = "vm:5000"


def auth(user: str, password: str) -> dict:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


def config_of(tmp_path, data: dict) -> DockerConfig:
    (tmp_path / "config.json").write_text(json.dumps(data))
    return read_docker_config({"DOCKER_CONFIG": str(tmp_path)})


def test_an_empty_cred_helper_turns_creds_store_off_for_its_host(tmp_path):
    """docker: ``credHelpers[host]`` exists, its helper "" means the file store."""
    config = config_of(
        tmp_path,
        {"credsStore": "desktop", "credHelpers": {HOST: ""}, "auths": {HOST: auth("u", "p")}},
    )
    creds = config.credentials(HOST)
    assert (creds.helper, creds.origin, creds.auth_key) == (None, "auths", HOST)
    other = config.credentials("other:5000")
    assert (other.helper, other.origin) == ("desktop", "credsStore")


def test_an_empty_cred_helper_without_an_auths_entry_means_none(tmp_path):
    config = config_of(tmp_path, {"credsStore": "desktop", "credHelpers": {HOST: ""}})
    assert config.credentials(HOST).origin == ""


@pytest.mark.parametrize(
    "key, old, new",
    [
        ("HTTPS://vm:5000", "HTTPS:", "vm:5000"),
        ("https://vm:5000/v1/", "vm:5000", "vm:5000"),
        ("ftp://vm:5000/x", "ftp:", "vm:5000"),
        ("http://user@vm:5000/", "user@vm:5000", "vm:5000"),
        ("HTTPS://vm", "HTTPS:", "vm"),
        ("vm:5000/path", "vm:5000", "vm:5000"),
        ("1x://vm:5000", "1x:", "1x:"),  # not a URL to Go: the old cut
    ],
)
def test_the_28_client_parses_an_auths_key_with_a_scheme_as_a_url(key, old, new):
    assert _hostname(key) == old
    assert _hostname(key, 26) == old
    assert _hostname(key, 28) == new


def test_an_auths_key_with_an_upper_case_scheme_matches_on_the_28_client_only():
    config = DockerConfig(auths={"HTTPS://vm:5000": auth("u", "p")})
    assert config.credentials(HOST).auth_key is None
    assert config.credentials(HOST, 28).auth_key == "HTTPS://vm:5000"


@pytest.fixture
def failing_helper(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-broken"
    helper.write_text("#!/bin/sh\necho 'the keyring is locked'\nexit 1\n")
    helper.chmod(0o755)
    from plumbum import local

    with local.env(PATH=f"{bin_dir}:{local.env['PATH']}"):
        yield


def test_a_failing_helper_gives_way_to_the_auths_entry(tmp_path, failing_helper):
    """docker push ignores the helper's error and sends the file's entry for the host."""
    config = config_of(
        tmp_path, {"credsStore": "broken", "auths": {f"https://{HOST}": auth("u", "pw")}}
    )
    log = io.StringIO()
    creds, login = resolve_login(Runner(log=log), config.credentials(HOST), config)
    assert login is not None and (login.username, login.secret.reveal()) == ("u", "pw")
    assert (creds.helper, creds.auth_key) == (None, f"https://{HOST}")
    said = log.getvalue()
    assert "docker-credential-broken failed for vm:5000" in said
    assert "the keyring is locked" in said and "pw" not in said


def test_a_failing_helper_without_an_auths_entry_means_none(tmp_path, failing_helper):
    config = config_of(tmp_path, {"credHelpers": {HOST: "broken"}})
    assert docker_login(Runner(log=io.StringIO()), config.credentials(HOST), config) is None


def test_the_client_version_is_asked_only_when_the_two_rules_differ(fp):
    from ragbuild.credentials import docker_credentials

    version = [fp.program("docker"), "version", "--format", "{{.Client.Version}}"]
    plain = DockerConfig(auths={"https://vm:5000/v1/": auth("u", "p")})
    assert docker_credentials(Runner(log=io.StringIO()), plain, HOST).auth_key is not None
    assert fp.call_count(version) == 0  # both rules read the key: no process
    fp.register(version, stdout="28.1.1\n")
    fp.register(version, stdout="20.10.24+dfsg1\n")
    upper = DockerConfig(auths={"HTTPS://vm:5000": auth("u", "p")})
    assert docker_credentials(Runner(log=io.StringIO()), upper, HOST).auth_key == "HTTPS://vm:5000"
    assert docker_credentials(Runner(log=io.StringIO()), upper, HOST).auth_key is None


@pytest.mark.parametrize("client, sent", [("28.0.1", ("u", "pw")), ("20.10.24", None)])
def test_a_failing_helper_gives_way_to_the_entry_the_pushing_clients_rule_finds(
    tmp_path, failing_helper, client, sent
):
    """The fallback after a failed helper reads ``auths`` with the key rule of the client that
    pushes (``docker_credentials`` asks it, once, since the two rules disagree on this key),
    the rule push, promote and doctor share."""
    from ragbuild.credentials import docker_credentials

    config = config_of(
        tmp_path, {"credsStore": "broken", "auths": {"HTTPS://vm:5000": auth("u", "pw")}}
    )
    runner = ClientSays(client)
    creds = docker_credentials(runner, config, HOST)
    assert creds.helper == "broken" and runner.asked == 1
    login = docker_login(runner, creds, config)
    assert (login and (login.username, login.secret.reveal())) == sent


def test_the_client_is_not_asked_when_both_key_rules_agree(tmp_path):
    from ragbuild.credentials import docker_credentials

    config = config_of(tmp_path, {"credsStore": "desktop", "auths": {HOST: auth("u", "pw")}})
    runner = ClientSays("28.0.1")
    assert docker_credentials(runner, config, HOST).helper == "desktop" and runner.asked == 0
