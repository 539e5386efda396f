"""Issue 11 (b) and (e): docker's own configuration read the way docker reads it (credentials:
credHelpers, then credsStore, then auths; insecure registries: the daemon's RegistryConfig), and
a push that cannot succeed found before the build (the registry answers and accepts docker's
credentials)."""

from __future__ import annotations

import base64
import http.server
import json
import os
import shutil
import ssl
import threading
import urllib.parse
from datetime import datetime

import pytest

from ragbuild.proxy import INFO_FORMAT

import fakes
from registry_fakes import DIGEST, MANIFEST, OTHER_DIGEST, FakeRegistry, serve
from ragbuild import cli, manifest, push, push_preflight, registry, verify
from ragbuild import docker_config
from ragbuild import (
    credentials,
)
from ragbuild.config import Config, Options
from ragbuild.docker_config import (
    DOCKER_HUB_KEY,
    DockerConfig,
    parse_registry_config,
    read_docker_config,
)
from ragbuild.errors import DockerUnavailable, PushFailed
from ragbuild.git import GitInfo
from ragbuild.plan import PushPlan, make_plan
from ragbuild.reference import parse_registry
from ragbuild.run.dry import DryRunner
from ragbuild.run.runner import Runner
from ragbuild.run.command import Secret

ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
LOOK_ALIKE = f"{ECR}.evil.example"
TOKEN = "helper-secret-7f3a9c"
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
    fakes.register_proxy_info(fp)
    fakes.register_registry_config(fp, stdout=registry_config)


def register_helper(fp, name, secret=TOKEN, returncode=0, stderr=""):
    fp.register(
        [fp.program(f"docker-credential-{name}"), "get"],
        returncode=returncode,
        stdout=json.dumps({"Username": "AWS", "Secret": secret}) if not returncode else "",
        stderr=stderr,
    )


def aws_calls(fp):
    return fp.call_count([fp.program("aws"), fp.any()])


def login_calls(fp):
    return fp.call_count([fp.program("docker"), "login", fp.any()])


# --- where docker keeps a host's credentials ----------------------------------------------------


def test_cred_helpers_for_the_host_then_creds_store_then_auths():
    config = DockerConfig(
        path="/c.json",
        cred_helpers={ECR: "ecr-login"},
        creds_store="desktop",
        auths={"other.example": {"auth": "eDp5"}},
    )
    assert (config.credentials(ECR).helper, config.credentials(ECR).origin) == (
        "ecr-login",
        "credHelpers",
    )
    other = config.credentials("other.example")
    assert (other.helper, other.origin) == ("desktop", "credsStore")  # credsStore beats auths
    only_auths = DockerConfig(auths={"other.example": {"auth": "eDp5"}}).credentials(
        "other.example"
    )
    assert (only_auths.helper, only_auths.origin, only_auths.auth_key) == (
        None,
        "auths",
        "other.example",
    )
    assert DockerConfig().credentials("x.example").origin == ""


def test_auths_keys_match_by_host_name_as_dockers_file_store():
    config = DockerConfig(auths={"https://registry.example:5000/v1/": {"auth": "eDp5"}})
    assert (
        config.credentials("registry.example:5000").auth_key == "https://registry.example:5000/v1/"
    )
    assert config.credentials("registry.example").auth_key is None  # another host:port


@pytest.mark.parametrize(
    "host, helper",
    [("docker.io", "pass"), ("index.docker.io", "pass"), ("registry-1.docker.io", None)],
)
def test_docker_hub_credentials_are_filed_under_the_index_server(host, helper):
    """docker asks for ``https://index.docker.io/v1/`` when a ref names Docker Hub; Hub's API
    host is another name to it (both clients, seen with a logging helper)."""
    config = DockerConfig(cred_helpers={DOCKER_HUB_KEY: "pass"})
    assert config.credentials(host).helper == helper


def test_the_config_file_is_read_for_creds_store_and_auths(config_dir):
    config = write_config(
        config_dir,
        {
            "credsStore": "desktop",
            "auths": {"a.example": {}},
            "credHelpers": {"b.example": "gcloud"},
        },
    )
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
    fp.register(
        [fp.program("aws"), "ecr", "describe-repositories", fp.any()],
        stdout=json.dumps(
            {"repositories": [{"repositoryName": "rag-worker", "imageTagMutability": "MUTABLE"}]}
        ),
    )
    pushing = push_preflight.prepare(Runner(), plan_for(f"{ECR}/rag-worker"))
    assert pushing.helper == "ecr-login"
    assert login_calls(fp) == 0
    assert fp.call_count([fp.program("aws"), "ecr", "get-login-password", fp.any()]) == 0
    err = capsys.readouterr().err
    assert (
        f"not logging in to {ECR}: docker gets its credentials from docker-credential-ecr-login "
        "(credsStore in" in err
    )
    assert TOKEN not in err
    ((host, insecure, login, creds),) = registry.probe.asked  # the registry is asked with them
    assert host == ECR and login.username == "AWS" and login.secret.reveal() == TOKEN


