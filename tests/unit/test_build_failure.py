"""build_failure: why a build failed, from what docker printed.

The fixtures (build_failures/*.txt) are the output of real failed builds on the harness's
engines, made by build_failures/make-fixtures.sh (its header says how): Docker 20.10's BuildKit
(``legacy``), buildx 0.13 on the same daemon (``modern``), Docker 26 (``d26``), plain progress
from a pipe and the live display from a terminal (``-tty``). The variants below are the messages
of the tools for the cases the machine cannot produce (curl, wget, Go, apt, npm)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragbuild.build_failure import (
    BASE_IMAGE,
    FRONTEND,
    PROXY,
    SECTIONS,
    TLS,
    classify,
    failed_part,
    plain,
)

FIXTURES = Path(__file__).parent / "build_failures"

#: Every fixture and the kind it is (None: none of the kinds), with the words the message must
#: carry (the evidence, the image).
EXPECTED = {
    "tls-pip.legacy": (TLS, "`CERTIFICATE_VERIFY_FAILED`"),
    "tls-pip.modern": (TLS, "`CERTIFICATE_VERIFY_FAILED`"),
    "tls-pip.legacy-tty": (TLS, "`CERTIFICATE_VERIFY_FAILED`"),
    "tls-pip.modern-tty": (TLS, "`CERTIFICATE_VERIFY_FAILED`"),
    "tls-uv.legacy": (TLS, "`invalid peer certificate: UnknownIssuer`"),
    "tls-uv.modern": (TLS, "`invalid peer certificate: UnknownIssuer`"),
    "proxy407-pip.legacy": (PROXY, "wants credentials (`Tunnel connection failed: 407`)"),
    "proxy403-pip.legacy": (PROXY, "refused them (`Tunnel connection failed: 403`)"),
    "proxy407-uv.modern": (
        PROXY,
        "wants credentials (`tunnel error: proxy authorization required`)",
    ),
    "proxy403-uv.modern": (PROXY, "refused them (`tunnel error: unsuccessful`)"),
    "frontend.legacy": (FRONTEND, "frontend docker/dockerfile:1.7,"),
    "frontend.modern": (FRONTEND, "frontend docker/dockerfile:1.7,"),
    "frontend.modern-tty": (FRONTEND, "frontend docker/dockerfile:1.7,"),
    "frontend.d26": (FRONTEND, "frontend docker/dockerfile:1.7,"),
    "base-dns.legacy": (
        BASE_IMAGE,
        "image nonexistent.invalid/x:latest (its registry's name does not resolve",
    ),
    "base-dns.modern": (
        BASE_IMAGE,
        "image nonexistent.invalid/x:latest (its registry's name does not resolve",
    ),
    "base-dns.d26": (
        BASE_IMAGE,
        "image nonexistent.invalid/x:latest (its registry's name does not resolve",
    ),
    "base-missing.legacy": (
        BASE_IMAGE,
        "image localhost:18632/ragbuild-fixture/nope:1 (the registry has no such image)",
    ),
    "base-missing.modern": (
        BASE_IMAGE,
        "image localhost:18632/ragbuild-fixture/nope:1 (the registry has no such image)",
    ),
    "base-missing.d26": (
        BASE_IMAGE,
        "image localhost:18632/ragbuild-fixture/nope:1 (the registry has no such image)",
    ),
    "base-pull.legacy": (BASE_IMAGE, "image python:3.11-slim (its registry's name"),
    "base-pull.modern": (BASE_IMAGE, "image python:3.11-slim (its registry's name"),
    "base-x509.legacy": (
        BASE_IMAGE,
        "ragbuild-fixture/x:1 (the engine does not trust its registry's",
    ),
    "other-after-tls.legacy": (None, ""),
    "other-after-tls.modern": (None, ""),
    "other-dns.d26": (None, ""),
    "other-long.modern-tty": (None, ""),
}


def fixture(name: str) -> str:
    return (FIXTURES / f"{name}.txt").read_bytes().decode()  # as written: \r\n kept


def test_every_fixture_is_expected_and_every_expected_one_is_there():
    assert sorted(path.stem for path in FIXTURES.glob("*.txt")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_real_failure_is_told_apart(name):
    kind, words = EXPECTED[name]
    cause = classify(fixture(name))
    assert (cause.kind if cause else None) == kind
    if cause:
        assert words in cause.message
        assert "\n" not in cause.message and "\x1b" not in cause.message
        assert cause.message.endswith(f"; see {SECTIONS[kind]}")


def test_the_live_display_is_read_as_plain_text():
    raw = fixture("tls-pip.modern-tty")
    assert "\x1b[" in raw and "\r\n" in raw  # what docker wrote to the terminal
    text = plain(raw)
    assert "\x1b" not in text and "\r" not in text
    assert "\n------\n > [2/2] RUN pip install" in text


@pytest.mark.parametrize("name", ["other-after-tls.legacy", "other-after-tls.modern"])
def test_a_tls_warning_of_a_step_that_succeeded_is_not_the_cause(name):
    """pip failed verification in a step that went on (`|| echo recovered`); a later step
    failed on its own."""
    text = fixture(name)
    assert "CERTIFICATE_VERIFY_FAILED" in text and "recovered" in text
    assert "CERTIFICATE_VERIFY_FAILED" not in failed_part(plain(text))
    assert "compiling" in failed_part(plain(text))


def test_the_display_lines_of_a_failure_without_a_summary_are_not_read():
    """A live display lists the steps it ran (`=> [internal] load metadata for ...`): without
    BuildKit's summary of a failed step, only what follows the display counts."""
    text = (
        " => [internal] load metadata for docker.io/library/python:3.11-slim   0.0s\n"
        " => ERROR [internal] load build context                                0.0s\n"
        'ERROR: failed to solve: failed to compute cache key: "/src" not found\n'
    )
    assert classify(text) is None


