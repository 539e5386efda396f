"""Helpers of the end-to-end suite (fixtures are in conftest.py): running commands, clean
project copies, docker look-ups, the registries' HTTP API, and the process table."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest

REPO = Path(__file__).resolve().parents[2]
HARNESS = REPO / "tests" / "e2e" / "harness.sh"
STATE = Path(os.environ.get("RAGBUILD_E2E_STATE") or "/var/tmp/ragbuild-e2e")
ENV_FILE = STATE / "env"
IN_CI = os.environ.get("CI") == "true"

PROJECT_LABEL = "org.ragbuild.project"
BASE_IMAGE = "python:3.11-slim"
#: The worker's image name and the container ``make run-local`` starts.
WORKER = "rag-worker"
LOCAL_CONTAINER = "rag-worker-local"

#: Seconds a command may take before the suite kills it (a cold worker build takes ~10 s here).
BUILD_TIMEOUT = 600
COMMAND_TIMEOUT = 120

#: Variables of the calling shell that would change what the commands under test do. MAKEFLAGS
#: matters under `make e2e ARGS=-v`: it hands ARGS=-v down to every inner make.
SCRUBBED = (
    "MAKEFLAGS",
    "MFLAGS",
    "MAKELEVEL",
    "MAKEOVERRIDES",
    "ARGS",
    "VERSION",
    "ECR_URI",
    "VENV",
    "PYTHON",
    "ECR_REGISTRY_URI",
    "SOURCE_DATE_EPOCH",
    "DOCKER_HOST",
    "DOCKER_CONTEXT",
    "DOCKER_BUILDKIT",
    "BUILDKIT_PROGRESS",
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL_ECR",
    "AWS_CLI",
    "TZ",
    "GITHUB_OUTPUT",
    "BUILDX_BUILDER",
)

# "built sha256:<id> (207.6MB) with 4 tags:" (ragbuild's summary after a build)
BUILT_RE = re.compile(r"^built (sha256:[0-9a-f]{64}) ", re.M)
TIMESTAMP_RE = re.compile(r"^timestamp: (\d{8}-\d{6})$", re.M)


def planned_refs(result) -> list:
    """The refs the plan listed under ``tags:`` (stderr), in order."""
    refs = re.findall(r"^  - (\S+)$", result.stderr, re.M)
    assert refs, f"no planned tags: {result.describe()}"
    return refs


#: The build that pushes its tags itself (plan.build_pushes): ``+ docker buildx build ... --push``.
PUSHING_BUILD_RE = re.compile(r"^\+ (?:\S+=\S* )*docker buildx build .* --push .*$", re.M)


def pushed_refs(result) -> tuple:
    """How the run pushed and what: ``("build", refs)`` when its one build pushed them (the
    client has buildx: plan.build_pushes), ``("docker push", refs)`` from its ``+ docker push``
    lines otherwise. Never both."""
    builds = PUSHING_BUILD_RE.findall(result.stderr)
    pushes = re.findall(r"^\+ docker push (\S+)$", result.stderr, re.M)
    assert not (builds and pushes), f"the build pushed and docker push ran: {result.describe()}"
    if builds:
        assert len(builds) == 1, result.describe()
        words = shlex.split(builds[0][2:])
        return "build", [words[i + 1] for i, word in enumerate(words) if word == "-t"]
    return "docker push", pushes


def client_has_buildx_plugin(env: Optional[dict] = None) -> bool:
    """Whether docker finds its buildx plugin here (what the plan decides the push by)."""
    from ragbuild import docker_config

    environ = {**os.environ, **(env or {})}
    return (
        docker_config.find_cli_plugin("buildx", docker_config.read_docker_config(environ), environ)
        is not None
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tags_of(refs) -> list:
    return [ref.rsplit(":", 1)[1] for ref in refs]


# --- running commands --------------------------------------------------------------------------


@dataclass
class Result:
    argv: list
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def text(self) -> str:
        return self.stdout + self.stderr

    def error_lines(self) -> list:
        return [line for line in self.stderr.splitlines() if line.startswith("error:")]

    def describe(self, lines: int = 60) -> str:
        out = "\n".join(self.text.strip().splitlines()[-lines:])
        return (
            f"`{shlex.join(self.argv)}` exited {self.returncode} after {self.seconds:.1f}s:\n{out}"
        )

    def assert_ok(self) -> Result:
        assert self.returncode == 0, self.describe()
        return self

    def built_id(self) -> str:
        """The image id ragbuild's summary names."""
        match = BUILT_RE.search(self.stderr)
        assert match, f"no 'built <id>' line: {self.describe()}"
        return match[1]

    def timestamp(self) -> str:
        match = TIMESTAMP_RE.search(self.stderr)
        assert match, f"no 'timestamp:' line: {self.describe()}"
        return match[1]


