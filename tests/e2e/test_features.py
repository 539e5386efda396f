"""Issue 7's features where they meet the engine and the registry: ``--metadata-file`` and
``$GITHUB_OUTPUT`` after a real push, the build-context guard on a real build, the ``--scan``
gate before a push, and the semver-channel / latest-policy / build-number tags.

Every build here is ``FROM scratch`` plus one small ``COPY`` (a few hundred bytes: builds and
pushes take well under a second), with a label naming the case so no two cases share an image id
(teardown removes images by id). What ragbuild reports is checked against the engine
(``docker image inspect``, the files an image holds) and the registry's own HTTP API.
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from .support import git, pushed_refs

pytestmark = pytest.mark.e2e

EPOCH = "1700000000"  # 2023-11-14 22:13:20 UTC
TS = "20231114-221320"
FIXED_TIME = {"SOURCE_DATE_EPOCH": EPOCH, "TZ": "UTC"}
BUILD_LINE = "+ DOCKER_BUILDKIT=1 docker build "
PLANNED_RE = re.compile(r"^  - (\S+)$", re.M)
#: The key order of the --metadata-file document (docs/metadata.md).
METADATA_KEYS = [
    "status",
    "failed_step",
    "error",
    "image",
    "refs",
    "pushed_refs",
    "version",
    "environment",
    "git_commit",
    "timestamp",
    "created",
    "image_id",
    "size",
    "labels",
    "build_args",
    "build_options",
    "digests",
    "digest",
    "pinned",
    "gate",
    "steps",
]
CI_NUMBER_VARS = ("BUILD_NUMBER", "GITHUB_RUN_NUMBER", "CI_PIPELINE_IID")


# --- helpers -----------------------------------------------------------------------------------


def scratch_context(directory: Path, case: str, *lines, files=None) -> Path:
    """A context whose Dockerfile is ``FROM scratch``, a label naming ``case``, then ``lines``
    (default: ``COPY hello.txt /``); ``files`` maps relative paths to their text. Returns the
    Dockerfile's path."""
    directory.mkdir(parents=True)
    files = {"hello.txt": f"hello from {case}\n"} if files is None else files
    for rel, text in files.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    body = lines or ("COPY hello.txt /",)
    dockerfile = directory / "Dockerfile"
    dockerfile.write_text(
        "\n".join(("FROM scratch", f'LABEL org.ragbuild.e2e.case="{case}"', *body)) + "\n"
    )
    return dockerfile


def context_args(dockerfile: Path, *flags) -> list:
    return ["-f", dockerfile, "--context", dockerfile.parent, *flags]


def planned_refs(result) -> list:
    refs = PLANNED_RE.findall(result.stderr)
    assert refs, f"no planned tags: {result.describe()}"
    return refs


def tags_of(refs) -> list:
    return [ref.rsplit(":", 1)[1] for ref in refs]


def assert_not_built(result, docker, reference: str) -> None:
    assert BUILD_LINE not in result.stderr, f"docker build ran: {result.describe()}"
    assert docker.refs(reference) == [], f"an image exists under {reference}"


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_github_output(text: str) -> dict:
    """GitHub's ``$GITHUB_OUTPUT`` file: ``name=value`` and ``name<<DELIM`` ... ``DELIM``."""
    outputs, lines = {}, iter(text.splitlines())
    for line in lines:
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            value = []
            for body in lines:
                if body == delimiter:
                    break
                value.append(body)
            else:
                raise AssertionError(f"{name}: delimiter {delimiter!r} never closes:\n{text}")
            outputs[name] = "\n".join(value)
        elif "=" in line:
            name, value = line.split("=", 1)
            outputs[name] = value
    return outputs


def image_files(docker, ref: str, under: str) -> dict:
    """``{relative path: size}`` of the regular files below ``under/`` in the layers of ``ref``
    (read from ``docker save``: no container runs)."""
    saved = subprocess.run(
        [docker.binary, "save", ref], env=docker.runner.environ(), capture_output=True, timeout=120
    )
    assert saved.returncode == 0, saved.stderr.decode(errors="replace")
    found = {}
    prefix = under.strip("/") + "/"
    with tarfile.open(fileobj=io.BytesIO(saved.stdout)) as outer:
        for member in outer.getmembers():
            if not member.isfile():
                continue
            data = outer.extractfile(member).read()
            try:
                layer = tarfile.open(fileobj=io.BytesIO(data))
            except tarfile.TarError:
                continue  # manifest.json, the config, ...
            with layer:
                for entry in layer.getmembers():
                    name = entry.name.lstrip("./")
                    if name.startswith(prefix) and (entry.isfile() or entry.issym()):
                        found[name[len(prefix) :]] = entry.size
    return found


def executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


# --- 1. --metadata-file and $GITHUB_OUTPUT after a real push -----------------------------------


def test_metadata_file_and_github_output_match_the_engine_and_the_registry(
    project, docker, images, unique, e2e_env, plain_registry, tmp_path
):
    registry = e2e_env["E2E_REGISTRY"]
    name = unique("meta")
    uri = images.track_repository(f"{registry}/{name}")
    # OCI labels filled from ragbuild's build args, as the worker's Dockerfile does
    dockerfile = scratch_context(
        tmp_path / "context",
        name,
        "ARG VERSION=unknown",
        "ARG GIT_COMMIT=unknown",
        "ARG BUILD_TIMESTAMP=unknown",
        'LABEL org.opencontainers.image.version="${VERSION}" '
        'org.opencontainers.image.revision="${GIT_COMMIT}" '
        'org.opencontainers.image.created="${BUILD_TIMESTAMP}"',
        "COPY hello.txt /",
    )
    metadata = tmp_path / "m.json"
    github_output = tmp_path / "github-output"
    github_output.write_text("earlier=kept\n")  # appended to, never replaced

    result = project.script(
        *context_args(
            dockerfile,
            "--version",
            "1.2.3",
            "--env",
            "dev",
            "--registry",
            uri,
            "--push",
            "--build-arg",
            "FOO=bar",
            "--build-arg",
            "API_TOKEN=hunter2-not-shown",
            "--metadata-file",
            metadata,
        ),
        env={**FIXED_TIME, "GITHUB_OUTPUT": github_output},
    ).assert_ok()
    image_id = images.track_result(result)
    refs = planned_refs(result)
    sha = project.sha
    assert tags_of(refs) == ["v1.2.3", "1.2.3", f"dev-{TS}", "dev", f"git-{sha}", "latest"]

    doc = json.loads(metadata.read_text())
    assert list(doc) == METADATA_KEYS
    assert (doc["status"], doc["failed_step"], doc["error"]) == ("succeeded", None, None)
    assert doc["image"] == uri
    assert doc["refs"] == refs
    assert doc["pushed_refs"] == refs
    assert (doc["version"], doc["environment"], doc["git_commit"]) == ("1.2.3", "dev", sha)
    assert doc["timestamp"] == TS
    assert doc["created"] == "2023-11-14T22:13:20+00:00"

    # the image: id, size and labels are the engine's
    inspected = docker.inspect(refs[0])
    assert doc["image_id"] == inspected["Id"] == image_id
    assert doc["size"] == inspected["Size"]
    assert doc["labels"] == inspected["Config"]["Labels"]
    labels = doc["labels"]
    assert labels["org.ragbuild.e2e.case"] == name
    assert labels["org.opencontainers.image.version"] == "1.2.3"
    assert labels["org.opencontainers.image.revision"] == sha
    # the Dockerfile's BUILD_TIMESTAMP, or ragbuild's own RFC 3339 label of the same instant
    assert labels["org.opencontainers.image.created"] in (TS, doc["created"])

    # the build args passed, the secret-looking one hidden
    assert doc["build_args"] == {
        "VERSION": "1.2.3",
        "ENVIRONMENT": "dev",
        "GIT_COMMIT": sha,
        "BUILD_TIMESTAMP": TS,
        "FOO": "bar",
        "API_TOKEN": "***",
    }
    assert "hunter2-not-shown" not in metadata.read_text()

    # each ref's digest is the one the registry serves for that tag
    served = {f"{uri}:{tag}": plain_registry.manifest(name, tag) for tag in tags_of(refs)}
    assert None not in served.values(), served
    assert doc["digests"] == {ref: manifest.digest for ref, manifest in served.items()}
    assert plain_registry.tags(name) == sorted(tags_of(refs))
    (digest,) = set(doc["digests"].values())
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest)
    assert doc["digest"] == digest
    assert doc["pinned"] == f"{uri}@{digest}" == result.stdout.strip().splitlines()[-1]
    assert doc["gate"] is None  # no --smoke-test: nothing tested (tests/e2e/test_promote_checks.py)

    # every step that ran, with a wall time, in order; together no longer than the run
    steps = doc["steps"]
    # (no push step when the build pushed: plan.build_pushes)
    how, _ = pushed_refs(result)
    assert list(steps) == [
        "context",
        "pre-flight",
        "build",
        "inspect",
        *(["push"] if how == "docker push" else []),
        "verify",
    ]
    assert all(is_number(seconds) and seconds >= 0 for seconds in steps.values()), steps
    assert sum(steps.values()) <= result.seconds

    # $GITHUB_OUTPUT: the earlier line kept, then tags (multi-line), digest and image-id
    text = github_output.read_text()
    assert text.startswith("earlier=kept\n")
    outputs = parse_github_output(text)
    assert set(outputs) == {"earlier", "tags", "digest", "image-id"}, text
    assert outputs["tags"].splitlines() == refs
    assert outputs["digest"] == digest
    assert outputs["image-id"] == image_id
    delimiter = re.search(r"^tags<<(.+)$", text, re.M)[1]
    assert all(delimiter not in ref for ref in refs)


