"""Issue 22 against the real engine and registries: the image pushed is the image tested (case 3:
two real builds on one daemon), and a version tag never moves without --replace-version-tags
(case 4: ``make push-prod`` twice, on the plain registry and the ECR-named TLS one, whose
repository is MUTABLE). What is served is read from the registries' own API."""

from __future__ import annotations

import http.server
import re
import shlex
import subprocess
import threading
import time

import pytest

from .support import git, planned_refs, stop_group, tags_of
from .test_push import ANY_BUILD_RE, ecr_repository, pinned_line  # noqa: F401 (a fixture)

pytestmark = pytest.mark.e2e

SMOKE_LINE = re.compile(r"^\+ docker run -d --name ragbuild-smoke-", re.M)


def image_of(registry, repository: str, tag: str) -> set:
    """What ``tag`` names on the registry, as a daemon's image ID may be: the config's digest
    (the classic image store's ID) and the manifest's own (the containerd store's)."""
    manifest = registry.manifest(repository, tag)
    assert manifest is not None, f"{repository}:{tag} is not on the registry"
    return {manifest.body["config"]["digest"], manifest.digest}


# --- case 3: the image pushed is the image tested ----------------------------------------------


class Gate:
    """An HTTP server on the docker bridge that answers 503 until ``open()``: the smoke test's
    container waits for it before it starts serving, so job B runs while job A's smoke test
    is certainly in progress (no sleep decides the order)."""

    def __init__(self, host: str):
        gate = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                self.send_response(200 if gate.opened.is_set() else 503)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.opened = threading.Event()
        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def open(self) -> None:
        self.opened.set()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gate(e2e_env):
    opened = Gate(e2e_env["E2E_BRIDGE_IP"])
    yield opened
    opened.close()


def gated_smoke_command(url: str) -> str:
    """``serve`` once ``url`` answers 200 (python in the worker image polls it)."""
    poll = (
        "import time, urllib.request as u\n"
        "while True:\n"
        "    try:\n"
        f"        u.urlopen({url!r}, timeout=2); break\n"
        "    except Exception:\n"
        "        time.sleep(0.3)\n"
    )
    return shlex.join(["sh", "-c", f"python -c {shlex.quote(poll)} && exec serve"])


