"""``ragbuild doctor``: the build guide's troubleshooting as checks, in the order a build meets
them, one line each: ``ok``, ``warning`` or ``problem``, a problem with its exact fix.

It takes the build's own flags (``doctor --env prod --version 1.2.3 --registry URI``) and runs
the build's own checks on them, not copies: ``steps.check_paths``, ``steps.git_info``,
``steps.version_tags``, ``steps.make_plan``, ``steps.check_buildx``, ``steps.diagnose``,
``guard.scan_context``, and the push pre-flight's own steps (``push.check_helper``,
``ecr.authenticate``, ``push.reach_registry``,
``ecr.check_repository``), with their messages. For ECR that includes the login
the pre-flight makes (``aws ecr get-login-password | docker login``). Exit 0 when a build (and,
with a registry, a push) would work, 1 when a check found a problem.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional

from ragbuild import builders, deps, steps
from ragbuild.errors import RagbuildError
from ragbuild.output import ERROR, SUCCESS, WARNING
from ragbuild.plan import (BuildPlan, Command, Config, GitInfo, Kind, Options,
                           buildx_version_command, human_size)
from ragbuild.runner import Runner, missing_message, resolve, tail

OK, WARN, PROBLEM = "ok", "warning", "problem"
LEVELS = {OK: SUCCESS, WARN: WARNING, PROBLEM: ERROR}
FROM_RE = re.compile(r"^\s*FROM\s+(?:--platform=\S+\s+)?(?P<image>\S+)", re.I | re.M)
ARG_RE = re.compile(r"^\s*ARG\s+(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:=(?P<value>\S*))?", re.I | re.M)


@dataclass(frozen=True)
class Finding:
    status: str  # ok | warning | problem
    check: str  # what was checked: "docker daemon"
    detail: str  # what was found; for a problem, with the fix

    def line(self) -> str:
        return f"{self.status:<8} {self.check}: {self.detail}"


@dataclass
class Doctor:
    """The state the checks share, filled as they run (a later check skips what an earlier
    one found missing)."""

    runner: Runner
    options: Options
    config: Config
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    docker_config: Optional[builders.DockerConfig] = None
    git: Optional[GitInfo] = None
    plan: Optional[BuildPlan] = None
    plan_error: Optional[str] = None  # why the plan could not be made
    git_error: Optional[str] = None  # why git could not say which commit (the build stops)
    client: Optional[str] = None  # docker client version
    daemon: bool = False  # the daemon answered
    buildx: bool = False  # docker buildx works

    @property
    def target(self) -> builders.DockerTarget:
        assert self.docker_config is not None
        return builders.docker_target(self.environ, self.docker_config)


def _docker(*argv: str, assume: str = "") -> Command:
    return Command(("docker", *argv), check=False, kind=Kind.PROBE, assume=assume)


# --- the checks, in order ----------------------------------------------------------------------


def check_python(doc: Doctor) -> list:
    version = ".".join(map(str, sys.version_info[:3]))
    missing = deps.missing()
    if sys.version_info < (3, 9):
        return [Finding(PROBLEM, "python", f"Python {version} is too old: ragbuild needs 3.9+; "
                                           "fix: install Python 3.9 or newer, then make venv")]
    if missing:
        return [Finding(PROBLEM, "python", f"Python {version}, missing packages "
                                           f"{', '.join(missing)}; fix: {deps.install_hint()}")]
    return [Finding(OK, "python", f"Python {version} ({sys.executable}); "
                                  f"{', '.join(deps.NEEDED.values())} installed")]


def prepare(doc: Doctor) -> None:
    """The build's facts and plan (steps.gather_facts, steps.make_plan), made before the first
    line so that each check can use them; a failure is the plan check's problem."""
    doc.docker_config = builders.read_docker_config(doc.environ)
    try:
        facts = steps.gather_facts(doc.runner, doc.options, doc.environ)
        doc.git = facts.git
        doc.plan = steps.make_plan(doc.options, doc.config, facts)
    except RagbuildError as err:
        doc.plan_error = str(err)
    if doc.git is None:
        try:
            doc.git = steps.git_info(doc.runner, doc.options)
        except RagbuildError as err:
            doc.git_error = str(err)


def check_docker(doc: Doctor) -> list:
    """The client, then the daemon it reaches (and through which context or host)."""
    program = resolve("docker")
    if not shutil.which(program):
        return [Finding(PROBLEM, "docker client", missing_message("docker", program)),
                Finding(PROBLEM, "docker daemon", "not checked: no docker client")]
    found = []
    client = doc.runner.run(_docker("version", "--format", "{{.Client.Version}}",
                                    assume="<client>"))
    doc.client = client.stdout.strip() or None
    found.append(Finding(OK, "docker client", f"{doc.client or 'unknown version'} "
                                              f"({shutil.which(program)})"))
    server = doc.runner.run(_docker("version", "--format", "{{.Server.Version}}",
                                    assume="<server>"))
    where = doc.target.describe()
    if server.ok and server.stdout.strip():
        doc.daemon = True
        found.append(Finding(OK, "docker daemon", f"{server.stdout.strip()} via {where}"))
        return found
    found.append(Finding(PROBLEM, "docker daemon", _daemon_problem(doc, server.stderr)))
    return found


