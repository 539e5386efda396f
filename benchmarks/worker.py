"""Family ``worker`` (section 2): the worker image through ``build-image.py --env dev``: a cold
build, a rebuild after a one-line change under src/, a rebuild with no change."""

from __future__ import annotations

import shutil
from pathlib import Path

from benchmarks.common import REPO, WORKER, Bench, cache_note, copy_tree, interleave, log, target

SECTION = "2. worker image"


def copy_project(bench: Bench) -> Path:
    """work/project: the repository's Dockerfile, .dockerignore, setup.cfg and src/, committed
    (the size, push and unchanged families build there too)."""
    copy = bench.work / "project"
    copy.mkdir()
    for name in ("Dockerfile", ".dockerignore", "setup.cfg"):
        shutil.copy(REPO / name, copy / name)
    copy_tree(REPO / "src", copy / "src")
    bench.git_init(copy)
    return copy


def build_argv(bench: Bench) -> list:
    return bench.ragbuild("--env", "dev", "--image-name", WORKER, *bench.pip_args)


def build_image(bench: Bench, copy: Path) -> None:
    """The worker image, untimed, for the families that need it when this one did not run."""
    bench.sh.run(build_argv(bench), cwd=copy, extra_env=bench.timed_env)


def run(bench: Bench) -> Path:
    """The rows and the change/cold target; the project copy, for the families after it."""
    log("2/5 worker image: cold, one-line change, no change")
    copy = copy_project(bench)
    build = build_argv(bench)
    logs = bench.work / "worker-logs"
    logs.mkdir()
    target_file = copy / "src" / "rag_worker" / "inference.py"
    cold = bench.row(SECTION, "cold build (`--no-cache`)")
    change = bench.row(SECTION, "rebuild after a one-line change under `src/`")
    same = bench.row(SECTION, "rebuild with no change")
    attempts = iter(range(10**6))

    def timed(argv: list, name: str) -> float:
        return bench.sh.timed(argv, cwd=copy, extra_env=bench.timed_env, output=logs / name)

    def round_(i: int) -> dict:
        log(f"  round {i + 1}/{bench.args.worker_runs}")
        got = {cold: timed(build + ["--no-cache"], f"cold-{i}.log")}
        with open(target_file, "a", encoding="utf-8") as f:
            f.write(f"# benchmark change {bench.rid}-{i}-{next(attempts)}\n")
        bench.git_commit(copy, f"change {i}", "-q", "-a")
        got[change] = timed(build, f"change-{i}.log")
        got[same] = timed(build, f"same-{i}.log")
        return got

    interleave(bench, [(cold, round_)], bench.args.worker_runs)
    for row, key in ((cold, "cold"), (change, "change"), (same, "same")):
        row.note = cache_note(logs, key)
    if bench.args.worker_runs < 5:
        cold.note += f"; {bench.args.worker_runs} runs only (--worker-runs)"
    bench.ratios.append(target("change", change.median / cold.median))
    return copy