def test_cred_helpers_for_the_host_beat_a_creds_store(fp, config_dir, helpers):
    write_config(config_dir, {"credsStore": "desktop", "credHelpers": {ECR: "ecr-login"}})
    helpers("ecr-login")  # desktop is not installed, and not needed for this host
    register_basics(fp)
    register_helper(fp, "ecr-login")
    fp.register(
        [fp.program("aws"), "ecr", "describe-repositories", fp.any()],
        stdout=json.dumps(
            {"repositories": [{"repositoryName": "rag-worker", "imageTagMutability": "MUTABLE"}]}
        ),
    )
    assert push_preflight.prepare(Runner(), plan_for(f"{ECR}/rag-worker")).helper == "ecr-login"
    assert login_calls(fp) == 0


def test_another_creds_store_with_ecr_still_logs_in_through_it(fp, config_dir, helpers):
    """docker login stores the ECR password in the credsStore helper: the login is needed."""
    write_config(config_dir, {"credsStore": "pass"})
    helpers("pass")
    register_basics(fp)
    fp.register([fp.program("aws"), "ecr", "get-login-password", fp.any()], stdout="pw\n")
    fp.register([fp.program("docker"), "login", fp.any()], stdout="Login Succeeded\n")
    fp.register(
        [fp.program("aws"), "ecr", "describe-repositories", fp.any()],
        stdout=json.dumps(
            {"repositories": [{"repositoryName": "rag-worker", "imageTagMutability": "MUTABLE"}]}
        ),
    )
    register_helper(fp, "pass")
    assert push_preflight.prepare(Runner(), plan_for(f"{ECR}/rag-worker")).helper == "pass"
    assert login_calls(fp) == 1


@pytest.mark.parametrize("registry", ["registry.example.com:5000/team/app", f"{ECR}/rag-worker"])
def test_a_creds_store_helper_that_is_not_installed_stops_before_the_build(
    fp, config_dir, registry
):
    """issue 11 (b) 4: `"credsStore": "desktop"` without the helper: docker can neither read nor
    store credentials, so a hint to run `docker login` would fail the same way."""
    write_config(config_dir, {"credsStore": "desktop"})
    register_basics(fp)
    with pytest.raises(PushFailed) as err:
        push_preflight.prepare(Runner(), plan_for(registry))
    message = str(err.value)
    assert message.startswith("docker-credential-desktop, which credsStore in ")
    assert "is not installed (not on PATH)" in message and "docker login" not in message
    assert aws_calls(fp) == 0 and login_calls(fp) == 0


def test_a_helper_without_credentials_for_the_host_means_none(fp, config_dir, helpers):
    write_config(config_dir, {"credsStore": "pass"})
    helpers("pass")
    register_basics(fp)
    register_helper(fp, "pass", returncode=1, stderr="credentials not found in native keychain\n")
    push_preflight.prepare(Runner(), plan_for("registry.example.com:5000/team/app"))
    ((_, _, login, creds),) = registry.probe.asked
    assert login is None and creds.helper == "pass"


def test_a_failing_helper_is_ignored_as_docker_push_ignores_it(fp, config_dir, helpers, capsys):
    """docker push drops a helper's error and sends what it has without it (issue 23's
    differential: tests/e2e/test_registry_differential.py)."""
    write_config(config_dir, {"credsStore": "pass"})
    helpers("pass")
    register_basics(fp)
    register_helper(fp, "pass", returncode=1, stderr="gpg: decryption failed: No secret key\n")
    push_preflight.prepare(Runner(), plan_for("registry.example.com:5000/team/app"))
    ((_, _, login, creds),) = registry.probe.asked
    assert login is None and creds.helper is None and creds.origin == ""
    assert "docker-credential-pass failed for registry.example.com:5000" in capsys.readouterr().err


def test_auths_credentials_are_decoded_for_the_check(fp, config_dir):
    auth = base64.b64encode(f"ci:{TOKEN}".encode()).decode()
    write_config(config_dir, {"auths": {"https://registry.example.com:5000": {"auth": auth}}})
    register_basics(fp)
    push_preflight.prepare(Runner(), plan_for("registry.example.com:5000/team/app"))
    ((_, _, login, creds),) = registry.probe.asked
    assert (login.username, login.secret.reveal(), creds.origin) == ("ci", TOKEN, "auths")
    assert TOKEN not in repr(login)


