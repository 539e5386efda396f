"""Family ``cli`` (section 5): latency of short commands in the tiny project (the wrapper
family's work/small), then ``python -X importtime`` of two of them, and the dirty check alone
(``git.git_info`` on the worker's committed context, timed in-process: ``dirty_check``).

A small timed row is one function here, ``(bench) -> Case``, listed in ``CASES``: its runs
are interleaved with the others', ``--cli-runs`` of each, after one warm-up run.
"""

from __future__ import annotations

import re
from typing import Callable, NamedTuple

from pathlib import Path

from benchmarks.common import REPO, SCRIPT, SMALL, Bench, interleave, log
from benchmarks.shell import CommandError

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
    return Case(
        "`build-image.py --env dev --dry-run`",
        bench.ragbuild(*DRY_RUN),
        "runs the read-only git queries (the dirty check), no docker",
    )


#: Times one ``git.git_info`` in the working directory (a committed copy of the worker's
#: context) after one untimed call (imports, page cache); prints seconds, the files docker sends,
#: the git processes started and whether it found the tree dirty (0/1). argv[1]: the repository.
GIT_FACTS_TIMER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from ragbuild import gitfacts
from ragbuild.config import Options
from ragbuild.run.runner import Runner
from ragbuild.git import git_info

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


def dirty_check(bench: Bench, project: Path) -> None:
    """The dirty check's own cost, ``--cli-runs`` times after a warm-up: one row."""
    row = bench.row(
        SECTION,
        "the dirty check: `git.git_info` on the worker's context (in-process, not a whole command)",
    )

    def once(i: int) -> float:
        answer = bench.sh.out(
            [bench.py, "-c", GIT_FACTS_TIMER, str(REPO)], cwd=project, extra_env=bench.timed_env
        ).split()
        if len(answer) != 4 or answer[3] != "0":
            raise CommandError(f"error: the dirty check gave {answer} on a clean copy")
        row.note = (
            f"{answer[1]} files sent, compared with the commit by {answer[2]} git "
            "processes (rev-parse, ls-tree, hash-object)"
        )
        return float(answer[0])

    once(0)  # warm-up
    interleave(bench, [(row, once)], bench.args.cli_runs)


CASES: tuple[Callable[[Bench], Case], ...] = (interpreter, help_text, dry_run)


def run(bench: Bench, project: Path) -> None:
    """The rows; ``project``: the worker's committed context (worker.copy_project)."""
    log("5/5 CLI latency")
    ctx = bench.work / "small"
    cases = [case(bench) for case in CASES]
    rows = [bench.row(SECTION, case.name, case.note) for case in cases]
    for case in cases:  # warm-up: bytecode compiled, files in the page cache
        bench.sh.run(case.argv, cwd=ctx, extra_env=bench.timed_env)
    interleave(
        bench,
        [(row, bench.timer(case.argv, ctx, bench.timed_env)) for row, case in zip(rows, cases)],
        bench.args.cli_runs,
    )
    for label, flags in (("--help", ["--help"]), ("--env dev --dry-run", list(DRY_RUN))):
        done = bench.sh.capture(
            [bench.py, "-X", "importtime", SCRIPT, *flags], cwd=ctx, extra_env=bench.timed_env
        )
        bench.importtime[label] = parse_importtime(done.stderr)
    dirty_check(bench, project)


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
    return {
        "total": sum(cum for _, cum, _ in top),
        "top": sorted((e for e in top if e[1] >= 1.0), key=lambda e: e[1], reverse=True)[:8],
    }
