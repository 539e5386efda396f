"""The build's steps: each a function from typed data to typed data, handing plan commands to
the runner. pipeline.py runs them in order over one ``RunState``."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable, Mapping, MutableMapping, Optional, Sequence

from ragbuild import builders, pip_config
from ragbuild.channels import LatestPolicy
from ragbuild.builders import DockerConfig, DockerTarget, daemon_down, daemon_unreachable
from ragbuild.errors import (CommandFailed, DockerUnavailable, GitFailed, PushFailed, ToolMissing,
                             UsageError)
from ragbuild.plan import (CREATED_LABEL, FETCH_TAGS_FIX, NO_COMMITS, PUSHED_DIGEST_KEY, BuildPlan,
                           Command, Config, GitInfo, Kind, Options, PushPlan, build_command,
                           build_pushes, buildx_version_command, git_reason, human_size,
                           inspect_command, parse_build_arg, parse_git_repository,
                           version_tags_command)
from ragbuild.pip_config import HostNetwork
from ragbuild.reference import familiar
from ragbuild.output import SUCCESS
from ragbuild.passthrough import not_for_buildx
from ragbuild.runner import Result, Runner, ended, resolve

if TYPE_CHECKING:  # scan.py is imported when --scan asks for it
    from ragbuild.scan import Scanner


def clock(environ: Mapping[str, str] = os.environ) -> datetime:
    """The build's one instant. SOURCE_DATE_EPOCH set: that instant in UTC (an aware datetime),
    so the timestamp tag, BUILD_TIMESTAMP and the created label are the same under every TZ (the
    reproducible-builds convention: https://reproducible-builds.org/docs/source-date-epoch/).
    Unset or empty: now, in local time (a naive datetime), as bash's ``date`` gave."""
    epoch = environ.get("SOURCE_DATE_EPOCH")
    if epoch is None or epoch == "":
        return datetime.now()
    try:
        if not (epoch.isascii() and epoch.isdigit()):  # int() takes -1, ' 1', '１' and '1_0'
            raise ValueError(epoch)
        return datetime.fromtimestamp(int(epoch), tz=timezone.utc)
    except (ValueError, OverflowError, OSError):
        raise UsageError(f"SOURCE_DATE_EPOCH={epoch!r} is not a number of seconds since 1970") from None


def check_paths(options: Options, environ: Mapping[str, str]) -> None:
    """The build's paths, before git or docker runs: what docker would refuse after the build
    started (the Dockerfile, the context, the files and agent ``--secret``/``--ssh`` name), or
    the end of the run could not write (``--metadata-file``, ``$GITHUB_OUTPUT`` from
    ``environ``), is refused here in one line (exit 2)."""
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
    from ragbuild.metadata import check_path
    from ragbuild.passthrough import missing_inputs

    missing = missing_inputs(options.secrets, options.ssh, environ, os.path.exists)
    if missing:
        raise UsageError(missing)
    if options.metadata_file is not None:
        check_path(options.metadata_file)
    if environ.get("GITHUB_OUTPUT"):  # empty: not set, as the Recorder takes it
        check_path(environ["GITHUB_OUTPUT"], "$GITHUB_OUTPUT", append=True)


# --- facts -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Facts:
    """Everything the plan takes from the world: git, the clock, the environment, docker's
    configuration (read once per run)."""

    git: GitInfo
    moment: datetime
    docker_config: DockerConfig
    docker: DockerTarget
    version_tags: Optional[tuple] = None  # the v* git tags, for --latest-policy auto only
    host: HostNetwork = field(default_factory=HostNetwork)  # the host CA and index to pass
    ci_environ: Mapping[str, str] = field(default_factory=dict)  # the CI build-number variables

    @property
    def unique_created(self) -> bool:
        """Whether the created label names this run alone: now, to the second (``clock``'s
        naive datetime), not SOURCE_DATE_EPOCH's fixed instant (its aware one)."""
        return self.moment.tzinfo is None


#: How a release (``--env prod`` or ``--push``) that git cannot name the commit of stops.
RELEASE_NEEDS_GIT = ("a release (--env prod or --push) is built from a commit git names; the run "
                     "stops before docker rather than tag the image without it")


def is_release(options: Options) -> bool:
    """A run whose image is a release: ``--env prod`` or ``--push``."""
    return options.env == "prod" or options.push


def git_info(runner: Runner, options: Optional[Options] = None,
             environ: Mapping[str, str] = os.environ) -> GitInfo:
    """The commit the build is made from, and whether what docker sends differs from it.

    First git's own discovery, copied (``gitfacts.discover``): no ``.git`` (and no GIT_DIR)
    is the one "not a repository", a warning, or for a release (``is_release``) a stop
    (``GitFailed``) unless ``--git-commit`` names the commit of a tree without .git. Then three
    read-only git queries: ``git rev-parse`` (top level, shallow, HEAD and its short sha),
    ``git ls-tree`` (the commit's files) and ``git hash-object --stdin-paths`` (the sent files'
    blobs as git would store them), compared by ``gitfacts.compare``; each submodule checked
    out in the context is compared with the commit the superproject records, in its own
    repository. A failing rev-parse asks ``git status`` whether there are no commits yet (a
    warning; a stop for a release) or why git cannot read the repository: that, any other failure, an incomplete
    answer raises ``GitFailed`` with git's reason. No git installed: a warning, a stop for a
    release. Files docker sends from outside git's work tree (a ``--context`` or ``-f``
    elsewhere) are not compared: ``GitInfo.outside`` (the pipeline warns)."""
    from ragbuild import gitfacts
    from ragbuild.plan import GitUnreadable, check_git_commit, git_repository_command

    options = options or Options()
    release = is_release(options)
    found = gitfacts.discover(os.getcwd(), environ)
    if options.git_commit is not None:
        sha = check_git_commit(options.git_commit)
        if found is not None:
            raise UsageError(f"--git-commit is for a tree without a git repository (an exported "
                             f"source tree), and git reads {found} here: drop --git-commit, "
                             "git names the commit")
        return GitInfo(sha=sha, given=True)
    if found is None:
        if release:
            raise GitFailed("not a git repository (no .git here or in a parent directory git "
                            f"looks in): {RELEASE_NEEDS_GIT}; run it in the project's clone, or "
                            "build an exported source tree with --git-commit SHA")
        return GitInfo(reason="not a git repository")
    elsewhere = gitfacts.pointed_elsewhere(os.getcwd(), environ) if release else None
    if elsewhere:
        raise GitFailed(f"{elsewhere}: {RELEASE_NEEDS_GIT} of this checkout; unset it")
    try:
        asked = runner.run(git_repository_command())
        if not asked.ok:
            _no_commits(runner, asked)
            if release:
                raise GitFailed(f"{NO_COMMITS}: {RELEASE_NEEDS_GIT}; commit first, or build an "
                                "exported source tree (no .git) with --git-commit SHA")
            return GitInfo(reason=NO_COMMITS)
        toplevel, shallow, oid, sha = parse_git_repository(asked.stdout)
        sent = gitfacts.sent_files(toplevel, options.context, options.file)
        changes = _changes(runner, toplevel, oid, sent.files, sent.sends, "")
    except ToolMissing as missing:
        if release:
            raise GitFailed(f"{missing}: {RELEASE_NEEDS_GIT}") from None
        return GitInfo(reason="git is not installed")
    except GitUnreadable as err:
        raise GitFailed(f"git cannot say which commit this build is made from: {err}; the run "
                        "stops before docker rather than tag the image without it") from None
    return GitInfo(sha=sha, dirty=bool(changes), changes=tuple(changes), shallow=shallow,
                   outside=tuple(sent.outside), toplevel=toplevel)


def _no_commits(runner: Runner, asked: Result) -> None:
    """After ``git rev-parse`` failed: returns when ``git status`` says HEAD has no commit yet,
    else ``GitUnreadable`` with git's reason (status's own, or rev-parse's)."""
    from ragbuild.plan import GitUnreadable, git_status_command, parse_git_status

    status = runner.run(git_status_command())
    if not status.ok:
        raise GitUnreadable(git_reason(status.returncode, status.stderr))
    oid, _, _ = parse_git_status(status.stdout)
    if oid is not None:
        raise GitUnreadable(git_reason(asked.returncode, asked.stderr))


def _changes(runner: Runner, toplevel: str, oid: str, files: Mapping, sends: Callable[[str], bool],
             prefix: str) -> list:
    """``gitfacts.compare`` of the ``files`` docker sends (below ``toplevel``, the work tree of
    the repository holding commit ``oid``) with that commit; each submodule of the commit with
    files sent, or checked out (a ``.git`` in it), likewise in its own repository. Paths in
    the answer are relative to the top superproject (``prefix``: this one's place in it)."""
    from ragbuild import gitfacts
    from ragbuild.plan import GitUnreadable, git_hash_command, git_tree_command
    from ragbuild.runner import Secret

    directory = toplevel if prefix else None  # a submodule: git -C its work tree
    listed = runner.run(git_tree_command(oid, directory))
    if not listed.ok:
        raise GitUnreadable(git_reason(listed.returncode, listed.stderr))
    try:
        tree = gitfacts.parse_ls_tree(listed.stdout)
    except ValueError as err:
        raise GitUnreadable(str(err)) from None
    links = {path: entry for path, entry in tree.items() if entry.mode == gitfacts.GITLINK}
    inner = {link: {path[len(link) + 1:]: files[path] for path in gitfacts.under(files, link)}
             for link in links}
    files = {path: entry for path, entry in files.items()
             if not any(path.startswith(link + "/") for link in links)}
    length = len(oid)
    for path, entry in list(files.items()):
        if entry.mode == gitfacts.SYMLINK:
            target = os.fsencode(os.readlink(entry.path))
            files[path] = replace(entry, oid=gitfacts.blob_id(target, length))
    hashed = [path for path, entry in files.items()
              if entry.mode in (gitfacts.FILE, gitfacts.EXECUTABLE) and path in tree]
    if hashed:
        stdin = "".join(gitfacts.c_quote(path) + "\n" for path in hashed)
        answer = runner.run(git_hash_command(directory), stdin=Secret(stdin))
        oids = answer.stdout.split()
        if not answer.ok or len(oids) != len(hashed):
            raise GitUnreadable(git_reason(answer.returncode, answer.stderr) if not answer.ok
                                else f"git hash-object gave {len(oids)} ids for {len(hashed)} files")
        for path, blob in zip(hashed, oids):
            files[path] = replace(files[path], oid=blob)

    def raw_id(path: str) -> Optional[str]:
        if files[path].mode not in (gitfacts.FILE, gitfacts.EXECUTABLE):
            return None
        try:
            with open(files[path].path, "rb") as handle:
                return gitfacts.blob_id(handle.read(), length)
        except OSError:
            return None

    changes = [(prefix + path, note)
               for path, note in gitfacts.compare(tree, files, sends, raw_id)]
    for link, entry in links.items():
        below = inner[link]
        checkout = os.path.join(toplevel, link)
        if not below and not os.path.lexists(os.path.join(checkout, ".git")):
            continue  # not checked out: a checkout without --recurse-submodules leaves it so
        if not os.path.lexists(os.path.join(checkout, ".git")):
            changes += [(f"{prefix}{link}/{path}", gitfacts.NOT_IN_COMMIT) for path in sorted(below)]
            continue
        changes += _changes(runner, checkout, entry.oid, below, _below(sends, link),
                            f"{prefix}{link}/")
    return changes


def _below(sends: Callable[[str], bool], link: str) -> Callable[[str], bool]:
    """``sends`` for paths relative to the submodule at ``link``."""
    return lambda path: sends(f"{link}/{path}")


def version_tags(runner: Runner, git: Optional[GitInfo]) -> tuple:
    """The ``v*`` version tags --latest-policy auto compares with. It cannot decide without
    them: outside a repository, in a shallow clone (CI's default checkout) or with no version
    tag fetched it stops (``UsageError``, exit 2) naming the fix; a failing git stops with git's
    reason (``GitFailed``)."""
    from ragbuild.channels import parse_version_tags

    fix = (f"{FETCH_TAGS_FIX}; for the very first release pass --latest-policy always (or "
           "--no-latest)")
    if git is not None and git.sha is None and git.reason != NO_COMMITS:
        raise UsageError(f"--latest-policy auto compares the version with the repository's v* "
                         f"git tags, and there are none to read ({git.reason}): run it in the "
                         "project's git clone, or pass --latest-policy always or never")
    if git is not None and git.shallow:
        raise UsageError("--latest-policy auto cannot decide in a shallow clone: the v* tags of "
                         f"the history it lacks are missing; {FETCH_TAGS_FIX}")
    try:
        result = runner.run(version_tags_command())
    except ToolMissing as missing:
        raise UsageError(f"--latest-policy auto reads the v* git tags: {missing}") from None
    if not result.ok:
        raise GitFailed(f"git cannot list the v* tags --latest-policy auto compares with: "
                        f"{git_reason(result.returncode, result.stderr)}")
    found = parse_version_tags(result.stdout)
    if not found:
        raise UsageError(f"--latest-policy auto found no v* version tag to compare with (none "
                         f"fetched?): {fix}")
    return found


def host_network(runner: Runner, options: Options, config: Config,
                 environ: Mapping[str, str]) -> HostNetwork:
    """What the build gets of the host's network (pip_config.py): the CA bundle the host's pip
    uses, or ``--host-ca``/setup.cfg's, unless ``--no-host-ca``; with ``--host-index`` (or
    setup.cfg's ``host-index``) the host pip's index settings, less those a ``--build-arg PIP_*``
    gives. An index build arg with credentials goes in the index secret too, never a build arg
    (``pip_config.secret_build_args``; plan.make_plan leaves it out of the build args). A bundle
    named by a flag or setup.cfg that cannot be passed stops the run (exit 2); one the host's
    settings name is a warning, and the build gets none. A bundle over BuildKit's secret limit
    stops the run either way: docker's client would refuse it."""
    explicit = options.host_ca or config.host_ca
    source = "--host-ca" if options.host_ca else "setup.cfg host-ca"
    ca = None if options.no_host_ca else pip_config.host_ca(environ, given=explicit,
                                                             given_source=source)
    note = "--no-host-ca" if options.no_host_ca else (
        "the host's pip names none: no PIP_CERT, pip config cert, REQUESTS_CA_BUNDLE or "
        "SSL_CERT_FILE")
    problem = pip_config.check_ca(ca) if ca is not None else None
    if problem and (explicit or problem.too_big):
        raise UsageError(problem.message)
    if problem:
        runner.log(f"warning: {problem.message}; the build gets no host CA")
        ca, note = None, problem.message
    build_args = tuple(parse_build_arg(raw) for raw in options.build_args)
    wanted = options.host_index or (options.host_index is None and config.host_index)
    index = pip_config.host_index(
        pip_config.read(environ) if wanted else {}, given=pip_config.secret_build_args(build_args),
        overridden=tuple(key for key, _ in build_args if key.startswith("PIP_")))
    if index.dropped:
        runner.log("warning: --host-index passes no local path or file:// URL (a build cannot "
                   f"read the host's files): {', '.join(index.dropped)}")
    return HostNetwork(ca=ca, ca_note=note, index=index if wanted or index.env else None)


def needs_version_tags(options: Options) -> bool:
    """Whether the plan's moving tags depend on the ``v*`` git tags (``channels.needs_known_tags``:
    --latest-policy auto with a release version); a version that is no semver is refused by the
    plan, which reads no tags for it."""
    from ragbuild.channels import needs_known_tags
    from ragbuild.plan import parse_version

    if options.latest_policy != LatestPolicy.AUTO or options.version is None:
        return False
    try:
        parsed = parse_version(options.version)
    except UsageError:
        return False  # make_plan says why
    return needs_known_tags(parsed, options.latest_policy)


def gather_facts(runner: Runner, options: Options, environ: Mapping[str, str] = os.environ,
                 config: Optional[Config] = None) -> Facts:
    from ragbuild.channels import CI_BUILD_NUMBER_VARS

    moment = clock(environ)
    check_paths(options, environ)
    docker_config = builders.read_docker_config(environ)
    host = host_network(runner, options, config or Config(), environ)  # before git: exit 2 first
    git = git_info(runner, options, environ)
    auto = needs_version_tags(options)
    return Facts(
        git=git, moment=moment, docker_config=docker_config,
        docker=builders.docker_target(environ, docker_config),
        version_tags=version_tags(runner, git) if auto else None,
        host=host,
        ci_environ={name: environ[name] for name in CI_BUILD_NUMBER_VARS if name in environ})


def make_plan(options: Options, config: Config, facts: Facts) -> BuildPlan:
    from ragbuild import plan

    return plan.make_plan(options, config, facts.git, facts.moment,
                          version_tags=facts.version_tags, environ=facts.ci_environ,
                          docker=facts.docker, host=facts.host)


# --- before the build --------------------------------------------------------------------------


@dataclass(frozen=True)
class Preflight:
    """What the checks before the build found: the scanner to run, the push to make."""

    scanner: Optional["Scanner"] = None
    push: Optional[PushPlan] = None


def needs_preflight(plan: BuildPlan) -> bool:
    return bool(plan.options.scan or plan.buildx or plan.options.push)


def preflight(runner: Runner, plan: BuildPlan, config: Config, facts: Facts,
              environ: Mapping[str, str] = os.environ) -> Preflight:
    """Everything knowable before the long build, in order: the scanner exists, the client has
    buildx when the build needs it, and the push can go (login, repository). A failed check
    stops the run; a dry run warns and shows the rest (``Runner.stop_or_warn``)."""
    scanner = pushing = None
    if plan.options.scan:
        from ragbuild import scan

        try:
            scanner = scan.prepare(plan, config)
        except ToolMissing as missing:
            # the scan a real run would make, shown by a dry run after its warning
            scanner = scan.resolve(plan.options.scan_command, config.scan_command,
                                   which=lambda name, path=None: name)
            runner.stop_or_warn(missing, key=resolve(scanner.argv[0]))
    check_buildx(runner, plan)
    if plan.options.push:
        from ragbuild import push

        pushing = push.prepare(runner, plan, facts.docker_config, environ)
        plugin = builders.find_cli_plugin("buildx", facts.docker_config, environ)
        pushing = replace(pushing, by_build=build_pushes(plan, pushing, plugin is not None))
    return Preflight(scanner, pushing)


def check_buildx(runner: Runner, plan: BuildPlan) -> None:
    """A build that needs ``docker buildx build`` stops before anything else runs when the
    client has no buildx (exit 1)."""
    if not plan.buildx:
        return
    result = runner.run(buildx_version_command(plan.buildx))
    if not result.ok:
        raise DockerUnavailable(f"this build needs docker buildx (for {'; '.join(plan.buildx)}), "
                                f"and this docker client has no buildx: {builders.BUILDX_HINT}")
    check_builder_can(runner, plan)


def check_builder_can(runner: Runner, plan: BuildPlan) -> None:
    """An index of several platforms or a cache export stops before the login and the build
    when the builder cannot make it (builders.docker_driver_problem)."""
    from ragbuild.plan import builder_inspect_command, driver_status_command

    needs = builders.docker_driver_needs(plan.platforms, plan.cache_to)
    if not needs:
        return
    inspected = runner.run(builder_inspect_command(plan.options.builder, needs))
    driver = builders.builder_driver(inspected.stdout) if inspected.ok else None
    status = runner.run(driver_status_command()).stdout if driver == "docker" else ""
    problem = builders.docker_driver_problem(needs, plan.options.builder, driver, status)
    if problem:
        raise DockerUnavailable(problem)


# --- the build ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    """What the build step made: whether the build pushed the refs itself, and the image's ID
    (``docker build --iidfile``; None for a multi-platform build, which leaves no local image),
    which the summary, smoke test, scan, push and read-back follow from then on."""

    pushed: bool
    image_id: Optional[str]
    #: the manifest digest a build that pushed reported (buildx's ``containerimage.digest``):
    #: the image's ID in a daemon with the containerd image store, where buildx's --iidfile
    #: names the config instead (``summarize`` tries it when the daemon does not know the ID)
    manifest: Optional[str] = None


def build(runner: Runner, plan: BuildPlan, push: Optional[PushPlan],
          digests: MutableMapping[str, Optional[str]], *, unique_created: bool = True) -> Built:
    """The one build; ``push``: the pre-flight's push decisions (attestations, whether the
    build pushes: ``plan.build_pushes``). Returns whether the build pushed and the image's ID
    (``Built``); a one-platform build that pushed records the manifest digest it reported for
    every ref in ``digests``. A one-platform build that succeeded without writing its ID stops
    the run: nothing after it may fall back to a tag (CommandFailed).

    When a build that pushes fails, the failure was the build's or the push's. buildx's
    ``docker`` driver names the image in the daemon before it pushes, so when every ref names
    one local image whose created label (``plan.created``) is this run's, the build succeeded
    and the push failed: the run goes on to ``docker push`` each ref, which retries transient
    failures and says what a refused push needs (push.py). When they do not, the build failed
    and nothing runs again. ``unique_created`` false (SOURCE_DATE_EPOCH fixes the label, so an
    earlier build may carry it): the build runs again without the push to tell the two apart
    (a failing step runs twice; with ``--no-cache`` the whole build)."""
    if push is None or not push.by_build or plan.multi_platform:
        image_id = _build(runner, plan, push)
        return Built(push is not None and plan.multi_platform, image_id)
    pushing = build_command(plan, push, metadata_file=answer_path(plan),
                            iid_file=answer_path(plan, "iid"))
    try:
        result = runner.run(pushing)
    except CommandFailed as failure:
        ended_as = ended(failure.returncode)
        built: Optional[str] = None
        if not unique_created:
            runner.log(f"warning: docker buildx build --push {ended_as}; building again without "
                       "the push, to tell a failed build from a failed push (SOURCE_DATE_EPOCH "
                       "gives every build the same created label)")
            built = _build(runner, plan, replace(push, by_build=False))
        elif (built := built_by_this_run(runner, plan)) is not None:
            runner.log(f"warning: docker buildx build --push {ended_as} after it built and "
                       f"tagged the image (this run's created label): {built}")
        else:
            diagnose(runner, plan)
            cause = explain(plan, pushing, failure)
            said = (f": {cause} (nothing was pushed)" if cause else "; its output is above (the "
                    "build failed: no image of this run carries the tags, nothing was pushed)")
            raise CommandFailed(f"docker buildx build {ended_as}{said}",
                                returncode=failure.returncode) from None
        runner.log("the build itself succeeded: the push failed, so each tag goes with docker "
                   "push (retried when the failure is transient)")
        return Built(False, built)
    image_id = _image_id(result, plan)
    digest = parse_pushed_digest(result.stdout)
    for ref in push.refs:  # pushed, whether or not the build named the digest
        digests[ref] = digest
    if digest is None:
        from ragbuild.push import progress

        raise PushFailed("docker buildx build --push succeeded but named no manifest digest in "
                         f"its --metadata-file ({PUSHED_DIGEST_KEY}), so the push cannot be "
                         f"verified\n{progress(push.refs, digests)}")
    return Built(True, image_id, digest)


def _image_id(result: Result, plan: BuildPlan) -> Optional[str]:
    """The ID the build wrote to its ``--iidfile`` (None for a multi-platform build); a
    successful one-platform build without it stops the run."""
    if plan.multi_platform:
        return None
    if not result.image_id:
        raise CommandFailed("the build succeeded but wrote no image ID to its --iidfile, so what "
                            "follows cannot tell this run's image from another build's with the "
                            "same tags; nothing was pushed by ragbuild")
    return result.image_id


def built_by_this_run(runner: Runner, plan: BuildPlan) -> Optional[str]:
    """The ID of the one local image every ref of the plan names when its created label is this
    run's ``plan.created`` (``docker image inspect``), else None (a ref that is missing too)."""
    result = runner.run(replace(inspect_command(plan.primary, plan.refs), check=False))
    if not result.ok:
        return None
    try:
        image = parse_inspect(result.stdout)
    except ValueError:
        return None
    if image.lacks(plan.refs) or (image.labels or {}).get(CREATED_LABEL) != plan.created:
        return None
    return image.id


