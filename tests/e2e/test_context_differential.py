"""Which files the build context holds: the context guard's prediction (ragbuild/guard.py, the walk
``scan_context`` makes) against the files docker actually sends, on generated cases (issue 23).

Each case is an ignore file (or two: ``.dockerignore`` and a per-Dockerfile
``<Dockerfile>.dockerignore``) and a tree, built by the leg's docker as a user would (``-f`` in one
of the forms docker accepts, from some working directory) with ``FROM scratch`` + ``COPY . /`` and
``--output type=local``: what lands in the output is what docker sent. Files and symlinks are
compared (directories are not: docker sends the parents of what it sends, the guard counts files).

The cases come from a fixed seed, ``RAGBUILD_CONTEXT_SEED`` (default 23), and number
``RAGBUILD_CONTEXT_CASES`` (default 60); a failure prints the seed, each failing case's index, its
ignore file(s) as bytes, its tree, its ``-f`` and what only one side sends. ``PINNED`` are cases
of other seeds that found a disagreement once, kept as tests. ``-f -`` (the Dockerfile on stdin) is refused by
ragbuild before anything runs, with the reason: a case checks the refusal.
"""

from __future__ import annotations

import ast
import os
import random
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.every_leg]

SEED = int(os.environ.get("RAGBUILD_CONTEXT_SEED", "23"))
COUNT = int(os.environ.get("RAGBUILD_CONTEXT_CASES", "60"))
JOBS = int(os.environ.get("RAGBUILD_CONTEXT_JOBS", "2"))  # builds at a time
DOCKERFILE = b"FROM scratch\nCOPY . /\n"

# --- the trees -------------------------------------------------------------------------------

#: Files every tree may hold (bytes: names that are not UTF-8 too); symlinks are added apart.
FILES = [
    b"a.txt",
    b"b.py",
    b"c.md",
    b"README",
    b".env",
    b".git/HEAD",
    b".git/config",
    b"src/app.py",
    b"src/keep.py",
    b"src/x.txt",
    b"src/app/main.py",
    b"src/app/keep.txt",
    b"src/app/deep/er/z.py",
    b"node_modules/pkg/index.js",
    b"node_modules/pkg/keep.js",
    b"pkg/node_modules/m.js",
    b"docs/a/b",
    b"docs/a/c.txt",
    b"docs/index.md",
    b"x",
    b"x.txt",
    b"space name.txt",
    b" lead.txt",
    b"trail.txt ",
    b"caf\xc3\xa9.txt",
    b"latin\xe9.txt",
    b"back\\slash.txt",
    b"#hash.txt",
    b"!bang.txt",
    b"a[1].txt",
    b"dir.d/f",
    b"ab.txt",
    b"bb.txt",
    b"logs/1.log",
    b"logs/keep/1.log",
    b"sub/Dockerfile.x",
    b"tmp/.keep",
    b"**/star",
    b"Dockerfile.old",
]
LINKS = [
    (b"link-a", b"a.txt"),
    (b"link-dir", b"src"),
    (b"dangling", b"nowhere"),
    (b"src/up", b"../a.txt"),
    (b"abs", b"/etc/hostname"),
]

# --- the ignore files ------------------------------------------------------------------------

