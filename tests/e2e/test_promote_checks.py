"""Issue 24's last rules against the real engine and the plain registry: a --smoke-test build's
metadata records the SageMaker gate (what was tested, the figures, when); push IMAGE and promote
check the image's platform before anything is written (an arm64 image, built FROM scratch so no
emulation is needed, against the default linux/amd64); push IMAGE run again over its own version
tags is a no-op for them. What the registry holds is read with its own HTTP API, what it was
sent with its access log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .support import sagemaker_image_lines
from .test_promote import AccessLog
from .test_push import pinned_line

pytestmark = pytest.mark.e2e

TS = "20260102-030405"


def scratch_image(docker, images, tmp_path, ref: str, platform: str) -> str:
    """``ref``: an image FROM scratch for ``platform`` (one file, no RUN: any engine builds it
    for any platform) with the facts push IMAGE reads (BUILD_TIMESTAMP, GIT_COMMIT); its ID."""
    context = tmp_path / f"scratch-{platform.replace('/', '-')}"
    context.mkdir(parents=True)
    (context / "hello").write_text(f"{ref}\n")
    (context / "Dockerfile").write_text(
        f"FROM scratch\nCOPY hello /hello\nENV BUILD_TIMESTAMP={TS} GIT_COMMIT=abc1234\n"
    )
    images.track_repository(ref.rsplit(":", 1)[0])
    docker(
        "build", "-q", "--platform", platform, "-t", ref, str(context), env={"DOCKER_BUILDKIT": "1"}
    ).assert_ok()
    return docker("image", "inspect", "--format", "{{.Id}}", ref).assert_ok().stdout.strip()


def error_lines(result) -> list:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def test_a_smoke_tested_build_records_the_gate_in_its_metadata(
    project, tiny_context, unique, images, tmp_path
):
    name = images.track_repository(unique("gaterec"))
    dockerfile = tiny_context(*sagemaker_image_lines())
    metadata = tmp_path / "build.json"
    result = project.script(
        "--env",
        "dev",
        "-f",
        dockerfile,
        "--context",
        dockerfile.parent,
        "--image-name",
        name,
        "--smoke-test",
        "--metadata-file",
        metadata,
    ).assert_ok()
    image_id = images.track_result(result)
    doc = json.loads(metadata.read_text())
    gate = doc["gate"]
    assert gate["image"] == image_id == doc["image_id"]  # what was tested: the image's ID
    assert (gate["ran"], gate["passed"], gate["test"]) == (True, True, "sagemaker")
    figures = gate["figures"]
    assert 0 <= figures["ping_seconds"] < 2 and 0 <= figures["moved_ping_seconds"] < 2
    assert figures["invocations_status"] < 500 and figures["invocations_seconds"] < 60
    assert 0 <= figures["stop_seconds"] < 30 and figures["moved_port"] == 8090
    assert gate["at"].endswith("Z") and figures["tested_at"] >= gate["at"]  # when (UTC)
    assert gate["seconds"] >= figures["ready_seconds"] > 0
    # the figures the log printed are the ones recorded
    assert f"/ping in {figures['ping_seconds']:.2f}s" in result.stderr


def test_push_image_and_promote_check_the_images_platform_before_any_write(
    project, docker, images, unique, e2e_env, plain_registry, tmp_path
):
    registry = e2e_env["E2E_REGISTRY"]
    name = unique("armsrc")
    uri = images.track_repository(f"{registry}/{name}")
    arm = f"{uri}:src"
    scratch_image(docker, images, tmp_path, arm, "linux/arm64")
    log = AccessLog(Path(e2e_env["RAGBUILD_E2E_STATE"]) / "registry-plain.log", name)

    # push IMAGE: the local image's platform (docker image inspect), with no --platform given
    pushed = project.script("push", arm, "--registry", uri, "--env", "dev")
    assert pushed.returncode == 1, pushed.describe()
    (line,) = error_lines(pushed)
    assert "is an image for linux/arm64, not the planned linux/amd64 (the shape rule" in line
    assert "nothing was pushed" in line and "Traceback" not in pushed.stderr
    assert "+ docker push" not in pushed.stderr and log.writes() == []
    assert plain_registry.tags(name) == []

    # promote: SOURCE's config blob in the registry says arm64; nothing is tested or written
    docker("push", arm).assert_ok()
    digest = plain_registry.manifest(name, "src").digest
    log = AccessLog(Path(e2e_env["RAGBUILD_E2E_STATE"]) / "registry-plain.log", name)
    metadata = tmp_path / "promote.json"
    promoted = project.script("promote", arm, "--env", "staging", "--metadata-file", metadata)
    assert promoted.returncode == 1, promoted.describe()
    (line,) = error_lines(promoted)
    assert line.startswith(f"error: {arm} is an image for linux/arm64, not the planned linux/amd64")
    assert "nothing was written" in line
    assert "smoke test" not in promoted.stderr and " pull " not in promoted.stderr  # no gate
    assert log.writes() == [] and plain_registry.tags(name) == ["src"]
    doc = json.loads(metadata.read_text())
    assert doc["failed_step"] == "pre-flight" and doc["source"]["digest"] == digest

    # the plan says arm64: the same source goes through (untested here: an arm64 gate needs
    # an arm64 engine)
    ok = project.script(
        "promote", arm, "--env", "staging", "--platform", "linux/arm64", "--no-gate", "e2e"
    ).assert_ok()
    assert pinned_line(ok) == f"{uri}@{digest}"
    assert plain_registry.manifest(name, "staging").digest == digest


def test_push_image_run_again_leaves_its_own_version_tags(
    project, docker, images, unique, e2e_env, plain_registry, tmp_path
):
    registry = e2e_env["E2E_REGISTRY"]
    name = unique("pushtwice")
    uri = images.track_repository(f"{registry}/{name}")
    image_id = scratch_image(docker, images, tmp_path, f"{name}:local", "linux/amd64")
    images.track(image_id)
    args = ("push", image_id, "--registry", uri, "--env", "prod", "--version", "3.1.4")
    first = project.script(*args).assert_ok()
    pinned = pinned_line(first)
    tags = ["v3.1.4", "3.1.4", f"prod-{TS}", "prod", "git-abc1234", "latest"]
    assert plain_registry.tags(name) == sorted(tags)

    # run again (as after a push that stopped halfway, its version tags already there)
    again = project.script(*args).assert_ok()
    assert f"{uri}:v3.1.4, {uri}:3.1.4: already this image in the registry" in again.stderr, (
        again.describe()
    )
    assert "the registry already has" not in again.stderr
    assert pinned_line(again) == pinned  # read back: every tag at the same digest
    assert plain_registry.manifest(name, "v3.1.4").body["config"]["digest"] == image_id

    # another image under the same version still stops the run, nothing pushed
    other = scratch_image(docker, images, tmp_path / "other", f"{name}:other", "linux/amd64")
    assert other != image_id
    moved = project.script("push", other, "--registry", uri, "--env", "prod", "--version", "3.1.4")
    assert moved.returncode == 1, moved.describe()
    assert f"the registry already has {uri}:v3.1.4" in moved.stderr
    assert plain_registry.manifest(name, "v3.1.4").body["config"]["digest"] == image_id