def _daemon_problem(doc: Doctor, said: str) -> str:
    """The build's own diagnosis (steps.diagnose) when there is a plan, else its message."""
    if doc.plan is not None:
        try:
            steps.diagnose(doc.runner, doc.plan)
        except RagbuildError as err:
            return str(err)
    if builders.daemon_down(said):
        return builders.daemon_unreachable(doc.target)
    return f"`docker version` failed: {tail(said, 3) or 'no output'}"


def check_buildkit(doc: Doctor) -> list:
    """BuildKit: built into the client (Debian's docker.io 20.10) or the buildx plugin (23+),
    and buildx itself when the flags need it (steps.check_buildx)."""
    if doc.client is None:
        return [Finding(PROBLEM, "buildkit", "not checked: no docker client")]
    result = doc.runner.run(buildx_version_command())
    doc.buildx = result.ok
    major = doc.client.split(".")[0]
    needs_plugin = major.isdigit() and int(major) >= 23
    if not doc.buildx and doc.plan is not None and doc.plan.buildx:  # the build's own stop
        try:
            steps.check_buildx(doc.runner, doc.plan)
        except RagbuildError as err:
            return [Finding(PROBLEM, "buildkit", str(err))]
    if doc.buildx:
        plugin = result.stdout.strip().split("\n")[0]
        return [Finding(OK, "buildkit", f"buildx plugin ({plugin})")]
    if needs_plugin:
        return [Finding(PROBLEM, "buildkit", f"docker {doc.client} builds with BuildKit only "
                                             "through the buildx plugin, which is missing; fix: "
                                             f"{builders.BUILDX_HINT}")]
    return [Finding(OK, "buildkit", f"built into docker {doc.client} (DOCKER_BUILDKIT=1 docker "
                                    "build); no buildx plugin, so no --builder, --platform lists "
                                    "or registry cache")]


def check_builders(doc: Doctor) -> list:
    if not doc.buildx:
        return [Finding(OK, "buildx builders", "none (no buildx): the plain docker build is used")]
    result = doc.runner.run(_docker("buildx", "ls"))
    if not result.ok:
        return [Finding(WARN, "buildx builders", f"`docker buildx ls` failed: "
                                                 f"{tail(result.stderr, 1)}")]
    names = [line.split()[0] for line in result.stdout.splitlines()[1:]
             if line.strip() and not line[0].isspace() and not line.startswith(("\\_", " "))]
    wanted = doc.options.builder or doc.environ.get("BUILDX_BUILDER")
    if wanted and wanted not in {name.rstrip("*") for name in names}:
        return [Finding(PROBLEM, "buildx builders", f"builder {wanted!r} does not exist (have: "
                                                    f"{', '.join(names) or 'none'}); fix: docker "
                                                    f"buildx create --name {wanted}, or pass an "
                                                    "existing one with --builder")]
    return [Finding(OK, "buildx builders", ", ".join(names) or "none listed")]


def check_git(doc: Doctor) -> list:
    """The build's git facts (steps.git_info): a repository with commits, clean; shallow; v*
    tags fetched (steps.version_tags, for --latest-policy auto)."""
    git = doc.git
    if git is None:  # git failed: the build stops before docker
        reason = doc.git_error or "git failed"
        fix = _git_fix(reason)
        return [Finding(PROBLEM, "git", f"{reason}{'; fix: ' + fix if fix else ''}")]
    if not git.sha:
        reason = git.reason or "no commit"
        return [Finding(WARN, "git", f"{reason}: the build gets no git-<sha> tag and "
                                     f"GIT_COMMIT=unknown; fix: {_git_fix(reason)}")]
    found = []
    if git.dirty:
        found.append(Finding(WARN, "git", f"commit {git.sha} with uncommitted changes: tagged "
                                          f"git-{git.sha}-dirty; a prod build needs a clean tree "
                                          "or --allow-dirty"))
    else:
        found.append(Finding(OK, "git", f"commit {git.sha}, clean tree"))
    if steps.needs_version_tags(doc.options):
        try:  # the build's own rule: auto cannot decide a release's tags without the v* tags
            tags = steps.version_tags(doc.runner, git)
        except RagbuildError as err:
            found.append(Finding(PROBLEM, "git tags", _one_line(err)))
        else:
            found.append(Finding(OK, "git tags", f"{len(tags)} v* tag(s) for --latest-policy auto"))
    else:
        found.append(Finding(OK, "git tags", "a shallow clone (--latest-policy auto would need: "
                                             "git fetch --tags --unshallow)" if git.shallow
                             else "full history"))
    return found


