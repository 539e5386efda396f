"""A one-line change under src/ rebuilds only the source layer: the dependency install stays cached.

Read from BuildKit's plain progress output (BUILDKIT_PROGRESS=plain, set for the whole suite):
each step is announced as ``#10 [builder 4/4] RUN ...`` and ends as ``#10 CACHED`` or
``#10 DONE 3.6s``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path

import pytest

from .support import BASE_IMAGE

pytestmark = pytest.mark.e2e

STEP_RE = re.compile(r"^#(\d+) (\[[^\]]+\] .*)$", re.M)
STATUS_RE = re.compile(r"^#(\d+) (CACHED|DONE|ERROR|CANCELED)\b", re.M)


def build_steps(output: str) -> dict:
    """Instruction (``RUN ...``, ``COPY ...``) -> set of its statuses, for the Dockerfile's steps."""
    titles = {num: title for num, title in STEP_RE.findall(output)}
    statuses = {}
    for num, status in STATUS_RE.findall(output):
        statuses.setdefault(num, set()).add(status)
    steps = {}
    for num, title in titles.items():
        if title.startswith("[internal]"):
            continue
        instruction = title.split("] ", 1)[1]
        steps.setdefault(instruction, set()).update(statuses.get(num, set()))
    return steps


def step(steps: dict, prefix: str, within: str = "") -> set:
    """The statuses of the one step that starts with ``prefix`` (and holds ``within``)."""
    found = [
        statuses
        for instruction, statuses in steps.items()
        if instruction.startswith(prefix) and within in instruction
    ]
    assert len(found) == 1, f"one step starting {prefix!r} expected among {sorted(steps)}"
    return found[0]


#: The final stage's two dependency layers (Dockerfile): each installs one list of the lock
#: stage, mounted from there.
TRANSITIVE = ("RUN --mount=type=bind,from=builder", "source=/lock/transitive.txt")
DIRECT = ("RUN --mount=type=bind,from=builder", "source=/lock/direct.txt")


def test_a_change_under_src_rebuilds_only_the_source_layer(project, images, unique, pip_args):
    args = f"{pip_args} --image-name {unique('cache')}"
    first = project.make("build-dev", f"ARGS={args}").assert_ok()
    first_id = images.track_result(first)

    source = project.path / "src" / "rag_worker" / "inference.py"
    # a line no earlier run wrote: BuildKit caches by content, across runs
    source.write_text(source.read_text() + f"\n# a one-line change {secrets.token_hex(8)}\n")
    second = project.make("build-dev", f"ARGS={args}").assert_ok()
    second_id = images.track_result(second)
    assert second_id != first_id

    steps = build_steps(second.stderr)
    # the dependency layers (their RUNs mount uv from the builder, a list from the lock stage)
    # and the lock stage's resolution of requirements.txt
    for layer in (TRANSITIVE, DIRECT):
        assert step(steps, *layer) == {"CACHED"}, second.describe()
    assert step(steps, "RUN --mount=type=bind,source=src/rag_worker/requirements.txt") == {"CACHED"}
    for cached in (
        "RUN mkdir -p /opt/uv",
        "RUN --mount=type=secret,id=ragbuild-host-ca",
        "RUN /opt/uv/pip-to-uv",
        "RUN printf",
        "RUN groupadd",
        "WORKDIR /app",
    ):
        assert step(steps, cached) == {"CACHED"}, cached
    assert step(steps, "COPY src/ /app/src/") == {"DONE"}, "the changed source was not copied anew"
    # nothing else ran: every other step of the Dockerfile came from the cache
    rebuilt = [
        i for i, s in steps.items() if s != {"CACHED"} and not i.startswith(("FROM", "COPY src/"))
    ]
    assert rebuilt == []


