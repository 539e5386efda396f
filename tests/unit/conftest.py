"""Fixtures for the build command's unit tests: a throw-away project directory, a fixed clock,
a docker that is never the real one, and helpers around pytest-subprocess (``fp``)."""

from __future__ import annotations

import os
import stat
import time

import pytest
from plumbum import local

from fakes import EPOCH, register_git, set_tz


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
    docker = bin_dir / "docker"
    docker.write_text("#!/bin/sh\necho 'the stub docker really ran' >&2\nexit 97\n")
    docker.chmod(docker.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
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
    monkeypatch.chdir(root)
    for name in ("ECR_REGISTRY_URI", "DOCKER", "AWS_CLI", "DOCKER_HOST", "DOCKER_CONTEXT",
                 "BUILD_NUMBER", "GITHUB_RUN_NUMBER", "CI_PIPELINE_IID"):
        monkeypatch.delenv(name, raising=False)
    docker_config = tmp_path / "docker-config"  # no current context from the user's config.json
    docker_config.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    set_tz(monkeypatch, "UTC")
    return root


@pytest.fixture
def strict_fp(fp):
    """``fp`` that refuses any process not registered, with ``git describe`` answering SHA."""
    fp.allow_unregistered(False)
    register_git(fp)
    return fp
