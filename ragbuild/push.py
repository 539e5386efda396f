"""``--push``: push every tag, retrying transient failures, and verify every digest.

What to push and how is decided before the build (``prepare``: the refs, the immutable tags
left out, whether the build must drop attestations, the credentials) and handed to the build as
a ``PushPlan``. After the build, ``push`` pushes each ref on its own (``docker push``, retried
with backoff when the failure is transient) and ``verify`` reads every pushed ref back from the
registry's API, in-process and concurrently, through the pre-flight's ``access.Session`` (its
scheme, TLS and credentials): every tag must name the one single-image manifest ``docker push``
reported (SageMaker refuses an index:
https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-inference-code.html), or, for a
multi-platform build, one image index holding every platform. ECR's login and repository checks
are in ecr.py. Like the other steps this module starts no process itself.
"""

from __future__ import annotations

import enum
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from typing import (TYPE_CHECKING, Callable, Mapping, MutableMapping, Optional, Sequence,
                    TypeVar, Union)

from ragbuild import ecr
from ragbuild.builders import (ECR_HELPER, NOT_FOR_SAGEMAKER, Credentials,
                               DockerConfig, RegistryConfig, daemon_down, daemon_unreachable,
                               parse_registry_config, read_docker_config)
from ragbuild.errors import DockerUnavailable, Interrupted, PushFailed, interrupted_text, signal_of
from ragbuild.output import SUCCESS
from ragbuild.limits import Limits
from ragbuild.plan import DRY_DIGEST, BuildPlan, Command, Kind, Mode, PushPlan
from ragbuild.runner import Result, Runner, tail

if TYPE_CHECKING:  # access (urllib, ssl) and proxy are imported by a push only
    from ragbuild import access, proxy

R = TypeVar("R")

# docker push's last line: "<tag>: digest: sha256:<64 hex> size: <bytes>"
PUSH_DIGEST_RE = re.compile(r"digest: (?P<digest>sha256:[0-9a-f]{64}) size: \d+")


class Failure(enum.Enum):
    """Kinds of failure of a registry operation, most specific first (a denied push that also
    says EOF is an authentication failure, and is not retried)."""

    IMMUTABLE = "immutable"
    AUTH = "auth"
    NOT_FOUND = "not-found"
    DAEMON = "daemon"
    UNREACHABLE = "unreachable"
    TRANSIENT = "transient"
    OTHER = "other"


_PATTERNS = (
    (Failure.IMMUTABLE, re.compile(r"already exists in the|cannot be overwritten", re.I)),
    (Failure.AUTH, re.compile(r"unauthorized|no basic auth credentials|denied", re.I)),
    (Failure.NOT_FOUND, re.compile(r"name unknown|repository\b[^\n]*\bnot found"
                                   r"|does not exist in the registry", re.I)),
    (Failure.UNREACHABLE, re.compile(r"connection refused|no such host|server misbehaving", re.I)),
    (Failure.TRANSIENT, re.compile(
        r"connection reset|broken pipe|i/o timeout|timeout|timed out|\bEOF\b"
        r"|toomanyrequests|too many requests"
        r"|HTTP(?: status)?:? *5\d\d\b|\b5\d\d (?:internal server error|bad gateway"
        r"|service unavailable|gateway time-?out)"
        r"|internal server error|bad gateway|service unavailable|gateway time-?out", re.I)),
)


# --- pure helpers ------------------------------------------------------------------------------


def classify_failure(output: str) -> Failure:
    """Which kind of failure a registry command's output describes."""
    for kind, pattern in _PATTERNS[:3]:
        if pattern.search(output):
            return kind
    if daemon_down(output):
        return Failure.DAEMON
    for kind, pattern in _PATTERNS[3:]:
        if pattern.search(output):
            return kind
    return Failure.OTHER


def parse_push_digest(output: str) -> Optional[str]:
    """The manifest digest ``docker push`` reported (the last one it printed), or None."""
    found = PUSH_DIGEST_RE.findall(output)
    return found[-1] if found else None


def normalize_platform(platform: str) -> str:
    """containerd's spelling rules for comparison: arm64/v8 is arm64, arm is arm/v7, amd64/v1
    is amd64."""
    parts = platform.split("/")
    if parts[1:2] == ["arm64"] and parts[2:] == ["v8"] or parts[1:2] == ["amd64"] and parts[2:] == ["v1"]:
        parts = parts[:2]
    elif parts[1:] == ["arm"]:
        parts.append("v7")
    return "/".join(parts)


# --- commands ----------------------------------------------------------------------------------


def registry_config_command() -> Command:
    """The daemon's registry configuration (``docker info``): which registries it reaches over
    plain HTTP or unverified TLS. Asked only inside the pre-flight's registry check, after
    verified HTTPS failed (``access.reach``), so a dry run, which sends no request, never
    prints it."""
    return Command(("docker", "info", "--format", "{{json .RegistryConfig}}"), check=False,
                   kind=Kind.PROBE)


