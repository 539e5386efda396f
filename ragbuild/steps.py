"""The build's steps: gather facts, build, summarise. Each step hands plan commands to the runner."""

from __future__ import annotations

import json
import os
from datetime import datetime

from ragbuild.errors import CommandFailed, DockerUnavailable, ToolMissing, UsageError
from ragbuild.plan import (BuildPlan, Command, GitInfo, Options, build_command, git_describe_command,
                           human_size, inspect_command, parse_git_describe)

DAEMON_DOWN_MARKERS = ("cannot connect to the docker daemon", "is the docker daemon running",
                       "error during connect", "connection refused", "no such file or directory")


def clock(environ=os.environ) -> datetime:
    """The build's one instant: SOURCE_DATE_EPOCH when set (reproducible), else now; local time."""
    epoch = environ.get("SOURCE_DATE_EPOCH")
    if epoch is None or epoch == "":
        return datetime.now()
    try:
        return datetime.fromtimestamp(int(epoch))
    except (ValueError, OverflowError, OSError):
        raise UsageError(f"SOURCE_DATE_EPOCH={epoch!r} is not a number of seconds since 1970") from None


def check_paths(options: Options) -> None:
    if not os.path.isdir(options.context):
        raise UsageError(f"build context {options.context!r} is not a directory")
    if not os.path.isfile(options.file):
        raise UsageError(f"Dockerfile {options.file!r} not found (run from the project root, or pass -f)")


def git_info(runner) -> GitInfo:
    try:
        result = runner.run(git_describe_command())
    except ToolMissing:
        return GitInfo(reason="git is not installed")
    return parse_git_describe(result.returncode, result.stdout, result.stderr)


def build(runner, plan: BuildPlan, *, no_attestations: bool = False) -> None:
    try:
        runner.run(build_command(plan, no_attestations=no_attestations))
    except CommandFailed as failure:
        diagnose(runner)
        raise CommandFailed(f"docker build failed (exit {failure.returncode}); its output is above",
                            returncode=failure.returncode) from None


def diagnose(runner) -> None:
    """After a failed build, tell an unreachable daemon or a client without BuildKit from a
    failing Dockerfile. Runs only on the failure path, so a good build pays nothing for it."""
    result = runner.run(Command(("docker", "version", "--format", "{{.Client.Version}}"),
                                check=False, quiet=True))
    client = result.stdout.strip()
    text = result.stderr.lower()
    if result.returncode != 0 and "permission denied" in text:
        raise DockerUnavailable("no permission to use the Docker daemon's socket: add your user to "
                                "the docker group (then log in again), or run with sudo")
    if result.returncode != 0 and any(marker in text for marker in DAEMON_DOWN_MARKERS):
        where = os.environ.get("DOCKER_HOST") or "the local socket"
        raise DockerUnavailable(f"cannot reach the Docker daemon at {where}: start it "
                                "(e.g. `dockerd` or `systemctl start docker`) or set DOCKER_HOST")
    major = client.split(".")[0]
    if major.isdigit() and int(major) >= 23:
        buildx = runner.run(Command(("docker", "buildx", "version"), check=False, quiet=True))
        if buildx.returncode != 0:
            raise DockerUnavailable(f"this docker client ({client}) needs the buildx plugin for "
                                    "BuildKit builds: install buildx (docker-buildx-plugin), or set "
                                    "DOCKER to a client with BuildKit built in (e.g. /usr/bin/docker "
                                    "from Debian's docker.io)")


def summarize(runner, plan: BuildPlan) -> dict:
    """One ``docker image inspect`` gives the id, size and tags (bash ran one per tag)."""
    result = runner.run(inspect_command(plan.primary))
    if result.dry:
        return {}
    image_id, size, repo_tags = result.stdout.strip().split(" ", 2)
    info = {"id": image_id, "size": int(size), "repo_tags": json.loads(repo_tags) or []}
    runner.log(f"built {image_id} ({human_size(info['size'])}) with {len(plan.refs)} tags:")
    for ref in plan.refs:
        runner.log(f"  {ref}")
    missing = [ref for ref in plan.refs if _short(ref) not in info["repo_tags"]]
    if missing:
        raise CommandFailed(f"the built image lacks tags {', '.join(missing)}; docker reported "
                            f"{', '.join(info['repo_tags'])}")
    runner.log(f"run it: docker run -p 8080:8080 {plan.primary}")
    return info


def _short(ref: str) -> str:
    """How docker lists a ref in RepoTags (Docker Hub's prefixes dropped)."""
    for prefix in ("docker.io/library/", "docker.io/"):
        if ref.startswith(prefix):
            return ref[len(prefix):]
    return ref
