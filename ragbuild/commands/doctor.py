"""``ragbuild doctor``: the build guide's troubleshooting as checks, in the order a build meets
them, one line each: ``ok``, ``warning`` or ``problem``, a problem with its exact fix.

It takes the build's own flags (``doctor --env prod --version 1.2.3 --registry URI``) and runs
the build's own checks on them, not copies: ``steps.facts.check_paths``, ``git.git_info``,
``git.version_tags``, ``steps.facts.make_plan``, ``steps.preflight.check_buildx``, ``steps.build.diagnose``,
``guard.scan_context``, and the push pre-flight's own steps (``push_preflight.check_helper``,
``ecr.authenticate``, ``push_preflight.reach_registry``,
``ecr.check_repository``), with their messages. For ECR that includes the login
the pre-flight makes (``aws ecr get-login-password | docker login``). Last, what the build
fetches, asked of the engine that runs it, not of the shell's network (``check_engine``, with
probe builds: probe.py): the ``# syntax=`` frontend, every FROM image, the package index
without and with the host's CA. Exit 0 when a build (and, with a registry, a push) would work,
1 when a check found a problem.
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import Callable

from ragbuild import deps, steps
from ragbuild.buildx import BUILDX_HINT, buildx_version_command
from ragbuild.commands import build as build_cli
from ragbuild.commands import args
from ragbuild.commands.args import ArgumentParser
from ragbuild.credentials import docker_credentials
from ragbuild.docker_config import daemon_down, daemon_unreachable, read_docker_config
from ragbuild.errors import RagbuildError
from ragbuild.describe import human_size
from ragbuild.git import git_info, version_tags
from ragbuild.run.runner import missing_message, resolve, tail
from ragbuild.commands.findings import (
    LEVELS,
    OK,
    PROBLEM,
    WARN,
    Doctor,
    Finding,
    _docker,
    _one_line,
)
from ragbuild.commands.doctor_engine import check_engine


# --- the checks, in order ----------------------------------------------------------------------


def check_python(doc: Doctor) -> list[Finding]:
    version = ".".join(map(str, sys.version_info[:3]))
    missing = deps.missing()
    if sys.version_info < (3, 9):  # noqa: UP036 (a source checkout can run on any Python)
        return [
            Finding(
                PROBLEM,
                "python",
                f"Python {version} is too old: ragbuild needs 3.9+; "
                "fix: install Python 3.9 or newer, then make venv",
            )
        ]
    if missing:
        return [
            Finding(
                PROBLEM,
                "python",
                f"Python {version}, missing packages "
                f"{', '.join(missing)}; fix: {deps.install_hint()}",
            )
        ]
    return [
        Finding(
            OK,
            "python",
            f"Python {version} ({sys.executable}); {', '.join(deps.NEEDED.values())} installed",
        )
    ]


def prepare(doc: Doctor) -> None:
    """The build's facts and plan (steps.facts.gather_facts, steps.facts.make_plan), made before the first
    line so that each check can use them; a failure is the plan check's problem."""
    doc.docker_config = read_docker_config(doc.environ)
    try:
        facts = steps.facts.gather_facts(doc.runner, doc.options, doc.environ, doc.config)
        doc.git = facts.git
        doc.plan = steps.facts.make_plan(doc.options, doc.config, facts)
    except RagbuildError as err:
        doc.plan_error = str(err)
    if doc.git is None:
        try:
            doc.git = git_info(doc.runner, doc.options, doc.environ)
        except RagbuildError as err:
            doc.git_error = str(err)