@pytest.mark.legs("legacy", "modern", "multiplatform")
def test_a_build_during_the_smoke_test_never_reaches_the_registry_under_its_tags(
    project, docker, images, tiny_context, unique, e2e_env, pip_args, plain_registry, gate
):
    """Job A: --env prod --version 1.0.0 --registry R --smoke-test --push (make push-prod). While
    its smoke test runs, job B builds a release candidate with the same registry URI and no
    push, taking A's :prod, :latest and :git-<sha>. The registry must serve A's image, the one
    the smoke test started, under every tag of A, and never B's."""
    name = unique("identity")
    uri = images.track_repository(f"{e2e_env['E2E_REGISTRY']}/{name}")
    job_a = project.popen_script(
        "--env",
        "prod",
        "--version",
        "1.0.0",
        "--registry",
        uri,
        "--smoke-test",
        "--push",
        "--smoke-command",
        gated_smoke_command(gate.url),
        "--smoke-timeout",
        "600",
        *shlex.split(pip_args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    lines: list = []
    stdout: list = []
    readers = [
        threading.Thread(target=lambda: lines.extend(job_a.stderr), daemon=True),
        threading.Thread(target=lambda: stdout.extend(job_a.stdout), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        deadline = time.monotonic() + 900
        while not SMOKE_LINE.search("".join(line.decode() for line in lines)):
            assert job_a.poll() is None, (
                "job A ended before its smoke test: "
                + "".join(line.decode() for line in lines)[-3000:]
            )
            assert time.monotonic() < deadline, "job A never reached its smoke test"
            time.sleep(0.5)
        # job B: same registry URI, no push, other content; it takes prod, latest and git-<sha>
        other = tiny_context(f'LABEL org.ragbuild.e2e.case="{name}-rc"')
        job_b = project.script(
            "--env",
            "staging",
            "--version",
            "1.1.0-rc.1",
            "--tag",
            "prod",
            "--registry",
            uri,
            "-f",
            other,
            "--context",
            other.parent,
        )
        job_b.assert_ok()
        b_id = images.track(job_b.built_id())
        assert docker.image_id(f"{uri}:prod") == b_id  # B really took A's tags, locally
    finally:
        gate.open()
    try:
        job_a.wait(timeout=900)
    finally:
        stop_group(job_a)  # nothing left behind if it hung
        for reader in readers:
            reader.join(timeout=30)
        job_a.stdout.close()
        job_a.stderr.close()
    err = "".join(line.decode() for line in lines)
    out = b"".join(stdout)
    assert job_a.returncode == 0, err[-4000:]
    a_id = images.track(re.search(r"^built (sha256:[0-9a-f]{64}) ", err, re.M)[1])
    assert a_id != b_id
    # the smoke test started A's image by its ID, and each ref was tagged from it before its push
    assert re.search(rf"^\+ docker run -d .* {a_id} sh -c ", err, re.M), err[-3000:]
    refs = re.findall(r"^  - (\S+)$", err, re.M)
    for ref in refs:
        assert f"+ docker tag {a_id} {ref}\n" in err
    assert tags_of(refs) == [
        "v1.0.0",
        "1.0.0",
        tags_of(refs)[2],
        "prod",
        f"git-{project.sha}",
        "latest",
    ]
    for tag in tags_of(refs):
        served = image_of(plain_registry, name, tag)
        assert a_id in served and b_id not in served, tag  # A's image, never B's
    assert out.decode().strip().endswith(f"{uri}@{plain_registry.manifest(name, 'prod').digest}")
    assert docker.image_id(f"{uri}:prod") == a_id  # the local tags name what was pushed


# --- case 4: a version tag never moves -----------------------------------------------------------


def change_and_commit(project) -> None:
    """A change between the two releases, committed (a prod build needs a clean tree)."""
    path = project.path / "src" / "rag_worker" / "__init__.py"
    path.write_text(path.read_text() + "\n# a change between two releases of 1.2.3\n")
    git(project.path, "commit", "-q", "-am", "a change between two releases of 1.2.3")


def assert_second_release_stops(project, docker, registry, repository, uri, args, env=None):
    first = project.make(
        "push-prod", f"ECR_URI={uri}", "VERSION=1.2.3", f"ARGS={args}", env=env
    ).assert_ok()
    served = {tag: registry.manifest(repository, tag).digest for tag in ("v1.2.3", "1.2.3")}
    change_and_commit(project)
    second = project.make("push-prod", f"ECR_URI={uri}", "VERSION=1.2.3", f"ARGS={args}", env=env)
    assert second.returncode != 0
    assert re.search(r"\[Makefile:\d+: push-prod\] Error 1$", second.stderr, re.M), (
        second.describe()
    )
    assert not ANY_BUILD_RE.search(second.stderr), f"docker build ran: {second.describe()}"
    error = second.error_lines()[-1]
    assert error.startswith(
        f"error: the registry already has {uri}:v1.2.3 (now "
        f"{served['v1.2.3']}), {uri}:1.2.3 (now {served['1.2.3']})"
    ), error
    assert "--replace-version-tags" in error
    for tag, digest in served.items():  # unchanged
        assert registry.manifest(repository, tag).digest == digest
    return first, served


@pytest.mark.legs("legacy", "modern", "multiplatform")
def test_make_push_prod_twice_on_the_plain_registry_keeps_the_version_tags(
    project, docker, images, unique, e2e_env, pip_args, plain_registry
):
    name = unique("version")
    uri = images.track_repository(f"{e2e_env['E2E_REGISTRY']}/{name}")
    first, served = assert_second_release_stops(
        project, docker, plain_registry, name, uri, pip_args
    )
    images.track_result(first)
    # --replace-version-tags lets them move, and says so
    third = project.make(
        "push-prod", f"ECR_URI={uri}", "VERSION=1.2.3", f"ARGS={pip_args} --replace-version-tags"
    ).assert_ok()
    images.track_result(third)
    assert (
        f"warning: --replace-version-tags: this push moves {uri}:v1.2.3 (now "
        f"{served['v1.2.3']}), {uri}:1.2.3 (now {served['1.2.3']}) to the image this run "
        "builds"
    ) in third.stderr
    moved = plain_registry.manifest(name, "v1.2.3").digest
    assert moved != served["v1.2.3"] and pinned_line(third).endswith(moved)


@pytest.mark.legs("legacy")
def test_make_push_prod_twice_on_a_mutable_ecr_repository_keeps_the_version_tags(
    project, docker, images, ecr_repository, docker_config, e2e_env, pip_args, ecr_registry
):
    name = ecr_repository("version-ecr")  # MUTABLE, as create-repository makes it
    uri = images.track_repository(f"{e2e_env['E2E_ECR_HOST']}/{name}")
    first, _ = assert_second_release_stops(
        project, docker, ecr_registry, name, uri, pip_args, env={"DOCKER_CONFIG": docker_config}
    )
    images.track_result(first)


def test_a_dry_run_shows_the_version_check(project, unique, e2e_env):
    uri = f"{e2e_env['E2E_REGISTRY']}/{unique('version-dry')}"
    dry = project.make("push-prod", f"ECR_URI={uri}", "VERSION=1.2.3", "ARGS=--dry-run")
    dry.assert_ok()
    tag_url = f"/v2/{uri.split('/', 1)[1]}/manifests/v1.2.3"
    assert re.search(
        rf"dry run: a real run would GET https?://[^ ]*{re.escape(tag_url)} .* "
        r"\(an existing version tag stops the run unless --replace-version-tags\)",
        dry.stderr,
    ), dry.describe()
    assert planned_refs(dry)
