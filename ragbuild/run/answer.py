"""The answer files commands write (``--metadata-file``, ``--iidfile``): the directory made way for
before the command runs, as safely as ssh-agent and tmux make theirs, and the text read and
removed once it ended."""

from __future__ import annotations

import os
import stat

from ragbuild.errors import RagbuildError


def _remove(path: str) -> None:
    """Remove a command's answer file if it is there. One that cannot be removed is left: the
    command replaces it with its answer or fails writing it, and its own failure says so."""
    try:
        os.unlink(path)
    except OSError:
        pass


def read_answer(path: str) -> str:
    """The text a command wrote to its answer file ("" when it wrote none), then the file is
    removed: it was this run's only."""
    try:
        with open(path, encoding="utf-8", errors="replace") as answer:
            text = answer.read()
    except OSError:
        text = ""
    _remove(path)
    return text


def make_way(path: str) -> None:
    """Before a command writes its answer to ``path``: the directory it goes in is the user's
    own, which no one else may write in (made with mode 0700 when missing, as ssh-agent and tmux
    make theirs in /tmp), and no earlier answer is there. A file in a directory that others can
    write in could be put there, or replaced, by them between the command's write and our read.
    RagbuildError (nothing started) for a directory that is not so."""
    directory = os.path.dirname(path) or "."
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    except OSError as err:
        raise RagbuildError(
            f"cannot make {directory}, where docker writes what it pushed: "
            f"{err.strerror}; set TMPDIR to a directory of yours"
        ) from None
    check_answer_directory(directory)
    _remove(path)


def check_answer_directory(directory: str) -> None:
    """RagbuildError when ``directory`` (which is there: FileNotFoundError when not) is not a
    directory of the user's own that no one else may use (``make_way``)."""
    found = os.lstat(directory)
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid() or found.st_mode & 0o077:
        raise RagbuildError(
            f"{directory}, where docker writes what it pushed, is not a directory "
            "of yours that only you can use (mode 0700): remove it, or set TMPDIR "
            "to a directory of yours"
        )
