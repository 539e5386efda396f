"""reference.py: registry references and the ECR hosts they name."""

import pytest
from ragbuild.reference import parse_registry
from registry_fakes import *  # noqa: F401,F403 (the shared fakes, clean_env included)
from registry_fakes import clean_env  # noqa: F401 (autouse)

from ragbuild.reference import repository_of
from ragbuild.reference import familiar

from ragbuild.errors import UsageError
from ragbuild.reference import check_tag, parse_source


# --- ECR host recognition ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "host, region",
    [
        ("123456789012.dkr.ecr.us-east-1.amazonaws.com", "us-east-1"),
        ("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com", "us-gov-west-1"),
        ("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn", "cn-north-1"),
        ("123456789012.dkr-ecr.eu-west-1.on.aws", "eu-west-1"),  # dual-stack
        ("123456789012.dkr-ecr.cn-northwest-1.on.amazonwebservices.com.cn", "cn-northwest-1"),
        ("123456789012.dkr.ecr.eusc-de-east-1.amazonaws.eu", "eusc-de-east-1"),
        ("123456789012.dkr.ecr.us-iso-east-1.c2s.ic.gov", "us-iso-east-1"),
        ("123456789012.dkr.ecr.us-isob-east-1.sc2s.sgov.gov", "us-isob-east-1"),
        ("123456789012.dkr.ecr.eu-isoe-west-1.cloud.adc-e.uk", "eu-isoe-west-1"),
        ("123456789012.dkr.ecr.us-isof-south-1.csp.hci.ic.gov", "us-isof-south-1"),
        ("123456789012.dkr.ecr.us-east-1.amazonaws.com:443", "us-east-1"),
    ],
)
def test_ecr_hosts_of_every_partition_give_their_region(host, region):
    registry = parse_registry(f"{host}/team/rag-worker")
    assert registry.is_ecr
    assert registry.region == region
    assert registry.path == "team/rag-worker"


@pytest.mark.parametrize(
    "host",
    [
        "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.example",
        "123456789012.dkr.ecr.us-east-1.on.aws.evil.example",
        "evil123456789012.dkr.ecr.us-east-1.amazonaws.com",
        "12345678901.dkr.ecr.us-east-1.amazonaws.com",
        "123456789012.dkr.ecr.us-east-1.amazonaws.co",
        "123456789012.dkrxecr.us-east-1.amazonaws.com",
        "123456789012.dkr.ecr.us-east-1.amazonaws.eu.com",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com.cn.example",
        "public.ecr.aws",
        "localhost:5000",
    ],
)
def test_look_alike_hosts_are_not_ecr(host):
    registry = parse_registry(f"{host}/rag-worker")
    assert not registry.is_ecr
    assert registry.region is None


def test_fips_is_read_from_the_registry_once():
    assert parse_registry("123456789012.dkr.ecr-fips.us-east-1.amazonaws.com/r").fips
    assert not parse_registry(f"{ECR}/r").fips
    assert not parse_registry(f"{PLAIN}/r").fips


@pytest.mark.parametrize(
    "ref, repository",
    [
        ("rag-worker:dev", "rag-worker"),
        ("localhost:5000/a/b:1", "localhost:5000/a/b"),
        ("localhost:5000/a/b", "localhost:5000/a/b"),
        ("team/x:1", "team/x"),
    ],
)
def test_repository_of(ref, repository):
    assert repository_of(ref) == repository


@pytest.mark.parametrize(
    "label, familiar_name",
    [
        ("docker.io/team/rag", "team/rag"),
        ("docker.io/library/rag", "rag"),
        ("index.docker.io/rag", "rag"),
        ("docker.io/library/a/b", "library/a/b"),
        ("rag-worker", "rag-worker"),
        ("r.example.com/library/x", "r.example.com/library/x"),
    ],
)
def test_familiar_matches_how_docker_lists_docker_hub_names(label, familiar_name):
    assert familiar(label) == familiar_name


ECR_DEV = "123456789.dkr.ecr.us-east-1.amazonaws.com/rag-worker-dev"


@pytest.mark.parametrize(
    "tag", ["a", "_x", "1.0.0-rc.1", "A" * 128, "git-a1b2c3d-dirty", "v1.2.3_b.5"]
)
def test_valid_tags(tag):
    assert check_tag(tag) == tag


