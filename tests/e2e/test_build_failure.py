"""A failed build ends with its cause and fix in one line (ragbuild/build_failure.py), after
docker's own output, on a real engine: a download that does not trust its server's certificate
(an HTTPS package index on the docker bridge whose self-signed certificate nothing trusts, so
the case needs no outside network), through a pipe (plain progress) and on a terminal (docker's
live display, which ragbuild keeps); and a base image the engine cannot get."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys

import pytest

#: An HTTPS server that answers 404 to everything: pip's TLS handshake fails before it asks.
SERVER = """
import http.server, ssl, sys
address, cert, key = sys.argv[1:4]
server = http.server.HTTPServer((address, 0), http.server.BaseHTTPRequestHandler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"""

TLS_CAUSE = (
    "error: docker build failed (exit 1): the build's downloads do not trust the TLS "
    "certificate they were shown (`CERTIFICATE_VERIFY_FAILED`)"
)


@pytest.fixture
def untrusted_index(tmp_path, e2e_env, leg):
    """``https://<bridge>:<port>/simple/``: a package index whose certificate is self-signed,
    on the local engine's docker bridge (what its builds reach)."""
    if leg.host or "remote" in leg.can:
        pytest.skip("the index listens on the local engine's bridge")
    bridge = e2e_env["E2E_BRIDGE_IP"]
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=ragbuild-e2e-untrusted",
            "-addext",
            f"subjectAltName=IP:{bridge}",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, bridge, str(cert), str(key)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = server.stdout.readline().strip()
        assert port.isdigit(), "the HTTPS index did not start"
        yield f"https://{bridge}:{port}/simple/"
    finally:
        server.terminate()
        server.wait(timeout=10)
        server.stdout.close()


@pytest.mark.legs("legacy", "modern")
@pytest.mark.parametrize(
    "flags, wording",
    [
        (
            (),
            "although ragbuild passed the host's CA bundle /etc/ssl/certs/ca-certificates.crt to "
            "the build (secret ragbuild-host-ca)",
        ),
        (
            ("--no-host-ca",),
            "ragbuild passed no host CA bundle to the build (--no-host-ca): drop "
            "--no-host-ca, or pass the proxy's CA with --host-ca PATH",
        ),
    ],
    ids=["host-ca", "no-host-ca"],
)
def test_a_build_whose_downloads_fail_tls_verification_says_so_in_one_line(
    project, untrusted_index, flags, wording
):
    """The index's certificate is in no bundle: the build fails with the host's CA (the
    machine's pip names /etc/ssl/certs/ca-certificates.crt) and without it."""
    result = project.script(
        "--env",
        "dev",
        "--build-arg",
        f"PIP_INDEX_URL={untrusted_index}",
        *flags,
        env={"PIP_CERT": "/etc/ssl/certs/ca-certificates.crt"},
    )
    assert result.returncode == 1, result.describe()
    errors = result.error_lines()
    assert len(errors) == 1 and errors[0].startswith(TLS_CAUSE), result.describe()
    assert wording in errors[0], errors[0]
    assert errors[0].endswith(
        "; see docs/troubleshooting.md#a-tls-inspecting-proxy-certificate-verify-failed"
    )
    # docker's own output came first, streamed as it came (plain progress: a pipe)
    assert result.stderr.index("CERTIFICATE_VERIFY_FAILED") < result.stderr.index(errors[0])


@pytest.mark.legs("legacy", "modern")
@pytest.mark.skipif(not shutil.which("script"), reason="script(1) is not installed")
def test_on_a_terminal_the_build_keeps_dockers_live_display_and_says_the_cause(
    project, untrusted_index
):
    """ragbuild's stderr a terminal: docker's stderr is a pty of ragbuild's, so docker draws
    its live display ("[+] Building", cursor moves) as it would on the terminal itself."""
    argv = [
        "./scripts/build-image.py",
        "--env",
        "dev",
        "--build-arg",
        f"PIP_INDEX_URL={untrusted_index}",
    ]
    env = project.runner.environ({"BUILDKIT_PROGRESS": None})  # docker's default: auto
    done = subprocess.run(
        ["script", "-qec", shlex.join(argv), "/dev/null"],
        cwd=project.path,
        env=env,
        capture_output=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    shown = done.stdout.decode(errors="replace")
    assert done.returncode == 1, shown[-3000:]
    assert "[+] Building" in shown and "\x1b[" in shown, shown[-3000:]  # the live display
    last = re.sub(r"\x1b\[[0-9;]*m", "", shown).strip().splitlines()[-1]  # uncoloured
    assert last.startswith(TLS_CAUSE), shown[-3000:]


@pytest.mark.every_leg
def test_a_base_image_the_engine_cannot_get_is_named_with_its_fix(project, leg):
    image = "nonexistent.invalid/ragbuild-e2e:1"
    result = project.script("--env", "dev", "--build-arg", f"PYTHON_IMAGE={image}")
    assert result.returncode == 1, result.describe()
    errors = result.error_lines()
    assert len(errors) == 1, result.describe()
    what = "docker buildx build" if "buildx" in errors[0] else "docker build"
    assert errors[0].startswith(
        f"error: {what} failed (exit 1): the engine cannot get the base image {image} ("
    ), result.describe()
    assert f"`docker pull {image}`" in errors[0] and "--build-arg PYTHON_IMAGE=" in errors[0]