def _git_fix(reason: str) -> str:
    """The command that fixes what git said, where there is one."""
    if "dubious ownership" in reason or "safe.directory" in reason:
        return f"git config --global --add safe.directory {os.path.abspath('.')}"
    if "not a git repository" in reason:
        return "git init && git add -A && git commit -m 'initial'"
    if "not installed" in reason:
        return "apt-get install git"
    if "no commits" in reason.lower() or "no commit" in reason.lower():
        return "git add -A && git commit"
    return ""


def check_plan(doc: Doctor) -> list:
    """The build's own checks of the flags, the paths and the plan (see prepare)."""
    if doc.plan is None:
        if doc.plan_error is not None and doc.plan_error == doc.git_error:
            return [Finding(PROBLEM, "plan", "not made: git failed (above)")]
        return [Finding(PROBLEM, "plan", doc.plan_error or "no plan")]
    return [Finding(OK, "plan", f"--env {doc.plan.env}: {len(doc.plan.refs)} tags, first "
                                f"{doc.plan.primary}")]


def check_context(doc: Doctor) -> list:
    """The Dockerfile, then the build context after .dockerignore (guard.scan_context, the
    build's context check): its size, likely secrets."""
    from ragbuild import guard

    options = doc.options
    try:
        steps.check_paths(options, doc.environ)
        report = guard.scan_context(options.context, options.file)
    except RagbuildError as err:
        return [Finding(PROBLEM, "dockerfile and context", str(err))]
    applied = f"after {report.ignore_file}" if report.ignore_file else "no .dockerignore"
    detail = (f"{options.file}; context {options.context}: {report.files} files, "
              f"{human_size(report.bytes)} ({applied})")
    found = []
    limit = options.context_warn_mb
    if limit and report.bytes > limit * 1e6:
        largest = ", ".join(f"{name} {human_size(size)}" for name, size, _ in report.largest(3))
        found.append(Finding(WARN, "dockerfile and context", f"{detail}: more than {limit:g}MB "
                                                             f"(largest: {largest}); fix: add "
                                                             "what the image does not need to "
                                                             ".dockerignore"))
    if report.secrets:
        listed = ", ".join(f"{path} ({why})" for path, why in report.secrets)
        ignore = report.ignore_file or os.path.join(options.context, ".dockerignore")
        status = WARN if options.allow_secrets else PROBLEM
        found.append(Finding(status, "dockerfile and context", f"likely secrets in the context: "
                                                               f"{listed}; fix: add them to "
                                                               f"{ignore}"))
    return found or [Finding(OK, "dockerfile and context", detail)]


def check_registry(doc: Doctor) -> list:
    """The push pre-flight's own steps (push.prepare's), each its own line: the credential
    helper docker resolves for the host is installed (push.check_helper); ECR: the aws CLI, the
    login with the region from the host (ecr.authenticate); the registry answers and accepts
    docker's credentials, over what the daemon would use (push.reach_registry: the daemon's
    proxy settings from docker info, access.check, and the daemon's registry configuration only
    when verified HTTPS fails for a host that is not loopback);
    ECR: the repository and its tag mutability (ecr.check_repository); with --push and
    --version, that the version tags are new (push.read_existing, push.check_version_tags)."""
    from ragbuild import access, ecr, push

    plan = doc.plan
    registry = plan.registry if plan is not None else None
    if registry is None:
        given = doc.options.registry
        if given:
            return [Finding(PROBLEM, "registry", f"{given} not checked: the plan failed above")]
        return [Finding(OK, "registry", "none given (--registry or ECR_REGISTRY_URI): a build "
                                        "without --push needs none")]
    assert plan is not None and doc.docker_config is not None
    creds = doc.docker_config.credentials(registry.host)
    try:
        push.check_helper(doc.runner, creds, doc.environ)
    except RagbuildError as err:
        return [Finding(PROBLEM, "registry credentials", _one_line(err))]
    found = [Finding(OK, "registry credentials", creds.describe())]
    logged_in = None
    if registry.is_ecr:
        aws = resolve("aws")
        if not shutil.which(aws):
            return found + [Finding(PROBLEM, "ECR credentials",
                                    f"{aws} not found: {ecr.AWS_INSTALL_HINT}")]
        try:
            logged_in = ecr.authenticate(doc.runner, registry, creds, doc.environ)
        except RagbuildError as err:
            return found + [Finding(PROBLEM, "ECR credentials", _one_line(err))]
        how = creds.describe() if logged_in is None else "aws ecr get-login-password | docker login"
        found.append(Finding(OK, "ECR credentials", f"valid for region {registry.region} (from "
                                                    f"the host {registry.host}); {how}"))
    if not doc.daemon:
        return found + [Finding(PROBLEM, "registry", "not checked: no docker daemon to say how it "
                                                     "reaches the registry")]
    try:
        login = access.Login("AWS", logged_in) if logged_in is not None else None
        session = push.reach_registry(doc.runner, plan, creds, doc.docker_config, login,
                                      doc.environ)
    except RagbuildError as err:
        return found + [Finding(PROBLEM, "registry", _one_line(err))]
    found.append(Finding(OK, "registry", f"{registry.host} answers ({access.describe(session)}) "
                                         "and accepts docker's credentials"))
    if doc.options.push and plan.version_refs:  # the pre-flight's own rule (push.prepare)
        try:
            before = push.read_existing(doc.runner, plan, session, plan.version_refs)
            push.check_version_tags(doc.runner, plan, before)
        except RagbuildError as err:
            return found + [Finding(PROBLEM, "version tags", _one_line(err))]
        tags = ", ".join(ref.rsplit(":", 1)[1] for ref in plan.version_refs)
        moved = any(before.get(ref) for ref in plan.version_refs)
        found.append(Finding(OK, "version tags", f"{tags}: moved by --replace-version-tags"
                             if moved else f"{tags}: not in the registry yet"))
    if registry.is_ecr:
        try:
            repository = ecr.check_repository(doc.runner, registry, doc.environ)
        except RagbuildError as err:
            return found + [Finding(PROBLEM, "ECR repository", _one_line(err))]
        found.append(Finding(OK, "ECR repository", f"{registry.path} exists, "
                                                   f"{repository.describe()}"))
    return found


