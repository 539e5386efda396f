"""``push IMAGE`` and ``promote SOURCE`` (issue 24) against the harness's real registries: the
plain one (``E2E_REGISTRY``) and the ECR-named TLS one with htpasswd auth, whose ECR API is moto.
What each registry holds is read with its own HTTP API, and what the promotion sent with its own
access log: only manifest writes, no blob upload, no docker build or push."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from .test_push import ecr_host, ecr_repository, pinned_line  # noqa: F401 (fixtures)
from .support import planned_refs, tags_of

pytestmark = pytest.mark.e2e

REQUEST_RE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>/v2/\S*) HTTP/1\.[01]" (?P<status>\d+)')
ANY_BUILD_RE = re.compile(r"^\+ (?:\S+=\S* )*docker (?:buildx )?build ", re.M)


class AccessLog:
    """The requests a registry logged for one repository from now on (its access log lines)."""

    def __init__(self, path: Path, repository: str):
        self.path, self.repository = path, repository
        self.start = path.stat().st_size

    def requests(self) -> list:
        with open(self.path, "rb") as handle:
            handle.seek(self.start)
            text = handle.read().decode(errors="replace")
        return [
            (m["method"], m["path"], m["status"])
            for m in REQUEST_RE.finditer(text)
            if m["path"].startswith(f"/v2/{self.repository}/")
        ]

    def writes(self) -> list:
        return [r for r in self.requests() if r[0] not in ("GET", "HEAD")]


def assert_all_at(registry, repository: str, tags, digest: str) -> None:
    for tag in tags:
        manifest = registry.manifest(repository, tag)
        assert manifest is not None, f"{repository}:{tag} is missing"
        assert manifest.digest == digest, (tag, manifest.digest, digest)


def assert_promoted_without_upload(result, log: AccessLog, tags) -> None:
    assert not ANY_BUILD_RE.search(result.stderr), f"a build ran: {result.describe()}"
    assert "+ docker push" not in result.stderr, result.describe()
    writes = log.writes()
    assert writes, f"no write logged: {log.requests()}"
    assert all(
        method == "PUT" and "/manifests/" in path and status == "201"
        for method, path, status in writes
    ), writes
    assert sorted(path.rsplit("/", 1)[1] for _, path, _ in writes) == sorted(tags)


def promoted_tags(result) -> list:
    """The tags the promotion planned (its ``tags:`` list)."""
    return tags_of(planned_refs(result))


@pytest.mark.every_leg
def test_a_dev_build_promoted_to_staging_and_prod_keeps_its_digest(
    project, images, unique, e2e_env, pip_args, plain_registry, tmp_path
):
    registry = e2e_env["E2E_REGISTRY"]
    name = unique("promote")
    uri = images.track_repository(f"{registry}/{name}")
    pushed = project.make("push-dev", f"ECR_URI={uri}", f"ARGS={pip_args}").assert_ok()
    images.track_result(pushed)
    source = pinned_line(pushed)
    digest = source.split("@", 1)[1]
    ts, sha = pushed.timestamp(), project.sha
    log_path = Path(e2e_env["RAGBUILD_E2E_STATE"]) / "registry-plain.log"

    # staging: from the git tag, with the gate (the smoke test) on the source's digest
    log = AccessLog(log_path, name)
    metadata = tmp_path / "staging.json"
    staging = project.make(
        "promote-staging",
        f"FROM={uri}:git-{sha}",
        "VERSION=1.2.3-rc.1",
        f"ARGS=--metadata-file {metadata}",
    ).assert_ok()
    tags = ["v1.2.3-rc.1", "1.2.3-rc.1", f"staging-{ts}", "staging", f"git-{sha}", "latest"]
    assert promoted_tags(staging) == tags
    assert pinned_line(staging) == source
    assert_all_at(plain_registry, name, tags, digest)
    # git-<sha> and latest were there already: only the four new tags were written
    assert_promoted_without_upload(staging, log, tags[:4])
    assert "smoke test passed" in staging.stderr
    doc = json.loads(metadata.read_text())
    assert doc["source"]["digest"] == digest and doc["gate"]["ran"] is True
    assert doc["gate"]["health"]["git_commit"] == sha

    # prod: from staging, a bare tag with ECR_URI (the Makefile's --registry)
    log = AccessLog(log_path, name)
    prod = project.make(
        "promote-prod",
        "FROM=staging",
        f"ECR_URI={uri}",
        "VERSION=1.2.3",
        "ARGS=--no-gate 'tested by the staging promotion'",
    ).assert_ok()
    tags = ["v1.2.3", "1.2.3", f"prod-{ts}", "prod", f"git-{sha}", "latest"]
    assert promoted_tags(prod) == tags
    assert pinned_line(prod) == source
    assert_all_at(plain_registry, name, tags, digest)
    assert_promoted_without_upload(prod, log, tags[:4])

    # again: a no-op; another image under v1.2.3: exit 1, nothing written
    log = AccessLog(log_path, name)
    project.make(
        "promote-prod", f"FROM={uri}:staging", "VERSION=1.2.3", "ARGS=--no-gate x"
    ).assert_ok()
    assert log.writes() == []
    other = project.make(
        "push-dev",
        f"ECR_URI={uri}",
        f"ARGS={pip_args}",
    ).assert_ok()
    images.track_result(other)
    log = AccessLog(log_path, name)
    moved = project.script(
        "promote", f"{uri}:dev", "--env", "prod", "--version", "1.2.3", "--no-gate", "x"
    )
    assert moved.returncode == 1, moved.describe()
    assert f"the registry already has {uri}:v1.2.3 (now {digest})" in moved.stderr
    assert log.writes() == []
    assert plain_registry.manifest(name, "v1.2.3").digest == digest


def test_promote_in_the_ecr_registry_uses_the_ecr_token_and_writes_only_manifests(
    project, images, ecr_repository, ecr_host, docker_config, pip_args, ecr_registry, e2e_env
):
    name = ecr_repository("promote")
    uri = images.track_repository(f"{ecr_host}/{name}")
    env = {"DOCKER_CONFIG": docker_config}
    pushed = project.make("push-dev", f"ECR_URI={uri}", f"ARGS={pip_args}", env=env).assert_ok()
    images.track_result(pushed)
    source = pinned_line(pushed)
    digest = source.split("@", 1)[1]
    ts, sha = pushed.timestamp(), project.sha
    log_path = Path(e2e_env["RAGBUILD_E2E_STATE"]) / "registry-ecr.log"
    for env_name, version, gate in (
        ("staging", None, []),
        ("prod", "1.0.0", ["--no-gate", "staged"]),
    ):
        log = AccessLog(log_path, name)
        args = ["promote", f"{uri}@{digest}", "--env", env_name, *gate]
        if version:
            args += ["--version", version]
        result = project.script(*args, env=env).assert_ok()
        assert "+ aws ecr get-login-password --region us-east-1" in result.stderr
        assert e2e_env["E2E_ECR_PASSWORD"] not in result.text
        tags = promoted_tags(result)
        expected = ([f"v{version}", version] if version else []) + [
            f"{env_name}-{ts}",
            env_name,
            f"git-{sha}",
            "latest",
        ]
        assert tags == expected
        assert pinned_line(result) == source
        assert_all_at(ecr_registry, name, tags, digest)
        assert_promoted_without_upload(
            result, log, [t for t in tags if t not in (f"git-{sha}", "latest")]
        )


def test_prod_ready_prints_a_command_that_pushes_the_image_it_tested(
    project, images, docker, unique, e2e_env, pip_args, plain_registry
):
    registry = e2e_env["E2E_REGISTRY"]
    name = unique("tested")
    uri = images.track_repository(f"{registry}/{name}")
    ready = project.make(
        "prod-ready", "VERSION=2.0.0", f"ECR_URI={uri}", f"ARGS={pip_args}"
    ).assert_ok()
    tested = images.track_result(ready)
    assert "smoke test passed" in ready.stderr
    hint = [
        line for line in ready.stderr.splitlines() if line.startswith("push the tested image: ")
    ]
    assert len(hint) == 1, ready.describe()
    command = shlex.split(hint[0].split(": ", 1)[1])
    assert tested in command and "--push" not in command
    pushed = project.runner.run(command, cwd=project.path).assert_ok()
    assert not ANY_BUILD_RE.search(pushed.stderr), pushed.describe()
    ts = ready.timestamp()
    tags = ["v2.0.0", "2.0.0", f"prod-{ts}", "prod", f"git-{project.sha}", "latest"]
    digest = pinned_line(pushed).split("@", 1)[1]
    assert_all_at(plain_registry, name, tags, digest)
    # the registry serves the tested image: its config is the image ID the smoke test ran
    assert plain_registry.manifest(name, "prod").body["config"]["digest"] == tested


def test_without_a_registry_prod_ready_says_to_set_one(project, images, pip_args):
    ready = project.make(
        "prod-ready",
        "VERSION=2.0.1",
        "ECR_URI=",
        f"ARGS={pip_args}",
        env={"ECR_REGISTRY_URI": None},
    ).assert_ok()
    images.track_result(ready)
    assert "push the tested image: set ECR_REGISTRY_URI (make: ECR_URI)" in ready.stderr


def test_an_immutable_ecr_repository_stops_the_promotion_or_leaves_its_moving_tags_out(
    project, images, ecr_repository, ecr_host, docker_config, pip_args, ecr_registry, e2e_env
):
    name = ecr_repository("immutable", "--image-tag-mutability", "IMMUTABLE")
    uri = images.track_repository(f"{ecr_host}/{name}")
    env = {"DOCKER_CONFIG": docker_config}
    pushed = project.make(
        "push-dev", f"ECR_URI={uri}", f"ARGS={pip_args} --skip-existing-immutable", env=env
    ).assert_ok()
    images.track_result(pushed)
    digest = pinned_line(pushed).split("@", 1)[1]
    ts, sha = pushed.timestamp(), project.sha
    log_path = Path(e2e_env["RAGBUILD_E2E_STATE"]) / "registry-ecr.log"
    args = [
        "promote",
        f"{uri}:git-{sha}",
        "--env",
        "staging",
        "--version",
        "1.0.0",
        "--no-gate",
        "pushed by this test",
    ]
    log = AccessLog(log_path, name)
    stopped = project.script(*args, env=env)
    assert stopped.returncode == 1, stopped.describe()
    assert f"ECR repository {name} is IMMUTABLE" in stopped.stderr
    assert log.writes() == []
    log = AccessLog(log_path, name)
    skipped = project.script(*args, "--skip-existing-immutable", env=env).assert_ok()
    assert_all_at(ecr_registry, name, ["v1.0.0", "1.0.0", f"staging-{ts}", f"git-{sha}"], digest)
    assert ecr_registry.manifest(name, "staging") is None
    assert_promoted_without_upload(skipped, log, ["v1.0.0", "1.0.0", f"staging-{ts}"])
    assert "left out (the repository keeps them immutable)" in skipped.stderr