def answer_path(plan: BuildPlan, kind: str = "metadata.json") -> str:
    """Where a build that pushes writes its ``--metadata-file``: one path for one plan, so a
    dry run prints the line a real run starts (docs/dry-run.md) and creates nothing. In the
    user's own directory ``ragbuild-<uid>`` of the temp directory (``TMPDIR``), which the runner
    makes, mode 0700, and refuses when it is anyone else's or open to others; named after the
    plan (every ref it pushes, ``created``, commit), so a run of another plan (``--env prod``
    beside ``--env dev`` in the same second) does not meet it; two runs that do would push the
    same tags. The runner removes it before the build and once read (``Command.answer_file``).
    ``kind``: the file's suffix, ``iid`` for the ``--iidfile`` every one-platform build writes
    (``Command.iid_file``)."""
    import hashlib
    import tempfile  # only a build that pushes needs it

    key = "\0".join((*plan.refs, plan.created, plan.git.commit, str(os.getuid())))
    name = hashlib.sha256(key.encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"ragbuild-{os.getuid()}", f"{name}.{kind}")


def parse_pushed_digest(text: str) -> Optional[str]:
    """The manifest digest in what ``docker buildx build --metadata-file`` wrote, or None."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    digest = data.get(PUSHED_DIGEST_KEY) if isinstance(data, dict) else None
    return digest if isinstance(digest, str) and re.fullmatch(r"sha256:[0-9a-f]{64}", digest) \
        else None


def _build(runner: Runner, plan: BuildPlan, push: Optional[PushPlan]) -> Optional[str]:
    """The build without its own push; the image's ID (``_image_id``)."""
    command = build_command(plan, push, iid_file=answer_path(plan, "iid"))
    try:
        result = runner.run(command)
    except CommandFailed as failure:
        diagnose(runner, plan)
        what = "docker buildx build" if plan.buildx else "docker build"
        cause = explain(plan, command, failure)
        if cause:
            raise CommandFailed(f"{what} {ended(failure.returncode)}: {cause}",
                                returncode=failure.returncode) from None
        hint = ""
        if plan.options.pull:
            hint = ("; with --pull, docker must reach the registry of every FROM image: check "
                    "the network and registry login, or drop --pull to build from the local copy")
        raise CommandFailed(f"{what} {ended(failure.returncode)}; its output is above{hint}",
                            returncode=failure.returncode) from None
    return _image_id(result, plan)