def _one_line(err: Exception) -> str:
    """An error's first line, and the last line of the output it quotes (docker's or aws's
    own reason), on one line."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if len(lines) < 2 else f"{lines[0]} {lines[-1]}"


def base_images(dockerfile: str, build_args: Mapping[str, str]) -> list:
    """The images the Dockerfile's FROM lines name, ARG defaults and --build-arg values
    substituted; stage names (``FROM builder``) and ``scratch`` left out."""
    try:
        with open(dockerfile, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError):
        return []
    values = {m["name"]: m["value"] or "" for m in ARG_RE.finditer(text.split("\nFROM", 1)[0])}
    values.update(build_args)
    stages = {m.lower() for m in re.findall(r"^\s*FROM\s+.*\s+AS\s+(\S+)", text, re.I | re.M)}
    images = []
    for match in FROM_RE.finditer(text):
        image = re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: values.get(m[1], ""),
                       match["image"])
        if image and image.lower() not in stages and image != "scratch" and image not in images:
            images.append(image)
    return images


def check_base_image(doc: Doctor) -> list:
    if not doc.daemon:
        return [Finding(PROBLEM, "base image", "not checked: no docker daemon")]
    build_args = dict(doc.plan.build_args) if doc.plan is not None else {}
    found = []
    for image in base_images(doc.options.file, build_args):
        if doc.runner.run(_docker("image", "inspect", "--format", "{{.Id}}", image)).ok:
            found.append(Finding(OK, "base image", f"{image} is available locally"))
            continue
        if doc.buildx and doc.runner.run(_docker("buildx", "imagetools", "inspect", image)).ok:
            found.append(Finding(OK, "base image", f"{image} is not local but can be pulled"))
            continue
        found.append(Finding(PROBLEM, "base image", f"{image} is not local and cannot be pulled; "
                                                    f"fix: docker pull {image} where a registry "
                                                    "answers, or make engine (makes "
                                                    "python:3.11-slim locally)"))
    return found or [Finding(OK, "base image", "none (FROM scratch or stages only)")]


#: The checks, in the issue's order; each returns its findings (one or more lines).
CHECKS: tuple[Callable[[Doctor], list], ...] = (
    check_python, check_docker, check_buildkit, check_builders, check_git, check_plan,
    check_context, check_registry, check_base_image)


def run(doc: Doctor) -> int:
    """Every check, one line per finding on the runner's stdout; 0 when none is a problem, else
    1. A dry run prints the commands the checks would ask and no finding (runner.verdict)."""
    prepare(doc)
    problems = 0
    for check in CHECKS:
        for finding in check(doc):
            problems += finding.status == PROBLEM
            doc.runner.emit(finding.line(), LEVELS[finding.status])
    summary = (f"{problems} problem(s): a build would fail; fix them and run doctor again"
               if problems else "a build" + (" and push" if doc.plan is not None
                                             and doc.plan.registry else "") + " would work")
    return doc.runner.verdict(summary, 1 if problems else 0,
                              asked="doctor runs (and GET /v2/ of a registry)")
