"""The harness on a machine it did not set up (issue 23, item 6): a Docker engine it did not start,
a ``python:3.11-slim`` it did not import, no rootfs tarball in its cache.

The engine here is started by the test itself, outside the harness, beside the suite's engines
(own --data-root, --exec-root, --pidfile, TCP socket on 127.0.0.1 and a bridge of its own made
with ``ip link add``; never --bridge=none, which deletes docker0), and stopped and removed after.
The harness runs with a state and cache directory of its own (empty: no tarball), against it:

* ``harness.sh engine`` (``make engine``) with ``DOCKER_HOST`` at it takes the engine as running
  and not its own, and the base image the engine has (put there by ``docker save | docker load``),
  without importing or debootstrapping anything;
* ``harness.sh base-image HOST`` (what ``up`` does for its second and third engines) gives it the
  first engine's base image by ``docker save | docker load``: the same image, kept when already
  there, replacing another image of that name.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import socket
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from .support import BASE_IMAGE, HARNESS, IN_CI

pytestmark = pytest.mark.e2e

DOCKERD = "/usr/sbin/dockerd"
DOCKER = "/usr/bin/docker"
FINGERPRINT = "{{.Id}} {{.Created}} {{json .RootFS.Layers}}"


@pytest.fixture(autouse=True)
def first_leg_only(leg):
    """Once per suite (the first leg's session): the harness, not a leg, is under test."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_subnet() -> str:
    """A /24 under 10.232.0.0/16 no interface of this machine is on: ``10.232.N.1/24``."""
    taken = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    for _ in range(100):
        net = ipaddress.ip_network(f"10.232.{secrets.randbelow(250) + 1}.0/24")
        if f" {net.network_address + 1}/" not in taken and str(net)[:-5] not in taken:
            return f"{net.network_address + 1}/24"
    raise AssertionError("no free /24 under 10.232.0.0/16")


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "DOCKER_CONTEXT")}
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Engine:
    """A dockerd this test started (``host``: its DOCKER_HOST)."""

    def __init__(self, root: Path, dockerd: str = DOCKERD, client: str = DOCKER, *extra: str):
        if not (os.geteuid() == 0 and shutil.which("ip") and os.access(dockerd, os.X_OK)):
            reason = f"starting a second dockerd needs root, ip(8) and {dockerd}"
            if IN_CI:
                pytest.fail(f"e2e: {reason} (CI=true: an e2e test never skips)", pytrace=False)
            pytest.skip(f"e2e: {reason}")
        tag = secrets.token_hex(3)
        self.name = f"rbe-st-{tag}"  # a bridge name has at most 15 characters
        self.root = root
        self.exec_root = Path(f"/run/{self.name}")
        self.host = f"tcp://127.0.0.1:{free_port()}"
        self.bridge_up = False
        self.process = None
        self.dockerd, self.client, self.extra = dockerd, client, extra

    def start(self) -> None:
        subprocess.run(["ip", "link", "add", self.name, "type", "bridge"], check=True)
        self.bridge_up = True
        subprocess.run(["ip", "addr", "add", free_subnet(), "dev", self.name], check=True)
        subprocess.run(["ip", "link", "set", self.name, "up"], check=True)
        (self.root / "data").mkdir(parents=True)
        self.log = open(self.root / "dockerd.log", "wb")
        bin_dir = os.path.dirname(self.dockerd)  # its own containerd, runc and docker-proxy first
        self.process = subprocess.Popen(
            [
                self.dockerd,
                "--data-root",
                str(self.root / "data"),
                "--exec-root",
                str(self.exec_root),
                "--pidfile",
                str(self.root / "dockerd.pid"),
                "-H",
                self.host,
                "--bridge",
                self.name,
                "--iptables=false",
                "--ip-masq=false",
                "--containerd-namespace",
                self.name,
                "--containerd-plugins-namespace",
                f"{self.name}-plugins",
                *self.extra,
            ],
            env=clean_env(PATH=f"{bin_dir}:{os.path.dirname(bin_dir)}/bin:{os.environ['PATH']}"),
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while self.docker("info").returncode != 0:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"the test's dockerd did not answer on {self.host}:\n"
                    + (self.root / "dockerd.log").read_text()[-3000:]
                )
            time.sleep(0.3)

    def docker(self, *args, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(
            [self.client, *args],
            env=clean_env(DOCKER_HOST=self.host),
            capture_output=True,
            text=True,
            timeout=300,
            **kw,
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self.process is not None:
            self.log.close()
        if self.bridge_up:
            subprocess.run(["ip", "link", "del", self.name], capture_output=True)
        for base in (self.exec_root, self.root / "data"):
            mounts = [
                line.split()[1]
                for line in Path("/proc/mounts").read_text().splitlines()
                if line.split()[1].startswith(f"{base}/")
            ]
            for mount in sorted(mounts, reverse=True):
                subprocess.run(["umount", "-l", mount], capture_output=True)
        shutil.rmtree(self.exec_root, ignore_errors=True)
        shutil.rmtree(self.root / "data", ignore_errors=True)


@pytest.fixture(scope="module")
def outside_engine(tmp_path_factory, e2e_env):
    """A dockerd 20.10 the harness did not start (e2e_env: the suite's first engine is up)."""
    engine = Engine(tmp_path_factory.mktemp("outside-engine"))
    try:
        engine.start()
        yield engine
    finally:
        engine.stop()


def first_engine(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [DOCKER, *args], env=clean_env(), capture_output=True, text=True, timeout=300
    )


def save_load(engine: Engine, ref: str) -> None:
    """``docker save REF`` from the first engine into ``docker load`` on ``engine``."""
    save = subprocess.Popen([DOCKER, "save", ref], env=clean_env(), stdout=subprocess.PIPE)
    load = engine.docker("load", "-q", stdin=save.stdout)
    save.stdout.close()
    assert save.wait(300) == 0 and load.returncode == 0, load.stderr


def harness(tmp_path: Path, *args, host: str = "") -> subprocess.CompletedProcess:
    """harness.sh with a state and cache of its own (no rootfs tarball), DOCKER_HOST=host."""
    extra = {"RAGBUILD_E2E_STATE": tmp_path / "state", "RAGBUILD_E2E_CACHE": tmp_path / "cache"}
    if host:
        extra["DOCKER_HOST"] = host
    return subprocess.run(
        ["bash", str(HARNESS), *args],
        env=clean_env(**extra),
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_engine_takes_an_engine_it_did_not_start_and_the_image_it_has(outside_engine, tmp_path):
    outside_engine.docker("image", "rm", "-f", BASE_IMAGE)
    save_load(outside_engine, BASE_IMAGE)
    before = outside_engine.docker("image", "inspect", "-f", FINGERPRINT, BASE_IMAGE)
    assert before.returncode == 0, before.stderr

    done = harness(tmp_path, "engine", host=outside_engine.host)

    assert done.returncode == 0, done.stderr
    assert "already running (not ours" in done.stderr, done.stderr
    assert f"image {BASE_IMAGE} present" in done.stderr, done.stderr
    for never in ("docker import", "debootstrap", "docker pull", "starting dockerd"):
        assert never not in done.stderr, done.stderr
    assert "engine ready: client " in done.stderr
    after = outside_engine.docker("image", "inspect", "-f", FINGERPRINT, BASE_IMAGE)
    assert after.stdout == before.stdout  # the image it had, not another
    assert not list((tmp_path / "cache").glob("rootfs-*.tar"))
    # and the first engine was not asked to do anything: it still answers as before
    assert first_engine("image", "inspect", BASE_IMAGE).returncode == 0


def test_base_image_gives_an_engine_the_first_engines_image(outside_engine, tmp_path):
    want = first_engine("image", "inspect", "-f", FINGERPRINT, BASE_IMAGE)
    assert want.returncode == 0, want.stderr
    outside_engine.docker("image", "rm", "-f", BASE_IMAGE)

    given = harness(tmp_path, "base-image", outside_engine.host)
    assert given.returncode == 0, given.stderr
    assert "| docker load into " in given.stderr and "replacing" not in given.stderr, given.stderr
    assert "docker import" not in given.stderr
    got = outside_engine.docker("image", "inspect", "-f", FINGERPRINT, BASE_IMAGE)
    assert got.stdout == want.stdout  # the same image: same ID, creation time and layers

    again = harness(tmp_path, "base-image", outside_engine.host)
    assert again.returncode == 0 and "is the first engine's" in again.stderr, again.stderr
    assert "docker load" not in again.stderr

    # another image of that name (a contributor's own): replaced by the first engine's
    rootfs = tmp_path / "other.tar"
    (tmp_path / "hello").write_text("another image\n")
    with tarfile.open(rootfs, "w") as tar:
        tar.add(tmp_path / "hello", arcname="hello")
    assert outside_engine.docker("import", str(rootfs), BASE_IMAGE).returncode == 0
    replaced = harness(tmp_path, "base-image", outside_engine.host)
    assert replaced.returncode == 0, replaced.stderr
    assert "(replacing another python:3.11-slim there)" in replaced.stderr, replaced.stderr
    got = outside_engine.docker("image", "inspect", "-f", FINGERPRINT, BASE_IMAGE)
    assert got.stdout == want.stdout


def test_base_image_gives_a_containerd_store_engine_the_same_image(tmp_path, e2e_env):
    """Docker 26 with the containerd image store (the multiplatform leg's kind): ``docker load``
    of the classic store's ``docker save`` keeps the image's config (its creation time and
    layers; the ID there is the manifest's)."""
    root = Path(e2e_env["RAGBUILD_E2E_CACHE"]) / "docker26" / "usr"
    config = tmp_path / "daemon.json"
    config.write_text('{"features": {"containerd-snapshotter": true}}\n')
    engine = Engine(
        tmp_path / "engine",
        str(root / "sbin" / "dockerd"),
        str(root / "bin" / "docker"),
        "--config-file",
        str(config),
    )
    try:
        engine.start()
        assert (
            "io.containerd.snapshotter" in engine.docker("info", "-f", "{{.DriverStatus}}").stdout
        )
        given = harness(tmp_path, "base-image", engine.host, engine.client)
        assert given.returncode == 0 and "| docker load into " in given.stderr, given.stderr
        shape = FINGERPRINT.split(" ", 1)[1]  # the ID is the manifest's there
        want = first_engine("image", "inspect", "-f", shape, BASE_IMAGE).stdout
        assert engine.docker("image", "inspect", "-f", shape, BASE_IMAGE).stdout == want
        again = harness(tmp_path, "base-image", engine.host, engine.client)
        assert again.returncode == 0 and "is the first engine's" in again.stderr, again.stderr
    finally:
        engine.stop()


def test_base_image_refuses_a_host_where_no_engine_answers(tmp_path):
    done = harness(tmp_path, "base-image", f"tcp://127.0.0.1:{free_port()}")
    assert done.returncode != 0
    assert "no engine answers /usr/bin/docker info at tcp://127.0.0.1:" in done.stderr, done.stderr