def explain(plan: BuildPlan, command: Command, failure: CommandFailed) -> Optional[str]:
    """Why the build ``command`` failed, in one line with its fix, when what it printed (the
    end ``failure.output`` kept) names a cause ``build_failure`` knows; else None. Whether the
    build had the host's CA is read from ``command`` itself (its ``--secret id=ragbuild-host-ca``),
    why not from the plan (``plan.host.ca_note``)."""
    from ragbuild.build_failure import classify
    from ragbuild.pip_config import CA_SECRET_ID

    cause = classify(failure.output, host_ca=passed_secret(command.argv, CA_SECRET_ID),
                     not_passed=plan.host.ca_note, pull=plan.options.pull)
    return cause.message if cause else None


def passed_secret(argv: Sequence[str], secret_id: str) -> Optional[str]:
    """The file a build command passes as the BuildKit secret ``secret_id`` (``--secret
    id=ID,src=PATH``, also ``source=`` and ``--secret=...``), or None when it passes none."""
    specs = [word.split("=", 1)[1] for word in argv if word.startswith("--secret=")]
    specs += [value for flag, value in zip(argv, argv[1:]) if flag == "--secret"]
    for spec in specs:
        fields = dict(part.split("=", 1) for part in spec.split(",") if "=" in part)
        if fields.get("id") == secret_id:
            return fields.get("src") or fields.get("source") or ""
    return None


