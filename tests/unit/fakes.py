"""Constants and helpers shared by the build command's unit tests (fixtures: conftest.py)."""

from __future__ import annotations

import os
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

#: How many git processes one build starts (git_info).
GIT_QUERIES = 3

#: The git queries the build makes (plan.git_repository_command, git_status_command,
#: git_short_sha_command), as fp patterns.
GIT_REV_PARSE = ["git", "rev-parse", "--is-inside-work-tree", "--show-toplevel",
                 "--is-shallow-repository"]
GIT_STATUS = ["git", "--no-optional-locks", "status", "--porcelain=v2", "--branch", "-z",
              "--untracked-files=all"]


def git_status_output(oid: str = OID, changed=(), untracked=()) -> str:
    """``git status --porcelain=v2 --branch -z`` as git prints it."""
    records = [f"# branch.oid {oid}", "# branch.head main"]
    records += [f"1 .M N... 100644 100644 100644 {'0' * 40} {'0' * 40} {path}" for path in changed]
    records += [f"? {path}" for path in untracked]
    return "\0".join(records) + "\0"


def register_git(fp, stdout: str = SHA + "\n", returncode: int = 0, stderr: str = "", *,
                 toplevel=None, shallow: bool = False, status=None, oid: str = OID):
    """The three git queries of one build: a clean work tree at ``toplevel`` (default: the
    working directory) with HEAD ``oid``; ``stdout``/``returncode``/``stderr`` are the short
    sha query's answer."""
    top = os.getcwd() if toplevel is None else str(toplevel)
    fp.register([fp.program("git"), *GIT_REV_PARSE[1:]],
                stdout=f"true\n{top}\n{'true' if shallow else 'false'}\n")
    fp.register([fp.program("git"), *GIT_STATUS[1:]],
                stdout=git_status_output(oid) if status is None else status)
    return fp.register([fp.program("git"), "rev-parse", "--verify", "-q", "--short=7",
                        f"{oid}^{{commit}}"], stdout=stdout, stderr=stderr, returncode=returncode)


def docker_calls(fp) -> int:
    return fp.call_count([fp.program("docker"), fp.any()])


#: What the daemon's ``docker info`` says about registries by default (dockerd's defaults).
REGISTRY_CONFIG = '{"IndexConfigs":{"docker.io":{"Name":"docker.io","Secure":true}},' \
                  '"InsecureRegistryCIDRs":["127.0.0.0/8"],"Mirrors":[]}'


def register_registry_config(fp, stdout: str = REGISTRY_CONFIG, program: str = "docker", **kw):
    """The pre-flight's ``docker info --format '{{json .RegistryConfig}}'``."""
    return fp.register([fp.program(program), "info", "--format", "{{json .RegistryConfig}}"],
                       stdout=stdout, **kw)


#: What ``docker info`` says about a daemon without proxy settings (``push.proxy_command``).
NO_PROXY_INFO = '{"HTTPProxy":"","HTTPSProxy":"","NoProxy":""}'


def proxy_info_argv(fp, program: str = "docker") -> list:
    from ragbuild.proxy import INFO_FORMAT

    return [fp.program(program), "info", "--format", INFO_FORMAT]


def register_proxy_info(fp, stdout: str = NO_PROXY_INFO, program: str = "docker", **kw):
    """The pre-flight's ``docker info`` for the daemon's proxy settings (``push.proxy_command``),
    asked before every registry request: by default, no proxy."""
    return fp.register(proxy_info_argv(fp, program), stdout=stdout, **kw)
