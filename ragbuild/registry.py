"""The registry API, spoken as the daemon speaks it: before the build, can the push go (the
registry answers and accepts docker's credentials, where it can tell without anything being
written); after the push, what each tag names (the read-back, ``verify.verify``).

The credentials are the ones ``docker push`` sends: ``DockerConfig.credentials`` finds
where docker keeps them (``credHelpers``, ``credsStore``, ``auths``), and a helper is asked the
way docker asks it (``docker-credential-<helper> get``, the host on stdin:
https://github.com/docker/docker-credential-helpers#development), once per run: the pre-flight's
``Session`` keeps them for the read-back. They only ever live in a ``run.command.Secret``.

One ``Session`` holds the HTTP, TLS and auth logic of both. It reaches the registry as the
daemon does: HTTPS first, verified with the system's CAs and ``/etc/docker/certs.d/<host>/*.crt``
(client certificates ``*.cert``/``*.key`` beside them); only a registry the daemon treats as
insecure is also tried over unverified TLS and then plain HTTP (``reach``). It authenticates as
docker's client does: a ``401`` names a ``Basic`` or ``Bearer`` challenge; ``Bearer`` means a
token from the realm it names, for the scope the request needs (``pull,push`` for the pre-flight,
``pull`` for the read-back), asked with docker's credentials
(https://distribution.github.io/distribution/spec/auth/token/; an identity token from a browser
login is exchanged by OAuth2, https://distribution.github.io/distribution/spec/auth/oauth/).
A token is kept per scope for the run, shared by concurrent requests.

Every request goes the way the daemon's would (``DaemonProxy``): through the daemon's proxy
for the URL (``proxy.proxy_for``, from ``docker info``), else direct; never through the shell's
``http_proxy``/``https_proxy``, which the daemon does not read.

A registry whose token server grants an anonymous token cannot say whether a push would be
allowed without one being made: that case passes. Every request is made inside a
``Runner.check``: a dry run says what it would ask and sends nothing.
"""

from __future__ import annotations

import base64
import glob
import http.client
import json
import os
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from email.message import Message
from typing import Callable, Optional
from collections.abc import Mapping, Sequence

from ragbuild.credentials import Login, resolve_login
from ragbuild.docker_config import DOCKER_HUB_HOSTS, Credentials, DockerConfig, always_insecure
from ragbuild.errors import PushFailed
from ragbuild.reference import Registry
from ragbuild.proxy import DIRECT, ProxySettings, proxy_for, without_credentials
from ragbuild.run.runner import Runner
from ragbuild.run.command import Secret

#: Seconds the registry has to answer each request.
TIMEOUT = 15.0
CERTS_D = "/etc/docker/certs.d"
#: The most of one answer's body read (bytes): a manifest, an error or a token is far smaller.
#: The OCI distribution spec has registries accept manifests of at least 4 MiB ("Pushing
#: Manifests": https://github.com/opencontainers/distribution-spec/blob/main/spec.md).
MAX_ANSWER = 4 << 20


@dataclass(frozen=True)
class Answer:
    """A registry's answer: an HTTP error status is an answer too."""

    status: int
    headers: Message = field(default_factory=Message)
    body: bytes = b""


def ssl_context(host: str, insecure: bool) -> ssl.SSLContext:
    """TLS as the daemon has it for ``host``: the system's CAs and certs.d's, or for an insecure
    registry no verification (https://docs.docker.com/engine/security/certificates/)."""
    if insecure:  # the daemon does not verify an insecure registry's certificate either (and
        # the system's CAs, ~10 ms to load, are not needed)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    context = ssl.create_default_context()
    # Python 3.13's default adds VERIFY_X509_STRICT, which refuses a CA without the keyUsage
    # extension (what a plain `openssl req -x509` makes); the daemon's Go crypto/x509 accepts it
    context.verify_flags &= ~ssl.VERIFY_X509_STRICT
    directory = os.path.join(CERTS_D, host)
    for ca in sorted(glob.glob(os.path.join(directory, "*.crt"))):
        context.load_verify_locations(cafile=ca)
    for cert in sorted(glob.glob(os.path.join(directory, "*.cert"))):
        key = cert[: -len(".cert")] + ".key"
        if os.path.exists(key):
            context.load_cert_chain(cert, key)
    return context