def proxy_command() -> Command:
    """The daemon's proxy settings (``docker info``: HTTPProxy, HTTPSProxy, NoProxy), which
    ragbuild's own registry requests follow (proxy.py). Asked once, by the push pre-flight
    (and doctor), just before the first registry request; a dry run takes it as no proxy."""
    from ragbuild import proxy

    return Command(("docker", "info", "--format", proxy.INFO_FORMAT), check=False,
                   kind=Kind.PROBE, assume=json.dumps({"HTTPProxy": "", "HTTPSProxy": "",
                                                       "NoProxy": ""}))


def push_command(ref: str, mode: Mode = Mode.TEE) -> Command:
    """``docker push ref``: shown live (``TEE``), or kept and shown when done (``CAPTURE``, for
    the tags pushed at once)."""
    return Command(("docker", "push", ref), mode=mode, check=False,
                   assume=f"digest: {DRY_DIGEST} size: 0")


# --- before the build --------------------------------------------------------------------------


def prepare(runner: Runner, plan: BuildPlan, docker_config: Optional[DockerConfig] = None,
            environ: Optional[Mapping[str, str]] = None) -> PushPlan:
    """Before the build, for every registry: the credential helper docker resolves for the host
    is installed; for ECR the login (none with ECR's own helper), the repository and its
    immutable tags; and the registry answers, as the daemon reaches it, and accepts docker's
    credentials (``reach_registry``). No probe of the client for attestations: see
    ``plan.build_command``. The returned plan keeps the registry session for the read-back.
    ``docker_config`` and ``environ`` default to docker's config and the process environment."""
    from ragbuild import access

    environ = os.environ if environ is None else environ
    docker_config = read_docker_config(environ) if docker_config is None else docker_config
    registry = plan.registry
    assert registry is not None
    refs: tuple[str, ...] = plan.refs
    skipped: tuple[str, ...] = ()
    creds = docker_config.credentials(registry.host)
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
    session = reach_registry(runner, plan, creds, docker_config,
                             access.Login("AWS", logged_in) if logged_in is not None else None,
                             environ)
    before = read_existing(runner, plan, session, refs)
    check_version_tags(runner, plan, before)
    if unchecked:
        refs = existing_first(refs, before)
        if plan.options.skip_existing_immutable:  # those ECR could refuse: the existing ones
            skipped = tuple(ref for ref in refs if before.get(ref) != "")
            refs = tuple(ref for ref in refs if ref not in skipped)
            if skipped:
                runner.log(f"--skip-existing-immutable: leaving out the tags {registry.path} "
                           f"already has (its mutability is unknown): "
                           f"{', '.join(ref.rsplit(':', 1)[1] for ref in skipped)}")
            if not refs:
                raise PushFailed(f"every planned tag already exists in {registry.path} and "
                                 "--skip-existing-immutable leaves them out: nothing to push")
    return PushPlan(refs, skipped, creds, session.insecure, session=session, before=before,
                    in_order=unchecked)


def after_login(creds: Credentials) -> Credentials:
    """Where docker keeps ``creds.host``'s credentials once ``docker login`` stored them: with
    a helper (``credsStore``, ``credHelpers``) in that helper, unchanged; without one in the
    ``auths`` entry of the host in the same config.json (docker cli ``configfile.
    GetCredentialsStore``: the file store writes ``auths[<server address>]``). Messages after
    the login then say what docker now uses, not what the config held before it."""
    if creds.helper or creds.auth_key:
        return creds
    return Credentials(host=creds.host, origin="auths", auth_key=creds.host,
                       config_path=creds.config_path)


def existing_first(refs: Sequence[str], before: Mapping) -> tuple:
    """``refs`` with those the registry already has (``before``: a digest, or unreadable)
    first, each group in its order. Used when ECR's tag mutability is unknown (describe
    denied): only an existing tag can be refused as immutable (ECR refuses overwriting a tag,
    never a new one), and the first ref is pushed alone (``push``), so an immutable repository
    stops the push before any tag moved or appeared."""
    def new(ref: str) -> bool:
        return before.get(ref) == ""

    return tuple(sorted(refs, key=new))


