"""The push's pre-flight, before the build: the credential helper, for ECR the login and the
repository, the registry reached as the daemon reaches it (its proxies, its insecure
registries) and docker's credentials accepted, what each tag names now (``read_existing``) and
whether a version tag would move (``check_version_tags``). ``prepare`` returns the
``PushPlan`` the build and the push consume."""

from __future__ import annotations

import os
import shutil
import time
from typing import TYPE_CHECKING, Callable, Optional, TypeVar, Union
from collections.abc import Mapping, Sequence

from ragbuild import ecr
from ragbuild.docker_config import (
    ECR_HELPER,
    Credentials,
    DockerConfig,
    RegistryConfig,
    daemon_down,
    daemon_unreachable,
    parse_registry_config,
    read_docker_config,
)
from ragbuild.errors import DockerUnavailable, PushFailed
from ragbuild.plan import BuildPlan, PushPlan
from ragbuild.run.command import Command, Kind
from ragbuild.run.runner import Runner, tail

if TYPE_CHECKING:  # access (urllib, ssl) and proxy are imported by a push only
    from ragbuild import manifest, proxy, registry
    from ragbuild.credentials import Login
from ragbuild.proxy import proxy_command
from ragbuild.push import retrying

T = TypeVar("T")


def prepare(
    runner: Runner,
    plan: BuildPlan,
    docker_config: Optional[DockerConfig] = None,
    environ: Optional[Mapping[str, str]] = None,
    image_id: Optional[str] = None,
) -> PushPlan:
    """Before the build, for every registry: the credential helper docker resolves for the host
    is installed; for ECR the login (none with ECR's own helper), the repository and its
    immutable tags; and the registry answers, as the daemon reaches it, and accepts docker's
    credentials (``reach_registry``). No probe of the client for attestations: see
    ``plan.build_command``. The returned plan keeps the registry session for the read-back.
    ``docker_config`` and ``environ`` default to docker's config and the process environment.
    ``image_id``: the local image ``push IMAGE`` ships; a version tag already naming it (its
    manifest's config digest is that ID: ``Manifest.names_image``) is no move."""
    from ragbuild.credentials import Login, docker_credentials

    environ = os.environ if environ is None else environ
    docker_config = read_docker_config(environ) if docker_config is None else docker_config
    registry = plan.registry
    assert registry is not None
    refs: tuple[str, ...] = plan.refs
    skipped: tuple[str, ...] = ()
    creds = docker_credentials(runner, docker_config, registry.host)
    check_helper(runner, creds, environ)
    logged_in = None  # the ECR password docker login just stored: what docker now sends
    unchecked = False  # ECR denied describe-repositories: mutability unknown
    if registry.is_ecr:
        logged_in = ecr.authenticate(runner, registry, creds, environ)
        if logged_in is not None:
            creds = after_login(creds)
        repository = ecr.check_repository(runner, registry, environ)
        unchecked = not repository.checked
        skip_tags = ecr.immutable_conflicts(runner, plan, repository, environ)
        skipped = tuple(f"{plan.base}:{tag}" for tag in skip_tags)
        refs = tuple(ref for ref in plan.refs if ref not in skipped)
    session = reach_registry(
        runner,
        plan,
        creds,
        docker_config,
        Login("AWS", logged_in) if logged_in is not None else None,
        environ,
    )
    found: dict[str, manifest.Manifest] = {}
    before = read_existing(runner, plan, session, refs, manifests=found)
    same = frozenset(
        ref
        for ref in plan.version_refs
        if image_id and ref in found and found[ref].names_image(image_id)
    )
    check_version_tags(runner, plan, before, same)
    if unchecked:
        refs = existing_first(refs, before)
        if plan.options.skip_existing_immutable:  # those ECR could refuse: the existing ones
            skipped = tuple(ref for ref in refs if before.get(ref) != "")
            refs = tuple(ref for ref in refs if ref not in skipped)
            if skipped:
                runner.log(
                    f"--skip-existing-immutable: leaving out the tags {registry.path} "
                    f"already has (its mutability is unknown): "
                    f"{', '.join(ref.rsplit(':', 1)[1] for ref in skipped)}"
                )
            if not refs:
                raise PushFailed(
                    f"every planned tag already exists in {registry.path} and "
                    "--skip-existing-immutable leaves them out: nothing to push"
                )
    return PushPlan(
        refs, skipped, creds, session.insecure, session=session, before=before, in_order=unchecked
    )