@pytest.mark.parametrize(
    "tag", ["", ".hidden", "-dash", "a" * 129, "a:b", "a/b", "a b", "a+b", "é"]
)
def test_invalid_tags_are_refused(tag):
    with pytest.raises(UsageError) as err:
        check_tag(tag)
    assert str(err.value).startswith(f"--tag {tag!r} is not a valid Docker tag: up to 128 letters")


@pytest.mark.parametrize(
    "uri, host, path, region",
    [
        (
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/rag-worker",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com",
            "rag-worker",
            "us-east-1",
        ),
        (
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/team/rag",
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
            "team/rag",
            "cn-north-1",
        ),
        ("localhost:5000/rag-worker", "localhost:5000", "rag-worker", None),
        ("registry.example.com:443/a/b_c/d-e", "registry.example.com:443", "a/b_c/d-e", None),
        (
            ECR_DEV,
            "123456789.dkr.ecr.us-east-1.amazonaws.com",
            "rag-worker-dev",
            None,
        ),  # 9 digits: not ECR
    ],
)
def test_registries_accepted(uri, host, path, region):
    registry = parse_registry(uri)
    assert (registry.host, registry.path, registry.region) == (host, path, region)
    assert registry.uri == uri


@pytest.mark.parametrize(
    "uri, fragment",
    [
        ("", "--registry is empty"),
        ("https://r.example.com/x", "drop the scheme"),
        ("r.example.com/Rag-Worker", "lowercase repository path"),
        ("r.example.com/x:tag", "no tag"),
        ("r.example.com", "is not host[:port]/repository"),
        ("rag/worker", "has no registry host"),
    ],
)
def test_bad_registries_are_refused_naming_the_value(uri, fragment):
    with pytest.raises(UsageError) as err:
        parse_registry(uri)
    assert fragment in str(err.value)
    assert (repr(uri) in str(err.value)) or uri == ""


def test_uppercase_registry_path_suggests_lowercase():
    with pytest.raises(UsageError, match=r"did you mean 'r\.example\.com/rag-worker'\?"):
        parse_registry("r.example.com/Rag-Worker")


def test_registry_without_host_message_shows_the_docker_hub_spelling():
    with pytest.raises(UsageError) as err:
        parse_registry("someuser/rag-worker")
    assert "docker.io/someuser/rag-worker" in str(err.value)
    assert "{" not in str(err.value)


# --- a promotion's SOURCE (parse_source) --------------------------------------------------------

SOURCE_REPO = f"{PLAIN}/rag-worker"
SOURCE_DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    "text, registry, ref",
    [
        (f"{SOURCE_REPO}:dev", None, f"{SOURCE_REPO}:dev"),
        (f"{SOURCE_REPO}@{SOURCE_DIGEST}", None, f"{SOURCE_REPO}@{SOURCE_DIGEST}"),
        ("git-abc1234", SOURCE_REPO, f"{SOURCE_REPO}:git-abc1234"),
        (SOURCE_DIGEST, SOURCE_REPO, f"{SOURCE_REPO}@{SOURCE_DIGEST}"),
        (f"{SOURCE_REPO}:dev", SOURCE_REPO, f"{SOURCE_REPO}:dev"),
        # docker takes name:tag@digest and goes by the digest alone
        (f"{SOURCE_REPO}:dev@{SOURCE_DIGEST}", None, f"{SOURCE_REPO}@{SOURCE_DIGEST}"),
        (f"{PLAIN}/team/app:v1@{SOURCE_DIGEST}", None, f"{PLAIN}/team/app@{SOURCE_DIGEST}"),
    ],
)
def test_a_source_is_a_tag_or_a_digest_in_a_repository(text, registry, ref):
    assert parse_source(text, registry).ref == ref


@pytest.mark.parametrize(
    "text, registry, said",
    [
        (SOURCE_REPO, None, "names no tag or digest"),
        (f"{SOURCE_REPO}@sha256:abc", None, "is not a digest"),
        ("dev", None, "names no tag or digest"),
        (f"{SOURCE_REPO}:dev", f"{PLAIN}/other", "promote writes tags in SOURCE's own repository"),
        (f"{SOURCE_REPO}:-bad", None, "not a valid Docker tag"),
        (f"{SOURCE_REPO}:-bad@{SOURCE_DIGEST}", None, "not a valid Docker tag"),
        ("", None, "SOURCE is empty"),
    ],
)
def test_a_bad_source_is_refused_in_one_line(text, registry, said):
    with pytest.raises(UsageError, match=said):
        parse_source(text, registry)
