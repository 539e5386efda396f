"""Issue 11 (b) and (e): docker's own configuration read the way docker reads it (credentials:
credHelpers, then credsStore, then auths; insecure registries: the daemon's RegistryConfig), and
a push that cannot succeed found before the build (the registry answers and accepts docker's
credentials)."""

from __future__ import annotations

import base64
import http.server
import json
import os
import threading
from datetime import datetime

import pytest

import fakes
from ragbuild import access, cli, push
from ragbuild.builders import (DOCKER_HUB_KEY, DockerConfig, RegistryConfig, parse_registry_config,
                               read_docker_config)
from ragbuild.errors import DockerUnavailable, PushFailed
from ragbuild.plan import Config, GitInfo, Options, PushPlan, make_plan, parse_registry
from ragbuild.runner import DryRunner, Runner, Secret

ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
LOOK_ALIKE = f"{ECR}.evil.example"
TOKEN = "helper-secret-7f3a9c"
DIGEST = "sha256:" + "ab" * 32
MOMENT = datetime(2026, 1, 2, 3, 4, 5)


@pytest.fixture
def config_dir(tmp_path, monkeypatch):
    directory = tmp_path / "docker-config"
    directory.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(directory))
    return directory


def write_config(config_dir, data):
    (config_dir / "config.json").write_text(json.dumps(data))
    return read_docker_config()


@pytest.fixture
def helpers(tmp_path, monkeypatch):
    """``helpers("ecr-login", ...)``: executables docker-credential-<name> on PATH (also
    plumbum's copy of PATH); fp answers their ``get``."""
    bin_dir = tmp_path / "helper-bin"
    bin_dir.mkdir()
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    monkeypatch.setenv("PATH", path)
    from plumbum import local

    monkeypatch.setitem(local.env, "PATH", path)

    def install(*names):
        for name in names:
            helper = bin_dir / f"docker-credential-{name}"
            helper.write_text("#!/bin/sh\nexit 1\n")
            helper.chmod(0o755)

    return install


def plan_for(registry, **options):
    values = dict(env="dev", registry=registry, push=True, latest_policy="never")
    values.update(options)
    return make_plan(Options(**values), Config(), GitInfo(sha="abc1234"), MOMENT)


def register_basics(fp, registry_config=fakes.REGISTRY_CONFIG):
    fp.register([fp.program("docker"), "build", "--help"], stdout="Usage: docker build\n")
    fakes.register_registry_config(fp, stdout=registry_config)


def register_helper(fp, name, secret=TOKEN, returncode=0, stderr=""):
    fp.register([fp.program(f"docker-credential-{name}"), "get"], returncode=returncode,
                stdout=json.dumps({"Username": "AWS", "Secret": secret}) if not returncode else "",
                stderr=stderr)


def aws_calls(fp):
    return fp.call_count([fp.program("aws"), fp.any()])


def login_calls(fp):
    return fp.call_count([fp.program("docker"), "login", fp.any()])


# --- where docker keeps a host's credentials ----------------------------------------------------


def test_cred_helpers_for_the_host_then_creds_store_then_auths():
    config = DockerConfig(path="/c.json", cred_helpers={ECR: "ecr-login"}, creds_store="desktop",
                          auths={"other.example": {"auth": "eDp5"}})
    assert (config.credentials(ECR).helper, config.credentials(ECR).origin) == ("ecr-login",
                                                                                "credHelpers")
    other = config.credentials("other.example")
    assert (other.helper, other.origin) == ("desktop", "credsStore")  # credsStore beats auths
    only_auths = DockerConfig(auths={"other.example": {"auth": "eDp5"}}).credentials("other.example")
    assert (only_auths.helper, only_auths.origin, only_auths.auth_key) == (
        None, "auths", "other.example")
    assert DockerConfig().credentials("x.example").origin == ""


def test_auths_keys_match_by_host_name_as_dockers_file_store():
    config = DockerConfig(auths={"https://registry.example:5000/v1/": {"auth": "eDp5"}})
    assert config.credentials("registry.example:5000").auth_key == "https://registry.example:5000/v1/"
    assert config.credentials("registry.example").auth_key is None  # another host:port


@pytest.mark.parametrize("host", ["docker.io", "index.docker.io", "registry-1.docker.io"])
def test_docker_hub_credentials_are_filed_under_the_index_server(host):
    config = DockerConfig(cred_helpers={DOCKER_HUB_KEY: "pass"})
    assert config.credentials(host).helper == "pass"