# --- issue 11 (e): a look-alike ECR host is no ECR --------------------------------------------


def test_a_look_alike_ecr_host_gets_no_ecr_login(fp, config_dir):
    look_alike = parse_registry(f"{LOOK_ALIKE}/x")
    assert not look_alike.is_ecr
    register_basics(fp)
    pushing = push_preflight.prepare(Runner(), plan_for(f"{LOOK_ALIKE}/x"))
    assert aws_calls(fp) == 0 and login_calls(fp) == 0
    assert registry.probe.asked[0][0] == LOOK_ALIKE  # checked like every other registry
    assert pushing.helper is None


def test_a_registry_that_cannot_take_the_push_stops_the_cli_before_the_build(
    project, strict_fp, capsys, monkeypatch
):
    """The pre-flight's one line (exit 1); the build never starts."""
    monkeypatch.setattr(
        registry,
        "probe",
        lambda *a: "cannot reach the registry nohost.invalid:5000 over HTTPS: no such host; ...",
    )
    strict_fp.register([strict_fp.program("docker"), "build", "--help"], stdout="Usage\n")
    code = cli.main(["--env", "dev", "--registry", "nohost.invalid:5000/x", "--push"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("error:") == 1
    assert err.splitlines()[-1].startswith("error: cannot reach the registry nohost.invalid:5000")
    assert "nothing was built or pushed" in err.splitlines()[-1]
    assert strict_fp.call_count([strict_fp.program("docker"), "build", "-f", strict_fp.any()]) == 0


# --- issue 11 (b) 5: insecure is the daemon's decision ------------------------------------------


@pytest.mark.parametrize(
    "host, text, insecure",
    [
        ("vm:5000", fakes.REGISTRY_CONFIG, True),  # vm resolves to 127.0.0.1 (conftest TEST_HOSTS)
        ("localhost:5000", fakes.REGISTRY_CONFIG, True),
        ("127.0.0.1:5000", fakes.REGISTRY_CONFIG, True),
        ("127.9.9.9", fakes.REGISTRY_CONFIG, True),
        ("registry.example.com:5000", fakes.REGISTRY_CONFIG, False),
        # --insecure-registry registry.example.com:5000: an IndexConfigs entry decides
        (
            "registry.example.com:5000",
            '{"IndexConfigs":{"registry.example.com:5000":{"Secure":false}},"InsecureRegistryCIDRs":[]}',
            True,
        ),
        # ... also against the CIDR: an index marked secure is secure even on loopback
        (
            "vm:5000",
            '{"IndexConfigs":{"vm:5000":{"Secure":true}},"InsecureRegistryCIDRs":["127.0.0.0/8"]}',
            False,
        ),
        # a daemon without the loopback default (insecure-registries replaced) keeps vm secure
        ("vm:5000", '{"IndexConfigs":{},"InsecureRegistryCIDRs":["10.0.0.0/8"]}', False),
        ("10.1.2.3:5000", '{"IndexConfigs":{},"InsecureRegistryCIDRs":["10.0.0.0/8"]}', True),
    ],
)
def test_insecure_registries_are_decided_as_the_daemon_does(host, text, insecure):
    assert parse_registry_config(text).is_insecure(host) is insecure


@pytest.mark.parametrize(
    "host, always",
    [
        ("vm:5000", True),  # vm resolves to 127.0.0.1 (conftest TEST_HOSTS)
        ("localhost:5000", True),  # 127.0.0.1 and ::1
        ("127.0.0.1:5000", True),
        ("127.9.9.9", True),
        ("[::1]:5000", False),  # ::1: docker >= 28 only
        ("registry.example.com:5000", False),
        ("10.1.2.3:5000", False),
        (ECR, False),
    ],
)
def test_loopback_hosts_are_insecure_to_every_daemon(host, always):
    """moby always adds 127.0.0.0/8 to the insecure CIDRs (docker_config.DEFAULT_INSECURE_CIDRS), so
    no docker info is needed for them."""
    assert docker_config.always_insecure(host) is always
    assert (
        docker_config.always_insecure("mixed:5000", lambda name: ["127.0.0.1", "10.0.0.1"]) is False
    )


def plain(ref):
    return f"{ref.rsplit(':', 1)[1]}: digest: {DIGEST} size: 528\n"


def test_a_loopback_registry_is_reached_insecurely_without_asking_the_daemon(fp, config_dir):
    """vm:5000/team/app: loopback, so insecure to every daemon: no docker info for its
    registry configuration (only for its proxy settings); the read-back goes through the
    pre-flight's session and the run ends with the pinned digest."""
    fp.allow_unregistered(False)
    fakes.register_proxy_info(fp)
    plan = plan_for("vm:5000/team/app")
    pushing = push_preflight.prepare(Runner(), plan)
    assert pushing.insecure and pushing.session.insecure
    assert registry.probe.asked[0][:2] == ("vm:5000", True)
    for ref in plan.refs:
        fp.register([fp.program("docker"), "push", ref], stdout=plain(ref))
        serve(ref)
    context = push.Context(plan, pushing, read_docker_config(), os.environ, lambda s: None)
    digests = push.push(Runner(), context)
    assert verify.verify(Runner(), context, digests).pinned == f"vm:5000/team/app@{DIGEST}"
    assert [list(c) for c in fp.calls] == [fakes.proxy_info_argv(fp)] + [
        [fp.program("docker"), "push", ref] for ref in plan.refs
    ]  # no RegistryConfig asked


def test_a_read_back_that_fails_fails_the_verification(fp, capsys):
    """The read-back reaches the registry as the daemon does (the pre-flight's session), so a
    manifest it cannot read is a failure, not a client's different view of the registry."""
    plan = plan_for("registry.example.com:5000/team/app")
    for ref in plan.refs:
        fp.register([fp.program("docker"), "push", ref], stdout=plain(ref))
    context = push.Context(
        plan,
        PushPlan(
            plan.refs,
            session=registry.Session(plan.registry, creds("registry.example.com:5000"), None),
        ),
        read_docker_config(),
        os.environ,
        lambda s: None,
    )
    digests = push.push(Runner(), context)
    with pytest.raises(PushFailed) as err:
        verify.verify(Runner(), context, digests)
    message = str(err.value)
    assert message.count("cannot read its manifest back from the registry") == len(plan.refs)
    assert "HTTP 404 MANIFEST_UNKNOWN: manifest unknown" in message


def test_a_registry_serving_another_digest_still_fails_verification(fp):
    plan = plan_for("registry.example.com:5000/team/app")
    ref = plan.refs[0]
    serve(ref, digest=OTHER_DIGEST)
    context = push.Context(
        plan,
        PushPlan(
            (ref,),
            session=registry.Session(plan.registry, creds("registry.example.com:5000"), None),
        ),
        read_docker_config(),
        os.environ,
        lambda s: None,
    )
    with pytest.raises(
        PushFailed,
        match=f"resolves to {OTHER_DIGEST} on the registry, but the push reported {DIGEST}",
    ):
        verify.verify(Runner(), context, {ref: DIGEST})


def test_a_dry_run_says_what_it_would_ask_and_sends_nothing(fp, capsys):
    fp.allow_unregistered(False)
    push_preflight.prepare(DryRunner(), plan_for("vm:5000/team/app", dry_run=True))
    push_preflight.prepare(
        DryRunner(), plan_for("registry.example.com:5000/team/app", dry_run=True)
    )
    out, err = capsys.readouterr()
    # the daemon's proxy settings are a question of every pre-flight (printed, none started);
    # its registry configuration only when HTTPS fails, which a dry run never finds
    assert out == f"docker info --format '{INFO_FORMAT}'\n" * 2
    assert (
        "dry run: a real run would ask vm:5000/v2/ (HTTPS, else plain HTTP: a loopback "
        "registry, insecure to the daemon)" in err
    )
    assert (
        "dry run: a real run would ask registry.example.com:5000/v2/ (HTTPS; if that fails, "
        "`docker info` says whether the daemon may go insecure)" in err
    )
    assert registry.probe.asked == [] and len(fp.calls) == 0 and FakeRegistry.current.requests == []


# --- the registry's answer (a real HTTP server on 127.0.0.1) -----------------------------------

TLS = os.path.join(os.path.dirname(__file__), "tls")
SECRET_WORDS = ("right", "wrong", TOKEN, "tok-")


class Registry(http.server.BaseHTTPRequestHandler):
    """A registry's API as distribution answers it: ``mode`` open | basic | bearer |
    notregistry; ``/v2/<name>/manifests/<tag>`` serves ``MANIFEST``, ``fail`` statuses first.
    ``seen``: (path, Authorization) of every request (a class list, per server)."""

    mode = "open"
    user, password = "ci", "right"
    seen: list = []
    fail: list = []
    tokens = 0

    def log_message(self, *args):
        pass

    def _basic_ok(self):
        expected = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return self.headers.get("Authorization") == f"Basic {expected}"

    def do_GET(self):
        cls = type(self)
        cls.seen.append((self.path, self.headers.get("Authorization")))
        if self.mode == "notregistry":
            return self._answer(404)
        if self.path.startswith("/token"):
            if not (self._basic_ok() or "anon" in self.path):
                return self._answer(401)
            cls.tokens += 1
            scope = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)["scope"][0]
            return self._answer(200, body=json.dumps({"token": f"tok-{scope}"}).encode())
        if self.mode == "basic" and not self._basic_ok():
            return self._answer(401, {"WWW-Authenticate": 'Basic realm="Registry Realm"'})
        if self.mode == "bearer" and not (self.headers.get("Authorization") or "").startswith(
            "Bearer tok-repository:"
        ):
            realm = f"{'https' if self.server.tls else 'http'}://{self.headers['Host']}/token"
            return self._answer(
                401, {"WWW-Authenticate": f'Bearer realm="{realm}",service="reg.example"'}
            )
        if self.path == "/v2/":
            return self._answer(200)
        if "/manifests/" in self.path:
            if cls.fail:
                return self._answer(cls.fail.pop(0))
            return self._answer(200, {"Content-Type": DOCKER_MANIFEST}, MANIFEST)
        return self._answer(404)

    def do_POST(self):
        """The token server's OAuth2 refresh-token grant (a browser login's identity token)."""
        cls = type(self)
        form = urllib.parse.parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
        cls.seen.append((self.path, "POST " + ",".join(sorted(form))))
        if (
            form.get("refresh_token") != ["refresh-right"]
            or form.get("grant_type") != ["refresh_token"]
            or form.get("client_id") != ["docker"]
        ):
            return self._answer(401)
        cls.tokens += 1
        return self._answer(
            200, body=json.dumps({"access_token": f"tok-{form['scope'][0]}"}).encode()
        )

    def _answer(self, status, headers=None, body=b""):
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


@pytest.fixture
def server(registry_http):
    servers = []

    def start(mode, tls=False):
        handler = type("Handler", (Registry,), {"mode": mode, "seen": [], "fail": []})
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.tls = tls
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(
                os.path.join(TLS, "server.crt"), os.path.join(TLS, "server.key")
            )
            httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True).start()
        servers.append(httpd)
        start.handler = handler
        return f"127.0.0.1:{httpd.server_address[1]}"

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def creds(host, helper=None):
    return (
        DockerConfig(path="/cfg.json").credentials(host)
        if helper is None
        else DockerConfig(path="/cfg.json", creds_store=helper).credentials(host)
    )