PATTERNS = [
    "a.txt",
    "*.txt",
    "*.py",
    "**/*.py",
    "**/*.txt",
    "src",
    "src/",
    "src/*",
    "src/**",
    "src/app",
    "/src/app",
    "./src/app",
    "src/../a.txt",
    "**/keep*",
    "!**/keep*",
    "!src/keep.py",
    "!src/app/keep.txt",
    "!node_modules/pkg/keep.js",
    "node_modules",
    "**/node_modules",
    "docs/**/c.txt",
    "docs/*/b",
    "?.txt",
    "[ab].txt",
    "[!a]b.txt",
    "[^a]b.txt",
    "*",
    "**",
    "*/",
    "!*.md",
    "!README",
    ".env",
    "!.env",
    ".git",
    ".git/",
    "/.git",
    "**/.git",
    "logs",
    "!logs/keep",
    "!logs/keep/*.log",
    "logs/*.log",
    "space name.txt",
    "space*",
    " lead.txt",
    "trail.txt ",
    "caf\u00e9.txt",
    "caf*.txt",
    "back\\\\slash.txt",
    "back\\slash.txt",
    "#hash.txt",
    "\\#hash.txt",
    "!bang.txt",
    "\\!bang.txt",
    "a\\[1].txt",
    "dir.d",
    "Dockerfile*",
    "!Dockerfile",
    ".dockerignore",
    "*.dockerignore",
    "sub",
    "!sub/Dockerfile.x",
    "x",
    "/x",
    "./x",
    "x/",
    "tmp/*",
    "!tmp/.keep",
    "**/star",
    "\\*\\*/star",
    "link-*",
    "link-dir/*",
    "dangling",
    "abs",
    "src/up",
    ".",
    "/",
    "./",
    "..",
    "../a.txt",
    "*/*/*",
    "src/app/**/z.py",
    "src/**/*.py",
    "!src/**",
    "!**",
]
SPACES = ["", " ", "  ", "\t", " \t"]
ENDINGS = [b"\n", b"\r\n"]


def ignore_lines(rng: random.Random) -> list:
    """A list of (line text, kind) for one ignore file."""
    lines = []
    for _ in range(rng.randint(1, 7)):
        pattern = rng.choice(PATTERNS)
        roll = rng.random()
        if roll < 0.25:
            pattern = rng.choice(SPACES) + pattern + rng.choice(SPACES)
        elif roll < 0.3 and pattern.startswith("!"):
            pattern = "! " + pattern[1:]
        lines.append(pattern)
        roll = rng.random()
        if roll < 0.1:
            lines.append("# a comment " + rng.choice(PATTERNS))
        elif roll < 0.15:
            lines.append(" # not a comment: a pattern")
        elif roll < 0.2:
            lines.append(rng.choice(["", " ", "\t"]))
        elif roll < 0.23:
            lines.append("#" + rng.choice(PATTERNS))
    return lines


def encode(lines: list, rng: random.Random) -> bytes:
    """The lines as a file: UTF-8 (sometimes with a BOM) or Latin-1, LF or CRLF endings (or
    mixed, or a lone CR), with or without a final newline."""
    encoding = "latin-1" if rng.random() < 0.1 else "utf-8"
    ending = rng.choice(ENDINGS)
    out = b""
    for line in lines:
        out += line.encode(encoding, errors="replace")
        out += rng.choice(ENDINGS) if rng.random() < 0.1 else ending
    if rng.random() < 0.2:
        out = out[: -len(ending)]  # no final newline
    if encoding == "utf-8" and rng.random() < 0.15:
        out = b"\xef\xbb\xbf" + out
    if rng.random() < 0.05:
        out = out.replace(b"\n", b"")  # only CRs (old Mac): one line to docker
    return out


@dataclass
class Case:
    index: int
    files: list  # relative paths (bytes)
    links: list  # (relative path, target) (bytes)
    #: where the Dockerfile is, relative to the case directory; the context is ``ctx``
    dockerfile: str
    #: the -f as the user types it, and the working directory (relative to the case directory)
    flag: str
    cwd: str
    root_ignore: bytes = None  # ctx/.dockerignore, or None
    own_ignore: bytes = None  # <Dockerfile>.dockerignore, or None
    seed: int = SEED

    def describe(self) -> str:
        return (
            f"case {self.index} (RAGBUILD_CONTEXT_SEED={self.seed}): -f {self.flag} from "
            f"{self.cwd or '.'}/, context ctx; ctx/.dockerignore={self.root_ignore!r}; "
            f"{self.dockerfile}.dockerignore={self.own_ignore!r}; files={self.files!r}; "
            f"links={self.links!r}"
        )


