"""Fixtures for the build command's unit tests: a throw-away project directory, a fixed clock,
a docker that is never the real one, and helpers around pytest-subprocess (``fp``)."""

from __future__ import annotations

import os
import stat
import time

import pytest
from plumbum import local

from fakes import (
    EPOCH,
    FAKE_IMAGE_ID,
    register_git,
    register_proxy_info,
    register_registry_config,
    set_tz,
)


#: Variables of the machine (or CI job) running the tests that would change what the code under
#: test does: cleared for every test, so the tests do not depend on who runs them.
MACHINE_VARS = (
    "ECR_REGISTRY_URI",
    "DOCKER",
    "AWS_CLI",
    "DOCKER_HOST",
    "DOCKER_CONTEXT",
    "BUILDX_BUILDER",
    "BUILD_NUMBER",
    "GITHUB_RUN_NUMBER",
    "CI_PIPELINE_IID",
    "GITHUB_OUTPUT",
    "SOURCE_DATE_EPOCH",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_ECR",
    "NO_COLOR",
    "FORCE_COLOR",
    # what the host's pip trusts and installs from (pip_config.py), and proxies
    "PIP_CONFIG_FILE",
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "XDG_CONFIG_DIRS",
    "XDG_CONFIG_HOME",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "all_proxy",
    "ALL_PROXY",
    # `make mutation`: the mutant mutmut tests, kept in this process by mutmut
    # (trampoline.set_mutant_under_test); a child Python running ragbuild elsewhere
    # (a fresh clone) must not look for mutmut's state there
    "MUTANT_UNDER_TEST",
)


def machine_vars(environ) -> list:
    """The names of MACHINE_VARS and every ``PIP_*`` variable set in ``environ``."""
    return [name for name in environ if name in MACHINE_VARS or name.startswith("PIP_")]


def write_stub(directory, name: str, code: int = 97):
    """An executable ``name`` in ``directory`` that says it really ran and exits ``code``."""
    stub = directory / name
    stub.write_text(f"#!/bin/sh\necho 'the stub {name} really ran' >&2\nexit {code}\n")
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return stub


@pytest.fixture(scope="session")
def _machine_stubs(tmp_path_factory):
    """A ``docker`` and an ``aws`` that must never really run, and an empty docker config."""
    bin_dir = tmp_path_factory.mktemp("machine-stubs")
    for name in ("docker", "aws"):
        write_stub(bin_dir, name)
    docker_config = tmp_path_factory.mktemp("empty-docker-config")
    return bin_dir, docker_config


@pytest.fixture(autouse=True)
def _isolated_from_the_machine(_machine_stubs, monkeypatch):
    """Every test: none of MACHINE_VARS, an empty DOCKER_CONFIG, and stub ``docker`` and ``aws``
    first on PATH, so a test passes the same with or without docker and aws installed.

    plumbum resolves bare names on its own copy of the environment (``local.env``), made when
    it was imported, so that copy gets the same PATH and loses the same variables.
    pytest-subprocess's ``fp.program("docker")`` matches on the basename, so it still matches.
    """
    bin_dir, docker_config = _machine_stubs
    path = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    cleared = [name for name in machine_vars(os.environ) if name != "PIP_CONFIG_FILE"]
    for name in cleared:
        monkeypatch.delenv(name, raising=False)
    # pip's configuration files (/etc/pip.conf, ~/.config/pip/pip.conf) are not read: a machine's
    # pip settings never reach a test (pip_config.py reads none when this names /dev/null)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config))
    monkeypatch.setenv("PATH", path)
    with local.env(PATH=path, DOCKER_CONFIG=str(docker_config), PIP_CONFIG_FILE=os.devnull):
        for name in cleared:
            local.env.pop(name, None)
        yield


@pytest.fixture(autouse=True)
def _restore_tz():
    before = os.environ.get("TZ")
    yield
    if before is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = before
    time.tzset()


@pytest.fixture
def stub_bin(tmp_path, monkeypatch):
    """A directory first on PATH holding a ``docker`` that must never really run (it exits 97).

    plumbum resolves bare names on its own copy of PATH, so that copy is changed too: the
    tests then never depend on whether the machine has docker installed.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    write_stub(bin_dir, "docker")
    path = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    monkeypatch.setenv("PATH", path)
    with local.env(PATH=path):
        yield bin_dir


@pytest.fixture
def project(tmp_path, monkeypatch, stub_bin):
    """A project directory as the working directory: a Dockerfile, no setup.cfg, a clean
    environment (no registry, no DOCKER override, no docker context, no CI build number, an
    empty DOCKER_CONFIG), and a fixed clock in UTC."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "Dockerfile").write_text("FROM scratch\n")
    monkeypatch.chdir(root)  # the machine's variables are gone already (_isolated_from_the_machine)
    docker_config = tmp_path / "docker-config"  # no current context from the user's config.json
    docker_config.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    set_tz(monkeypatch, "UTC")
    return root


def _is_build(command) -> bool:
    """Whether an fp pattern is a ``docker build`` or ``docker buildx build``."""
    words = [word for word in list(command)[1:6] if isinstance(word, str)]
    return "build" in words and (
        words.index("build") == 0
        or words[words.index("build") - 1] in ("buildx", "remote", "--context")
    )


#: Where conftest's ``fp`` carries the ID a fake build writes (its ``callback_kwargs``).
IID_KEY = "ragbuild_iid"


def write_image_id(process, image_id: str = FAKE_IMAGE_ID) -> None:
    """What docker does with ``--iidfile PATH``: write the image's ID there."""
    args = [str(arg) for arg in process.args]
    for i, arg in enumerate(args[:-1]):
        if arg == "--iidfile":
            with open(args[i + 1], "w", encoding="utf-8") as handle:
                handle.write(image_id)


