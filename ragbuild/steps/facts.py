"""The facts step: everything the plan takes from the world (git, the clock, the
environment, docker's configuration, the host's network), read once per run, then the plan."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Optional
from collections.abc import Mapping

from ragbuild import pip_config
from ragbuild.docker_config import docker_target, read_docker_config
from ragbuild.config import LatestPolicy
from ragbuild.docker_config import DockerConfig, DockerTarget
from ragbuild.errors import UsageError
from ragbuild.plan import BuildPlan, parse_build_arg
from ragbuild.git import GitInfo
from ragbuild.config import Config, Options
from ragbuild.git import git_info, version_tags
from ragbuild.pip_config import HostNetwork
from ragbuild.run.runner import Runner

if TYPE_CHECKING:  # semver is imported where a version needs it
    import semver


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
        raise UsageError(
            f"SOURCE_DATE_EPOCH={epoch!r} is not a number of seconds since 1970"
        ) from None


def check_paths(options: Options, environ: Mapping[str, str]) -> None:
    """The build's paths, before git or docker runs: what docker would refuse after the build
    started (the Dockerfile, the context, the files and agent ``--secret``/``--ssh`` name), or
    the end of the run could not write (``--metadata-file``, ``$GITHUB_OUTPUT`` from
    ``environ``), is refused here in one line (exit 2)."""
    context, dockerfile = options.context, options.file
    if not os.path.isdir(context):
        what = "it is a file" if os.path.exists(context) else "it does not exist"
        raise UsageError(
            f"build context {context!r} is not a directory ({what}); pass the "
            "directory docker sends with --context"
        )
    if not os.access(context, os.R_OK | os.X_OK):
        raise UsageError(f"build context {context!r} cannot be read (permission denied)")
    if dockerfile == "-":  # docker reads it from stdin, whatever file is named "-"
        raise UsageError(
            "-f - (the Dockerfile on stdin) is not supported: ragbuild reads the "
            "Dockerfile before the build (the context guard's per-Dockerfile ignore "
            "file, doctor's checks); write it to a file and pass -f FILE"
        )
    if os.path.isdir(dockerfile):
        raise UsageError(
            f"Dockerfile {dockerfile!r} is a directory; pass the file, e.g. "
            f"-f {os.path.join(dockerfile, 'Dockerfile')}"
        )
    if not os.path.isfile(dockerfile):
        raise UsageError(
            f"Dockerfile {dockerfile!r} not found (run from the project root, or pass -f)"
        )
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


@dataclass(frozen=True)
class Facts:
    """Everything the plan takes from the world: git, the clock, the environment, docker's
    configuration (read once per run)."""

    git: GitInfo
    moment: datetime
    docker_config: DockerConfig
    docker: DockerTarget
    #: the v* git tags as (tag, version), for --latest-policy auto only
    version_tags: Optional[tuple[tuple[str, semver.Version], ...]] = None
    host: HostNetwork = field(default_factory=HostNetwork)  # the host CA and index to pass
    ci_environ: Mapping[str, str] = field(default_factory=dict)  # the CI build-number variables

    @property
    def unique_created(self) -> bool:
        """Whether the created label names this run alone: now, to the second (``clock``'s
        naive datetime), not SOURCE_DATE_EPOCH's fixed instant (its aware one)."""
        return self.moment.tzinfo is None


def host_network(
    runner: Runner, options: Options, config: Config, environ: Mapping[str, str]
) -> HostNetwork:
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
    ca = (
        None
        if options.no_host_ca
        else pip_config.host_ca(environ, given=explicit, given_source=source)
    )
    note = (
        "--no-host-ca"
        if options.no_host_ca
        else (
            "the host's pip names none: no PIP_CERT, pip config cert, REQUESTS_CA_BUNDLE or "
            "SSL_CERT_FILE"
        )
    )
    problem = pip_config.check_ca(ca) if ca is not None else None
    if problem and (explicit or problem.too_big):
        raise UsageError(problem.message)
    if problem:
        runner.log(f"warning: {problem.message}; the build gets no host CA")
        ca, note = None, problem.message
    build_args = tuple(parse_build_arg(raw) for raw in options.build_args)
    wanted = options.host_index or (options.host_index is None and config.host_index)
    index = pip_config.host_index(
        pip_config.read(environ) if wanted else {},
        given=pip_config.secret_build_args(build_args),
        overridden=tuple(key for key, _ in build_args if key.startswith("PIP_")),
    )
    if index.dropped:
        runner.log(
            "warning: --host-index passes no local path or file:// URL (a build cannot "
            f"read the host's files): {', '.join(index.dropped)}"
        )
    return HostNetwork(ca=ca, ca_note=note, index=index if wanted or index.env else None)


def needs_version_tags(options: Options) -> bool:
    """Whether the plan's moving tags depend on the ``v*`` git tags (``tags.needs_known_tags``:
    --latest-policy auto with a release version); a version that is no semver is refused by the
    plan, which reads no tags for it."""
    from ragbuild.tags import needs_known_tags
    from ragbuild.tags import parse_version

    if options.latest_policy != LatestPolicy.AUTO or options.version is None:
        return False
    try:
        parsed = parse_version(options.version)
    except UsageError:
        return False  # make_plan says why
    return needs_known_tags(parsed, options.latest_policy)


def gather_facts(
    runner: Runner,
    options: Options,
    environ: Mapping[str, str] = os.environ,
    config: Optional[Config] = None,
) -> Facts:
    from ragbuild.tags import CI_BUILD_NUMBER_VARS

    moment = clock(environ)
    check_paths(options, environ)
    docker_config = read_docker_config(environ)
    host = host_network(runner, options, config or Config(), environ)  # before git: exit 2 first
    git = git_info(runner, options, environ)
    auto = needs_version_tags(options)
    return Facts(
        git=git,
        moment=moment,
        docker_config=docker_config,
        docker=docker_target(environ, docker_config),
        version_tags=version_tags(runner, git) if auto else None,
        host=host,
        ci_environ={name: environ[name] for name in CI_BUILD_NUMBER_VARS if name in environ},
    )


def make_plan(options: Options, config: Config, facts: Facts) -> BuildPlan:
    from ragbuild import plan

    return plan.make_plan(
        options,
        config,
        facts.git,
        facts.moment,
        version_tags=facts.version_tags,
        environ=facts.ci_environ,
        docker=facts.docker,
        host=facts.host,
    )
