"""Family ``push`` (section 4): pushes of the worker image to the harness's plain registry,
each to a new repository removed right after: one tag and six tags with ``docker push``, six
through ``build-image.py --push``, then the same six again (nothing changed), then a promote
of that image to six tags (by its manifest, no build)."""

from __future__ import annotations

import re
from pathlib import Path

from benchmarks.common import PUSH_EPOCH, TARGETS, WORKER, Bench, interleave, log, ratio
from benchmarks.shell import CommandError

SECTION = "4. push"
PUSHED = "pushed and verified 6 tags"  # what build-image.py says after a good six-tag push


def layer_counts(text: str) -> tuple[int, int, int]:
    """(layers pushed, mounted from another repository, already there), from docker's output."""
    return (
        len(re.findall(r": Pushed\s*$", text, re.M)),
        len(re.findall(r": Mounted from ", text, re.M)),
        len(re.findall(r": Layer already exists\s*$", text, re.M)),
    )


def check_pushed(path: Path) -> str:
    """The text of a build-image.py run's log; CommandError unless it pushed six tags."""
    text = path.read_text(errors="replace")
    if PUSHED not in text:
        raise CommandError(f"error: {path}: build-image.py did not push and verify 6 tags")
    return text


class Pushes:
    """The section's rows and what each run pushed (``layers``: row name -> counts per run)."""

    def __init__(self, bench: Bench, copy: Path):
        self.bench, self.copy = bench, copy
        self.logs = bench.work / "push-logs"
        self.logs.mkdir()
        self.one = bench.row(SECTION, "`docker push`, one tag, new repository")
        self.six = bench.row(SECTION, "`docker push` x 6 tags, new repository")
        self.rag = bench.row(
            SECTION,
            "`build-image.py --push`, six tags, new repository",
            "includes a cached build and the 6-tag verification",
        )
        self.again = bench.row(
            SECTION,
            "`build-image.py --push` again, nothing changed",
            "same six tags (SOURCE_DATE_EPOCH fixed)",
        )
        self.promote = bench.row(
            SECTION,
            "`build-image.py promote`, six tags",
            "the pushed dev image's manifest PUT under five new tags of the "
            "same repository (the sixth, git-<sha>, already there): no "
            "build, no layer upload, no gate (--no-gate)",
        )
        self.layers: dict[str, list] = {row.name: [] for row in self.rows}

    @property
    def rows(self) -> tuple:
        return (self.one, self.six, self.rag, self.again, self.promote)

    def direct(self, i: int, n: int) -> float:
        """Seconds of ``docker push`` of n tags of a new repository, one after the other."""
        bench = self.bench
        repo = f"bench-{bench.rid}-d{n}-{i}"
        refs = [f"{bench.push_host}/{repo}:t{k}" for k in range(n)]
        for ref in refs:
            bench.sh.run([bench.docker, "tag", f"{WORKER}:dev", ref])
        elapsed, text = 0.0, ""
        try:
            for k, ref in enumerate(refs):
                part = self.logs / f"d{n}-{i}-{k}.log"
                elapsed += bench.sh.timed([bench.docker, "push", ref], output=part)
                text += part.read_text(errors="replace")
        finally:
            bench.drop_repo(repo)
        (self.logs / f"d{n}-{i}.log").write_text(text)
        self.layers[(self.one if n == 1 else self.six).name].append(layer_counts(text))
        return elapsed

    def through_ragbuild(self, i: int) -> dict:
        """Seconds of a first six-tag push through build-image.py and of the same again."""
        bench = self.bench
        repo = f"bench-{bench.rid}-r6-{i}"
        argv = bench.ragbuild(
            "--env",
            "dev",
            "--registry",
            f"{bench.push_host}/{repo}",
            "--push",
            "-t",
            "bench-a",
            "-t",
            "bench-b",
            *bench.pip_args,
        )
        extra = {**bench.timed_env, "SOURCE_DATE_EPOCH": PUSH_EPOCH}
        first, second = self.logs / f"r6-{i}.log", self.logs / f"r6-again-{i}.log"
        third = self.logs / f"promote-{i}.log"
        # six tags: v1.0.0, 1.0.0, staging-<ts>, staging, git-<sha>, bench-c
        promote = bench.ragbuild(
            "promote",
            f"{bench.push_host}/{repo}:dev",
            "--env",
            "staging",
            "--version",
            "1.0.0",
            "--no-latest",
            "-t",
            "bench-c",
            "--no-gate",
            "benchmark",
        )
        try:
            elapsed = bench.sh.timed(argv, cwd=self.copy, extra_env=extra, output=first)
            repushed = bench.sh.timed(argv, cwd=self.copy, extra_env=extra, output=second)
            promoted = bench.sh.timed(
                promote, cwd=self.copy, extra_env=bench.timed_env, output=third
            )
        finally:
            bench.drop_repo(repo)
        self.layers[self.rag.name].append(layer_counts(check_pushed(first)))
        self.layers[self.again.name].append(layer_counts(check_pushed(second)))
        if "promoted and verified 6 tags" not in third.read_text(errors="replace"):
            raise CommandError(f"error: {third}: build-image.py promote did not promote 6 tags")
        self.layers[self.promote.name].append((0, 0, 0))
        return {self.rag: elapsed, self.again: repushed, self.promote: promoted}

    def notes(self) -> None:
        for row in self.rows:
            pushed = sorted(set(self.layers[row.name]))
            text = "; ".join(f"{p} pushed, {m} mounted, {e} already there" for p, m, e in pushed)
            row.note = "; ".join(filter(None, [row.note, f"layers per run: {text}"]))


def warm_up(bench: Bench) -> None:
    """A first push to a throw-away repository, so no row pays for anything done once only."""
    ref = f"{bench.push_host}/bench-{bench.rid}-warmup:t"
    bench.sh.run([bench.docker, "tag", f"{WORKER}:dev", ref])
    bench.sh.run([bench.docker, "push", ref])
    bench.drop_repo(f"bench-{bench.rid}-warmup")


def run(bench: Bench, copy: Path) -> None:
    """``copy``: the worker project, whose image ``WORKER:dev`` is built."""
    log("4/5 push to the plain registry")
    if "--push" not in bench.sh.out(bench.ragbuild("--help")):
        raise SystemExit("error: build-image.py --help lists no --push")
    pushes = Pushes(bench, copy)
    warm_up(bench)
    interleave(
        bench,
        [
            (pushes.one, lambda i: pushes.direct(i, 1)),
            (pushes.six, lambda i: pushes.direct(i, 6)),
            (pushes.rag, pushes.through_ragbuild),
        ],
        bench.args.push_runs,
    )
    pushes.notes()
    if not bench.repos_dir.is_dir():
        bench.notes.append(
            f"could not find the registry's storage ({bench.repos_dir}): "
            "repositories were not removed between runs"
        )
    limit, what = TARGETS["push"]
    bench.ratios += [
        ratio(
            f"{what}: `build-image.py --push` (6 tags) / `docker push` (1 tag)",
            pushes.rag.median / pushes.one.median,
            limit,
        ),
        ratio(
            f"{what}: `docker push` x 6 / `docker push` x 1 (like for like)",
            pushes.six.median / pushes.one.median,
            limit,
        ),
        ratio(
            TARGETS["promote"][1],
            pushes.promote.median / pushes.again.median,
            TARGETS["promote"][0],
        ),
    ]