@pytest.fixture
def fp(fp, monkeypatch):
    """pytest-subprocess's ``fp``, whose fake ``docker build`` writes ``FAKE_IMAGE_ID`` to its
    ``--iidfile`` as docker does (``iid=None`` in ``register``: writes nothing,
    ``iid="sha256:..."``: that ID). The file is written as the fake starts, not in a callback:
    a fake with a callback keeps its stdout and stderr empty until waited for, and a build's
    stderr is read before that (``Runner._watch``)."""
    from pytest_subprocess.fake_popen import FakePopen

    register = fp.register
    start = FakePopen.run_thread

    def register_build(command, *args, iid=FAKE_IMAGE_ID, **kwargs):
        if _is_build(command) and iid is not None:  # carried where the fake does not look
            kwargs["callback_kwargs"] = {**(kwargs.get("callback_kwargs") or {}), IID_KEY: iid}
        return register(command, *args, **kwargs)

    def run_thread(process):
        given = process._callback_kwargs or {}
        iid = given.get(IID_KEY)
        process._callback_kwargs = {key: value for key, value in given.items() if key != IID_KEY}
        if iid is not None:
            write_image_id(process, iid)
        return start(process)

    monkeypatch.setattr(FakePopen, "run_thread", run_thread)
    fp.register = register_build
    # ``docker tag <image ID> REF`` before each push (push.push): a daemon that tags
    register([fp.program("docker"), "tag", fp.any()], occurrences=1000)
    return fp


@pytest.fixture
def strict_fp(fp):
    """``fp`` that refuses any process not registered, with the git queries answering SHA."""
    fp.allow_unregistered(False)
    register_git(fp)
    register_proxy_info(fp)  # a --push pre-flight's questions to the daemon
    register_registry_config(fp)  # (the second only if verified HTTPS fails)
    return fp


@pytest.fixture
def registry_http():
    """Ask for it to let ``ragbuild.registry`` really send its HTTP requests (to a server the
    test starts); every other test gets the stand-ins below."""


@pytest.fixture(autouse=True)
def _no_registry_requests(request, monkeypatch):
    """Unit tests send no HTTP request to a registry: ``registry.probe`` (the pre-flight's
    question) answers "no problem", as if verified HTTPS answered, and records what it was asked
    in ``probe.asked``: (host, insecure, login, creds); ``registry.send`` is a
    ``registry_fakes.FakeRegistry`` (the read-back's requests), also ``FakeRegistry.current``."""
    if "registry_http" in request.fixturenames:
        yield None
        return
    from registry_fakes import FakeRegistry

    from ragbuild import registry

    asked = []

    def probe(session, daemon_insecure):
        asked.append((session.registry.host, session.insecure, session.login, session.creds))
        return None

    probe.asked = asked
    monkeypatch.setattr(registry, "probe", probe)
    fake = FakeRegistry.current = FakeRegistry()
    monkeypatch.setattr(registry, "send", fake)
    yield probe
    FakeRegistry.current = None


#: The host names the unit tests' resolver knows (the machine's /etc/hosts does not count).
TEST_HOSTS = {"localhost": ["127.0.0.1", "::1"], "vm": ["127.0.0.1"]}


@pytest.fixture(autouse=True)
def _no_system_cli_plugins(monkeypatch):
    """docker's system-wide CLI plugin directories (docker_config.SYSTEM_PLUGIN_DIRS) are the
    machine's: the unit tests see none, so a buildx plugin installed here changes no plan. A
    test that wants one puts ``docker-buildx`` in ``$DOCKER_CONFIG/cli-plugins``
    (``buildx_plugin``)."""
    from ragbuild import docker_config

    monkeypatch.setattr(docker_config, "SYSTEM_PLUGIN_DIRS", ())


@pytest.fixture(autouse=True)
def _own_temp_directory(tmp_path_factory, monkeypatch):
    """Each test's temp directory (``tempfile.gettempdir()``: where a build that pushes keeps
    its answer, ``steps.build.answer_path``) is a new one of its own, never the machine's /tmp."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path_factory.mktemp("tmpdir")))


@pytest.fixture
def buildx_plugin(tmp_path, monkeypatch):
    """A DOCKER_CONFIG of the test's own with an executable ``cli-plugins/docker-buildx``,
    where docker looks first: the client has buildx, so a one-platform push goes with the
    build."""
    config = tmp_path / "docker-config-with-buildx"
    (config / "cli-plugins").mkdir(parents=True)
    plugin = write_stub(config / "cli-plugins", "docker-buildx")
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    monkeypatch.setitem(local.env, "DOCKER_CONFIG", str(config))
    return plugin


@pytest.fixture(autouse=True)
def _fixed_resolver(monkeypatch):
    """Which registries the daemon treats as insecure depends on what their names resolve to:
    the unit tests resolve only ``TEST_HOSTS``, whatever the machine's DNS and hosts file say."""
    from ragbuild import docker_config

    monkeypatch.setattr(docker_config, "_resolve", lambda name: list(TEST_HOSTS.get(name, [])))


#: Variables a git hook or the caller's shell may set that would point git elsewhere.
GIT_LOCATION_VARS = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_CEILING_DIRECTORIES",
    "GIT_DISCOVERY_ACROSS_FILESYSTEM",
)


@pytest.fixture
def git_env(tmp_path, monkeypatch, project):
    """Git sees only the test's directories and no user or system configuration."""
    with local.env():  # plumbum merges its own copy of the environment into every child's
        for name in GIT_LOCATION_VARS:
            monkeypatch.delenv(name, raising=False)
            local.env.pop(name, None)
        monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
        monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
        monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
        yield project
