"""probe.py: what the probe builds read from a Dockerfile and from pip's and BuildKit's output.
(tests/e2e/test_doctor.py checks the parser-directive rule against the engine itself.)"""

from __future__ import annotations

import pytest

from ragbuild import probe


@pytest.mark.parametrize(
    "text, args, found",
    [
        (
            "# syntax=docker/dockerfile:1.7\nFROM x\n",
            {},
            ("docker/dockerfile:1.7", "the `# syntax=` line"),
        ),
        (
            "#SYNTAX = docker/dockerfile:1 \nFROM x\n",
            {},
            ("docker/dockerfile:1", "the `# syntax=` line"),
        ),
        ("# escape=`\n# syntax=img:1 extra words\nFROM x\n", {}, ("img:1", "the `# syntax=` line")),
        (
            "\n# syntax=docker/dockerfile:1.7\nFROM x\n",
            {},
            None,
        ),  # a blank line ends the directives
        ("# a comment\n# syntax=docker/dockerfile:1.7\n", {}, None),  # so does another comment
        ("FROM x\n# syntax=docker/dockerfile:1.7\n", {}, None),
        (
            "FROM x\n",
            {"BUILDKIT_SYNTAX": "docker/dockerfile:1.6"},
            ("docker/dockerfile:1.6", "--build-arg BUILDKIT_SYNTAX"),
        ),
        (
            "# syntax=docker/dockerfile:1.7\n",
            {"BUILDKIT_SYNTAX": "other:2 x"},
            ("other:2", "--build-arg BUILDKIT_SYNTAX"),
        ),  # the build arg wins
        ("FROM x\n", {"BUILDKIT_SYNTAX": " "}, None),
    ],
)
def test_the_frontend_a_dockerfile_names(text, args, found):
    assert probe.syntax_frontend(text, args) == found


@pytest.mark.parametrize(
    "args, url",
    [
        ({}, probe.PYPI),
        ({"PIP_INDEX_URL": "https://u:tok@idx.example/simple"}, "https://***@idx.example/simple"),
        (
            {"PIP_FIND_LINKS": "http://172.17.0.1:18631/ /more", "PIP_NO_INDEX": "1"},
            "http://172.17.0.1:18631/",
        ),
        ({"PIP_FIND_LINKS": "http://mirror/", "PIP_NO_INDEX": "no"}, probe.PYPI),  # PyPI as well
    ],
)
def test_the_index_pip_fetches_from(args, url):
    assert probe.index_url(args) == url
    assert probe.index_name(url) == ("PyPI" if url == probe.PYPI else url)


@pytest.mark.parametrize(
    "said, reason",
    [
        (
            "Caused by SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] "
            "certificate verify failed: unable to get local issuer certificate (_ssl.c:1006)')))",
            "CERTIFICATE_VERIFY_FAILED: certificate verify failed: unable to get local issuer certificate",
        ),
        (
            "ProxyError('Cannot connect to proxy.', OSError('Tunnel connection failed: 407 Proxy "
            "Authentication Required'))",
            "Tunnel connection failed: 407 Proxy Authentication Required",
        ),
        (
            "ProxyError('Cannot connect to proxy.', NewConnectionError('x'))",
            "Cannot connect to proxy.",
        ),
        (
            "(Caused by ReadTimeoutError(\"HTTPSConnectionPool(host='pypi.org', port=443): Read timed "
            'out. (read timeout=20)"))',
            "Read timed out. (read timeout=20)",
        ),
        ("/bin/sh: 1: python: not found\n", "python: not found"),
        (
            "ERROR: No matching distribution found for pip\n",
            "No matching distribution found for pip",
        ),
        (
            "Could not fetch URL https://idx/simple/pip/: 404 Client Error: Not Found for url: "
            "https://idx/simple/pip/ - skipping\nERROR: No matching distribution found for pip\n",
            "404 Client Error: Not Found for url: https://idx/simple/pip/",
        ),
        ("ERROR: first\n  File x\n    raise error from e\n", "ERROR: first"),
        (
            "ERROR: Exception: https://user:tok@idx/x broke\n",
            "ERROR: Exception: https://***@idx/x broke",
        ),
        ("something\nlast words\n\n", "last words"),
        ("", "no output"),
    ],
)
def test_why_pip_failed_in_one_line(said, reason):
    assert probe.pip_reason(said) == reason