def test_the_config_file_is_read_for_creds_store_and_auths(config_dir):
    config = write_config(config_dir, {"credsStore": "desktop", "auths": {"a.example": {}},
                                       "credHelpers": {"b.example": "gcloud"}})
    assert config.creds_store == "desktop" and "a.example" in config.auths
    assert write_config(config_dir, {"credsStore": 7, "auths": []}).creds_store is None


# --- issue 11 (b) 4: ECR's own helper as credsStore ---------------------------------------------


def test_creds_store_ecr_login_skips_the_ecr_login(fp, config_dir, helpers, capsys):
    """`{"credsStore": "ecr-login"}`: docker push works with it; `docker login` would fail
    ("error storing credentials ... not implemented"), so ragbuild must not log in."""
    write_config(config_dir, {"credsStore": "ecr-login"})
    helpers("ecr-login")
    register_basics(fp)
    register_helper(fp, "ecr-login")
    fp.register([fp.program("aws"), "ecr", "describe-repositories", fp.any()],
                stdout=json.dumps({"repositories": [{"repositoryName": "rag-worker",
                                                     "imageTagMutability": "MUTABLE"}]}))
    pushing = push.prepare(Runner(), plan_for(f"{ECR}/rag-worker"))
    assert pushing.helper == "ecr-login"
    assert login_calls(fp) == 0
    assert fp.call_count([fp.program("aws"), "ecr", "get-login-password", fp.any()]) == 0
    err = capsys.readouterr().err
    assert f"not logging in to {ECR}: docker gets its credentials from docker-credential-ecr-login " \
           "(credsStore in" in err
    assert TOKEN not in err
    (host, insecure, login, creds), = access.probe.asked  # the registry is asked with them
    assert host == ECR and login.username == "AWS" and login.secret.reveal() == TOKEN


def test_cred_helpers_for_the_host_beat_a_creds_store(fp, config_dir, helpers):
    write_config(config_dir, {"credsStore": "desktop", "credHelpers": {ECR: "ecr-login"}})
    helpers("ecr-login")  # desktop is not installed, and not needed for this host
    register_basics(fp)
    register_helper(fp, "ecr-login")
    fp.register([fp.program("aws"), "ecr", "describe-repositories", fp.any()],
                stdout=json.dumps({"repositories": [{"repositoryName": "rag-worker",
                                                     "imageTagMutability": "MUTABLE"}]}))
    assert push.prepare(Runner(), plan_for(f"{ECR}/rag-worker")).helper == "ecr-login"
    assert login_calls(fp) == 0


def test_another_creds_store_with_ecr_still_logs_in_through_it(fp, config_dir, helpers):
    """docker login stores the ECR password in the credsStore helper: the login is needed."""
    write_config(config_dir, {"credsStore": "pass"})
    helpers("pass")
    register_basics(fp)
    fp.register([fp.program("aws"), "ecr", "get-login-password", fp.any()], stdout="pw\n")
    fp.register([fp.program("docker"), "login", fp.any()], stdout="Login Succeeded\n")
    fp.register([fp.program("aws"), "ecr", "describe-repositories", fp.any()],
                stdout=json.dumps({"repositories": [{"repositoryName": "rag-worker",
                                                     "imageTagMutability": "MUTABLE"}]}))
    register_helper(fp, "pass")
    assert push.prepare(Runner(), plan_for(f"{ECR}/rag-worker")).helper == "pass"
    assert login_calls(fp) == 1


@pytest.mark.parametrize("registry", ["registry.example.com:5000/team/app", f"{ECR}/rag-worker"])
def test_a_creds_store_helper_that_is_not_installed_stops_before_the_build(fp, config_dir,
                                                                           registry):
    """issue 11 (b) 4: `"credsStore": "desktop"` without the helper: docker can neither read nor
    store credentials, so a hint to run `docker login` would fail the same way."""
    write_config(config_dir, {"credsStore": "desktop"})
    register_basics(fp)
    with pytest.raises(PushFailed) as err:
        push.prepare(Runner(), plan_for(registry))
    message = str(err.value)
    assert message.startswith("docker-credential-desktop, which credsStore in ")
    assert "is not installed (not on PATH)" in message and "docker login" not in message
    assert aws_calls(fp) == 0 and login_calls(fp) == 0


def test_a_helper_without_credentials_for_the_host_means_none(fp, config_dir, helpers):
    write_config(config_dir, {"credsStore": "pass"})
    helpers("pass")
    register_basics(fp)
    register_helper(fp, "pass", returncode=1, stderr="credentials not found in native keychain\n")
    push.prepare(Runner(), plan_for("registry.example.com:5000/team/app"))
    (_, _, login, creds), = access.probe.asked
    assert login is None and creds.helper == "pass"


