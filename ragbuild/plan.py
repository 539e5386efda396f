"""The plan: pure functions from flags and facts to tags, build args and commands (as data).

Nothing here reads files, the clock or the environment, or starts a process; the CLI gathers
those facts and hands them in, and the runner executes the ``Command`` objects made here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Optional, TypedDict, Union
from collections.abc import Mapping

from ragbuild import passthrough
from ragbuild.docker_config import Credentials, DockerTarget
from ragbuild.buildx import (
    NOT_FOR_SAGEMAKER,
    Cache,
    buildx_reasons,
    check_builder,
    parse_cache,
    parse_platforms,
)
from ragbuild.config import DEFAULT_SMOKE_COMMAND, Config, LatestPolicy, Options
from ragbuild.config import check_env, check_start_command
from ragbuild.tags import (
    build_number,
    channel_tags,
    moving_tags,
    parse_version,
    plan_tags,
    version_channels,
)
from ragbuild.errors import UsageError
from ragbuild.git import GitInfo
from ragbuild.limits import SETTINGS, Limits
from ragbuild.pip_config import HostNetwork, secret_build_args

if TYPE_CHECKING:  # semver is imported where a version needs it
    import semver
    from ragbuild.manifest import ReadFailed
    from ragbuild.registry import Session

from ragbuild.run.command import Command, Mode
from ragbuild.reference import Registry, check_image_name, check_tag, parse_registry

#: Build args ragbuild sets itself; a --build-arg may not override them.
RESERVED_BUILD_ARGS = ("VERSION", "ENVIRONMENT", "GIT_COMMIT", "BUILD_TIMESTAMP")
TIMESTAMP_FORMAT = "%Y%m%d-%H%M%S"
#: Put on every image by ragbuild's build command: the repository its tags go on (``plan.base``).
#: ``clean`` removes only tags of that repository, so images built FROM ours (which inherit the
#: label) and tags a user added survive.
REPOSITORY_LABEL = "org.ragbuild.repository"
#: OCI's creation time, RFC 3339 (``BUILD_TIMESTAMP`` keeps bash's ``%Y%m%d-%H%M%S``).
CREATED_LABEL = "org.opencontainers.image.created"
#: The commit an image was built from (the Dockerfile sets it from GIT_COMMIT).
REVISION_LABEL = "org.opencontainers.image.revision"

BUILD_ARG_RE = re.compile(r"(?P<key>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*)", re.S)


@dataclass(frozen=True)
class PushPlan:
    """What the pre-flight decided about the push, before the build (push_preflight.prepare); the build
    command consumes it."""

    refs: tuple[str, ...]  # the refs to push, in the plan's order
    skipped: tuple[str, ...] = ()  # refs left out (tags the immutable repository would refuse)
    credentials: Optional[Credentials] = None  # where docker gets the host's credentials
    insecure: bool = False  # the daemon reaches the registry over plain HTTP / unverified TLS
    by_build: bool = False  # the build pushes the refs itself (``build_pushes``)
    #: ECR's tag mutability is unknown (describe denied): the refs are in the order to push
    #: them, existing tags first, one ``docker push`` each (``push.existing_first``)
    in_order: bool = False
    #: what each ref named in the registry before the build (``push_preflight.read_existing``): its
    #: manifest digest, "" when the tag did not exist, the ``manifest.ReadFailed`` when it could
    #: not be read; the restore advice after a push of another image quotes it
    before: Mapping[str, Union[str, ReadFailed]] = field(default_factory=dict, compare=False)
    #: how the pre-flight reached the registry (scheme, TLS, docker's credentials): the
    #: read-back reuses it (push.session_of); None until the pre-flight made it
    session: Optional[Session] = field(default=None, compare=False, repr=False)

    @property
    def helper(self) -> Optional[str]:
        """The docker credential helper used for the host, if any."""
        return self.credentials.helper if self.credentials is not None else None


@dataclass(frozen=True)
class BuildPlan:
    base: str  # registry URI or image name
    tags: tuple[str, ...]  # tag names, in bash's order
    build_args: tuple[tuple[str, str], ...]  # ((key, value), ...) in the order passed to docker
    timestamp: str
    git: GitInfo
    version: Optional[str]
    env: Optional[str]
    registry: Optional[Registry]
    options: Options = field(repr=False, default_factory=Options)
    #: why each moving tag (latest, <major>, <major>.<minor>) was kept or not
    notes: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()
    #: why the build needs docker buildx build (empty: plain docker build)
    buildx: tuple[str, ...] = ()
    cache_from: tuple[Cache, ...] = ()
    cache_to: tuple[Cache, ...] = ()
    docker: Optional[DockerTarget] = None  # the daemon docker talks to
    created: str = ""  # the build instant in RFC 3339 with its offset (the OCI created label)
    #: docker build words of --secret, --ssh and after -- (passthrough.py)
    passthrough: tuple[str, ...] = ()
    moving_tags: frozenset[str] = frozenset()  # tags a later build must overwrite (moving_tags)
    limits: Limits = field(default_factory=Limits)  # flags over setup.cfg over the defaults
    smoke_command: tuple[str, ...] = (DEFAULT_SMOKE_COMMAND,)  # argv after IMAGE in docker run
    host: HostNetwork = field(default_factory=HostNetwork)  # the CA and index secrets

    @property
    def multi_platform(self) -> bool:
        """More than one platform: an index the build pushes itself (no local image)."""
        return len(self.platforms) > 1

    @property
    def refs(self) -> tuple[str, ...]:
        return tuple(f"{self.base}:{tag}" for tag in self.tags)

    @property
    def version_refs(self) -> tuple[str, ...]:
        """The refs of the release tags ``v<version>`` and ``<version>``: they name one image for
        good, so a push never moves them without --replace-version-tags (``push_preflight.prepare``)."""
        if self.version is None:
            return ()
        tag = self.version.replace("+", "_")
        return tuple(f"{self.base}:{t}" for t in (f"v{tag}", tag) if t in self.tags)

    @property
    def primary(self) -> str:
        return self.refs[0]


# --- validation --------------------------------------------------------------------------------


def parse_build_arg(raw: str) -> tuple[str, str]:
    match = BUILD_ARG_RE.fullmatch(raw)
    if not match:
        raise UsageError(f"--build-arg {raw!r} is not KEY=VALUE")
    key = match["key"]
    if key in RESERVED_BUILD_ARGS:
        raise UsageError(
            f"--build-arg {key} is set by ragbuild itself "
            "(from --version, --env, git and the clock)"
        )
    if "\n" in match["value"] or "\r" in match["value"]:  # the value is not shown: it may be secret
        raise UsageError(
            f"--build-arg {key}: the value has a line break, which would split the "
            "printed command; pass multi-line data as a file in the build context "
            "or with docker build --secret"
        )
    return key, match["value"]


def resolve_limits(options: Options, config: Config) -> Limits:
    """Each limit: the flag when given, else setup.cfg's, else the default (limits.py). A flag
    for a step the run does not take would do nothing: it is refused (setup.cfg's values apply
    wherever the step runs, so they are never idle)."""
    idle = {
        "--smoke-timeout": (options.smoke_timeout, options.smoke_test, "--smoke-test"),
        "--smoke-command": (options.smoke_command, options.smoke_test, "--smoke-test"),
        "--push-attempts": (options.push_attempts, options.push, "--push"),
        "--push-backoff": (options.push_backoff, options.push, "--push"),
    }
    for flag, (value, runs, step) in idle.items():
        if value is not None and not runs:
            raise UsageError(f"{flag} only changes what {step} does: add {step}, or drop {flag}")
    return config.limits.override(**{s.field: getattr(options, s.field, None) for s in SETTINGS})


# --- facts -> plan -----------------------------------------------------------------------------


def format_timestamp(moment: datetime) -> str:
    return moment.strftime(TIMESTAMP_FORMAT)


def format_created(moment: datetime) -> str:
    """The same instant in RFC 3339 with its UTC offset (a naive moment is local time), the
    offset of the wall-clock time ``format_timestamp`` writes."""
    return (moment if moment.tzinfo else moment.astimezone()).isoformat(timespec="seconds")


def make_plan(
    options: Options,
    config: Config,
    git: GitInfo,
    moment: datetime,
    *,
    version_tags: Optional[tuple[tuple[str, semver.Version], ...]] = None,
    environ: Optional[Mapping[str, str]] = None,
    docker: Optional[DockerTarget] = None,
    host: Optional[HostNetwork] = None,
) -> BuildPlan:
    """Validate the flags, then compute the tags and build args, exactly in bash's order.

    More facts, all optional: ``version_tags`` (``git.parse_version_tags`` of ``git tag
    --list 'v*'``, asked for ``--latest-policy auto`` only), ``environ`` (the CI variables
    ``--ci-tags`` reads), ``docker`` (the ``DockerTarget`` the plan names) and ``host``
    (the CA and index settings the build gets as secrets: ``steps.facts.host_network``)."""
    parsed, env = _check_version_and_env(options, config)
    custom = _check_custom_tags(options, parsed)
    registry = _check_registry(options)
    image_name = check_image_name(
        config.image_name if options.image_name is None else options.image_name
    )
    extra_args = tuple(parse_build_arg(raw) for raw in options.build_args)
    moved = secret_build_args(extra_args)  # in the index secret instead (steps.facts.host_network)
    extra_args = tuple(arg for arg in extra_args if arg not in moved)
    passed = passthrough.build_words(options.secrets, options.ssh, options.docker_options)
    if env == "prod" and git.dirty and not options.allow_dirty:
        raise UsageError(
            f"the git tree has uncommitted changes ({git.describe_changes()}): what "
            f"docker would send differs from commit {git.sha}; commit them (a file the "
            "image does not need: add it to .dockerignore), or pass --allow-dirty to "
            "build prod from a dirty tree anyway"
        )
    channel = version_channels(
        parsed, semver_tags=options.semver_tags, policy=options.latest_policy, known=version_tags
    )
    number = build_number(options.build_number, options.ci_tags, environ or {})
    where = _where_to_build(options)
    refused = passthrough.not_for_buildx(passed)
    if where["buildx"] and refused:
        raise UsageError(
            f"{', '.join(refused)} after -- is an option of plain docker build that "
            f"docker buildx build refuses, and this build needs buildx (for "
            f"{', '.join(where['buildx'])}): drop it"
        )

    version = str(parsed) if parsed is not None else None
    timestamp = format_timestamp(moment)
    notes = channel.notes
    if number:
        notes += (f"build-{number.value}: build number from {number.source}",)
    return BuildPlan(
        base=registry.uri if registry else image_name,
        tags=plan_tags(version, env, timestamp, git, number, custom, channel),
        build_args=plan_build_args(
            version,
            env,
            git,
            timestamp,
            extra_args,
            buildx=where["buildx"],
            cache_to=where["cache_to"],
        ),
        timestamp=timestamp,
        git=git,
        version=version,
        env=env,
        registry=registry,
        options=options,
        notes=notes,
        docker=docker.for_builder(options.builder) if docker is not None else None,
        created=format_created(moment),
        passthrough=passed,
        moving_tags=moving_tags(parsed, env, options.semver_tags),
        limits=resolve_limits(options, config),
        smoke_command=check_start_command(
            config.smoke_command if options.smoke_command is None else options.smoke_command
        ),
        host=host if host is not None else HostNetwork(ca_note="not looked up"),
        **where,
    )


def _check_version_and_env(
    options: Options, config: Config
) -> tuple[Optional[semver.Version], Optional[str]]:
    """``(semver.Version or None, env or None)``: at least one given, prod only with a version."""
    if options.version is None and options.env is None:
        raise UsageError(
            "give --version and/or --env (e.g. --env dev, or --version 1.2.3 --env prod)"
        )
    parsed = parse_version(options.version) if options.version is not None else None
    env = check_env(options.env, config.environments) if options.env is not None else None
    if env == "prod" and parsed is None:
        raise UsageError(
            "--env prod needs --version: production builds are always tagged with a "
            "version (with make: VERSION=1.2.3)"
        )
    return parsed, env


def _check_custom_tags(options: Options, parsed: Optional[semver.Version]) -> tuple[str, ...]:
    """Each --tag is a valid tag, and none is a moving tag the latest policy decides about: with
    --no-latest or --latest-policy auto, ``--tag latest`` would tag (and push) latest whatever
    the policy says, and under auto so would ``--tag <major>`` with --semver-tags."""
    custom = tuple(check_tag(tag) for tag in options.tags)
    policy = options.latest_policy
    if "latest" in custom and policy != LatestPolicy.ALWAYS:
        given = (
            "--no-latest (--latest-policy never)"
            if policy == LatestPolicy.NEVER
            else f"--latest-policy {policy.value}"
        )
        raise UsageError(
            f"--tag latest contradicts {given}: it would tag latest whatever the "
            "policy decides; drop --tag latest, or use --latest-policy always"
        )
    if policy == LatestPolicy.AUTO and options.semver_tags and parsed is not None:
        for tag in custom:
            if tag in channel_tags(parsed):
                raise UsageError(
                    f"--tag {tag} contradicts --semver-tags with --latest-policy "
                    f"auto, which decides whether {tag} moves; drop --tag {tag}"
                )
    return custom


def _check_registry(options: Options) -> Optional[Registry]:
    """The registry the tags go on; --push needs one."""
    registry = (
        parse_registry(options.registry, options.registry_source)
        if options.registry is not None
        else None
    )
    if options.push and registry is None:
        raise UsageError(
            "--push needs a registry: pass --registry host/repository or set "
            "ECR_REGISTRY_URI (bash skipped the push and exited 0)"
        )
    if options.replace_version_tags and not (options.push and options.version is not None):
        raise UsageError(
            "--replace-version-tags only lets --push move the version tags of "
            "--version: add --push and --version, or drop it"
        )
    if options.skip_existing_immutable and not options.push:
        raise UsageError(
            "--skip-existing-immutable only changes what --push pushes to an "
            "IMMUTABLE ECR repository: add --push, or drop it"
        )
    if options.skip_existing_immutable and registry is not None and not registry.is_ecr:
        raise UsageError(
            f"--skip-existing-immutable reads the tag immutability of an ECR "
            f"repository, and {registry.host} is not ECR: drop it"
        )
    return registry


class _Where(TypedDict):
    platforms: tuple[str, ...]
    buildx: tuple[str, ...]
    cache_from: tuple[Cache, ...]
    cache_to: tuple[Cache, ...]


def _where_to_build(options: Options) -> _Where:
    """--builder, --platform, --cache-from and --cache-to, checked (buildx.py): the plan's
    ``platforms``, ``buildx``, ``cache_from`` and ``cache_to``."""
    builder = check_builder(options.builder) if options.builder is not None else None
    platforms = parse_platforms(options.platform) if options.platform is not None else ()
    cache_from = tuple(parse_cache(raw, "--cache-from") for raw in options.cache_from)
    cache_to = tuple(parse_cache(raw, "--cache-to") for raw in options.cache_to)
    if len(platforms) > 1 and not options.push:
        raise UsageError(
            f"--platform {','.join(platforms)} builds an image index, which the local "
            "image store cannot hold: add --push (and --registry) so the build pushes "
            f"it itself. {NOT_FOR_SAGEMAKER}"
        )
    if len(platforms) > 1 and options.smoke_test:
        raise UsageError(
            "--smoke-test runs the local image, and a multi-platform build leaves none "
            "(it pushes straight to the registry); smoke-test a --platform linux/amd64 "
            "build instead"
        )
    buildx = buildx_reasons(
        builder=builder, platforms=platforms, cache_from=cache_from, cache_to=cache_to
    )
    return {
        "platforms": platforms,
        "buildx": buildx,
        "cache_from": cache_from,
        "cache_to": cache_to,
    }


def plan_build_args(
    version: Optional[str],
    env: Optional[str],
    git: GitInfo,
    timestamp: str,
    extra: tuple[tuple[str, str], ...],
    *,
    buildx: tuple[str, ...] = (),
    cache_to: tuple[Cache, ...] = (),
) -> tuple[tuple[str, str], ...]:
    """``VERSION``, ``ENVIRONMENT`` (those given), ``GIT_COMMIT``, ``BUILD_TIMESTAMP``, then each
    --build-arg; plain docker build spells ``--cache-to type=inline`` as BUILDKIT_INLINE_CACHE=1."""
    build_args = []
    if version is not None:
        build_args.append(("VERSION", version))
    if env is not None:
        build_args.append(("ENVIRONMENT", env))
    build_args.append(("GIT_COMMIT", git.commit))
    build_args.append(("BUILD_TIMESTAMP", timestamp))
    build_args += extra
    given = {key for key, _ in extra}
    if (
        not buildx
        and any(c.type == "inline" for c in cache_to)
        and "BUILDKIT_INLINE_CACHE" not in given
    ):
        build_args.append(("BUILDKIT_INLINE_CACHE", "1"))
    return tuple(build_args)


def build_pushes(
    plan: BuildPlan, push: PushPlan, buildx_plugin: bool, classic_walk: bool = False
) -> bool:
    """Whether the build pushes the refs itself (``docker buildx build --push``) instead of a
    ``docker push`` per ref after it. Always for several platforms (no local image to push).
    For one platform only when it is the same image in the same daemon, sooner: the client has
    the buildx plugin (``find_cli_plugin``); no other builder is needed (``plan.buildx`` empty;
    the daemon's own builder, buildx's ``docker`` driver, stores the image in the daemon and
    pushes it as ``docker push`` would); every ref is pushed (none skipped as immutable), in no
    set order (``in_order``); nothing passes between build and push (--smoke-test, --scan); no
    option after ``--`` buildx refuses (``passthrough.NOT_FOR_BUILDX``); no --no-cache (a failed
    build may have to run again to tell it from a failed push: ``steps.build.build``); and the
    context guard did not take the classic CLI's walk (``classic_walk``: buildx sends others)."""
    if plan.multi_platform:
        return True
    opts = plan.options
    return (
        buildx_plugin
        and not classic_walk
        and not plan.buildx
        and not push.skipped
        and not push.in_order
        and not opts.smoke_test
        and not opts.scan
        and not opts.no_cache
        and not passthrough.not_for_buildx(plan.passthrough)
        and plan.docker is not None
        and plan.docker.own_builder() is not None
    )


