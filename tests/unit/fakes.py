"""Constants and helpers shared by the build command's unit tests (fixtures: conftest.py)."""

from __future__ import annotations

import hashlib
import os
import stat
import time

#: 2023-12-03 14:30:22 UTC, the instant of the guide's examples (dev-20231203-143022).
EPOCH = "1701613822"
STAMP = "20231203-143022"
SHA = "a1b2c3d"


def set_tz(monkeypatch, tz: str) -> None:
    """Change the local time zone of this process (conftest's autouse fixture restores it)."""
    monkeypatch.setenv("TZ", tz)
    time.tzset()


#: The image ID a fake ``docker build`` writes to its ``--iidfile`` (conftest's ``fp``): the
#: config digest of the manifest the fake registry serves by default (registry_fakes.MANIFEST),
#: as on the classic image store, where an image's ID is its config's digest.
FAKE_IMAGE_ID = "sha256:" + "11" * 32

#: HEAD's full commit in the fakes (SHA is its abbreviation).
OID = SHA + "e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3"[:33]

#: How many git processes one build starts (git_info): rev-parse, ls-tree, hash-object.
GIT_QUERIES = 3

#: The git queries the build makes (git.git_repository_command, git_tree_command,
#: git_hash_command; git_status_command only when rev-parse failed), as fp patterns.
GIT_REV_PARSE = [
    "git",
    "rev-parse",
    "--is-inside-work-tree",
    "--show-toplevel",
    "--is-shallow-repository",
    "HEAD^{commit}",
    "--short=7",
    "HEAD^{commit}",
]
GIT_STATUS = [
    "git",
    "--no-optional-locks",
    "status",
    "--porcelain=v2",
    "--branch",
    "-z",
    "--untracked-files=no",
]
GIT_HASH = ["git", "hash-object", "--stdin-paths"]


def git_ls_tree(oid: str = OID) -> list:
    return ["git", "ls-tree", "-r", "-z", "--full-tree", oid]


def git_status_output(oid: str = OID, changed=(), untracked=()) -> str:
    """``git status --porcelain=v2 --branch -z`` as git prints it."""
    records = [f"# branch.oid {oid}", "# branch.head main"]
    records += [f"1 .M N... 100644 100644 100644 {'0' * 40} {'0' * 40} {path}" for path in changed]
    records += [f"? {path}" for path in untracked]
    return "\0".join(records) + "\0"