class AnswerTooLarge(http.client.HTTPException):
    """An answer whose body is longer than ``MAX_ANSWER``: no registry's."""

    def __init__(self, url: str):
        super().__init__(
            f"{url} answered more than {MAX_ANSWER >> 20} MiB, which no "
            "registry's manifest, error or token is"
        )


def _body(response: http.client.HTTPResponse | urllib.error.HTTPError, url: str) -> bytes:
    """The body, at most ``MAX_ANSWER`` bytes of it (``AnswerTooLarge`` beyond)."""
    body = response.read(MAX_ANSWER + 1)
    if len(body) > MAX_ANSWER:
        raise AnswerTooLarge(url)
    return body


class DaemonProxy(urllib.request.ProxyHandler):
    """Each request (a redirect's too) through the proxy the daemon would use for its URL
    (``proxy.proxy_for``), else direct: never the shell's proxy variables, which a
    ``ProxyHandler()`` reads (and its ``no_proxy`` bypass with them). Only an ``http://`` proxy
    is used: urllib speaks neither TLS to a proxy nor SOCKS (push_preflight.daemon_proxies warns)."""

    handler_order = 100  # before the HTTP(S) handlers, as ProxyHandler

    def __init__(self, settings: ProxySettings):
        super().__init__({})
        self.settings = settings

    def http_open(self, request: urllib.request.Request) -> None:
        self._route(request)

    def https_open(self, request: urllib.request.Request) -> None:
        self._route(request)

    def _route(self, request: urllib.request.Request) -> None:
        if request.has_proxy() or getattr(request, "_tunnel_host", None):  # routed already
            return
        proxy = usable_proxy(request.full_url, self.settings)
        if proxy is None:
            return
        parts = urllib.parse.urlsplit(proxy)
        if parts.username is not None:
            pair = (
                f"{urllib.parse.unquote(parts.username)}:"
                f"{urllib.parse.unquote(parts.password or '')}"
            )
            # unredirected: a redirect elsewhere (direct) must not carry it to that server
            request.add_unredirected_header(
                "Proxy-Authorization", "Basic " + base64.b64encode(pair.encode()).decode()
            )
        request.set_proxy(parts.netloc.rpartition("@")[2], "http")


def usable_proxy(url: str, settings: ProxySettings) -> Optional[str]:
    """The daemon's proxy for ``url`` (``proxy.proxy_for``) when ragbuild can use it (an
    ``http://`` proxy), else None: direct."""
    proxy = proxy_for(url, settings)
    return proxy if proxy is not None and proxy.lower().startswith("http://") else None


def send(
    url: str,
    context: ssl.SSLContext,
    headers: Mapping[str, str],
    data: Optional[bytes] = None,
    settings: ProxySettings = DIRECT,
    method: Optional[str] = None,
) -> Answer:
    """One HTTP request (GET, or POST with ``data``; ``method``: another, e.g. PUT): the only
    place that does I/O, through
    the daemon's proxy for the URL (``settings``, ``DaemonProxy``; default: direct). Raises
    OSError (URLError, SSLError, timeouts) or HTTPException when no answer came, or
    ``AnswerTooLarge`` (an HTTPException) for a body over ``MAX_ANSWER`` bytes."""
    request = urllib.request.Request(
        url, data=data, headers={"User-Agent": "ragbuild"}, method=method
    )
    for key, value in headers.items():
        if key == "Authorization":  # not sent on to where a redirect points
            request.add_unredirected_header(key, value)
        else:
            request.add_header(key, value)
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=context), DaemonProxy(settings)
    )
    try:
        with opener.open(request, timeout=TIMEOUT) as response:
            return Answer(response.status, response.headers, _body(response, url))
    except urllib.error.HTTPError as answer:
        if not answer.fp:
            return Answer(answer.code, answer.headers, b"")
        with answer:  # closed however the body ends
            return Answer(answer.code, answer.headers, _body(answer, url))