# --- 2. the build-context guard on a real build ------------------------------------------------


GUARD_FILES = {
    "app.txt": "a" * 100,
    "sub/data.bin": "d" * 200,
    "sub/.env.example": "API_TOKEN=\n",  # a template, not a secret: sent
    ".env": "API_TOKEN=s3cr3t-value\n",
}
GUARD_DOCKERFILE = ("COPY . /ctx/",)


def sent_files(directory: Path) -> dict:
    """What a context directory holds, ``{relative path: bytes}`` (no .dockerignore applied)."""
    return {
        path.relative_to(directory).as_posix(): path.stat().st_size
        for path in directory.rglob("*")
        if path.is_file()
    }


def context_line(result, directory: Path) -> str:
    lines = [
        line
        for line in result.stderr.splitlines()
        if line.startswith(f"build context {directory}: ")
    ]
    assert len(lines) == 1, result.describe()
    return lines[0]


def test_a_secret_in_the_context_stops_the_run_before_the_build(
    project, docker, images, unique, tmp_path
):
    name = images.track_repository(unique("guard"))
    dockerfile = scratch_context(tmp_path / "context", name, *GUARD_DOCKERFILE, files=GUARD_FILES)
    directory = dockerfile.parent

    refused = project.script(
        *context_args(dockerfile, "--env", "dev", "--no-latest", "--image-name", name)
    )
    assert refused.returncode == 2, refused.describe()
    errors = refused.error_lines()
    assert len(errors) == 1, refused.describe()
    assert errors[0].startswith(
        "error: the build context would send likely secrets: .env (environment file)"
    ), errors[0]
    assert ".env.example" not in errors[0]
    assert "--allow-secrets" in errors[0] and f"{directory}/.dockerignore" in errors[0]
    assert_not_built(refused, docker, name)

    # --allow-secrets: sent with a warning, and the image really holds it
    allowed = project.script(
        *context_args(
            dockerfile, "--env", "dev", "--no-latest", "--image-name", name, "--allow-secrets"
        )
    ).assert_ok()
    images.track_result(allowed)
    warning = [
        line
        for line in allowed.stderr.splitlines()
        if line.startswith("warning: sending likely secrets in the build context")
    ]
    assert warning == [
        "warning: sending likely secrets in the build context (--allow-secrets): "
        ".env (environment file)"
    ], allowed.describe()
    expected = sent_files(directory)
    assert ".env" in expected and "Dockerfile" in expected
    assert image_files(docker, f"{name}:dev", "ctx") == expected
    count, size = len(expected), sum(expected.values())
    assert context_line(allowed, directory) == (
        f"build context {directory}: {count} files, {size}B (no .dockerignore)"
    )


@pytest.mark.parametrize("ignore_file", [".dockerignore", "Dockerfile.dockerignore"])
def test_a_dockerignore_that_excludes_the_secret_builds_and_reports_what_docker_got(
    ignore_file, project, docker, images, unique, tmp_path
):
    """``Dockerfile.dockerignore`` beside the Dockerfile wins over ``.dockerignore`` (BuildKit's
    rule): there the context's own ``.dockerignore`` excludes nothing, and is not applied."""
    name = images.track_repository(unique("ignored"))
    files = {**GUARD_FILES, ignore_file: "# keep the secret out\n.env\n"}
    if ignore_file != ".dockerignore":
        files[".dockerignore"] = "# nothing\n"
    dockerfile = scratch_context(tmp_path / "context", name, *GUARD_DOCKERFILE, files=files)
    directory = dockerfile.parent

    result = project.script(
        *context_args(dockerfile, "--env", "dev", "--no-latest", "--image-name", name)
    ).assert_ok()
    images.track_result(result)
    assert "likely secrets" not in result.text
    # what docker received: every file but .env (the .dockerignore itself is sent, as docker does)
    received = image_files(docker, f"{name}:dev", "ctx")
    expected = {rel: size for rel, size in sent_files(directory).items() if rel != ".env"}
    assert received == expected
    assert sorted(received) == sorted(
        {".dockerignore", ignore_file, "Dockerfile", "app.txt", "sub/.env.example", "sub/data.bin"}
    )
    # the printed count and bytes are exactly those of what docker received
    count, size = len(received), sum(received.values())
    assert context_line(result, directory) == (
        f"build context {directory}: {count} files, {size}B after {directory}/{ignore_file}"
    )