def login(password="right"):
    return credentials.Login("ci", Secret(password))


def session_for(host, given=None, insecure=None):
    return registry.Session(parse_registry(f"{host}/team/app"), creds(host), given, insecure)


def never_asked():
    raise AssertionError("the daemon was asked")


@pytest.mark.parametrize(
    "mode, given, problem",
    [
        ("open", None, None),
        ("basic", login(), None),
        ("basic", None, "needs credentials and docker has none for it"),
        ("basic", login("wrong"), "refused docker's credentials for it (HTTP 401"),
        ("bearer", login(), None),
        ("bearer", login("wrong"), "token server refused docker's credentials for it (HTTP 401"),
        ("bearer", None, "needs credentials and docker has none"),
        ("notregistry", None, "answered HTTP 404, not a registry's 200 or 401"),
    ],
)
def test_the_registry_decides_whether_dockers_credentials_are_accepted(
    server, mode, given, problem
):
    host = server(mode)
    answer = registry.probe(session_for(host, given), never_asked)  # loopback: insecure
    if problem is None:
        assert answer is None
    else:
        assert problem in answer and not any(word in answer for word in SECRET_WORDS)


def test_the_pre_flight_asks_a_token_for_pull_and_push(server):
    host = server("bearer")
    assert registry.probe(session_for(host, login()), never_asked) is None
    token_paths = [path for path, _ in server.handler.seen if path.startswith("/token")]
    assert token_paths == ["/token?scope=repository%3Ateam%2Fapp%3Apull%2Cpush&service=reg.example"]


