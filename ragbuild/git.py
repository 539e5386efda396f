"""Git: every query ragbuild asks git (as ``Command`` data) and the parser of each answer, the
facts they make (``GitInfo``: the commit, whether what docker sends differs from it) and the
``v*`` version tags. Git's discovery and the file comparison are gitfacts.py's."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable, Optional
from collections.abc import Mapping

from ragbuild.config import Options
from ragbuild.errors import GitFailed, ToolMissing, UsageError
from ragbuild.run.command import Command, Kind, Result
from ragbuild.run.runner import Runner

if TYPE_CHECKING:  # imported where they are needed
    import semver
    from ragbuild.gitfacts import Entry


def shown_path(path: str) -> str:
    """A file name for a one-line message: as it is, or double-quoted with C escapes when it
    holds a control character, a quote or a backslash (as git's ``core.quotePath`` shows it)."""
    if path.isprintable() and '"' not in path and "\\" not in path:
        return path
    escapes = {"\n": "\\n", "\t": "\\t", "\r": "\\r", '"': '\\"', "\\": "\\\\"}
    return (
        '"'
        + "".join(
            escapes.get(char) or (char if char.isprintable() else f"\\{ord(char):03o}")
            for char in path
        )
        + '"'
    )


@dataclass(frozen=True)
class GitInfo:
    sha: Optional[str] = None  # None: no repository, no commits, or no git
    dirty: bool = False  # what docker sends differs from the commit (``changes``)
    reason: str = ""  # why there is no sha
    #: why the tree is dirty: ``(path, note)`` for each file docker sends (or would send from a
    #: checkout of the commit) that differs, paths relative to the top level, sorted; note ""
    #: (content), ``mode A -> B``, ``missing``, ``not in the commit`` (gitfacts.compare)
    changes: tuple[tuple[str, str], ...] = ()
    shallow: bool = False  # a shallow clone (``git rev-parse --is-shallow-repository``)
    given: bool = False  # sha is --git-commit's (a tree without .git): nothing was compared
    #: files docker sends from outside the work tree (absolute): not compared with the commit
    outside: tuple[str, ...] = ()
    toplevel: str = ""  # the work tree's top level, as git names it

    def describe_changes(self, limit: int = 5) -> str:
        """``a.py, new.txt (not in the commit), and 3 more``: the files that make the tree dirty."""
        shown = [
            f"{shown_path(path)} ({note})" if note else shown_path(path)
            for path, note in self.changes[:limit]
        ]
        more = len(self.changes) - limit
        return ", ".join(shown) + (f", and {more} more" if more > 0 else "")

    @property
    def tag(self) -> Optional[str]:
        if not self.sha:
            return None
        return f"git-{self.sha}-dirty" if self.dirty else f"git-{self.sha}"

    @property
    def commit(self) -> str:
        """GIT_COMMIT as the image reports it: a dirty build says so."""
        if not self.sha:
            return "unknown"
        return f"{self.sha}-dirty" if self.dirty else self.sha


#: Git speaks English to ragbuild: its reasons are quoted to the user as they are. No answer is
#: told apart by its words: "no repository" is gitfacts.discover's (git's discovery, copied).
GIT_ENV = (("LC_ALL", "C"), ("LANGUAGE", ""))


#: GitInfo.reason of a repository before its first commit (``# branch.oid (initial)``).
NO_COMMITS = "the git repository has no commits"


#: The fix for --latest-policy auto in a clone without its history or tags.
FETCH_TAGS_FIX = (
    "run `git fetch --tags --unshallow` (GitHub Actions: actions/checkout with `fetch-depth: 0`)"
)


class GitUnreadable(Exception):
    """Git failed or answered incompletely: ``str()`` is git's own reason (git.git_info raises the
    user's error from it)."""


def git_repository_command() -> Command:
    """Whether the working directory is in a work tree, its top level, whether the clone is
    shallow, HEAD's commit and its short form (as bash's ``git rev-parse --short``: 7 hex
    digits, longer when needed to stay unique): five answers of one read-only ``git rev-parse``.
    It fails before the first commit as when git cannot read the repository;
    ``git_status_command`` tells the two apart."""
    return Command(
        (
            "git",
            "rev-parse",
            "--is-inside-work-tree",
            "--show-toplevel",
            "--is-shallow-repository",
            "HEAD^{commit}",
            "--short=7",
            "HEAD^{commit}",
        ),
        env=GIT_ENV,
        check=False,
        kind=Kind.QUERY,
    )


def git_tree_command(oid: str, directory: Optional[str] = None) -> Command:
    """Every file of commit ``oid``: mode, blob and path (``gitfacts.parse_ls_tree``), from the
    top. ``directory``: a submodule's work tree (``git -C``)."""
    where = ("-C", directory) if directory else ()
    return Command(
        ("git", *where, "ls-tree", "-r", "-z", "--full-tree", oid),
        env=GIT_ENV,
        check=False,
        kind=Kind.QUERY,
    )


def git_hash_command(directory: Optional[str] = None) -> Command:
    """The blob id git would store for each file named on stdin (one a line, relative to the
    top level, ``gitfacts.c_quote``d), git's filters applied as for that path: one process for
    all. ``directory``: a submodule's work tree (``git -C``)."""
    where = ("-C", directory) if directory else ()
    return Command(
        ("git", *where, "hash-object", "--stdin-paths"),
        env=GIT_ENV,
        check=False,
        kind=Kind.QUERY,
        stdin="the sent files' paths",
    )


def git_status_command() -> Command:
    """Asked only when ``git_repository_command`` failed: HEAD's commit (``# branch.oid``,
    ``(initial)`` before the first commit), or git's reason why it cannot say;
    ``--no-optional-locks``: a query takes no index lock."""
    return Command(
        (
            "git",
            "--no-optional-locks",
            "status",
            "--porcelain=v2",
            "--branch",
            "-z",
            "--untracked-files=no",
        ),
        env=GIT_ENV,
        check=False,
        kind=Kind.QUERY,
    )


def git_reason(returncode: int, stderr: str) -> str:
    """Git's own reason for a failure, one line: its ``fatal:``/``error:`` line and the advice
    lines after it (``git config --global --add safe.directory ...``), else its first line,
    else the exit status."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    first = next((i for i, line in enumerate(lines) if line.startswith(("fatal:", "error:"))), None)
    if first is None:
        return (lines or [f"exit {returncode}"])[0]
    advice = [line for line in lines[first + 1 :] if not line.startswith(("fatal:", "error:"))]
    return " ".join([lines[first], *advice])


def parse_git_repository(stdout: str) -> tuple[str, bool, str, str]:
    """``(top level, shallow, oid, short sha)`` of a successful ``git_repository_command``.
    Raises ``GitUnreadable`` for an incomplete answer."""
    answers = stdout.splitlines()
    if (
        len(answers) != 5
        or answers[0] != "true"
        or answers[2] not in ("true", "false")
        or not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", answers[3])
        or not re.fullmatch(r"[0-9a-f]{7,64}", answers[4])
        or not answers[3].startswith(answers[4])
    ):
        raise GitUnreadable(f"git rev-parse gave an incomplete answer: {stdout.strip()!r}")
    return answers[1], answers[2] == "true", answers[3], answers[4]


def check_git_commit(value: str) -> str:
    """--git-commit's sha: 7 to 64 hex digits; a full one (40 or 64) is named by its first 7, as
    ``git rev-parse --short=7`` names it in a clone (UsageError otherwise)."""
    sha = value.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{7,64}", sha):
        raise UsageError(
            f"--git-commit {value!r} is not a commit id: give the 7 to 40 hex "
            "digits `git rev-parse HEAD` prints in the clone the tree came from"
        )
    return sha[:7] if len(sha) in (40, 64) else sha


def parse_git_status(
    stdout: str,
) -> tuple[Optional[str], tuple[str, ...], tuple[str, ...]]:
    """``(oid or None, changed, untracked)`` of ``git_status_command``: oid None before the first
    commit; ``changed`` the tracked paths with changes (staged, unstaged, unmerged, renamed),
    ``untracked`` the untracked files; paths relative to the top level, as git prints them.
    Format: https://git-scm.com/docs/git-status#_porcelain_format_version_2"""
    oid, changed, untracked = "", [], []
    records = stdout.split("\0")
    i = 0
    while i < len(records):
        record = records[i]
        i += 1
        if record.startswith("# branch.oid "):
            oid = record[len("# branch.oid ") :]
        elif record.startswith("1 "):
            changed.append(record.split(" ", 8)[8])
        elif record.startswith("2 "):
            changed.append(record.split(" ", 9)[9])
            i += 1  # the rename's original path follows in its own record
        elif record.startswith("u "):
            changed.append(record.split(" ", 10)[10])
        elif record.startswith("? "):
            untracked.append(record[2:])
    if not oid:
        raise GitUnreadable("git status gave no branch.oid")
    return (None if oid == "(initial)" else oid), tuple(changed), tuple(untracked)


def version_tags_command() -> Command:
    """The repository's ``v*`` tags, for --latest-policy auto (the one extra git call)."""
    return Command(("git", "tag", "--list", "v*"), check=False, kind=Kind.QUERY)


def parse_version_tags(stdout: str) -> tuple[tuple[str, semver.Version], ...]:
    """The ``v*`` tags of ``git tag --list 'v*'`` that are semver, as ``(tag, Version)``.

    The one place the tags need semver themselves (--latest-policy auto), so imported here."""
    import semver

    found = []
    for line in stdout.splitlines():
        name = line.strip()
        if not name.startswith("v"):
            continue
        try:
            found.append((name, semver.Version.parse(name[1:])))
        except ValueError:
            continue  # v1.0, vNext, ...: not version tags
    return tuple(found)


#: How a release (``--env prod`` or ``--push``) that git cannot name the commit of stops.
RELEASE_NEEDS_GIT = (
    "a release (--env prod or --push) is built from a commit git names; the run "
    "stops before docker rather than tag the image without it"
)


def is_release(options: Options) -> bool:
    """A run whose image is a release: ``--env prod`` or ``--push``."""
    return options.env == "prod" or options.push


def git_info(
    runner: Runner, options: Optional[Options] = None, environ: Mapping[str, str] = os.environ
) -> GitInfo:
    """The commit the build is made from, and whether what docker sends differs from it.

    First git's own discovery, copied (``gitfacts.discover``): no ``.git`` (and no GIT_DIR)
    is the one "not a repository", a warning, or for a release (``is_release``) a stop
    (``GitFailed``) unless ``--git-commit`` names the commit of a tree without .git. Then three
    read-only git queries: ``git rev-parse`` (top level, shallow, HEAD and its short sha),
    ``git ls-tree`` (the commit's files) and ``git hash-object --stdin-paths`` (the sent files'
    blobs as git would store them), compared by ``gitfacts.compare``; each submodule checked
    out in the context is compared with the commit the superproject records, in its own
    repository. A failing rev-parse asks ``git status`` whether there are no commits yet (a
    warning; a stop for a release) or why git cannot read the repository: that, any other failure, an incomplete
    answer raises ``GitFailed`` with git's reason. No git installed: a warning, a stop for a
    release. Files docker sends from outside git's work tree (a ``--context`` or ``-f``
    elsewhere) are not compared: ``GitInfo.outside`` (the pipeline warns)."""
    from ragbuild import gitfacts

    options = options or Options()
    release = is_release(options)
    found = gitfacts.discover(os.getcwd(), environ)
    if options.git_commit is not None:
        sha = check_git_commit(options.git_commit)
        if found is not None:
            raise UsageError(
                f"--git-commit is for a tree without a git repository (an exported "
                f"source tree), and git reads {found} here: drop --git-commit, "
                "git names the commit"
            )
        return GitInfo(sha=sha, given=True)
    if found is None:
        if release:
            raise GitFailed(
                "not a git repository (no .git here or in a parent directory git "
                f"looks in): {RELEASE_NEEDS_GIT}; run it in the project's clone, or "
                "build an exported source tree with --git-commit SHA"
            )
        return GitInfo(reason="not a git repository")
    elsewhere = gitfacts.pointed_elsewhere(os.getcwd(), environ) if release else None
    if elsewhere:
        raise GitFailed(f"{elsewhere}: {RELEASE_NEEDS_GIT} of this checkout; unset it")
    try:
        asked = runner.run(git_repository_command())
        if not asked.ok:
            _no_commits(runner, asked)
            if release:
                raise GitFailed(
                    f"{NO_COMMITS}: {RELEASE_NEEDS_GIT}; commit first, or build an "
                    "exported source tree (no .git) with --git-commit SHA"
                )
            return GitInfo(reason=NO_COMMITS)
        toplevel, shallow, oid, sha = parse_git_repository(asked.stdout)
        from ragbuild.guard import context_rules  # the walk docker will use for this build

        rules = context_rules(runner, options)
        sent = gitfacts.sent_files(toplevel, options.context, options.file, rules)
        changes = _changes(runner, toplevel, oid, sent.files, sent.sends, "")
    except ToolMissing as missing:
        if release:
            raise GitFailed(f"{missing}: {RELEASE_NEEDS_GIT}") from None
        return GitInfo(reason="git is not installed")
    except GitUnreadable as err:
        raise GitFailed(
            f"git cannot say which commit this build is made from: {err}; the run "
            "stops before docker rather than tag the image without it"
        ) from None
    return GitInfo(
        sha=sha,
        dirty=bool(changes),
        changes=tuple(changes),
        shallow=shallow,
        outside=tuple(sent.outside),
        toplevel=toplevel,
    )


def _no_commits(runner: Runner, asked: Result) -> None:
    """After ``git rev-parse`` failed: returns when ``git status`` says HEAD has no commit yet,
    else ``GitUnreadable`` with git's reason (status's own, or rev-parse's)."""

    status = runner.run(git_status_command())
    if not status.ok:
        raise GitUnreadable(git_reason(status.returncode, status.stderr))
    oid, _, _ = parse_git_status(status.stdout)
    if oid is not None:
        raise GitUnreadable(git_reason(asked.returncode, asked.stderr))


def _changes(
    runner: Runner,
    toplevel: str,
    oid: str,
    files: Mapping[str, Entry],
    sends: Callable[[str], bool],
    prefix: str,
) -> list[tuple[str, str]]:
    """``gitfacts.compare`` of the ``files`` docker sends (below ``toplevel``, the work tree of
    the repository holding commit ``oid``) with that commit; each submodule of the commit with
    files sent, or checked out (a ``.git`` in it), likewise in its own repository. Paths in
    the answer are relative to the top superproject (``prefix``: this one's place in it)."""
    from ragbuild import gitfacts
    from ragbuild.run.command import Secret

    directory = toplevel if prefix else None  # a submodule: git -C its work tree
    listed = runner.run(git_tree_command(oid, directory))
    if not listed.ok:
        raise GitUnreadable(git_reason(listed.returncode, listed.stderr))
    try:
        tree = gitfacts.parse_ls_tree(listed.stdout)
    except ValueError as err:
        raise GitUnreadable(str(err)) from None
    links = {path: entry for path, entry in tree.items() if entry.mode == gitfacts.GITLINK}
    inner = {
        link: {path[len(link) + 1 :]: files[path] for path in gitfacts.under(files, link)}
        for link in links
    }
    files = {
        path: entry
        for path, entry in files.items()
        if not any(path.startswith(link + "/") for link in links)
    }
    length = len(oid)
    for path, entry in list(files.items()):
        if entry.mode == gitfacts.SYMLINK:
            target = os.fsencode(os.readlink(entry.path))
            files[path] = replace(entry, oid=gitfacts.blob_id(target, length))
    hashed = [
        path
        for path, entry in files.items()
        if entry.mode in (gitfacts.FILE, gitfacts.EXECUTABLE) and path in tree
    ]
    if hashed:
        stdin = "".join(gitfacts.c_quote(path) + "\n" for path in hashed)
        answer = runner.run(git_hash_command(directory), stdin=Secret(stdin))
        oids = answer.stdout.split()
        if not answer.ok or len(oids) != len(hashed):
            raise GitUnreadable(
                git_reason(answer.returncode, answer.stderr)
                if not answer.ok
                else f"git hash-object gave {len(oids)} ids for {len(hashed)} files"
            )
        for path, blob in zip(hashed, oids):
            files[path] = replace(files[path], oid=blob)

    def raw_id(path: str) -> Optional[str]:
        if files[path].mode not in (gitfacts.FILE, gitfacts.EXECUTABLE):
            return None
        try:
            with open(files[path].path, "rb") as handle:
                return gitfacts.blob_id(handle.read(), length)
        except OSError:
            return None

    changes = [(prefix + path, note) for path, note in gitfacts.compare(tree, files, sends, raw_id)]
    for link, entry in links.items():
        below = inner[link]
        checkout = os.path.join(toplevel, link)
        if not below and not os.path.lexists(os.path.join(checkout, ".git")):
            continue  # not checked out: a checkout without --recurse-submodules leaves it so
        if not os.path.lexists(os.path.join(checkout, ".git")):
            changes += [
                (f"{prefix}{link}/{path}", gitfacts.NOT_IN_COMMIT) for path in sorted(below)
            ]
            continue
        changes += _changes(
            runner, checkout, entry.oid, below, _below(sends, link), f"{prefix}{link}/"
        )
    return changes


def _below(sends: Callable[[str], bool], link: str) -> Callable[[str], bool]:
    """``sends`` for paths relative to the submodule at ``link``."""
    return lambda path: sends(f"{link}/{path}")


def version_tags(runner: Runner, git: Optional[GitInfo]) -> tuple[tuple[str, semver.Version], ...]:
    """The ``v*`` version tags --latest-policy auto compares with. It cannot decide without
    them: outside a repository, in a shallow clone (CI's default checkout) or with no version
    tag fetched it stops (``UsageError``, exit 2) naming the fix; a failing git stops with git's
    reason (``GitFailed``)."""

    fix = (
        f"{FETCH_TAGS_FIX}; for the very first release pass --latest-policy always (or --no-latest)"
    )
    if git is not None and git.sha is None and git.reason != NO_COMMITS:
        raise UsageError(
            f"--latest-policy auto compares the version with the repository's v* "
            f"git tags, and there are none to read ({git.reason}): run it in the "
            "project's git clone, or pass --latest-policy always or never"
        )
    if git is not None and git.shallow:
        raise UsageError(
            "--latest-policy auto cannot decide in a shallow clone: the v* tags of "
            f"the history it lacks are missing; {FETCH_TAGS_FIX}"
        )
    try:
        result = runner.run(version_tags_command())
    except ToolMissing as missing:
        raise UsageError(f"--latest-policy auto reads the v* git tags: {missing}") from None
    if not result.ok:
        raise GitFailed(
            f"git cannot list the v* tags --latest-policy auto compares with: "
            f"{git_reason(result.returncode, result.stderr)}"
        )
    found = parse_version_tags(result.stdout)
    if not found:
        raise UsageError(
            f"--latest-policy auto found no v* version tag to compare with (none fetched?): {fix}"
        )
    return found