def read_existing(runner: Runner, plan: BuildPlan, session: "access.Session", refs: Sequence[str],
                  sleep: Callable[[float], None] = time.sleep) -> dict:
    """What each of ``refs`` names in the registry now, all asked at once (``GET`` of the tag's
    manifest through the pre-flight's session; a transient failure retried as a push is):
    ref -> manifest digest, "" where the tag does not exist (HTTP 404), the ``access.ReadFailed``
    where it could not be read (a version tag's check cannot go on without it: see
    ``check_version_tags``). A dry run says what it would ask and takes every tag to be new."""
    from ragbuild import access

    def ask(ref: str) -> Union[str, "access.ReadFailed"]:
        tag = ref.rsplit(":", 1)[1]

        def attempt() -> Union[Optional[access.Manifest], access.ReadFailed]:
            try:
                return access.find_manifest(session, tag)
            except access.ReadFailed as failed:
                return failed
            except ValueError as bad:  # served, but no manifest: it exists, digest unknown
                return access.ReadFailed(f"{access.manifest_url(session, tag)} served no "
                                         f"manifest: {bad}", 200)

        found, _ = retrying(runner, attempt,
                            lambda got: str(got) if isinstance(got, access.ReadFailed) else None,
                            sleep, f"GET {access.manifest_url(session, tag)}", plan.limits)
        if isinstance(found, access.ReadFailed):
            return found
        return found.digest if found is not None else ""

    version = set(plan.version_refs)
    checks = [(f"GET {access.manifest_url(session, ref.rsplit(':', 1)[1])} "
               f"({access.describe(session)}) to learn what the tag names before the push"
               + (" (an existing version tag stops the run unless --replace-version-tags)"
                  if ref in version else ""),
               lambda ref=ref: ask(ref), "") for ref in refs]
    answers = runner.check_all(checks)
    return dict(zip(refs, answers))


def check_version_tags(runner: Runner, plan: BuildPlan, before: Mapping) -> None:
    """A version tag (``plan.version_refs``) the registry already has stops the run before the
    build (PushFailed, exit 1), naming the digest it names: a version names one image for good,
    and a rebuilt image never has the same digest (its created label differs). Moving tags
    (``prod``, ``latest``, channels) move as before. With --replace-version-tags the run goes on
    and says which tags it moves. A version tag whose state could not be read stops the run too:
    the check cannot pass on a guess."""
    from ragbuild import access

    for ref in plan.version_refs:
        if ref not in before:  # left out of the push (an immutable ECR tag, skipped)
            continue
        found = before[ref]
        if isinstance(found, access.ReadFailed):
            raise PushFailed(f"cannot tell whether {ref} already exists, so whether this push "
                             f"would move a version tag ({tail(str(found), 1)}); checked before "
                             "the build, nothing was built or pushed")
    existing = [(ref, before[ref]) for ref in plan.version_refs
                if isinstance(before.get(ref), str) and before[ref]]
    if not existing:
        return
    named = ", ".join(f"{ref} (now {digest})" for ref, digest in existing)
    if plan.options.replace_version_tags:
        runner.log(f"warning: --replace-version-tags: this push moves {named} to the image this "
                   "run builds")
        return
    raise PushFailed(f"the registry already has {named}: a version tag never moves to another "
                     "image (a rebuilt one never has the same digest); release a new --version, "
                     "or pass --replace-version-tags to move it (checked before the build; "
                     "nothing was built or pushed)")


def reach_registry(runner: Runner, plan: BuildPlan, creds: Credentials,
                   docker_config: DockerConfig,
                   login: Optional["access.Login"] = None,
                   environ: Optional[Mapping[str, str]] = None) -> "access.Session":
    """The pre-flight's (and doctor's) question to the registry (``access.check``): it answers
    over what the daemon would use (its proxy settings, ``daemon_proxies``), and takes docker's
    credentials. The daemon's registry configuration (``docker info``) is asked only when its
    answer decides something: verified HTTPS failed for a host that is not loopback
    (``access.reach``). Returns the session, for the read-back."""
    from ragbuild import access

    registry = plan.registry
    assert registry is not None
    proxies = daemon_proxies(runner, plan, os.environ if environ is None else environ)
    return access.check(runner, registry, creds, docker_config,
                        lambda: daemon_registry_config(runner, plan).is_insecure(registry.host),
                        login=login, proxies=proxies)