def test_a_plain_http_registry_the_daemon_does_not_trust_is_not_reached(server):
    host = server("open")
    asked = []
    answer = registry.probe(session_for(host, insecure=False), lambda: asked.append(1) or False)
    assert answer.startswith(f"cannot reach the registry {host} over HTTPS:")
    assert asked == [1]  # verified HTTPS failed: only then is the daemon asked


def test_a_plain_http_registry_the_daemon_trusts_is_reached_after_asking_it(server):
    host = server("open")
    session = session_for(host, insecure=False)
    asked = []
    assert registry.probe(session, lambda: asked.append(1) or True) is None
    assert asked == [1] and session.insecure and session.base == f"http://{host}"


@pytest.mark.parametrize("strict", [False, True], ids=["default", "x509-strict"])
def test_a_verified_https_registry_needs_no_answer_from_the_daemon(
    server, monkeypatch, tmp_path, strict
):
    """TLS trusted through certs.d (the CA docker trusts for the host), as the daemon does. The
    tests' CA has no keyUsage extension, which Python 3.13's default context refuses
    (VERIFY_X509_STRICT: "CA cert does not include key usage extension", seen on Debian 13) and
    the daemon accepts: under that default (x509-strict, on any Python) it is trusted too."""
    if strict:
        default = ssl.create_default_context

        def default_of_313(*args, **kwargs):
            context = default(*args, **kwargs)
            context.verify_flags |= ssl.VERIFY_X509_STRICT
            return context

        monkeypatch.setattr(ssl, "create_default_context", default_of_313)
    host = server("open", tls=True)
    certs = tmp_path / "certs.d"
    (certs / host).mkdir(parents=True)
    shutil.copy(os.path.join(TLS, "ca.crt"), certs / host / "ca.crt")
    monkeypatch.setattr(registry, "CERTS_D", str(certs))
    session = session_for(host, insecure=False)
    assert registry.probe(session, never_asked) is None
    assert session.base == f"https://{host}" and not session.insecure
    assert manifest.read_manifest(session, "dev").digest == DIGEST


