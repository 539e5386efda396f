"""Which credentials a push uses, and whether the daemon talks plain HTTP to a registry: ragbuild's
prediction (ragbuild/docker_config.py ``DockerConfig.credentials``, ragbuild/credentials.py
``docker_login``; ``always_insecure`` and ``RegistryConfig.is_insecure`` on the daemon's
``docker info``) against what the leg's real ``docker push`` does, on generated cases (issue 23).

The registry is a recording one this module starts (``Recorder``): it answers every ``/v2/``
request with a Bearer challenge whose token endpoint refuses, and writes down each request
that reached it over plain HTTP, with the credentials it carried (Basic ``user:password``, an
OAuth ``password`` grant, a ``refresh_token`` grant, or none). So a push ends at once, without
sending a layer, and leaves behind what the daemon sent and whether it spoke plain HTTP.
Credential helpers are small scripts (``docker-credential-rb*``) that log the server URL they
were asked for and answer in their own way (credentials, an identity token, "not found", an
error).

Credentials: each case is a config.json (``auths`` keys in the forms docker accepts: bare host,
host:port, ``http://``, ``https://.../v1/``, trailing paths, another case or port; entries with
``auth``, ``username``/``password``, ``identitytoken``, or empty; ``credsStore``; ``credHelpers``
keyed by those forms, an empty helper name included) and a reference on a loopback name the
daemon reaches (``localhost``, ``127.0.0.1``, the ECR-named host the harness maps to
127.0.0.1, upper case).
Insecure: each case is a host (loopback names and addresses, ``[::1]``, the docker bridges'
addresses) where the recorder listens; a plain HTTP request that reached it means the daemon
took the host as insecure.

Seed ``RAGBUILD_REGISTRY_SEED`` (default 23), ``RAGBUILD_REGISTRY_CASES`` cases per rule
(default 60); a failure prints the seed, each failing case and both answers.
"""

from __future__ import annotations

import base64
import errno
import http.server
import json
import os
import random
import socket
import stat
import subprocess
import threading
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest

from .support import BASE_IMAGE, COMMAND_TIMEOUT

pytestmark = [pytest.mark.e2e, pytest.mark.every_leg]

SEED = int(os.environ.get("RAGBUILD_REGISTRY_SEED", "23"))
COUNT = int(os.environ.get("RAGBUILD_REGISTRY_CASES", "60"))
JOBS = int(os.environ.get("RAGBUILD_REGISTRY_JOBS", "4"))  # pushes at a time

# --- the recording registry ------------------------------------------------------------------