def daemon_proxies(runner: Runner, plan: BuildPlan,
                   environ: Mapping[str, str]) -> "proxy.ProxySettings":
    """The daemon's proxy settings (``proxy_command``), for ragbuild's own registry requests,
    with a one-line warning where they cannot be followed exactly: a proxy whose credentials
    ``docker info`` masks (the same proxy's in the shell's ``https_proxy``/``http_proxy`` are
    used when there, else none), a proxy that is not ``http://`` (urllib cannot use it: direct),
    a daemon on another machine (whose network the requests from here may not see)."""
    from ragbuild import proxy

    endpoint = plan.docker.daemon_host() if plan.docker is not None else os.environ.get(
        "DOCKER_HOST")
    if proxy.remote_daemon(endpoint):
        runner.log(f"warning: the Docker daemon is on another machine ({endpoint}): ragbuild "
                   "checks the registry from here, through the daemon's proxy settings, and may "
                   "not see it as the daemon's push does")
    result = runner.run(proxy_command())
    if not result.ok:
        output = result.stdout + result.stderr
        if daemon_down(output):
            raise DockerUnavailable(daemon_unreachable(plan.docker))
        raise PushFailed(f"`docker info` failed, so which proxy the daemon pushes through is "
                         f"unknown:\n{tail(output, 5)}")
    try:
        settings = proxy.parse_info(result.stdout)
    except ValueError as bad:
        raise PushFailed(f"cannot read the daemon's proxy settings from `docker info`: "
                         f"{bad}") from None
    values = {"http_proxy": settings.http_proxy, "https_proxy": settings.https_proxy}
    for masked in settings.masked():
        given = proxy.with_credentials_from(masked, environ)
        bare = proxy.without_credentials(masked)
        if given:
            runner.log(f"warning: `docker info` hides the credentials of the daemon's proxy "
                       f"{bare}; ragbuild's registry checks use those of the same proxy in the "
                       "shell's proxy variables")
        else:
            runner.log(f"warning: `docker info` hides the credentials of the daemon's proxy "
                       f"{bare}; ragbuild's registry checks go through it without them (if it "
                       f"asks for them, HTTP 407, give them: https_proxy=<that URL with user and "
                       f"password>)")
        for key, value in values.items():
            if proxy.proxy_url(value) == masked:
                values[key] = given or bare
    for value in dict.fromkeys(values.values()):
        url = proxy.proxy_url(value)
        if url and not url.lower().startswith("http://"):
            runner.log(f"warning: the daemon's proxy {proxy.without_credentials(url)} is not "
                       "an http:// proxy, which ragbuild's registry checks cannot use: they go "
                       "direct")
    return proxy.ProxySettings(values["http_proxy"], values["https_proxy"], settings.no_proxy)


def check_helper(runner: Runner, creds: Credentials, environ: Mapping[str, str]) -> None:
    """The credential helper docker resolves for the host must be installed: without it docker
    can neither read the credentials for the push nor store a login (a hint to run ``docker
    login`` would fail the same way)."""
    if not creds.helper:
        return
    if shutil.which(f"docker-credential-{creds.helper}", path=environ.get("PATH")):
        return
    install = (" (amazon-ecr-credential-helper)" if creds.helper == ECR_HELPER else "")
    runner.stop_or_warn(PushFailed(
        f"docker-credential-{creds.helper}, which {creds.origin} in {creds.config_path} names "
        f"for {creds.host}, is not installed (not on PATH): docker can neither read nor store "
        f"credentials for {creds.host}; install it{install}, or remove that {creds.origin} "
        "entry"))


def daemon_registry_config(runner: Runner, plan: BuildPlan) -> RegistryConfig:
    """The daemon's registry configuration (``docker info``): whether it reaches a registry
    insecurely is its decision, not something the host's text tells (asked by
    ``reach_registry`` only when verified HTTPS failed)."""
    result = runner.run(registry_config_command())
    if not result.ok:
        output = result.stdout + result.stderr
        if daemon_down(output):
            raise DockerUnavailable(daemon_unreachable(plan.docker))
        raise PushFailed(f"`docker info` failed, so whether the daemon reaches the registry over "
                         f"plain HTTP is unknown:\n{tail(output, 5)}")
    try:
        return parse_registry_config(result.stdout)
    except ValueError as bad:
        raise PushFailed(f"cannot read the daemon's registry configuration from `docker info`: "
                         f"{bad}") from None


# --- after the build ---------------------------------------------------------------------------


def retrying(runner: Runner, attempt: Callable[[], R], failed: Callable[[R], Optional[str]],
             sleep: Callable[[float], None], what: str, limits: Limits = Limits(),
             first: Optional[R] = None) -> tuple[R, Optional[Failure]]:
    """``attempt()``; retry a transient failure (``failed(result)``: what it said, None when it
    succeeded; ``classify_failure`` tells the kind) with exponential backoff:
    ``limits.push_attempts`` in all, ``limits.push_backoff`` seconds before the second, doubled
    before each further one (limits.py: --push-attempts, --push-backoff). ``first``: the result
    of a first attempt already made. Returns the last result and its failure kind (None when it
    succeeded)."""
    tries = 1
    result = first if first is not None else attempt()
    while (output := failed(result)) is not None:
        kind = classify_failure(output)
        if kind is not Failure.TRANSIENT or tries >= limits.push_attempts:
            return result, kind
        delay = limits.push_backoff * 2 ** (tries - 1)
        runner.log(f"{what} failed ({tail(output, 1)}); retrying in {delay:g}s "
                   f"(attempt {tries + 1} of {limits.push_attempts})")
        with runner.waiting(f"the next attempt of {what}", delay):
            sleep(delay)
        tries += 1
        result = attempt()
    return result, None


def run_retrying(runner: Runner, cmd: Command, sleep: Callable[[float], None],
                 what: str, limits: Limits = Limits(),
                 first: Optional[Result] = None) -> tuple[Result, Optional[Failure]]:
    """``retrying`` a command (``first``: its result from ``Runner.run_all``)."""
    return retrying(runner, lambda: runner.run(cmd),
                    lambda result: None if result.ok else result.stdout + result.stderr,
                    sleep, what, limits, first)