def check_docker(doc: Doctor) -> list[Finding]:
    """The client, then the daemon it reaches (and through which context or host)."""
    program = resolve("docker")
    if not shutil.which(program):
        return [
            Finding(PROBLEM, "docker client", missing_message("docker", program)),
            Finding(PROBLEM, "docker daemon", "not checked: no docker client"),
        ]
    found = []
    client = doc.runner.run(
        _docker("version", "--format", "{{.Client.Version}}", assume="<client>")
    )
    doc.client = client.stdout.strip() or None
    found.append(
        Finding(OK, "docker client", f"{doc.client or 'unknown version'} ({shutil.which(program)})")
    )
    server = doc.runner.run(
        _docker("version", "--format", "{{.Server.Version}}", assume="<server>")
    )
    where = doc.target.describe()
    if server.ok and server.stdout.strip():
        doc.daemon = True
        found.append(Finding(OK, "docker daemon", f"{server.stdout.strip()} via {where}"))
        return found
    found.append(Finding(PROBLEM, "docker daemon", _daemon_problem(doc, server.stderr)))
    return found


def _daemon_problem(doc: Doctor, said: str) -> str:
    """The build's own diagnosis (steps.build.diagnose) when there is a plan, else its message."""
    if doc.plan is not None:
        try:
            steps.build.diagnose(doc.runner, doc.plan)
        except RagbuildError as err:
            return str(err)
    if daemon_down(said):
        return daemon_unreachable(doc.target)
    return f"`docker version` failed: {tail(said, 3) or 'no output'}"


def check_buildkit(doc: Doctor) -> list[Finding]:
    """BuildKit: built into the client (Debian's docker.io 20.10) or the buildx plugin (23+),
    and buildx itself when the flags need it (steps.preflight.check_buildx)."""
    if doc.client is None:
        return [Finding(PROBLEM, "buildkit", "not checked: no docker client")]
    result = doc.runner.run(buildx_version_command())
    doc.buildx = result.ok
    major = doc.client.split(".")[0]
    needs_plugin = major.isdigit() and int(major) >= 23
    if not doc.buildx and doc.plan is not None and doc.plan.buildx:  # the build's own stop
        try:
            steps.preflight.check_buildx(doc.runner, doc.plan)
        except RagbuildError as err:
            return [Finding(PROBLEM, "buildkit", str(err))]
    if doc.buildx:
        doc.buildkit = True
        plugin = result.stdout.strip().split("\n")[0]
        return [Finding(OK, "buildkit", f"buildx plugin ({plugin})")]
    if needs_plugin:
        return [
            Finding(
                PROBLEM,
                "buildkit",
                f"docker {doc.client} builds with BuildKit only "
                "through the buildx plugin, which is missing; fix: "
                f"{BUILDX_HINT}",
            )
        ]
    doc.buildkit = True
    return [
        Finding(
            OK,
            "buildkit",
            f"built into docker {doc.client} (DOCKER_BUILDKIT=1 docker "
            "build); no buildx plugin, so no --builder, --platform lists "
            "or registry cache",
        )
    ]


def check_builders(doc: Doctor) -> list[Finding]:
    if not doc.buildx:
        return [Finding(OK, "buildx builders", "none (no buildx): the plain docker build is used")]
    result = doc.runner.run(_docker("buildx", "ls"))
    if not result.ok:
        return [
            Finding(WARN, "buildx builders", f"`docker buildx ls` failed: {tail(result.stderr, 1)}")
        ]
    names = [
        line.split()[0]
        for line in result.stdout.splitlines()[1:]
        if line.strip() and not line[0].isspace() and not line.startswith(("\\_", " "))
    ]
    wanted = doc.options.builder or doc.environ.get("BUILDX_BUILDER")
    if wanted and wanted not in {name.rstrip("*") for name in names}:
        doc.builder_missing = True
        return [
            Finding(
                PROBLEM,
                "buildx builders",
                f"builder {wanted!r} does not exist (have: "
                f"{', '.join(names) or 'none'}); fix: docker "
                f"buildx create --name {wanted}, or pass an "
                "existing one with --builder",
            )
        ]
    return [Finding(OK, "buildx builders", ", ".join(names) or "none listed")]


