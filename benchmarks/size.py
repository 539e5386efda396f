"""Family ``size`` (section 3): the worker image (multi-stage Dockerfile) against
benchmarks/Dockerfile.single-stage on a base with build-essential; bytes as the engine says."""

from __future__ import annotations

from pathlib import Path

from benchmarks.common import BE_IMAGE, SINGLE_STAGE, WORKER, Bench, fmt_size, log, target

SINGLE = "ragbuild-bench-single"


def run(bench: Bench, copy: Path) -> None:
    """``copy``: the worker project, whose image ``WORKER:dev`` is built."""
    log("3/5 image size: multi-stage against single-stage with build-essential")
    bench.sh.run(
        [
            bench.docker,
            "build",
            "-f",
            SINGLE_STAGE,
            "--build-arg",
            f"PYTHON_IMAGE={BE_IMAGE}",
            *bench.pip_args,
            "-t",
            f"{SINGLE}:latest",
            copy,
        ],
        extra_env={"DOCKER_BUILDKIT": "1"},
    )
    multi = bench.size_of(f"{WORKER}:dev")
    single = bench.size_of(f"{SINGLE}:latest")
    bench.sizes = [
        (
            "multi-stage `Dockerfile` (the worker image)",
            multi,
            f"base {bench.base}: {fmt_size(bench.size_of(bench.base))}",
        ),
        (
            "single-stage `benchmarks/Dockerfile.single-stage`",
            single,
            f"base {BE_IMAGE}: {fmt_size(bench.size_of(BE_IMAGE))}",
        ),
    ]
    bench.ratios.append(target("size", multi / single))
