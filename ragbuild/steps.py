"""The build's steps: gather facts, check before the build, build, summarise. Each step hands
plan commands to the runner."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Optional

from ragbuild.errors import CommandFailed, DockerUnavailable, ToolMissing, UsageError
from ragbuild.plan import (BuildPlan, Command, GitInfo, Options, build_command, buildx_version_command,
                           git_describe_command, human_size, inspect_command, parse_git_describe,
                           version_tags_command)
from ragbuild.reference import familiar
from ragbuild.output import SUCCESS
from ragbuild.runner import ended, resolve

#: What docker says when it cannot reach its daemon (``docker version``, ``docker push``, ...),
#: lowercase. Nothing about a registry: "connection refused" from a push is the registry's.
DAEMON_DOWN_MARKERS = ("cannot connect to the docker daemon", "is the docker daemon running",
                       "error during connect")


def daemon_unreachable(target) -> str:
    """The one message for a daemon docker cannot reach (``target``: builders.DockerTarget)."""
    where = f" {target.unreachable()}" if target is not None else ""
    return (f"cannot reach the Docker daemon{where}: start it (e.g. `systemctl start docker`, or "
            "`make engine` as root on Debian or Ubuntu) or point DOCKER_HOST or DOCKER_CONTEXT "
            "at a running one")


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
    if options.metadata_file is not None:
        from ragbuild.metadata import check_path

        check_path(options.metadata_file)


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
                               current_context=read_docker_config(environ).current_context),
    }


@dataclass(frozen=True)
class DockerConfig:
    """What ragbuild reads from docker's config.json."""

    current_context: Optional[str] = None  # set by ``docker context use``
    cred_helpers: dict = field(default_factory=dict)  # registry -> helper, of ``credHelpers``


def docker_config_path(environ=os.environ) -> str:
    directory = environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(directory, "config.json")


def read_docker_config(environ=os.environ) -> DockerConfig:
    """The one reader of ``$DOCKER_CONFIG/config.json``: a missing, unreadable, non-UTF-8 or
    malformed file, or values of the wrong type, read as nothing set."""
    try:
        with open(docker_config_path(environ), encoding="utf-8") as config:
            data = json.load(config)
    except (OSError, ValueError):  # UnicodeDecodeError is a ValueError
        return DockerConfig()
    if not isinstance(data, dict):
        return DockerConfig()
    context = data.get("currentContext")
    helpers = data.get("credHelpers")
    helpers = helpers if isinstance(helpers, dict) else {}
    return DockerConfig(
        current_context=context if isinstance(context, str) and context else None,
        cred_helpers={host: helper for host, helper in helpers.items()
                      if isinstance(helper, str) and helper})


@dataclass(frozen=True)
class Preflight:
    """What the checks before the build found: the scanner to run, the push to make."""

    scanner: object = None  # scan.Scanner
    pushing: object = None  # push.Pushing


def needs_preflight(plan: BuildPlan) -> bool:
    return bool(plan.options.scan or plan.buildx or plan.options.push)


def preflight(runner, plan: BuildPlan, config) -> Preflight:
    """Everything knowable before the long build, in order: the scanner exists, the client has
    buildx when the build needs it, and the push can go (login, repository). A failed check
    stops the run; a dry run warns and shows the rest (``Runner.stop_or_warn``)."""
    scanner = pushing = None
    if plan.options.scan:
        from ragbuild import scan

        try:
            scanner = scan.prepare(plan, config)
        except ToolMissing as missing:
            if not runner.dry_run:
                raise
            # a dry run warns (once: the runner would too) and shows the scan a real run makes
            scanner = scan.resolve(plan.options.scan_command, config.scan_command,
                                   which=lambda name, path=None: name)
            runner.stop_or_warn(missing, key=resolve(scanner.argv[0]))
    check_buildx(runner, plan)
    if plan.options.push:
        from ragbuild import push

        pushing = push.prepare(runner, plan)
    return Preflight(scanner, pushing)