def check_git(doc: Doctor) -> list[Finding]:
    """The build's git facts (git.git_info): a repository with commits, clean; shallow; v*
    tags fetched (git.version_tags, for --latest-policy auto)."""
    git = doc.git
    if git is None:  # git failed: the build stops before docker
        reason = doc.git_error or "git failed"
        fix = _unreadable_fix(reason)
        return [Finding(PROBLEM, "git", f"{reason}{'; fix: ' + fix if fix else ''}")]
    if not git.sha:
        reason = git.reason or "no commit"
        return [
            Finding(
                WARN,
                "git",
                f"{reason}: the build gets no git-<sha> tag and "
                f"GIT_COMMIT=unknown; fix: {_git_fix(reason)}",
            )
        ]
    found = []
    if git.dirty:
        found.append(
            Finding(
                WARN,
                "git",
                f"commit {git.sha} with uncommitted changes "
                f"({git.describe_changes()}): tagged "
                f"git-{git.sha}-dirty; a prod build needs a clean tree "
                "or --allow-dirty",
            )
        )
    else:
        found.append(Finding(OK, "git", f"commit {git.sha}, clean tree"))
    if steps.facts.needs_version_tags(doc.options):
        try:  # the build's own rule: auto cannot decide a release's tags without the v* tags
            tags = version_tags(doc.runner, git)
        except RagbuildError as err:
            found.append(Finding(PROBLEM, "git tags", _one_line(err)))
        else:
            found.append(Finding(OK, "git tags", f"{len(tags)} v* tag(s) for --latest-policy auto"))
    else:
        found.append(
            Finding(
                OK,
                "git tags",
                "a shallow clone (--latest-policy auto would need: git fetch --tags --unshallow)"
                if git.shallow
                else "full history",
            )
        )
    return found


def _unreadable_fix(reason: str) -> str:
    """The command that fixes why git could not answer (``GitFailed``), where there is one: a
    hint for the user, never a verdict (that was git's discovery and exit status)."""
    if "dubious ownership" in reason or "safe.directory" in reason:
        return f"git config --global --add safe.directory {os.path.abspath('.')}"
    if "/worktrees/" in reason:
        return (
            f"if the main repository was moved, run `git worktree repair {os.path.abspath('.')}`"
            " in it"
        )
    return ""


def _git_fix(reason: str) -> str:
    """The command that fixes a missing fact (no repository, no git, no commits)."""
    if "not a git repository" in reason:
        return "git init && git add -A && git commit -m 'initial'"
    if "not installed" in reason:
        return "apt-get install git"
    if "no commits" in reason.lower() or "no commit" in reason.lower():
        return "git add -A && git commit"
    return ""


def check_plan(doc: Doctor) -> list[Finding]:
    """The build's own checks of the flags, the paths and the plan (see prepare)."""
    if doc.plan is None:
        if doc.plan_error is not None and doc.plan_error == doc.git_error:
            return [Finding(PROBLEM, "plan", "not made: git failed (above)")]
        return [Finding(PROBLEM, "plan", doc.plan_error or "no plan")]
    return [
        Finding(
            OK, "plan", f"--env {doc.plan.env}: {len(doc.plan.refs)} tags, first {doc.plan.primary}"
        )
    ]


def check_context(doc: Doctor) -> list[Finding]:
    """The Dockerfile, then the build context after .dockerignore (guard.scan_context with
    the walk the build will use, guard.context_rules: the build's context check): its size,
    likely secrets."""
    from ragbuild import guard

    options = doc.options
    try:
        steps.facts.check_paths(options, doc.environ)
        rules = guard.context_rules(doc.runner, options)
        report = guard.scan_context(options.context, options.file, rules)
    except RagbuildError as err:
        return [Finding(PROBLEM, "dockerfile and context", str(err))]
    applied = f"after {report.ignore_file}" if report.ignore_file else "no .dockerignore"
    detail = (
        f"{options.file}; context {options.context}: {report.files} files, "
        f"{human_size(report.bytes)} ({applied})"
    )
    found = []
    limit = options.context_warn_mb
    if limit and report.bytes > limit * 1e6:
        largest = ", ".join(f"{name} {human_size(size)}" for name, size, _ in report.largest(3))
        found.append(
            Finding(
                WARN,
                "dockerfile and context",
                f"{detail}: more than {limit:g}MB "
                f"(largest: {largest}); fix: add "
                "what the image does not need to "
                ".dockerignore",
            )
        )
    if report.secrets:
        listed = ", ".join(f"{path} ({why})" for path, why in report.secrets)
        ignore = report.ignore_file or os.path.join(options.context, ".dockerignore")
        status = WARN if options.allow_secrets else PROBLEM
        found.append(
            Finding(
                status,
                "dockerfile and context",
                f"likely secrets in the context: {listed}; fix: add them to {ignore}",
            )
        )
    return found or [Finding(OK, "dockerfile and context", detail)]


