#!/usr/bin/env python3
"""ragbuild's performance report: ``make bench`` (after ``tests/e2e/harness.sh up --with-buildessential --with-realistic``).

Runs on the e2e harness's Docker engine, base images, wheel mirror and plain registry, and
prints one Markdown report (also written to benchmarks/results/latest.md): every figure in it
comes from this run. Timings are wall-clock seconds of a whole command, from start to exit,
measured here with ``time.perf_counter``; each row gives the median and, beside it, the min and
max of its runs. Rows are interleaved run by run (A1 B1 C1 A2 B2 ...) so a burst of load from
elsewhere on the machine hits every row alike rather than one.

Sections:
  1. wrapper overhead: a fully cached rebuild of a tiny image through ragbuild, a bare
     ``docker build`` (the floor) and the command sequence build-image.sh would run
  2. the worker image: cold build, rebuild after a one-line change under src/, no-change rebuild
  3. image size: the multi-stage Dockerfile against benchmarks/Dockerfile.single-stage
  4. push to the plain registry: one tag, six tags, a re-push of unchanged tags
  5. CLI latency of --help and --dry-run, with ``python -X importtime`` top entries, and the
     dirty check alone (``steps.git_info`` on the worker's context, timed in-process)
  6. the realistic dependency set (benchmarks/requirements-realistic.txt, ~120 wheels): the
     Dockerfile (uv, BuildKit cache mounts) against benchmarks/Dockerfile.single-stage on the
     same mirror: cold build, rebuild after a one-line src/ change, rebuild after bumping one pin
     (benchmarks/requirements-realistic-bump.txt), image size
  7. a cached build plus push of six unchanged tags: build-image.py against one
     ``docker buildx build --provenance=false -t ... (six tags) --push .``, both on the Docker 28
     client (/usr/local/bin/docker) with the buildx plugin

``--only`` runs some sections (e.g. ``--only realistic,unchanged,wrapper``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "build-image.py"
RESULTS = REPO / "benchmarks" / "results"
SINGLE_STAGE = REPO / "benchmarks" / "Dockerfile.single-stage"
REALISTIC = REPO / "benchmarks" / "requirements-realistic.txt"
REALISTIC_BUMP = REPO / "benchmarks" / "requirements-realistic-bump.txt"
DOCKER28 = "/usr/local/bin/docker"  # the newer client, with the buildx plugin
SECTIONS = ("wrapper", "worker", "size", "push", "cli", "realistic", "unchanged")
# the Dockerfile's dependency steps, as the cold builds rewrite them: their own (empty) cache
# mounts, and a marker in the command that names those mounts' records for the clean-up
CACHE_IDS = ("id=ragbuild-uv,",)  # every cache mount of the Dockerfile, each in one or more steps
MARKED_STEP = "set -e; \\\n"  # how each step that mounts one begins
DEFAULT_ENV_FILE = Path(os.environ.get("RAGBUILD_E2E_STATE", "/var/tmp/ragbuild-e2e")) / "env"
BE_IMAGE = "python:3.11-slim-buildessential"

SMALL = "ragbuild-bench-small"
WORKER = "ragbuild-bench-worker"
SINGLE = "ragbuild-bench-single"
REAL_MULTI = "ragbuild-bench-real-multi"
REAL_SINGLE = "ragbuild-bench-real-single"
GIT_ID = ("-c", "user.name=ragbuild bench", "-c", "user.email=bench@ragbuild.invalid",
          "-c", "commit.gpgsign=false")
# programs whose processes the counting run records (docker and git; uname, date and tail are
# the other programs the three variants start: plumbum's import runs `uname -p`)
COUNTED = ("docker", "git", "uname", "date", "tail")
PUSH_EPOCH = "1767225600"  # SOURCE_DATE_EPOCH for the push runs: a re-push has the same tags

#: Times one ``steps.git_info`` in the working directory (a committed copy of the worker's
#: context), after one untimed call (imports, page cache); prints seconds, files docker sends,
#: git processes started and whether it found the tree dirty (0/1). argv[1]: the repository.
GIT_FACTS_TIMER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from ragbuild import gitfacts
from ragbuild.plan import Options
from ragbuild.runner import Runner
from ragbuild.steps import git_info

class Counting(Runner):
    calls = 0

    def run(self, cmd, **kw):
        Counting.calls += 1
        return super().run(cmd, **kw)

git_info(Runner(), Options(env="dev"))
start = time.perf_counter()
info = git_info(Counting(), Options(env="dev"))
elapsed = time.perf_counter() - start
sent = gitfacts.sent_files(".", ".", "Dockerfile")
print(f"{elapsed:.6f} {len(sent.files)} {Counting.calls} {int(info.dirty)}")
"""

TARGETS = {  # name: (limit, what it is)
    "change": (0.15, "rebuild after a one-line src/ change / cold build"),
    "size": (0.60, "multi-stage image size / single-stage (build-essential) size"),
    "push": (1.30, "push of six tags / push of one tag"),
    "wrapper": (0.80, "cached rebuild: `build-image.py --env dev` / the bash command sequence"),
    "real-size": (0.60, "realistic set: image size, Dockerfile / single-stage"),
    "real-bump": (0.35, "realistic set: Dockerfile, rebuild after bumping one pin / its cold build"),
    "real-cold": (0.80, "realistic set: cold build, Dockerfile / single-stage"),
    "unchanged": (1.50, "cached build + push of six unchanged tags: `build-image.py --push` / "
                        "one `docker buildx build --push` (Docker 28 client)"),
}


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- environment and processes -----------------------------------------------------------------


def load_env_file(path: Path) -> dict:
    """The environment after sourcing the harness's env file (it is shell: let bash read it)."""
    if not path.is_file():
        sys.exit(f"error: {path} not found: bring the harness up first "
                 "(bash tests/e2e/harness.sh up --with-buildessential --with-realistic), or run `make bench`")
    done = subprocess.run(["bash", "-c", 'set -a; . "$1"; env -0', "bash", str(path)],
                          capture_output=True, check=True)
    pairs = (item.split("=", 1) for item in done.stdout.decode().split("\0") if "=" in item)
    return dict(pairs)


class CommandError(SystemExit):
    """A command of a benchmark round failed; the round may be retried."""