def test_a_failing_helper_stops_with_its_reason_and_no_secret(fp, config_dir, helpers):
    write_config(config_dir, {"credsStore": "pass"})
    helpers("pass")
    register_basics(fp)
    register_helper(fp, "pass", returncode=1, stderr="gpg: decryption failed: No secret key\n")
    with pytest.raises(PushFailed, match="docker-credential-pass cannot give the credentials"):
        push.prepare(Runner(), plan_for("registry.example.com:5000/team/app"))


def test_auths_credentials_are_decoded_for_the_check(fp, config_dir):
    auth = base64.b64encode(f"ci:{TOKEN}".encode()).decode()
    write_config(config_dir, {"auths": {"https://registry.example.com:5000": {"auth": auth}}})
    register_basics(fp)
    push.prepare(Runner(), plan_for("registry.example.com:5000/team/app"))
    (_, _, login, creds), = access.probe.asked
    assert (login.username, login.secret.reveal(), creds.origin) == ("ci", TOKEN, "auths")
    assert TOKEN not in repr(login)


# --- issue 11 (e): a look-alike ECR host is no ECR --------------------------------------------


def test_a_look_alike_ecr_host_gets_no_ecr_login(fp, config_dir):
    registry = parse_registry(f"{LOOK_ALIKE}/x")
    assert not registry.is_ecr
    register_basics(fp)
    pushing = push.prepare(Runner(), plan_for(f"{LOOK_ALIKE}/x"))
    assert aws_calls(fp) == 0 and login_calls(fp) == 0
    assert access.probe.asked[0][0] == LOOK_ALIKE  # checked like every other registry
    assert pushing.helper is None