class Runner:
    """Starts commands with the suite's environment; ``env`` entries set to None are removed."""

    def __init__(self, env: dict, cwd: Path):
        self.env = dict(env)
        self.cwd = Path(cwd)

    def environ(self, env: Optional[dict] = None) -> dict:
        merged = dict(self.env)
        for key, value in (env or {}).items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = str(value)
        return merged

    def run(self, argv, *, env=None, cwd=None, timeout=COMMAND_TIMEOUT, input=None) -> Result:
        argv = [str(a) for a in argv]
        print(f"$ {shlex.join(argv)}", flush=True)
        started = time.monotonic()
        # own session: on a timeout the whole tree (make -> script -> docker) is stopped
        proc = subprocess.Popen(
            argv,
            cwd=str(cwd or self.cwd),
            env=self.environ(env),
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_group(proc)
            out, err = proc.communicate()
            print(out, err, sep="\n")
            pytest.fail(f"`{shlex.join(argv)}` did not finish within {timeout}s")
        result = Result(argv, proc.returncode, out, err, time.monotonic() - started)
        print(f"  -> exit {result.returncode} in {result.seconds:.1f}s", flush=True)
        for name, text in (("stdout", out), ("stderr", err)):
            if text.strip():
                print(f"  --- {name} ---\n{text.rstrip()}", flush=True)
        return result


def stop_group(proc, grace: float = 10.0) -> None:
    """SIGTERM the process group of ``proc`` (started with start_new_session), then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


# --- the project under test --------------------------------------------------------------------


@dataclass
class Project:
    """A clean copy of the working tree: its own git repository, one commit, no .venv."""

    path: Path
    sha: str  # short sha of the copy's commit, as `git rev-parse --short HEAD` prints it
    venv: Path
    runner: Runner

    def make(self, *args, env=None, timeout=BUILD_TIMEOUT) -> Result:
        return self.runner.run(
            ["make", "-C", self.path, f"VENV={self.venv}", *args], env=env, timeout=timeout
        )

    def script(self, *args, env=None, timeout=BUILD_TIMEOUT) -> Result:
        return self.runner.run(
            ["./scripts/build-image.py", *args], env=env, cwd=self.path, timeout=timeout
        )

    def popen_script(self, *args, env=None, stdout=None, stderr=None) -> subprocess.Popen:
        """The script in a session of its own (as a terminal's foreground job), not waited for."""
        argv = ["./scripts/build-image.py", *map(str, args)]
        print(f"$ {shlex.join(argv)} &", flush=True)
        return subprocess.Popen(
            argv,
            cwd=str(self.path),
            env=self.runner.environ(env),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )


def copy_tree(src: Path, dest: Path) -> None:
    """Tracked and untracked-not-ignored files of ``src``, mtimes kept (so make does not think
    setup.cfg changed after the venv was made)."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"],
            cwd=src,
            check=True,
            capture_output=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for rel in filter(None, dict.fromkeys(listed)):
        source = src / rel
        if not source.exists() and not source.is_symlink():
            continue  # deleted in the working tree
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)


GIT = [
    "git",
    "-c",
    "user.name=ragbuild e2e",
    "-c",
    "user.email=e2e@ragbuild.invalid",
    "-c",
    "commit.gpgsign=false",
    "-c",
    "init.defaultBranch=main",
    "-c",
    "core.hooksPath=/dev/null",
]


def git(cwd: Path, *args) -> str:
    return subprocess.run(
        [*GIT, *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def set_image_name(setup_cfg: Path, name: str) -> None:
    """Point ``[ragbuild] image-name`` of the copy at ``name``; the mtime stays as it was."""
    stat = setup_cfg.stat()
    text = setup_cfg.read_text()
    new, count = re.subn(r"(?m)^image-name\s*=.*$", f"image-name = {name}", text)
    assert count == 1, "setup.cfg has no [ragbuild] image-name line"
    setup_cfg.write_text(new)
    os.utime(setup_cfg, ns=(stat.st_atime_ns, stat.st_mtime_ns))


# --- docker ------------------------------------------------------------------------------------


class Docker:
    """``$DOCKER`` of the harness, and the look-ups the cases make."""

    def __init__(self, runner: Runner, binary: str):
        self.runner = runner
        self.binary = binary

    def __call__(self, *args, env=None, timeout=COMMAND_TIMEOUT) -> Result:
        return self.runner.run([self.binary, *args], env=env, timeout=timeout)

    def quiet(self, *args) -> subprocess.CompletedProcess:
        """A query whose output is not worth logging."""
        return subprocess.run(
            [self.binary, *map(str, args)],
            env=self.runner.environ(),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
        )

    def version(self, side: str = "Client") -> str:
        """``docker version``'s Client or Server version (``20.10.24+dfsg1``, ``26.1.5+dfsg1``)."""
        done = self.quiet("version", "--format", f"{{{{.{side}.Version}}}}")
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def major(self, side: str = "Client") -> int:
        """The major version of the client or the engine (20, 26, 28)."""
        return int(self.version(side).split(".")[0])

    def image_id(self, ref: str) -> Optional[str]:
        done = self.quiet("image", "inspect", "--format", "{{.Id}}", ref)
        return done.stdout.strip() if done.returncode == 0 else None

    def inspect(self, ref: str) -> dict:
        done = self.quiet("image", "inspect", ref)
        assert done.returncode == 0, f"docker image inspect {ref}: {done.stderr.strip()}"
        return json.loads(done.stdout)[0]

    def refs(self, reference: str) -> list:
        """``docker image ls --filter reference=...`` as sorted ``repo:tag`` strings."""
        done = self.quiet(
            "image",
            "ls",
            "--format",
            "{{.Repository}}:{{.Tag}}",
            "--filter",
            f"reference={reference}",
        )
        assert done.returncode == 0, done.stderr
        return sorted(set(done.stdout.split()))

    def ids(self, reference: str) -> set:
        done = self.quiet(
            "image", "ls", "--quiet", "--no-trunc", "--filter", f"reference={reference}"
        )
        return set(done.stdout.split())

    def labelled(self, label: str) -> set:
        done = self.quiet("image", "ls", "--quiet", "--no-trunc", "--filter", f"label={label}")
        assert done.returncode == 0, done.stderr
        return set(done.stdout.split())

    def containers(self, *filters) -> list:
        argv = [
            "ps",
            "--all",
            "--no-trunc",
            "--format",
            "{{.ID}} {{.Image}} {{.Names}} {{.Status}}",
        ]
        for f in filters:
            argv += ["--filter", f]
        done = self.quiet(*argv)
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()

    def remove_images(self, ids) -> None:
        """Remove images by id, with every tag they carry; ones already gone are fine."""
        for image_id in dict.fromkeys(ids):
            self.quiet("image", "rm", "--force", image_id)

    def remove_container(self, name: str) -> None:
        self.quiet("rm", "--force", name)


class Images:
    """What a test built: ids noted as they are made, and repositories (every image under them
    at teardown). Never the base image or the harness's images."""

    def __init__(self, docker: Docker):
        self.docker = docker
        self.image_ids = []
        self.repositories = []

    def track(self, image_id: str) -> str:
        self.image_ids.append(image_id)
        return image_id

    def track_result(self, result: Result) -> str:
        return self.track(result.built_id())

    def track_repository(self, reference: str) -> str:
        self.repositories.append(reference)
        return reference

    def cleanup(self) -> None:
        ids = list(self.image_ids)
        for reference in self.repositories:
            ids += sorted(self.docker.ids(reference))
        protected = {self.docker.image_id(BASE_IMAGE)}
        self.docker.remove_images(i for i in ids if i not in protected)


# --- registries --------------------------------------------------------------------------------

MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
)


@dataclass
class Manifest:
    digest: str  # the registry's Docker-Content-Digest
    media_type: str
    body: dict = field(repr=False)


class RegistryAPI:
    """The registry's own v2 HTTP API (what ``docker push`` claims is checked against this)."""

    def __init__(self, host: str, *, scheme: str = "http", auth=None, cafile=None):
        self.host = host
        self.base = f"{scheme}://{host}"
        handlers = [urllib.request.ProxyHandler({})]  # local traffic never goes through a proxy
        if cafile:
            handlers.append(
                urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=cafile))
            )
        self._opener = urllib.request.build_opener(*handlers)
        self._auth = None
        if auth:
            self._auth = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()

    def request(self, path: str, *, method: str = "GET", headers=None):
        """(status, headers, body bytes); HTTP errors are answers too."""
        req = urllib.request.Request(self.base + path, method=method, headers=dict(headers or {}))
        if self._auth:
            req.add_header("Authorization", self._auth)
        try:
            with self._opener.open(req, timeout=10) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.headers, err.read()

    def catalog(self) -> list:
        status, _, body = self.request("/v2/_catalog?n=1000")
        assert status == 200, f"{self.base}/v2/_catalog: {status} {body[:200]!r}"
        return json.loads(body).get("repositories") or []

    def tags(self, repository: str) -> list:
        """Sorted tags of ``repository``; [] when the registry does not know it."""
        status, _, body = self.request(f"/v2/{repository}/tags/list?n=1000")
        if status == 404:
            return []
        assert status == 200, f"tags of {repository}: {status} {body[:200]!r}"
        return sorted(json.loads(body).get("tags") or [])

    def manifest(self, repository: str, reference: str) -> Optional[Manifest]:
        status, headers, body = self.request(
            f"/v2/{repository}/manifests/{reference}", headers={"Accept": ", ".join(MANIFEST_TYPES)}
        )
        if status == 404:
            return None
        assert status == 200, f"manifest {repository}:{reference}: {status} {body[:200]!r}"
        data = json.loads(body)
        media_type = (headers.get("Content-Type") or "").split(";")[0] or data.get("mediaType", "")
        return Manifest(headers.get("Docker-Content-Digest", ""), media_type, data)


