"""What every benchmark family shares: paths and names, the targets, rows and their figures,
interleaved rounds, and ``Bench`` (the harness's environment, the work dir, the processes, git,
and what the report collects)."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shlex
import shutil
import statistics
import sys
import time
import urllib.request
from pathlib import Path
from typing import Callable, Union
from collections.abc import Sequence

from benchmarks.shell import CommandError, Shell

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "build-image.py"
RESULTS = REPO / "benchmarks" / "results"
SINGLE_STAGE = REPO / "benchmarks" / "Dockerfile.single-stage"
DOCKER28 = "/usr/local/bin/docker"  # the newer client, with the buildx plugin
BE_IMAGE = "python:3.11-slim-buildessential"
SMALL = "ragbuild-bench-small"
WORKER = "ragbuild-bench-worker"
GIT_ID = (
    "-c",
    "user.name=ragbuild bench",
    "-c",
    "user.email=bench@ragbuild.invalid",
    "-c",
    "commit.gpgsign=false",
)
PUSH_EPOCH = "1767225600"  # SOURCE_DATE_EPOCH for the push runs: a re-push has the same tags
ATTEMPTS = 3  # tries per round: a concurrent e2e run may stop the registry or replace the base

TARGETS = {  # name: (limit, what it is); each a ratio of medians, met when <= limit
    "change": (0.15, "rebuild after a one-line src/ change / cold build"),
    "size": (0.60, "multi-stage image size / single-stage (build-essential) size"),
    "push": (1.30, "push of six tags / push of one tag"),
    "wrapper": (0.80, "cached rebuild: `build-image.py --env dev` / the bash command sequence"),
    "real-size": (0.60, "realistic set: image size, Dockerfile / single-stage"),
    "real-bump": (
        0.35,
        "realistic set: Dockerfile, rebuild after bumping one pin / its cold build",
    ),
    "real-cold": (0.80, "realistic set: cold build, Dockerfile / single-stage"),
    "promote": (
        0.50,
        "promote of six tags by manifest (`build-image.py promote`) / a cached "
        "build and push of six tags (`build-image.py --push` again)",
    ),
    "unchanged": (
        1.50,
        "cached build + push of six unchanged tags: `build-image.py --push` / "
        "one `docker buildx build --push` (Docker 28 client)",
    ),
}

Ratio = tuple[str, str, str, str]  # (what, value, target, verdict): a derived-figure row
Sample = Union[float, dict]  # a round's seconds for its row, or {Row: seconds}


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


class Row:
    """One timed benchmark: ``samples`` in seconds, one per complete round."""

    def __init__(self, section: str, name: str, note: str = ""):
        self.section, self.name, self.note = section, name, note
        self.samples: list[float] = []

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


def fmt_time(seconds: float) -> str:
    """``0.1234`` -> ``123 ms``; ``1.5`` -> ``1.50 s``."""
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def fmt_size(size: int) -> str:
    """Bytes -> ``123.4 MB`` (10**6 bytes, as docker prints sizes)."""
    return f"{size / 1e6:.1f} MB"


def met(value: float, limit: float) -> str:
    return "met" if value <= limit else "**not met**"


def ratio(what: str, value: float, limit: float | None = None) -> Ratio:
    """A derived-figure row: against ``limit`` (met when <=), or for comparison only (None)."""
    if limit is None:
        return (what, f"{value:.3f}", "-", "-")
    return (what, f"{value:.3f}", f"<= {limit}", met(value, limit))


def target(key: str, value: float) -> Ratio:
    """The derived-figure row of ``TARGETS[key]``."""
    limit, what = TARGETS[key]
    return ratio(what, value, limit)


def load_sample() -> dict:
    """``{"load1": float, "others": int}``: load average and processes of others that add
    noise (e2e tests, builds, pushes)."""
    with open("/proc/loadavg", encoding="utf-8") as f:
        load1 = float(f.read().split()[0])
    me, others = os.getpid(), 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(pid) != me and re.search(r"pytest|build-image\.py|docker (build|push)|buildx", cmd):
            others += 1
    return {"load1": load1, "others": others}


def interleave(
    bench: Bench, rows_and_fns: Sequence[tuple[Row, Callable[[int], Sample]]], runs: int
) -> None:
    """Run each (row, fn) once per round, the order rotated each round. ``fn(i)``: seconds for
    its row, or {row: seconds}. Only complete rounds count; a failed round is retried from its
    start once the harness answers (``Bench.retried``), up to ``ATTEMPTS`` times."""
    rows_and_fns = list(rows_and_fns)
    for i in range(runs):
        k = i % len(rows_and_fns)
        for attempt in range(1, ATTEMPTS + 1):
            got: list = []
            try:
                for row, fn in rows_and_fns[k:] + rows_and_fns[:k]:
                    value = fn(i)
                    got += value.items() if isinstance(value, dict) else [(row, value)]
                break
            except CommandError as failure:
                if attempt == ATTEMPTS:
                    raise
                bench.retried(failure)
        for row, value in got:
            row.samples.append(value)


def copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


class Bench:
    """One benchmark run: its options (``args``), the harness's environment, the work dir, the
    processes (``sh``), and what the report collects from the families."""

    def __init__(self, args: argparse.Namespace, env: dict[str, str], work: Path):
        self.args, self.env, self.work = args, env, work
        self.py = sys.executable
        self.docker = env.get("DOCKER") or "/usr/bin/docker"
        self.base = env.get("E2E_BASE_IMAGE", "python:3.11-slim")
        self.sh = Shell(env, work / "bench.log", hint=self.harness_hints)
        self.rid = dt.datetime.now().strftime("%H%M%S") + f"-{os.getpid()}"
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self.ratios: list[Ratio] = []
        self.counts: list[tuple] = []  # (variant, processes per COUNTED program...)
        self.sizes: list[tuple[str, int, str]] = []  # (image, bytes, note)
        self.importtime: dict[str, dict] = {}  # label: cli.parse_importtime's answer
        self.samples: list[dict] = [load_sample()]
        self.base_ids: list[str] = []
        self.retries: list[str] = []
        self.markers: list[str] = []  # cold builds' cache-mount markers (realistic)
        self.ran_unchanged = False  # its docker client goes into the facts
        self.pip_args = shlex.split(env.get("E2E_PIP_BUILD_ARGS", ""))
        self.push_host = "127.0.0.1:" + env["E2E_REGISTRY"].rsplit(":", 1)[1]
        state = Path(env.get("RAGBUILD_E2E_STATE", "/var/tmp/ragbuild-e2e"))
        self.repos_dir = state / "registry-plain/data/docker/registry/v2/repositories"
        # a PATH directory whose `docker` is the harness's client (/usr/local/bin/docker lacks buildx)
        self.realbin = work / "realbin"
        self.realbin.mkdir()
        (self.realbin / "docker").symlink_to(self.docker)
        self.path = f"{self.realbin}{os.pathsep}{env.get('PATH', os.defpath)}"
        self.git = shutil.which("git", path=self.path) or "git"

    @property
    def timed_env(self) -> dict[str, str]:
        """The variables a ragbuild run gets: the harness's docker, first on PATH too."""
        return {"PATH": self.path, "DOCKER": self.docker}

    def timer(self, argv: list, cwd: Path, extra_env: dict[str, str]) -> Callable[[int], float]:
        """A round's function (``interleave``) that times ``argv``, output to the log."""
        return lambda i: self.sh.timed(argv, cwd=cwd, extra_env=extra_env)

    def row(self, section: str, name: str, note: str = "") -> Row:
        row = Row(section, name, note)
        self.rows.append(row)
        return row

    def ragbuild(self, *flags: str) -> list:
        return [self.py, SCRIPT, *flags]

    def git_init(self, directory: Path) -> None:
        self.sh.run([self.git, "init", "-q"], cwd=directory)
        self.sh.run([self.git, *GIT_ID, "add", "-A"], cwd=directory)
        self.git_commit(directory, "bench", "-q")

    def git_commit(self, directory: Path, message: str, *flags: str) -> None:
        self.sh.run([self.git, *GIT_ID, "commit", *flags, "-m", message], cwd=directory)

    def size_of(self, ref: str) -> int:
        """An image's size in bytes, as the engine reports it."""
        return int(self.sh.out([self.docker, "image", "inspect", "--format", "{{.Size}}", ref]))

    def base_id(self) -> None:
        self.base_ids.append(
            self.sh.out([self.docker, "image", "inspect", "--format", "{{.Id}}", self.base])
        )

    def drop_repo(self, name: str) -> bool:
        """Remove a benchmark repository from the registry's storage, so the next first push
        cannot mount its layers from it (docker mounts blobs across repositories it knows)."""
        path = self.repos_dir / name
        if path.is_dir():
            shutil.rmtree(path)
            return True
        return False

    def harness_up(self) -> tuple[bool, bool]:
        """(the base image is on the engine, the plain registry answers /v2/)."""
        probe = self.sh.capture([self.docker, "image", "inspect", self.base], check=False)
        try:
            with urllib.request.urlopen(f"http://{self.push_host}/v2/", timeout=3) as answer:
                registry_up = answer.status == 200
        except OSError:
            registry_up = False
        return probe.returncode == 0, registry_up

    def harness_hints(self) -> str:
        """Lines (each after a newline) naming what of the harness vanished mid-run, or ""."""
        has_base, registry_up = self.harness_up()
        hints = (
            []
            if has_base
            else [f"{self.base} is gone from the engine (removed by someone else during the run?)"]
        )
        if not registry_up:
            hints.append(
                f"the plain registry {self.env.get('E2E_REGISTRY', '')} does not answer "
                "(stopped by someone else during the run?)"
            )
        return "".join(f"\n{hint}" for hint in hints)

    def retried(self, failure: CommandError) -> None:
        """A round failed: note it, wait until the harness serves again (up to 300 s, else
        SystemExit), then return for the round to be retried."""
        lines = str(failure).splitlines()
        first_line = " / ".join([re.sub(r"; see \S+$", "", lines[0])] + lines[1:])
        log(f"round failed, retrying it when the harness answers again: {first_line}")
        self.retries.append(first_line)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if all(self.harness_up()):
                time.sleep(2)
                return
            time.sleep(2)
        raise SystemExit(f"error: the harness did not come back within 300 s after: {first_line}")


def cache_note(logs: Path, key: str) -> str:
    """How many build steps ran and how many came from the cache, from the last
    ``logs/<key>-*.log`` (BuildKit's plain progress)."""
    text = sorted(logs.glob(f"{key}-*.log"))[-1].read_text(errors="replace")
    steps = {
        vertex
        for vertex, instruction in re.findall(r"^(#\d+) \[(?:[\w.-]+ )?\d+/\d+\] (\S+)", text, re.M)
        if instruction.upper() != "FROM"
    }
    cached = set(re.findall(r"^(#\d+) CACHED", text, re.M))
    return f"{len(steps & cached)} of {len(steps)} Dockerfile steps (after FROM) cached"