def test_a_registry_that_cannot_take_the_push_stops_the_cli_before_the_build(project, strict_fp,
                                                                            capsys, monkeypatch):
    """The pre-flight's one line (exit 1); the build never starts."""
    monkeypatch.setattr(access, "probe", lambda *a: "cannot reach the registry nohost.invalid:5000 "
                                                    "over HTTPS: no such host; ...")
    strict_fp.register([strict_fp.program("docker"), "build", "--help"], stdout="Usage\n")
    code = cli.main(["--env", "dev", "--registry", "nohost.invalid:5000/x", "--push"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("error:") == 1
    assert err.splitlines()[-1].startswith("error: cannot reach the registry nohost.invalid:5000")
    assert "nothing was built or pushed" in err.splitlines()[-1]
    assert strict_fp.call_count([strict_fp.program("docker"), "build", "-f", strict_fp.any()]) == 0


# --- issue 11 (b) 5: insecure is the daemon's decision ------------------------------------------


@pytest.mark.parametrize("host, text, insecure", [
    ("vm:5000", fakes.REGISTRY_CONFIG, True),  # vm resolves to 127.0.0.1 (conftest TEST_HOSTS)
    ("localhost:5000", fakes.REGISTRY_CONFIG, True),
    ("127.0.0.1:5000", fakes.REGISTRY_CONFIG, True),
    ("127.9.9.9", fakes.REGISTRY_CONFIG, True),
    ("registry.example.com:5000", fakes.REGISTRY_CONFIG, False),
    # --insecure-registry registry.example.com:5000: an IndexConfigs entry decides
    ("registry.example.com:5000",
     '{"IndexConfigs":{"registry.example.com:5000":{"Secure":false}},"InsecureRegistryCIDRs":[]}',
     True),
    # ... also against the CIDR: an index marked secure is secure even on loopback
    ("vm:5000", '{"IndexConfigs":{"vm:5000":{"Secure":true}},"InsecureRegistryCIDRs":["127.0.0.0/8"]}',
     False),
    # a daemon without the loopback default (insecure-registries replaced) keeps vm secure
    ("vm:5000", '{"IndexConfigs":{},"InsecureRegistryCIDRs":["10.0.0.0/8"]}', False),
    ("10.1.2.3:5000", '{"IndexConfigs":{},"InsecureRegistryCIDRs":["10.0.0.0/8"]}', True),
])
def test_insecure_registries_are_decided_as_the_daemon_does(host, text, insecure):
    assert parse_registry_config(text).is_insecure(host) is insecure


def test_the_daemons_answer_reaches_the_read_back(fp, config_dir, capsys):
    """issue 11 (b) 5: vm:5000/team/app: docker push succeeds (the daemon trusts loopback), so
    the read-back asks with --insecure and the run ends with the pinned digest."""
    plan = plan_for("vm:5000/team/app")
    register_basics(fp)
    pushing = push.prepare(Runner(), plan)
    assert pushing.insecure
    for ref in plan.refs:
        fp.register([fp.program("docker"), "push", ref],
                    stdout=f"{ref.rsplit(':', 1)[1]}: digest: {DIGEST} size: 528\n")
        fp.register([fp.program("docker"), "manifest", "inspect", "--insecure", "--verbose", ref],
                    stdout=json.dumps({"Descriptor": {"digest": DIGEST, "mediaType":
                                       "application/vnd.docker.distribution.manifest.v2+json"}}))
    context = push.Context(plan, pushing, read_docker_config(), os.environ, lambda s: None)
    digests = {}
    push.push(Runner(), context, digests)
    assert push.verify(Runner(), context, digests) == f"vm:5000/team/app@{DIGEST}"


def test_a_completed_push_is_not_failed_by_a_client_that_cannot_read_it_back(fp, capsys):
    plan = plan_for("registry.example.com:5000/team/app")
    for ref in plan.refs:
        fp.register([fp.program("docker"), "push", ref],
                    stdout=f"{ref.rsplit(':', 1)[1]}: digest: {DIGEST} size: 528\n")
        fp.register([fp.program("docker"), "manifest", "inspect", "--verbose", ref],
                    returncode=1, stderr=f"no such manifest: {ref}\n")
    context = push.Context(plan, PushPlan(plan.refs), read_docker_config(), os.environ,
                           lambda s: None)
    digests = {}
    push.push(Runner(), context, digests)
    assert push.verify(Runner(), context, digests) == f"registry.example.com:5000/team/app@{DIGEST}"
    err = capsys.readouterr().err
    assert "warning: docker push completed for every tag, but `docker manifest inspect` could " \
           f"not read {len(plan.refs)} of them back" in err
    assert f"pushed {len(plan.refs)} tags, all {DIGEST}" in err


def test_a_registry_serving_another_digest_still_fails_verification(fp):
    plan = plan_for("registry.example.com:5000/team/app")
    ref = plan.refs[0]
    fp.register([fp.program("docker"), "manifest", "inspect", "--verbose", ref],
                stdout=json.dumps({"Descriptor": {"digest": "sha256:" + "cd" * 32, "mediaType":
                                   "application/vnd.docker.distribution.manifest.v2+json"}}))
    context = push.Context(plan, PushPlan((ref,)), read_docker_config(), os.environ, lambda s: None)
    with pytest.raises(PushFailed, match="resolves to sha256:cdcd"):
        push.verify(Runner(), context, {ref: DIGEST})


def test_a_daemon_that_is_down_stops_the_pre_flight(fp):
    fp.register([fp.program("docker"), "build", "--help"], stdout="Usage\n")
    fakes.register_registry_config(fp, stdout="", returncode=1,
                                   stderr="Cannot connect to the Docker daemon at unix:///x.sock. "
                                          "Is the docker daemon running?\n")
    with pytest.raises(DockerUnavailable, match="cannot reach the Docker daemon"):
        push.prepare(Runner(), plan_for("registry.example.com:5000/team/app"))


def test_a_dry_run_prints_the_daemon_question_and_sends_no_request(fp, capsys):
    fp.allow_unregistered(False)
    push.prepare(DryRunner(), plan_for("vm:5000/team/app", dry_run=True))
    out, err = capsys.readouterr()
    assert "docker info --format '{{json .RegistryConfig}}'" in out.splitlines()
    assert "dry run: a real run would ask vm:5000/v2/ (plain HTTP allowed" in err
    assert access.probe.asked == [] and len(fp.calls) == 0


# --- the registry's answer (a real HTTP server on 127.0.0.1) -----------------------------------


class Registry(http.server.BaseHTTPRequestHandler):
    """/v2/ as a registry answers it: ``mode`` open | basic | bearer | notregistry."""

    mode = "open"
    user, password = "ci", "right"

    def log_message(self, *args):
        pass

    def _authorized(self):
        expected = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return self.headers.get("Authorization") == f"Basic {expected}"

    def do_GET(self):
        if self.mode == "notregistry":
            return self._answer(404)
        if self.path.startswith("/token"):
            return self._answer(200 if self._authorized() or "anon" in self.path else 401)
        if self.mode == "open":
            return self._answer(200)
        if self.mode == "basic":
            if self._authorized():
                return self._answer(200)
            return self._answer(401, {"WWW-Authenticate": 'Basic realm="Registry Realm"'})
        realm = f"http://{self.headers['Host']}/token"
        return self._answer(401, {"WWW-Authenticate":
                                  f'Bearer realm="{realm}",service="reg.example"'})

    def _answer(self, status, headers=None):
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def server(registry_http):
    servers = []

    def start(mode):
        handler = type("Handler", (Registry,), {"mode": mode})
        httpd = http.server.HTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        return f"127.0.0.1:{httpd.server_address[1]}"

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def creds(host, helper=None):
    return DockerConfig(path="/cfg.json").credentials(host) if helper is None else \
        DockerConfig(path="/cfg.json", creds_store=helper).credentials(host)


def login(password="right"):
    return access.Login("ci", Secret(password))


@pytest.mark.parametrize("mode, given, problem", [
    ("open", None, None),
    ("basic", login(), None),
    ("basic", None, "needs credentials and docker has none for it"),
    ("basic", login("wrong"), "refused docker's credentials for it (HTTP 401"),
    ("bearer", login(), None),
    ("bearer", login("wrong"), "token server refused docker's credentials for it (HTTP 401"),
    ("bearer", None, "needs credentials and docker has none"),
    ("notregistry", None, "answered HTTP 404, not a registry's 200 or 401"),
])
def test_the_registry_decides_whether_dockers_credentials_are_accepted(server, mode, given,
                                                                       problem):
    host = server(mode)
    answer = access.probe(parse_registry(f"{host}/team/app"), True, given, creds(host))
    if problem is None:
        assert answer is None
    else:
        assert problem in answer and "right" not in answer and "wrong" not in answer


def test_a_plain_http_registry_the_daemon_does_not_trust_is_not_reached(server):
    host = server("open")
    answer = access.probe(parse_registry(f"{host}/team/app"), False, None, creds(host))
    assert answer.startswith(f"cannot reach the registry {host} over HTTPS:")


def test_a_closed_port_is_not_reached(registry_http):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends
    host = f"127.0.0.1:{port}"
    answer = access.probe(parse_registry(f"{host}/x"), True, None, creds(host))
    assert answer.startswith(f"cannot reach the registry {host} over HTTPS (nor over plain HTTP")
    assert "refused" in answer.lower()


def test_a_host_that_does_not_resolve_is_not_reached(registry_http):
    answer = access.probe(parse_registry("nohost.invalid:5000/x"), False, None,
                          creds("nohost.invalid:5000"))
    assert answer.startswith("cannot reach the registry nohost.invalid:5000 over HTTPS:")


@pytest.mark.parametrize("header, parsed", [
    ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io"',
     ("bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io"})),
    ('Basic realm="Registry Realm"', ("basic", {"realm": "Registry Realm"})),
    ('Bearer realm="https://x/token",scope="repository:a/b:pull,push"',
     ("bearer", {"realm": "https://x/token", "scope": "repository:a/b:pull,push"})),
    ("", ("", {})),
])
def test_parse_challenge(header, parsed):
    assert access.parse_challenge(header) == parsed