# --- the wording of each kind ------------------------------------------------------------------


def test_tls_when_the_host_ca_was_passed_names_it():
    cause = classify(fixture("tls-uv.modern"), host_ca="/etc/ssl/certs/ca-certificates.crt")
    assert (
        "although ragbuild passed the host's CA bundle /etc/ssl/certs/ca-certificates.crt"
        in cause.message
    )
    assert "--host-ca PATH" in cause.message and "--no-host-ca" not in cause.message


@pytest.mark.parametrize(
    "why, fix",
    [
        (
            "--no-host-ca",
            "(--no-host-ca): drop --no-host-ca, or pass the proxy's CA with --host-ca PATH;",
        ),
        (
            "the host's pip names none: no PIP_CERT, pip config cert, REQUESTS_CA_BUNDLE or SSL_CERT_FILE",
            "(the host's pip names none: no PIP_CERT, pip config cert, REQUESTS_CA_BUNDLE or "
            "SSL_CERT_FILE): pass the proxy's CA with --host-ca PATH;",
        ),
        ("", "to the build: pass the proxy's CA with --host-ca PATH;"),
    ],
)
def test_tls_when_no_host_ca_was_passed_says_why_and_how(why, fix):
    message = classify(fixture("tls-pip.legacy"), host_ca=None, not_passed=why).message
    assert message.startswith(
        "the build's downloads do not trust the TLS certificate they were "
        "shown (`CERTIFICATE_VERIFY_FAILED`); a TLS-inspecting proxy? "
        "ragbuild passed no host CA bundle "
    )
    assert fix in message


def test_each_kind_points_at_its_section_of_the_troubleshooting_page():
    from test_docs import REPO, anchors

    page = REPO / "docs" / "troubleshooting.md"
    for link in SECTIONS.values():
        path, _, section = link.partition("#")
        assert REPO / path == page and section in anchors(page), link


def test_with_pull_the_base_image_fix_says_to_drop_it():
    with_pull = classify(fixture("base-pull.modern"), pull=True).message
    without = classify(fixture("base-pull.modern"), pull=False).message
    assert "drop --pull to build from its copy" in with_pull
    assert "--pull" not in without
    assert "`docker pull python:3.11-slim`" in without and "--build-arg PYTHON_IMAGE=" in without


def test_the_frontend_fix_is_to_drop_the_syntax_line_or_give_the_engine_the_image():
    message = classify(fixture("frontend.legacy")).message
    assert "`# syntax=`" in message and "remove that line" in message
    assert "`docker pull docker/dockerfile:1.7`" in message


# --- message variants of other tools -----------------------------------------------------------


def step(*lines: str) -> str:
    """A failed RUN step in plain progress, saying ``lines``."""
    said = "".join(f"#7 1.{n:03d} {line}\n" for n, line in enumerate(lines))
    return (
        "#7 [3/4] RUN fetch\n" + said + "#7 ERROR: executor failed running [/bin/sh -c fetch]: "
        "exit code: 1\n------\n > [3/4] RUN fetch:\n------\nERROR: failed to solve: exit code: 1\n"
    )