def blob(data: bytes) -> str:
    """The sha1 blob id git gives ``data`` (no filters)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def tree_of(top) -> str:
    """``git ls-tree -r -z --full-tree`` of a commit holding every file now below ``top`` as it
    is (``.git`` left out): the work tree is clean."""
    records = []
    for directory, dirs, files in os.walk(top):
        dirs[:] = [name for name in dirs if name != ".git"]
        for name in files:
            full = os.path.join(directory, name)
            found = os.lstat(full)
            if stat.S_ISLNK(found.st_mode):
                mode, data = "120000", os.fsencode(os.readlink(full))
            else:
                mode = "100755" if found.st_mode & stat.S_IXUSR else "100644"
                with open(full, "rb") as handle:
                    data = handle.read()
            rel = os.path.relpath(full, top).replace(os.sep, "/")
            records.append(f"{mode} blob {blob(data)}\t{rel}\0")
    return "".join(sorted(records, key=lambda record: record.split("\t", 1)[1]))


def hash_paths(top):
    """A ``stdin_callable`` answering ``git hash-object --stdin-paths`` for files below ``top``."""

    def answer(data):
        text = data.decode() if isinstance(data, bytes) else data
        ids = []
        for line in text.splitlines():
            with open(os.path.join(str(top), line), "rb") as handle:
                ids.append(blob(handle.read()))
        return {"stdout": "".join(f"{oid}\n" for oid in ids)}

    return answer


def register_git(
    fp,
    stdout: str = SHA + "\n",
    returncode: int = 0,
    stderr: str = "",
    *,
    toplevel=None,
    shallow: bool = False,
    status=None,
    oid: str = OID,
    tree=None,
):
    """The git queries of one build in a repository at ``toplevel`` (default: the working
    directory, given an empty ``.git`` there for ragbuild's discovery to find) with HEAD ``oid``,
    clean (``tree``: the ls-tree answer, default ``tree_of(toplevel)`` when asked).
    ``stdout`` is the short sha the rev-parse answers; ``returncode``/``stderr`` non-zero: the
    rev-parse fails, and ``git status`` (``status``, default a clean one at ``oid``) is asked
    why."""
    top = os.getcwd() if toplevel is None else str(toplevel)
    if not os.path.lexists(os.path.join(top, ".git")):
        os.mkdir(os.path.join(top, ".git"))
    if not oid.startswith(stdout.strip()):  # the short sha given names the commit
        oid = (stdout.strip() + oid)[: len(oid)]
    answers = f"true\n{top}\n{'true' if shallow else 'false'}\n{oid}\n{stdout}"
    if returncode:
        fp.register(
            [fp.program("git"), *GIT_REV_PARSE[1:]],
            stdout=answers[: answers.index(oid)],
            stderr=stderr,
            returncode=returncode,
        )
        return fp.register(
            [fp.program("git"), *GIT_STATUS[1:]],
            stdout=git_status_output(oid) if status is None else status,
        )
    fp.register([fp.program("git"), *GIT_REV_PARSE[1:]], stdout=answers)
    fp.register(
        [fp.program("git"), *git_ls_tree(oid)[1:]],
        stdout="",
        callback=lambda process: process.stdout.write(
            (tree_of(top) if tree is None else tree).encode()
        ),
    )
    return fp.register([fp.program("git"), *GIT_HASH[1:]], stdin_callable=hash_paths(top))


def docker_calls(fp) -> int:
    return fp.call_count([fp.program("docker"), fp.any()])


#: What the daemon's ``docker info`` says about registries by default (dockerd's defaults).
REGISTRY_CONFIG = (
    '{"IndexConfigs":{"docker.io":{"Name":"docker.io","Secure":true}},'
    '"InsecureRegistryCIDRs":["127.0.0.0/8"],"Mirrors":[]}'
)


from ragbuild.push_preflight import REGISTRY_INFO_FORMAT  # noqa: E402


def register_registry_config(fp, stdout: str = REGISTRY_CONFIG, program: str = "docker", **kw):
    """The pre-flight's ``docker info --format REGISTRY_INFO_FORMAT``."""
    return fp.register(
        [fp.program(program), "info", "--format", REGISTRY_INFO_FORMAT], stdout=stdout, **kw
    )


#: What ``docker info`` says about a daemon without proxy settings (``proxy.proxy_command``).
NO_PROXY_INFO = '{"HTTPProxy":"","HTTPSProxy":"","NoProxy":""}'


def proxy_info_argv(fp, program: str = "docker") -> list:
    from ragbuild.proxy import INFO_FORMAT

    return [fp.program(program), "info", "--format", INFO_FORMAT]


def register_proxy_info(fp, stdout: str = NO_PROXY_INFO, program: str = "docker", **kw):
    """The pre-flight's ``docker info`` for the daemon's proxy settings (``proxy.proxy_command``),
    asked before every registry request: by default, no proxy."""
    return fp.register(proxy_info_argv(fp, program), stdout=stdout, **kw)


# --- shared by many test modules ----------------------------------------------------------------

import io  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from ragbuild import cli  # noqa: E402
from ragbuild.run.runner import Runner  # noqa: E402

#: The checkout's root (the folder with setup.cfg, Makefile, Dockerfile and docs/).
REPO = Path(__file__).resolve().parents[2]


def run_main(argv, capsys):
    """``cli.main(argv)`` and what it printed: (exit code, stdout, stderr)."""
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def tree(root: Path, files: dict) -> Path:
    """Create ``files`` ({relative path: content or size in bytes}) under ``root``."""
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, int):
            path.write_bytes(b"x" * content)
        else:
            path.write_text(content)
    return root


class ClientSays(Runner):
    """A real runner (other commands run), whose ``docker version`` prints ``client`` and counts
    the asks in ``asked``."""

    def __init__(self, client: str):
        super().__init__(log=io.StringIO(), out=io.StringIO())
        self.client, self.asked = client, 0

    def run(self, cmd, **kwargs):
        if cmd.argv[:2] == ("docker", "version"):
            self.asked += 1
            return subprocess.CompletedProcess(cmd.argv, 0, self.client + "\n", "")
        return super().run(cmd, **kwargs)


from datetime import datetime  # noqa: E402

from ragbuild.config import Config, Options  # noqa: E402
from ragbuild.git import GitInfo  # noqa: E402
from ragbuild.plan import make_plan  # noqa: E402

#: The guide's instant as the clock gives it (naive local time; STAMP is its tag form).
MOMENT = datetime(2023, 12, 3, 14, 30, 22)
#: The guide's commit (``git rev-parse --short HEAD`` = SHA).
GIT = GitInfo(sha=SHA)


def plan_for(git=GIT, config=None, moment=MOMENT, **options):
    """The plan of ``Options(**options)``, built without the CLI's parser."""
    return make_plan(Options(**options), config or Config(), git, moment)


import pytest  # noqa: E402

from ragbuild.errors import UsageError  # noqa: E402


def refused(call, *args, **kwargs) -> str:
    """The message of the UsageError ``call(*args, **kwargs)`` raises (fails if it raises none)."""
    with pytest.raises(UsageError) as raised:
        call(*args, **kwargs)
    return str(raised.value)


def in_a_new_python(code: str) -> subprocess.CompletedProcess:
    """``python -c code`` in a fresh interpreter at the checkout's root; fails unless it exits 0."""
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done
