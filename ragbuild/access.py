"""Before the build: can the push go? The registry is reachable, and accepts docker's
credentials for it, where it can tell without anything being written.

The credentials are the ones ``docker push`` sends: ``builders.DockerConfig.credentials`` finds
where docker keeps them (``credHelpers``, ``credsStore``, ``auths``), and a helper is asked the
way docker asks it (``docker-credential-<helper> get``, the host on stdin:
https://github.com/docker/docker-credential-helpers#development). They only ever live in a
``runner.Secret``. The registry is asked as docker's client asks it (the registry API's
``GET /v2/``, then the token server a ``Bearer`` challenge names, for ``pull,push`` on the
repository: https://distribution.github.io/distribution/spec/auth/token/), over HTTPS, or for
a registry the daemon treats as insecure (``builders.RegistryConfig``) also plain HTTP, as the
daemon does. TLS trusts what the daemon trusts for the host: the system's CAs and
``/etc/docker/certs.d/<host>/*.crt``.

A registry whose token server grants an anonymous token cannot say whether a push would be
allowed without one being made: that case passes. The HTTP request is a ``Runner.check``: a dry
run says what it would ask.
"""

from __future__ import annotations

import base64
import glob
import http.client
import json
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from email.message import Message
from typing import Optional

from ragbuild.builders import DOCKER_HUB_HOSTS, Credentials, DockerConfig
from ragbuild.errors import PushFailed
from ragbuild.plan import Command, Kind, Registry
from ragbuild.runner import Runner, Secret, tail

#: Seconds the registry has to answer each request.
TIMEOUT = 15.0
#: What a credential helper prints when it has nothing for the host: the protocol's fixed
#: message (docker-credential-helpers credentials/error.go ``errCredentialsNotFoundMessage``).
CREDENTIALS_NOT_FOUND = "credentials not found in native keychain"
CERTS_D = "/etc/docker/certs.d"


@dataclass(frozen=True)
class Login:
    """The user and secret docker would send (``username`` may be empty for a token)."""

    username: str
    secret: Secret
    identity_token: bool = False  # an OAuth refresh token (docker login via a browser)


def helper_get_command(helper: str) -> Command:
    """``docker-credential-<helper> get``: the host on stdin, JSON with the secret on stdout."""
    return Command((f"docker-credential-{helper}", "get"), stdin="<registry host>", check=False,
                   kind=Kind.PROBE, assume=json.dumps({"Username": "", "Secret": ""}))


def docker_login(runner: Runner, creds: Credentials, config: DockerConfig) -> Optional[Login]:
    """The credentials docker would send for ``creds.host``, or None when it has none."""
    if creds.helper:
        result = runner.run(helper_get_command(creds.helper), stdin=Secret(creds.host))
        said = (result.stdout + result.stderr).strip()
        if not result.ok:
            if CREDENTIALS_NOT_FOUND in said:
                return None
            raise PushFailed(f"docker-credential-{creds.helper} cannot give the credentials for "
                             f"{creds.host} ({creds.origin} in {creds.config_path}); docker "
                             f"push would fail the same way:\n{tail(said, 3)}")
        try:
            data = json.loads(result.stdout)
            user, secret = str(data.get("Username") or ""), str(data.get("Secret") or "")
        except (ValueError, AttributeError):
            raise PushFailed(f"docker-credential-{creds.helper} answered `get` for {creds.host} "
                             "with something that is not its JSON") from None
        if not secret:
            return None
        return Login(user, Secret(secret), identity_token=user == "<token>")
    if creds.auth_key is None:
        return None
    entry = config.auths.get(creds.auth_key) or {}
    if entry.get("identitytoken"):
        return Login("", Secret(str(entry["identitytoken"])), identity_token=True)
    if entry.get("auth"):
        try:
            user, _, password = base64.b64decode(str(entry["auth"])).decode().partition(":")
        except (ValueError, UnicodeError):
            raise PushFailed(f"auths[{creds.auth_key!r}] in {config.path} is not base64 of "
                             "user:password; run `docker login` again") from None
        return Login(user, Secret(password))
    if entry.get("username") and entry.get("password"):
        return Login(str(entry["username"]), Secret(str(entry["password"])))
    return None


def _ssl_context(host: str, insecure: bool) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if insecure:  # the daemon does not verify an insecure registry's certificate either
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    directory = os.path.join(CERTS_D, host)
    for ca in sorted(glob.glob(os.path.join(directory, "*.crt"))):
        context.load_verify_locations(cafile=ca)
    for cert in sorted(glob.glob(os.path.join(directory, "*.cert"))):
        key = cert[:-len(".cert")] + ".key"
        if os.path.exists(key):
            context.load_cert_chain(cert, key)
    return context


def _get(url: str, context: ssl.SSLContext,
         authorization: Optional[str] = None) -> tuple[int, Message]:
    """``(status, headers)`` of a GET; an HTTP error status is an answer too."""
    request = urllib.request.Request(url, headers={"User-Agent": "ragbuild (docker push check)"})
    if authorization:
        request.add_unredirected_header("Authorization", authorization)
    handlers = [urllib.request.HTTPSHandler(context=context), urllib.request.ProxyHandler()]
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(request, timeout=TIMEOUT) as response:
            return response.status, response.headers
    except urllib.error.HTTPError as answer:
        return answer.code, answer.headers