def after_login(creds: Credentials) -> Credentials:
    """Where docker keeps ``creds.host``'s credentials once ``docker login`` stored them: with
    a helper (``credsStore``, ``credHelpers``) in that helper, unchanged; without one in the
    ``auths`` entry of the host in the same config.json (docker cli ``configfile.
    GetCredentialsStore``: the file store writes ``auths[<server address>]``). Messages after
    the login then say what docker now uses, not what the config held before it."""
    if creds.helper or creds.auth_key:
        return creds
    return Credentials(
        host=creds.host, origin="auths", auth_key=creds.host, config_path=creds.config_path
    )


def existing_first(
    refs: Sequence[str], before: Mapping[str, Union[str, manifest.ReadFailed]]
) -> tuple[str, ...]:
    """``refs`` with those the registry already has (``before``: a digest, or unreadable)
    first, each group in its order. Used when ECR's tag mutability is unknown (describe
    denied): only an existing tag can be refused as immutable (ECR refuses overwriting a tag,
    never a new one), and the first ref is pushed alone (``push``), so an immutable repository
    stops the push before any tag moved or appeared. A build that pushes itself (several
    platforms) gets the refs in this order as its ``-t`` list, which BuildKit's image exporter
    pushes one name at a time, in order, stopping at the first refused
    (https://github.com/moby/buildkit/blob/master/exporter/containerimage/export.go)."""

    def new(ref: str) -> bool:
        return before.get(ref) == ""

    return tuple(sorted(refs, key=new))


def read_existing(
    runner: Runner,
    plan: BuildPlan,
    session: registry.Session,
    refs: Sequence[str],
    sleep: Callable[[float], None] = time.sleep,
    manifests: Optional[dict[str, manifest.Manifest]] = None,
) -> dict[str, Union[str, manifest.ReadFailed]]:
    """What each of ``refs`` names in the registry now, all asked at once (``GET`` of the tag's
    manifest through the pre-flight's session; a transient failure retried as a push is):
    ref -> manifest digest, "" where the tag does not exist (HTTP 404), the ``manifest.ReadFailed``
    where it could not be read (a version tag's check cannot go on without it: see
    ``check_version_tags``). A dry run says what it would ask and takes every tag to be new.
    ``manifests``, when given, gets ref -> ``manifest.Manifest`` of each existing tag."""
    from ragbuild import manifest, registry

    def ask(ref: str) -> Union[str, manifest.ReadFailed]:
        tag = ref.rsplit(":", 1)[1]

        def attempt() -> Union[Optional[manifest.Manifest], manifest.ReadFailed]:
            try:
                return manifest.find_manifest(session, tag)
            except manifest.ReadFailed as failed:
                return failed
            except ValueError as bad:  # served, but no manifest: it exists, digest unknown
                return manifest.ReadFailed(
                    f"{manifest.manifest_url(session, tag)} served no manifest: {bad}", 200
                )

        found, _ = retrying(
            runner,
            attempt,
            lambda got: str(got) if isinstance(got, manifest.ReadFailed) else None,
            sleep,
            f"GET {manifest.manifest_url(session, tag)}",
            plan.limits,
        )
        if isinstance(found, manifest.ReadFailed):
            return found
        if found is not None and manifests is not None:
            manifests[ref] = found
        return found.digest if found is not None else ""

    version = set(plan.version_refs)
    checks = [
        (
            f"GET {manifest.manifest_url(session, ref.rsplit(':', 1)[1])} "
            f"({registry.describe(session)}) to learn what the tag names before the push"
            + (
                " (an existing version tag stops the run unless --replace-version-tags)"
                if ref in version
                else ""
            ),
            lambda ref=ref: ask(ref),
            "",
        )
        for ref in refs
    ]
    answers = runner.check_all(checks)
    return dict(zip(refs, answers))