@dataclass(frozen=True)
class Context:
    """What the push and verify steps need besides the runner: the plan, the pre-flight's
    decisions, docker's config and the AWS settings (for messages), and how to wait."""

    plan: BuildPlan
    push: PushPlan
    docker_config: DockerConfig
    environ: Mapping[str, str]
    sleep: Callable[[float], None] = time.sleep
    #: the built image's ID (``docker build --iidfile``): each ref is tagged from it just before
    #: its push, and the registry must then serve it (``check_pushed``); None: a multi-platform
    #: build's index, which the build pushed itself
    image_id: Optional[str] = None


def push(runner: Runner, ctx: Context, digests: MutableMapping[str, Optional[str]]) -> None:
    """``docker push`` each ref on its own, recording each digest in ``digests`` (a failure
    keeps those pushed). Each ref is first tagged from the built image's ID (``docker tag ID
    REF``, ``ctx.image_id``): another build on the daemon may have taken the tag since this
    run's build (its smoke test and scan take minutes), and ``docker push REF`` sends whatever
    the tag names when it runs. The first ref goes alone, its progress shown live: it uploads
    the layers; then the registry must serve this run's image under it (``check_pushed``)
    before anything more is pushed. The others only point more tags at the same manifest, so
    they are tagged, then pushed at once (``Runner.run_all``), each one's output shown when it
    is done; a transient failure among them is retried on its own; each must report the first
    one's digest. On a failure or Ctrl-C the error lists what was pushed and what was not."""
    refs = ctx.push.refs
    try:
        if refs:
            _tag(runner, ctx, refs[:1])
            result, kind = run_retrying(runner, push_command(refs[0]), ctx.sleep,
                                        f"docker push {refs[0]}", ctx.plan.limits)
            _record(ctx, refs[0], result, kind, digests)
            check_pushed(runner, ctx, refs[0], digests)
        rest = refs[1:]
        _tag(runner, ctx, rest)
        commands = [push_command(ref, Mode.CAPTURE) for ref in rest]
        firsts = runner.run_all(commands, show_output=True) if rest else []
        results = dict(zip(rest, firsts))
        for ref, first in results.items():  # every success is recorded before any retry
            if first.ok:
                digests[ref] = parse_push_digest(first.stdout + first.stderr)
        for ref, first in results.items():
            if not first.ok:
                result, kind = run_retrying(runner, push_command(ref, Mode.CAPTURE), ctx.sleep,
                                            f"docker push {ref}", ctx.plan.limits, first=first)
                _record(ctx, ref, result, kind, digests)
        for ref, first in results.items():
            if first.ok:
                _record(ctx, ref, first, None, digests)  # fails on a success without a digest
        if refs:
            check_same(runner, ctx, refs[0], rest, digests)
    except PushFailed as failure:
        raise PushFailed(f"{failure}\n{progress(ctx.push.refs, digests)}") from None
    except (Interrupted, KeyboardInterrupt) as stop:
        text = str(stop) if isinstance(stop, Interrupted) else interrupted_text(signal_of(stop))
        raise Interrupted(f"{text}\n{progress(ctx.push.refs, digests)}",
                          signum=signal_of(stop)) from None


def _tag(runner: Runner, ctx: Context, refs: Sequence[str]) -> None:
    """``docker tag <image ID> REF`` for each of ``refs``, just before their push (at once:
    each is a quick call to the daemon). Nothing when the run has no image ID to follow."""
    from ragbuild.plan import tag_command

    if ctx.image_id is None or not refs:
        return
    image_id = ctx.image_id
    for ref, result in zip(refs, runner.run_all([tag_command(image_id, ref) for ref in refs])):
        if not result.ok:
            if daemon_down(result.stderr):
                raise PushFailed(f"{ref}: {daemon_unreachable(ctx.plan.docker)}")
            raise PushFailed(f"docker tag {image_id} {ref} failed (the image of this run is "
                             f"gone?):\n{tail(result.stdout + result.stderr)}")


def check_pushed(runner: Runner, ctx: Context, ref: str,
                 digests: Mapping[str, Optional[str]]) -> None:
    """After the first push: the registry must serve this run's image under ``ref``: the
    manifest's config digest is the image's ID (the classic image store's ID), or the
    manifest's own digest is (the containerd store's); ``access.Manifest.names_image``.
    Anything else (another build re-tagged the ref between ``docker tag`` and ``docker push``)
    stops the run before anything more is pushed, naming the other image and how to restore
    the tag. A dry run says it would ask."""
    from ragbuild import access

    if ctx.image_id is None:
        return
    image_id = ctx.image_id
    session = session_of(ctx)
    tag = ref.rsplit(":", 1)[1]
    assume: Union[access.Manifest, str] = access.Manifest(
        digests.get(ref) or DRY_DIGEST, access.DOCKER_MANIFEST, config=image_id)
    answer = runner.check(f"GET {access.manifest_url(session, tag)} and expect the manifest of "
                          f"this run's image {image_id} (its config digest, or on the containerd "
                          "image store its own digest) before anything more is pushed",
                          lambda: read_back(runner, ctx, ref), assume)
    if isinstance(answer, str):
        raise PushFailed(f"the registry's {ref} cannot be read back after its push, so whether "
                         f"it serves this run's image is unknown: {answer}")
    if not answer.names_image(image_id):
        raise PushFailed(wrong_image(runner, ctx, {ref: answer.config or answer.digest}))


