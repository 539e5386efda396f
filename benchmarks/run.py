#!/usr/bin/env python3
"""ragbuild's performance report: ``make bench`` (after ``tests/e2e/harness.sh up
--with-buildessential --with-realistic``).

Runs on the e2e harness's Docker engine, base images, wheel mirror and plain registry, and
prints one Markdown report (also written to benchmarks/results/latest.md): every figure in it
comes from this run. Timings are wall-clock seconds of a whole command, from start to exit,
measured with ``time.perf_counter``; each row gives the median and, beside it, the min and max
of its runs. Rows are interleaved run by run (A1 B1 C1 A2 B2 ...) so a burst of load from
elsewhere on the machine hits every row alike rather than one.

Families (sections), one module each in benchmarks/:
  1. wrapper: a fully cached rebuild of a tiny image through ragbuild, a bare ``docker build``
     (the floor) and the command sequence build-image.sh would run
  2. worker: cold build, rebuild after a one-line change under src/, no-change rebuild
  3. size: the multi-stage Dockerfile against benchmarks/Dockerfile.single-stage
  4. push: to the plain registry: one tag, six tags, a re-push of unchanged tags
  5. cli: latency of --help and --dry-run, with ``python -X importtime`` top entries
  6. realistic: the realistic dependency set (benchmarks/requirements-realistic.txt, ~120
     wheels): the Dockerfile (uv, BuildKit cache mounts) against
     benchmarks/Dockerfile.single-stage on the same mirror: cold build, rebuild after a
     one-line src/ change, rebuild after bumping one pin, image size
  7. unchanged: a cached build plus push of six unchanged tags: build-image.py against one
     ``docker buildx build --provenance=false -t ... (six tags) --push .``, both on the
     Docker 28 client (/usr/local/bin/docker) with the buildx plugin

``--only`` runs some families (e.g. ``--only realistic,unchanged,wrapper``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__":  # run as a file: import the package from the repository
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from benchmarks import cli, push, realistic, report, size, unchanged, worker, wrapper  # noqa: E402
from benchmarks.common import (
    RESULTS,
    SMALL,
    WORKER,
    Bench,
    load_sample,  # noqa: E402
    log,
)
from benchmarks.shell import load_env_file  # noqa: E402

SECTIONS = ("wrapper", "worker", "size", "push", "cli", "realistic", "unchanged")
DEFAULT_ENV_FILE = Path(os.environ.get("RAGBUILD_E2E_STATE", "/var/tmp/ragbuild-e2e")) / "env"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--env-file",
        type=Path,
        default=DEFAULT_ENV_FILE,
        help="the e2e harness's env file (default: %(default)s)",
    )
    parser.add_argument("--runs", type=int, default=9, help="runs of each fast row (default: 9)")
    parser.add_argument(
        "--cli-runs", type=int, default=15, help="runs of each CLI row (default: 15)"
    )
    parser.add_argument(
        "--worker-runs",
        type=int,
        default=5,
        help="rounds of cold/change/no-change worker builds (default: 5)",
    )
    parser.add_argument(
        "--push-runs",
        type=int,
        default=5,
        help="rounds of pushes to new repositories, section 4 (default: 5)",
    )
    parser.add_argument(
        "--realistic-runs",
        type=int,
        default=2,
        help="rounds of the realistic-set builds, per layout (default: 2)",
    )
    parser.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated sections to run (default: all: {','.join(SECTIONS)})",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir and images")
    args = parser.parse_args(argv)
    args.only = set(filter(None, args.only.split(",")))
    if args.only - set(SECTIONS) or not args.only:
        parser.error(f"--only: choose among {', '.join(SECTIONS)}")
    return args


def sample(bench: Bench) -> None:
    bench.samples.append(load_sample())


def run_families(bench: Bench, only: set[str]) -> None:
    """The chosen families in the report's order; the worker project is made (and its image
    built) for the families that build or push it."""
    if only & {"wrapper", "cli"}:
        wrapper.run(bench)  # also makes the small context the cli family runs in
        sample(bench)
    if "worker" in only:
        copy = worker.run(bench)
        sample(bench)
    else:
        copy = worker.copy_project(bench)
        if only & {"size", "push"}:
            worker.build_image(bench, copy)
    if "size" in only:
        size.run(bench, copy)
    if "push" in only:
        push.run(bench, copy)
        sample(bench)
    if "cli" in only:
        cli.run(bench, copy)
        sample(bench)
    if "realistic" in only:
        realistic.run(bench)
        sample(bench)
    if "unchanged" in only:
        unchanged.run(bench, copy)
        sample(bench)


def closing_notes(bench: Bench, started: float) -> list[str]:
    """What every report says about how it measured, and the run's length."""
    return [
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
        f"pushes go to the harness's plain registry ({bench.env['E2E_REGISTRY']}) addressed as "
        f"{bench.push_host}, each first push to a new repository that is removed from the "
        "registry's storage right after, so no later push can mount its layers from it; "
        "`layers per run` shows what docker reported",
        "the one-tag push is a direct `docker push`: build-image.py always makes at least "
        "two tags (and then builds and verifies), so it has no one-tag run",
        f"whole benchmark: {time.monotonic() - started:.0f} s",
    ]


