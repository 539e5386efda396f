"""Why a build failed, in one line with its fix, read from what docker printed.

``classify(output, host_ca=..., pull=...)`` -> ``Cause(kind, message)`` or None. Pure: the text
is the end of the failed build's stderr that the runner kept (``Mode.WATCH``: the last
``runner.WATCH_KEEP`` characters, plain progress from a pipe or the live display from a pty,
escape sequences and all); ``host_ca`` and ``pull`` are facts of the command that ran. The kinds,
tried in this order on the failed part of the output (``failed_part``):

- ``FRONTEND``: the ``# syntax=`` (or ``BUILDKIT_SYNTAX``) frontend image cannot be fetched.
- ``BASE_IMAGE``: a ``FROM`` image cannot be fetched (its registry's name does not resolve, it
  does not answer, refuses, has no such image, or is not trusted by the engine).
- ``PROXY``: the build's downloads go through a proxy that refused them (403, 407).
- ``TLS``: the build's downloads do not trust the certificate they were shown (pip's
  ``CERTIFICATE_VERIFY_FAILED``, uv's ``UnknownIssuer``, curl's ``SSL certificate problem``).

The patterns are what the tools print, taken from real failed builds on Docker 20.10's BuildKit
(``docker build``), buildx 0.13 and Docker 26 (tests/unit/build_failures/, made by its
``make-fixtures.sh``), and from the tools' own messages for the variants (pip/urllib3, uv's
rustls, curl, OpenSSL, Go's x509). Anything else is None: the caller keeps "its output is above".

How it is tested (pytest-subprocess cannot run a command whose output is read as it comes, as
``& TEE`` in plumbum does): this module alone, on the saved real outputs and on message variants
(tests/unit/test_build_failure.py); the runner's ``Mode.WATCH`` with real short processes
(``sh -c 'echo ...; exit 1'``, through a pipe and through a pty: run/test_runner.py); the steps'
wiring with faked docker commands whose stderr is a saved output (steps/test_build.py: the faked
process's stderr is read as the real one's pipe); and real failing builds, through a pipe and
on a terminal (tests/e2e/test_build_failure.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from ragbuild.reference import familiar

TLS = "tls"
PROXY = "proxy"
FRONTEND = "frontend"
BASE_IMAGE = "base-image"

#: Where each kind's fix is explained at length (docs/troubleshooting.md's sections; the unit
#: tests check that each is there).
DOCS = "docs/troubleshooting.md"
SECTIONS = {
    TLS: f"{DOCS}#a-tls-inspecting-proxy-certificate-verify-failed",
    PROXY: f"{DOCS}#proxies",
    FRONTEND: f"{DOCS}#a--syntax-frontend-that-cannot-be-pulled",
    BASE_IMAGE: f"{DOCS}#a-base-image-the-engine-cannot-get",
}


@dataclass(frozen=True)
class Cause:
    kind: str  # TLS, PROXY, FRONTEND or BASE_IMAGE
    message: str  # one line: what failed, the evidence docker printed, and the fix


# --- the text ----------------------------------------------------------------------------------

#: A terminal's escape sequences (CSI: colours, cursor moves; OSC: titles), as docker's live
#: progress display writes them.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
#: A plain-progress line of a build step: ``#5 0.754 WARNING ...``; group 1 the step's number.
_STEP_LINE = re.compile(r"^#(\d+) ", re.M)
#: The line saying a step failed: ``#5 ERROR: executor failed running ...``.
_STEP_ERROR = re.compile(r"^#(\d+) ERROR\b.*$", re.M)
#: Where BuildKit's summary of the failed steps starts: ``------`` then `` > [2/2] RUN ...:``.
_SUMMARY = re.compile(r"^------\n > ", re.M)
#: A line of the live progress display (``[+] Building 0.6s (5/5)``, `` => [2/2] RUN ...``).
_DISPLAY_LINE = re.compile(r"^(?:\[\+\] Building |\s*=> ).*\n?", re.M)
#: A line's end as a terminal gets it (``\r\n``, ``\r\r\n`` through two ptys) or a redraw's
#: lone ``\r``.
_LINE_END = re.compile(r"\r+\n?")


def plain(text: str) -> str:
    """``text`` without escape sequences and carriage returns: what a pipe would have shown."""
    return _LINE_END.sub("\n", _ESCAPES.sub("", text))


def failed_part(text: str) -> str:
    """The part of a build's (plain) output that is about its failure: with plain progress, the
    lines of the failed steps (``#N ...`` of every ``#N ERROR``) and everything after the last
    failed step's error line (BuildKit's summary and the final error); else (the live display)
    from the summary of the failed steps on; else what follows the display's last line (or all
    of it). So a warning of a step that succeeded (pip retrying, then installing) is not taken
    for the cause, nor a step the display listed."""
    failed = list(_STEP_ERROR.finditer(text))
    if failed:
        ids = {match.group(1) for match in failed}
        lines = [
            line
            for line in text[: failed[-1].end()].splitlines()
            if (step := _STEP_LINE.match(line)) and step.group(1) in ids
        ]
        return "\n".join(lines) + text[failed[-1].end() :]
    summary = _SUMMARY.search(text)
    if summary:
        return text[summary.start() :]
    display = list(_DISPLAY_LINE.finditer(text))
    return text[display[-1].end() :] if display else text


# --- the kinds ---------------------------------------------------------------------------------

#: An image reference as BuildKit names it in a message: up to a ``:`` that ends it, or the
#: line's end (``docker.io/library/python:3.11-slim:`` is the image ``...python:3.11-slim``).
_IMAGE = r"(?P<image>\S+?):?(?=\s|$)"
#: The frontend image BuildKit could not resolve: its step (``resolve image config for``), or
#: Docker 26's final error (``failed to resolve source metadata for docker.io/docker/dockerfile``).
#: Not ``failed to solve with frontend gateway.v0`` alone: BuildKit wraps every error of a build
#: that a ``# syntax=`` frontend ran in it, a failed RUN's too.
_FRONTEND = (
    re.compile(rf"resolve image config for (?:docker-image://)?{_IMAGE}", re.M),
    re.compile(rf"failed to resolve source metadata for (?=\S*docker/dockerfile){_IMAGE}", re.M),
)
#: A FROM image BuildKit could not resolve or fetch: its step (``[internal] load metadata for
#: X``, ``[1/2] FROM X``), the final error's words (BuildKit's, or the classic builder's).
_BASE_IMAGE = (
    re.compile(rf"\[internal\] load metadata for {_IMAGE}", re.M),
    re.compile(rf"failed to resolve source metadata for {_IMAGE}", re.M),
    re.compile(rf"^(?:#\d+|\s*>) \[[^\]]*\d+/\d+\] FROM {_IMAGE}", re.M),
    re.compile(r"pull access denied for (?P<image>[^,\s]+)"),
    re.compile(r"manifest for (?P<image>\S+) not found"),
)
#: Why an image could not be fetched, first match wins: (pattern, words for the message).
_IMAGE_REASONS = (
    (
        re.compile(r"x509:|certificate signed by unknown authority|certificate verify failed"),
        "the engine does not trust its registry's TLS certificate",
    ),
    (
        re.compile(r"no such host|server misbehaving|Temporary failure in name resolution"),
        "its registry's name does not resolve on the engine's network",
    ),
    (
        re.compile(
            r"i/o timeout|connection refused|network is unreachable|no route to host|"
            r"TLS handshake timeout|context deadline exceeded|connection reset"
        ),
        "its registry does not answer the engine",
    ),
    (
        re.compile(
            r"pull access denied|insufficient_scope|unauthorized|authorization failed|"
            r"\b401\b|denied: "
        ),
        "the registry refuses it: no such repository, or it needs `docker login`",
    ),
    (re.compile(r"not found|manifest unknown"), "the registry has no such image"),
)
#: pip's (urllib3's) words for a proxy that refused or failed its connection: ``ProxyError('Cannot
#: connect to proxy.', OSError('Tunnel connection failed: 407 Proxy Authentication Required'))``.
#: One table for a failed build's cause (``_proxy`` quotes ``evidence``; ``status``: the proxy's
#: HTTP status) and doctor's probe (``probe.pip_reason`` says ``reason``; None: pip's own words
#: are not there).
PIP_PROXY = (
    re.compile(r"(?P<reason>(?P<evidence>Tunnel connection failed: (?P<status>\d{3}))[^'\"]*)"),
    re.compile(r"(?P<evidence>ProxyError\()(?:'(?P<reason>[^']+)')?"),
)
#: A proxy that refused the build's connection (``status``: its HTTP status, when said): pip's
#: (``PIP_PROXY``); uv: ``tunnel error: proxy authorization required`` (407) and ``tunnel error:
#: unsuccessful`` (any other status); curl: ``CONNECT tunnel failed, response 403`` (7.7x+) or
#: ``Received HTTP code 403 from proxy after CONNECT`` (older).
_PROXY = (
    PIP_PROXY[0],
    re.compile(r"CONNECT tunnel failed, response (?P<status>\d{3})"),
    re.compile(r"Received HTTP code (?P<status>\d{3}) from proxy after CONNECT"),
    re.compile(r"(?P<status>407) Proxy Authentication Required"),
    re.compile(r"tunnel error: proxy authorization required"),
    re.compile(r"tunnel error: unsuccessful"),
    PIP_PROXY[1],
)
#: A download that did not trust its server's certificate, in the order the evidence is
#: quoted: pip/urllib3 and Python's ssl, uv (rustls), curl, Go (x509), OpenSSL (both spellings
#: of "self-signed"), wget, apt (GnuTLS), npm/Node.
_TLS = tuple(
    re.compile(pattern)
    for pattern in (
        r"CERTIFICATE_VERIFY_FAILED",
        r"invalid peer certificate: UnknownIssuer",
        r"SSL certificate problem: [^\n]*?certificate(?: in certificate chain)?",
        r"x509: certificate signed by unknown authority",
        r"SSLCertVerificationError",
        r"certificate verify failed",
        r"self[- ]signed certificate in certificate chain",
        r"unable to get local issuer certificate",
        r"cannot verify \S+'s certificate",
        r"Certificate verification failed: The certificate is NOT trusted",
        r"SELF_SIGNED_CERT_IN_CHAIN",
        r"UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
    )
)


def classify(
    output: str, *, host_ca: Optional[str] = None, not_passed: str = "", pull: bool = False
) -> Optional[Cause]:
    """The cause of a failed build, from the end of its output, or None when it is none of the
    kinds above. ``host_ca``: the CA bundle ragbuild passed to the build as the secret
    ``ragbuild-host-ca``; None: none passed, and ``not_passed`` says why (``--no-host-ca``, the
    host's pip names none: ``HostNetwork.ca_note``); ``pull``: the build ran with ``--pull``."""
    part = failed_part(plain(output))
    return (
        _frontend(part)
        or _base_image(part, pull)
        or _proxy(part)
        or _tls(part, host_ca, not_passed)
    )


def _first(patterns: tuple[re.Pattern[str], ...], text: str) -> Optional[re.Match[str]]:
    for pattern in patterns:
        match = pattern.search(text)
        if match:
            return match
    return None


def _image_reason(text: str) -> str:
    for pattern, words in _IMAGE_REASONS:
        if pattern.search(text):
            return f" ({words})"
    return ""


def _frontend(text: str) -> Optional[Cause]:
    match = _first(_FRONTEND, text)
    if match is None:
        return None
    image = familiar(match.group("image"))
    return Cause(
        FRONTEND,
        f"the engine cannot get the Dockerfile frontend {image}, which the "
        "Dockerfile's `# syntax=` line (or BUILDKIT_SYNTAX) asks for"
        f"{_image_reason(text)}: remove that line to use the frontend built "
        f"into docker, or give the engine the image (`docker pull {image}` "
        "where its registry is reachable, or `docker load` "
        f"it); see {SECTIONS[FRONTEND]}",
    )


def _base_image(text: str, pull: bool) -> Optional[Cause]:
    match = _first(_BASE_IMAGE, text)
    if match is None:
        return None
    image = familiar(match.group("image"))
    fix = (
        f"`docker pull {image}` where its registry is reachable (or `docker load` a saved "
        "copy), or build from an image the engine has: --build-arg PYTHON_IMAGE=IMAGE"
    )
    if pull:
        fix = (
            f"--pull makes the engine ask the registry even for an image it has: drop --pull "
            f"to build from its copy, or {fix}"
        )
    return Cause(
        BASE_IMAGE,
        f"the engine cannot get the base image {image}"
        f"{_image_reason(text)}: {fix}; see {SECTIONS[BASE_IMAGE]}",
    )


def _proxy(text: str) -> Optional[Cause]:
    match = _first(_PROXY, text)
    if match is None:
        return None
    said = match.groupdict().get("evidence") or match.group(0)
    status = match.groupdict().get("status") or (
        "407" if "authorization required" in said else None
    )
    where = (
        "(--build-arg HTTPS_PROXY/HTTP_PROXY, or `proxies` in the docker client's "
        "config.json, which docker passes as those build args)"
    )
    if status == "407":
        return Cause(
            PROXY,
            f"the build's downloads go through a proxy that wants credentials "
            f"(`{said}`): give the build a proxy URL with them {where}, e.g. "
            f"http://USER:PASSWORD@HOST:PORT; see {SECTIONS[PROXY]}",
        )
    refused = "failed them" if said.startswith("ProxyError") else "refused them"
    return Cause(
        PROXY,
        f"the build's downloads go through a proxy that {refused} "
        f"(`{said}`): check the proxy the build is given {where}: have it allow "
        "the index (PyPI: pypi.org, files.pythonhosted.org), or use an index it "
        "allows (--build-arg PIP_INDEX_URL=...), or exempt hosts reached "
        f"directly with NO_PROXY; see {SECTIONS[PROXY]}",
    )


def _tls(text: str, host_ca: Optional[str], not_passed: str) -> Optional[Cause]:
    match = _first(_TLS, text)
    if match is None:
        return None
    head = f"the build's downloads do not trust the TLS certificate they were shown (`{match.group(0)}`)"
    see = f"see {SECTIONS[TLS]}"
    if host_ca is not None:
        return Cause(
            TLS,
            f"{head}, although ragbuild passed the host's CA bundle {host_ca} to "
            "the build (secret ragbuild-host-ca): that bundle does not sign it, or "
            "the failing step does not read the secret (this project's Dockerfile "
            "gives it to pip and uv); pass the bundle that does, e.g. a "
            f"TLS-inspecting proxy's CA, with --host-ca PATH; {see}",
        )
    why = f" ({not_passed})" if not_passed else ""
    fix = (
        "drop --no-host-ca, or pass the proxy's CA with --host-ca PATH"
        if "--no-host-ca" in not_passed
        else "pass the proxy's CA with --host-ca PATH"
    )
    return Cause(
        TLS,
        f"{head}; a TLS-inspecting proxy? ragbuild passed no host CA bundle to the "
        f"build{why}: {fix}; {see}",
    )
