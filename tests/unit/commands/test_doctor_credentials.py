"""doctor's "registry credentials" line says what a push sends: when the credential helper
docker resolves fails, docker push ignores it and sends the config's ``auths`` entry
(credentials.resolve_login), and the push's pre-flight says so; doctor must not call the
failing helper ok."""

from __future__ import annotations

import base64
import json
import os

import pytest

from conftest import write_stub
from ragbuild import registry
from tests.unit.commands.test_doctor import healthy, probes, run_doctor, worker  # noqa: F401

HOST = "registry.example.com"


@pytest.mark.usefixtures("probes")
def test_a_failing_helper_is_a_warning_naming_what_docker_sends(
    worker,  # noqa: F811
    fp,
    capsys,
    monkeypatch,
    stub_bin,
):
    healthy(fp)
    write_stub(stub_bin, "docker-credential-broken")
    fp.register(
        [fp.program("docker-credential-broken"), "get"],
        returncode=1,
        stdout="the keyring is locked\n",
    )
    auth = base64.b64encode(b"u:s3cret").decode()
    config = os.path.join(os.environ["DOCKER_CONFIG"], "config.json")
    with open(config, "w") as out:
        json.dump({"credsStore": "broken", "auths": {HOST: {"auth": auth}}}, out)
    monkeypatch.setattr(registry, "probe", lambda *args: None)  # answers, takes them
    code, lines, _ = run_doctor(["--registry", f"{HOST}/team/rag-worker"], capsys)
    line = next(line for line in lines if "registry credentials:" in line)
    assert line.startswith("warning  registry credentials: docker-credential-broken"), line
    assert "fails for registry.example.com; docker push ignores that" in line
    assert line.endswith(f"(auths['{HOST}'] in {config})")
    assert "s3cret" not in "\n".join(lines)
    assert code == 0  # the push works: docker sends the auths entry