def index_args(project, docker, images, unique, *build_args) -> list:
    """Build the Dockerfile's builder stage with ``build_args``; the uv flags it wrote."""
    tag = unique("uv-flags")
    argv = ["build", "--target", "builder", "-t", tag]
    for arg in build_args:
        argv += ["--build-arg", arg]
    docker(*argv, str(project.path), env={"DOCKER_BUILDKIT": "1"}).assert_ok()
    images.track(docker.image_id(tag))
    done = docker.quiet("run", "--rm", tag, "cat", "/opt/uv/index-args")
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_pip_settings_reach_uv_as_flags(project, docker, images, unique, e2e_env):
    """pip's variables, as build args, become uv's flags (uv reads none of PIP_*): lists split
    on spaces, pip's true values of PIP_NO_INDEX in any case, credentials kept in the URL."""
    mirror = e2e_env["E2E_WHEEL_MIRROR"]  # http://HOST:PORT/
    host = mirror.split("/")[2].split(":")[0]
    got = index_args(
        project,
        docker,
        images,
        unique,
        f"PIP_FIND_LINKS={mirror} /wheels",
        "PIP_NO_INDEX=TRUE",
        f"PIP_TRUSTED_HOST={host} other.invalid:8443",
        "PIP_INDEX_URL=https://user:tok@index.invalid/simple",
        "PIP_EXTRA_INDEX_URL=https://a.invalid/simple https://b.invalid/simple",
    )
    assert got == [
        "--index-url",
        "https://user:tok@index.invalid/simple",
        "--extra-index-url",
        "https://a.invalid/simple",
        "--extra-index-url",
        "https://b.invalid/simple",
        "--find-links",
        mirror,
        "--find-links",
        "/wheels",
        "--allow-insecure-host",
        host,
        "--allow-insecure-host",
        "other.invalid:8443",
        "--no-index",
    ]
    # a false or empty PIP_NO_INDEX is no --no-index (the mirror as the index: pip finds uv
    # through the find-links, its index lookup of the flat directory is a quick 404)
    for false in ("off", "0", ""):
        got = index_args(
            project,
            docker,
            images,
            unique,
            f"PIP_INDEX_URL={mirror}",
            f"PIP_FIND_LINKS={mirror}",
            f"PIP_TRUSTED_HOST={host}",
            f"PIP_NO_INDEX={false}",
        )
        assert got == [
            "--index-url",
            mirror,
            "--find-links",
            mirror,
            "--allow-insecure-host",
            host,
        ], false


def test_a_new_direct_pin_installs_only_the_direct_requirements_again(
    project, images, unique, pip_args, docker
):
    """A pin that adds nothing to what the requirements depend on (pip's wheel, which has no
    dependencies, from the harness's mirror) leaves the lock stage's transitive list as it was:
    that layer, most of the venv, stays cached and is the same layer in both images; the direct
    requirements' layer differs, and the image holds the new pin.

    The final stage starts from a ``serve`` no other run had: BuildKit keys a COPY by its files'
    content, not their mtimes, but the layer it keeps holds the mtimes, so every checkout (another
    worktree, another clone) leaves a cache record of the same key with other layers. Shared with
    earlier runs, the second build could take the direct layer (and the chain below it) from
    another run's record while the first took this run's, and the layers below would differ."""
    args = f"{pip_args} --image-name {unique('pin')}"
    serve = project.path / "src" / "rag_worker" / "serve"
    serve.write_text(serve.read_text() + f"# e2e run {secrets.token_hex(8)}\n")
    built = project.make("build-dev", f"ARGS={args}").assert_ok()
    first = images.track_result(built)
    # this run's chain, made by this run: nothing below the direct layer came from another's
    assert step(build_steps(built.stderr), *TRANSITIVE) == {"DONE"}, built.describe()
    wheels = Path(os.environ.get("RAGBUILD_E2E_CACHE", "/var/cache/ragbuild-e2e")) / "wheels"
    found = sorted(wheels.glob("pip-*-py3-none-any.whl"))
    assert found, f"the harness mirrors pip's wheel in {wheels}"
    version = found[-1].name.split("-")[1]
    requirements = project.path / "src" / "rag_worker" / "requirements.txt"
    requirements.write_text(requirements.read_text() + f"pip=={version}\n")
    second = project.make("build-dev", f"ARGS={args}").assert_ok()
    image = images.track_result(second)
    assert step(build_steps(second.stderr), *TRANSITIVE) == {"CACHED"}, second.describe()
    # the layers, oldest first: the base image's, then COPY serve, RUN groupadd, the transitive
    # layer, the direct layer (then WORKDIR and COPY src/, made again on top of a new layer)
    base, before, after = (layers(docker, ref) for ref in (BASE_IMAGE, first, image))
    transitive = len(base) + 2
    assert before[: transitive + 1] == after[: transitive + 1], (
        "the transitive layer was made again"
    )
    assert before[transitive + 1] != after[transitive + 1], "the direct layer did not change"
    done = docker.quiet(
        "run",
        "--rm",
        "--entrypoint",
        "python",
        image,
        "-c",
        "import importlib.metadata as m, fastapi, uvicorn; print(m.version('pip'))",
    )
    assert done.returncode == 0 and done.stdout.strip() == version, done


def layers(docker, ref: str) -> list:
    """The image's layers (``RootFS.Layers``: diff ids, bottom first)."""
    done = docker.quiet("image", "inspect", "--format", "{{json .RootFS.Layers}}", ref)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