class Recorder:
    """A registry that records and refuses: one listener per address, all on one port."""

    def __init__(self, addresses):
        self.requests: list = []  # (repository or "", kind, value)
        self.lock = threading.Lock()
        self.servers = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def handle_one_request(self):
                # a TLS ClientHello on this plain-HTTP port: answer as a Go registry does (an
                # HTTP status line), which is what the daemon's fallback to HTTP looks for
                if self.rfile.peek(1)[:1] == b"\x16":
                    self.wfile.write(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
                    self.close_connection = True
                    return
                super().handle_one_request()

            def _repository(self, query: str) -> str:
                scope = urllib.parse.parse_qs(query).get("scope", [""])[0]
                return scope.split(":")[1] if scope.count(":") >= 2 else ""

            def _record(self, kind: str, value, repository: str):
                with recorder.lock:
                    recorder.requests.append((repository, kind, value))

            def _challenge(self):
                host = self.headers.get("Host", "")
                self.send_response(401)
                self.send_header(
                    "WWW-Authenticate", f'Bearer realm="http://{host}/token",service="recorder"'
                )
                self.send_header("Content-Type", "application/json")
                body = b'{"errors":[{"code":"UNAUTHORIZED","message":"recorder"}]}'
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _refuse(self):
                body = b'{"errors":[{"code":"UNAUTHORIZED","message":"recorder refuses"}]}'
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _basic(self):
                header = self.headers.get("Authorization", "")
                if header.startswith("Basic "):
                    user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                    return ("basic", user, password)
                return None

            def _v2(self):
                path = self.path.split("?")[0][len("/v2/") :]
                for marker in ("/blobs/", "/manifests/", "/tags/"):
                    path = path.split(marker)[0]
                repository = path.strip("/")
                self._record("plain-http", self.path, repository)
                self._challenge()

            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                if url.path == "/token":
                    self._record(
                        "token", self._basic() or ("anonymous",), self._repository(url.query)
                    )
                    self._refuse()
                else:
                    self._v2()

            do_HEAD = do_GET

            def do_POST(self):
                url = urllib.parse.urlsplit(self.path)
                if url.path != "/token":
                    self._v2()
                    return
                length = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                grant = form.get("grant_type", [""])[0]
                if grant == "refresh_token":
                    got = ("refresh", form.get("refresh_token", [""])[0])
                elif grant == "password":
                    got = ("basic", form.get("username", [""])[0], form.get("password", [""])[0])
                else:
                    got = self._basic() or ("anonymous",)
                scope = form.get("scope", [""])[0]
                repository = scope.split(":")[1] if scope.count(":") >= 2 else ""
                self._record("token", got, repository)
                self._refuse()

            do_PUT = do_PATCH = do_POST

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

        class Server6(Server):
            address_family = socket.AF_INET6

        #: the addresses it listens on: one the machine does not have (no IPv6, no such
        #: bridge) is left out, and so are the cases that need it
        self.addresses: list = []
        for _ in range(20):
            port = random.randint(20000, 60000)
            try:
                for address in addresses:
                    kind = Server6 if ":" in address else Server
                    try:
                        self.servers.append(kind((address, port), Handler))
                        self.addresses.append(address)
                    except OSError as err:
                        if err.errno not in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                            raise
                break
            except OSError:
                for server in self.servers:
                    server.server_close()
                self.servers, self.addresses = [], []
        else:
            raise RuntimeError("no free port on every address")
        self.port = port
        for server in self.servers:
            threading.Thread(target=server.serve_forever, daemon=True).start()

    def close(self):
        for server in self.servers:
            server.shutdown()
            server.server_close()

    def seen(self, repository: str) -> list:
        with self.lock:
            return [(kind, value) for repo, kind, value in self.requests if repo == repository]


#: Where the recorder listens: loopback (several addresses of 127.0.0.0/8, ::1) and the docker
#: bridges of the harness's engines (the machine's own addresses, reached over loopback).
ADDRESSES = ("127.0.0.1", "127.0.0.2", "127.1.2.3", "127.255.255.254", "::1")


@pytest.fixture(scope="module")
def bridges(e2e_env) -> dict:
    """``{bridge}`` and ``{remote bridge}``: the engines' bridge addresses (harness env)."""
    return {
        "{bridge}": e2e_env.get("E2E_BRIDGE_IP", ""),
        "{remote bridge}": e2e_env.get("E2E_REMOTE_BRIDGE_IP", ""),
    }


@pytest.fixture(scope="module")
def recorder(bridges):
    found = Recorder(ADDRESSES + tuple(address for address in bridges.values() if address))
    yield found
    found.close()


# --- credential helpers ----------------------------------------------------------------------

#: helper name -> what it answers: credentials of its own, an identity token, not found, an error.
HELPERS = {
    "rbone": "answer",
    "rbtwo": "answer",
    "rbtok": "token",
    "rbnone": "none",
    "rbfail": "fail",
}

HELPER = """#!/usr/bin/python3
import json, os, sys
name, behaviour, log = {name!r}, {behaviour!r}, {log!r}
if sys.argv[1:] != ["get"]:
    sys.exit(0)
url = sys.stdin.read().strip()
with open(log, "a") as out:
    out.write(name + " " + url + " " + os.environ.get("DOCKER_CONFIG", "") + "\\n")
if behaviour == "answer":
    print(json.dumps({{"ServerURL": url, "Username": "user-" + name, "Secret": "secret-" + name}}))
elif behaviour == "token":
    print(json.dumps({{"ServerURL": url, "Username": "<token>", "Secret": "token-" + name}}))
elif behaviour == "none":
    print("credentials not found in native keychain")
    sys.exit(1)
else:
    print("the helper broke")
    sys.exit(1)
"""


@pytest.fixture(scope="module")
def helpers(tmp_path_factory) -> Path:
    """A directory of credential helpers (put first on PATH); their log is ``log`` in it."""
    where = tmp_path_factory.mktemp("helpers")
    for name, behaviour in HELPERS.items():
        path = where / f"docker-credential-{name}"
        path.write_text(HELPER.format(name=name, behaviour=behaviour, log=str(where / "log")))
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return where


# --- the cases -------------------------------------------------------------------------------

#: Names a push can reach the recorder by (all resolve to 127.0.0.1 here, /etc/hosts).
#: The harness maps it to 127.0.0.1 in /etc/hosts (harness.sh); upper case resolves the same.
ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
ECR_MIXED = "123456789012.DKR.ECR.us-east-1.amazonaws.com"

CRED_NAMES = ["localhost", "127.0.0.1", ECR, "LOCALHOST", ECR_MIXED, "Localhost"]


def key_forms(name: str, port: int) -> list:
    """The ``auths``/``credHelpers`` keys a user could have written for (or near) ``name:port``."""
    host = f"{name}:{port}"
    return [
        host,
        host,
        f"http://{host}",
        f"https://{host}",
        f"https://{host}/v1/",
        f"https://{host}/v2/",
        f"http://{host}/some/path",
        f"HTTPS://{host}",
        host.upper(),
        host.lower(),
        name,
        f"https://{name}",
        f"{name}:{port + 1}",
        f"other.example:{port}",
        "https://index.docker.io/v1/",
        "docker.io",
        f"{ECR if name != ECR else 'localhost'}:{port}",
    ]


def entry(rng: random.Random, label: str) -> dict:
    roll = rng.random()
    if roll < 0.55:
        return {"auth": base64.b64encode(f"user-{label}:pass-{label}".encode()).decode()}
    if roll < 0.65:
        return {"username": f"user-{label}", "password": f"pass-{label}"}
    if roll < 0.75:
        return {"identitytoken": f"token-{label}"}
    if roll < 0.85:
        return {
            "auth": base64.b64encode(f"user-{label}:pass-{label}".encode()).decode(),
            "identitytoken": f"token-{label}",
        }
    return {}


@dataclass
class CredCase:
    index: int
    name: str  # the registry name of the reference
    config: dict = field(default_factory=dict)
    seed: int = SEED

    def describe(self, port: int) -> str:
        return (
            f"case {self.index} (RAGBUILD_REGISTRY_SEED={self.seed}): push to "
            f"{self.name}:{port}; config.json={json.dumps(self.config)}"
        )


#: The port the cases are generated with; the recorder's port replaces it when written.
PORT = 40000


def generate_credentials(index: int, seed: int = SEED) -> CredCase:
    rng = random.Random(f"cred-{seed}-{index}")
    case = CredCase(index, rng.choice(CRED_NAMES), seed=seed)
    forms = key_forms(case.name, PORT)
    exact = f"{case.name}:{PORT}"
    auths: dict = {}
    for n in range(rng.randint(0, 4)):
        auths[rng.choice(forms)] = entry(rng, f"a{n}")
    # docker takes an exact key first, else any key whose host name is the host: which one of
    # several is Go's map order (random), so a case keeps at most one of those
    if exact not in auths:
        near = [key for key in auths if _hostname(key) == exact]
        for key in near[1:]:
            del auths[key]
    if auths or rng.random() < 0.5:
        case.config["auths"] = auths
    if rng.random() < 0.35:
        case.config["credsStore"] = rng.choice([*HELPERS, ""])
    if rng.random() < 0.45:
        case.config["credHelpers"] = {
            rng.choice(forms): rng.choice([*HELPERS, "", "rbone"]) for _ in range(rng.randint(1, 2))
        }
    return case


#: Configs kept as cases whatever the seed: those that found a disagreement once (a helper that
#: fails: docker sends the auths entry; an empty credHelpers name: credsStore is off for the
#: host; an upper-case scheme: the 28 client parses the key as a URL).
PINNED = [
    ("localhost", {"credsStore": "rbfail", "auths": {f"localhost:{PORT}": {"auth": "dTE6cDE="}}}),
    (
        ECR,
        {
            "credHelpers": {f"{ECR}:{PORT}": "rbfail"},
            "auths": {f"https://{ECR}:{PORT}/v1/": {"auth": "dTI6cDI="}},
        },
    ),
    (
        "localhost",
        {
            "credsStore": "rbone",
            "credHelpers": {f"localhost:{PORT}": ""},
            "auths": {f"localhost:{PORT}": {"auth": "dTM6cDM="}},
        },
    ),
    (ECR, {"credsStore": "rbtok", "credHelpers": {f"{ECR}:{PORT}": ""}}),
    (ECR, {"auths": {f"HTTPS://{ECR}:{PORT}": {"auth": "dTQ6cDQ="}}}),
    ("localhost", {"auths": {f"ftp://localhost:{PORT}/x": {"auth": "dTU6cDU="}}}),
    # null is "" to docker's JSON decoding: no helper, not even credsStore, for that host
    (
        "localhost",
        {
            "credsStore": "rbone",
            "credHelpers": {f"localhost:{PORT}": None},
            "auths": {f"localhost:{PORT}": {"auth": "dTY6cDY="}},
        },
    ),
]


def _hostname(key: str) -> str:
    for scheme in ("http://", "https://"):
        if key.startswith(scheme):
            key = key[len(scheme) :]
    return key.split("/", 1)[0]


def written(config: dict, port: int) -> dict:
    """The config with the recorder's port in place of ``PORT``."""
    return json.loads(
        json.dumps(config).replace(str(PORT), str(port)).replace(str(PORT + 1), str(port + 1))
    )


# --- the two sides ---------------------------------------------------------------------------


def predicted_credentials(config_dir: Path, host: str, helpers: Path, client: int) -> tuple:
    """(the helper ragbuild says docker asks, and for which host, or None; what ragbuild says
    docker sends for ``host``: ("anonymous",), ("basic", user, password), ("refresh", token),
    or ("error", message))."""
    from plumbum import local

    from ragbuild.credentials import docker_login
    from ragbuild.docker_config import read_docker_config
    from ragbuild.errors import RagbuildError
    from ragbuild.run.runner import Runner
    import io

    config = read_docker_config({"DOCKER_CONFIG": str(config_dir)})
    creds = config.credentials(host, client)
    asked = (creds.helper, creds.host) if creds.helper else None
    with local.env(PATH=f"{helpers}{os.pathsep}{local.env['PATH']}", DOCKER_CONFIG=""):
        try:
            login = docker_login(Runner(log=io.StringIO()), creds, config)
        except RagbuildError as err:
            return asked, ("error", str(err).splitlines()[0])
    if login is None:
        return asked, ("anonymous",)
    if login.identity_token:
        return asked, ("refresh", login.secret.reveal())
    return asked, ("basic", login.username, login.secret.reveal())


def push(docker, leg, ref: str, config_dir: Optional[Path], helpers: Optional[Path]) -> str:
    """``docker push ref`` with the case's docker config; returns what docker said."""
    env = docker.runner.environ({"DOCKER_CONTEXT": None, "DOCKER_HOST": leg.host or None})
    if config_dir is not None:
        env["DOCKER_CONFIG"] = str(config_dir)
    if helpers is not None:
        env["PATH"] = f"{helpers}{os.pathsep}{env['PATH']}"
    tagged = subprocess.run(
        [docker.binary, "tag", BASE_IMAGE, ref], env=env, capture_output=True, text=True
    )
    if tagged.returncode != 0:
        return f"tag refused: {tagged.stderr.strip()}"
    try:
        done = subprocess.run(
            [docker.binary, "push", ref],
            env=env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=COMMAND_TIMEOUT,
        )
        return (done.stdout + done.stderr).strip()
    finally:
        subprocess.run([docker.binary, "image", "rm", ref], env=env, capture_output=True)


def test_the_credentials_a_push_uses(docker, leg, recorder, helpers, token, tmp_path):
    cases = [generate_credentials(index) for index in range(COUNT)]
    cases += [CredCase(COUNT + n, name, config, seed=-1) for n, (name, config) in enumerate(PINNED)]
    port = recorder.port
    client = docker.major()
    guesses, dirs = {}, {}
    for case in cases:
        where = tmp_path / f"cred-{case.index}"
        where.mkdir()
        (where / "config.json").write_text(json.dumps(written(case.config, port)))
        dirs[case.index] = where
        guesses[case.index] = predicted_credentials(where, f"{case.name}:{port}", helpers, client)

    def repository(case) -> str:
        return f"diff-{token}-{leg.name}-c{case.index}"

    with ThreadPoolExecutor(max_workers=JOBS) as pool:
        said = dict(
            zip(
                [case.index for case in cases],
                pool.map(
                    lambda case: push(
                        docker,
                        leg,
                        f"{case.name}:{port}/{repository(case)}:t",
                        dirs[case.index],
                        helpers,
                    ),
                    cases,
                ),
            )
        )
    # which helper docker's CLI asked, for which server URL: the helpers log it with the
    # DOCKER_CONFIG they ran under (the case's; ragbuild's own runs above had none)
    log = (helpers / "log").read_text().splitlines() if (helpers / "log").exists() else []
    helper_asked: dict = {}
    for line in log:
        name, url, config = (line.split(" ", 2) + ["", ""])[:3]
        if config:
            helper_asked.setdefault(config, []).append((name, url))
    failures = []
    for case in cases:
        asked, guess = guesses[case.index]
        tokens = [value for kind, value in recorder.seen(repository(case)) if kind == "token"]
        actual = tokens[0] if tokens else ("error", said[case.index].splitlines()[-1:])
        docker_asked = helper_asked.get(str(dirs[case.index]), [])
        if docker_asked != ([asked] if asked else []):
            failures.append(
                f"{case.describe(port)}\n  ragbuild: docker asks {asked or 'no helper'}"
                f"\n  docker asked: {docker_asked}"
            )
        if guess[0] == "error" and actual[0] == "error":
            continue
        if guess != actual:
            failures.append(
                f"{case.describe(port)}\n  ragbuild: {guess}\n  docker sent: {actual}"
                f"\n  docker said: {said[case.index][-300:]!r}"
            )
    assert not failures, (
        f"{len(failures)} of {len(cases)} cases disagree "
        f"(RAGBUILD_REGISTRY_SEED={SEED}, leg {leg.name}):\n" + "\n".join(failures)
    )


# --- insecure --------------------------------------------------------------------------------

#: Registry names that reach the recorder: names resolving to loopback (/etc/hosts), loopback
#: and bridge addresses; upper case, ``[::1]``.
INSECURE_NAMES = [
    "localhost",
    "LOCALHOST",
    "Localhost",
    ECR_MIXED,
    ECR,
    "127.0.0.1",
    "127.0.0.2",
    "127.1.2.3",
    "127.255.255.254",
    "[::1]",
    "{bridge}",
    "{remote bridge}",
]


def is_address(name: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(name.strip("[]"))
        return True
    except ValueError:
        return False


def generate_insecure(index: int, seed: int = SEED) -> str:
    return random.Random(f"insecure-{seed}-{index}").choice(INSECURE_NAMES)


def test_whether_the_daemon_takes_a_registry_as_insecure(
    docker, leg, recorder, bridges, token, tmp_path
):
    from ragbuild.docker_config import always_insecure, parse_registry_config
    from ragbuild.push_preflight import REGISTRY_INFO_FORMAT

    info = docker.quiet("info", "--format", REGISTRY_INFO_FORMAT)
    assert info.returncode == 0, info.stderr
    daemon = parse_registry_config(info.stdout)
    port = recorder.port
    names = [bridges.get(name, name) for name in map(generate_insecure, range(COUNT))]
    listening = {f"[{a}]" if ":" in a else a for a in recorder.addresses}
    names = [  # a case whose address the machine does not have is left out
        name for name in names if name and (not is_address(name) or name in listening)
    ]
    empty = tmp_path / "empty-config"
    empty.mkdir()

    def repository(index) -> str:
        return f"diff-{token}-{leg.name}-i{index}"

    with ThreadPoolExecutor(max_workers=JOBS) as pool:
        said = list(
            pool.map(
                lambda index: push(
                    docker, leg, f"{names[index]}:{port}/{repository(index)}:t", empty, None
                ),
                range(len(names)),
            )
        )
    failures, compared = [], 0
    for index, name in enumerate(names):
        host = f"{name}:{port}"
        if said[index].startswith("tag refused") and name.startswith("["):
            continue  # an IPv6 registry is not a valid reference before docker 23
        compared += 1
        plain = any(
            kind == "plain-http" or kind == "token" for kind, _ in recorder.seen(repository(index))
        )
        guess = daemon.is_insecure(host)
        always = always_insecure(host)
        if guess != plain or (always and not plain):
            failures.append(
                f"case {index} (RAGBUILD_REGISTRY_SEED={SEED}): {host}: ragbuild "
                f"is_insecure={guess}, always_insecure={always}; the daemon "
                f"{'spoke' if plain else 'did not speak'} plain HTTP to it; docker said: "
                f"{said[index][-300:]!r}"
            )
    assert compared >= 50 or COUNT < 60, f"only {compared} cases compared"
    assert not failures, (
        f"{len(failures)} of {compared} cases disagree (RAGBUILD_REGISTRY_SEED={SEED}, leg "
        f"{leg.name}, RegistryConfig {info.stdout.strip()}):\n" + "\n".join(failures)
    )


#: Docker Hub's names and its API host, in the cases docker reads them: which ``auths`` key or
#: helper server URL docker uses for each (a push asks the helper before it goes anywhere).
HUB_NAMES = ("docker.io", "index.docker.io", "registry-1.docker.io", "Docker.io")


def test_the_key_docker_files_docker_hubs_credentials_under(docker, helpers, tmp_path):
    """``credentials_key``: docker asks a credential helper for ``https://index.docker.io/v1/``
    when the ref names Docker Hub, and for the host itself otherwise (no network needed: the
    helper is asked first; the push then fails, and no image leaves the machine)."""
    from ragbuild.docker_config import credentials_key

    config = tmp_path / "config"
    config.mkdir()
    (config / "config.json").write_text(json.dumps({"credsStore": "rbnone"}))
    env = {
        **os.environ,
        "DOCKER_CONFIG": str(config),
        "PATH": f"{helpers}{os.pathsep}{os.environ['PATH']}",
    }
    log = helpers / "log"
    wrong = []
    for host in HUB_NAMES:
        ref = f"{host}/ragbuild-e2e/hub-key:{docker.major()}"
        tagged = subprocess.run(
            [docker.binary, "tag", "python:3.11-slim", ref], env=env, capture_output=True, text=True
        )
        if tagged.returncode != 0:  # Docker.io: docker refuses an upper-case name
            assert "invalid reference format" in tagged.stderr, tagged.stderr
            continue
        before = log.read_text() if log.exists() else ""
        try:
            subprocess.run(
                [docker.binary, "push", ref],
                env=env,
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                timeout=COMMAND_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            pass  # the helper was asked before the push went anywhere
        finally:
            subprocess.run([docker.binary, "image", "rm", ref], env=env, capture_output=True)
        asked = [line.split()[1] for line in log.read_text()[len(before) :].splitlines()]
        if asked[:1] != [credentials_key(host)]:
            wrong.append(f"{host}: docker asked {asked}, ragbuild predicts {credentials_key(host)}")
    assert not wrong, "\n".join(wrong)
