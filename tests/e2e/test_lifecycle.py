"""Issue 15 against the real engine: a signal during the smoke test (during the build:
test_faults.py), the smoke test starting the image as SageMaker does
(`docker run IMAGE serve`, /ping on 8080), the smoke timeout on the build path, and `run` keeping
the working container when the new one cannot start (a port really taken, a real bad image)."""

from __future__ import annotations

import json
import shlex
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

import pytest

from .support import (
    free_port,
    LOCAL_CONTAINER,
    Project,
    alive,
    git,
    killed_at_exit,
    process_table,
    sagemaker_image_lines,
    send_signal,
    wait_for,
)

pytestmark = pytest.mark.e2e

SIGNAL_DEADLINE = 20  # seconds from the signal to the script's exit
START_DEADLINE = 180  # seconds until the stage to interrupt is reached (a build comes first)
SMOKE_LABEL = "org.ragbuild.smoke=1"
SIGNALS = [signal.SIGTERM, signal.SIGHUP, signal.SIGINT]
NAMES = {
    signal.SIGINT: "interrupted",
    signal.SIGTERM: "interrupted by SIGTERM",
    signal.SIGHUP: "interrupted by SIGHUP",
}


def ids(signum):
    return signal.Signals(signum).name


def build_args(dockerfile, image_name, *more):
    return [
        "--env",
        "dev",
        "-f",
        dockerfile,
        "--context",
        dockerfile.parent,
        "--image-name",
        image_name,
        *more,
    ]


def serve_lines(*script_lines, mode="755"):
    """Dockerfile lines that put a ``serve`` with ``script_lines`` on PATH, with ``mode``."""
    script = "\\n".join(("#!/bin/sh", *script_lines))
    return (
        f"RUN printf '{script}\\n' > /usr/local/bin/serve && chmod {mode} /usr/local/bin/serve",
    )


#: A tiny image that keeps SageMaker's serving contract (support.SAGEMAKER_SERVER) once its serve
#: has slept ``{delay}`` seconds; /health says what ragbuild built.
def answering_after(delay: int):
    return sagemaker_image_lines(delay=delay)


def smoke_containers(docker, image_name):
    """Every container (running or not) a smoke test of ``image_name`` started: by a tag, or by
    the ID of an image under that name (the build's smoke test starts the image its --iidfile
    named, and `docker ps` then shows that ID)."""
    ids = docker.ids(image_name)
    return [
        line
        for line in docker.containers(f"label={SMOKE_LABEL}")
        if f" {image_name}:" in f" {line.split()[1]}" or line.split()[1] in ids
    ]