class Sh:
    """Runs commands with the harness's environment; output goes to one log file."""

    def __init__(self, env: dict, logfile: Path):
        self.env = env
        self.logfile = logfile
        self._log = open(logfile, "a", encoding="utf-8")

    def run(self, argv, *, cwd=None, extra_env=None, check=True, capture=False):
        env = {**self.env, **(extra_env or {})}
        self._log.write(f"\n$ (cd {cwd or os.getcwd()}) {shlex.join(map(str, argv))}\n")
        self._log.flush()
        if capture:
            done = subprocess.run(list(map(str, argv)), cwd=cwd, env=env, capture_output=True,
                                  text=True)
            self._log.write(done.stdout + done.stderr)
        else:
            done = subprocess.run(list(map(str, argv)), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                  stdout=self._log, stderr=subprocess.STDOUT)
        if check and done.returncode != 0:
            self._log.flush()
            raise CommandError(f"error: `{shlex.join(map(str, argv))}` failed (exit "
                               f"{done.returncode}); see {self.logfile}{self.why()}")
        return done

    def timed(self, argv, *, cwd=None, extra_env=None, output: Path | None = None) -> float:
        """Wall-clock seconds of one command; its output goes to ``output`` (or the log)."""
        env = {**self.env, **(extra_env or {})}
        sink = open(output, "w", encoding="utf-8") if output else self._log
        if not output:
            self._log.write(f"\n$ (cd {cwd}) {shlex.join(map(str, argv))}\n")
            self._log.flush()
        try:
            start = time.perf_counter()
            done = subprocess.run(list(map(str, argv)), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                  stdout=sink, stderr=subprocess.STDOUT)
            elapsed = time.perf_counter() - start
        finally:
            if output:
                sink.close()
        if done.returncode != 0:
            raise CommandError(f"error: `{shlex.join(map(str, argv))}` failed (exit "
                               f"{done.returncode}); see {output or self.logfile}{self.why()}")
        return elapsed

    def why(self) -> str:
        """A hint when the harness's base image vanished (someone removed it mid-run)."""
        base = self.env.get("E2E_BASE_IMAGE", "python:3.11-slim")
        docker = self.env.get("DOCKER") or "/usr/bin/docker"
        probe = subprocess.run([docker, "image", "inspect", base], capture_output=True, env=self.env)
        hints = []
        if probe.returncode != 0:
            hints.append(f"{base} is gone from the engine (removed by someone else during the run?)")
        registry = self.env.get("E2E_REGISTRY", "")
        try:
            with urllib.request.urlopen(f"http://{registry}/v2/", timeout=3):
                pass
        except OSError:
            hints.append(f"the plain registry {registry} does not answer (stopped by someone else "
                         "during the run?)")
        return "".join(f"\n{hint}" for hint in hints)

    def out(self, argv, **kw) -> str:
        return self.run(argv, capture=True, **kw).stdout.strip()


def load_sample() -> dict:
    """Load average and processes of others that would add noise (e2e tests, builds, pushes)."""
    with open("/proc/loadavg", encoding="utf-8") as f:
        load1 = float(f.read().split()[0])
    me = os.getpid()
    others = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == me:
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if re.search(r"pytest|build-image\.py|docker (build|push)|buildx", cmd):
            others += 1
    return {"load1": load1, "others": others}


# --- statistics and formatting -----------------------------------------------------------------


class Row:
    def __init__(self, section: str, name: str, note: str = ""):
        self.section, self.name, self.note = section, name, note
        self.samples: list = []

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


