"""Git facts decided from the truth, not from ``git status``: no process starts here (git.py
runs git's answers through these functions; git.py holds the commands too).

* ``discover``: whether there is a repository to ask at all, found as git's own discovery finds
  it (setup.c ``setup_git_directory_gently_1``), so "no repository" is never read from the words
  of an error.
* ``compare``: what ``docker build`` sends (guard.py's walk of the context after its ignore
  file, plus the Dockerfile and its ignore files) against what checking out the commit would
  put there: each file's blob and mode. The blob of a sent file is git's own
  (``git hash-object --stdin-paths``: the clean filters, ``text``/``eol``/``core.autocrlf``,
  LFS), so a checkout's line endings are no change; skip-worktree, assume-unchanged and a
  submodule's ``ignore`` are index and status settings, never read, so they hide nothing.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional
from collections.abc import Iterable, Mapping

if TYPE_CHECKING:  # guard.py is imported where the walk is made
    from ragbuild.guard import ContextRules

#: git's tree entry modes (https://git-scm.com/book/en/v2/Git-Internals-Git-Objects).
FILE, EXECUTABLE, SYMLINK, GITLINK = "100644", "100755", "120000", "160000"
#: what a change to a file is called in the messages
NOT_IN_COMMIT = "not in the commit"
MISSING = "missing"


# --- discovery ---------------------------------------------------------------------------------


def _git_bool(value: str) -> Optional[bool]:
    """git's ``git_parse_maybe_bool`` (config.c): None when it is no boolean."""
    word = value.strip().lower()
    if word in ("true", "yes", "on"):
        return True
    if word in ("false", "no", "off", ""):
        return False
    try:
        return int(word, 0) != 0
    except ValueError:
        return None


def ceilings(environ: Mapping[str, str]) -> list[str]:
    """``GIT_CEILING_DIRECTORIES`` as git reads it (setup.c ``normalize_ceiling_entry``):
    absolute entries only; symlinks resolved, except after an empty entry."""
    found, resolve = [], True
    for entry in environ.get("GIT_CEILING_DIRECTORIES", "").split(os.pathsep):
        if entry == "":
            resolve = False
            continue
        if not os.path.isabs(entry):
            continue
        found.append(os.path.realpath(entry) if resolve else os.path.normpath(entry))
    return found


def _ceiling_offset(path: str, ceiling_dirs: list[str]) -> int:
    """git's ``longest_ancestor_length`` (path.c): the length of the longest ceiling that is a
    proper ancestor of ``path``, else -1."""
    best = -1
    for ceiling in ceiling_dirs:
        length = len(ceiling) - 1 if ceiling.endswith("/") else len(ceiling)
        if path.startswith(ceiling[:length]) and len(path) > length + 1 and path[length] == "/":
            best = max(best, length)
    return best


def _is_git_directory(path: str) -> bool:
    """Whether ``path`` could be a (bare) repository: git's ``is_git_directory`` asks for
    HEAD, objects/ and refs/; this asks no more, so it never says no where git says yes."""
    return (
        os.path.lexists(os.path.join(path, "HEAD"))
        and os.path.isdir(os.path.join(path, "objects"))
        and os.path.isdir(os.path.join(path, "refs"))
    )


def discover(cwd: str, environ: Mapping[str, str]) -> Optional[str]:
    """The repository git run in ``cwd`` (a physical path, as ``getcwd``) would read: ``$GIT_DIR``
    when set, else the first ``.git`` (directory, file or anything else) or bare repository met
    walking up from ``cwd`` within git's limits: not into a ``GIT_CEILING_DIRECTORIES`` entry,
    not across a filesystem boundary unless ``GIT_DISCOVERY_ACROSS_FILESYSTEM``. None: git
    finds nothing to read, the one case that is "no repository at all". Git skips a ``.git``
    directory that is no repository and looks further up; this stops at it (git's answer then
    decides), so it says "no repository" only where git finds none."""
    if "GIT_DIR" in environ:
        return environ["GIT_DIR"] or "."
    across = _git_bool(environ.get("GIT_DISCOVERY_ACROSS_FILESYSTEM", "false"))
    one_filesystem = across is False
    directory = cwd
    ceiling = _ceiling_offset(directory, ceilings(environ))
    min_offset = 1  # the root "/"
    if ceiling < 0:
        ceiling = min_offset - 2
    try:
        device = os.stat(directory).st_dev
    except OSError:
        return directory  # git cannot even stat it: let git say why
    while True:
        dotgit = os.path.join(directory, ".git")
        try:
            os.lstat(dotgit)
            return dotgit
        except FileNotFoundError:
            pass
        except OSError:
            return dotgit  # cannot tell (permission denied): let git say
        if _is_git_directory(directory):
            return directory
        if len(directory) <= min_offset:
            return None
        offset = directory.rfind("/")
        if offset <= ceiling:
            return None
        directory = directory[:offset] if offset > min_offset else directory[:min_offset]
        if one_filesystem:
            try:
                if os.stat(directory).st_dev != device:
                    return None
            except OSError:
                return directory


