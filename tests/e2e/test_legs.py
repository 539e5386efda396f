"""What each leg exists for, against its real client and engine (conftest.py's ``leg``):

* modern (docker 23+, ``docker build`` is buildx): every pushed tag is a single image manifest at
  the registry's API, not an index with provenance, with and without ``--builder default``;
* remote (a second engine over TCP): ``DOCKER_CONTEXT=remote``, ``DOCKER_HOST=tcp://...``,
  ``--builder remote`` and ``BUILDX_BUILDER=remote`` from the default context each build there, and the summary, smoke test, scan
  and push find the image there; the local engine gets nothing;
* multiplatform (docker 26, containerd image store): a two-platform index pushed and verified at
  the registry's API; ``--platform linux/amd64`` stays a single image manifest; a registry cache
  export lands in the registry; on every other leg (the classic image store) two platforms and a
  cache export stop before the build with the reason.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess

import pytest

from .support import BASE_IMAGE, planned_refs, tags_of

pytestmark = pytest.mark.e2e

IMAGE_MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
)
SAGEMAKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = (
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
)
PINNED_RE = re.compile(r"^(\S+)@(sha256:[0-9a-f]{64})$", re.M)
TWO_PLATFORMS = "linux/amd64,linux/arm64"


def tiny_args(dockerfile, *flags) -> list:
    return ["-f", dockerfile, "--context", dockerfile.parent, *flags]


def assert_single_image_manifests(registry, repository: str, tags) -> dict:
    """Each tag is one image manifest (layers, no ``manifests``); returns tag -> manifest."""
    found = {}
    for tag in tags:
        manifest = registry.manifest(repository, tag)
        assert manifest is not None, f"{repository}:{tag} is not in the registry"
        # a push for SageMaker (no --not-for-sagemaker): the one shape SageMaker pulls
        assert manifest.media_type == SAGEMAKER_MANIFEST, (tag, manifest.media_type)
        assert "manifests" not in manifest.body and manifest.body.get("layers"), (
            tag,
            manifest.body,
        )
        found[tag] = manifest
    return found


def config_of(registry, repository: str, manifest) -> dict:
    status, _, body = registry.request(
        f"/v2/{repository}/blobs/{manifest.body['config']['digest']}"
    )
    assert status == 200
    return json.loads(body)


@pytest.fixture
def scratch_context(tmp_path, token):
    """A ``FROM scratch`` + ``COPY`` build context: builds for any platform without emulation."""
    directory = tmp_path / "scratch"
    directory.mkdir()
    (directory / "hello.txt").write_text(f"ragbuild e2e {token}\n")
    dockerfile = directory / "Dockerfile"
    dockerfile.write_text("FROM scratch\nCOPY hello.txt /hello.txt\n")
    return dockerfile


# --- modern: docker build is buildx --------------------------------------------------------------


@pytest.mark.legs("modern", "multiplatform")
@pytest.mark.parametrize(
    "builder", [[], ["--builder", "default"]], ids=["no-builder", "builder-default"]
)
def test_buildx_client_pushes_single_image_manifests(
    project, tiny_context, unique, images, e2e_env, plain_registry, builder
):
    name = unique("single")
    uri = images.track_repository(f"{e2e_env['E2E_REGISTRY']}/{name}")
    dockerfile = tiny_context(f'LABEL org.ragbuild.e2e.case="{name}"')
    result = project.script(
        "--env", "dev", "--registry", uri, "--push", *builder, *tiny_args(dockerfile)
    ).assert_ok()
    images.track_result(result)
    build = [
        line
        for line in result.stderr.splitlines()
        if re.match(
            r"\+ ([A-Z_]+=\S+ )*docker (--context \S+ )?(buildx )?build (--builder \S+ )?-f ", line
        )
    ]
    # buildx's default attestations are off: by flag (docker buildx build) or by the variable
    # buildx reads (docker build, which is buildx on this client)
    assert len(build) == 1 and (
        "--provenance=false --sbom=false" in build[0]
        or "BUILDX_NO_DEFAULT_ATTESTATIONS=1 " in build[0]
    ), result.describe()
    if builder:
        assert build[0].startswith("+ docker --context default buildx build --builder default ")
    refs = planned_refs(result)
    manifests = assert_single_image_manifests(plain_registry, name, tags_of(refs))
    assert len({m.digest for m in manifests.values()}) == 1
    assert PINNED_RE.search(result.stdout)[2] == next(iter(manifests.values())).digest


# --- remote: a second engine over TCP ------------------------------------------------------------

REMOTE_WAYS = {
    "docker-context": ({}, []),  # the leg's own: DOCKER_CONTEXT=remote
    "docker-host": ({"DOCKER_CONTEXT": None, "DOCKER_HOST": "{host}"}, []),
    "builder": ({"DOCKER_CONTEXT": None}, ["--builder", "remote"]),  # from the default context
    "buildx-builder-env": ({"DOCKER_CONTEXT": None, "BUILDX_BUILDER": "remote"}, []),
}


@pytest.mark.legs("remote")
@pytest.mark.parametrize("way", list(REMOTE_WAYS))
def test_remote_engine_builds_smoke_tests_scans_and_pushes_where_it_built(
    way, project, docker, local_docker, images, unique, e2e_env, pip_args, plain_registry
):
    env, flags = REMOTE_WAYS[way]
    env = {k: (v.format(host=e2e_env["E2E_REMOTE_HOST"]) if v else v) for k, v in env.items()}
    name = unique(f"remote-{way}")
    uri = images.track_repository(f"{e2e_env['E2E_REGISTRY']}/{name}")
    # a scanner that is not docker: it must reach the engine that holds the image
    scan = 'sh -c \'docker image inspect --format "scanned {{.Id}}" "$1"\' scan {image}'
    result = project.script(
        "--env",
        "dev",
        "--no-latest",
        "--registry",
        uri,
        "--push",
        "--smoke-test",
        "--scan-command",
        scan,
        *flags,
        *shlex.split(pip_args),
        env=env,
    ).assert_ok()
    built = images.track_result(result)
    refs = planned_refs(result)

    # the summary, the smoke test and the scan found it on the remote engine
    assert docker.image_id(refs[0]) == built
    assert f"scanned {built}" in result.text
    # the smoke test starts the image the build's --iidfile named (its ID), on that engine
    assert f"smoke test passed: {built} " in result.stderr, result.describe()
    if way in ("builder", "buildx-builder-env"):
        named = "--builder remote" if flags else "BUILDX_BUILDER=remote"
        assert f"docker daemon: docker context 'remote' ({named}: " in result.stderr
        docker_lines = [line for line in result.stderr.splitlines() if line.startswith("+ docker ")]
        assert docker_lines and all(
            line.startswith("+ docker --context remote ") for line in docker_lines
        ), docker_lines
    # pushed from there: the registry holds the planned tags, one image manifest
    manifests = assert_single_image_manifests(plain_registry, name, tags_of(refs))
    assert PINNED_RE.search(result.stdout)[2] == next(iter(manifests.values())).digest
    # the local engine got nothing: no image, no tag, no container of this build
    assert local_docker.image_id(built) is None
    assert local_docker.refs(uri) == []
    assert [c for c in local_docker.containers() if uri in c or built[7:19] in c] == []


# --- multiplatform: an engine that can build an index ---------------------------------------------


@pytest.mark.legs("multiplatform")
def test_two_platforms_push_one_index_verified_at_the_registry(
    project, scratch_context, unique, e2e_env, plain_registry, images
):
    name = unique("multi")
    uri = images.track_repository(
        f"{e2e_env['E2E_REGISTRY']}/{name}"
    )  # the containerd store keeps it
    result = project.script(
        "--env",
        "dev",
        "--no-latest",
        "--registry",
        uri,
        "--push",
        "--platform",
        TWO_PLATFORMS,
        *tiny_args(scratch_context),
    ).assert_ok()
    refs = planned_refs(result)
    assert plain_registry.tags(name) == sorted(tags_of(refs))
    digests = set()
    for tag in tags_of(refs):
        index = plain_registry.manifest(name, tag)
        assert index.media_type in INDEX_TYPES, (tag, index.media_type)
        platforms = sorted(
            f"{m['platform']['os']}/{m['platform']['architecture']}"
            for m in index.body["manifests"]
            if m.get("platform", {}).get("os") != "unknown"
        )
        assert platforms == sorted(TWO_PLATFORMS.split(",")), index.body
        for child in index.body["manifests"]:
            image = plain_registry.manifest(name, child["digest"])
            assert image.media_type in IMAGE_MANIFEST_TYPES and image.body.get("layers")
        digests.add(index.digest)
    assert len(digests) == 1
    assert PINNED_RE.search(result.stdout)[2] == digests.pop()


@pytest.mark.legs("multiplatform")
def test_one_platform_for_sagemaker_stays_a_single_image_manifest(
    project, scratch_context, unique, images, e2e_env, plain_registry
):
    name = unique("amd64")
    uri = images.track_repository(f"{e2e_env['E2E_REGISTRY']}/{name}")
    result = project.script(
        "--env",
        "dev",
        "--no-latest",
        "--registry",
        uri,
        "--push",
        "--platform",
        "linux/amd64",
        *tiny_args(scratch_context),
    ).assert_ok()
    manifests = assert_single_image_manifests(plain_registry, name, tags_of(planned_refs(result)))
    for manifest in manifests.values():
        config = config_of(plain_registry, name, manifest)
        assert (config["os"], config["architecture"]) == ("linux", "amd64")


@pytest.mark.legs("multiplatform")
def test_registry_cache_export_lands_in_the_registry(
    project, scratch_context, unique, images, e2e_env, plain_registry
):
    """The docker driver on the containerd image store exports a registry cache."""
    name = unique("cache")
    uri = images.track_repository(f"{e2e_env['E2E_REGISTRY']}/{name}")
    result = project.script(
        "--env",
        "dev",
        "--no-latest",
        "--image-name",
        name,
        "--cache-to",
        f"type=registry,ref={uri}:buildcache,mode=max",
        *tiny_args(scratch_context),
    ).assert_ok()
    images.track_result(result)
    assert re.search(r"^#\d+ writing cache manifest sha256:", result.stderr, re.M), (
        result.describe()
    )
    assert plain_registry.tags(name) == ["buildcache"]
    assert plain_registry.manifest(name, "buildcache").body.get(
        "manifests"
    ) or plain_registry.manifest(name, "buildcache").body.get("layers")


CANNOT = {
    "two-platforms": (
        ["--registry", "{uri}", "--push", "--platform", TWO_PLATFORMS],
        f"--platform {TWO_PLATFORMS} builds an image index",
    ),
    "cache-export": (
        ["--image-name", "{name}", "--cache-to", "type=registry,ref={uri}:buildcache"],
        "--cache-to type=registry,ref={uri}:buildcache exports a build cache",
    ),
}


@pytest.mark.legs("legacy", "modern", "remote")
@pytest.mark.parametrize("what", list(CANNOT))
def test_what_the_classic_image_store_cannot_stops_before_the_build(
    what, project, scratch_context, unique, e2e_env, docker, plain_registry
):
    name = unique("cannot")
    uri = f"{e2e_env['E2E_REGISTRY']}/{name}"
    flags, said = CANNOT[what]
    result = project.script(
        "--env", "dev", *[f.format(uri=uri, name=name) for f in flags], *tiny_args(scratch_context)
    )
    assert result.returncode == 1, result.describe()
    assert "Traceback" not in result.text
    errors = result.error_lines()
    assert len(errors) == 1 and result.stderr.rstrip().splitlines()[-1] == errors[0]
    assert errors[0].startswith(
        f"error: {said.format(uri=uri)}, and the selected buildx builder "
        "uses the docker driver on an engine with the classic image "
        "store, which cannot:"
    ), errors[0]
    assert not re.search(r"^\+ .*buildx build ", result.stderr, re.M), result.describe()
    assert plain_registry.tags(name) == [] and docker.refs(name) == []


@pytest.mark.legs("modern")
def test_the_machines_own_docker_builds_with_the_plugin_installed(
    project, unique, images, docker, pip_args
):
    """No DOCKER: ragbuild starts `docker` from PATH, and with the buildx plugin installed
    system-wide a Docker 23+ client there builds (``make build-dev`` as a user types it)."""
    import shutil

    own = shutil.which("docker", path=project.runner.environ()["PATH"])
    assert own, "no docker on PATH"
    result = project.make(
        "build-dev",
        f"ARGS=--image-name {unique('own')} --no-latest {pip_args}",
        env={"DOCKER": None},
    )
    if result.returncode == 0:
        images.track_result(result)
    assert result.returncode == 0, f"{own}: {result.describe()}"


@pytest.mark.legs("modern")
def test_a_classic_builder_option_after_the_double_dash_is_named(project, tiny_context, unique):
    """On this leg's client docker build is buildx, which refuses --disable-content-trust: one
    error line says so and what to do, after docker's own "unknown flag"."""
    dockerfile = tiny_context(f'LABEL org.ragbuild.e2e.case="{unique("dct")}"')
    result = project.script(
        *tiny_args(dockerfile, "--env", "dev", "--image-name", unique("dct")),
        "--",
        "--disable-content-trust",
    )
    assert result.returncode == 1, result.describe()
    assert "unknown flag: --disable-content-trust" in result.stderr, result.describe()
    errors = result.error_lines()
    assert len(errors) == 1 and re.match(
        r"error: this docker client \(\d+\.\S+\) builds with buildx, which refuses "
        r"--disable-content-trust \(\"unknown flag\"\): .* drop it, or set DOCKER",
        errors[0],
    ), errors


