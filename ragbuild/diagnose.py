"""Why a container stopped, read from the container before anything removes it or asks it again.

A smoke-test container that dies at once (``serve`` with CRLF line endings: the kernel looks for
the interpreter ``/bin/sh\\r``, and runc reports ``exec /usr/local/bin/serve: no such file or
directory``) has no published port any more, so ``docker port`` fails with "No public port";
the diagnosis is what the container said: its state (``docker inspect``: exit code, OOM kill,
the daemon's error) and its last log lines (``docker logs``), and for an exec failure the first
line of the file it tried to start, copied out of the stopped container (``docker cp NAME:PATH
-``, which works on a stopped container: https://docs.docker.com/reference/cli/docker/container/cp/).

The usual causes, as the Linux kernel reports them through runc (execve(2)): ENOENT ("no such
file or directory") for a missing file or a missing ``#!`` interpreter (a CR at the end of the
``#!`` line makes the interpreter ``/bin/sh\\r``, which does not exist); EACCES ("permission
denied") for a file without the execute bit; ENOEXEC ("exec format error") for a script without
a ``#!`` line or a binary of another CPU architecture.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from dataclasses import dataclass
from typing import Optional

from ragbuild.run.command import Command, Kind
from ragbuild.run.runner import Runner

LOG_LINES = 30
#: runc's message for a failed exec of the container's process (docker 20.10 to 28)
EXEC_FAILED_RE = re.compile(
    r"exec (?P<path>\S+?): (?P<why>no such file or directory|permission "
    r"denied|exec format error)",
    re.I,
)


@dataclass(frozen=True)
class State:
    """``docker inspect --format '{{json .State}}'`` of a container."""

    running: bool = False
    status: str = ""
    exited_with: Optional[int] = None
    oom_killed: bool = False
    error: str = ""  # the daemon's own error for a start that failed

    def describe(self) -> str:
        """``exited (exit 1)``, ``running``, ``exited (exit 137, killed: out of memory)``."""
        if self.running:
            return "running"
        parts = [f"exit {self.exited_with}"] if self.exited_with is not None else []
        if self.oom_killed:
            parts.append("killed: out of memory")
        if self.error:
            parts.append(self.error)
        return f"{self.status or 'not running'}" + (f" ({', '.join(parts)})" if parts else "")


def state_command(name: str) -> Command:
    return Command(
        ("docker", "inspect", "--format", "{{json .State}}", name),
        check=False,
        kind=Kind.PROBE,
        assume=json.dumps({"Status": "running", "Running": True}),
    )


def logs_command(name: str, lines: int = LOG_LINES) -> Command:
    return Command(("docker", "logs", "--tail", str(lines), name), check=False, kind=Kind.PROBE)


def copy_command(name: str, path: str) -> Command:
    """``docker cp NAME:PATH -``: the file as a tar stream on stdout."""
    return Command(("docker", "cp", f"{name}:{path}", "-"), check=False, kind=Kind.PROBE)


def parse_state(text: str) -> State:
    """A ``State`` from ``{{json .State}}``; an empty one for anything else."""
    try:
        data = json.loads(text)
    except ValueError:
        return State()
    if not isinstance(data, dict):
        return State()
    code = data.get("ExitCode")
    return State(
        running=data.get("Running") is True,
        status=str(data.get("Status") or ""),
        exited_with=code if isinstance(code, int) else None,
        oom_killed=data.get("OOMKilled") is True,
        error=str(data.get("Error") or ""),
    )


def first_line_of_tar(text: str) -> Optional[str]:
    """The first line (its line ending kept) of the one file in ``docker cp``'s tar stream, or
    None when it holds none."""
    try:
        with tarfile.open(fileobj=io.BytesIO(text.encode("utf-8", "surrogateescape"))) as tar:
            for member in tar:
                if member.isfile():
                    handle = tar.extractfile(member)
                    data = handle.read(512) if handle is not None else b""
                    return data.split(b"\n", 1)[0].decode("utf-8", "replace")
    except (tarfile.TarError, OSError, EOFError):
        return None
    return None


def exec_hint(said: str, first_line: Optional[str]) -> str:
    """The usual cause of an exec failure runc reported in ``said`` (the logs, or the daemon's
    error), told from the file's ``first_line`` when it could be read (None: not read)."""
    match = EXEC_FAILED_RE.search(said)
    if match is None:
        return ""
    path, why = match["path"], match["why"].lower()
    if why == "permission denied":
        return (
            f"{path} is not executable: set its mode in the image (COPY --chmod=755, or RUN "
            f"chmod 755 {path})"
        )
    if why == "exec format error":
        return (
            f"{path} has no #! line, or is a binary of another CPU architecture: start the "
            "script with e.g. #!/bin/sh, or build for the platform that runs it"
        )
    if first_line is not None and first_line.startswith("#!") and first_line.endswith("\r"):
        return (
            f"{path} has CRLF line endings: its #! line ends in a carriage return, so the "
            f"interpreter {first_line[2:].strip()!r} + CR does not exist (a Windows checkout "
            "with core.autocrlf=true); convert it to LF (.gitattributes: `* text=auto "
            f"eol=lf`, or RUN sed -i 's/\\r$//' {path})"
        )
    if first_line is not None and first_line.startswith("#!"):
        interpreter = first_line[2:].strip().split(" ")[0]
        return (
            f"the interpreter on {path}'s #! line, {interpreter}, is not in the image: "
            "install it, or name one the image has"
        )
    if first_line is not None:
        return f"{path} exists but could not be started (no #! line?)"
    return (
        f"{path} is not in the image, or its #! line names an interpreter the image lacks "
        "or ends in a carriage return (CRLF line endings from a Windows checkout)"
    )


def why_stopped(runner: Runner, name: str, lines: int = LOG_LINES) -> tuple[State, str, str]:
    """``(state, hint, logs)`` of container ``name``, read in that order before anything else
    touches it: its state, its last ``lines`` log lines ("" when it printed none), and for an
    exec failure the first line of the file it tried to start (``exec_hint``)."""
    state = parse_state(runner.run(state_command(name)).stdout)
    logged = runner.run(logs_command(name, lines))
    text = (logged.stdout + logged.stderr).strip() if logged.ok else ""
    said = f"{text}\n{state.error}"
    match = EXEC_FAILED_RE.search(said)
    first_line = None
    if match is not None and match["why"].lower() == "no such file or directory":
        copied = runner.run(copy_command(name, match["path"]))
        first_line = first_line_of_tar(copied.stdout) if copied.ok else None
    return state, exec_hint(said, first_line), text