# --- (f) signals -------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", SIGNALS, ids=ids)
def test_a_signal_two_seconds_into_the_smoke_test_removes_the_container_and_records_it(
    project, tiny_context, unique, docker, images, tmp_path, signum
):
    name = images.track_repository(unique("smokesig"))
    dockerfile = tiny_context(*serve_lines("exec sleep 3600"))  # never answers /ping
    metadata = tmp_path / "m.json"
    stderr = tmp_path / "stderr"
    with open(stderr, "w") as err:
        proc = project.popen_script(
            *build_args(dockerfile, name, "--smoke-test", "--metadata-file", metadata),
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    with killed_at_exit(proc):
        wait_for(
            lambda: "+ docker port " in stderr.read_text(),
            START_DEADLINE,
            proc,
            "the smoke test's start",
        )
        assert len(smoke_containers(docker, name)) == 1  # it really runs now
        time.sleep(2)
        code, elapsed = send_signal(proc, signum, deadline=SIGNAL_DEADLINE)
    text = stderr.read_text()
    print(text)
    assert code == 128 + signum, text
    assert text.rstrip().splitlines()[-1].startswith(f"error: {NAMES[signum]}"), text
    assert "Traceback" not in text
    assert smoke_containers(docker, name) == []  # removed, not only stopped
    doc = json.loads(metadata.read_text())
    assert (doc["status"], doc["failed_step"]) == ("interrupted", "smoke")
    assert doc["error"].startswith(NAMES[signum])


def scanners(marker: str) -> dict:
    return {
        pid: cmd
        for pid, (_, state, cmd) in process_table().items()
        if f"time.sleep({marker})" in cmd and "build-image" not in cmd and state != "Z"
    }


@pytest.mark.parametrize("signum", SIGNALS, ids=ids)
def test_a_signal_during_the_scan_stops_the_scanner(
    project, tiny_context, unique, images, tmp_path, signum
):
    """The scanner is a real child that takes long (a python sleeping): it is stopped and
    reaped, and the metadata says the scan was interrupted."""
    marker = f"{60 + int(secrets.token_hex(2), 16) / 1e5:.5f}"
    name = images.track_repository(unique("scansig"))
    scanner = f"python3 -c 'import time; time.sleep({marker})' {{image}}"
    metadata = tmp_path / "m.json"
    with open(tmp_path / "stderr", "w") as err:
        proc = project.popen_script(
            *build_args(
                tiny_context(), name, "--scan-command", scanner, "--metadata-file", metadata
            ),
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    with killed_at_exit(proc):
        wait_for(lambda: scanners(marker), START_DEADLINE, proc, "the scan")
        running = scanners(marker)
        code, _ = send_signal(proc, signum, deadline=SIGNAL_DEADLINE)
    text = (tmp_path / "stderr").read_text()
    print(text)
    assert code == 128 + signum, text
    assert text.rstrip().splitlines()[-1].startswith(f"error: {NAMES[signum]}; stopped "), text
    assert [pid for pid in running if alive(pid)] == []
    doc = json.loads(metadata.read_text())
    assert (doc["status"], doc["failed_step"]) == ("interrupted", "scan")


def pushers(uri: str) -> dict:
    return {
        pid: cmd
        for pid, (_, state, cmd) in process_table().items()
        if f" push {uri}:" in cmd and "build-image" not in cmd and state != "Z"
    }


def test_a_signal_during_the_push_stops_docker_push_and_says_what_was_pushed(
    project, tiny_context, unique, images, e2e_env, tmp_path
):
    """A real push to the harness's plain registry, slowed by an incompressible 64 MB layer;
    SIGTERM while the first `docker push` runs. ``--builder default`` names a builder, so the
    build loads the image and docker push pushes it even where the client has buildx (which
    would otherwise push with the build: plan.build_pushes)."""
    uri = images.track_repository(f"{e2e_env['E2E_REGISTRY']}/{unique('pushsig')}")
    dockerfile = tiny_context("RUN head -c 64000000 /dev/urandom > /ballast")
    metadata = tmp_path / "m.json"
    with open(tmp_path / "stderr", "w") as err:
        proc = project.popen_script(
            "--env",
            "dev",
            "-f",
            dockerfile,
            "--context",
            dockerfile.parent,
            "--registry",
            uri,
            "--push",
            "--builder",
            "default",
            "--metadata-file",
            metadata,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    with killed_at_exit(proc):
        wait_for(lambda: pushers(uri), START_DEADLINE, proc, "a docker push", interval=0.05)
        running = pushers(uri)
        code, _ = send_signal(proc, signal.SIGTERM, deadline=SIGNAL_DEADLINE)
    text = (tmp_path / "stderr").read_text()
    print(text)
    assert code == 143, text
    assert [line for line in text.splitlines() if line.startswith("error: ")] == [
        "error: interrupted by SIGTERM; stopped docker push"
    ], text
    assert text.rstrip().splitlines()[-1].startswith("not pushed: "), text
    assert [pid for pid in running if alive(pid)] == []  # terminated and reaped
    doc = json.loads(metadata.read_text())
    assert (doc["status"], doc["failed_step"]) == ("interrupted", "push")


# --- (g) the start path ------------------------------------------------------------------------


def test_an_image_whose_serve_is_not_executable_fails_the_smoke_test_in_one_line(
    project, tiny_context, unique, docker, images
):
    name = images.track_repository(unique("serve644"))
    dockerfile = tiny_context()
    serve = dockerfile.parent / "serve"
    serve.write_text("#!/bin/sh\nexec python3 -m http.server 8080\n")
    serve.chmod(0o644)  # as git may keep it; COPY keeps the mode
    with open(dockerfile, "a") as f:
        f.write("COPY serve /usr/local/bin/serve\n")
    result = project.script(*build_args(dockerfile, name, "--smoke-test"))
    assert result.returncode == 1, result.describe()
    errors = result.error_lines()
    assert len(errors) == 1 and result.stderr.rstrip().splitlines()[-1] == errors[0], (
        result.describe()
    )
    assert "`docker run IMAGE serve` failed to start" in errors[0]
    assert "`serve` must be an executable file on the image's PATH" in errors[0]
    assert smoke_containers(docker, name) == []  # not even a Created one


def test_make_prod_ready_refuses_the_worker_when_its_serve_is_not_executable(
    new_project, docker, images, pip_args
):
    """The issue's input: the worker's Dockerfile without its chmod (serve stays 0644 as in
    git). `make prod-ready` passed before (it ran CMD and read /health); now it stops there."""
    project = new_project("serve644")
    dockerfile = project.path / "Dockerfile"
    text = dockerfile.read_text()
    assert " \\\n && chmod 0755 /usr/local/bin/serve" in text
    dockerfile.write_text(text.replace(" \\\n && chmod 0755 /usr/local/bin/serve", ""))
    git(project.path, "commit", "-qam", "serve without chmod")  # prod wants a clean tree
    result = project.make("prod-ready", "VERSION=1.0.0", f"ARGS={pip_args}")
    images.track_result(result)
    assert result.returncode != 0, result.describe()
    errors = result.error_lines()
    assert len(errors) == 1, result.describe()
    assert "`docker run IMAGE serve` failed to start (exit 127)" in errors[0]
    assert 'exec: "serve": executable file not found in $PATH' in errors[0]
    assert "push it:" not in result.stderr
    assert [
        line
        for line in docker.containers(f"label={SMOKE_LABEL}")
        if "rag-worker:v1.0.0" in line or project.sha in line
    ] == []


def http(port, path, body=None):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=body,
        headers={"Content-Type": "application/json"} if body else {},
    )
    try:
        with opener.open(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except (urllib.error.URLError, OSError):  # docker's proxy accepts, then resets, until it serves
        return None, b""


def test_the_worker_image_starts_as_sagemaker_does(docker, unique, worker):
    """The real worker: serve is 0755 in the image (0644 in git), `docker run IMAGE serve`
    answers /ping and POST /invocations on 8080, and the smoke subcommand passes."""
    image = worker.ref
    mode = docker.quiet(
        "run", "--rm", "--entrypoint", "stat", image, "-c", "%a", "/usr/local/bin/serve"
    )
    assert mode.stdout.strip() == "755", mode.stderr
    assert oct((worker.project.path / "src/rag_worker/serve").stat().st_mode & 0o777) == "0o644"
    name = unique("sagemaker")
    started = docker("run", "-d", "--name", name, "-p", "127.0.0.1::8080", image, "serve")
    try:
        assert started.returncode == 0, started.describe()
        port = int(docker.quiet("port", name, "8080/tcp").stdout.split(":")[-1])
        assert wait_answer(port, "/ping"), "/ping did not answer 200 within 60s"
        status, body = http(port, "/invocations", json.dumps({"query": "hello"}).encode())
        assert status == 200, body
        assert json.loads(body) == {
            "query": "hello",
            "top_k": 5,
            "documents": [],
            "version": "unknown",
        }
        assert http(port, "/invocations", b"[1]")[0] == 400
    finally:
        docker.remove_container(name)
    smoked = worker.project.script(
        "smoke", worker.ref, "--expect-env", "dev", "--expect-commit", worker.project.sha
    )
    assert smoked.returncode == 0, smoked.describe()
    assert "started as `docker run IMAGE serve` answered /ping and /health" in smoked.stderr


def _listening(port) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


# --- (h) the smoke timeout on the build path ----------------------------------------------------


def test_the_build_paths_smoke_timeout_is_settable_by_flag_and_setup_cfg(
    project, tiny_context, unique, docker, images
):
    name = images.track_repository(unique("slow"))
    dockerfile = tiny_context(*answering_after(8))  # answers /ping after ~8 s
    short = project.script(*build_args(dockerfile, name, "--smoke-test", "--smoke-timeout", "3"))
    assert short.returncode == 1, short.describe()
    assert "[ready]: no 200 within 3 s" in short.error_lines()[0], short.describe()
    assert smoke_containers(docker, name) == []
    cfg = project.path / "setup.cfg"
    cfg.write_text(cfg.read_text().replace("[ragbuild]\n", "[ragbuild]\nsmoke-timeout = 60\n", 1))
    waited = project.script(*build_args(dockerfile, name, "--smoke-test"))
    assert waited.returncode == 0, waited.describe()
    assert "smoke test passed" in waited.stderr
    assert smoke_containers(docker, name) == []


def test_make_passes_the_smoke_timeout_through_args(project, pip_args):
    dry = project.make(
        "prod-ready",
        "VERSION=1.0.0",
        f"ARGS=--dry-run --smoke-timeout 120 --smoke-command 'serve --x' {pip_args}",
    )
    assert dry.returncode == 0, dry.describe()
    assert any(
        line.startswith("docker run -d --name ragbuild-smoke-") and line.endswith(" serve --x")
        for line in dry.stdout.splitlines()
    ), dry.describe()


# --- (i) run keeps the working container ---------------------------------------------------------


@pytest.fixture
def local_container(docker):
    docker.remove_container(LOCAL_CONTAINER)
    yield LOCAL_CONTAINER
    docker.remove_container(LOCAL_CONTAINER)
    for line in docker.containers(f"name={LOCAL_CONTAINER}-new-"):
        docker.remove_container(line.split()[2])


def wait_answer(port, path, deadline=60):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if _listening(port) and http(port, path)[0] == 200:
            return True
        time.sleep(0.5)
    return False


def wait_health(port, deadline=60):
    return wait_answer(port, "/health", deadline)


def local_state(docker):
    done = docker.quiet(
        "container",
        "inspect",
        "--format",
        "{{.Image}} {{.State.Status}} {{json .HostConfig.PortBindings}}",
        LOCAL_CONTAINER,
    )
    return done.stdout.strip()


@dataclass
class Worker:
    project: Project
    ref: str  # a tag of the module's own on the worker image


@pytest.fixture(scope="module")
def worker(new_project, docker, pip_args, token):
    """The worker built once for this module, with a second tag on a repository of its own:
    other runs on this shared engine run `clean` (which removes every ragbuild build's tags,
    rag-worker:dev among them) and re-tag rag-worker:dev meanwhile; a tag of another
    repository is one clean keeps, so the image stays."""
    name = f"ragbuild-e2e-{token}-lifecycle-worker"
    project = new_project("lifecycle-worker", image_name=name)
    built = project.script("--env", "dev", *shlex.split(pip_args)).assert_ok()
    ref = f"ragbuild-e2e-{token}-lifecycle-mine:1"
    docker("tag", built.built_id(), ref).assert_ok()
    yield Worker(project, ref)
    docker.quiet("image", "rm", "--force", built.built_id())


def test_run_on_a_taken_port_keeps_the_working_container(docker, local_container, worker):
    project = worker.project
    good = free_port()
    project.script("run", "--port", good, worker.ref).assert_ok()
    assert wait_health(good)
    before = local_state(docker)
    with socket.socket() as taken:  # another process holds the port
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = project.script("run", "--port", port, worker.ref)
    assert result.returncode == 1, result.describe()
    errors = result.error_lines()
    assert len(errors) == 1, result.describe()
    assert errors[0].startswith(f"error: port {port} is taken"), errors[0]
    assert "pass --port" in errors[0] and "nothing changed" in errors[0]
    assert local_state(docker) == before and " running " in before  # the same container runs
    assert wait_health(good)
    assert docker.containers(f"name={LOCAL_CONTAINER}-new-") == []  # nothing Created is left
    logs = project.script("logs")
    assert logs.returncode == 0 and "Uvicorn running" in logs.text


def test_run_with_an_image_that_cannot_start_on_the_same_port_restarts_the_old_one(
    docker, local_container, tiny_context, unique, images, worker
):
    project = worker.project
    broken = images.track_repository(unique("nostart"))
    context = tiny_context('CMD ["/nonexistent"]')
    docker("build", "-t", f"{broken}:1", "-f", context, context.parent).assert_ok()
    port = free_port()
    project.script("run", "--port", port, worker.ref).assert_ok()
    assert wait_health(port)
    image_before = local_state(docker).split()[0]
    result = project.script("run", "--port", port, f"{broken}:1")
    assert result.returncode == 1, result.describe()
    assert len(result.error_lines()) == 1 and "nothing changed" in result.error_lines()[0]
    assert local_state(docker).split()[:2] == [image_before, "running"]
    assert wait_health(port)
    assert docker.containers(f"name={LOCAL_CONTAINER}-new-") == []
