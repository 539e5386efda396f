"""Constants and helpers shared by the build command's unit tests (fixtures: conftest.py)."""

from __future__ import annotations

import time

#: 2023-12-03 14:30:22 UTC, the instant of the guide's examples (dev-20231203-143022).
EPOCH = "1701613822"
STAMP = "20231203-143022"
SHA = "a1b2c3d"

#: The one git call the build makes.
GIT_DESCRIBE = ["git", "describe", "--always", "--dirty", "--abbrev=7", "--exclude=*"]


def set_tz(monkeypatch, tz: str) -> None:
    """Change the local time zone of this process (conftest's autouse fixture restores it)."""
    monkeypatch.setenv("TZ", tz)
    time.tzset()


def register_git(fp, stdout: str = SHA + "\n", returncode: int = 0, stderr: str = ""):
    return fp.register([fp.program("git"), *GIT_DESCRIBE[1:]], stdout=stdout, stderr=stderr,
                       returncode=returncode)


def docker_calls(fp) -> int:
    return fp.call_count([fp.program("docker"), fp.any()])