def _basic(login: Login) -> str:
    pair = f"{login.username}:{login.secret.reveal()}".encode()
    return "Basic " + base64.b64encode(pair).decode()


def parse_challenge(header: str) -> tuple:
    """``(scheme, params)`` of a ``WWW-Authenticate`` header (``Bearer realm="...",service=...``)."""
    scheme, _, rest = (header or "").strip().partition(" ")
    params = {}
    for part in _split_params(rest):
        key, eq, value = part.partition("=")
        if eq:
            params[key.strip().lower()] = value.strip().strip('"')
    return scheme.lower(), params


def _split_params(text: str) -> list:
    parts, current, quoted = [], "", False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            parts.append(current)
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current)
    return parts


def probe(registry: Registry, insecure: bool, login: Optional[Login], creds: Credentials) -> Optional[str]:
    """Ask the registry; the problem that stops the push, or None. Plain HTTP only for an
    insecure registry, after HTTPS failed (the daemon's order)."""
    host = registry.host
    api = "registry-1.docker.io" if host in DOCKER_HUB_HOSTS else host  # Docker Hub's API host
    schemes = ("https", "http") if insecure else ("https",)
    reason = ""
    for scheme in schemes:
        base = f"{scheme}://{api}"
        try:
            return _authorize(base, registry, _ssl_context(host, insecure), login, creds)
        except (OSError, http.client.HTTPException) as err:  # URLError, SSLError, timeouts
            reason = str(getattr(err, "reason", err)) or type(err).__name__
            continue
        except ValueError as err:  # a token realm that is no URL: docker could not use it
            return f"{host} names a token server docker cannot use: {err}"
    plain = " (nor over plain HTTP, which the daemon allows for it)" if insecure else ""
    return (f"cannot reach the registry {host} over HTTPS{plain}: {reason}; check the host and "
            "port in --registry, that the registry is up, and for a plain-HTTP registry that the "
            "daemon lists it in insecure-registries")


def _authorize(base: str, registry: Registry, context: ssl.SSLContext, login: Optional[Login],
               creds: Credentials) -> Optional[str]:
    host = registry.host
    status, headers = _get(f"{base}/v2/", context)
    if status == 200:
        return None
    if status != 401:
        return (f"{base}/v2/ answered HTTP {status}, not a registry's 200 or 401: is {host} a "
                "Docker registry?")
    scheme, params = parse_challenge(headers.get("WWW-Authenticate", ""))
    fix = f"run `docker login {host}`" if not creds.helper else (
        f"check what docker-credential-{creds.helper} holds for {host}")
    if scheme == "basic":
        if login is None:
            return (f"{host} needs credentials and docker has none for it ({creds.describe()}): "
                    f"{fix}")
        status, _ = _get(f"{base}/v2/", context, _basic(login))
        if status == 200:
            return None
        return (f"{host} refused docker's credentials for it (HTTP {status}; from "
                f"{creds.describe()}): {fix}")
    if scheme == "bearer" and params.get("realm"):
        query = {"scope": f"repository:{registry.path}:pull,push"}
        if params.get("service"):
            query["service"] = params["service"]
        url = f"{params['realm']}?{urllib.parse.urlencode(query)}"
        if login is not None and login.identity_token:
            return None  # a browser login's refresh token: only docker can use it
        status, _ = _get(url, context, _basic(login) if login else None)
        if status == 200:
            return None  # (an anonymous token says nothing about pushing: the push will tell)
        if login is None:
            return (f"{host} needs credentials and docker has none for it ({creds.describe()}): "
                    f"{fix}")
        return (f"{host}'s token server refused docker's credentials for it (HTTP {status}; "
                f"from {creds.describe()}): {fix}")
    return None  # a challenge docker itself would have to answer: the push will tell


def check(runner: Runner, registry: Registry, creds: Credentials, config: DockerConfig,
          insecure: bool, login: Optional[Login] = None) -> None:
    """Stop before the build (``PushFailed``, exit 1) when ``registry`` cannot be reached or
    refuses the credentials docker would send: ``login`` when this run just logged docker in
    (ECR), else what ``docker_login`` finds where docker keeps them."""
    if login is None:
        login = docker_login(runner, creds, config)
    how = "plain HTTP allowed: the daemon's insecure registry" if insecure else "HTTPS"
    problem = runner.check(f"ask {registry.host}/v2/ ({how}) whether it answers and accepts "
                           f"docker's credentials ({creds.describe()})",
                           lambda: probe(registry, insecure, login, creds), None)
    if problem:
        raise PushFailed(f"{problem} (checked before the build; nothing was built or pushed)")
    runner.report(f"registry {registry.host} answers ({how}) and takes the push's credentials "
                  f"({creds.describe()})")
