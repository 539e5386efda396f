"""``ragbuild doctor``: the build guide's troubleshooting as checks, in the order a build meets
them, one line each: ``ok``, ``warning`` or ``problem``, a problem with its exact fix.

It takes the build's own flags (``doctor --env prod --version 1.2.3 --registry URI``) and runs
the build's own checks on them, not copies: ``steps.check_paths``, ``steps.git_info``,
``steps.version_tags``, ``steps.make_plan``, ``steps.check_buildx``, ``steps.diagnose``,
``guard.scan_context``, and the push pre-flight's own steps (``push.check_helper``,
``ecr.authenticate``, ``push.reach_registry``,
``ecr.check_repository``), with their messages. For ECR that includes the login
the pre-flight makes (``aws ecr get-login-password | docker login``). Last, what the build
fetches, asked of the engine that runs it, not of the shell's network (``check_engine``, with
probe builds: probe.py): the ``# syntax=`` frontend, every FROM image, the package index
without and with the host's CA. Exit 0 when a build (and, with a registry, a push) would work,
1 when a check found a problem.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping, Optional

from ragbuild import builders, deps, steps
from ragbuild.errors import RagbuildError
from ragbuild.output import ERROR, SUCCESS, WARNING
from ragbuild.plan import (BuildPlan, Command, Config, GitInfo, Kind, Options,
                           buildx_version_command, human_size)
from ragbuild.runner import Result, Runner, missing_message, resolve, tail

if TYPE_CHECKING:
    from ragbuild import pip_config, probe

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
    buildkit: bool = False  # docker build can use BuildKit (built in, or the buildx plugin)
    builder_missing: bool = False  # --builder / BUILDX_BUILDER names no builder

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
        facts = steps.gather_facts(doc.runner, doc.options, doc.environ, doc.config)
        doc.git = facts.git
        doc.plan = steps.make_plan(doc.options, doc.config, facts)
    except RagbuildError as err:
        doc.plan_error = str(err)
    if doc.git is None:
        try:
            doc.git = steps.git_info(doc.runner, doc.options, doc.environ)
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
        doc.buildkit = True
        plugin = result.stdout.strip().split("\n")[0]
        return [Finding(OK, "buildkit", f"buildx plugin ({plugin})")]
    if needs_plugin:
        return [Finding(PROBLEM, "buildkit", f"docker {doc.client} builds with BuildKit only "
                                             "through the buildx plugin, which is missing; fix: "
                                             f"{builders.BUILDX_HINT}")]
    doc.buildkit = True
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
        doc.builder_missing = True
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
        fix = _unreadable_fix(reason)
        return [Finding(PROBLEM, "git", f"{reason}{'; fix: ' + fix if fix else ''}")]
    if not git.sha:
        reason = git.reason or "no commit"
        return [Finding(WARN, "git", f"{reason}: the build gets no git-<sha> tag and "
                                     f"GIT_COMMIT=unknown; fix: {_git_fix(reason)}")]
    found = []
    if git.dirty:
        found.append(Finding(WARN, "git", f"commit {git.sha} with uncommitted changes "
                                          f"({git.describe_changes()}): tagged "
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


def _unreadable_fix(reason: str) -> str:
    """The command that fixes why git could not answer (``GitFailed``), where there is one: a
    hint for the user, never a verdict (that was git's discovery and exit status)."""
    if "dubious ownership" in reason or "safe.directory" in reason:
        return f"git config --global --add safe.directory {os.path.abspath('.')}"
    if "/worktrees/" in reason:
        return (f"if the main repository was moved, run `git worktree repair {os.path.abspath('.')}`"
                " in it")
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
        if logged_in is not None:  # what docker now holds: the login, not the config before it
            creds = push.after_login(creds)
            found[0] = Finding(OK, "registry credentials", f"{creds.describe()} (the ECR login "
                                                           "just stored them)")
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
                                                   f"{repository.describe()}"
                             if repository.checked else
                             f"{registry.path}: cannot check (describe-repositories denied); "
                             "the push decides"))
    return found