# --- 3. --scan: the gate between the build and the push ----------------------------------------

FAKE_SCANNER = """#!/bin/sh
# fake-scan IMAGE [EXIT]: prove the image exists on the engine, report one finding, exit EXIT
id=$("$DOCKER" image inspect --format '{{.Id}}' "$1") || { echo "fake-scan: no image $1"; exit 3; }
echo "fake-scan: scanned $1 ($id)"
echo "CRITICAL CVE-0000-0001"
exit "${2:-1}"
"""


def test_scan_findings_stop_the_push_and_a_clean_scan_lets_it_through(
    project, docker, images, unique, e2e_env, plain_registry, tmp_path
):
    registry = e2e_env["E2E_REGISTRY"]
    name = unique("scan")
    uri = images.track_repository(f"{registry}/{name}")
    dockerfile = scratch_context(tmp_path / "context", name)
    scanner = executable(tmp_path / "fake-scan", FAKE_SCANNER)
    metadata = tmp_path / "m.json"
    github_output = tmp_path / "github-output"
    github_output.touch()
    flags = context_args(
        dockerfile, "--env", "dev", "--registry", uri, "--push", "--metadata-file", metadata
    )
    env = {"GITHUB_OUTPUT": github_output}

    failed = project.script(*flags, "--scan-command", f"{scanner} {{image}} 1", env=env)
    assert failed.returncode == 1, failed.describe()
    image_id = images.track_result(failed)
    refs = planned_refs(failed)
    # the image just built, by the ID the build wrote (issue 22): a tag another build moved
    # meanwhile would scan something else
    assert f"fake-scan: scanned {image_id} ({image_id})" in failed.text
    assert "CRITICAL CVE-0000-0001" in failed.text
    assert failed.error_lines() == [
        f"error: the vulnerability scan of {image_id} failed (exit 1; its findings are above); "
        "nothing was pushed"
    ]
    assert "+ docker push" not in failed.stderr
    assert "@sha256:" not in failed.stdout
    # the registry's own word: nothing arrived
    assert plain_registry.tags(name) == []
    assert name not in plain_registry.catalog()
    doc = json.loads(metadata.read_text())
    assert (doc["status"], doc["failed_step"]) == ("failed", "scan")
    assert doc["error"].startswith(f"the vulnerability scan of {image_id} failed")
    assert list(doc["steps"]) == ["context", "pre-flight", "build", "inspect", "scan"]
    assert (doc["pushed_refs"], doc["digests"], doc["digest"]) == ([], {}, None)
    assert github_output.read_text() == ""  # a failed run gives CI no outputs

    # the same build, the scanner finding nothing: pushed and verified
    passed = project.script(*flags, "--scan-command", f"{scanner} {{image}} 0", env=env).assert_ok()
    passed_id = images.track_result(passed)
    refs = planned_refs(passed)
    assert f"vulnerability scan passed: {passed_id}" in passed.stderr
    lines = passed.stderr.splitlines()
    assert lines.index(f"vulnerability scan passed: {passed_id}") < lines.index(
        f"+ docker push {refs[0]}"
    )
    assert plain_registry.tags(name) == sorted(tags_of(refs))
    digest = plain_registry.manifest(name, tags_of(refs)[0]).digest
    assert passed.stdout.strip().splitlines()[-1] == f"{uri}@{digest}"
    doc = json.loads(metadata.read_text())
    assert doc["status"] == "succeeded" and "scan" in doc["steps"]
    assert parse_github_output(github_output.read_text())["digest"] == digest