def check_registry(doc: Doctor) -> list[Finding]:
    """The push pre-flight's own steps (push_preflight.prepare's), each its own line: the credential
    helper docker resolves for the host is installed (push_preflight.check_helper); ECR: the aws CLI, the
    login with the region from the host (ecr.authenticate); the registry answers and accepts
    docker's credentials, over what the daemon would use (push_preflight.reach_registry: the daemon's
    proxy settings from docker info, registry.check, and the daemon's registry configuration only
    when verified HTTPS fails for a host that is not loopback);
    ECR: the repository and its tag mutability (ecr.check_repository); with --push and
    --version, that the version tags are new (push_preflight.read_existing, push_preflight.check_version_tags)."""
    from ragbuild import ecr, push_preflight
    from ragbuild.credentials import Login
    from ragbuild.registry import describe

    plan = doc.plan
    registry = plan.registry if plan is not None else None
    if registry is None:
        given = doc.options.registry
        if given:
            return [Finding(PROBLEM, "registry", f"{given} not checked: the plan failed above")]
        return [
            Finding(
                OK,
                "registry",
                "none given (--registry or ECR_REGISTRY_URI): a build without --push needs none",
            )
        ]
    assert plan is not None and doc.docker_config is not None
    creds = docker_credentials(doc.runner, doc.docker_config, registry.host)
    try:
        push_preflight.check_helper(doc.runner, creds, doc.environ)
    except RagbuildError as err:
        return [Finding(PROBLEM, "registry credentials", _one_line(err))]
    found = [Finding(OK, "registry credentials", creds.describe())]
    logged_in = None
    if registry.is_ecr:
        aws = resolve("aws")
        if not shutil.which(aws):
            return found + [
                Finding(PROBLEM, "ECR credentials", f"{aws} not found: {ecr.AWS_INSTALL_HINT}")
            ]
        try:
            logged_in = ecr.authenticate(doc.runner, registry, creds, doc.environ)
        except RagbuildError as err:
            return found + [Finding(PROBLEM, "ECR credentials", _one_line(err))]
        how = creds.describe() if logged_in is None else "aws ecr get-login-password | docker login"
        if logged_in is not None:  # what docker now holds: the login, not the config before it
            creds = push_preflight.after_login(creds)
            found[0] = Finding(
                OK, "registry credentials", f"{creds.describe()} (the ECR login just stored them)"
            )
        found.append(
            Finding(
                OK,
                "ECR credentials",
                f"valid for region {registry.region} (from the host {registry.host}); {how}",
            )
        )
    if not doc.daemon:
        return found + [
            Finding(
                PROBLEM,
                "registry",
                "not checked: no docker daemon to say how it reaches the registry",
            )
        ]
    try:
        login = Login("AWS", logged_in) if logged_in is not None else None
        session = push_preflight.reach_registry(
            doc.runner, plan, creds, doc.docker_config, login, doc.environ
        )
    except RagbuildError as err:
        return found + [Finding(PROBLEM, "registry", _one_line(err))]
    if session.creds != creds:  # the helper failed: docker push sends what it has without it
        found[0] = Finding(
            WARN,
            "registry credentials",
            f"{creds.describe()} fails for {registry.host}; docker push ignores that and "
            f"sends what it has without the helper ({session.creds.describe()})",
        )
    found.append(
        Finding(
            OK,
            "registry",
            f"{registry.host} answers ({describe(session)}) and accepts docker's credentials",
        )
    )
    if doc.options.push and plan.version_refs:  # the pre-flight's own rule (push_preflight.prepare)
        try:
            before = push_preflight.read_existing(doc.runner, plan, session, plan.version_refs)
            push_preflight.check_version_tags(doc.runner, plan, before)
        except RagbuildError as err:
            return found + [Finding(PROBLEM, "version tags", _one_line(err))]
        tags = ", ".join(ref.rsplit(":", 1)[1] for ref in plan.version_refs)
        moved = any(before.get(ref) for ref in plan.version_refs)
        found.append(
            Finding(
                OK,
                "version tags",
                f"{tags}: moved by --replace-version-tags"
                if moved
                else f"{tags}: not in the registry yet",
            )
        )
    if registry.is_ecr:
        try:
            repository = ecr.check_repository(doc.runner, registry, doc.environ)
        except RagbuildError as err:
            return found + [Finding(PROBLEM, "ECR repository", _one_line(err))]
        found.append(
            Finding(
                OK,
                "ECR repository",
                f"{registry.path} exists, {repository.describe()}"
                if repository.checked
                else f"{registry.path}: cannot check (describe-repositories denied); "
                "the push decides",
            )
        )
    return found