# --- processes (for the Ctrl-C case) -----------------------------------------------------------


def process_table() -> dict:
    """pid -> (ppid, state, cmdline) of every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = (
                Path(f"/proc/{entry}/cmdline")
                .read_bytes()
                .replace(b"\0", b" ")
                .decode(errors="replace")
                .strip()
            )
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        table[int(entry)] = (int(fields[1]), fields[0], cmdline)
    return table


def descendants(pid: int, table=None) -> dict:
    table = table if table is not None else process_table()
    found, frontier = {}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, (ppid, _state, cmdline) in table.items():
            if ppid == parent and child not in found:
                found[child] = cmdline
                frontier.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def send_signal(proc, signum: int, *, group: bool = False, deadline: float = 20.0) -> tuple:
    """Send ``signum`` to a script started with ``popen_script`` (to its whole process group, as
    a terminal sends Ctrl-C, or to the script alone, as a CI runner sends SIGTERM) and wait for it:
    ``(returncode, seconds)``. A script still running after ``deadline`` fails the test."""
    sent = time.monotonic()
    (os.killpg if group else os.kill)(proc.pid, signum)
    try:
        code = proc.wait(timeout=deadline)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the script did not exit within {deadline}s of {signal.Signals(signum).name}")
    return code, time.monotonic() - sent


@contextlib.contextmanager
def killed_at_exit(proc):
    """However the test ends, the script's process group is not left running (SIGKILL)."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_for(predicate, deadline: float, proc, what: str, interval: float = 0.2) -> None:
    """Poll ``predicate`` until it holds while the script ``proc`` still runs; fail the test
    when the script exits first or ``deadline`` seconds pass."""
    end = time.monotonic() + deadline
    while not predicate():
        assert proc.poll() is None, f"the script exited early ({proc.returncode}) before {what}"
        assert time.monotonic() < end, f"{what} did not happen within {deadline}s"
        time.sleep(interval)