def test_an_answer_tells_an_untrusted_certificate(tmp_path):
    (tmp_path / "status").write_text("1\n")
    (tmp_path / "said").write_text(
        "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: x')"
    )
    answer = probe.read_answer(str(tmp_path))
    assert (answer.status, answer.ok, answer.untrusted) == (1, False, True)
    assert probe.read_answer(str(tmp_path / "none")) == probe.Answer(None)


@pytest.mark.parametrize(
    "output, reason",
    [
        (
            "#3 ERROR: x\nfailed to solve with frontend dockerfile.v0: failed to create LLB definition: "
            'failed to do request: Head "https://r/v2/x/manifests/1": no such host\n',
            'failed to do request: Head "https://r/v2/x/manifests/1": no such host',
        ),
        (
            "ERROR: failed to solve: rpc error: code = Unknown desc = failed to solve with frontend "
            "dockerfile.v0: failed to solve with frontend gateway.v0: pull access denied\n",
            "pull access denied",
        ),
        ("", "no output"),
    ],
)
def test_why_a_probe_build_failed(output, reason):
    assert probe.build_reason(output) == reason


def test_the_builds_network_words_reach_the_probes():
    assert probe.network_words(("--network", "host", "--target", "x", "--add-host=a:1.2.3.4")) == (
        "--network",
        "host",
        "--add-host=a:1.2.3.4",
    )


def test_the_index_probes_differ_so_buildkit_runs_each(tmp_path):
    """Concurrent builds share a step that is the same in each (a secret is no part of it): the
    probes with and without the CA, and two doctors' probes, must differ."""
    plain = probe.index_probe("python:3.11-slim", {}, None, "one")
    with_ca = probe.index_probe("python:3.11-slim", {}, "/ca.pem", "one")
    other = probe.index_probe("python:3.11-slim", {}, None, "two")
    assert len({plain.dockerfile, with_ca.dockerfile, other.dockerfile}) == 3
    assert with_ca.words == ("--secret", "id=ragbuild-host-ca,src=/ca.pem")
    command = with_ca.command(str(tmp_path))
    assert command.env == (("DOCKER_BUILDKIT", "1"),)
    assert command.argv[:2] == ("docker", "build") and "--no-cache" in command.argv


def test_the_frontend_probe_is_the_dockerfiles_own_header():
    text = "#!/bin/sh\n# syntax=a:1\n\n// c-style\nFROM python:3.11-slim\n# syntax=late:1\n"
    made = probe.syntax_probe(text, {})
    assert made.dockerfile == "#!/bin/sh\n# syntax=a:1\n\n// c-style\nFROM scratch\n"
    assert made.words == ()
    assert probe.syntax_probe("FROM x\n", {"BUILDKIT_SYNTAX": "b:2"}).words == (
        "--build-arg",
        "BUILDKIT_SYNTAX=b:2",
    )


@pytest.mark.parametrize(
    "output, image",
    [
        (
            " > resolve image config for docker-image://docker.io/docker/dockerfile:1.7:\n",
            "docker.io/docker/dockerfile:1.7",
        ),
        (" > resolve image config for docker.io/library/b:1:\n", "docker.io/library/b:1"),
        ("failed to solve: no space left on device\n", None),
    ],
)
def test_the_frontend_buildkit_could_not_get(output, image):
    assert probe.frontend_in(output) == image


def test_the_index_secret_goes_in_dockers_environment_never_printed(tmp_path):
    from ragbuild.pip_config import HostIndex, HostNetwork

    index = "https://user:s3cr3t@idx.example/simple"
    host = HostNetwork(index=HostIndex(env=(("PIP_INDEX_URL", index),)))
    command = probe.index_probe("base", {}, None, "n", host).command(str(tmp_path))
    assert ("RAGBUILD_HOST_INDEX_SECRET", f"PIP_INDEX_URL={index}\n") in command.env
    assert "id=ragbuild-host-index,env=RAGBUILD_HOST_INDEX_SECRET" in command.argv
    assert "s3cr3t" not in command.display()
