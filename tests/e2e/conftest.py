"""Fixtures of the end-to-end suite: real commands against the real engine of tests/e2e/harness.sh
(helpers such as ``Result``, ``Docker`` and ``RegistryAPI`` are in support.py).

Every case runs what a user types (``make ...``, ``./scripts/build-image.py ...``) in a clean copy
of the working tree (its own git repository with one commit, so the tree is clean and its sha is
known), with the repository's ``.venv`` and the leg's ``DOCKER`` (and ``DOCKER_HOST``/``DOCKER_CONTEXT``).

Reusable pieces (e.g. for the push cases):

* ``leg``: the client and engine every case runs on (session-scoped, parametrized over the legs
  the harness brought up, ``E2E_LEGS`` of its env file; ``E2E_LEG=name`` picks one): ``legacy``
  (Debian 12's docker 20.10, BuildKit built in), ``modern`` (a docker 23+ client where ``docker
  build`` is buildx), ``remote`` (a second engine over TCP as the docker context ``remote``),
  ``multiplatform`` (docker 26 with the containerd image store over TCP). Every case runs on the
  first leg; on the others only cases marked ``every_leg``, and cases marked ``legs(...)`` only on
  those legs (deselected elsewhere, never skipped).
* ``e2e_env``: the harness env file as a dict (brought up by the harness if it is missing; a missing
  engine skips, or fails under ``CI=true``).
* ``new_project(name, image_name=None)`` / ``project``: a clean copy; ``project.make(...)``,
  ``project.script(...)``, ``project.popen_script(...)`` run in it and return a ``Result``.
* ``runner``: runs any command with the suite's environment (``runner.run(argv, env=...)``).
* ``docker``: ``$DOCKER`` calls and image look-ups; ``images``: removes what a test built.
* ``pip_args``: the wheel-mirror ``--build-arg``s every worker build needs (one string, for
  ``ARGS=``); ``tiny_context(*lines)``: a ``FROM python:3.11-slim`` build context.
* ``plain_registry`` / ``ecr_registry``: the registries' own HTTP API (tags, manifests, digests).
* ``docker_config``: a fresh ``DOCKER_CONFIG`` directory (logged out of everything); the suite's
  default ``DOCKER_CONFIG`` is an empty session directory too.
* ``unique(label)``: a lowercase name no other run or test uses.
* ``dev_build``: the one worker build (``make build-dev``) the session shares.

A module that sets ``RUNS_LAST = True`` runs after all others (``make clean`` removes every image
of the project, the session's shared build included).
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

from .support import (
    BASE_IMAGE,
    BUILD_TIMEOUT,
    COMMAND_TIMEOUT,
    ENV_FILE,
    HARNESS,
    IN_CI,
    REPO,
    SCRUBBED,
    WORKER,
    Docker,
    Images,
    Project,
    RegistryAPI,
    Result,
    Runner,
    copy_tree,
    git,
    set_image_name,
)


def read_env_file(path: Path) -> dict:
    """The ``export K=V`` lines of the harness env file (values may be double-quoted)."""
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line.startswith("export "):
            continue
        words = shlex.split(line[len("export ") :])
        if words and "=" in words[0]:
            key, _, value = words[0].partition("=")
            env[key] = value
    return env


def engine_answers(docker_binary: str, env: Optional[dict] = None) -> tuple:
    try:
        done = subprocess.run(
            [docker_binary, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, **(env or {})},
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return False, str(err)
    return done.returncode == 0, (done.stderr or done.stdout).strip()


def unavailable(reason: str):
    if IN_CI:
        pytest.fail(f"e2e: {reason} (CI=true: an e2e test never skips)", pytrace=False)
    pytest.skip(f"e2e: {reason}")


@pytest.fixture(scope="session")
def e2e_env() -> dict:
    """The harness env file, brought up with `harness.sh up` (idempotent) when it is missing or
    its engine does not answer."""
    env = harness_env()
    ok, why = engine_answers(env["DOCKER"]) if env.get("DOCKER") else (False, f"no {ENV_FILE}")
    if ok and "E2E_LEGS" not in env:
        ok, why = False, f"{ENV_FILE} names no legs (written by an older harness)"
    if not ok:
        print(f"e2e: {why}; running bash {HARNESS} up", flush=True)
        try:
            up = subprocess.run(
                ["bash", str(HARNESS), "up"], capture_output=True, text=True, timeout=1800
            )
        except subprocess.TimeoutExpired:
            unavailable("tests/e2e/harness.sh up did not finish within 30 minutes")
        if up.returncode != 0:
            tail = "\n".join(up.stderr.strip().splitlines()[-15:])
            unavailable(f"tests/e2e/harness.sh up failed (exit {up.returncode}):\n{tail}")
        env = harness_env()
        ok, why = engine_answers(env["DOCKER"]) if env.get("DOCKER") else (False, f"no {ENV_FILE}")
        if not ok:
            unavailable(f"the Docker engine does not answer after harness.sh up: {why}")
    return env


@dataclass(frozen=True)
class Leg:
    """One docker client against one engine."""

    name: str
    docker: str  # the client binary (DOCKER for ragbuild)
    host: str  # the engine's DOCKER_HOST ("": the local socket)
    can: frozenset  # "buildx", "remote", "multi-platform"
    env: dict  # what the suite's environment sets for it (None: removed)

    def __str__(self) -> str:
        return self.name


def harness_env() -> dict:
    """The harness env file, with the legs' file (``legs.env``) for legs it does not name."""
    env = read_env_file(ENV_FILE) if ENV_FILE.is_file() else {}
    legs_file = ENV_FILE.parent / "legs.env"
    if "E2E_LEGS" not in env and env and legs_file.is_file():
        env.update(read_env_file(legs_file))
    return env