def _basic(login: Login) -> str:
    pair = f"{login.username}:{login.secret.reveal()}".encode()
    return "Basic " + base64.b64encode(pair).decode()


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``(scheme, params)`` of a ``WWW-Authenticate`` header (``Bearer realm="...",service=...``)."""
    scheme, _, rest = (header or "").strip().partition(" ")
    params = {}
    for part in _split_params(rest):
        key, eq, value = part.partition("=")
        if eq:
            params[key.strip().lower()] = value.strip().strip('"')
    return scheme.lower(), params


def _split_params(text: str) -> list[str]:
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


class Refused(Exception):
    """The registry (or its token server) refused the credentials: ``status`` is its answer."""

    def __init__(self, status: int, token_server: bool):
        super().__init__(status)
        self.status, self.token_server = status, token_server


class Session:
    """One registry's API for this run, as the daemon reaches it: ``base`` is the
    ``scheme://host`` that answered (``reach``), ``insecure`` whether TLS goes unverified
    (and plain HTTP is allowed). Thread safe: concurrent requests share one token per scope.
    ``login``: docker's credentials, asked once (a ``Secret``, never printed). ``proxies``: the
    daemon's proxy settings (``docker info``), which every request follows."""

    def __init__(
        self,
        registry: Registry,
        creds: Credentials,
        login: Optional[Login],
        insecure: Optional[bool] = None,
        proxies: ProxySettings = DIRECT,
    ):
        self.registry, self.creds, self.login = registry, creds, login
        self.proxies = proxies
        host = registry.host
        self.api = "registry-1.docker.io" if host in DOCKER_HUB_HOSTS else host  # Docker Hub's
        #: None: insecure only if the daemon always treats the host so (loopback); ``reach``
        #: asks the daemon when verified HTTPS fails
        self.insecure = always_insecure(host) if insecure is None else insecure
        self.base = f"https://{self.api}"
        self._contexts: dict[bool, ssl.SSLContext] = {}  # by insecure
        self._lock = threading.Lock()
        self._challenge: tuple[str, dict[str, str]] = ("", {})  # the last 401's (scheme, params)
        self._authorization: dict[
            str, Secret
        ] = {}  # scope -> Secret(Authorization header value, "": none)

    def context(self) -> ssl.SSLContext:
        key = self.insecure
        if key not in self._contexts:
            self._contexts[key] = ssl_context(self.registry.host, self.insecure)
        return self._contexts[key]

    def scope(self, actions: str) -> str:
        return f"repository:{self.registry.path}:{actions}"

    def request(
        self,
        url: str,
        headers: Mapping[str, str] = {},
        data: Optional[bytes] = None,
        method: Optional[str] = None,
    ) -> Answer:
        if method is None:  # as before: a fake ``send`` without ``method`` still fits
            return send(url, self.context(), headers, data, self.proxies)
        return send(url, self.context(), headers, data, self.proxies, method=method)

    def get(
        self,
        path: str,
        actions: str,
        accept: Sequence[str] = (),
        *,
        method: Optional[str] = None,
        data: Optional[bytes] = None,
        headers: Mapping[str, str] = {},
    ) -> Answer:
        """``GET <base><path>`` authorized for ``actions`` on the repository: a 401 is answered
        once (its challenge, the token for the scope), then the request is made again; a
        ``Refused`` when the credentials are refused. Raises what ``send`` raises.
        ``method``, ``data``, ``headers``: another request the same way (``PUT`` of a
        manifest: manifest.py)."""
        scope = self.scope(actions)
        headers = {**({"Accept": ", ".join(accept)} if accept else {}), **headers}
        for attempt in (1, 2):
            with self._lock:
                authorization = self._authorization.get(scope)
                if authorization is None and self._challenge[0]:
                    authorization = self._authorize(self._challenge, scope)
            answer = self.request(
                self.base + path,
                {
                    **headers,
                    **(
                        {"Authorization": authorization.reveal()}
                        if authorization and authorization.reveal()
                        else {}
                    ),
                },
                data,
                method,
            )
            if answer.status != 401 or attempt == 2:
                return answer
            with self._lock:
                if self._authorization.get(scope) is authorization:  # no one else renewed it
                    self._challenge = parse_challenge(answer.headers.get("WWW-Authenticate", ""))
                    self._authorization.pop(scope, None)
        return answer

    def _authorize(self, challenge: tuple[str, dict[str, str]], scope: str) -> Secret:
        """The Authorization header for ``scope`` under ``challenge`` (lock held), a Secret; ""
        inside when the registry's challenge is one docker would have to answer itself."""
        scheme, params = challenge
        value = ""
        if scheme == "basic" and self.login is not None:
            value = _basic(self.login)
        elif scheme == "bearer" and params.get("realm"):
            value = f"Bearer {self._token(params, scope)}"
        self._authorization[scope] = Secret(value)
        return self._authorization[scope]

    def _token(self, params: Mapping[str, str], scope: str) -> str:
        """A token from the realm for ``scope`` with docker's credentials (anonymous without);
        ``Refused`` when the token server refuses; ValueError for a realm that is no URL."""
        realm = params["realm"]
        if urllib.parse.urlsplit(realm).scheme not in ("http", "https"):
            raise ValueError(f"unknown url type: {realm!r}")
        query = {
            "scope": scope,
            **({"service": params["service"]} if params.get("service") else {}),
        }
        login = self.login
        if login is not None and login.identity_token:  # OAuth2: the refresh token's grant,
            # as the daemon asks it (moby registry/auth.go ``AuthClientID = "docker"``)
            form = {
                **query,
                "grant_type": "refresh_token",
                "client_id": "docker",
                "refresh_token": login.secret.reveal(),
            }
            answer = self.request(
                realm,
                {"Content-Type": "application/x-www-form-urlencoded"},
                urllib.parse.urlencode(form).encode(),
            )
        else:
            answer = self.request(
                with_query(realm, query), {"Authorization": _basic(login)} if login else {}
            )
        if answer.status != 200:
            raise Refused(answer.status, token_server=True)
        try:
            data = json.loads(answer.body or b"{}")
            token = data.get("token") or data.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise Refused(answer.status, token_server=True)
        return token