@pytest.mark.parametrize(
    "line, evidence",
    [
        # pip, as it words it on OpenSSL 1.1 (no hyphen) and 3 (hyphen)
        (
            "Could not fetch URL https://pypi.org/simple/six/: There was a problem confirming the ssl "
            "certificate: HTTPSConnectionPool(host='pypi.org', port=443): Max retries exceeded with "
            "url: /simple/six/ (Caused by SSLError(SSLCertVerificationError(1, '[SSL: "
            "CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer "
            "certificate (_ssl.c:1006)'))) - skipping",
            "CERTIFICATE_VERIFY_FAILED",
        ),
        (
            "urllib.error.URLError: <urlopen error [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify "
            "failed: self signed certificate in certificate chain (_ssl.c:1129)>",
            "CERTIFICATE_VERIFY_FAILED",
        ),
        # uv (rustls)
        (
            "  Caused by: invalid peer certificate: UnknownIssuer",
            "invalid peer certificate: UnknownIssuer",
        ),
        # curl (OpenSSL 3 and 1.1)
        (
            "curl: (60) SSL certificate problem: self-signed certificate in certificate chain",
            "SSL certificate problem: self-signed certificate in certificate chain",
        ),
        (
            "curl: (60) SSL certificate problem: unable to get local issuer certificate",
            "SSL certificate problem: unable to get local issuer certificate",
        ),
        # OpenSSL's own
        (
            "verify error:num=19:self signed certificate in certificate chain",
            "self signed certificate in certificate chain",
        ),
        # Go (go mod download, a Go tool's fetch)
        (
            'go: github.com/x/y@v1.0.0: Get "https://proxy.golang.org/...": tls: failed to verify '
            "certificate: x509: certificate signed by unknown authority",
            "x509: certificate signed by unknown authority",
        ),
        # wget, apt (GnuTLS), npm
        (
            "ERROR: cannot verify pypi.org's certificate, issued by 'CN=Corp Proxy CA':",
            "cannot verify pypi.org's certificate",
        ),
        (
            "Err:1 https://deb.debian.org/debian bookworm InRelease  Certificate verification failed: "
            "The certificate is NOT trusted.",
            "Certificate verification failed: The certificate is NOT trusted",
        ),
        ("npm ERR! code SELF_SIGNED_CERT_IN_CHAIN", "SELF_SIGNED_CERT_IN_CHAIN"),
    ],
)
def test_tls_variants(line, evidence):
    cause = classify(step(line))
    assert cause.kind == TLS
    assert f"(`{evidence}`)" in cause.message


@pytest.mark.parametrize(
    "line, said",
    [
        ("curl: (56) CONNECT tunnel failed, response 407", "wants credentials"),
        ("curl: (56) Received HTTP code 407 from proxy after CONNECT", "wants credentials"),
        ("curl: (56) CONNECT tunnel failed, response 403", "refused them"),
        (
            "ProxyError('Cannot connect to proxy.', OSError('Tunnel connection failed: 407 Proxy "
            "Authentication Required'))",
            "wants credentials",
        ),
        ("HTTP/1.1 407 Proxy Authentication Required", "wants credentials"),
        (
            "WARNING: Retrying (Retry(total=4)) after connection broken by 'ProxyError('Cannot connect "
            "to proxy.', NewConnectionError('<...>: Failed to establish a new connection: [Errno 111] "
            "Connection refused'))': /simple/six/",
            "failed them",
        ),
    ],
)
def test_proxy_variants(line, said):
    cause = classify(step(line))
    assert cause.kind == PROXY and said in cause.message


@pytest.mark.parametrize(
    "text, image, reason",
    [
        # the classic builder's and docker pull's words
        (
            "pull access denied for corp/base, repository does not exist or may require 'docker login'",
            "corp/base",
            "the registry refuses it",
        ),
        (
            "manifest for python:3.99-slim not found: manifest unknown: manifest unknown",
            "python:3.99-slim",
            "the registry has no such image",
        ),
        # BuildKit fetching a layer after the metadata (a FROM step that failed)
        (
            "#4 [1/2] FROM docker.io/library/python:3.11-slim@sha256:" + "ab" * 32 + "\n"
            "#4 ERROR: failed to copy: httpReadSeeker: failed open: failed to do request: Get "
            '"https://registry-1.docker.io/v2/...": dial tcp 1.2.3.4:443: i/o timeout\n',
            "python:3.11-slim@sha256:" + "ab" * 32,
            "its registry does not answer the engine",
        ),
    ],
)
def test_base_image_variants(text, image, reason):
    cause = classify(text)
    assert cause.kind == BASE_IMAGE
    assert f"the base image {image} ({reason}" in cause.message


def test_a_run_that_failed_under_a_syntax_frontend_is_the_runs_failure():
    """BuildKit wraps a failed step's error in the frontend's (``gateway.v0``) when the
    Dockerfile names one; the frontend image itself was there."""
    text = step(
        "... (Caused by SSLError(SSLCertVerificationError(1, '[SSL: "
        "CERTIFICATE_VERIFY_FAILED] certificate verify failed: ...')))"
    )
    text += (
        "failed to solve with frontend dockerfile.v0: failed to solve with frontend "
        "gateway.v0: rpc error: code = Unknown desc = failed to build LLB: executor failed "
        "running [/bin/sh -c fetch]: exit code: 1\n"
    )
    assert classify(text).kind == TLS


@pytest.mark.parametrize(
    "text",
    [
        "",
        step("ERROR: No matching distribution found for six"),
        step("error: could not compile `x` due to previous error"),
        step("Temporary failure in name resolution"),
    ],
)
def test_other_failures_are_none_of_the_kinds(text):
    assert classify(text) is None