def test_without_the_ca_in_certs_d_the_tls_registry_is_not_verified(server, monkeypatch, tmp_path):
    host = server("open", tls=True)
    monkeypatch.setattr(registry, "CERTS_D", str(tmp_path / "none"))
    answer = registry.probe(session_for(host, insecure=False), lambda: False)
    assert answer.startswith(f"cannot reach the registry {host} over HTTPS:")
    assert "CERTIFICATE_VERIFY_FAILED" in answer


def test_the_pre_flight_asks_the_daemon_only_for_a_host_that_is_not_loopback_and_fails_https(
    server, fp, config_dir, monkeypatch
):
    """Through push_preflight.prepare: a plain-HTTP host that is not loopback (always_insecure says no)
    gets docker info, and the daemon's answer lets the push go over plain HTTP."""
    fp.allow_unregistered(False)
    fakes.register_proxy_info(fp)
    host = server("open")
    monkeypatch.setattr(registry, "always_insecure", lambda host: False)
    fakes.register_registry_config(
        fp,
        stdout=json.dumps({"IndexConfigs": {host: {"Secure": False}}, "InsecureRegistryCIDRs": []}),
    )
    pushing = push_preflight.prepare(Runner(), plan_for(f"{host}/team/app"))
    assert pushing.insecure and pushing.session.base == f"http://{host}"
    assert [c[1] for c in fp.calls] == ["info", "info"]  # its proxies, then RegistryConfig


def test_a_daemon_that_is_down_stops_the_pre_flight(server, fp, monkeypatch):
    fakes.register_proxy_info(fp)
    host = server("open")
    monkeypatch.setattr(registry, "always_insecure", lambda host: False)
    fakes.register_registry_config(
        fp,
        stdout="",
        returncode=1,
        stderr="Cannot connect to the Docker daemon at unix:///x.sock. "
        "Is the docker daemon running?\n",
    )
    with pytest.raises(DockerUnavailable, match="cannot reach the Docker daemon"):
        push_preflight.prepare(Runner(), plan_for(f"{host}/team/app"))


def test_an_unreadable_daemon_configuration_stops_the_pre_flight(server, fp, monkeypatch):
    fakes.register_proxy_info(fp)
    host = server("open")
    monkeypatch.setattr(registry, "always_insecure", lambda host: False)
    fakes.register_registry_config(fp, stdout="not json")
    with pytest.raises(PushFailed, match="cannot read the daemon's registry configuration"):
        push_preflight.prepare(Runner(), plan_for(f"{host}/team/app"))


def test_a_closed_port_is_not_reached(registry_http):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends
    host = f"127.0.0.1:{port}"
    answer = registry.probe(session_for(host), never_asked)
    assert answer.startswith(f"cannot reach the registry {host} over HTTPS (nor over plain HTTP")
    assert "refused" in answer.lower()


def test_a_host_that_does_not_resolve_is_not_reached(registry_http):
    answer = registry.probe(session_for("nohost.invalid:5000"), lambda: False)
    assert answer.startswith("cannot reach the registry nohost.invalid:5000 over HTTPS:")