def check_buildx(runner, plan: BuildPlan) -> None:
    """A build that needs ``docker buildx build`` stops before anything else runs when the
    client has no buildx (exit 1). A dry run prints the check: it cannot know the answer."""
    if not plan.buildx:
        return
    from ragbuild.builders import BUILDX_HINT

    result = runner.run(buildx_version_command())
    if result.dry:
        runner.log("dry run: a real run stops here when `docker buildx version` fails: this build "
                   f"needs docker buildx (for {'; '.join(plan.buildx)})")
        return
    if not result.ok:
        raise DockerUnavailable(f"this build needs docker buildx (for {'; '.join(plan.buildx)}), "
                                f"and this docker client has no buildx: {BUILDX_HINT}")


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
        raise CommandFailed(f"{what} {ended(failure.returncode)}; its output is above{hint}",
                            returncode=failure.returncode) from None


def diagnose(runner, plan: BuildPlan) -> None:
    """After a failed build, tell an unreachable daemon or a client without BuildKit from a
    failing Dockerfile. Runs only on the failure path, so a good build pays nothing for it."""
    result = runner.run(Command(("docker", "version", "--format", "{{.Client.Version}}"),
                                check=False))
    client = result.stdout.strip()
    text = result.stderr.lower()
    if result.returncode != 0 and "permission denied" in text:
        raise DockerUnavailable("no permission to use the Docker daemon's socket: add your user to "
                                "the docker group (then log in again), or run with sudo")
    target = plan.docker
    missing = re.search(r'context "([^"]*)" does not exist', result.stderr)
    if result.returncode != 0 and missing:
        said = f" (the plan said: {target.describe()})" if target is not None else ""
        raise DockerUnavailable(f"docker context {missing[1]!r} does not exist{said}: `docker "
                                "context ls` lists the contexts; fix DOCKER_CONTEXT, or `docker "
                                "context use` an existing one")
    if result.returncode != 0 and any(marker in text for marker in DAEMON_DOWN_MARKERS):
        raise DockerUnavailable(daemon_unreachable(target))
    major = client.split(".")[0]
    if major.isdigit() and int(major) >= 23:
        buildx = runner.run(buildx_version_command())
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
    try:
        info = parse_inspect(result.stdout)
    except ValueError as bad:
        raise CommandFailed(f"cannot read docker image inspect output: {bad}: "
                            f"{_clip(result.stdout)!r}") from None
    runner.log(f"built {info['id']} ({human_size(info['size'])}) with {len(plan.refs)} tags:",
               SUCCESS)
    for ref in plan.refs:
        runner.log(f"  {ref}")
    listed = {familiar(tag) for tag in info["repo_tags"]}
    missing = [ref for ref in plan.refs if familiar(ref) not in listed]
    if missing:
        raise CommandFailed(f"the built image lacks tags {', '.join(missing)}; docker reported "
                            f"{', '.join(info['repo_tags'])}")
    runner.log(f"run it: docker run -p 8080:8080 {plan.primary}")
    return info


def parse_inspect(stdout: str) -> dict:
    """``{{.Id}} {{.Size}} {{json .RepoTags}} {{json .Config.Labels}}`` as a dict; ValueError
    for anything else."""
    parts = stdout.strip().split(" ", 2)
    if len(parts) < 3:
        raise ValueError("expected an id, a size and the tags")
    image_id, size, rest = parts
    if not size.isdigit():
        raise ValueError(f"size {size!r} is not a number")
    repo_tags, end = json.JSONDecoder().raw_decode(rest)  # then the labels' JSON (null: none)
    labels = json.loads(rest[end:]) if rest[end:].strip() else None
    if repo_tags is not None and not (isinstance(repo_tags, list)
                                      and all(isinstance(tag, str) for tag in repo_tags)):
        raise ValueError("the tags are not a list of strings")
    if labels is not None and not isinstance(labels, dict):
        raise ValueError("the labels are not an object")
    return {"id": image_id, "size": int(size), "repo_tags": repo_tags or [], "labels": labels or {}}


def _clip(text: str, limit: int = 200) -> str:
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]