def diagnose(runner: Runner, plan: BuildPlan) -> None:
    """After a failed build, tell an unreachable daemon, a client without BuildKit, or a
    classic-builder option after ``--`` on a client whose docker build is buildx (Docker 23+:
    ``passthrough.NOT_FOR_BUILDX``) from a failing Dockerfile. Runs only on the failure path,
    so a good build pays nothing for it."""
    result = runner.run(Command(("docker", "version", "--format", "{{.Client.Version}}"),
                                check=False, kind=Kind.PROBE))
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
    if result.returncode != 0 and daemon_down(result.stderr):
        raise DockerUnavailable(daemon_unreachable(target))
    major = client.split(".")[0]
    if major.isdigit() and int(major) >= 23:
        buildx = runner.run(buildx_version_command())
        if buildx.returncode != 0:
            raise DockerUnavailable(f"this docker client ({client}) needs the buildx plugin for "
                                    f"BuildKit builds: install buildx (docker-buildx-plugin), or set "
                                    f"DOCKER to {CLASSIC_CLIENT}")
        # docker build is buildx on this client, and buildx has no classic-only option
        refused = not_for_buildx(plan.passthrough)
        if refused:
            raise CommandFailed(f"this docker client ({client}) builds with buildx, which refuses "
                                f"{', '.join(refused)} (\"unknown flag\"): an option of the classic "
                                f"builder's docker build, given after --; drop it, or set DOCKER to "
                                f"{CLASSIC_CLIENT}")