#: The Dockerfile's place and the -f forms docker accepts for it: (Dockerfile, -f, cwd).
FORMS = [
    ("ctx/Dockerfile", "Dockerfile", "ctx"),
    ("ctx/Dockerfile", "./Dockerfile", "ctx"),
    ("ctx/Dockerfile", "ctx/Dockerfile", ""),
    ("ctx/Dockerfile", "{abs}", ""),
    ("ctx/sub/build.Dockerfile", "sub/build.Dockerfile", "ctx"),
    ("ctx/sub/build.Dockerfile", "./sub/../sub/build.Dockerfile", "ctx"),
    ("other/Dockerfile", "other/Dockerfile", ""),
    ("other/Dockerfile", "../other/Dockerfile", "ctx"),
    ("other/app.Dockerfile", "{abs}", "other"),
    ("ctx/Dockerfile", "Dockerfile", "ctx"),
]


def generate(index: int, seed: int = SEED) -> Case:
    rng = random.Random(f"{seed}-{index}")
    files = sorted(rng.sample(FILES, rng.randint(8, len(FILES))))
    links = [link for link in LINKS if rng.random() < 0.4]
    # a link where a generated file is a directory's child cannot also be that directory
    names = {path.split(b"/")[0] for path in files}
    links = [
        (path, target)
        for path, target in links
        if path not in names and not (path.startswith(b"src/") and b"src" not in names)
    ]
    dockerfile, flag, cwd = rng.choice(FORMS)
    case = Case(index, files, links, dockerfile, flag, cwd, seed=seed)
    kind = rng.random()
    if kind < 0.65:
        case.root_ignore = encode(ignore_lines(rng), rng)
    elif kind < 0.85:
        case.own_ignore = encode(ignore_lines(rng), rng)
        if rng.random() < 0.6:
            case.root_ignore = encode(ignore_lines(rng), rng)
    else:  # both, or none at all
        if rng.random() < 0.7:
            case.root_ignore = encode(ignore_lines(rng), rng)
            case.own_ignore = encode(ignore_lines(rng), rng)
    return case


#: Cases that once found the guard and docker to disagree, (seed, index), run with every seed:
#: a BOM before the first pattern (23, 21); docker 20.10's own walk of excluded directories
#: (23, 13) and its older matcher (11, 66; 11, 91); lone CRs (7, 112; 7, 119); a tab inside a
#: pattern on Docker 26 (11, 110).
PINNED = [(23, 21), (23, 13), (11, 66), (11, 91), (7, 112), (7, 119), (11, 110)]


# --- the two sides ---------------------------------------------------------------------------


def lay_out(case: Case, where: Path) -> None:
    where.mkdir()
    base = os.fsencode(where)
    for rel in case.files:
        path = os.path.join(base, b"ctx", rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(rel + b"\n")
    for rel, target in case.links:
        path = os.path.join(base, b"ctx", rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.symlink(target, path)
    dockerfile = where / case.dockerfile
    dockerfile.parent.mkdir(parents=True, exist_ok=True)
    dockerfile.write_bytes(DOCKERFILE)
    if case.root_ignore is not None:
        (where / "ctx" / ".dockerignore").write_bytes(case.root_ignore)
    if case.own_ignore is not None:
        Path(f"{dockerfile}.dockerignore").write_bytes(case.own_ignore)


def flag_of(case: Case, where: Path) -> str:
    return str(where / case.dockerfile) if case.flag == "{abs}" else case.flag


def context_of(case: Case, where: Path) -> str:
    """The context argument as typed from the case's working directory."""
    return "." if case.cwd == "ctx" else ("../ctx" if case.cwd else "ctx")


def predicted(case: Case, where: Path, classic: bool) -> tuple:
    """(files the guard says docker sends, or None; the guard's error or ""). ``classic``: the docker CLI's own docker build sends the context (a client
    before 23), which ragbuild's guard.check finds out (``sent_by_classic_cli``) when it matters."""
    from ragbuild import guard
    from ragbuild.errors import UsageError

    here = os.getcwd()
    os.chdir(where / case.cwd)
    try:
        rules = guard.ContextRules(context_of(case, where), flag_of(case, where))
        rules.prefix_exceptions = classic and rules.clients_differ
        return {os.fsencode(rel) for rel, _ in guard.walk_context(rules)}, ""
    except UsageError as err:
        return None, str(err)
    finally:
        os.chdir(here)


def sent(case: Case, where: Path, docker, leg) -> tuple:
    """(files docker sent, or None, docker's error or "")."""
    out = where / "out"
    argv = [
        docker.binary,
        "build",
        "-q",
        "-f",
        flag_of(case, where),
        "--output",
        f"type=local,dest={out}",
        context_of(case, where),
    ]
    env = docker.runner.environ({"DOCKER_BUILDKIT": "1"})
    done = subprocess.run(argv, cwd=where / case.cwd, env=env, capture_output=True, timeout=300)
    if done.returncode != 0:
        return None, done.stderr.decode(errors="replace").strip()
    found = set()
    base = os.fsencode(out)
    for top, dirs, files in os.walk(base):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(top, d))]:
            found.add(os.path.relpath(os.path.join(top, name), base))
    return found, ""