def check_version_tags(
    runner: Runner,
    plan: BuildPlan,
    before: Mapping[str, Union[str, manifest.ReadFailed]],
    same: frozenset[str] = frozenset(),
) -> None:
    """A version tag (``plan.version_refs``) the registry already has stops the run before the
    build (PushFailed, exit 1), naming the digest it names: a version names one image for good,
    and a rebuilt image never has the same digest (its created label differs). Moving tags
    (``prod``, ``latest``, channels) move as before. With --replace-version-tags the run goes on
    and says which tags it moves. A version tag whose state could not be read stops the run too:
    the check cannot pass on a guess. ``same``: version tags that already name the image this
    run pushes (``push IMAGE`` run again): no move, said and left to the push (a no-op)."""
    from ragbuild import manifest

    for ref in plan.version_refs:
        if ref not in before:  # left out of the push (an immutable ECR tag, skipped)
            continue
        found = before[ref]
        if isinstance(found, manifest.ReadFailed):
            raise PushFailed(
                f"cannot tell whether {ref} already exists, so whether this push "
                f"would move a version tag ({tail(str(found), 1)}); checked before "
                "the build, nothing was built or pushed"
            )
    if same:
        named = ", ".join(ref for ref in plan.version_refs if ref in same)
        runner.report(
            f"{named}: already this image in the registry (its manifest's config digest is "
            "the image's ID), so no version tag moves; pushed again, a no-op"
        )
    existing = [
        (ref, before[ref])
        for ref in plan.version_refs
        if isinstance(before.get(ref), str) and before[ref] and ref not in same
    ]
    if not existing:
        return
    named = ", ".join(f"{ref} (now {digest})" for ref, digest in existing)
    if plan.options.replace_version_tags:
        runner.log(
            f"warning: --replace-version-tags: this push moves {named} to the image this run builds"
        )
        return
    raise PushFailed(
        f"the registry already has {named}: a version tag never moves to another "
        "image (a rebuilt one never has the same digest); release a new --version, "
        "or pass --replace-version-tags to move it (checked before the build; "
        "nothing was built or pushed)"
    )


