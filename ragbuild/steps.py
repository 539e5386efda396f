"""The build's steps: gather facts, build, summarise. Each step hands plan commands to the runner."""

from __future__ import annotations

import json
import os
import re
from datetime import datetime

from ragbuild.errors import CommandFailed, DockerUnavailable, ToolMissing, UsageError
from ragbuild.plan import (BuildPlan, Command, GitInfo, Options, build_command, buildx_version_command,
                           git_describe_command, human_size, inspect_command, parse_git_describe,
                           version_tags_command)

DAEMON_DOWN_MARKERS = ("cannot connect to the docker daemon", "is the docker daemon running",
                       "error during connect", "connection refused", "no such file or directory")


def clock(environ=os.environ) -> datetime:
    """The build's one instant: SOURCE_DATE_EPOCH when set (reproducible), else now; local time."""
    epoch = environ.get("SOURCE_DATE_EPOCH")
    if epoch is None or epoch == "":
        return datetime.now()
    try:
        if not (epoch.isascii() and epoch.isdigit()):  # int() takes -1, ' 1', '１' and '1_0'
            raise ValueError(epoch)
        return datetime.fromtimestamp(int(epoch))
    except (ValueError, OverflowError, OSError):
        raise UsageError(f"SOURCE_DATE_EPOCH={epoch!r} is not a number of seconds since 1970") from None


def check_paths(options: Options) -> None:
    """The build's paths, before git or docker runs: what docker would refuse after the build
    started is refused here in one line (exit 2)."""
    context, dockerfile = options.context, options.file
    if not os.path.isdir(context):
        what = "it is a file" if os.path.exists(context) else "it does not exist"
        raise UsageError(f"build context {context!r} is not a directory ({what}); pass the "
                         "directory docker sends with --context")
    if not os.access(context, os.R_OK | os.X_OK):
        raise UsageError(f"build context {context!r} cannot be read (permission denied)")
    if os.path.isdir(dockerfile):
        raise UsageError(f"Dockerfile {dockerfile!r} is a directory; pass the file, e.g. "
                         f"-f {os.path.join(dockerfile, 'Dockerfile')}")
    if not os.path.isfile(dockerfile):
        raise UsageError(f"Dockerfile {dockerfile!r} not found (run from the project root, or pass -f)")
    if not os.access(dockerfile, os.R_OK):
        raise UsageError(f"Dockerfile {dockerfile!r} cannot be read (permission denied)")


def git_info(runner) -> GitInfo:
    try:
        result = runner.run(git_describe_command())
    except ToolMissing:
        return GitInfo(reason="git is not installed")
    return parse_git_describe(result.returncode, result.stdout, result.stderr)


def plan_facts(runner, options: Options, environ=os.environ) -> dict:
    """The facts ``make_plan`` takes besides git and the clock: the ``v*`` git tags (one
    read-only git call, for --latest-policy auto only), the CI variables and the docker target."""
    from ragbuild.builders import DockerTarget
    from ragbuild.channels import CI_BUILD_NUMBER_VARS, parse_version_tags

    version_tags = None
    if options.latest_policy == "auto":
        try:
            result = runner.run(version_tags_command())
        except ToolMissing:
            result = None
        if result is None or not result.ok:
            runner.log("warning: cannot list the v* git tags: --latest-policy auto compares "
                       "the version with none")
        version_tags = parse_version_tags(result.stdout) if result is not None and result.ok else ()
    return {
        "version_tags": version_tags,
        "environ": {name: environ[name] for name in CI_BUILD_NUMBER_VARS if name in environ},
        "docker": DockerTarget(host=environ.get("DOCKER_HOST") or None,
                               context=environ.get("DOCKER_CONTEXT") or None,
                               current_context=current_context(environ)),
    }


def current_context(environ=os.environ):
    """``currentContext`` of docker's config.json (set by ``docker context use``), or None."""
    directory = environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    try:
        with open(os.path.join(directory, "config.json"), encoding="utf-8") as config:
            data = json.load(config)
    except (OSError, ValueError):
        return None
    value = data.get("currentContext") if isinstance(data, dict) else None
    return value if isinstance(value, str) and value else None


