"""Family ``realistic`` (section 6): the realistic dependency set
(benchmarks/requirements-realistic.txt, ~120 wheels) with a bare ``docker build``: the
repository's Dockerfile (uv, BuildKit cache mounts), the same with ``COMPILE_BYTECODE=1``, and
benchmarks/Dockerfile.single-stage, each round a cold build, a rebuild after a one-line src/
change, a rebuild after bumping one pin; then what the images hold and their sizes."""

from __future__ import annotations

import functools
import json
import re
import shutil

from benchmarks.common import (
    BE_IMAGE,
    REPO,
    SINGLE_STAGE,
    Bench,
    Row,
    cache_note,
    copy_tree,
    interleave,
    log,
    ratio,
    target,
)

SECTION = "6. realistic dependency set"
REALISTIC = REPO / "benchmarks" / "requirements-realistic.txt"
REALISTIC_BUMP = REPO / "benchmarks" / "requirements-realistic-bump.txt"
REAL_MULTI = "ragbuild-bench-real-multi"
REAL_SINGLE = "ragbuild-bench-real-single"
IMAGES = {"multi": REAL_MULTI, "pyc": f"{REAL_MULTI}-pyc", "single": REAL_SINGLE}
# the Dockerfile's dependency steps, as the cold builds rewrite them: their own (empty) cache
# mounts, and a marker in the command that names those mounts' records for the clean-up
CACHE_IDS = ("id=ragbuild-uv,",)  # every cache mount of the Dockerfile, each in one or more steps
MARKED_STEP = "set -e; \\\n"  # how each step that mounts one begins
# what the images must import, and the bumped package's version and the distributions' count
CHECK = (
    "import importlib.metadata as m, fastapi, uvicorn, llama_index.core, openai, "
    "supabase, boto3, opentelemetry.sdk, structlog; "
    "print(m.version('{package}'), len(list(m.distributions())))"
)


def cold_dockerfile(text: str, marker: str) -> str:
    """The Dockerfile with cache mounts of its own (empty: a cold build's) and ``marker`` in
    every step that mounts one (the mounts' build-cache records carry it)."""
    for cache_id in CACHE_IDS:
        if not text.count(cache_id):
            raise SystemExit(
                f"error: the Dockerfile has no `{cache_id}` mount: "
                "update benchmarks/realistic.py's CACHE_IDS"
            )
        text = text.replace(cache_id, cache_id.replace("ragbuild-", f"{marker}-"))
    if text.count(MARKED_STEP) != text.count(f"{marker}-"):
        raise SystemExit(
            f"error: not every step with a cache mount begins {MARKED_STEP!r}: "
            "update benchmarks/realistic.py's MARKED_STEP"
        )
    return text.replace(MARKED_STEP, f"set -e; : {marker}; \\\n")


def prune_cache_mounts(bench: Bench, marker: str) -> int:
    """Remove the cache mounts whose build-cache record names ``marker``; how many."""
    listing = bench.sh.out([bench.docker, "system", "df", "-v", "--format", "{{json .BuildCache}}"])
    records = [
        r
        for r in json.loads(listing or "[]") or []
        if r.get("CacheType") == "exec.cachemount" and marker in r.get("Description", "")
    ]
    for record in records:  # the engine takes one id filter per prune
        bench.sh.run(
            [bench.docker, "builder", "prune", "--force", "--filter", f"id={record['ID']}"],
            check=False,
        )
    return len(records)


def bumped_pins(pinned: str) -> tuple[str, str]:
    """(the bump line ``name==version``, the requirements with it in place of the old pin)."""
    bump = next(
        line.strip()
        for line in REALISTIC_BUMP.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )
    bumped, count = re.subn(rf"^{re.escape(bump.split('==')[0])}==\S+$", bump, pinned, flags=re.M)
    if count != 1 or bumped == pinned:
        raise SystemExit(
            f"error: {REALISTIC_BUMP.name}'s `{bump}` changes no pin of {REALISTIC.name}"
        )
    return bump, bumped