def first_leg() -> str:
    """The harness's first leg before it is up: Debian 13 has no docker 20.10 client (harness.sh
    brings up no legacy leg there)."""
    try:
        version = Path("/etc/debian_version").read_text().strip()
    except OSError:
        version = ""
    return "modern" if version.startswith(("13", "trixie")) else "legacy"


def harness_legs() -> tuple:
    """(the legs to run, the leg every case runs on): ``E2E_LEG`` (comma list) if set, else every
    leg of the harness env file (``first_leg()`` when the harness is not up yet: the e2e_env
    fixture brings it up); every case runs on the harness's first leg (legacy; on Debian 13,
    modern)."""
    known = harness_env().get("E2E_LEGS", "").split() or [first_leg()]
    chosen = os.environ.get("E2E_LEG", "").replace(",", " ").split()
    return (chosen or known), known[0]


LEGS, FULL_LEG = harness_legs()


@pytest.fixture(scope="session", params=LEGS)
def leg(request, e2e_env) -> Leg:
    name = request.param
    if name not in e2e_env.get("E2E_LEGS", "").split():
        unavailable(
            f"leg {name!r} was not brought up by the harness (E2E_LEGS="
            f"{e2e_env.get('E2E_LEGS', '')!r})"
        )
    key = f"E2E_LEG_{name.upper()}"
    docker, host = e2e_env[f"{key}_DOCKER"], e2e_env.get(f"{key}_HOST", "")
    can = frozenset(filter(None, e2e_env.get(f"{key}_CAN", "").split(",")))
    env = {"DOCKER": docker}
    if "remote" in can:  # as a user of a remote engine has it: a docker context
        env["DOCKER_CONTEXT"] = e2e_env["E2E_REMOTE_CONTEXT"]
    elif host:
        env["DOCKER_HOST"] = host
    ok, why = engine_answers(docker, {"DOCKER_HOST": host} if host else {})
    if not ok:
        unavailable(f"leg {name}: the engine does not answer {docker} info: {why}")
    return Leg(name, docker, host, can, env)


@pytest.fixture(scope="session")
def venv() -> Path:
    """The repository's .venv (``make venv``: the Makefile's own bootstrap)."""
    path = REPO / ".venv"
    if not (path / ".installed").exists():
        done = subprocess.run(
            ["make", "-C", str(REPO), "venv"], capture_output=True, text=True, timeout=BUILD_TIMEOUT
        )
        assert done.returncode == 0, f"make venv failed:\n{done.stdout}\n{done.stderr}"
    return path