def check_buildx(runner, plan: BuildPlan) -> None:
    """A build that needs ``docker buildx build`` stops before anything else runs when the
    client has no buildx (exit 1); a dry run only warns."""
    if not plan.buildx:
        return
    from ragbuild.builders import BUILDX_HINT

    try:
        result = runner.run(buildx_version_command())
    except ToolMissing as missing:
        if not runner.dry_run:
            raise
        runner.log(f"warning: {missing} (a real run stops here)")
        return
    if result.ok:
        return
    message = (f"this build needs docker buildx (for {'; '.join(plan.buildx)}), and this docker "
               f"client has no buildx: {BUILDX_HINT}")
    if runner.dry_run:
        runner.log(f"warning: {message} (a real run stops here)")
        return
    raise DockerUnavailable(message)


def build(runner, plan: BuildPlan, *, no_attestations: bool = False, refs=None) -> None:
    """``refs``: what a multi-platform build pushes (the push's refs, immutable ones left out)."""
    try:
        runner.run(build_command(plan, no_attestations=no_attestations, refs=refs))
    except CommandFailed as failure:
        diagnose(runner, plan)
        what = "docker buildx build" if plan.buildx else "docker build"
        hint = ""
        if plan.options.pull:
            hint = ("; with --pull, docker must reach the registry of every FROM image: check "
                    "the network and registry login, or drop --pull to build from the local copy")
        raise CommandFailed(f"{what} failed (exit {failure.returncode}); its output is above{hint}",
                            returncode=failure.returncode) from None


def diagnose(runner, plan: BuildPlan = None) -> None:
    """After a failed build, tell an unreachable daemon or a client without BuildKit from a
    failing Dockerfile. Runs only on the failure path, so a good build pays nothing for it."""
    result = runner.run(Command(("docker", "version", "--format", "{{.Client.Version}}"),
                                check=False, quiet=True))
    client = result.stdout.strip()
    text = result.stderr.lower()
    if result.returncode != 0 and "permission denied" in text:
        raise DockerUnavailable("no permission to use the Docker daemon's socket: add your user to "
                                "the docker group (then log in again), or run with sudo")
    target = plan.docker if plan is not None and plan.docker is not None else None
    if target is None:
        from ragbuild.builders import DockerTarget

        target = DockerTarget(host=os.environ.get("DOCKER_HOST") or None,
                              context=os.environ.get("DOCKER_CONTEXT") or None)
    missing = re.search(r'context "([^"]*)" does not exist', result.stderr)
    if result.returncode != 0 and missing:
        raise DockerUnavailable(f"docker context {missing[1]!r} does not exist (the plan said: "
                                f"{target.describe()}): `docker context ls` lists the contexts; fix "
                                "DOCKER_CONTEXT, or `docker context use` an existing one")
    if result.returncode != 0 and any(marker in text for marker in DAEMON_DOWN_MARKERS):
        raise DockerUnavailable(f"cannot reach the Docker daemon {target.unreachable()}: start it "
                                "(e.g. `dockerd` or `systemctl start docker`) or point DOCKER_HOST "
                                "or DOCKER_CONTEXT at a running one")
    major = client.split(".")[0]
    if major.isdigit() and int(major) >= 23:
        buildx = runner.run(Command(("docker", "buildx", "version"), check=False, quiet=True))
        if buildx.returncode != 0:
            raise DockerUnavailable(f"this docker client ({client}) needs the buildx plugin for "
                                    "BuildKit builds: install buildx (docker-buildx-plugin), or set "
                                    "DOCKER to a client with BuildKit built in (e.g. /usr/bin/docker "
                                    "from Debian's docker.io)")


def summarize(runner, plan: BuildPlan) -> dict:
    """One ``docker image inspect`` gives the id, size, tags and labels (bash ran one per tag)."""
    if plan.multi_platform:
        runner.log(f"built for {', '.join(plan.platforms)} and pushed by the build itself: "
                   "no local image to inspect")
        return {}
    result = runner.run(inspect_command(plan.primary))
    if result.dry:
        return {}
    image_id, size, rest = result.stdout.strip().split(" ", 2)
    repo_tags, end = json.JSONDecoder().raw_decode(rest)  # then the labels' JSON (null: none)
    labels = json.loads(rest[end:]) if rest[end:].strip() else None
    info = {"id": image_id, "size": int(size), "repo_tags": repo_tags or [], "labels": labels or {}}
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