def check_same(runner: Runner, ctx: Context, first: str, rest: Sequence[str],
               digests: Mapping[str, Optional[str]]) -> None:
    """Each of ``rest`` must have been pushed as the manifest of ``first``, which
    ``check_pushed`` found to be this run's image; one that was not is another image (its tag
    moved between ``docker tag`` and ``docker push``): read back to name it, and the run stops.
    """
    if ctx.image_id is None:
        return
    others = [ref for ref in rest if digests.get(ref) != digests.get(first)]
    if not others:
        return
    found = {}
    for ref in others:
        answer = read_back(runner, ctx, ref)
        found[ref] = (answer if isinstance(answer, str)
                      else answer.config or answer.digest)
    raise PushFailed(wrong_image(runner, ctx, found))


def wrong_image(runner: Runner, ctx: Context, found: Mapping[str, str]) -> str:
    """The message for refs the registry serves another image under (``found``: ref -> that
    image's config digest, or why it could not be read): which image it is (its local tags,
    when the daemon has it: ``docker image inspect``), that nothing more was pushed, and how to
    put each tag back where it was before the run (``PushPlan.before``)."""
    lines = []
    for ref, other in found.items():
        if not other.startswith("sha256:"):  # pushed as another manifest, not readable back
            lines.append(f"  {ref} was pushed as another manifest than this run's image "
                         f"{ctx.image_id}, and cannot be read back: {tail(other, 1)}")
            continue
        lines.append(f"  {ref} now serves {other}{_local_tags(runner, other)}, not this run's "
                     f"image {ctx.image_id}")
    lines.append("another build on this daemon took the tag between `docker tag` and `docker "
                 "push`; nothing more was pushed. To put the tags back:")
    lines += [f"  {advice}" for advice in restore_advice(ctx, list(found))]
    return "the registry serves another image under this run's tags:\n" + "\n".join(lines)


def _local_tags(runner: Runner, image: str) -> str:
    """`` (locally: a:1, b:2)``: the daemon's tags of ``image``, or "" when it has none."""
    result = runner.run(Command(("docker", "image", "inspect", "--format", "{{json .RepoTags}}",
                                 image), check=False, kind=Kind.PROBE))
    try:
        tags = json.loads(result.stdout) if result.ok else []
    except ValueError:
        tags = []
    return f" (locally: {', '.join(tags)})" if isinstance(tags, list) and tags else ""


def restore_advice(ctx: Context, refs: Sequence[str]) -> list:
    """How to put each of ``refs`` back to what it named before the run (``PushPlan.before``,
    read by the pre-flight): ``docker buildx imagetools create`` copies a manifest to a tag
    by its digest, unchanged (https://docs.docker.com/reference/cli/docker/buildx/imagetools/create/);
    a tag that did not exist is deleted; one whose digest could not be read is said so."""
    repository = ctx.plan.base
    advice = []
    for ref in refs:
        before = ctx.push.before.get(ref)
        if isinstance(before, str) and before:
            advice.append(f"docker buildx imagetools create --tag {ref} {repository}@{before}")
        elif before == "":
            advice.append(f"{ref} did not exist before this run: delete it (the registry's API "
                          "or console; ECR: aws ecr batch-delete-image --image-ids "
                          f"imageTag={ref.rsplit(':', 1)[1]})")
        else:
            advice.append(f"{ref}: what it named before this run is unknown (it could not be "
                          "read before the build)")
    return advice


def _record(ctx: Context, ref: str, result: Result, kind: Optional[Failure],
            digests: MutableMapping[str, Optional[str]]) -> None:
    """Note what ``docker push ref`` reported in ``digests``; PushFailed when it failed, or
    succeeded without naming a digest (the ref is then listed as pushed, digest unknown)."""
    output = result.stdout + result.stderr
    if not result.ok:
        raise PushFailed(f"{explain_push(ctx, ref, kind)}\n{tail(output)}")
    digests[ref] = digests.get(ref) or parse_push_digest(output)
    if not digests[ref]:
        raise PushFailed(f"docker push {ref} succeeded but printed no digest, so it "
                         f"cannot be verified:\n{tail(output)}")