#: A few-line HTTP server as an image's ``serve``: what SageMaker calls (/ping, /invocations) and
#: what ragbuild's smoke test reads (/health: ENVIRONMENT and GIT_COMMIT from the environment).
#: Each knob breaks one rule of SageMaker's serving contract (sagemaker.py).
SAGEMAKER_SERVER = """#!/usr/bin/env python3
import json, os, signal, sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer
time.sleep({delay})
if {handles_term}:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
port = int(os.environ.get("SAGEMAKER_BIND_TO_PORT") or 8080) if {binds} else 8080
health = json.dumps({{"status": "ok", "environment": os.environ.get("ENVIRONMENT", "unknown"),
                     "git_commit": os.environ.get("GIT_COMMIT", "unknown")}}).encode()
class Handler(BaseHTTPRequestHandler):
    def answer(self, body):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        if self.path == "/ping":
            time.sleep({ping_seconds})
            return self.answer(b"")
        if self.path == "/health":
            return self.answer(health)
        self.send_error(404)
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.answer(b"{{}}")
HTTPServer(("", port), Handler).serve_forever()
"""


def sagemaker_image_lines(
    *, delay=0, handles_term=True, binds=True, ping_seconds=0, as_serve=True
) -> tuple:
    """Dockerfile lines (after ``FROM python:3.11-slim``) of an image that serves
    ``SAGEMAKER_SERVER``: as ``/usr/local/bin/serve`` (``as_serve``), else only as its CMD (no
    ``serve``). The script goes in base64, so no quoting of the Dockerfile's shell gets in the way."""

    script = SAGEMAKER_SERVER.format(
        delay=delay, handles_term=handles_term, binds=binds, ping_seconds=ping_seconds
    )
    path = "/usr/local/bin/serve" if as_serve else "/opt/server.py"
    encoded = base64.b64encode(script.encode()).decode()
    return (
        "ARG ENVIRONMENT=unknown",
        "ARG GIT_COMMIT=unknown",
        "ENV ENVIRONMENT=$ENVIRONMENT GIT_COMMIT=$GIT_COMMIT",
        f"RUN echo {encoded} | base64 -d > {path} && chmod 755 {path}",
        f'CMD ["{path}"]',
    )