@pytest.fixture(scope="session")
def token(leg) -> str:
    """Names this run's images and repositories apart from any other run's, and from the same
    case's on another leg of this run (one token per leg)."""
    return secrets.token_hex(3)


def add_remote_context(config: Path, leg: Leg, e2e_env: dict) -> None:
    """The remote engine as a docker context of the docker config ``config`` (every config the
    suite makes has it, so the default context can name it: --builder remote); it writes only
    ``contexts/``, never config.json."""
    env = {**os.environ, "DOCKER_CONFIG": str(config), "DOCKER_CONTEXT": "default"}
    env.pop("DOCKER_HOST", None)
    made = subprocess.run(
        [
            leg.docker,
            "context",
            "create",
            e2e_env["E2E_REMOTE_CONTEXT"],
            "--docker",
            f"host={e2e_env['E2E_REMOTE_HOST']}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )
    assert made.returncode == 0, f"docker context create: {made.stderr}"


@pytest.fixture(scope="session")
def base_env(e2e_env, leg, venv, tmp_path_factory) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED}
    env.update(e2e_env)
    env.update(leg.env)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    env["BUILDKIT_PROGRESS"] = "plain"  # docker's step lines ("#10 CACHED") in the output
    env["DOCKER_CONFIG"] = str(tmp_path_factory.mktemp(f"docker-config-{leg.name}"))
    add_remote_context(Path(env["DOCKER_CONFIG"]), leg, e2e_env)
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent"  # moto only
    env["NO_PROXY"] = env["no_proxy"] = f"localhost,127.0.0.1,{e2e_env.get('E2E_ECR_HOST', '')}"
    return env


@pytest.fixture(scope="session")
def runner(base_env, tmp_path_factory) -> Runner:
    return Runner(base_env, tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def docker(runner, leg) -> Docker:
    """The leg's client against the leg's engine."""
    return Docker(runner, leg.docker)


@pytest.fixture(scope="session")
def local_docker(runner) -> Docker:
    """/usr/bin/docker against the local engine (the default context), whatever the leg."""
    return Docker(
        Runner(runner.environ({"DOCKER_HOST": None, "DOCKER_CONTEXT": None}), runner.cwd),
        "/usr/bin/docker",
    )


@pytest.fixture(scope="session")
def pip_args(e2e_env) -> str:
    """For ``ARGS=``: the wheel mirror (PyPI is unreachable inside builds)."""
    return e2e_env["E2E_PIP_BUILD_ARGS"]


@pytest.fixture(scope="session")
def new_project(runner, venv, token, tmp_path_factory):
    """``new_project(name, image_name=None)``: a fresh clean copy with a commit of its own."""
    counter = itertools.count(1)

    def make(name: str = "project", image_name: Optional[str] = None) -> Project:
        path = tmp_path_factory.mktemp(f"copy-{name}")
        copy_tree(REPO, path)
        if image_name:
            set_image_name(path / "setup.cfg", image_name)
        git(path, "init", "-q")
        git(path, "add", "-A")
        # the message makes each copy's sha (and so its git-<sha> tag) its own
        git(path, "commit", "-q", "-m", f"e2e copy {token}-{next(counter)} {name}")
        sha = git(path, "rev-parse", "--short", "HEAD")
        return Project(path=path, sha=sha, venv=venv, runner=Runner(runner.env, path))

    return make


@pytest.fixture
def project(new_project, request) -> Project:
    return new_project(re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40])


@pytest.fixture
def images(docker):
    tracked = Images(docker)
    yield tracked
    tracked.cleanup()


@pytest.fixture(scope="session")
def session_images(docker):
    tracked = Images(docker)
    yield tracked
    tracked.cleanup()


#: The numbers ``unique`` gives out, one series for the whole session.
_NAMES = itertools.count(1)


@pytest.fixture
def unique(token):
    """``unique("push")`` -> e.g. ``ragbuild-e2e-1a2b3c-push-1``: lowercase, repository-safe,
    and never the same twice in a session: the number counts across tests (two tests asking
    for an "immutable" repository got the same one, and one saw the other's tags)."""

    def name(label: str = "t") -> str:
        return f"ragbuild-e2e-{token}-{label}-{next(_NAMES)}"

    return name


@pytest.fixture
def tiny_context(tmp_path, token):
    """``tiny_context(*lines)``: a build context whose Dockerfile is ``FROM python:3.11-slim``
    plus ``lines`` (default: a LABEL); returns the Dockerfile's path."""
    counter = itertools.count(1)

    def make(*lines) -> Path:
        directory = tmp_path / f"context-{next(counter)}"
        directory.mkdir()
        body = lines or (f'LABEL org.ragbuild.e2e="{token}"',)
        dockerfile = directory / "Dockerfile"
        dockerfile.write_text("\n".join((f"FROM {BASE_IMAGE}", *body)) + "\n")
        return dockerfile

    return make


@pytest.fixture
def docker_config(tmp_path, leg, e2e_env) -> Path:
    """A fresh DOCKER_CONFIG, logged out of everything (no config.json; the remote context on
    the leg that uses it):
    pass ``env={"DOCKER_CONFIG": docker_config}``."""
    path = tmp_path / "docker-config"
    path.mkdir()
    if "DOCKER_CONTEXT" in leg.env:  # the leg reaches its engine through it
        add_remote_context(path, leg, e2e_env)
    return path


@pytest.fixture(scope="session")
def plain_registry(e2e_env) -> RegistryAPI:
    return RegistryAPI(e2e_env["E2E_REGISTRY"])


@pytest.fixture(scope="session")
def ecr_registry(e2e_env) -> RegistryAPI:
    return RegistryAPI(
        e2e_env["E2E_ECR_HOST"],
        scheme="https",
        cafile=e2e_env["E2E_ECR_CA"],
        auth=(e2e_env["E2E_ECR_USER"], e2e_env["E2E_ECR_PASSWORD"]),
    )


@dataclass
class DevBuild:
    project: Project
    result: Result
    image_id: str
    timestamp: str
    #: ref -> image id, read right after the build (later builds move :latest and the like)
    ref_ids: dict
    repo_tags: list


@pytest.fixture(scope="session")
def dev_build(new_project, docker, session_images, pip_args) -> DevBuild:
    """``make build-dev`` of the worker, once per session."""
    project = new_project("dev")
    result = project.make("build-dev", f"ARGS={pip_args}").assert_ok()
    image_id = session_images.track_result(result)
    timestamp = result.timestamp()
    refs = [
        f"{WORKER}:{tag}" for tag in (f"dev-{timestamp}", "dev", f"git-{project.sha}", "latest")
    ]
    return DevBuild(
        project=project,
        result=result,
        image_id=image_id,
        timestamp=timestamp,
        ref_ids={ref: docker.image_id(ref) for ref in refs},
        repo_tags=sorted(docker.inspect(image_id)["RepoTags"]),
    )


def pytest_collection_modifyitems(config, items):
    """Per leg: every case on the first leg, ``every_leg`` cases on all, ``legs(...)`` cases on
    theirs (the rest deselected). The legs run one after the other; within a leg, modules with
    ``RUNS_LAST = True`` go last (stable: the others keep their order)."""
    keep, dropped = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        name = callspec.params.get("leg") if callspec is not None else None
        marked = item.get_closest_marker("legs")
        if name is None:
            wanted = True
        elif marked is not None:
            wanted = name in marked.args
        else:
            wanted = name == FULL_LEG or item.get_closest_marker("every_leg") is not None
        (keep if wanted else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
    items.sort(
        key=lambda item: (
            leg_order(item),
            bool(getattr(getattr(item, "module", None), "RUNS_LAST", False)),
        )
    )


def leg_order(item) -> int:
    """The position of the item's leg (the legs stay grouped: one leg's session at a time)."""
    callspec = getattr(item, "callspec", None)
    name = callspec.params.get("leg") if callspec is not None else None
    return LEGS.index(name) if name in LEGS else -1