@pytest.mark.parametrize(
    "header, parsed",
    [
        (
            'Bearer realm="https://auth.docker.io/token",service="registry.docker.io"',
            ("bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io"}),
        ),
        ('Basic realm="Registry Realm"', ("basic", {"realm": "Registry Realm"})),
        (
            'Bearer realm="https://x/token",scope="repository:a/b:pull,push"',
            ("bearer", {"realm": "https://x/token", "scope": "repository:a/b:pull,push"}),
        ),
        ("", ("", {})),
    ],
)
def test_parse_challenge(header, parsed):
    assert registry.parse_challenge(header) == parsed


def test_after_an_ecr_login_the_registry_is_asked_with_that_password(fp, config_dir):
    """The config.json read at the start predates the login: the check uses what docker login
    just stored, the ECR password."""
    register_basics(fp)
    fp.register([fp.program("aws"), "ecr", "get-login-password", fp.any()], stdout=f"{TOKEN}\n")
    fp.register([fp.program("docker"), "login", fp.any()], stdout="Login Succeeded\n")
    fp.register(
        [fp.program("aws"), "ecr", "describe-repositories", fp.any()],
        stdout=json.dumps(
            {"repositories": [{"repositoryName": "rag-worker", "imageTagMutability": "MUTABLE"}]}
        ),
    )
    pushing = push_preflight.prepare(Runner(), plan_for(f"{ECR}/rag-worker"))
    ((host, _, login, _),) = registry.probe.asked
    assert (host, login.username, login.secret.reveal()) == (ECR, "AWS", TOKEN)
    assert pushing.session.login is login  # kept for the read-back: the helper is not asked again
    assert TOKEN not in repr(pushing) + repr(vars(pushing.session))


def test_the_sessions_authorization_headers_are_secrets(server):
    host = server("basic")
    session = session_for(host, login())
    assert registry.probe(session, never_asked) is None
    assert manifest.read_manifest(session, "dev").digest == DIGEST
    shown = repr(vars(session))
    assert "right" not in shown and "Basic " not in shown and "Secret('***')" in shown


def test_a_token_realm_that_is_no_url_is_one_line(server, monkeypatch):
    host = server("bearer")
    monkeypatch.setattr(
        registry, "parse_challenge", lambda header: ("bearer", {"realm": "not a url"})
    )
    answer = registry.probe(session_for(host, login()), never_asked)
    assert answer.startswith(f"{host} names a token server docker cannot use:")


def test_https_spoken_to_a_plain_http_port_is_unreachable_not_a_traceback(server):
    """A plain-HTTP registry the daemon does not treat as insecure: the TLS handshake fails."""
    host = server("open")
    answer = registry.probe(session_for(host, login(), insecure=False), lambda: False)
    assert answer.startswith(f"cannot reach the registry {host} over HTTPS:")


# --- the read-back over HTTP --------------------------------------------------------------------


def read_context(host, session, refs=("dev", "latest"), sleep=lambda s: None, **options):
    plan = plan_for(f"{host}/team/app", **options)
    refs = tuple(f"{host}/team/app:{tag}" for tag in refs)
    return push.Context(
        plan, PushPlan(refs, session=session), read_docker_config(), os.environ, sleep
    )


def test_the_read_back_takes_one_pull_token_for_every_tag(server, capsys):
    """401 -> the realm's token for pull scope (not pull,push), asked once, shared by the
    concurrent requests; the secret and the token never printed."""
    host = server("bearer")
    session = session_for(host, login())
    assert registry.probe(session, never_asked) is None  # the pre-flight: pull,push
    tags = ("dev", "latest", "git-abc1234", "dev-1", "dev-2", "dev-3")
    context = read_context(host, session, tags)
    digests = {ref: DIGEST for ref in context.push.refs}
    assert verify.verify(Runner(), context, digests).pinned == f"{host}/team/app@{DIGEST}"
    seen = server.handler.seen
    token_paths = [path for path, _ in seen if path.startswith("/token")]
    assert token_paths[1:] == ["/token?scope=repository%3Ateam%2Fapp%3Apull&service=reg.example"]
    manifest_auth = {auth for path, auth in seen if "/manifests/" in path}
    assert manifest_auth == {"Bearer tok-repository:team/app:pull"}
    assert len([path for path, _ in seen if "/manifests/" in path]) == len(tags)
    out, err = capsys.readouterr()
    assert not any(word in out + err for word in SECRET_WORDS)