@pytest.mark.legs("remote")
def test_builder_remote_imports_a_registry_cache_another_engine_pushed(
    project, tiny_context, unique, images, e2e_env, docker, local_docker
):
    """--help's example (`--builder remote --cache-from type=registry,ref=<uri>:cache`): the local
    engine pushes an image with its inline cache; the remote engine's build imports it and runs
    no step again (what lets every CI runner reuse the layers). Both engines build FROM one image,
    `docker save`d from the local engine into `docker load` on the remote one: the case does not
    depend on how the harness (or a contributor) gave each engine its python:3.11-slim."""
    name = unique("cache-across")
    uri = f"{e2e_env['E2E_REGISTRY']}/{name}"
    base = f"{unique('cache-base')}:1"
    assert local_docker("tag", BASE_IMAGE, base).returncode == 0
    try:
        save = subprocess.Popen(
            [local_docker.binary, "save", base],
            stdout=subprocess.PIPE,
            env=local_docker.runner.environ({}),
        )
        loaded = subprocess.run(
            [docker.binary, "load", "-q"],
            stdin=save.stdout,
            capture_output=True,
            text=True,
            env=docker.runner.environ({}),
        )
        save.stdout.close()
        assert save.wait() == 0 and loaded.returncode == 0, loaded.stderr
        cache_across_engines(
            project, tiny_context, images, e2e_env, docker, local_docker, name, uri, base
        )
    finally:
        docker.quiet("image", "rm", base)
        local_docker.quiet("image", "rm", base)