def refused_for_a_tab(error: str) -> bool:
    """Whether the guard refused a pattern whose only control characters are tabs."""
    found = re.search(r"the pattern ('.*'|\".*\") holds a control character", error)
    if not found:
        return False
    pattern = ast.literal_eval(found[1])
    return "\t" in pattern and not re.search(r"[\x00-\x08\x0a-\x1f\x7f]", pattern)


def test_the_guard_predicts_the_files_docker_sends(docker, leg, tmp_path):
    cases = [generate(index) for index in range(COUNT)]
    cases += [generate(index, seed) for seed, index in PINNED if seed != SEED]
    # the guard side runs in this process (it changes directory): prediction first, in order;
    # the builds two at a time (CI has two cores)
    for case in cases:
        where = tmp_path / f"case-{case.seed}-{case.index}"
        lay_out(case, where)
    classic = docker.major() < 23  # its docker build is the CLI's own, not buildx
    guesses = {
        id(case): predicted(case, tmp_path / f"case-{case.seed}-{case.index}", classic)
        for case in cases
    }
    with ThreadPoolExecutor(max_workers=JOBS) as pool:
        actuals = dict(
            zip(
                [id(case) for case in cases],
                pool.map(
                    lambda case: sent(
                        case, tmp_path / f"case-{case.seed}-{case.index}", docker, leg
                    ),
                    cases,
                ),
            )
        )
    failures = []
    for case in cases:
        (guess, guard_error), (actual, docker_error) = guesses[id(case)], actuals[id(case)]
        if guess is None and actual is not None and refused_for_a_tab(guard_error):
            continue  # refused on every engine; Docker 26's fail on it, older ones build
        if guess is None or actual is None:
            if not (guess is None and actual is None):
                failures.append(
                    f"{case.describe()}\n  guard: {guard_error or f'sends {len(guess)} files'}"
                    f"\n  docker: {docker_error or f'sent {len(actual)} files'}"
                )
        elif guess != actual:
            failures.append(
                f"{case.describe()}\n  only the guard: {sorted(guess - actual)!r}"
                f"\n  only docker: {sorted(actual - guess)!r}"
            )
    assert not failures, (
        f"{len(failures)} of {len(cases)} cases disagree "
        f"(RAGBUILD_CONTEXT_SEED={SEED}, leg {leg.name}):\n" + "\n".join(failures)
    )


def test_a_dockerfile_on_stdin_is_refused_with_the_reason(project):
    """``-f -``: docker reads the Dockerfile from stdin; ragbuild, which reads the Dockerfile (and
    its ignore file) before the build, refuses it in one line, before any docker call."""
    result = project.script("--env", "dev", "-f", "-")
    assert result.returncode == 2, result.describe()
    assert result.error_lines() == [
        "error: -f - (the Dockerfile on stdin) is not supported: ragbuild reads the Dockerfile "
        "before the build (the context guard's per-Dockerfile ignore file, doctor's checks); "
        "write it to a file and pass -f FILE"
    ]
    assert "+ docker" not in result.stderr