def fmt_time(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def fmt_size(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def met(value: float, limit: float) -> str:
    return "met" if value <= limit else "**not met**"


ATTEMPTS = 3  # tries per round: a concurrent e2e run may stop the registry or replace the base


def interleave(bench, rows_and_fns, runs: int) -> None:
    """Run each (row, fn) once per round, rotating the order each round. ``fn(i)`` returns the
    seconds for its row, or a dict {row: seconds}. A round's samples are kept only when the whole
    round succeeded; a failed round is retried (after waiting for the harness) from its start."""
    for i in range(runs):
        k = i % len(rows_and_fns)
        for attempt in range(1, ATTEMPTS + 1):
            got = []
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


# --- the benchmark -----------------------------------------------------------------------------


class Bench:
    def __init__(self, args, env: dict, work: Path):
        self.args = args
        self.env = env
        self.work = work
        self.py = sys.executable
        self.docker = env.get("DOCKER") or "/usr/bin/docker"
        self.sh = Sh(env, work / "bench.log")
        self.rid = dt.datetime.now().strftime("%H%M%S") + f"-{os.getpid()}"
        self.rows: list = []
        self.notes: list = []
        self.ratios: list = []  # (name, value text, target text, verdict)
        self.counts: list = []  # (variant, docker, git)
        self.sizes: list = []
        self.importtime: dict = {}
        self.samples: list = [load_sample()]
        self.base_ids: list = []
        self.retries: list = []
        self.markers: list = []  # cold builds' cache-mount markers (section 6)
        self.ran_unchanged = False  # section 7 ran (its docker client goes into the facts)
        self.pip_args = shlex.split(env.get("E2E_PIP_BUILD_ARGS", ""))
        registry = env["E2E_REGISTRY"]  # localhost:PORT
        self.push_host = "127.0.0.1:" + registry.rsplit(":", 1)[1]
        state = Path(env.get("RAGBUILD_E2E_STATE", "/var/tmp/ragbuild-e2e"))
        self.repos_dir = state / "registry-plain" / "data" / "docker" / "registry" / "v2" / "repositories"
        # a PATH directory whose `docker` is the harness's client (/usr/local/bin/docker lacks buildx)
        self.realbin = work / "realbin"
        self.realbin.mkdir()
        (self.realbin / "docker").symlink_to(self.docker)
        self.path = f"{self.realbin}{os.pathsep}{env.get('PATH', os.defpath)}"
        self.git = shutil.which("git", path=self.path) or "git"

    def retried(self, failure: CommandError) -> None:
        """A round failed: note it, wait until the harness serves again, then retry the round."""
        lines = str(failure).splitlines()
        first_line = " / ".join([re.sub(r"; see \S+$", "", lines[0])] + lines[1:])
        log(f"round failed, retrying it when the harness answers again: {first_line}")
        self.retries.append(first_line)
        base = self.env.get("E2E_BASE_IMAGE", "python:3.11-slim")
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            has_base = subprocess.run([self.docker, "image", "inspect", base], capture_output=True,
                                      env=self.env).returncode == 0
            try:
                with urllib.request.urlopen(f"http://{self.push_host}/v2/", timeout=3) as answer:
                    registry_up = answer.status == 200
            except OSError:
                registry_up = False
            if has_base and registry_up:
                time.sleep(2)
                return
            time.sleep(2)
        raise SystemExit(f"error: the harness did not come back within 300 s after: {first_line}")

    def row(self, section, name, note="") -> Row:
        row = Row(section, name, note)
        self.rows.append(row)
        return row

    def ragbuild(self, *flags) -> list:
        return [self.py, SCRIPT, *flags]

    def git_init(self, directory: Path) -> None:
        self.sh.run([self.git, "init", "-q"], cwd=directory)
        self.sh.run([self.git, *GIT_ID, "add", "-A"], cwd=directory)
        self.sh.run([self.git, *GIT_ID, "commit", "-q", "-m", "bench"], cwd=directory)

    # -- 1. wrapper overhead --------------------------------------------------------------------

    def small_context(self) -> Path:
        ctx = self.work / "small"
        ctx.mkdir()
        (ctx / "hello.txt").write_text("ragbuild benchmark\n")
        (ctx / "Dockerfile").write_text(
            f"FROM {self.env.get('E2E_BASE_IMAGE', 'python:3.11-slim')}\n"
            "LABEL org.ragbuild.bench=wrapper-overhead\n"
            "COPY hello.txt /hello.txt\n")
        self.git_init(ctx)
        return ctx

    def bash_equivalent(self, ctx: Path) -> Path:
        """The commands build-image.sh --env dev runs, in its order (not the script's text)."""
        script = self.work / "bash-equivalent.sh"
        script.write_text(f"""\
#!/usr/bin/env bash
# Generated by benchmarks/run.py: the command sequence build-image.sh runs for --env dev
# (timestamp, git check and sha, one build with the first tag, a docker tag per other tag,
# a docker images per tag); not the script itself (no argument parsing, colours or checks).
set -euo pipefail
export DOCKER_BUILDKIT=1
TIMESTAMP=$(date +%Y%m%d-%H%M%S)
GIT_COMMIT=
if git rev-parse --git-dir >/dev/null 2>&1; then GIT_COMMIT=$(git rev-parse --short HEAD); fi
B={SMALL}
TAGS=("$B:dev-$TIMESTAMP" "$B:dev")
[[ -n $GIT_COMMIT ]] && TAGS+=("$B:git-$GIT_COMMIT")
TAGS+=("$B:latest")
docker build --build-arg ENVIRONMENT=dev --build-arg "GIT_COMMIT=$GIT_COMMIT" \\
    --build-arg "BUILD_TIMESTAMP=$TIMESTAMP" -f Dockerfile -t "${{TAGS[0]}}" .
for tag in "${{TAGS[@]:1}}"; do docker tag "${{TAGS[0]}}" "$tag"; done
for tag in "${{TAGS[@]}}"; do echo "$tag $(docker images --format 'table {{{{.Size}}}}' "$tag" | tail -n 1)"; done
""")
        return script

    def shim(self) -> tuple:
        shim = self.work / "shim"
        shim.mkdir()
        counter = self.work / "count"
        for name in COUNTED:
            real = self.docker if name == "docker" else shutil.which(name, path=self.path) or name
            path = shim / name
            path.write_text(f'#!/bin/sh\necho {name} >> "$BENCH_COUNT_FILE"\nexec {shlex.quote(real)} "$@"\n')
            path.chmod(0o755)
        return shim, counter

    def wrapper_overhead(self) -> None:
        log("1/5 wrapper overhead: tiny image, fully cached rebuilds")
        ctx = self.small_context()
        script = self.bash_equivalent(ctx)
        shutil.copy(script, RESULTS / "bash-equivalent.sh")
        variants = {
            "floor": (["docker", "build", "-t", f"{SMALL}:floor", "."], {"DOCKER_BUILDKIT": "1"}),
            "ragbuild": (self.ragbuild("--env", "dev", "--image-name", SMALL), {}),
            "bash": (["bash", str(script)], {}),
        }
        timed_env = {"PATH": self.path, "DOCKER": self.docker}
        for argv, extra in variants.values():  # warm-up: every variant fully cached afterwards
            self.sh.run(argv, cwd=ctx, extra_env={**timed_env, **extra})
        floor = self.row("1. wrapper overhead", "bare `DOCKER_BUILDKIT=1 docker build` (floor)",
                         "1 tag")
        rag = self.row("1. wrapper overhead", "`scripts/build-image.py --env dev`",
                       "4 tags, one build")
        bash = self.row("1. wrapper overhead",
                        "bash-equivalent command sequence (not build-image.sh itself)",
                        "4 tags: build + 3 `docker tag` + 4 `docker images`")
        fns = []
        for row, key in ((floor, "floor"), (rag, "ragbuild"), (bash, "bash")):
            argv, extra = variants[key]
            fns.append((row, lambda i, a=argv, e=extra: self.sh.timed(a, cwd=ctx,
                                                                        extra_env={**timed_env, **e})))
        interleave(self, fns, self.args.runs)
        # process counts: one more run of each through a PATH shim (the timed runs above were not)
        shim, counter = self.shim()
        count_env = {"PATH": f"{shim}{os.pathsep}{self.env.get('PATH', '')}",
                     "DOCKER": str(shim / "docker"), "BENCH_COUNT_FILE": str(counter)}
        for label, key in (("bare docker build", "floor"), ("build-image.py --env dev", "ragbuild"),
                           ("bash-equivalent sequence", "bash")):
            counter.write_text("")
            argv, extra = variants[key]
            self.sh.run(argv, cwd=ctx, extra_env={**count_env, **extra})
            names = counter.read_text().split()
            self.counts.append((label, *(names.count(name) for name in COUNTED)))
        self.derived_overhead(floor, rag, bash)

    def derived_overhead(self, floor: Row, rag: Row, bash: Row) -> None:
        limit, what = TARGETS["wrapper"]
        ratio = rag.median / bash.median
        self.ratios.append((what, f"{ratio:.3f}", f"<= {limit}", met(ratio, limit)))
        for row in (rag, bash):
            extra = [s - f for s, f in zip(row.samples, floor.samples)]
            self.ratios.append((f"{row.name.split(' (')[0]} minus floor (per round)",
                                f"{fmt_time(statistics.median(extra))} median "
                                f"({fmt_time(min(extra))} to {fmt_time(max(extra))})", "-", "-"))

    # -- 2. worker image ------------------------------------------------------------------------

    def worker_copy(self) -> Path:
        copy = self.work / "project"
        copy.mkdir()
        for name in ("Dockerfile", ".dockerignore", "setup.cfg"):
            shutil.copy(REPO / name, copy / name)
        shutil.copytree(REPO / "src", copy / "src",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        self.git_init(copy)
        return copy

    def worker(self) -> Path:
        log("2/5 worker image: cold, one-line change, no change")
        copy = self.worker_copy()
        build = self.ragbuild("--env", "dev", "--image-name", WORKER, *self.pip_args)
        extra = {"PATH": self.path, "DOCKER": self.docker}
        logs = self.work / "worker-logs"
        logs.mkdir()
        target = copy / "src" / "rag_worker" / "inference.py"
        cold = self.row("2. worker image", "cold build (`--no-cache`)")
        change = self.row("2. worker image", "rebuild after a one-line change under `src/`")
        same = self.row("2. worker image", "rebuild with no change")
        attempts = iter(range(10**6))

        def round_(i):
            log(f"  round {i + 1}/{self.args.worker_runs}")
            got = {cold: self.sh.timed(build + ["--no-cache"], cwd=copy, extra_env=extra,
                                       output=logs / f"cold-{i}.log")}
            with open(target, "a", encoding="utf-8") as f:
                f.write(f"# benchmark change {self.rid}-{i}-{next(attempts)}\n")
            self.sh.run([self.git, *GIT_ID, "commit", "-q", "-am", f"change {i}"], cwd=copy)
            got[change] = self.sh.timed(build, cwd=copy, extra_env=extra,
                                        output=logs / f"change-{i}.log")
            got[same] = self.sh.timed(build, cwd=copy, extra_env=extra, output=logs / f"same-{i}.log")
            return got

        interleave(self, [(cold, round_)], self.args.worker_runs)
        for row, key in ((cold, "cold"), (change, "change"), (same, "same")):
            row.note = self.cache_note(logs, key)
        if self.args.worker_runs < 5:
            cold.note += f"; {self.args.worker_runs} runs only (--worker-runs)"
        ratio = change.median / cold.median
        limit, what = TARGETS["change"]
        self.ratios.append((what, f"{ratio:.3f}", f"<= {limit}", met(ratio, limit)))
        return copy

    @staticmethod
    def cache_note(logs: Path, key: str) -> str:
        """How many build steps ran and how many came from the cache, from the last run's log."""
        text = sorted(logs.glob(f"{key}-*.log"))[-1].read_text(errors="replace")
        steps = {vertex for vertex, instruction in
                 re.findall(r"^(#\d+) \[(?:[\w.-]+ )?\d+/\d+\] (\S+)", text, re.M)
                 if instruction.upper() != "FROM"}
        cached = set(re.findall(r"^(#\d+) CACHED", text, re.M))
        return f"{len(steps & cached)} of {len(steps)} Dockerfile steps (after FROM) cached"

    # -- 3. image size --------------------------------------------------------------------------

    def size(self, copy: Path) -> None:
        log("3/5 image size: multi-stage against single-stage with build-essential")
        self.sh.run([self.docker, "build", "-f", SINGLE_STAGE, "--build-arg",
                     f"PYTHON_IMAGE={BE_IMAGE}", *self.pip_args, "-t", f"{SINGLE}:latest", copy],
                    extra_env={"DOCKER_BUILDKIT": "1"})

        def size_of(ref):
            return int(self.sh.out([self.docker, "image", "inspect", "--format", "{{.Size}}", ref]))

        multi = size_of(f"{WORKER}:dev")
        single = size_of(f"{SINGLE}:latest")
        self.sizes = [
            ("multi-stage `Dockerfile` (the worker image)", multi,
             f"base {self.env.get('E2E_BASE_IMAGE', 'python:3.11-slim')}: "
             f"{fmt_size(size_of(self.env.get('E2E_BASE_IMAGE', 'python:3.11-slim')))}"),
            ("single-stage `benchmarks/Dockerfile.single-stage`", single,
             f"base {BE_IMAGE}: {fmt_size(size_of(BE_IMAGE))}"),
        ]
        limit, what = TARGETS["size"]
        self.ratios.append((what, f"{multi / single:.3f}", f"<= {limit}", met(multi / single, limit)))

    # -- 4. push --------------------------------------------------------------------------------

    def drop_repo(self, name: str) -> bool:
        """Remove a benchmark repository from the registry's storage, so the next first push
        cannot mount its layers from it (docker mounts blobs across repositories it knows)."""
        path = self.repos_dir / name
        if path.is_dir():
            shutil.rmtree(path)
            return True
        return False

    @staticmethod
    def layer_counts(text: str) -> tuple:
        return (len(re.findall(r": Pushed\s*$", text, re.M)),
                len(re.findall(r": Mounted from ", text, re.M)),
                len(re.findall(r": Layer already exists\s*$", text, re.M)))

    def push(self, copy: Path) -> None:
        log("4/5 push to the plain registry")
        help_text = self.sh.out(self.ragbuild("--help"))
        if "--push" not in help_text:
            raise SystemExit("error: build-image.py --help lists no --push")
        logs = self.work / "push-logs"
        logs.mkdir()
        base = f"{self.push_host}/bench-{self.rid}"
        extra = {"PATH": self.path, "DOCKER": self.docker, "SOURCE_DATE_EPOCH": PUSH_EPOCH}
        one = self.row("4. push", "`docker push`, one tag, new repository")
        six = self.row("4. push", "`docker push` x 6 tags, new repository")
        rag = self.row("4. push", "`build-image.py --push`, six tags, new repository",
                       "includes a cached build and the 6-tag verification")
        again = self.row("4. push", "`build-image.py --push` again, nothing changed",
                         "same six tags (SOURCE_DATE_EPOCH fixed)")
        layers = {one.name: [], six.name: [], rag.name: [], again.name: []}

        def direct(i, n, row):
            repo = f"bench-{self.rid}-d{n}-{i}"
            refs = [f"{self.push_host}/{repo}:t{k}" for k in range(n)]
            for ref in refs:
                self.sh.run([self.docker, "tag", f"{WORKER}:dev", ref])
            out = logs / f"d{n}-{i}.log"
            elapsed = 0.0
            text = ""
            try:
                for k, ref in enumerate(refs):
                    part = logs / f"d{n}-{i}-{k}.log"
                    elapsed += self.sh.timed([self.docker, "push", ref], output=part)
                    text += part.read_text(errors="replace")
            finally:
                self.drop_repo(repo)
            out.write_text(text)
            layers[row.name].append(self.layer_counts(text))
            return elapsed

        def through_ragbuild(i):
            repo = f"bench-{self.rid}-r6-{i}"
            argv = self.ragbuild("--env", "dev", "--registry", f"{self.push_host}/{repo}", "--push",
                                 "-t", "bench-a", "-t", "bench-b", *self.pip_args)
            first = logs / f"r6-{i}.log"
            try:
                elapsed = self.sh.timed(argv, cwd=copy, extra_env=extra, output=first)
            except CommandError:
                self.drop_repo(repo)
                raise
            second = logs / f"r6-again-{i}.log"
            try:
                repushed = self.sh.timed(argv, cwd=copy, extra_env=extra, output=second)
            finally:
                self.drop_repo(repo)
            for path in (first, second):
                if "pushed and verified 6 tags" not in path.read_text(errors="replace"):
                    raise CommandError(f"error: {path}: build-image.py did not push and verify 6 tags")
            layers[rag.name].append(self.layer_counts(first.read_text(errors="replace")))
            layers[again.name].append(self.layer_counts(second.read_text(errors="replace")))
            return {rag: elapsed, again: repushed}

        # a first push of the warm-up repository, so no row pays for anything done once only
        self.sh.run([self.docker, "tag", f"{WORKER}:dev", f"{base}-warmup:t"])
        self.sh.run([self.docker, "push", f"{base}-warmup:t"])
        self.drop_repo(f"bench-{self.rid}-warmup")
        interleave(self, [(one, lambda i: direct(i, 1, one)), (six, lambda i: direct(i, 6, six)),
                          (rag, through_ragbuild)], self.args.push_runs)
        for row in (one, six, rag, again):
            pushed = sorted(set(layers[row.name]))
            text = "; ".join(f"{p} pushed, {m} mounted, {e} already there" for p, m, e in pushed)
            row.note = "; ".join(filter(None, [row.note, f"layers per run: {text}"]))
        if not self.repos_dir.is_dir():
            self.notes.append(f"could not find the registry's storage ({self.repos_dir}): "
                              "repositories were not removed between runs")
        limit, what = TARGETS["push"]
        ratio = rag.median / one.median
        self.ratios.append((f"{what}: `build-image.py --push` (6 tags) / `docker push` (1 tag)",
                            f"{ratio:.3f}", f"<= {limit}", met(ratio, limit)))
        direct_ratio = six.median / one.median
        self.ratios.append((f"{what}: `docker push` x 6 / `docker push` x 1 (like for like)",
                            f"{direct_ratio:.3f}", f"<= {limit}", met(direct_ratio, limit)))

    # -- 5. CLI latency -------------------------------------------------------------------------

    def cli(self) -> None:
        log("5/5 CLI latency")
        ctx = self.work / "small"
        extra = {"PATH": self.path, "DOCKER": self.docker}
        cases = [
            (self.row("5. CLI latency", "`python -c pass` (interpreter start-up, the floor)"),
             [self.py, "-c", "pass"]),
            (self.row("5. CLI latency", "`build-image.py --help`"), self.ragbuild("--help")),
            (self.row("5. CLI latency", "`build-image.py --env dev --dry-run`",
                      "runs the read-only git queries (the dirty check), no docker"),
             self.ragbuild("--env", "dev", "--image-name", SMALL, "--dry-run")),
        ]
        for _, argv in cases:  # warm-up: bytecode compiled, files in the page cache
            self.sh.run(argv, cwd=ctx, extra_env=extra)
        timed = [(row, lambda i, a=argv: self.sh.timed(a, cwd=ctx, extra_env=extra))
                 for row, argv in cases]
        project = self.work / "project"  # the worker's context, committed (worker_copy)
        facts = self.row("5. CLI latency", "the dirty check: `steps.git_info` on the worker's "
                                           "context (in-process, not a whole command)")

        def dirty_check(i):
            answer = self.sh.out([self.py, "-c", GIT_FACTS_TIMER, REPO], cwd=project,
                                 extra_env=extra).split()
            if len(answer) != 4 or answer[3] != "0":
                raise CommandError(f"error: the dirty check gave {answer} on a clean copy")
            facts.note = (f"{answer[1]} files sent, compared with the commit by {answer[2]} git "
                          "processes (rev-parse, ls-tree, hash-object)")
            return float(answer[0])

        dirty_check(0)  # warm-up
        interleave(self, timed + [(facts, dirty_check)], self.args.cli_runs)
        for label, flags in (("--help", ["--help"]),
                             ("--env dev --dry-run", ["--env", "dev", "--image-name", SMALL, "--dry-run"])):
            done = self.sh.run([self.py, "-X", "importtime", SCRIPT, *flags], cwd=ctx,
                               extra_env=extra, capture=True)
            self.importtime[label] = parse_importtime(done.stderr)

    # -- 6. realistic dependency set ------------------------------------------------------------

    def cold_dockerfile(self, text: str, marker: str) -> str:
        """The Dockerfile with cache mounts of its own (empty: a cold build's) and ``marker`` in
        every step that mounts one (the mounts' build-cache records carry it)."""
        for cache_id in CACHE_IDS:
            if not text.count(cache_id):
                raise SystemExit(f"error: the Dockerfile has no `{cache_id}` mount: "
                                 "update benchmarks/run.py's CACHE_IDS")
            text = text.replace(cache_id, cache_id.replace("ragbuild-", f"{marker}-"))
        if text.count(MARKED_STEP) != text.count(f"{marker}-"):
            raise SystemExit(f"error: not every step with a cache mount begins {MARKED_STEP!r}: "
                             "update benchmarks/run.py's MARKED_STEP")
        return text.replace(MARKED_STEP, f"set -e; : {marker}; \\\n")

    def prune_cache_mounts(self, marker: str) -> int:
        """Remove the cache mounts whose build-cache record names ``marker``; bytes freed."""
        listing = self.sh.out([self.docker, "system", "df", "-v", "--format",
                               "{{json .BuildCache}}"])
        records = [r for r in json.loads(listing or "[]") or []
                   if r.get("CacheType") == "exec.cachemount" and marker in r.get("Description", "")]
        for record in records:  # the engine takes one id filter per prune
            self.sh.run([self.docker, "builder", "prune", "--force", "--filter", f"id={record['ID']}"],
                        check=False)
        return len(records)

    def realistic(self) -> None:
        log("6/7 realistic dependency set: Dockerfile against the single-stage layout")
        copy = self.work / "realistic"
        copy.mkdir()
        shutil.copy(REPO / ".dockerignore", copy / ".dockerignore")
        shutil.copytree(REPO / "src", copy / "src",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        requirements = copy / "src" / "rag_worker" / "requirements.txt"
        source = copy / "src" / "rag_worker" / "inference.py"
        pinned = REALISTIC.read_text()
        bump = next(line.strip() for line in REALISTIC_BUMP.read_text().splitlines()
                    if line.strip() and not line.lstrip().startswith("#"))
        package = bump.split("==")[0]
        bumped, count = re.subn(rf"^{re.escape(package)}==\S+$", bump, pinned, flags=re.M)
        if count != 1 or bumped == pinned:
            raise SystemExit(f"error: {REALISTIC_BUMP.name}'s `{bump}` changes no pin of {REALISTIC.name}")
        dockerfile = (REPO / "Dockerfile").read_text()
        top = sum(1 for line in pinned.splitlines() if "==" in line and not line.startswith("#"))
        logs = self.work / "realistic-logs"
        logs.mkdir()
        sec = "6. realistic dependency set"
        rows = {
            "multi": (self.row(sec, "`Dockerfile`: cold build", "`--no-cache`, empty cache mounts"),
                      self.row(sec, "`Dockerfile`: rebuild after a one-line change under `src/`"),
                      self.row(sec, f"`Dockerfile`: rebuild after bumping one pin (`{bump}`)")),
            "pyc": (self.row(sec, "`Dockerfile` with `COMPILE_BYTECODE=1`: cold build",
                             "`--no-cache`, empty cache mounts; .pyc for every module, as pip"),
                    self.row(sec, "`Dockerfile` with `COMPILE_BYTECODE=1`: rebuild after a one-line "
                                  "change under `src/`"),
                    self.row(sec, f"`Dockerfile` with `COMPILE_BYTECODE=1`: rebuild after bumping "
                                  f"one pin (`{bump}`)")),
            "single": (self.row(sec, "single-stage: cold build", "`--no-cache`; base has build-essential"),
                       self.row(sec, "single-stage: rebuild after a one-line change under `src/`"),
                       self.row(sec, f"single-stage: rebuild after bumping one pin (`{bump}`)")),
        }
        images = {"multi": REAL_MULTI, "pyc": f"{REAL_MULTI}-pyc", "single": REAL_SINGLE}

        def build(layout: str, tag: str, *more) -> list:
            argv = [self.docker, "build", *self.pip_args, "-t", f"{images[layout]}:{tag}", *more]
            if layout == "single":
                argv += ["-f", SINGLE_STAGE, "--build-arg", f"PYTHON_IMAGE={BE_IMAGE}"]
            if layout == "pyc":
                argv += ["--build-arg", "COMPILE_BYTECODE=1"]
            return argv + ["."]

        def round_(i: int, layout: str) -> dict:
            log(f"  round {i + 1}/{self.args.realistic_runs}: {layout}")
            requirements.write_text(pinned)
            if layout != "single":
                marker = f"bench-{self.rid}-{layout}-{i}"
                self.markers.append(marker)
                (copy / "Dockerfile").write_text(self.cold_dockerfile(dockerfile, marker))
            env = {"DOCKER_BUILDKIT": "1"}
            cold, change, bumped_row = rows[layout]
            got = {cold: self.sh.timed(build(layout, "cold", "--no-cache"), cwd=copy, extra_env=env,
                                       output=logs / f"{layout}-cold-{i}.log")}
            with open(source, "a", encoding="utf-8") as f:
                f.write(f"# benchmark change {self.rid}-{layout}-{i}\n")
            got[change] = self.sh.timed(build(layout, "change"), cwd=copy, extra_env=env,
                                        output=logs / f"{layout}-change-{i}.log")
            requirements.write_text(bumped)
            got[bumped_row] = self.sh.timed(build(layout, "bump"), cwd=copy, extra_env=env,
                                            output=logs / f"{layout}-bump-{i}.log")
            return got

        interleave(self, [(rows[layout][0], lambda i, layout=layout: round_(i, layout))
                          for layout in rows], self.args.realistic_runs)
        # what the images hold: the whole set imports, and the bump took effect
        check = ("import importlib.metadata as m, fastapi, uvicorn, llama_index.core, openai, "
                 "supabase, boto3, opentelemetry.sdk, structlog; "
                 f"print(m.version('{package}'), len(list(m.distributions())))")
        held = {}
        for layout in rows:
            for tag in ("cold", "bump"):
                held[layout, tag] = self.sh.out([self.docker, "run", "--rm", f"{images[layout]}:{tag}",
                                                 "python", "-c", check])
        for layout, name in (("multi", "`Dockerfile`"), ("pyc", "COMPILE_BYTECODE=1"),
                             ("single", "single-stage")):
            (v0, n0), (v1, _) = held[layout, "cold"].split(), held[layout, "bump"].split()
            rows[layout][0].note += f"; {n0} distributions, all import; {package} {v0}"
            rows[layout][2].note = f"{package} {v0} -> {v1} in the image"
            if v1 != bump.split("==")[1]:
                raise SystemExit(f"error: the {name} image after the bump has {package} {v1}")
        for layout in rows:
            for row, key in zip(rows[layout], ("cold", "change", "bump")):
                row.note = "; ".join(filter(None, [row.note, self.cache_note(logs, f"{layout}-{key}")]))

        def size_of(ref):
            return int(self.sh.out([self.docker, "image", "inspect", "--format", "{{.Size}}", ref]))

        multi, single = size_of(f"{REAL_MULTI}:cold"), size_of(f"{REAL_SINGLE}:cold")
        self.sizes += [
            (f"realistic set ({top} pins): `Dockerfile`", multi, "uv, venv only, no build tools"),
            (f"realistic set ({top} pins): `Dockerfile` with `COMPILE_BYTECODE=1`",
             size_of(f"{images['pyc']}:cold"), "the same with every module's .pyc"),
            (f"realistic set ({top} pins): single-stage", single,
             "build-essential, pip's cache and pip kept, as the bash-era image"),
        ]
        m_cold, _, m_bump = rows["multi"]
        s_cold, _, s_bump = rows["single"]
        for key, value in (("real-size", multi / single), ("real-bump", m_bump.median / m_cold.median),
                           ("real-cold", m_cold.median / s_cold.median)):
            limit, what = TARGETS[key]
            self.ratios.append((what, f"{value:.3f}", f"<= {limit}", met(value, limit)))
        p_cold, _, p_bump = rows["pyc"]
        for what, value in (
                ("realistic set: `COMPILE_BYTECODE=1`, rebuild after bumping one pin / its cold build",
                 p_bump.median / p_cold.median),
                ("realistic set: `COMPILE_BYTECODE=1` cold build / single-stage cold build",
                 p_cold.median / s_cold.median),
                ("realistic set: `COMPILE_BYTECODE=1` image size / single-stage",
                 size_of(f"{images['pyc']}:cold") / single),
                ("realistic set: single-stage, rebuild after bumping one pin / its cold build",
                 s_bump.median / s_cold.median)):
            self.ratios.append((what + " (for comparison)", f"{value:.3f}", "-", "-"))
        self.notes.append(
            "section 6 builds with a bare `DOCKER_BUILDKIT=1 docker build` (the layouts compared, "
            "not the wrapper) in a copy of src/ whose requirements.txt is "
            f"benchmarks/{REALISTIC.name}; each round: cold (`--no-cache`; for the Dockerfile also "
            "new, empty cache mounts), then one comment line appended to "
            f"src/rag_worker/inference.py, then `{bump}`; the cache mounts of the cold rounds are "
            "removed at the end")

    # -- 7. six unchanged tags ------------------------------------------------------------------

    def unchanged(self, copy: Path) -> None:
        log("7/7 cached build + push of six unchanged tags, Docker 28 client")
        if not os.access(DOCKER28, os.X_OK):
            self.notes.append(f"section 7 skipped: no {DOCKER28}")
            return
        bin28 = self.work / "bin28"
        bin28.mkdir()
        (bin28 / "docker").symlink_to(DOCKER28)
        extra = {"PATH": f"{bin28}{os.pathsep}{self.env.get('PATH', os.defpath)}", "DOCKER": DOCKER28,
                 "SOURCE_DATE_EPOCH": PUSH_EPOCH, "DOCKER_BUILDKIT": "1"}
        buildx = self.sh.out([DOCKER28, "buildx", "version"], extra_env=extra)
        repo = f"bench-{self.rid}-u6"
        registry = f"{self.push_host}/{repo}"
        argv = self.ragbuild("--env", "dev", "--registry", registry, "--push",
                             "-t", "bench-a", "-t", "bench-b", *self.pip_args)
        logs = self.work / "unchanged-logs"
        logs.mkdir()
        try:
            for attempt in range(1, ATTEMPTS + 1):  # the first push: retried like a round
                try:
                    first = self.sh.run(argv, cwd=copy, extra_env=extra, capture=True)
                    break
                except CommandError as failure:
                    if attempt == ATTEMPTS:
                        raise
                    self.retried(failure)
            text = first.stdout + first.stderr
            tags = sorted(set(re.findall(rf"{re.escape(registry)}:([\w][\w.-]*)", text)))
            if len(tags) != 6 or "pushed and verified 6 tags" not in text:
                raise SystemExit(f"error: build-image.py did not push six tags ({tags})")
            sha = self.sh.out([self.git, "rev-parse", "--short", "HEAD"], cwd=copy)
            stamp = next(t for t in tags if t.startswith("dev-"))[4:]
            bx_argv = [DOCKER28, "buildx", "build", "--provenance=false",
                       "--build-arg", "ENVIRONMENT=dev", "--build-arg", f"GIT_COMMIT={sha}",
                       "--build-arg", f"BUILD_TIMESTAMP={stamp}", *self.pip_args]
            for tag in tags:
                bx_argv += ["-t", f"{registry}:{tag}"]
            bx_argv += ["--push", "."]
            self.sh.run(bx_argv, cwd=copy, extra_env=extra)  # warm-up: its cache, its pushes
            sec = "7. six unchanged tags (Docker 28 client)"
            rag = self.row(sec, "`build-image.py --env dev --registry R --push -t bench-a -t bench-b`",
                           "cached build, 6 tags pushed and verified")
            bx = self.row(sec, "`docker buildx build --provenance=false -t R:... (the same 6) --push .`",
                          f"cached build, 6 tags pushed; {buildx}")

            def ragbuild_run(i):
                out = logs / f"ragbuild-{i}.log"
                elapsed = self.sh.timed(argv, cwd=copy, extra_env=extra, output=out)
                if "pushed and verified 6 tags" not in out.read_text(errors="replace"):
                    raise CommandError(f"error: {out}: build-image.py did not push and verify 6 tags")
                return elapsed

            interleave(self, [(rag, ragbuild_run),
                              (bx, lambda i: self.sh.timed(bx_argv, cwd=copy, extra_env=extra,
                                                           output=logs / f"buildx-{i}.log"))],
                       self.args.runs)  # fast rows (0.3-0.6 s): as many runs as section 1
            self.ran_unchanged = True
            limit, what = TARGETS["unchanged"]
            ratio = rag.median / bx.median
            self.ratios.append((what, f"{ratio:.3f}", f"<= {limit}", met(ratio, limit)))
        finally:
            self.drop_repo(repo)

    # -- report ---------------------------------------------------------------------------------

    def base_id(self) -> None:
        base = self.env.get("E2E_BASE_IMAGE", "python:3.11-slim")
        self.base_ids.append(self.sh.out([self.docker, "image", "inspect", "--format", "{{.Id}}", base]))

    def facts(self) -> list:
        def cpu_model():
            try:
                for line in open("/proc/cpuinfo", encoding="utf-8"):
                    if line.startswith("model name"):
                        return line.split(":", 1)[1].strip()
            except OSError:
                pass
            return platform.processor() or "unknown CPU"

        def memory_and_os():
            try:
                with open("/proc/meminfo", encoding="utf-8") as f:
                    kb = int(f.readline().split()[1])
                with open("/etc/debian_version", encoding="utf-8") as f:
                    debian = f"Debian {f.read().strip()}"
            except (OSError, ValueError, IndexError):
                return ""
            return f"{kb / 2**20:.0f} GB, {debian}, "

        fmt = "{{.Client.Version}} / {{.Server.Version}}"
        versions = self.sh.out([self.docker, "version", "--format", fmt])
        nproc = self.sh.out(["nproc"])
        other = ""
        if self.ran_unchanged:
            client = self.sh.out([DOCKER28, "version", "--format", "{{.Client.Version}}"], check=False)
            other = f"; section 7: docker client {client} ({DOCKER28}) with the buildx plugin"
        return [
            f"date: {dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
            f"machine: {nproc} cores ({cpu_model()}), {memory_and_os()}Linux {platform.release()}, "
            f"docker client / server {versions} ({self.docker}){other}, "
            f"Python {platform.python_version()}",
            f"command: `make bench` (ran `{shlex.join(['benchmarks/run.py', *sys.argv[1:]])}`)",
        ]

    def report(self, facts: list) -> str:
        out = ["### Results", ""]
        out += [f"- {line}" for line in facts]
        first, last = self.samples[0], self.samples[-1]
        peak_load = max(s["load1"] for s in self.samples)
        peak_others = max(s["others"] for s in self.samples)
        out.append(f"- load average (1 min): {first['load1']:.2f} at the start, {last['load1']:.2f} "
                   f"at the end, at most {peak_load:.2f} between sections; processes of others "
                   f"(pytest, build-image.py, docker build/push) seen at section boundaries: "
                   f"at most {peak_others}"
                   + (" (concurrent load: figures are noisier)" if peak_others or peak_load > 1.5
                      else ""))
        out += ["", "Wall-clock time of the whole command; median of the runs, min and max beside it.",
                "", "| benchmark | runs | median | min | max | notes |",
                "| --- | ---: | ---: | ---: | ---: | --- |"]
        section = None
        for row in self.rows:
            if row.section != section:
                section = row.section
                out.append(f"| **{section}** | | | | | |")
            out.append(f"| {row.name} | {len(row.samples)} | {fmt_time(row.median)} | "
                       f"{fmt_time(min(row.samples))} | {fmt_time(max(row.samples))} | {row.note} |")
        if self.sizes:
            out += ["", "| 3. image size | bytes | size | notes |", "| --- | ---: | ---: | --- |"]
            out += [f"| {name} | {size} | {fmt_size(size)} | {note} |" for name, size, note in self.sizes]
        if self.counts:
            out += ["", "Processes started by one run (counted in one extra run of each through a PATH "
                    f"shim of {', '.join(f'`{c}`' for c in COUNTED)}; the timed runs did not go "
                    "through the shim):", "",
                    "| 1. wrapper overhead | " + " | ".join(COUNTED) + " |",
                    "| --- |" + " ---: |" * len(COUNTED)]
            out += ["| " + " | ".join(map(str, row)) + " |" for row in self.counts]
        out += ["", "| derived figure | value | target | |", "| --- | ---: | ---: | --- |"]
        out += [f"| {name} | {value} | {target} | {verdict} |" for name, value, target, verdict in self.ratios]
        for label, entries in self.importtime.items():
            out += ["", f"`python -X importtime build-image.py {label}` (one run): "
                    f"{entries['total']:.1f} ms of imports in all; the top-level imports of 1 ms or "
                    "more by cumulative time:", "",
                    "| top-level import | cumulative | heaviest import it pulls in |", "| --- | ---: | --- |"]
            out += [f"| {name} | {cum:.1f} ms | "
                    + (f"{heavy[0]} {heavy[1]:.1f} ms" if heavy else "") + " |"
                    for name, cum, heavy in entries["top"]]
        names = {name for entries in self.importtime.values() for name, _, heavy in entries["top"]
                 for name in (name, heavy[0] if heavy else "")}
        if "plumbum" in names:
            self.notes.append("plumbum is imported on the `--dry-run` path (and every build) because "
                              "the runner starts the read-only git queries through it; its import "
                              "pulls in urllib.request (http.client, ssl, email) and runs `uname -p` "
                              "(see the process table)")
        if any(name.startswith("__editable__") for name in names):
            self.notes.append("`site`'s `__editable___ragbuild_*_finder` comes from the venv's "
                              "`pip install -e .` (make venv); a regular install has no such finder")
        if self.retries:
            self.notes.append(f"{len(self.retries)} round(s) failed part-way and were run again "
                              "from their start once the harness answered (a concurrent e2e run "
                              "stopped the registry or replaced the base image); only complete "
                              "rounds count: " + "; ".join(sorted(set(
                                  re.sub(r"^error: ", "", r) for r in self.retries))))
        out += ["", "Notes:", ""]
        out += [f"- {note}" for note in self.notes]
        return "\n".join(out) + "\n"

    def cleanup(self) -> None:
        refs = self.sh.out([self.docker, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]).split()
        prefixes = (f"{SMALL}:", f"{WORKER}:", f"{SINGLE}:", f"{REAL_MULTI}:", f"{REAL_MULTI}-pyc:",
                    f"{REAL_SINGLE}:", f"{self.push_host}/bench-{self.rid}")
        mine = [ref for ref in refs if ref.startswith(prefixes)]
        for k in range(0, len(mine), 50):
            self.sh.run([self.docker, "image", "rm", *mine[k:k + 50]], check=False)
        if self.markers:
            pruned = self.prune_cache_mounts(f"bench-{self.rid}-")
            log(f"removed {pruned} cache mount(s) of the cold builds")
        if self.repos_dir.is_dir():
            for path in self.repos_dir.glob(f"bench-{self.rid}-*"):
                shutil.rmtree(path, ignore_errors=True)


def parse_importtime(stderr: str) -> dict:
    """``import time: self | cumulative | name`` lines (microseconds, children printed before
    their parent) -> the top-level imports by cumulative time, each with the heaviest import
    it pulls in from outside its own package."""
    top, children = [], []
    for line in stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if not m:
            continue
        name, cum, depth = m[4], int(m[2]) / 1000, len(m[3]) // 2
        if depth:
            children.append((name, cum))
            continue
        foreign = [c for c in children if not c[0].startswith(f"{name}.")] or children
        heaviest = max(foreign, key=lambda c: c[1]) if foreign else None
        top.append((name, cum, heaviest))
        children = []
    return {"total": sum(cum for _, cum, _ in top),
            "top": sorted((e for e in top if e[1] >= 1.0), key=lambda e: e[1], reverse=True)[:8]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env-file", type=Path, default=DEFAULT_ENV_FILE,
                        help="the e2e harness's env file (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=9, help="runs of each fast row (default: 9)")
    parser.add_argument("--cli-runs", type=int, default=15, help="runs of each CLI row (default: 15)")
    parser.add_argument("--worker-runs", type=int, default=5,
                        help="rounds of cold/change/no-change worker builds (default: 5)")
    parser.add_argument("--push-runs", type=int, default=5,
                        help="rounds of pushes to new repositories, section 4 (default: 5)")
    parser.add_argument("--realistic-runs", type=int, default=2,
                        help="rounds of the realistic-set builds, per layout (default: 2)")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections to run (default: all: {','.join(SECTIONS)})")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir and images")
    args = parser.parse_args()
    only = set(filter(None, args.only.split(",")))
    if only - set(SECTIONS) or not only:
        parser.error(f"--only: choose among {', '.join(SECTIONS)}")
    env = load_env_file(args.env_file)
    # A default Python keeps compiled modules in __pycache__; with PYTHONDONTWRITEBYTECODE set
    # (some sandboxes and images set it) every run of the port compiles ragbuild's modules again
    no_bytecode = env.pop("PYTHONDONTWRITEBYTECODE", None) is not None
    RESULTS.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ragbuild-bench-"))
    bench = Bench(args, env, work)
    if no_bytecode:
        bench.notes.append("PYTHONDONTWRITEBYTECODE was set where the benchmark started; it is "
                           "unset for the timed commands, as in a default Python, so the port's "
                           "compiled modules are cached in __pycache__ after the warm-up run "
                           "(with it set, each run of the port compiles them again; "
                           "benchmarks/README.md has what that costs)")
    log(f"work dir {work}, log {bench.sh.logfile}")
    started = time.monotonic()
    ok = False
    try:
        bench.base_id()
        if only & {"wrapper", "cli"}:
            bench.wrapper_overhead()  # also makes the small context section 5 runs in
            bench.samples.append(load_sample())
        if "worker" in only:
            copy = bench.worker()
            bench.samples.append(load_sample())
        else:
            copy = bench.worker_copy()
            if only & {"size", "push"}:
                bench.sh.run(bench.ragbuild("--env", "dev", "--image-name", WORKER, *bench.pip_args),
                             cwd=copy, extra_env={"PATH": bench.path, "DOCKER": bench.docker})
        if "size" in only:
            bench.size(copy)
        if "push" in only:
            bench.push(copy)
            bench.samples.append(load_sample())
        if "cli" in only:
            bench.cli()
            bench.samples.append(load_sample())
        if "realistic" in only:
            bench.realistic()
            bench.samples.append(load_sample())
        if "unchanged" in only:
            bench.unchanged(copy)
            bench.samples.append(load_sample())
        bench.base_id()
        if len(set(bench.base_ids)) > 1:
            bench.notes.append(f"the base image {env.get('E2E_BASE_IMAGE')} was replaced during "
                               "the run (by someone else): builds before and after used different "
                               "bases")
        bench.notes += [
            "the bash row is the command sequence build-image.sh runs for `--env dev`, generated "
            "at benchmark time (benchmarks/results/bash-equivalent.sh), not the script itself: "
            "its argument parsing, colour echo and checks are left out, so it is a lower bound "
            "for the script",
            "worker builds go through `build-image.py --env dev` with the harness's wheel-mirror "
            "build args, in a git-initialised temp copy of Dockerfile, .dockerignore, setup.cfg "
            "and src/; "
            "each change run appends one comment line to src/rag_worker/inference.py "
            "and commits it; its cold build (`--no-cache`) reruns every step but keeps the "
            "Dockerfile's BuildKit cache mounts (uv's wheel cache, the last venv): `--no-cache` "
            "does not empty them (section 6 measures cold builds with empty ones)",
            f"pushes go to the harness's plain registry ({env['E2E_REGISTRY']}) addressed as "
            f"{bench.push_host}, each first push to a new repository that is removed from the "
            "registry's storage right after, so no later push can mount its layers from it; "
            "`layers per run` shows what docker reported",
            "the one-tag push is a direct `docker push`: build-image.py always makes at least "
            "two tags (and then builds and verifies), so it has no one-tag run",
            f"whole benchmark: {time.monotonic() - started:.0f} s",
        ]
        text = bench.report(bench.facts())
        ok = True
    finally:
        if not args.keep:
            bench.cleanup()
            if ok:
                shutil.rmtree(work, ignore_errors=True)
            else:
                log(f"failed: kept {work} (log: {bench.sh.logfile})")
    (RESULTS / "latest.md").write_text(text)
    print(text, end="")
    log(f"written to {RESULTS / 'latest.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