def cache_across_engines(
    project, tiny_context, images, e2e_env, docker, local_docker, name, uri, base
):
    dockerfile = tiny_context("ARG NONCE", 'RUN echo "$NONCE" > /nonce')
    dockerfile.write_text(
        dockerfile.read_text().replace(f"FROM {BASE_IMAGE}\n", f"FROM {base}\n", 1)
    )
    assert dockerfile.read_text().startswith(f"FROM {base}\n")
    nonce = f"NONCE={name}"
    local = {"DOCKER_CONTEXT": None, "DOCKER": "/usr/bin/docker"}
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
        env=local,
    ).assert_ok()
    local_id = first.built_id()
    try:
        second = project.script(
            "--env",
            "dev",
            "--no-latest",
            "--image-name",
            f"{name}-remote",
            "--builder",
            "remote",
            "--cache-from",
            f"type=registry,ref={uri}:dev",
            "--build-arg",
            nonce,
            *tiny_args(dockerfile),
            env={"DOCKER_CONTEXT": None},
        ).assert_ok()
        images.track_result(second)
    finally:
        local_docker.remove_images([local_id])
    assert re.findall(r"^#\d+ importing cache manifest from (.*)$", second.stderr, re.M) == [
        f"{uri}:dev"
    ], second.describe()
    run_step = re.search(r"^(#\d+) \[\d+/\d+\] RUN echo .* > /nonce$", second.stderr, re.M)
    assert run_step and f"{run_step[1]} CACHED" in second.stderr, second.describe()
    assert docker.image_id(f"{name}-remote:dev") == second.built_id()  # on the remote engine
    assert local_docker.refs(f"{name}-remote") == []