def progress(refs: Sequence[str], digests: Mapping[str, Optional[str]]) -> str:
    """What a failed or stopped push leaves, for its message: ``pushed: ...`` (the refs in
    ``digests``, ``(digest unknown)`` where the push named none) and ``not pushed: ...`` (the
    rest of ``refs``), one line each."""
    pushed = [ref if digests[ref] else f"{ref} (digest unknown)" for ref in digests]
    left = [ref for ref in refs if ref not in digests]
    return f"pushed: {', '.join(pushed) or 'nothing'}\nnot pushed: {', '.join(left) or 'nothing'}"


def explain_push(ctx: Context, ref: str, kind: Optional[Failure]) -> str:
    registry = ctx.plan.registry
    assert registry is not None
    host, path = registry.host, registry.path
    if kind is Failure.IMMUTABLE:
        tag = ref.rsplit(":", 1)[1]
        fix = (f"`aws ecr put-image-tag-mutability --repository-name {path} --registry-id "
               f"{ecr.account_of(registry)} --region {registry.region} ...`"
               if registry.is_ecr else "the registry's settings")
        return (f"{ref}: the tag {tag!r} already exists and the repository's tags are "
                "immutable, so it cannot be overwritten; push only new tags "
                "(--skip-existing-immutable leaves existing ones out, --no-latest drops "
                f"'latest'), or allow overwriting with {fix}")
    if kind is Failure.AUTH:
        aws = ecr.aws_context(ctx.environ)
        creds = ctx.push.credentials
        if registry.is_ecr and creds is not None and creds.helper:
            return (f"{ref}: {host} refused the push; docker gets its credentials from "
                    f"{creds.describe()}{aws}: check the AWS credentials it uses and that "
                    "they may push (ecr:PutImage, ecr:InitiateLayerUpload, ...)")
        if registry.is_ecr:
            return (f"{ref}: {host} refused the push: the ECR token may have expired or the "
                    f"AWS identity{aws} may not push to {path} "
                    "(ecr:PutImage, ecr:InitiateLayerUpload, ...); run again to log in anew")
        return (f"{ref}: {host} refused the push: not logged in, or not allowed to push to "
                f"{path}; run `docker login {host}` and try again")
    if kind is Failure.NOT_FOUND:
        if registry.is_ecr:
            return (f"{ref}: repository {path} does not exist in account "
                    f"{ecr.account_of(registry)} ({host}); {ecr.create_advice(registry)}")
        return f"{ref}: {host} has no repository {path} (or does not let you see it)"
    if kind is Failure.DAEMON:
        return f"{ref}: {daemon_unreachable(ctx.plan.docker)}"
    if kind is Failure.UNREACHABLE:
        return (f"{ref}: cannot reach {host}: check the host and port in --registry and that "
                "the registry is up")
    if kind is Failure.TRANSIENT:
        return (f"{ref}: push failed {ctx.plan.limits.push_attempts} times with a network or "
                "registry error (--push-attempts, --push-backoff)")
    return f"docker push {ref} failed"


def session_of(ctx: Context) -> "access.Session":
    """The pre-flight's registry session (``prepare`` made it)."""
    from ragbuild import access

    session = ctx.push.session
    assert isinstance(session, access.Session), "the push was not prepared"
    return session


def read_back(runner: Runner, ctx: Context, ref: str) -> Union["access.Manifest", str]:
    """What ``ref`` names on the registry (``access.read_manifest`` through the pre-flight's
    session), a transient failure retried as a push is (``retrying``); or the problem, in
    words for the user."""
    from ragbuild import access

    session = session_of(ctx)
    tag = ref.rsplit(":", 1)[1]
    url = access.manifest_url(session, tag)

    def attempt() -> Union[access.Manifest, access.ReadFailed]:
        try:
            return access.read_manifest(session, tag)
        except access.ReadFailed as failed:
            return failed

    try:
        answer, _ = retrying(runner, attempt,
                             lambda got: str(got) if isinstance(got, access.ReadFailed) else None,
                             ctx.sleep, f"GET {url}", ctx.plan.limits)
    except ValueError as bad:
        return f"{ref}: {url} served no manifest: {bad}"
    if isinstance(answer, access.ReadFailed):
        return f"{ref}: cannot read its manifest back from the registry ({url}):\n{answer}"
    return answer


