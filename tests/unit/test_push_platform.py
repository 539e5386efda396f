"""push.normalize_platform: the platforms docker takes as the same compare equal, so a plan
spelled with one of containerd's aliases (``--platform linux/x86_64``, which docker builds as
linux/amd64) is not refused, after its push, by the shape rule or the read-back."""

import pytest

from ragbuild import shape
from ragbuild.push import normalize_platform


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("linux/x86_64", "linux/amd64"),
        ("linux/x86-64", "linux/amd64"),
        ("linux/amd64/v1", "linux/amd64"),
        ("linux/aarch64", "linux/arm64"),
        ("linux/aarch64/v8", "linux/arm64/v8"),
        ("linux/arm64/8", "linux/arm64"),
        ("linux/armhf", "linux/arm/v7"),
        ("linux/armel", "linux/arm/v6"),
        ("linux/arm/7", "linux/arm/v7"),
        ("linux/arm", "linux/arm/v7"),
        ("linux/i386", "linux/386"),
    ],
)
def test_aliases_docker_builds_as_one_platform_compare_equal(given, stored):
    # containerd platforms.Normalize (normalizeArch), what docker and buildx apply to --platform
    assert normalize_platform(given) == normalize_platform(stored)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("linux/amd64", "linux/arm64"),
        ("linux/arm/v6", "linux/arm/v7"),
        ("linux/amd64/v2", "linux/amd64"),
        ("windows/amd64", "linux/amd64"),
        ("linux/386", "linux/amd64"),
    ],
)
def test_other_platforms_stay_apart(one, other):
    assert normalize_platform(one) != normalize_platform(other)


def test_shape_rule_takes_an_x86_64_plan_for_the_amd64_image_docker_built():
    # `--platform linux/x86_64 --push` built and pushed linux/amd64, then failed verification
    # with "build it with --platform linux/x86_64"
    assert shape.platform_problem("r:t", "linux/amd64", "linux/x86_64", normalize_platform) is None
    assert shape.platform_problem("r:t", "linux/arm64", "linux/x86_64", normalize_platform)


@pytest.mark.parametrize(
    ("given", "stored"),
    [("linux/aarch64/v9", "linux/arm64/v9"), ("linux/x86_64/v3", "linux/amd64/v3")],
)
def test_an_alias_keeps_its_variant(given, stored):
    assert (
        normalize_platform(given)
        == normalize_platform(stored)
        != normalize_platform(stored.rsplit("/", 1)[0])
    )