def test_a_read_back_without_a_known_challenge_answers_the_401(server):
    """A session that has not seen the registry's challenge (the pre-flight faked) learns it
    from the manifest's 401, once."""
    host = server("basic")
    session = session_for(host, login())
    session.base = f"http://{host}"
    assert manifest.read_manifest(session, "dev").digest == DIGEST
    assert manifest.read_manifest(session, "latest").digest == DIGEST
    auths = [auth for path, auth in server.handler.seen]
    assert auths[0] is None and all(auth and auth.startswith("Basic ") for auth in auths[1:])
    assert len(auths) == 3


def test_refused_pull_credentials_fail_the_read_back_without_the_secret(server):
    host = server("bearer")
    session = session_for(host, login("wrong"))
    assert "refused" in registry.probe(session, never_asked)
    context = read_context(host, session)
    with pytest.raises(PushFailed) as err:
        verify.verify(Runner(), context, {ref: DIGEST for ref in context.push.refs})
    message = str(err.value)
    assert "its token server refused docker's credentials for pulling (HTTP 401" in message
    assert not any(word in message for word in SECRET_WORDS)


def test_a_503_over_http_is_retried_then_passes(server, capsys):
    host = server("open")
    session = session_for(host)
    assert registry.probe(session, never_asked) is None
    server.handler.fail.extend([503])
    delays = []
    context = read_context(host, session, ("dev",), sleep=delays.append)
    assert verify.verify(Runner(), context, {context.push.refs[0]: DIGEST}).pinned.endswith(DIGEST)
    assert delays == [2.0]
    assert "failed (HTTP 503 Service Unavailable); retrying in 2s" in capsys.readouterr().err


@pytest.mark.parametrize(
    "refresh, answer", [("refresh-right", None), ("refresh-wrong", "token server refused")]
)
def test_an_identity_token_is_exchanged_by_oauth2_for_the_pull_token(server, refresh, answer):
    """docker login through a browser stores an identity (refresh) token: the token server is
    asked with the refresh-token grant (https://distribution.github.io/distribution/spec/auth/oauth/)."""
    host = server("bearer")
    session = session_for(host, credentials.Login("", Secret(refresh), identity_token=True))
    problem = registry.probe(session, never_asked)
    if answer is None:
        assert problem is None
        assert manifest.read_manifest(session, "dev").digest == DIGEST
        posts = [auth for path, auth in server.handler.seen if auth and auth.startswith("POST")]
        assert posts == ["POST client_id,grant_type,refresh_token,scope,service"] * 2
    else:
        assert answer in problem and refresh not in problem


@pytest.mark.parametrize("status", [200, 404])
def test_an_endless_answer_is_one_line_without_reading_it_all(registry_http, status):
    """A registry (or something posing as one) that answers with a body without end: the
    read-back and the pre-flight stop reading at ``MAX_ANSWER`` bytes and say so in one line,
    instead of holding it all in memory (eight reads at once)."""
    sent = []

    class Endless(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(status)
            self.send_header("Content-Type", DOCKER_MANIFEST)
            self.end_headers()
            try:
                for _ in range(4096):  # up to 1 GiB
                    self.wfile.write(b" " * 262144)
                    sent.append(1)
            except OSError:
                pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Endless)
    threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True).start()
    try:
        session = session_for(f"127.0.0.1:{httpd.server_address[1]}", insecure=True)
        session.base = f"http://{session.api}"
        with pytest.raises(manifest.ReadFailed, match="more than 4 MiB") as failed:
            manifest.read_manifest(session, "dev")
        assert len(str(failed.value).splitlines()) == 1
        problem = registry.reach(session, never_asked)
        assert problem is not None and "more than 4 MiB" in problem
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert len(sent) < 4096


def test_a_token_realm_with_a_query_keeps_it_and_gets_the_scope_added():
    """A realm that has a query of its own (``https://auth.example/token?account=team``): docker
    adds ``scope`` and ``service`` to that query (docker/distribution registry/client/auth
    ``fetchToken``: ``reqURL.Query()`` then ``RawQuery = params.Encode()``); appending ``?...``
    made ``?account=team?scope=...``, which no token server reads as the scope."""
    asked = []

    session = session_for("registry.example.com", login())

    def request(url, headers=None, data=None):
        asked.append(url)
        return registry.Answer(200, body=b'{"token": "t"}')

    session.request = request
    session._token(
        {"realm": "https://auth.example/token?account=team", "service": "reg"},
        "repository:team/app:pull",
    )
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(asked[0]).query)
    assert query == {"account": ["team"], "scope": ["repository:team/app:pull"], "service": ["reg"]}
