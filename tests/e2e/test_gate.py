"""Issue 24 (items 4 and 5) against the real engine and registry: the SageMaker gate of the smoke
test (tiny images that each break one rule of the serving contract fail naming it; a conforming
one and the worker pass), the manifest shape a SageMaker push must have (an OCI single manifest
from the containerd-store engine fails, the fixed build passes), the wait line and -q."""

from __future__ import annotations

import json
import re

import pytest

from .support import sagemaker_image_lines

SMOKE_LABEL_KEY = "org.ragbuild.smoke=1"

pytestmark = pytest.mark.e2e


@pytest.fixture
def tiny_image(tiny_context, unique, docker, images):
    """``tiny_image(**knobs)``: a built image of ``sagemaker_image_lines(**knobs)``; its ref."""

    def make(**knobs) -> str:
        ref = images.track_repository(unique("gate")) + ":1"
        dockerfile = tiny_context(*sagemaker_image_lines(**knobs))
        docker(
            "build",
            "-q",
            "-t",
            ref,
            "--build-arg",
            "ENVIRONMENT=dev",
            str(dockerfile.parent),
            env={"DOCKER_BUILDKIT": "1"},
        ).assert_ok()
        return ref

    return make


def smoke(project, ref, *flags):
    return project.script("smoke", ref, *flags, timeout=300)


def left_running(docker, ref):
    return [line for line in docker.containers(f"label={SMOKE_LABEL_KEY}") if ref in line]


@pytest.mark.every_leg
def test_a_conforming_tiny_image_passes_the_gate_with_its_figures(project, tiny_image, docker):
    ref = tiny_image()
    result = smoke(project, ref, "--expect-env", "dev").assert_ok()
    figures = json.loads(result.stdout)
    assert figures["image"] == ref and figures["invocations_status"] == 200
    assert figures["ping_seconds"] < 2 and figures["stop_seconds"] < 30
    assert figures["moved_port"] == 8090
    assert "smoke test passed: " in result.stderr and "SageMaker's contract held" in result.stderr
    assert "--tmpfs /opt/ml/model:ro" in result.stderr  # the model directory, read-only
    assert "SAGEMAKER_BIND_TO_PORT=8090" in result.stderr
    assert left_running(docker, ref) == []


@pytest.mark.parametrize(
    "knobs, rule, figure",
    [
        ({"ping_seconds": 3}, "ping-2s", r"/ping took 3\.\d s"),
        ({"handles_term": False}, "sigterm-30s", r"still running 3\d s after SIGTERM"),
        ({"as_serve": False}, "serve", r'exec: "serve": executable file not found'),
        (
            {"binds": False},
            "bind-to-port",
            r"SAGEMAKER_BIND_TO_PORT=8090, no 200 within 8 s .*it "
            r"answers on 8080 instead \(200\)",
        ),
    ],
    ids=["ping-3s", "ignores-sigterm", "without-serve", "ignores-bind-port"],
)
def test_an_image_that_breaks_a_rule_fails_naming_it(
    project, tiny_image, docker, knobs, rule, figure
):
    ref = tiny_image(**knobs)
    result = smoke(project, ref, "--timeout", "8")
    assert result.returncode == 1, result.describe()
    errors = result.error_lines()
    assert len(errors) == 1, result.describe()
    assert f"[{rule}]" in errors[0] and re.search(figure, errors[0]), result.describe()
    assert (
        "docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-inference-code.html" in errors[0]
    )
    assert left_running(docker, ref) == []


def test_the_worker_image_passes_the_gate(worker_image, project):
    """The worker (built with the harness's wheel mirror): serve honours SAGEMAKER_BIND_TO_PORT,
    uvicorn as PID 1 exits on SIGTERM, /invocations answers."""
    ref, sha = worker_image
    result = smoke(project, ref, "--expect-env", "dev", "--expect-commit", sha).assert_ok()
    figures = json.loads(result.stdout)
    assert figures["invocations_status"] == 200, result.describe()
    assert figures["health"]["git_commit"] == sha
    assert figures["stop_seconds"] < 5  # uvicorn exits at once, not at SageMaker's SIGKILL