#: A docker client whose own docker build has BuildKit built in (no buildx plugin needed, the
#: classic builder's options taken): docker 23.0 made docker build buildx.
CLASSIC_CLIENT = ("a client older than 23.0, whose docker build has BuildKit built in (e.g. "
                  "Debian 12's /usr/bin/docker)")


@dataclass(frozen=True)
class Image:
    """The built image as ``docker image inspect`` describes it."""

    id: str
    size: int  # bytes
    repo_tags: tuple = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    followed: str = ""  # what the summary asked the daemon by: the ID the rest of the run uses

    def lacks(self, refs: Sequence[str]) -> list:
        """The refs of ``refs`` that are not among the image's tags, compared as docker lists
        them (``reference.familiar``: ``docker.io/library/x:t`` is ``x:t``)."""
        listed = {familiar(tag) for tag in self.repo_tags}
        return [ref for ref in refs if familiar(ref) not in listed]


def summarize(runner: Runner, plan: BuildPlan, image_id: Optional[str] = None, *,
              pushed: bool = False, manifest: Optional[str] = None,
              unique_created: bool = True) -> Optional[Image]:
    """One ``docker image inspect`` of the built image by its ID (``Built.image_id``; the
    primary ref only where there is none to follow) gives the id, size, tags and labels (bash
    ran one per tag). None for a multi-platform build, which leaves no local image. ``pushed``:
    the build pushed the refs itself, which an error here says (they are out, unverified).
    ``manifest``: what a build that pushed reported (``Built.manifest``), asked when the daemon
    does not know ``image_id``: buildx's --iidfile names the image's config, which is the ID
    in the classic image store, while the containerd store's ID is the manifest's digest
    (https://docs.docker.com/engine/storage/containerd/). A build that did not push (buildx
    without attestations writes the config there too) has no manifest digest to ask: then the
    primary ref is inspected, and taken only when its created label is this run's, an instant
    no other run has (``unique_created``: not with SOURCE_DATE_EPOCH, which stops the run
    here); the push still checks that the registry serves that image (push.check_pushed). The image's ``followed`` is the ID the daemon knows it by, which the
    run follows from then on."""
    if plan.multi_platform:
        runner.log(f"built for {', '.join(plan.platforms)} and pushed by the build itself: "
                   "an image index, read back from the registry instead of inspected locally")
        return None
    followed = image_id or plan.primary
    result = runner.run(replace(inspect_command(followed, plan.refs), check=image_id is None))
    by_label = False
    if not result.ok:  # the daemon does not know the image by the ID buildx wrote
        followed = manifest or plan.primary
        by_label = manifest is None
        result = runner.run(inspect_command(followed, plan.refs))
    try:
        image = parse_inspect(result.stdout)
    except ValueError as bad:
        raise CommandFailed(f"cannot read docker image inspect output: {bad}: "
                            f"{_clip(result.stdout)!r}") from None
    if by_label and not (unique_created and image.labels.get(CREATED_LABEL) == plan.created):
        why = ("SOURCE_DATE_EPOCH gives every build the same created label" if not unique_created
               else f"{plan.primary} names an image of another run (created "
                    f"{image.labels.get(CREATED_LABEL) or 'unknown'})")
        raise CommandFailed(f"the daemon knows no image {image_id} (the ID the build wrote: on "
                            "the containerd image store buildx writes the config's digest) and "
                            f"{why}, so this run's image cannot be told apart; nothing was "
                            "pushed by ragbuild")
    image = replace(image, followed=image.id if by_label else followed)
    runner.report(f"built {image.id} ({human_size(image.size)}) with {len(plan.refs)} tags:",
                  SUCCESS)
    for ref in plan.refs:
        runner.report(f"  {ref}")
    missing = image.lacks(plan.refs)
    if missing:
        out = (f"; the build had already pushed its {len(plan.refs)} tags to "
               f"{plan.registry.uri if plan.registry else 'the registry'} (not read back)"
               if pushed else "")
        raise CommandFailed(f"the built image lacks tags {', '.join(missing)}; docker reported "
                            f"{', '.join(image.repo_tags)}{out}")
    flags = plan.docker.docker_flags() if plan.docker is not None else ()
    runner.report(f"run it: docker {''.join(f'{flag} ' for flag in flags)}run -p 8080:8080 "
                  f"{plan.primary}")
    return image


def parse_inspect(stdout: str) -> Image:
    """``{{.Id}} {{.Size}} {{json .RepoTags}} {{json .Config.Labels}}`` as an Image; ValueError
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
    return Image(image_id, int(size), tuple(repo_tags or ()), labels or {})


def _clip(text: str, limit: int = 200) -> str:
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]