def _judge(ctx: Context, ref: str, manifest: "access.Manifest",
           pushed: Mapping[str, Optional[str]]) -> str:
    """The digest ``ref`` names, when it is what was pushed; ValueError says what it is not."""
    plan = ctx.plan
    if not plan.multi_platform:
        if manifest.is_index:
            raise ValueError(f"{ref} is an image index ({manifest.media_type}), not a single "
                             "image manifest: SageMaker refuses image indexes; build without "
                             "attestations "
                             "(--provenance=false --sbom=false) for a single platform")
        if not plan.options.not_for_sagemaker:
            from ragbuild import sagemaker

            problem = sagemaker.shape_problem(ref, manifest)
            if problem:
                raise ValueError(problem)
        if manifest.digest != pushed.get(ref):
            raise ValueError(f"{ref} resolves to {manifest.digest} on the registry, but the push "
                             f"reported {pushed.get(ref)}")
        if ctx.image_id is not None and not manifest.names_image(ctx.image_id):
            raise ValueError(f"{ref} serves the image {manifest.config or manifest.digest}, not "
                             f"this run's image {ctx.image_id}; to put it back: "
                             + "; ".join(restore_advice(ctx, [ref])))
        return manifest.digest
    if not manifest.is_index:
        raise ValueError(f"{ref} is a single image manifest ({manifest.media_type}), not an "
                         "image index of the platforms")
    have = {normalize_platform(p) for p in manifest.platforms}
    missing = [p for p in plan.platforms if normalize_platform(p) not in have]
    if missing:
        raise ValueError(f"{ref}: the index lacks {', '.join(missing)} (it has "
                         f"{', '.join(manifest.platforms) or 'no platform'})")
    return manifest.digest


def _check_platform(runner: Runner, ctx: Context, session: "access.Session", ref: str) -> list:
    """The planned platform (``--platform``) is the pushed image's: its config's os/architecture
    (``sagemaker.check_shape``), asked once, the refs all naming one manifest."""
    from ragbuild import access, sagemaker

    planned = ctx.plan.platforms[0]

    def ask() -> Optional[str]:
        try:
            return sagemaker.check_shape(session, ref, planned, normalize_platform)
        except (access.ReadFailed, ValueError) as failed:
            return f"{ref}: its platform cannot be read back: {failed}"

    problem = runner.check(f"read {ref}'s image config and expect the platform {planned}", ask,
                           None)
    return [problem] if problem else []


def verify(runner: Runner, ctx: Context, digests: MutableMapping[str, Optional[str]]) -> str:
    """Read every pushed ref back from the registry, all at once (``Runner.check_all``,
    ``read_back``): every ref must name what was pushed (the single image manifest ``docker
    push`` reported, or for a multi-platform build an index of every platform), all one digest.
    Returns ``<repository>@<digest>``, also written to stdout, ready to pin; PushFailed lists
    every problem. A multi-platform build's refs (pushed by the build itself) get their index
    digests recorded in ``digests``. A dry run says what it would ask and takes the registry to
    answer with what was pushed."""
    from ragbuild import access

    plan = ctx.plan
    registry = plan.registry
    session = session_of(ctx)
    assert registry is not None
    if plan.multi_platform:
        expect = f"an image index of {', '.join(plan.platforms)}"
        what = "the image index {digest} of " + ", ".join(plan.platforms) + \
            f" ({NOT_FOR_SAGEMAKER})"
        differ = "name different indexes"
    else:
        expect = "the single image manifest the push reported"
        what = "{digest}"
        differ = "were pushed as different manifests"

    def dry(ref: str) -> access.Manifest:  # what a dry run takes the registry to have answered
        if plan.multi_platform:
            return access.Manifest(DRY_DIGEST, access.OCI_INDEX, plan.platforms)
        return access.Manifest(digests.get(ref) or DRY_DIGEST, access.DOCKER_MANIFEST,
                               config=ctx.image_id or "")

    checks = [(f"GET {access.manifest_url(session, ref.rsplit(':', 1)[1])} "
               f"({access.describe(session)}; a pull token, the Docker and OCI manifest and index "
               f"types accepted) and expect {expect}",
               lambda ref=ref: read_back(runner, ctx, ref), dry(ref)) for ref in ctx.push.refs]
    answers = runner.check_all(checks)
    problems: list[str] = []
    found: dict[str, str] = {}
    for ref, answer in zip(ctx.push.refs, answers):
        if isinstance(answer, str):
            problems.append(answer)
            continue
        try:
            found[ref] = _judge(ctx, ref, answer, digests)
        except ValueError as problem:
            problems.append(str(problem))
    if plan.multi_platform:
        digests.update(found)
    elif plan.platforms and found and not plan.options.not_for_sagemaker and not problems:
        problems += _check_platform(runner, ctx, session, next(iter(found)))
    distinct = sorted(set(found.values()))
    if len(distinct) > 1:
        problems.append(f"the tags of this build {differ}: "
                        + ", ".join(f"{ref} {d}" for ref, d in found.items()))
    if problems:
        raise PushFailed("verification failed:\n" + "\n".join(f"  {p}" for p in problems))
    pinned = f"{registry.uri}@{distinct[0]}"
    runner.report(f"pushed and verified {len(found)} tags, all {what.format(digest=distinct[0])}:",
                  SUCCESS)
    for ref in found:
        runner.report(f"  {ref}")
    if ctx.push.skipped:
        why = ("they exist, and the repository's mutability is unknown" if ctx.push.in_order
               else "the repository keeps them immutable")
        runner.report(f"left out ({why}): {', '.join(ctx.push.skipped)}")
    runner.emit(pinned)  # stdout: the one line a script wants
    return pinned
