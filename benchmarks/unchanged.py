"""Family ``unchanged`` (section 7): a cached build plus push of six unchanged tags,
``build-image.py --push`` against one ``docker buildx build --provenance=false -t ... (six
tags) --push .``, both on the Docker 28 client with the buildx plugin, after a first push."""

from __future__ import annotations

import os
import re
from pathlib import Path

from benchmarks.common import ATTEMPTS, DOCKER28, PUSH_EPOCH, Bench, interleave, log, target
from benchmarks.push import check_pushed
from benchmarks.shell import CommandError, Done

SECTION = "7. six unchanged tags (Docker 28 client)"


def first_push(bench: Bench, argv: list, copy: Path, extra: dict) -> Done:
    """The first push of the six tags, retried like a round."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return bench.sh.capture(argv, cwd=copy, extra_env=extra)
        except CommandError as failure:
            if attempt == ATTEMPTS:
                raise
            bench.retried(failure)
    raise AssertionError("unreachable")


def buildx_argv(bench: Bench, copy: Path, registry: str, text: str) -> list:
    """The one buildx command that builds and pushes the tags build-image.py pushed (``text``:
    its output), with the same build args."""
    tags = sorted(set(re.findall(rf"{re.escape(registry)}:([\w][\w.-]*)", text)))
    if len(tags) != 6 or "pushed and verified 6 tags" not in text:
        raise SystemExit(f"error: build-image.py did not push six tags ({tags})")
    sha = bench.sh.out([bench.git, "rev-parse", "--short", "HEAD"], cwd=copy)
    stamp = next(t for t in tags if t.startswith("dev-"))[4:]
    argv = [
        DOCKER28,
        "buildx",
        "build",
        "--provenance=false",
        "--build-arg",
        "ENVIRONMENT=dev",
        "--build-arg",
        f"GIT_COMMIT={sha}",
        "--build-arg",
        f"BUILD_TIMESTAMP={stamp}",
        *bench.pip_args,
    ]
    for tag in tags:
        argv += ["-t", f"{registry}:{tag}"]
    return argv + ["--push", "."]


def docker28_env(bench: Bench) -> dict[str, str]:
    """The variables both commands get: the Docker 28 client, first on PATH too."""
    bin28 = bench.work / "bin28"
    bin28.mkdir()
    (bin28 / "docker").symlink_to(DOCKER28)
    return {
        "PATH": f"{bin28}{os.pathsep}{bench.env.get('PATH', os.defpath)}",
        "DOCKER": DOCKER28,
        "SOURCE_DATE_EPOCH": PUSH_EPOCH,
        "DOCKER_BUILDKIT": "1",
    }


def run(bench: Bench, copy: Path) -> None:
    """``copy``: the worker project."""
    log("7/7 cached build + push of six unchanged tags, Docker 28 client")
    if not os.access(DOCKER28, os.X_OK):
        bench.notes.append(f"section 7 skipped: no {DOCKER28}")
        return
    extra = docker28_env(bench)
    buildx = bench.sh.out([DOCKER28, "buildx", "version"], extra_env=extra)
    repo = f"bench-{bench.rid}-u6"
    registry = f"{bench.push_host}/{repo}"
    argv = bench.ragbuild(
        "--env",
        "dev",
        "--registry",
        registry,
        "--push",
        "-t",
        "bench-a",
        "-t",
        "bench-b",
        *bench.pip_args,
    )
    logs = bench.work / "unchanged-logs"
    logs.mkdir()
    try:
        first = first_push(bench, argv, copy, extra)
        bx_argv = buildx_argv(bench, copy, registry, first.stdout + first.stderr)
        bench.sh.run(bx_argv, cwd=copy, extra_env=extra)  # warm-up: its cache, its pushes
        rag = bench.row(
            SECTION,
            "`build-image.py --env dev --registry R --push -t bench-a -t bench-b`",
            "cached build, 6 tags pushed and verified",
        )
        bx = bench.row(
            SECTION,
            "`docker buildx build --provenance=false -t R:... (the same 6) --push .`",
            f"cached build, 6 tags pushed; {buildx}",
        )

        def ragbuild_run(i: int) -> float:
            out = logs / f"ragbuild-{i}.log"
            elapsed = bench.sh.timed(argv, cwd=copy, extra_env=extra, output=out)
            check_pushed(out)
            return elapsed

        interleave(
            bench,
            [
                (rag, ragbuild_run),
                (
                    bx,
                    lambda i: bench.sh.timed(
                        bx_argv, cwd=copy, extra_env=extra, output=logs / f"buildx-{i}.log"
                    ),
                ),
            ],
            bench.args.runs,
        )  # fast rows (0.3-0.6 s): as many runs as section 1
        bench.ran_unchanged = True
        bench.ratios.append(target("unchanged", rag.median / bx.median))
    finally:
        bench.drop_repo(repo)
