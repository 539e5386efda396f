"""reference.py's rules, each answer and each message whole: docker's reference grammar for a
tag, an image name, an image reference and a registry, ECR's host pattern, and how docker lists
Docker Hub names. Written against the survivors of ``make mutation``
(docs/test-harness.md#mutation-testing)."""

from __future__ import annotations

import pytest

from ragbuild import reference
from ragbuild.reference import Registry
from fakes import refused

DIGEST = "@sha256:" + "a" * 64
ECR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"


@pytest.mark.parametrize(
    "ref, listed",
    [
        ("docker.io/library/x:t", "x:t"),
        ("index.docker.io/library/x:t", "x:t"),
        ("library/x:t", "x:t"),
        ("docker.io/u/x:t", "u/x:t"),
        ("index.docker.io/u/x", "u/x"),
        ("library/a/b", "library/a/b"),  # not an official image: library/ stays
        ("docker.io/library/a/b", "library/a/b"),
        ("quay.io/library/x", "quay.io/library/x"),
        ("mydocker.io/x", "mydocker.io/x"),
        ("x/docker.io/y", "x/docker.io/y"),
        # only one Docker Hub prefix is dropped
        ("docker.io/index.docker.io/x", "index.docker.io/x"),
        ("x:t", "x:t"),
    ],
)
def test_familiar(ref, listed):
    assert reference.familiar(ref) == listed


def test_registry_uri_and_ecr():
    plain = Registry("localhost:5000", "a/b")
    assert (plain.uri, plain.is_ecr, plain.region, plain.fips) == (
        "localhost:5000/a/b",
        False,
        None,
        False,
    )
    assert Registry(ECR, "r", region="eu-west-1").is_ecr is True


TAG_RULE = (
    "is not a valid Docker tag: up to 128 letters, digits, '_', '.' or '-', not starting "
    "with '.' or '-'"
)


@pytest.mark.parametrize("tag", ["a", "_x", "1.2.3", "A-b_c.d", "x" * 128])
def test_check_tag_returns_a_valid_tag(tag):
    assert reference.check_tag(tag) == tag


@pytest.mark.parametrize("tag", ["", ".a", "-a", "a:b", "x" * 129, "a b"])
def test_check_tag_refuses_with_the_rule(tag):
    assert refused(reference.check_tag, tag) == f"--tag {tag!r} {TAG_RULE}"
    assert refused(reference.check_tag, tag, "--version") == f"--version {tag!r} {TAG_RULE}"


@pytest.mark.parametrize(
    "uri, expected",
    [
        ("localhost/x", Registry("localhost", "x")),
        ("localhost:5000/a/b", Registry("localhost:5000", "a/b")),
        ("host:5000/x", Registry("host:5000", "x")),
        ("a.b/x", Registry("a.b", "x")),
        ("[::1]:5000/x", Registry("[::1]:5000", "x")),
        (f"{ECR}/rag", Registry(ECR, "rag", region="eu-west-1")),
        (f"{ECR}:443/rag/w", Registry(f"{ECR}:443", "rag/w", region="eu-west-1")),
        (
            "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com/r",
            Registry(
                "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com",
                "r",
                region="us-gov-west-1",
                fips=True,
            ),
        ),
        ("a.io/" + "b" * 250, Registry("a.io", "b" * 250)),  # 255 characters: docker's limit
    ],
)
def test_parse_registry(uri, expected):
    assert reference.parse_registry(uri) == expected


def test_parse_registry_keeps_fips_false_and_region_of_a_plain_ecr_host():
    registry = reference.parse_registry(f"{ECR}/rag")
    assert (registry.region, registry.fips, registry.is_ecr) == ("eu-west-1", False, True)


