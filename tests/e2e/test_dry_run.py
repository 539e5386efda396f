"""``--dry-run`` prints exactly the commands a real run executes.

With SOURCE_DATE_EPOCH fixed, the dry run's lines (stdout) must equal the ``+ ...`` lines the real
run logs to stderr for the commands it starts, the ``docker build`` line above all, and the real
run must make the tags the dry run's ``docker build`` named.
"""

from __future__ import annotations

import re
import shlex

import pytest

from ragbuild.proxy import INFO_FORMAT as PROXY_INFO_FORMAT

pytestmark = pytest.mark.e2e

EPOCH = "1700000000"


@pytest.mark.every_leg
def test_dry_run_prints_the_commands_the_real_run_executes(
    project, tiny_context, unique, docker, images
):
    name = images.track_repository(unique("dry"))
    dockerfile = tiny_context(f'LABEL org.ragbuild.e2e.case="{name}"')
    token = "tok-e2e-4711"
    flags = [
        "--version",
        "1.2.3-rc.1+build.5",
        "--env",
        "staging",
        "--tag",
        "qa",
        "--no-latest",
        "--build-arg",
        "NOTE=two words, 'quoted'",
        "--build-arg",
        f"API_TOKEN={token}",
        "--build-arg",
        f"PIP_EXTRA_INDEX_URL=https://user:{token}@mirror.invalid/simple",
        "--no-cache",
        "-f",
        dockerfile,
        "--context",
        dockerfile.parent,
        "--image-name",
        name,
    ]
    env = {"SOURCE_DATE_EPOCH": EPOCH, "TZ": "UTC"}

    dry = project.script(*flags, "--dry-run", env=env).assert_ok()
    printed = dry.stdout.splitlines()
    # the index build arg with credentials reaches docker's client in its environment, for the
    # index secret (pip_config.secret_build_args), shown as ***
    builds = [
        line
        for line in printed
        if line.startswith("DOCKER_BUILDKIT=1 RAGBUILD_HOST_INDEX_SECRET='***' docker build ")
    ]
    assert len(builds) == 1, dry.describe()
    assert docker.refs(name) == [], "the dry run built something"

    real = project.script(*flags, env=env).assert_ok()
    images.track_result(real)
    # the real run follows the image by the ID its build wrote, which the dry run calls IMAGE_ID
    executed = [
        re.sub(rf"\b{real.built_id()}\b", "IMAGE_ID", line[2:])
        for line in real.stderr.splitlines()
        if line.startswith("+ ")
    ]
    assert [line for line in executed if " docker build " in f" {line}"] == builds
    assert executed == printed

    # the dry run's build line is a real command line: its -t are the tags the engine now holds
    argv = shlex.split(builds[0])
    tags = [argv[i + 1] for i, word in enumerate(argv) if word == "-t"]
    assert tags == [
        f"{name}:v1.2.3-rc.1_build.5",
        f"{name}:1.2.3-rc.1_build.5",
        f"{name}:staging-20231114-221320",
        f"{name}:staging",
        f"{name}:git-{project.sha}",
        f"{name}:qa",
    ]
    assert docker.refs(name) == sorted(tags)
    assert "VERSION=1.2.3-rc.1+build.5" in argv  # the build arg keeps semver's '+'
    assert "NOTE=two words, 'quoted'" in argv
    # secrets: *** in both transcripts (said once), never the value
    assert "API_TOKEN=***" in argv
    assert "id=ragbuild-host-index,env=RAGBUILD_HOST_INDEX_SECRET" in argv
    assert not [word for word in argv if word.startswith("PIP_EXTRA_INDEX_URL")]
    assert (
        "package index, as build secret ragbuild-host-index: PIP_EXTRA_INDEX_URL="
        "https://***@mirror.invalid/simple (from --build-arg PIP_EXTRA_INDEX_URL)"
    ) in dry.stderr
    assert dry.stderr.count("are shown as ***") == 1
    assert token not in dry.text + real.text


def test_dry_run_starts_no_docker(project, tiny_context, unique, tmp_path):
    """Not even the probes: with no docker at all, a dry run prints the same plan, exit 0,
    and warns once that a real run would stop."""
    name = unique("nodocker")
    dockerfile = tiny_context(f'LABEL org.ragbuild.e2e.case="{name}"')
    flags = [
        "--env",
        "dev",
        "--builder",
        "bigbox",
        "--registry",
        f"localhost:5000/{name}",
        "--push",
        "-f",
        dockerfile,
        "--context",
        dockerfile.parent,
    ]
    missing = tmp_path / "no" / "docker"
    dry = project.script(*flags, "--dry-run", env={"DOCKER": missing}).assert_ok()
    printed = dry.stdout.splitlines()
    assert printed[0] == "docker buildx version"
    # the daemon's proxy settings, which the registry requests follow (localhost: no docker info
    # for its registry configuration); the pre-flight's and the read-back's requests are said
    # on stderr
    assert printed[1] == f"docker info --format '{PROXY_INFO_FORMAT}'"
    assert printed[2].startswith("docker buildx build --builder bigbox ")
    assert (
        f"dry run: a real run would GET https://localhost:5000/v2/{name}/manifests/dev "
        "(HTTPS, unverified: an insecure registry of the daemon; a pull token" in dry.stderr
    )
    assert (
        f"warning: {missing} not found: install docker (as root on Debian or Ubuntu: make "
        "engine) or set DOCKER to its path (a real run "
        "stops here)" in dry.stderr.splitlines()
    )
    assert dry.stderr.count("not found") == 1
    assert [line for line in dry.stderr.splitlines() if line.startswith("+ ")] == []