def measure(bench: Bench, only: set[str]) -> str:
    """Run the families and return the report."""
    started = time.monotonic()
    bench.base_id()
    run_families(bench, only)
    bench.base_id()
    if len(set(bench.base_ids)) > 1:
        bench.notes.append(
            f"the base image {bench.base} was replaced during the run (by "
            "someone else): builds before and after used different bases"
        )
    bench.notes += closing_notes(bench, started)
    return report.render(bench, report.facts(bench))


def cleanup(bench: Bench) -> None:
    """Remove the run's images, the cold builds' cache mounts and its registry repositories."""
    refs = bench.sh.out(
        [bench.docker, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]
    ).split()
    prefixes = (
        f"{SMALL}:",
        f"{WORKER}:",
        f"{size.SINGLE}:",
        *(f"{image}:" for image in realistic.IMAGES.values()),
        f"{bench.push_host}/bench-{bench.rid}",
    )
    mine = [ref for ref in refs if ref.startswith(prefixes)]
    for k in range(0, len(mine), 50):
        bench.sh.run([bench.docker, "image", "rm", *mine[k : k + 50]], check=False)
    if bench.markers:
        pruned = realistic.prune_cache_mounts(bench, f"bench-{bench.rid}-")
        log(f"removed {pruned} cache mount(s) of the cold builds")
    if bench.repos_dir.is_dir():
        for path in bench.repos_dir.glob(f"bench-{bench.rid}-*"):
            shutil.rmtree(path, ignore_errors=True)


NO_BYTECODE_NOTE = (
    "PYTHONDONTWRITEBYTECODE was set where the benchmark started; it is unset for the timed "
    "commands, as in a default Python, so the port's compiled modules are cached in "
    "__pycache__ after the warm-up run (with it set, each run of the port compiles them again; "
    "benchmarks/README.md has what that costs)"
)


def main() -> int:
    args = parse_args()
    env = load_env_file(args.env_file)
    # A default Python keeps compiled modules in __pycache__; with PYTHONDONTWRITEBYTECODE set
    # (some sandboxes and images set it) every run of the port compiles ragbuild's modules again
    no_bytecode = env.pop("PYTHONDONTWRITEBYTECODE", None) is not None
    RESULTS.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ragbuild-bench-"))
    bench = Bench(args, env, work)
    if no_bytecode:
        bench.notes.append(NO_BYTECODE_NOTE)
    log(f"work dir {work}, log {bench.sh.logfile}")
    ok = False
    try:
        text = measure(bench, args.only)
        ok = True
    finally:
        if not args.keep:
            cleanup(bench)
            if ok:
                shutil.rmtree(work, ignore_errors=True)
            else:
                log(f"failed: kept {work} (log: {bench.sh.logfile})")
        bench.sh.close()
    (RESULTS / "latest.md").write_text(text)
    print(text, end="")
    log(f"written to {RESULTS / 'latest.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