#: The checks, in the issue's order; each returns its findings (one or more lines).
CHECKS: tuple[Callable[[Doctor], list[Finding]], ...] = (
    check_python,
    check_docker,
    check_buildkit,
    check_builders,
    check_git,
    check_plan,
    check_context,
    check_registry,
    check_engine,
)


def run(doc: Doctor) -> int:
    """Every check, one line per finding on the runner's stdout; 0 when none is a problem, else
    1. A dry run prints the commands the checks would ask and no finding (runner.verdict)."""
    prepare(doc)
    problems = 0
    for check in CHECKS:
        for finding in check(doc):
            problems += finding.status == PROBLEM
            doc.runner.emit(finding.line(), LEVELS[finding.status])
    summary = (
        f"{problems} problem(s): a build would fail; fix them and run doctor again"
        if problems
        else "a build"
        + (" and push" if doc.plan is not None and doc.plan.registry else "")
        + " would work"
    )
    return doc.runner.verdict(
        summary, 1 if problems else 0, asked="doctor runs (and GET /v2/ of a registry)"
    )


def doctor_parser() -> ArgumentParser:
    parser = build_cli.build_parser()
    parser.prog = f"{args.PROG} doctor"
    parser.usage = (
        f"{args.PROG} doctor [build flags: --env, --registry, -f, --context, --builder ...]"
    )
    parser.description = (
        "Check, in order, what a build with these flags needs, one line each (ok, warning, "
        "problem with its fix): Python and ragbuild's packages; the docker client, the daemon "
        "it reaches (context or host), BuildKit, the buildx builders; git; the plan; the "
        "Dockerfile and the build context (.dockerignore, likely secrets); the registry of "
        "--registry / ECR_REGISTRY_URI (reachable, credentials; ECR: aws CLI, credentials, "
        "region, repository, tag mutability: the push pre-flight's own checks, including its "
        "login); then what the build fetches, asked of the engine that runs it with small "
        "probe builds: the frontend of a `# syntax=` line (or BUILDKIT_SYNTAX), every FROM "
        "image, and the package index from a RUN on the base image, without and with the "
        "host's CA. Exit 0 when a build (and push) would work, 1 otherwise."
    )
    parser.epilog = None
    return parser


def cmd_doctor(argv: list[str]) -> int:
    import io

    from ragbuild.config import load_config
    from ragbuild.run.dry import make_runner

    options = build_cli.parse_build(argv, doctor_parser())
    if options.env is None and options.version is None:  # the build most run: make build-dev
        import dataclasses

        options = dataclasses.replace(options, env="dev")
    quiet = io.StringIO()  # the checks' own command lines and messages: their finding says it
    runner = make_runner(options.dry_run, log=quiet)
    try:
        config = load_config()
    except RagbuildError as err:
        print(f"problem  setup.cfg: {err}")
        return 1
    return run(Doctor(runner, options, config))
