"""Family ``cli`` (section 5): latency of short commands in the tiny project (the wrapper
family's work/small), then ``python -X importtime`` of two of them.

A small timed row is one function here, ``(bench) -> Case``, listed in ``CASES``: its runs
are interleaved with the others', ``--cli-runs`` of each, after one warm-up run.
"""

from __future__ import annotations

import re
from typing import Callable, NamedTuple

from benchmarks.common import SCRIPT, SMALL, Bench, interleave, log

SECTION = "5. CLI latency"
DRY_RUN = ("--env", "dev", "--image-name", SMALL, "--dry-run")


class Case(NamedTuple):
    """A row: its name and note, and the command it times."""

    name: str
    argv: list
    note: str = ""


def interpreter(bench: Bench) -> Case:
    return Case("`python -c pass` (interpreter start-up, the floor)", [bench.py, "-c", "pass"])


def help_text(bench: Bench) -> Case:
    return Case("`build-image.py --help`", bench.ragbuild("--help"))


def dry_run(bench: Bench) -> Case:
    return Case("`build-image.py --env dev --dry-run`", bench.ragbuild(*DRY_RUN),
                "runs one read-only `git describe`")


CASES: tuple[Callable[[Bench], Case], ...] = (interpreter, help_text, dry_run)


def run(bench: Bench) -> None:
    log("5/5 CLI latency")
    ctx = bench.work / "small"
    cases = [case(bench) for case in CASES]
    rows = [bench.row(SECTION, case.name, case.note) for case in cases]
    for case in cases:  # warm-up: bytecode compiled, files in the page cache
        bench.sh.run(case.argv, cwd=ctx, extra_env=bench.timed_env)
    interleave(bench, [(row, bench.timer(case.argv, ctx, bench.timed_env))
                       for row, case in zip(rows, cases)], bench.args.cli_runs)
    for label, flags in (("--help", ["--help"]), ("--env dev --dry-run", list(DRY_RUN))):
        done = bench.sh.capture([bench.py, "-X", "importtime", SCRIPT, *flags], cwd=ctx,
                                extra_env=bench.timed_env)
        bench.importtime[label] = parse_importtime(done.stderr)


def parse_importtime(stderr: str) -> dict:
    """``import time: self | cumulative | name`` lines (microseconds, children printed before
    their parent) -> ``{"total": ms, "top": [(name, ms, (heaviest child, ms) or None)]}``: the
    top-level imports of 1 ms or more by cumulative time (at most 8), each with the heaviest
    import it pulls in from outside its own package."""
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