def _git_dir_of(dotgit: str) -> str:
    """The repository a ``.git`` names: itself, or the ``gitdir:`` of a ``.git`` file (a linked
    worktree, a submodule), relative to the file's directory."""
    if os.path.isfile(dotgit):
        try:
            with open(dotgit, encoding="utf-8", errors="replace") as handle:
                line = handle.readline().strip()
        except OSError:
            return dotgit
        if line.startswith("gitdir:"):
            return os.path.join(os.path.dirname(dotgit), line[len("gitdir:") :].strip())
    return dotgit


def pointed_elsewhere(cwd: str, environ: Mapping[str, str]) -> Optional[str]:
    """Why ``GIT_DIR``/``GIT_WORK_TREE`` make git read another repository or work tree than
    the checkout ``cwd`` is in (its own ``.git``, found without them), or None: they are unset
    or name this checkout (as a git hook sets them)."""
    if "GIT_DIR" not in environ and "GIT_WORK_TREE" not in environ:
        return None
    own = discover(cwd, {k: v for k, v in environ.items() if k not in ("GIT_DIR", "GIT_WORK_TREE")})
    here = f"this checkout's .git is {own}" if own else "there is no .git here"
    if "GIT_DIR" in environ:
        named = os.path.realpath(os.path.join(cwd, environ["GIT_DIR"] or "."))
        if own is None or os.path.realpath(_git_dir_of(own)) != named:
            return f"GIT_DIR={environ['GIT_DIR']} makes git read another repository ({here})"
    if "GIT_WORK_TREE" in environ:
        tree = os.path.realpath(os.path.join(cwd, environ["GIT_WORK_TREE"]))
        if own is None or os.path.realpath(os.path.dirname(own)) != tree:
            return f"GIT_WORK_TREE={environ['GIT_WORK_TREE']} makes git read another work tree ({here})"
    return None


# --- git's answers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One entry of a tree (``git ls-tree``) or of what docker sends: ``mode`` as git writes it
    (``FILE``, ``EXECUTABLE``, ``SYMLINK``, ``GITLINK``, or the stat mode in octal for what git
    cannot hold), ``oid`` the blob's id ("" for a sent file not hashed yet)."""

    mode: str
    oid: str = ""
    path: str = ""  # where the sent file is on disk ("" for a tree entry)


def parse_ls_tree(stdout: str) -> dict[str, Entry]:
    """``{path: Entry}`` of ``git ls-tree -r -z --full-tree``: ``<mode> SP <type> SP <oid> TAB
    <path> NUL`` (https://git-scm.com/docs/git-ls-tree#_output_format). ValueError when an
    entry is not so."""
    entries = {}
    for record in stdout.split("\0"):
        if not record:
            continue
        meta, tab, path = record.partition("\t")
        words = meta.split(" ")
        if not tab or len(words) != 3 or not path:
            raise ValueError(f"git ls-tree gave {record[:80]!r}")
        entries[path] = Entry(words[0], words[2])
    return entries


def c_quote(path: str) -> str:
    """``path`` as a line git's ``--stdin-paths`` reads (``unquote_c_style``): as it is, or in
    double quotes with C escapes when it holds a newline, a backslash or starts with a quote."""
    if "\n" not in path and "\\" not in path and not path.startswith('"'):
        return path
    escaped = "".join(
        {"\n": "\\n", "\\": "\\\\", '"': '\\"', "\t": "\\t"}.get(char, char) for char in path
    )
    return f'"{escaped}"'


def blob_id(data: bytes, length: int) -> str:
    """The id git gives a blob of ``data`` unfiltered: sha1, or sha256 for a repository whose
    ids are ``length`` (64) hex digits long."""
    digest = hashlib.sha256() if length == 64 else hashlib.sha1()
    digest.update(b"blob %d\0" % len(data))
    digest.update(data)
    return digest.hexdigest()


# --- what docker sends -------------------------------------------------------------------------


def _mode(found: os.stat_result) -> str:
    """The mode git would record for a file of this stat (``ce_mode_from_stat``: executable
    when the owner may execute it)."""
    if stat.S_ISLNK(found.st_mode):
        return SYMLINK
    if stat.S_ISREG(found.st_mode):
        return EXECUTABLE if found.st_mode & stat.S_IXUSR else FILE
    return oct(found.st_mode)