def _one_line(err: Exception) -> str:
    """An error's first line, and the last line of the output it quotes (docker's or aws's
    own reason), on one line."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if len(lines) < 2 else f"{lines[0]} {lines[-1]}"


def from_images(text: str, build_args: Mapping[str, str]) -> list:
    """``(image, arg)`` for each image the Dockerfile's FROM lines name, in order, once each:
    ARG defaults (before the first FROM) and --build-arg values substituted, ``arg`` the build
    arg that named it (``FROM ${PYTHON_IMAGE}``: ``PYTHON_IMAGE``) or None; stage names
    (``FROM builder``) and ``scratch`` left out."""
    values = {m["name"]: m["value"] or "" for m in ARG_RE.finditer(text.split("\nFROM", 1)[0])}
    values.update(build_args)
    stages = {m.lower() for m in re.findall(r"^\s*FROM\s+.*\s+AS\s+(\S+)", text, re.I | re.M)}
    found: list = []
    for match in FROM_RE.finditer(text):
        named = re.search(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", match["image"])
        image = re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: values.get(m[1], ""),
                       match["image"])
        if (image and image.lower() not in stages and image != "scratch"
                and image not in [seen for seen, _ in found]):
            found.append((image, named[1] if named else None))
    return found


def _read(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError):
        return None


@dataclass(frozen=True)
class IndexSetup:
    """What the index probes pass, as the build passes it (steps.host_network): ``host``, the
    CA and index secrets the build gets; ``ca``, the CA bundle the second probe gets: the
    build's, or with ``--no-host-ca`` (``off``) or a bundle the build cannot pass the one the
    host names, so that doctor can say whether the build needs it; ``ca_problem``: why the
    build gets no CA although the host names one (its warning)."""

    host: "pip_config.HostNetwork"
    ca: Optional["pip_config.HostCA"]
    off: bool
    ca_problem: Optional[str] = None


def index_setup(doc: Doctor) -> IndexSetup:
    from ragbuild import pip_config

    host = doc.plan.host if doc.plan is not None else pip_config.HostNetwork()
    off = doc.options.no_host_ca
    if host.ca is not None:
        return IndexSetup(host, host.ca, off)
    explicit = doc.options.host_ca or doc.config.host_ca
    source = "--host-ca" if doc.options.host_ca else "setup.cfg host-ca"
    ca = pip_config.host_ca(doc.environ, given=explicit, given_source=source)
    problem = pip_config.check_ca(ca) if ca is not None else None
    if problem is not None:
        return IndexSetup(host, None, off, None if off else problem.message)
    return IndexSetup(host, ca, off)


def _build_args(doc: Doctor) -> dict:
    """The build's build args (the plan's: an index build arg with credentials is in the index
    secret instead), or the flags' when the plan failed."""
    if doc.plan is not None:
        return dict(doc.plan.build_args)
    from ragbuild.plan import parse_build_arg

    found = {}
    for raw in doc.options.build_args:
        try:
            key, value = parse_build_arg(raw)
        except RagbuildError:
            continue
        found[key] = value
    return found


def _builder(doc: Doctor) -> tuple:
    """``(buildx, builder, sees_local)``: whether the build runs ``docker buildx build`` and on
    which builder (None: the daemon's through ``docker build``, or buildx's current one), and
    whether that builder sees the daemon's images (the docker driver does; a docker-container
    or remote builder pulls every FROM itself)."""
    if doc.plan is None or not doc.plan.buildx:
        return False, None, True
    from ragbuild.plan import builder_inspect_command

    builder = doc.options.builder
    inspected = doc.runner.run(builder_inspect_command(builder))
    driver = builders.builder_driver(inspected.stdout) if inspected.ok else None
    return True, builder, driver == "docker"