def with_query(url: str, params: Mapping[str, str]) -> str:
    """``url`` with ``params`` added to the query it may already have, as docker asks a token
    realm (docker/distribution registry/client/auth/session.go ``fetchToken``: the realm's
    ``Query()``, the parameters added, ``RawQuery = params.Encode()``)."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


class Unreached(Exception):
    """No answer over any scheme allowed; the message is the last reason."""


def reach(session: Session, daemon_insecure: Callable[[], bool]) -> Optional[str]:
    """Find how the daemon reaches the registry and ask it (``GET /v2/``, pull and push on the
    repository); the problem that stops the push, or None. HTTPS verified first, as the daemon
    tries it first; only when that fails, ``daemon_insecure()`` (the daemon's ``docker info``)
    says whether unverified TLS and then plain HTTP may follow (moby registry/service.go
    ``lookupV2Endpoints``: TLS first, HTTP only for an insecure registry). A host the daemon
    always treats as insecure (``always_insecure``: loopback; ``Session.insecure``
    from the start) goes straight to that, and the daemon is not asked."""
    host = session.registry.host
    try:
        try:
            return _attempt(session)
        except Unreached:
            if session.insecure or not daemon_insecure():
                raise
            session.insecure = True
            return _attempt(session)
    except Unreached as unreached:
        plain = " (nor over plain HTTP, which the daemon allows for it)" if session.insecure else ""
        return (
            f"cannot reach the registry {host} over HTTPS{plain}: {unreached}; check the host "
            "and port in --registry, that the registry is up, and for a plain-HTTP registry "
            "that the daemon lists it in insecure-registries"
        )
    except ValueError as err:  # a token realm that is no URL: docker could not use it
        return f"{host} names a token server docker cannot use: {err}"


def _attempt(session: Session) -> Optional[str]:
    """``_authorize`` over each scheme the session allows, in the daemon's order; Unreached."""
    reason = ""
    for scheme in ("https", "http") if session.insecure else ("https",):
        session.base = f"{scheme}://{session.api}"
        try:
            return _authorize(session)
        except (OSError, http.client.HTTPException) as err:  # URLError, SSLError, timeouts
            reason = network_reason(err)
    raise Unreached(reason)


def network_reason(err: Exception) -> str:
    """Why no answer came, in words ``push.classify_failure`` reads (a dropped connection is
    docker's "EOF")."""
    reason = getattr(err, "reason", err)
    if isinstance(reason, http.client.RemoteDisconnected):
        return "the registry closed the connection without answering (EOF)"
    return str(reason) or type(reason).__name__


def _authorize(session: Session) -> Optional[str]:
    host, creds = session.registry.host, session.creds
    base = session.base
    try:
        answer = session.get("/v2/", "pull,push")
    except Refused as refused:
        status, token_server = refused.status, refused.token_server
    else:
        if answer.status == 200:
            return None  # (an anonymous token says nothing about pushing: the push will tell)
        if answer.status != 401:
            return (
                f"{base}/v2/ answered HTTP {answer.status}, not a registry's 200 or 401: is "
                f"{host} a Docker registry?"
            )
        scheme, params = parse_challenge(answer.headers.get("WWW-Authenticate", ""))
        if scheme not in ("basic", "bearer") or scheme == "bearer" and not params.get("realm"):
            return None  # a challenge docker itself would have to answer: the push will tell
        status, token_server = answer.status, scheme == "bearer"
    fix = (
        f"run `docker login {host}`"
        if not creds.helper
        else (f"check what docker-credential-{creds.helper} holds for {host}")
    )
    if session.login is None:
        return f"{host} needs credentials and docker has none for it ({creds.describe()}): {fix}"
    who = f"{host}'s token server" if token_server else host
    return (
        f"{who} refused docker's credentials for it (HTTP {status}; from {creds.describe()}): {fix}"
    )


def probe(session: Session, daemon_insecure: Callable[[], bool]) -> Optional[str]:
    """The pre-flight's question (``reach``): the problem that stops the push, or None."""
    return reach(session, daemon_insecure)


def check(
    runner: Runner,
    registry: Registry,
    creds: Credentials,
    config: DockerConfig,
    daemon_insecure: Callable[[], bool],
    login: Optional[Login] = None,
    proxies: ProxySettings = DIRECT,
) -> Session:
    """Stop before the build (``PushFailed``, exit 1) when ``registry`` cannot be reached or
    refuses the credentials docker would send: ``login`` when this run just logged docker in
    (ECR), else what ``docker_login`` finds where docker keeps them. Returns the ``Session``
    that reached it, for the read-back. ``daemon_insecure``: the daemon's answer, asked only
    when verified HTTPS fails (``reach``). ``proxies``: the daemon's proxy settings, which the
    session's requests follow (``DaemonProxy``)."""
    if login is None:
        creds, login = resolve_login(runner, creds, config)
    session = Session(registry, creds, login, proxies=proxies)
    how = (
        "HTTPS, else plain HTTP: a loopback registry, insecure to the daemon"
        if session.insecure
        else "HTTPS; if that fails, `docker info` says whether the daemon may go insecure"
    )
    how += route(session, session.base + "/v2/")
    problem = runner.check(
        f"ask {registry.host}/v2/ ({how}) whether it answers and accepts "
        f"docker's credentials ({creds.describe()})",
        lambda: probe(session, daemon_insecure),
        None,
    )
    if problem:
        raise PushFailed(f"{problem} (checked before the build; nothing was built or pushed)")
    runner.report(
        f"registry {registry.host} answers ({describe(session)}) and takes the push's "
        f"credentials ({creds.describe()})"
    )
    return session


def describe(session: Session) -> str:
    """How the session reaches the registry, for messages."""
    if session.base.startswith("http://"):
        how = "plain HTTP: an insecure registry of the daemon"
    else:
        how = (
            "HTTPS, unverified: an insecure registry of the daemon" if session.insecure else "HTTPS"
        )
    return how + route(session, session.base + "/v2/")


def route(session: Session, url: str) -> str:
    """``"; through the daemon's proxy http://proxy:3128"`` when a request for ``url`` goes
    through one (credentials not shown), else ""."""
    proxy = usable_proxy(url, session.proxies)
    return f"; through the daemon's proxy {without_credentials(proxy)}" if proxy else ""