def reach_registry(
    runner: Runner,
    plan: BuildPlan,
    creds: Credentials,
    docker_config: DockerConfig,
    login: Optional[Login] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> registry.Session:
    """The pre-flight's (and doctor's) question to the registry (``check``): it answers
    over what the daemon would use (its proxy settings, ``daemon_proxies``), and takes docker's
    credentials. The daemon's registry configuration (``docker info``) is asked only when its
    answer decides something: verified HTTPS failed for a host that is not loopback
    (``registry.reach``). Returns the session, for the read-back."""
    from ragbuild.registry import check

    registry = plan.registry
    assert registry is not None
    proxies = daemon_proxies(runner, plan, os.environ if environ is None else environ)
    return check(
        runner,
        registry,
        creds,
        docker_config,
        lambda: daemon_registry_config(runner, plan).is_insecure(registry.host),
        login=login,
        proxies=proxies,
    )


def daemon_proxies(
    runner: Runner, plan: BuildPlan, environ: Mapping[str, str]
) -> proxy.ProxySettings:
    """The daemon's proxy settings (``proxy_command``), for ragbuild's own registry requests,
    with a one-line warning where they cannot be followed exactly: a proxy whose credentials
    ``docker info`` masks (the same proxy's in the shell's ``https_proxy``/``http_proxy`` are
    used when there, else none), a proxy that is not ``http://`` (urllib cannot use it: direct),
    a daemon on another machine (whose network the requests from here may not see)."""
    from ragbuild import proxy

    endpoint = (
        plan.docker.daemon_host() if plan.docker is not None else os.environ.get("DOCKER_HOST")
    )
    if proxy.remote_daemon(endpoint):
        runner.log(
            f"warning: the Docker daemon is on another machine ({endpoint}): ragbuild "
            "checks the registry from here, through the daemon's proxy settings, and may "
            "not see it as the daemon's push does"
        )
    settings = _ask_docker_info(
        runner,
        plan,
        proxy_command(),
        proxy.parse_info,
        unknown="which proxy the daemon pushes through",
        what="the daemon's proxy settings",
    )
    values = {"http_proxy": settings.http_proxy, "https_proxy": settings.https_proxy}
    for masked in settings.masked():
        given = proxy.with_credentials_from(masked, environ)
        bare = proxy.without_credentials(masked)
        if given:
            runner.log(
                f"warning: `docker info` hides the credentials of the daemon's proxy "
                f"{bare}; ragbuild's registry checks use those of the same proxy in the "
                "shell's proxy variables"
            )
        else:
            runner.log(
                f"warning: `docker info` hides the credentials of the daemon's proxy "
                f"{bare}; ragbuild's registry checks go through it without them (if it "
                f"asks for them, HTTP 407, give them: https_proxy=<that URL with user and "
                f"password>)"
            )
        for key, value in values.items():
            if proxy.proxy_url(value) == masked:
                values[key] = given or bare
    for value in dict.fromkeys(values.values()):
        url = proxy.proxy_url(value)
        if url and not url.lower().startswith("http://"):
            runner.log(
                f"warning: the daemon's proxy {proxy.without_credentials(url)} is not "
                "an http:// proxy, which ragbuild's registry checks cannot use: they go "
                "direct"
            )
    return proxy.ProxySettings(values["http_proxy"], values["https_proxy"], settings.no_proxy)


def check_helper(runner: Runner, creds: Credentials, environ: Mapping[str, str]) -> None:
    """The credential helper docker resolves for the host must be installed: without it docker
    can neither read the credentials for the push nor store a login (a hint to run ``docker
    login`` would fail the same way)."""
    if not creds.helper:
        return
    if shutil.which(f"docker-credential-{creds.helper}", path=environ.get("PATH")):
        return
    install = " (amazon-ecr-credential-helper)" if creds.helper == ECR_HELPER else ""
    runner.stop_or_warn(
        PushFailed(
            f"docker-credential-{creds.helper}, which {creds.origin} in {creds.config_path} names "
            f"for {creds.host}, is not installed (not on PATH): docker can neither read nor store "
            f"credentials for {creds.host}; install it{install}, or remove that {creds.origin} "
            "entry"
        )
    )


def daemon_registry_config(runner: Runner, plan: BuildPlan) -> RegistryConfig:
    """The daemon's registry configuration (``docker info``): whether it reaches a registry
    insecurely is its decision, not something the host's text tells (asked by
    ``reach_registry`` only when verified HTTPS failed)."""
    return _ask_docker_info(
        runner,
        plan,
        registry_config_command(),
        parse_registry_config,
        unknown="whether the daemon reaches the registry over plain HTTP",
        what="the daemon's registry configuration",
    )


def _ask_docker_info(
    runner: Runner,
    plan: BuildPlan,
    command: Command,
    parse: Callable[[str], T],
    *,
    unknown: str,
    what: str,
) -> T:
    """``parse`` of what ``command`` (a ``docker info --format``) printed. A daemon that does
    not answer is ``DockerUnavailable``; another failure, or an answer ``parse`` refuses
    (ValueError), ``PushFailed`` saying what stays ``unknown``."""
    result = runner.run(command)
    if not result.ok:
        output = result.stdout + result.stderr
        if daemon_down(output):
            raise DockerUnavailable(daemon_unreachable(plan.docker))
        raise PushFailed(f"`docker info` failed, so {unknown} is unknown:\n{tail(output, 5)}")
    try:
        return parse(result.stdout)
    except ValueError as bad:
        raise PushFailed(f"cannot read {what} from `docker info`: {bad}") from None


def registry_config_command() -> Command:
    """The daemon's registry configuration (``docker info``): which registries it reaches over
    plain HTTP or unverified TLS. Asked only inside the pre-flight's registry check, after
    verified HTTPS failed (``registry.reach``), so a dry run, which sends no request, never
    prints it."""
    return Command(
        ("docker", "info", "--format", REGISTRY_INFO_FORMAT), check=False, kind=Kind.PROBE
    )


#: ``docker info``'s registry configuration and its storage driver's status (the containerd
#: image store reaches loopback registries over plain HTTP on its own: ``RegistryConfig``).
REGISTRY_INFO_FORMAT = (
    '{"RegistryConfig":{{json .RegistryConfig}},"DriverStatus":{{json .DriverStatus}}}'
)