@pytest.mark.parametrize(
    "uri, message",
    [
        (
            "",
            "--registry is empty; give host[:port]/repository, e.g. "
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/rag-worker (with make: ECR_URI=...)",
        ),
        (
            "https://a.io/x",
            "--registry 'https://a.io/x': drop the scheme, docker wants host[:port]/repository",
        ),
        (
            "a.io/Rag",
            "--registry 'a.io/Rag' is not host[:port]/repository with a lowercase repository "
            "path (no tag); did you mean 'a.io/rag'?",
        ),
        (
            "a.io/x:tag",
            "--registry 'a.io/x:tag' is not host[:port]/repository with a lowercase "
            "repository path (no tag)",
        ),
        (
            "A.IO/X:T",  # lowercased it is still not a registry: no hint
            "--registry 'A.IO/X:T' is not host[:port]/repository with a lowercase "
            "repository path (no tag)",
        ),
        (
            "a.io/" + "b" * 251,
            "--registry is 256 characters long; docker allows at most 255 in a repository "
            "name, registry host included",
        ),
        (
            "team/rag",
            "--registry 'team/rag' has no registry host ('team' would mean Docker Hub user); "
            "write e.g. docker.io/team/rag",
        ),
    ],
)
def test_parse_registry_refuses_with_its_reason(uri, message):
    assert refused(reference.parse_registry, uri) == message
    shown = message.replace("--registry", "ECR_REGISTRY_URI", 1)
    assert refused(reference.parse_registry, uri, "ECR_REGISTRY_URI") == shown


@pytest.mark.parametrize("name", ["rag-worker", "a/b", "a__b", "x" * 255])
def test_check_image_name_returns_it(name):
    assert reference.check_image_name(name) == name


@pytest.mark.parametrize(
    "name, message",
    [
        ("", "--image-name is empty; give a lowercase image name like rag-worker"),
        ("Rag", "--image-name 'Rag' is not a lowercase image name like rag-worker"),
        ("a:b", "--image-name 'a:b' is not a lowercase image name like rag-worker"),
        (
            "x" * 256,
            "--image-name is 256 characters long; docker allows at most 255 in a repository name",
        ),
    ],
)
def test_check_image_name_refuses_with_its_reason(name, message):
    assert refused(reference.check_image_name, name) == message
    shown = message.replace("--image-name", "IMAGE_NAME", 1)
    assert refused(reference.check_image_name, name, "IMAGE_NAME") == shown


@pytest.mark.parametrize(
    "ref, repository",
    [
        ("host:5000/a/b:tag", "host:5000/a/b"),
        ("host:5000/a/b", "host:5000/a/b"),
        ("a:t", "a"),
        ("a", "a"),
        ("a:b:c", "a:b"),
    ],
)
def test_repository_of(ref, repository):
    assert reference.repository_of(ref) == repository


@pytest.mark.parametrize(
    "ref",
    [
        "rag-worker:dev",
        "x",
        f"localhost:5000/a/b:t{DIGEST}",
        "x" * 255,
        "x" * 255 + ":tag",
        "x" * 255 + DIGEST,
        "x" * 255 + ":t" + DIGEST,
    ],
)
def test_check_image_ref_returns_it(ref):
    assert reference.check_image_ref(ref) == ref


IMAGE_RULE = "[host[:port]/]lowercase/path[:tag][@sha256:digest], e.g. rag-worker:dev"


@pytest.mark.parametrize(
    "ref, message",
    [
        ("", "IMAGE is empty; give an image such as rag-worker:dev"),
        (
            "-x",
            "IMAGE '-x' starts with '-': docker would read it as an option; give an image "
            "such as rag-worker:dev",
        ),
        ("Rag", f"IMAGE 'Rag' is not an image reference: {IMAGE_RULE}"),
        ("x" * 256, f"IMAGE {'x' * 256!r} is not an image reference: {IMAGE_RULE}"),
        (
            "x" * 256 + DIGEST,
            f"IMAGE {'x' * 256 + DIGEST!r} is not an image reference: {IMAGE_RULE}",
        ),
    ],
)
def test_check_image_ref_refuses_with_its_reason(ref, message):
    assert refused(reference.check_image_ref, ref) == message
    shown = message.replace("IMAGE", "--from", 1)
    assert refused(reference.check_image_ref, ref, "--from") == shown


# Survivors of `make mutation` that are equivalent (no input tells them from the code), all in
# parse_registry's ``host.rsplit(":", 1)[0] if host.count(":") == 1 else host`` (the host
# without its port, matched against ECR's pattern):
# - the condition as ``(host.count(":") == 1) or True``: a host with more than one ':' is an IPv6
#   literal (``[::1]:5000``), which ECR's pattern matches neither whole nor cut (mutant 47);
# - ``rsplit(":")``, ``rsplit(":", 2)`` or ``split(":", 1)`` for ``rsplit(":", 1)``: with exactly
#   one ':' every split gives the same part before it (mutants 51, 52, 54).