def _within(path: str, top: str) -> Optional[str]:
    """``path`` relative to ``top`` (slash-separated), or None when it is not below it."""
    rel = os.path.relpath(path, top)
    if rel == os.pardir or rel.startswith(os.pardir + os.sep) or os.path.isabs(rel):
        return None
    return "" if rel == "." else rel.replace(os.sep, "/")


def _in_git_dir(rel: str) -> bool:
    """A path git can never hold (a ``.git`` component): a clone has its own there too."""
    return ".git" in rel.split("/")


@dataclass
class Sent:
    """What docker sends, relative to the work tree's top: ``files`` ``{path: Entry}``,
    ``outside`` the sent files outside the work tree (never in a commit, absolute), and
    ``sends(path)``: whether docker would send the commit's file at ``path``."""

    files: dict[str, Entry]
    outside: list[str]
    sends: Callable[[str], bool]


def sent_files(
    toplevel: str, context: str, dockerfile: str, rules: Optional[ContextRules] = None
) -> Sent:
    """What ``docker build -f dockerfile context`` reads, by guard.py's walk with ``rules`` (the
    walk the build's client will use: ``guard.context_rules``; buildx's when not given), plus the Dockerfile and its ignore files (``<Dockerfile>.dockerignore``,
    the context's ``.dockerignore``) wherever they are, sent or not. Paths inside ``.git`` are
    left out (a checkout has its own .git). UsageError: an unreadable context or ignore file."""
    from ragbuild.guard import ContextRules, walk_context

    top = os.path.realpath(toplevel)
    root = os.path.realpath(context)
    rules = rules or ContextRules(context, dockerfile)
    files, outside = {}, []
    added = set()

    def add(full: str, found: Optional[os.stat_result] = None) -> None:
        added.add(full)
        rel = _within(full, top)
        if rel is None:
            outside.append(full)
        elif rel and not _in_git_dir(rel):
            files[rel] = Entry(_mode(found or os.lstat(full)), path=full)

    for rel, entry in walk_context(rules):
        add(os.path.join(root, rel), entry.stat(follow_symlinks=False))
    always = {
        os.path.join(os.path.realpath(os.path.dirname(dockerfile) or "."), name)
        for name in (os.path.basename(dockerfile), os.path.basename(dockerfile) + ".dockerignore")
    }
    always.add(os.path.join(root, ".dockerignore"))
    for full in sorted(always):
        if os.path.lexists(full) and full not in added:
            add(full)
    always_rel = {_within(full, top) for full in always}

    def sends(path: str) -> bool:
        if path in always_rel:
            return True
        rel = _within(os.path.join(top, path), root)
        return rel is not None and rel != "" and not _in_git_dir(path) and rules.sends(rel)

    return Sent(files, outside, sends)


# --- the comparison ----------------------------------------------------------------------------


def compare(
    tree: Mapping[str, Entry],
    sent: Mapping[str, Entry],
    sends: Callable[[str], bool],
    raw_id: Callable[[str], Optional[str]],
) -> list[tuple[str, str]]:
    """``[(path, note)]``, sorted by path: how what docker sends (``sent``, blobs as git would
    store them) differs from the commit's ``tree``, for the commit's files docker would send
    (``sends``). Notes: "" (content), ``mode A -> B``, ``MISSING`` (in the commit, not sent:
    deleted, or outside a sparse checkout), ``NOT_IN_COMMIT`` (untracked or gitignored).
    ``raw_id(path)``: the blob id of the sent file's bytes unfiltered, asked only when git's
    filtered id differs: a file committed with CRLF under ``core.autocrlf`` is stored as it is
    (git leaves CRLF that the index already has), which ``hash-object`` does not know.
    Submodules (``GITLINK``) are not compared here (git.py compares each in its own repository)."""
    changes = []
    for path, entry in sent.items():
        committed = tree.get(path)
        if committed is None or committed.mode == GITLINK:
            changes.append((path, NOT_IN_COMMIT))
        elif committed.mode != entry.mode:
            changes.append((path, f"mode {committed.mode} -> {entry.mode}"))
        elif committed.oid != entry.oid and raw_id(path) != committed.oid:
            changes.append((path, ""))
    for path, committed in tree.items():
        if committed.mode != GITLINK and path not in sent and sends(path):
            changes.append((path, MISSING))
    return sorted(changes)


def under(paths: Iterable[str], prefix: str) -> list[str]:
    """The paths below directory ``prefix``."""
    return [path for path in paths if path.startswith(prefix + "/")]