def check_engine(doc: Doctor) -> list:
    """What the build fetches, asked of the engine that runs it with probe builds (probe.py):
    the frontend of a ``# syntax=`` line or ``BUILDKIT_SYNTAX``, every FROM image the engine
    does not have (``docker image inspect`` on the daemon, when the builder sees its images),
    and the package index, from a RUN on the build's base image without and with the host's
    CA. The probes run at once (``Runner.run_all``) in a directory of doctor's own."""
    import tempfile

    from ragbuild import probe

    checked = ("dockerfile frontend", "base image", "package index")
    why = ("no docker daemon" if not doc.daemon else "no BuildKit (above)" if not doc.buildkit
           else "no such builder (above)" if doc.builder_missing else None)
    text = _read(doc.options.file)
    if why is None and text is None:
        why = f"{doc.options.file} cannot be read (above)"
    if why is not None:
        return [Finding(PROBLEM, check, f"not checked: {why}") for check in checked]
    assert text is not None
    build_args = _build_args(doc)
    frontend = probe.syntax_frontend(text, build_args)
    images = from_images(text, build_args)
    buildx, builder, sees_local = _builder(doc)
    local = {image: sees_local and doc.runner.run(
        _docker("image", "inspect", "--format", "{{.Id}}", image)).ok for image, _ in images}
    setup = index_setup(doc)
    base = images[0][0] if images else None

    directory = tempfile.mkdtemp(prefix="ragbuild-doctor-")
    nonce = os.path.basename(directory)
    probes: dict = {}
    probes["frontend"] = probe.syntax_probe(text, build_args)
    for number, (image, _) in enumerate(images):
        if not local[image]:
            probes["image", image] = probe.image_probe(number, image)
    if base is not None:
        probes["index"] = probe.index_probe(base, build_args, None, nonce, setup.host)
        if setup.ca is not None:
            probes["index-ca"] = probe.index_probe(base, build_args, setup.ca.path, nonce,
                                                   setup.host)
    try:
        for one in probes.values():
            one.write(directory)
        network = probe.network_words(doc.options.docker_options)
        results = dict(zip(probes, doc.runner.run_all(
            [one.command(directory, buildx, builder, network) for one in probes.values()])))
        answers = {key: probe.read_answer(probes[key].answer_dir(directory))
                   for key in ("index", "index-ca") if key in probes}
    finally:
        shutil.rmtree(directory, ignore_errors=True)

    found = [_frontend_finding(frontend, results["frontend"])]
    failed = set()
    for image, arg in images:
        line = _image_finding(image, arg, local[image], results.get(("image", image)))
        failed |= {image} if line.status == PROBLEM else set()
        found.append(line)
    if not images:
        found.append(Finding(OK, "base image", "none (FROM scratch or stages only)"))
    if base is None:
        return found + [Finding(OK, "package index", "not checked: no base image to run pip on")]
    if base in failed:
        return found + [Finding(PROBLEM, "package index", f"not checked: the engine cannot get "
                                                          f"the base image {base} (above)")]
    index = setup.host.index.env if setup.host.index is not None else ()
    url = probe.index_url({**build_args, **dict(index)})
    found += _index_findings(probe.index_name(url), base, results["index"], answers["index"],
                             answers.get("index-ca"), setup)
    return found


def _frontend_finding(frontend: Optional[tuple], result: Result) -> Finding:
    """The frontend probe's line: ``frontend`` is ``(image, source)`` as doctor reads the
    Dockerfile (probe.syntax_frontend); the probe build's own failure names the image BuildKit
    tried."""
    from ragbuild import probe

    if result.ok:
        if frontend is None:
            return Finding(OK, "dockerfile frontend", "the engine's own (no `# syntax=` line)")
        return Finding(OK, "dockerfile frontend", f"{frontend[0]} ({frontend[1]}): the engine "
                                                  "has it or pulls it")
    output = result.stdout + result.stderr
    said = probe.build_reason(output)
    image, source = frontend or (None, "the Dockerfile's header")
    image = probe.frontend_in(output) or image
    if image is None:
        return Finding(PROBLEM, "dockerfile frontend", f"the engine cannot read the Dockerfile's "
                                                       f"first lines ({said}); fix: the parser "
                                                       "directives at the top of "
                                                       "the Dockerfile")
    fix = (f"drop --build-arg {probe.SYNTAX_ARG}" if source.startswith("--build-arg")
           else "remove the `# syntax=` line")
    return Finding(PROBLEM, "dockerfile frontend", f"the engine cannot get {image}, the frontend "
                                                   f"{source} names ({said}); fix: {fix} (the "
                                                   "engine's built-in frontend then reads the "
                                                   "Dockerfile, RUN --mount included), or docker "
                                                   f"pull/load {image} on the engine")


