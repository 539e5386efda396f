"""--pull and --cache-from/--cache-to against the real engine (docker 20.10, BuildKit built in, no
buildx plugin), and what a build that needs buildx says there."""

from __future__ import annotations

import json
import re
import secrets

import pytest

pytestmark = pytest.mark.e2e


def tiny_args(dockerfile, *flags) -> list:
    return ["-f", dockerfile, "--context", dockerfile.parent, *flags]


def test_pull_without_a_reachable_registry_says_what_pull_needs(project, tiny_context, unique,
                                                                 images):
    dockerfile = tiny_context()
    result = project.script("--env", "dev", "--no-latest", "--image-name", unique("pull"),
                            *tiny_args(dockerfile, "--pull"))
    if result.returncode == 0:
        images.track_result(result)
        pytest.skip("the base image's registry is reachable here: --pull succeeded")
    assert result.returncode == 1, result.describe()
    assert "pull: always pull the FROM images (--pull)" in result.stderr
    assert "load metadata for docker.io/library/python:3.11-slim" in result.stderr  # docker's own
    assert result.error_lines() == [
        "error: docker build failed (exit 1); its output is above; with --pull, docker must reach "
        "the registry of every FROM image: check the network and registry login, or drop --pull "
        "to build from the local copy"]


def test_inline_cache_pushed_then_imported_with_a_registry_cache_spec(project, tiny_context, unique,
                                                                      images, e2e_env,
                                                                      plain_registry):
    name = unique("cache")
    uri = images.track_repository(f"{e2e_env['E2E_REGISTRY']}/{name}")
    dockerfile = tiny_context("ARG NONCE", 'RUN echo "$NONCE" > /nonce')
    nonce = f"NONCE={secrets.token_hex(8)}"

    first = project.script("--env", "dev", "--no-latest", "--registry", uri, "--push",
                           "--cache-to", "type=inline", "--build-arg", nonce,
                           *tiny_args(dockerfile)).assert_ok()
    images.track_result(first)
    assert "cache to: type=inline (plain docker build: BUILDKIT_INLINE_CACHE=1)" in first.stderr
    manifest = plain_registry.manifest(name, "dev")
    status, _, body = plain_registry.request(
        f"/v2/{name}/blobs/{manifest.body['config']['digest']}")
    assert status == 200
    assert "moby.buildkit.cache.v0" in json.loads(body)  # the inline cache travelled with the image

    # buildx's spelling; docker 20.10 itself would split it at the comma and import nothing
    second = project.script("--env", "dev", "--no-latest", "--image-name", unique("cache-from"),
                            "--cache-from", f"type=registry,ref={uri}:dev", "--build-arg", nonce,
                            *tiny_args(dockerfile)).assert_ok()
    images.track_result(second)
    assert f"cache from: {uri}:dev" in second.stderr
    assert f" --cache-from {uri}:dev " in second.stderr  # the command as run
    importing = re.findall(r"^#\d+ importing cache manifest from (.*)$", second.stderr, re.M)
    assert importing == [f"{uri}:dev"], second.describe()
    assert "ERROR" not in second.stderr, second.describe()


def test_a_build_that_needs_buildx_stops_before_anything_else(project, tiny_context, unique, docker):
    if docker("buildx", "version").returncode == 0:
        pytest.skip("this docker client has buildx")
    result = project.script("--env", "dev", "--builder", "remote", "--image-name", unique("bx"),
                            *tiny_args(tiny_context()))
    assert result.returncode == 1
    assert result.error_lines()[0].startswith(
        "error: this build needs docker buildx (for --builder remote), and this docker client has "
        "no buildx: install the buildx plugin")
    assert "+ docker buildx build" not in result.stderr  # nothing was built