def layout_rows(bench: Bench, bump: str) -> dict[str, tuple[Row, Row, Row]]:
    """layout: its (cold, change, bump) rows."""
    pyc = "`Dockerfile` with `COMPILE_BYTECODE=1`"
    return {
        "multi": (
            bench.row(SECTION, "`Dockerfile`: cold build", "`--no-cache`, empty cache mounts"),
            bench.row(SECTION, "`Dockerfile`: rebuild after a one-line change under `src/`"),
            bench.row(SECTION, f"`Dockerfile`: rebuild after bumping one pin (`{bump}`)"),
        ),
        "pyc": (
            bench.row(
                SECTION,
                f"{pyc}: cold build",
                "`--no-cache`, empty cache mounts; .pyc for every module, as pip",
            ),
            bench.row(SECTION, f"{pyc}: rebuild after a one-line change under `src/`"),
            bench.row(SECTION, f"{pyc}: rebuild after bumping one pin (`{bump}`)"),
        ),
        "single": (
            bench.row(
                SECTION, "single-stage: cold build", "`--no-cache`; base has build-essential"
            ),
            bench.row(SECTION, "single-stage: rebuild after a one-line change under `src/`"),
            bench.row(SECTION, f"single-stage: rebuild after bumping one pin (`{bump}`)"),
        ),
    }


def build_argv(bench: Bench, layout: str, tag: str, *more: str) -> list:
    argv: list = [bench.docker, "build", *bench.pip_args, "-t", f"{IMAGES[layout]}:{tag}", *more]
    if layout == "single":
        argv += ["-f", SINGLE_STAGE, "--build-arg", f"PYTHON_IMAGE={BE_IMAGE}"]
    if layout == "pyc":
        argv += ["--build-arg", "COMPILE_BYTECODE=1"]
    return argv + ["."]


class Rounds:
    """The section's project copy (work/realistic) and one round of builds of a layout."""

    def __init__(self, bench: Bench):
        self.bench = bench
        self.copy = bench.work / "realistic"
        self.copy.mkdir()
        shutil.copy(REPO / ".dockerignore", self.copy / ".dockerignore")
        copy_tree(REPO / "src", self.copy / "src")
        self.requirements = self.copy / "src" / "rag_worker" / "requirements.txt"
        self.source = self.copy / "src" / "rag_worker" / "inference.py"
        self.pinned = REALISTIC.read_text()
        self.bump, self.bumped = bumped_pins(self.pinned)
        self.dockerfile = (REPO / "Dockerfile").read_text()
        self.logs = bench.work / "realistic-logs"
        self.logs.mkdir()
        self.rows = layout_rows(bench, self.bump)

    def timed(self, layout: str, key: str, i: int, *more: str) -> float:
        return self.bench.sh.timed(
            build_argv(self.bench, layout, key, *more),
            cwd=self.copy,
            extra_env={"DOCKER_BUILDKIT": "1"},
            output=self.logs / f"{layout}-{key}-{i}.log",
        )

    def round_(self, i: int, layout: str) -> dict:
        """{row: seconds} of a cold build, a one-line change, a bumped pin."""
        bench = self.bench
        log(f"  round {i + 1}/{bench.args.realistic_runs}: {layout}")
        self.requirements.write_text(self.pinned)
        if layout != "single":
            marker = f"bench-{bench.rid}-{layout}-{i}"
            bench.markers.append(marker)
            (self.copy / "Dockerfile").write_text(cold_dockerfile(self.dockerfile, marker))
        cold, change, bumped = self.rows[layout]
        got = {cold: self.timed(layout, "cold", i, "--no-cache")}
        with open(self.source, "a", encoding="utf-8") as f:
            f.write(f"# benchmark change {bench.rid}-{layout}-{i}\n")
        got[change] = self.timed(layout, "change", i)
        self.requirements.write_text(self.bumped)
        got[bumped] = self.timed(layout, "bump", i)
        return got

    def check_images(self) -> None:
        """Every cold and bumped image imports the set, and the bump took effect (else
        SystemExit); the rows' notes say so."""
        package, version = self.bump.split("==")
        for layout, name in (
            ("multi", "`Dockerfile`"),
            ("pyc", "COMPILE_BYTECODE=1"),
            ("single", "single-stage"),
        ):
            held = {
                tag: self.bench.sh.out(
                    [
                        self.bench.docker,
                        "run",
                        "--rm",
                        f"{IMAGES[layout]}:{tag}",
                        "python",
                        "-c",
                        CHECK.format(package=package),
                    ]
                ).split()
                for tag in ("cold", "bump")
            }
            (v0, n0), v1 = held["cold"], held["bump"][0]
            self.rows[layout][0].note += f"; {n0} distributions, all import; {package} {v0}"
            self.rows[layout][2].note = f"{package} {v0} -> {v1} in the image"
            if v1 != version:
                raise SystemExit(f"error: the {name} image after the bump has {package} {v1}")
        for layout, rows in self.rows.items():
            for row, key in zip(rows, ("cold", "change", "bump")):
                row.note = "; ".join(
                    filter(None, [row.note, cache_note(self.logs, f"{layout}-{key}")])
                )