def _image_finding(image: str, arg: Optional[str], local: bool,
                   result: Optional[Result]) -> Finding:
    if local:
        return Finding(OK, "base image", f"{image} is available to the engine (local)")
    if result is not None and result.ok:
        return Finding(OK, "base image", f"{image} is not local; the engine pulled it (the "
                                         "build finds it in its cache)")
    from ragbuild import probe

    said = probe.build_reason(result.stdout + result.stderr) if result is not None else "?"
    other = f", or --build-arg {arg}=<an image the engine has>" if arg else ""
    return Finding(PROBLEM, "base image", f"the engine does not have {image} and cannot pull it "
                                          f"({said}); fix: docker pull {image} (or docker load "
                                          f"it) on the engine{other}")


#: What a package index the engine cannot reach needs, after the probe's own reason.
INDEX_FIX = ("fix: the proxy the build's RUN steps use (proxies in ~/.docker/config.json, or "
             "--build-arg HTTPS_PROXY=...), a reachable index (--build-arg PIP_INDEX_URL=..., "
             "--host-index); see docs/troubleshooting.md")


def _index_findings(name: str, base: str, result: Result, plain: "probe.Answer",
                    with_ca: Optional["probe.Answer"], setup: IndexSetup) -> list:
    """The package index's line from the probes' answers (probe.Answer: without the CA,
    ``with_ca`` with it, None when the CA was not probed)."""
    check = "package index"
    ca, off = setup.ca, setup.off
    found = []
    if setup.ca_problem is not None:  # the build's warning
        found.append(Finding(WARN, "host CA", f"{setup.ca_problem}; the build gets no host CA"))
    if plain.status is None:
        from ragbuild import probe

        said = probe.build_reason(result.stdout + result.stderr)
        return found + [Finding(PROBLEM, check, f"the probe build on {base} failed: {said}")]
    if plain.ok:
        return found + [Finding(OK, check, f"{name} answers from the engine (pip on {base})")]
    if with_ca is not None and with_ca.ok:
        assert ca is not None  # probed with it
        if off:
            return found + [Finding(PROBLEM, check, f"{name} answers only with the host's CA "
                                                    f"({ca.path}, from {ca.source}), which "
                                                    "--no-host-ca keeps from the build: "
                                                    f"{plain.reason()}; fix: drop --no-host-ca")]
        return found + [Finding(OK, check, f"{name} answers only with the host's CA: ragbuild "
                                           f"passes it ({ca.path}, from {ca.source}; "
                                           "--no-host-ca turns it off)")]
    if with_ca is not None and with_ca.status is None:
        return found + [Finding(PROBLEM, check, f"{name} does not answer without the host's CA "
                                                f"({plain.reason()}), and the probe with it "
                                                "failed; run doctor again")]
    if plain.untrusted and (with_ca is None or with_ca.untrusted):
        trust = (f"not even with the host's CA {ca.path} (from {ca.source})"
                 if with_ca is not None and ca is not None
                 else "and the host's CA cannot be passed (above)" if setup.ca_problem
                 else "and the host names no CA bundle (PIP_CERT, pip's cert, "
                      "REQUESTS_CA_BUNDLE, SSL_CERT_FILE)")
        return found + [Finding(PROBLEM, check, f"{name}'s certificate is not trusted in the "
                                                f"build, {trust}: {plain.reason()}; a "
                                                "TLS-inspecting proxy? fix: --host-ca <its CA "
                                                "bundle>; see docs/troubleshooting.md")]
    said = (with_ca or plain).reason()
    return found + [Finding(PROBLEM, check, f"{name} unreachable from the engine: {said}; "
                                            f"{INDEX_FIX}")]


#: The checks, in the issue's order; each returns its findings (one or more lines).
CHECKS: tuple[Callable[[Doctor], list], ...] = (
    check_python, check_docker, check_buildkit, check_builders, check_git, check_plan,
    check_context, check_registry, check_engine)


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