@pytest.fixture(scope="module")
def worker_image(new_project, docker, pip_args, token):
    import shlex

    project = new_project("gate-worker", image_name=f"ragbuild-e2e-{token}-gate-worker")
    built = project.script("--env", "dev", *shlex.split(pip_args)).assert_ok()
    ref = f"ragbuild-e2e-{token}-gate-mine:1"
    docker("tag", built.built_id(), ref).assert_ok()
    yield ref, project.sha
    docker.quiet("image", "rm", "--force", built.built_id())


def test_quiet_prints_only_the_result_and_errors(project, tiny_image):
    ref = tiny_image()
    passed = smoke(project, ref, "-q").assert_ok()
    assert passed.stderr == "", passed.describe()
    assert json.loads(passed.stdout)["image"] == ref
    failed = smoke(project, tiny_image(ping_seconds=3), "--quiet", "--timeout", "8")
    assert failed.returncode == 1 and failed.stdout == ""
    assert failed.stderr.startswith("error: SageMaker contract: GET /ping answers within 2 s")
    assert "+ docker" not in failed.stderr


def test_the_wait_line_says_what_for_instead_of_repeated_inspects(project, tiny_image):
    """stderr is a pipe here (a log): a line every few seconds while /ping is not up yet, and no
    `+ docker inspect` per poll."""
    ref = tiny_image(delay=12)
    result = smoke(project, ref, "--timeout", "30").assert_ok()
    waits = re.findall(
        r"^waiting for GET /ping on port 8080 of \S+ to answer 200: (\d+)s of at "
        r"most 30s$",
        result.stderr,
        re.M,
    )
    assert len(waits) >= 2 and [int(w) for w in waits] == sorted(int(w) for w in waits), (
        result.describe()
    )
    assert "+ docker inspect" not in result.stderr


# --- the manifest shape -------------------------------------------------------------------------


def shape(e2e_env, ref):
    """ragbuild's own check of ``ref`` in the plain registry (what push and promote ask)."""
    from ragbuild import registry
    from ragbuild import shape as rules
    from ragbuild.docker_config import Credentials
    from ragbuild.reference import parse_registry

    target = parse_registry(ref.rsplit(":", 1)[0])
    session = registry.Session(target, Credentials(target.host), None)
    session.base = f"http://{target.host}"  # the plain registry is loopback, plain HTTP
    return rules.check_shape(session, ref, "linux/amd64")


@pytest.mark.legs("multiplatform")
def test_an_oci_single_manifest_fails_the_shape_and_the_fixed_build_passes(
    tiny_context, unique, docker, images, e2e_env
):
    repository = images.track_repository(f"{e2e_env['E2E_REGISTRY']}/{unique('shape')}")
    context = tiny_context().parent
    for tag, oci in (("oci", "true"), ("fixed", "false")):
        docker(
            "buildx",
            "build",
            "--provenance=false",
            "--sbom=false",
            "--output",
            f"type=image,name={repository}:{tag},oci-mediatypes={oci},push=true",
            str(context),
        ).assert_ok()
    problem = shape(e2e_env, f"{repository}:oci")
    assert (
        problem is not None
        and "is a single application/vnd.oci.image.manifest.v1+json "
        "manifest, not a Docker v2 schema 2 manifest"
        in problem
    )
    assert "oci-mediatypes=false" in problem
    assert shape(e2e_env, f"{repository}:fixed") is None


@pytest.mark.legs("multiplatform")
def test_a_sagemaker_push_from_the_containerd_store_is_a_docker_v2_manifest_of_its_platform(
    project, tiny_context, unique, images, e2e_env
):
    """ragbuild's own single-platform push on the containerd-store engine passes the shape rule,
    its platform read from the pushed config."""
    uri = images.track_repository(f"{e2e_env['E2E_REGISTRY']}/{unique('shapepush')}")
    dockerfile = tiny_context()
    result = project.script(
        "--env",
        "dev",
        "--no-latest",
        "-f",
        dockerfile,
        "--context",
        dockerfile.parent,
        "--registry",
        uri,
        "--push",
        "--platform",
        "linux/amd64",
    ).assert_ok()
    assert "pushed and verified" in result.stderr
    assert shape(e2e_env, f"{uri}:dev") is None