#: What a dry run takes a push and a read-back to have answered.
DRY_DIGEST = "sha256:" + "0" * 64

#: What ``docker buildx build --metadata-file`` writes of a pushed image: its manifest digest
#: (https://docs.docker.com/reference/cli/docker/buildx/build/#metadata-file).
PUSHED_DIGEST_KEY = "containerimage.digest"


def build_command(
    plan: BuildPlan,
    push: Optional[PushPlan] = None,
    *,
    metadata_file: Optional[str] = None,
    iid_file: Optional[str] = None,
) -> Command:
    """ONE ``docker build`` with every tag (bash: one build, then a ``docker tag`` per tag).

    ``docker buildx build`` when the plan needs it (``plan.buildx``): ``--load`` for one
    platform, ``--push`` of the push's refs for several (buildx.py). ``push``: what the
    pre-flight decided. When the build pushes (``push.by_build``) on one platform it is
    ``docker buildx build --builder <the daemon's own builder> ... --push``, writing what it
    pushed to ``metadata_file``, the command's answer (``PUSHED_DIGEST_KEY``). A build that
    pushes drops buildx's default attestations, which would make the push an image index
    SageMaker refuses: ``docker buildx build`` gets ``--provenance=false --sbom=false``, a plain
    ``docker build`` (buildx on docker >= 23) ``BUILDX_NO_DEFAULT_ATTESTATIONS=1``.
    ``iid_file``: ``--iidfile`` there, the image's ID, which the rest of the run follows instead
    of a tag another build may move meanwhile (a multi-platform build leaves no local image:
    none)."""
    opts = plan.options
    pushes = plan.multi_platform or (push is not None and push.by_build)
    buildx = bool(plan.buildx) or pushes
    no_attestations = push is not None and buildx
    if buildx:
        argv = ["docker", "buildx", "build"]
        builder = (
            opts.builder
            if plan.buildx
            else (plan.docker.own_builder() if plan.docker is not None else None)
        )
        if builder:
            argv += ["--builder", builder]
        argv += ["-f", opts.file]
    else:
        argv = ["docker", "build", "-f", opts.file]
    for ref in push.refs if push is not None and plan.multi_platform else plan.refs:
        argv += ["-t", ref]
    for key, value in plan.build_args:
        argv += ["--build-arg", f"{key}={value}"]
    if plan.created:
        argv += ["--label", f"{CREATED_LABEL}={plan.created}"]
    argv += ["--label", f"{REPOSITORY_LABEL}={plan.base}"]
    iid = iid_file if not plan.multi_platform else None
    if iid:  # the image's ID, which the rest of the run follows (steps.build.Built)
        argv += ["--iidfile", iid]
    if opts.no_cache:
        argv.append("--no-cache")
    if opts.pull:
        argv.append("--pull")
    if plan.platforms:
        argv += ["--platform", ",".join(plan.platforms)]
    for cache in plan.cache_from:
        argv += ["--cache-from", cache.raw if plan.buildx else cache.ref or cache.raw]
    for cache in plan.cache_to:
        if plan.buildx:  # plain docker build: BUILDKIT_INLINE_CACHE=1 among the build args
            argv += ["--cache-to", cache.raw]
    if buildx:
        # the docker driver's --push also stores the image in the daemon, tagged, like --load
        argv.append("--push" if pushes else "--load")
    if no_attestations:
        # buildx would otherwise push an OCI index with provenance, which SageMaker refuses.
        argv += ["--provenance=false", "--sbom=false"]
    if pushes and not plan.multi_platform and not opts.not_for_sagemaker:
        # SageMaker pulls a Docker v2 schema 2 manifest only: the image exporter writes OCI media
        # types when told to, or by a builder's default (an engine with the containerd image
        # store may have it so), so the push says which (sagemaker.py, docs/smoke-test.md);
        # buildx merges it into --push's export
        argv += ["--output", "type=image,oci-mediatypes=false"]
    # a one-platform build that pushes writes what it pushed there (a multi-platform one is
    # read back from the registry: verify.verify)
    answer = metadata_file if pushes and not plan.multi_platform else None
    if answer:
        argv += ["--metadata-file", answer]
    argv += plan.host.build_words()
    argv += plan.passthrough
    argv.append(opts.context)
    env: tuple[tuple[str, str], ...] = () if buildx else (("DOCKER_BUILDKIT", "1"),)
    env += plan.host.build_env()
    if push is not None and not buildx:
        # A plain `docker build` is buildx on docker >= 23 with the plugin, whose default
        # provenance attestation would make the push an image index (SageMaker refuses one);
        # buildx reads this variable (since 0.10, the release that added the default) and the
        # classic builder ignores it, so no probe of the client is needed:
        # https://docs.docker.com/build/building/variables/#buildx_no_default_attestations
        env += (("BUILDX_NO_DEFAULT_ATTESTATIONS", "1"),)
    assume = json.dumps({PUSHED_DIGEST_KEY: DRY_DIGEST}) if answer else ""
    return Command(
        tuple(argv), env=env, mode=Mode.WATCH, answer_file=answer, assume=assume, iid_file=iid
    )