def test_scan_without_a_scanner_stops_before_the_build(project, docker, unique, runner, tmp_path):
    path = os.pathsep.join(
        d for d in runner.env["PATH"].split(os.pathsep) if d and not (Path(d) / "trivy").exists()
    )
    name = unique("noscan")
    dockerfile = scratch_context(tmp_path / "context", name)
    result = project.script(
        *context_args(dockerfile, "--env", "dev", "--image-name", name, "--scan"),
        env={"PATH": path},
    )
    assert result.returncode == 1, result.describe()
    errors = result.error_lines()
    assert len(errors) == 1, result.describe()
    assert errors[0].startswith("error: --scan found no scanner: install trivy"), errors[0]
    assert "--scan-command" in errors[0] and "setup.cfg" in errors[0]
    assert_not_built(result, docker, name)


# --- 4. semver channels, latest policy, build numbers on the real engine ----------------------


@pytest.fixture(scope="module")
def released_project(new_project):
    """A clean copy whose git history has the release tag v2.0.0."""
    project = new_project("released")
    git(project.path, "tag", "v2.0.0")
    return project


# (id, flags, extra environment, tags in order ({ts}, {sha} filled in), the plan's tag-choice lines)
CHANNEL_CASES = [
    (
        "semver-tags",
        ["--version", "1.4.2", "--env", "staging", "--semver-tags"],
        {},
        ["v1.4.2", "1.4.2", "1.4", "1", "staging-{ts}", "staging", "git-{sha}", "latest"],
        [
            "1.4: kept: 1.4.2 is a release (--latest-policy always: git tags are not compared)",
            "1: kept: 1.4.2 is a release (--latest-policy always: git tags are not compared)",
            "latest: kept: --latest-policy always (the default, as bash)",
        ],
    ),
    (
        "auto-older-line-keeps-channels",
        ["--version", "1.4.2", "--env", "staging", "--semver-tags", "--latest-policy", "auto"],
        {},
        ["v1.4.2", "1.4.2", "1.4", "1", "staging-{ts}", "staging", "git-{sha}"],
        [
            "1.4: kept: 1.4.2 is a release and there is no v1.4.* tag",
            "1: kept: 1.4.2 is a release and there is no v1.* tag",
            "latest: left out: 1.4.2 < v2.0.0, the highest version tag",
        ],
    ),
    (
        "auto-prerelease",
        ["--version", "2.1.0-rc.1", "--env", "staging", "--semver-tags", "--latest-policy", "auto"],
        {},
        ["v2.1.0-rc.1", "2.1.0-rc.1", "staging-{ts}", "staging", "git-{sha}"],
        [
            "2.1: left out: 2.1.0-rc.1 is a prerelease",
            "2: left out: 2.1.0-rc.1 is a prerelease",
            "latest: left out: 2.1.0-rc.1 is a prerelease",
        ],
    ),
    (
        "build-number",
        ["--env", "dev", "--build-number", "42"],
        {},
        ["dev-{ts}", "dev", "git-{sha}", "build-42", "latest"],
        ["build-42: build number from --build-number"],
    ),
    (
        "ci-tags-github",
        ["--env", "dev", "--ci-tags", "--tag", "qa"],
        {"GITHUB_RUN_NUMBER": "7", "BUILD_NUMBER": None, "CI_PIPELINE_IID": None},
        ["dev-{ts}", "dev", "git-{sha}", "build-7", "qa", "latest"],
        ["build-7: build number from GITHUB_RUN_NUMBER"],
    ),
]


@pytest.mark.parametrize(
    "case, flags, extra_env, tags, choices",
    [pytest.param(*case, id=case[0]) for case in CHANNEL_CASES],
)
def test_channel_and_build_number_tags_on_the_engine(
    case, flags, extra_env, tags, choices, released_project, docker, images, unique, tmp_path
):
    project = released_project
    name = images.track_repository(unique(case))
    dockerfile = scratch_context(tmp_path / "context", name)
    result = project.script(
        *context_args(dockerfile, "--image-name", name, *flags), env={**FIXED_TIME, **extra_env}
    ).assert_ok()
    image_id = images.track_result(result)

    expected = [f"{name}:{tag.format(ts=TS, sha=project.sha)}" for tag in tags]
    assert planned_refs(result) == expected  # the plan's order
    # what the engine holds: exactly these tags, all on the image just built
    assert docker.refs(name) == sorted(expected)
    assert docker.ids(name) == {image_id}
    assert sorted(docker.inspect(image_id)["RepoTags"]) == sorted(expected)
    assert "tag choices:\n" in result.stderr, result.describe()
    block = result.stderr.split("tag choices:\n", 1)[1].split("build args:\n", 1)[0]
    assert [line.strip() for line in block.splitlines()] == choices, result.describe()