def test_after_an_ecr_login_the_registry_is_asked_with_that_password(fp, config_dir):
    """The config.json read at the start predates the login: the check uses what docker login
    just stored, the ECR password."""
    register_basics(fp)
    fp.register([fp.program("aws"), "ecr", "get-login-password", fp.any()], stdout=f"{TOKEN}\n")
    fp.register([fp.program("docker"), "login", fp.any()], stdout="Login Succeeded\n")
    fp.register([fp.program("aws"), "ecr", "describe-repositories", fp.any()],
                stdout=json.dumps({"repositories": [{"repositoryName": "rag-worker",
                                                     "imageTagMutability": "MUTABLE"}]}))
    push.prepare(Runner(), plan_for(f"{ECR}/rag-worker"))
    (host, _, login, _), = access.probe.asked
    assert (host, login.username, login.secret.reveal()) == (ECR, "AWS", TOKEN)


def test_a_token_realm_that_is_no_url_is_one_line(server, monkeypatch):
    host = server("bearer")
    monkeypatch.setattr(access, "parse_challenge", lambda header: ("bearer", {"realm": "not a url"}))
    answer = access.probe(parse_registry(f"{host}/x"), True, login(), creds(host))
    assert answer.startswith(f"{host} names a token server docker cannot use:")


def test_https_spoken_to_a_plain_http_port_is_unreachable_not_a_traceback(server):
    """A plain-HTTP registry the daemon does not treat as insecure: the TLS handshake fails."""
    host = server("open")
    answer = access.probe(parse_registry(f"{host}/x"), False, login(), creds(host))
    assert answer.startswith(f"cannot reach the registry {host} over HTTPS:")
