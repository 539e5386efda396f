"""Generated git repositories with random changes, and the truth about them computed without
ragbuild's git code (tests/unit/test_gitfacts_differential.py against git, and
tests/e2e/test_gitfacts.py against docker)."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import tarfile

from ragbuild.guard import ContextRules, walk_context

SEED = int(os.environ.get("GITFACTS_SEED", "22"))
CASES = int(os.environ.get("GITFACTS_CASES", "60"))

#: Variables that would point git elsewhere or change its answers: none reach these tests' git.
CLEARED = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_COMMON_DIR",
    "GIT_CEILING_DIRECTORIES",
    "GIT_DISCOVERY_ACROSS_FILESYSTEM",
    "GIT_NAMESPACE",
)


def base_env(**more) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env.update(
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_CONFIG_NOSYSTEM="1",
        LC_ALL="C",
        GIT_AUTHOR_NAME="T",
        GIT_AUTHOR_EMAIL="t@example.com",
        GIT_COMMITTER_NAME="T",
        GIT_COMMITTER_EMAIL="t@example.com",
    )
    env.update(more)
    return env


def git(repo, *args, env=None) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, env=env or base_env()
    ).stdout.decode()


# --- a generated repository ---------------------------------------------------------------------

FILES = [
    "a.txt",
    "src/app.py",
    "src/util.py",
    "docs/readme.md",
    "build/out.txt",
    "build/keep.txt",
    "run.sh",
    "b/c/deep.txt",
    "notes.log",
]
DOCKERIGNORES = [
    "",
    "*.log\n",
    "docs\n",
    "build\n!build/keep.txt\n",
    "**/*.md\n",
    "src/util.py\n",
    "b/c\n*.log\n",
]
GITIGNORES = ["", "*.log\n", "tmp/\n*.log\n"]
NEW_FILES = [
    "new.txt",
    "src/new.py",
    "build/keep2.txt",
    "docs/new.md",
    "x.log",
    "tmp/t.txt",
    "b/c/new.txt",
    "build/keep.txt",
]


def lines(rng, crlf=False) -> bytes:
    eol = b"\r\n" if crlf else b"\n"
    return b"".join(f"line {rng.randint(0, 99)}".encode() + eol for _ in range(rng.randint(1, 3)))


def make_case(rng, root, subcontext: bool = True) -> dict:
    """A repository at ``root`` with one commit and random changes after it: what was done
    (for the failure message) and the context to check (``subcontext``: sometimes src/)."""
    root.mkdir()
    git(root, "init", "-q")
    autocrlf = rng.random() < 0.3
    if autocrlf:
        git(root, "config", "core.autocrlf", "true")
    done = [f"autocrlf={autocrlf}"]
    (root / "Dockerfile").write_text("FROM scratch\n")
    tracked = rng.sample(FILES, rng.randint(2, 6))
    for path in tracked:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(lines(rng))
        if rng.random() < 0.3:
            os.chmod(root / path, 0o755)
    if rng.random() < 0.3:
        os.symlink(tracked[0], root / "link")
        tracked.append("link")
    ignore = rng.choice(DOCKERIGNORES)
    if ignore:
        (root / ".dockerignore").write_text(ignore)
    gitignore = rng.choice(GITIGNORES)
    if gitignore:
        (root / ".gitignore").write_text(gitignore)
    done.append(f"dockerignore={ignore!r} gitignore={gitignore!r} files={tracked}")
    git(root, "add", "-A", "-f")  # notes.log too, when .gitignore names it
    git(root, "commit", "-q", "-m", "base")
    if autocrlf:  # a checkout under core.autocrlf writes CRLF
        for path in tracked:
            if path != "link" and rng.random() < 0.5:
                os.remove(root / path)
                git(root, "checkout", "--", path)
    regular = [path for path in tracked if path != "link"]
    for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
        op = rng.choice(
            [
                "edit",
                "skip",
                "assume",
                "chmod",
                "delete",
                "untracked",
                "ignored",
                "crlf",
                "relink",
                "same-bytes",
            ]
        )
        path = rng.choice(regular)
        if not (root / path).exists() and op not in ("untracked", "ignored", "relink"):
            continue
        if op in ("edit", "skip", "assume"):
            with open(root / path, "ab") as handle:
                handle.write(lines(rng))
            if op != "edit":
                git(
                    root,
                    "update-index",
                    f"--{'skip-worktree' if op == 'skip' else 'assume-unchanged'}",
                    path,
                )
        elif op == "chmod":
            os.chmod(root / path, os.stat(root / path).st_mode ^ 0o111)
        elif op == "delete":
            os.remove(root / path)
        elif op in ("untracked", "ignored"):
            path = (
                rng.choice(NEW_FILES) if op == "untracked" else rng.choice(["y.log", "tmp/z.txt"])
            )
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_bytes(lines(rng))
        elif op == "crlf":
            (root / path).write_bytes(
                (root / path).read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            )
        elif op == "relink":
            if "link" not in tracked:
                continue
            path = "link"
            os.remove(root / "link")
            os.symlink(rng.choice(regular), root / "link")
        else:  # rewritten with the same bytes: no change, whatever git's stat cache says
            data = (root / path).read_bytes()
            (root / path).write_bytes(data)
        done.append(f"{op} {path}")
    context = "src" if subcontext and (root / "src").is_dir() and rng.random() < 0.2 else "."
    done.append(f"context={context}")
    return {"done": done, "context": context, "autocrlf": autocrlf}


# --- the truth, without ragbuild's git code -------------------------------------------------------


def exported(root, into):
    """The commit as git checks it out: ``git archive HEAD`` extracted."""
    data = subprocess.run(
        ["git", "-C", str(root), "archive", "--format=tar", "HEAD"],
        check=True,
        capture_output=True,
        env=base_env(),
    ).stdout
    into.mkdir()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(into)


def listing(tree, context, rules) -> dict:
    """``{path: (kind, bytes)}`` of what docker sends from ``tree`` (relative to its top) with
    ``rules`` (the work tree's ignore file), plus the Dockerfile and .dockerignore."""
    found = {}
    base = os.path.join(str(tree), context)
    if os.path.isdir(base):
        rules.context = base
        for rel, _ in walk_context(rules):
            found[os.path.normpath(os.path.join(context, rel))] = None
    for always in ("Dockerfile", os.path.normpath(os.path.join(context, ".dockerignore"))):
        if os.path.lexists(os.path.join(str(tree), always)):
            found[always] = None
    result = {}
    for path in found:
        if ".git" in path.split("/"):
            continue
        full = os.path.join(str(tree), path)
        mode = os.lstat(full).st_mode
        if stat.S_ISLNK(mode):
            result[path] = ("link", os.readlink(full).encode())
        else:
            with open(full, "rb") as handle:
                result[path] = ("x" if mode & stat.S_IXUSR else "f", handle.read())
    return result


def truth(root, case, tmp) -> set:
    exported(root, tmp)
    rules = ContextRules(os.path.join(str(root), case["context"]), str(root / "Dockerfile"))
    sent = listing(root, case["context"], rules)
    checkout = listing(tmp, case["context"], rules)
    differs = set()
    for path in set(sent) | set(checkout):
        a, b = sent.get(path), checkout.get(path)
        if a is None or b is None or a[0] != b[0]:
            differs.add(path)
        elif a[1] != b[1]:
            # line endings are no change where git converts them (core.autocrlf)
            if not (
                case["autocrlf"]
                and a[0] != "link"
                and a[1].replace(b"\r\n", b"\n") == b[1].replace(b"\r\n", b"\n")
            ):
                differs.add(path)
    return differs