def run(bench: Bench) -> None:
    log("6/7 realistic dependency set: Dockerfile against the single-stage layout")
    rounds = Rounds(bench)
    interleave(
        bench,
        [
            (rows[0], functools.partial(rounds.round_, layout=layout))
            for layout, rows in rounds.rows.items()
        ],
        bench.args.realistic_runs,
    )
    rounds.check_images()
    figures(bench, rounds)
    bench.notes.append(
        "section 6 builds with a bare `DOCKER_BUILDKIT=1 docker build` (the layouts compared, "
        "not the wrapper) in a copy of src/ whose requirements.txt is "
        f"benchmarks/{REALISTIC.name}; each round: cold (`--no-cache`; for the Dockerfile also "
        "new, empty cache mounts), then one comment line appended to "
        f"src/rag_worker/inference.py, then `{rounds.bump}`; the cache mounts of the cold rounds "
        "are removed at the end"
    )


def figures(bench: Bench, rounds: Rounds) -> None:
    """The images' sizes, the three targets, and four ratios for comparison."""
    top = sum(1 for line in rounds.pinned.splitlines() if "==" in line and not line.startswith("#"))
    multi, single = bench.size_of(f"{REAL_MULTI}:cold"), bench.size_of(f"{REAL_SINGLE}:cold")
    pyc = bench.size_of(f"{IMAGES['pyc']}:cold")
    bench.sizes += [
        (f"realistic set ({top} pins): `Dockerfile`", multi, "uv, venv only, no build tools"),
        (
            f"realistic set ({top} pins): `Dockerfile` with `COMPILE_BYTECODE=1`",
            pyc,
            "the same with every module's .pyc",
        ),
        (
            f"realistic set ({top} pins): single-stage",
            single,
            "build-essential, pip's cache and pip kept, as the bash-era image",
        ),
    ]
    (m_cold, _, m_bump), (p_cold, _, p_bump), (s_cold, _, s_bump) = rounds.rows.values()
    bench.ratios += [
        target("real-size", multi / single),
        target("real-bump", m_bump.median / m_cold.median),
        target("real-cold", m_cold.median / s_cold.median),
    ]
    for what, value in (
        (
            "realistic set: `COMPILE_BYTECODE=1`, rebuild after bumping one pin / its cold build",
            p_bump.median / p_cold.median,
        ),
        (
            "realistic set: `COMPILE_BYTECODE=1` cold build / single-stage cold build",
            p_cold.median / s_cold.median,
        ),
        ("realistic set: `COMPILE_BYTECODE=1` image size / single-stage", pyc / single),
        (
            "realistic set: single-stage, rebuild after bumping one pin / its cold build",
            s_bump.median / s_cold.median,
        ),
    ):
        bench.ratios.append(ratio(what + " (for comparison)", value))
