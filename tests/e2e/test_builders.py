"""--pull and --cache-from/--cache-to against the real engine (the first leg: docker 20.10, BuildKit
built in), and what a build that needs buildx says on a client without the plugin.

No case here depends on what the machine happens to have (a reachable Docker Hub, a buildx
plugin), so none needs to skip (under CI=true an e2e test never skips)."""

from __future__ import annotations

import json
import re
import secrets
import stat

import pytest

from .support import BASE_IMAGE

pytestmark = pytest.mark.e2e


def tiny_args(dockerfile, *flags) -> list:
    return ["-f", dockerfile, "--context", dockerfile.parent, *flags]


@pytest.fixture
def unreachable_base(docker, unique):
    """The base image under a name on a registry nobody answers (port 9 of 127.0.0.1): --pull
    must fail there on every machine, reachable Docker Hub or not. Only the name is removed
    afterwards, never the base image."""
    ref = f"127.0.0.1:9/{unique('unreachable')}/python:3.11-slim"
    docker("tag", BASE_IMAGE, ref).assert_ok()
    yield ref
    docker.quiet("image", "rm", ref)


def test_pull_without_a_reachable_registry_says_what_pull_needs(
    project, unique, images, unreachable_base, tmp_path
):
    context = tmp_path / "pull"
    context.mkdir()
    dockerfile = context / "Dockerfile"
    dockerfile.write_text(f"FROM {unreachable_base}\nLABEL org.ragbuild.e2e.case=pull\n")
    result = project.script(
        "--env",
        "dev",
        "--no-latest",
        "--image-name",
        unique("pull"),
        *tiny_args(dockerfile, "--pull"),
    )
    if result.returncode == 0:
        images.track_result(result)
    assert result.returncode == 1, result.describe()
    assert "pull: always pull the FROM images (--pull)" in result.stderr
    assert f"load metadata for {unreachable_base}" in result.stderr  # docker's own
    # the cause read from docker's output (build_failure): the image, why, and the fix
    errors = result.error_lines()
    assert len(errors) == 1 and errors[0].startswith(
        f"error: docker build failed (exit 1): the engine cannot get the base image "
        f"{unreachable_base} (its registry does not answer the engine): --pull makes the engine "
        "ask the registry even for an image it has: drop --pull to build from its copy"
    ), result.describe()


def test_inline_cache_pushed_then_imported_with_a_registry_cache_spec(
    project, tiny_context, unique, images, e2e_env, plain_registry
):
    name = unique("cache")
    uri = images.track_repository(f"{e2e_env['E2E_REGISTRY']}/{name}")
    dockerfile = tiny_context("ARG NONCE", 'RUN echo "$NONCE" > /nonce')
    nonce = f"NONCE={secrets.token_hex(8)}"

    first = project.script(
        "--env",
        "dev",
        "--no-latest",
        "--registry",
        uri,
        "--push",
        "--cache-to",
        "type=inline",
        "--build-arg",
        nonce,
        *tiny_args(dockerfile),
    ).assert_ok()
    images.track_result(first)
    assert "cache to: type=inline (plain docker build: BUILDKIT_INLINE_CACHE=1)" in first.stderr
    manifest = plain_registry.manifest(name, "dev")
    status, _, body = plain_registry.request(
        f"/v2/{name}/blobs/{manifest.body['config']['digest']}"
    )
    assert status == 200
    assert "moby.buildkit.cache.v0" in json.loads(body)  # the inline cache travelled with the image

    # buildx's spelling; docker 20.10 itself would split it at the comma and import nothing
    second = project.script(
        "--env",
        "dev",
        "--no-latest",
        "--image-name",
        unique("cache-from"),
        "--cache-from",
        f"type=registry,ref={uri}:dev",
        "--build-arg",
        nonce,
        *tiny_args(dockerfile),
    ).assert_ok()
    images.track_result(second)
    assert f"cache from: {uri}:dev" in second.stderr
    assert f" --cache-from {uri}:dev " in second.stderr  # the command as run
    importing = re.findall(r"^#\d+ importing cache manifest from (.*)$", second.stderr, re.M)
    assert importing == [f"{uri}:dev"], second.describe()
    assert "ERROR" not in second.stderr, second.describe()


@pytest.fixture
def docker_without_buildx(docker, e2e_env, tmp_path) -> str:
    """The harness's client when it has no buildx (docker 20.10 here); otherwise a wrapper that
    answers `docker buildx ...` as a client without the plugin does and runs the rest."""
    if docker("buildx", "version").returncode != 0:
        return docker.binary
    wrapper = tmp_path / "docker"
    # buildx as any word: `docker --context NAME buildx ...` too
    wrapper.write_text(
        '#!/bin/sh\nfor word; do [ "$word" = buildx ] || continue\n'
        "  echo \"docker: 'buildx' is not a docker command.\" >&2\n"
        "  echo \"See 'docker --help'\" >&2\n  exit 1\ndone\n"
        f'exec {docker.binary} "$@"\n'
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return str(wrapper)


def test_a_build_that_needs_buildx_stops_before_anything_else(
    project, tiny_context, unique, docker_without_buildx
):
    result = project.script(
        "--env",
        "dev",
        "--builder",
        "remote",
        "--image-name",
        unique("bx"),
        *tiny_args(tiny_context()),
        env={"DOCKER": docker_without_buildx},
    )
    assert result.returncode == 1
    assert result.error_lines()[0].startswith(
        "error: this build needs docker buildx (for --builder remote), and this docker client has "
        "no buildx: install the buildx plugin"
    )
    assert "+ docker buildx build" not in result.stderr  # nothing was built
