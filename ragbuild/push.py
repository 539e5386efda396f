"""``--push``: push every tag, retrying transient failures, and verify every digest.

What to push and how is decided before the build (``prepare``: the refs, the immutable tags
left out, whether the build must drop attestations, the credentials) and handed to the build as
a ``PushPlan``. After the build, ``push`` pushes each ref on its own (``docker push``, retried
with backoff when the failure is transient) and ``verify`` reads every pushed ref back from the
registry: every tag must name the one single-image manifest ``docker push`` reported (SageMaker
refuses an index: https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-inference-code.html),
or, for a multi-platform build, one image index holding every platform. ECR's login and
repository checks are in ecr.py. Like the other steps this module starts no process itself.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from typing import Callable, Mapping, MutableMapping, Optional

from ragbuild import ecr
from ragbuild.builders import (DEFAULT_INSECURE_CIDRS, ECR_HELPER, NOT_FOR_SAGEMAKER, Credentials,
                               DockerConfig, RegistryConfig, daemon_down, daemon_unreachable,
                               parse_registry_config, read_docker_config)
from ragbuild.errors import DockerUnavailable, Interrupted, PushFailed, interrupted_text, signal_of
from ragbuild.output import SUCCESS
from ragbuild.limits import Limits
from ragbuild.plan import DRY_DIGEST, BuildPlan, Command, Kind, Mode, PushPlan
from ragbuild.runner import Result, Runner, tail

INDEX_TYPES = ("application/vnd.docker.distribution.manifest.list.v2+json",
               "application/vnd.oci.image.index.v1+json")

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


class IndexManifest(ValueError):
    """The registry holds an index (manifest list), not a single image manifest."""


class SingleManifest(ValueError):
    """The registry holds a single image manifest where an index was expected."""


def parse_manifest_verbose(text: str) -> str:
    """The digest of the single image manifest ``docker manifest inspect --verbose`` shows: one
    JSON object whose ``Descriptor`` has the manifest's digest and media type. For an index it
    prints a JSON list of them (one per platform; the index's own digest is not shown). Raises
    IndexManifest for an index, ValueError for output that is neither."""
    try:
        data = json.loads(text)
    except ValueError:
        raise ValueError(f"not JSON: {tail(text, 3)!r}") from None
    if isinstance(data, list):
        raise IndexManifest(f"an image index of {len(data)} manifests")
    if not isinstance(data, dict) or not isinstance(data.get("Descriptor"), dict):
        raise ValueError("no Descriptor in the output")
    descriptor = data["Descriptor"]
    media_type = descriptor.get("mediaType")
    if media_type in INDEX_TYPES:
        raise IndexManifest(f"an image index ({media_type})")
    digest = descriptor.get("digest")
    if not isinstance(digest, str) or not digest.startswith("sha256:"):
        raise ValueError(f"no digest in the Descriptor: {descriptor!r}")
    return digest


@dataclass(frozen=True)
class Index:
    digest: str
    platforms: tuple[str, ...]  # "os/arch[/variant]" of each image in it (attestations left out)


def normalize_platform(platform: str) -> str:
    """containerd's spelling rules for comparison: arm64/v8 is arm64, arm is arm/v7, amd64/v1
    is amd64."""
    parts = platform.split("/")
    if parts[1:2] == ["arm64"] and parts[2:] == ["v8"] or parts[1:2] == ["amd64"] and parts[2:] == ["v1"]:
        parts = parts[:2]
    elif parts[1:] == ["arm"]:
        parts.append("v7")
    return "/".join(parts)


def parse_index_raw(text: str) -> Index:
    """Read ``docker buildx imagetools inspect --raw``: the registry's manifest bytes exactly
    (buildx prints them without a newline, so their sha256 is the digest). Raises
    SingleManifest for a single image manifest, ValueError for anything else that is not an
    image index; ``unknown/unknown`` entries (attestations) are left out."""
    try:
        data = json.loads(text)
    except ValueError:
        raise ValueError(f"not JSON: {tail(text, 3)!r}") from None
    if not isinstance(data, dict):
        raise ValueError("not a manifest")
    media_type = data.get("mediaType") or ""
    manifests = data.get("manifests")
    if media_type not in INDEX_TYPES and not (not media_type and isinstance(manifests, list)):
        raise SingleManifest(f"a single image manifest ({media_type or 'no media type'}), not an "
                             "image index of the platforms")
    if not isinstance(manifests, list) or not all(isinstance(entry, dict) for entry in manifests):
        raise ValueError("an index whose manifests are not a list of descriptors")
    platforms = []
    for entry in manifests:
        spec = entry.get("platform") or {}
        if not isinstance(spec, dict):
            raise ValueError(f"a platform that is not an object: {spec!r}")
        parts = (spec.get("os"), spec.get("architecture"), spec.get("variant"))
        name = "/".join(str(part) for part in parts if part)
        if name and name != "unknown/unknown":
            platforms.append(name)
    digest = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    return Index(digest, tuple(platforms))


# --- commands ----------------------------------------------------------------------------------


def registry_config_command() -> Command:
    """The daemon's registry configuration (``docker info``): which registries it reaches over
    plain HTTP or unverified TLS."""
    return Command(("docker", "info", "--format", "{{json .RegistryConfig}}"), check=False,
                   kind=Kind.PROBE,
                   assume=json.dumps({"InsecureRegistryCIDRs": list(DEFAULT_INSECURE_CIDRS),
                                      "IndexConfigs": {}}),
                   dry_note="a real run asks the daemon which registries are insecure (plain "
                            "HTTP), as docker push decides it")


def push_command(ref: str, mode: Mode = Mode.TEE) -> Command:
    """``docker push ref``: shown live (``TEE``), or kept and shown when done (``CAPTURE``, for
    the tags pushed at once)."""
    return Command(("docker", "push", ref), mode=mode, check=False,
                   assume=f"digest: {DRY_DIGEST} size: 0")


def manifest_inspect_command(ref: str, insecure: bool) -> Command:
    """One call that shows both the digest and the media type of what ``ref`` names.

    docker 20.10 hides ``docker manifest`` behind the experimental switch. Unlike the daemon,
    this client does not fall back to plain HTTP for an insecure registry unless ``--insecure``
    (it then says "no such manifest", even of a manifest that is there). ``insecure`` is the
    daemon's own decision (``builders.RegistryConfig.is_insecure``), so the client reads the
    registry the way the daemon pushed to it."""
    argv = ["docker", "manifest", "inspect"]
    if insecure:
        argv.append("--insecure")
    argv += ["--verbose", ref]
    return Command(tuple(argv), env=(("DOCKER_CLI_EXPERIMENTAL", "enabled"),), check=False,
                   kind=Kind.PROBE, assume=json.dumps({"Descriptor": {"digest": DRY_DIGEST}}))


def imagetools_inspect_command(ref: str, platforms: tuple[str, ...] = ()) -> Command:
    """The raw manifest of ``ref`` as the registry serves it (multi-platform builds: buildx is
    there anyway, and ``docker manifest inspect`` does not show an index's own digest). A dry
    run takes it to be an index of ``platforms``."""
    manifests = [{"platform": dict(zip(("os", "architecture", "variant"), p.split("/")))}
                 for p in platforms]
    return Command(("docker", "buildx", "imagetools", "inspect", "--raw", ref), check=False,
                   kind=Kind.PROBE, assume=json.dumps({"mediaType": INDEX_TYPES[1],
                                                       "manifests": manifests}))


# --- before the build --------------------------------------------------------------------------


def prepare(runner: Runner, plan: BuildPlan, docker_config: Optional[DockerConfig] = None,
            environ: Optional[Mapping[str, str]] = None) -> PushPlan:
    """Before the build, for every registry: the credential helper docker resolves for the host
    is installed; for ECR the login (none with ECR's own helper), the repository and its
    immutable tags; the daemon's view of the registry (insecure or not, from ``docker info``);
    and the registry answers and accepts docker's credentials (access.py). No probe of the
    client for attestations: see ``plan.build_command``.
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
    if registry.is_ecr:
        logged_in = ecr.authenticate(runner, registry, creds, environ)
        repository = ecr.check_repository(runner, registry, environ)
        skip_tags = ecr.immutable_conflicts(runner, plan, repository, environ)
        skipped = tuple(f"{plan.base}:{tag}" for tag in skip_tags)
        refs = tuple(ref for ref in plan.refs if ref not in skipped)
    insecure = daemon_registry_config(runner, plan).is_insecure(registry.host)
    access.check(runner, registry, creds, docker_config, insecure,
                 login=access.Login("AWS", logged_in) if logged_in is not None else None)
    return PushPlan(refs, skipped, creds, insecure)


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
    insecurely is its decision, not something the host's text tells."""
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


def run_retrying(runner: Runner, cmd: Command, sleep: Callable[[float], None],
                 what: str, limits: Limits = Limits(),
                 first: Optional[Result] = None) -> tuple[Result, Optional[Failure]]:
    """Run ``cmd``; retry a transient failure with exponential backoff: ``limits.push_attempts``
    in all, ``limits.push_backoff`` seconds before the second, doubled before each further one
    (limits.py: --push-attempts, --push-backoff). ``first``: the result of a first attempt
    already run (``Runner.run_all``). Returns the last result and its failure kind (None when
    it succeeded)."""
    attempt = 1
    result = first if first is not None else runner.run(cmd)
    while not result.ok:
        output = result.stdout + result.stderr
        kind = classify_failure(output)
        if kind is not Failure.TRANSIENT or attempt >= limits.push_attempts:
            return result, kind
        delay = limits.push_backoff * 2 ** (attempt - 1)
        runner.log(f"{what} failed ({tail(output, 1)}); retrying in {delay:g}s "
                   f"(attempt {attempt + 1} of {limits.push_attempts})")
        sleep(delay)
        attempt += 1
        result = runner.run(cmd)
    return result, None


@dataclass(frozen=True)
class Context:
    """What the push and verify steps need besides the runner: the plan, the pre-flight's
    decisions, docker's config and the AWS settings (for messages), and how to wait."""

    plan: BuildPlan
    push: PushPlan
    docker_config: DockerConfig
    environ: Mapping[str, str]
    sleep: Callable[[float], None] = time.sleep


def push(runner: Runner, ctx: Context, digests: MutableMapping[str, Optional[str]]) -> None:
    """``docker push`` each ref on its own, recording each digest in ``digests`` (a failure
    keeps those pushed). The first ref goes alone, its progress shown live: it uploads the
    layers. The others only point more tags at the same manifest, so they go at once
    (``Runner.run_all``), each one's output shown when it is done; a transient failure among
    them is retried on its own. On a failure or Ctrl-C the error lists what was pushed and what
    was not."""
    refs = ctx.push.refs
    try:
        if refs:
            result, kind = run_retrying(runner, push_command(refs[0]), ctx.sleep,
                                        f"docker push {refs[0]}", ctx.plan.limits)
            _record(ctx, refs[0], result, kind, digests)
        rest = refs[1:]
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
    except PushFailed as failure:
        raise PushFailed(f"{failure}\n{_progress(ctx, digests)}") from None
    except (Interrupted, KeyboardInterrupt) as stop:
        text = str(stop) if isinstance(stop, Interrupted) else interrupted_text(signal_of(stop))
        raise Interrupted(f"{text}\n{_progress(ctx, digests)}", signum=signal_of(stop)) from None


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


def _progress(ctx: Context, digests: Mapping[str, Optional[str]]) -> str:
    pushed = [ref if digests[ref] else f"{ref} (digest unknown)" for ref in digests]
    left = [ref for ref in ctx.push.refs if ref not in digests]
    return f"pushed: {', '.join(pushed) or 'nothing'}\nnot pushed: {', '.join(left) or 'nothing'}"


def explain_push(ctx: Context, ref: str, kind: Optional[Failure]) -> str:
    registry = ctx.plan.registry
    assert registry is not None
    host, path = registry.host, registry.path
    if kind is Failure.IMMUTABLE:
        tag = ref.rsplit(":", 1)[1]
        fix = (f"`aws ecr put-image-tag-mutability --repository-name {path} --region "
               f"{registry.region} ...`" if registry.is_ecr else "the registry's settings")
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
            return (f"{ref}: repository {path} does not exist in {host}; create it: "
                    f"aws ecr create-repository --repository-name {path} --region "
                    f"{registry.region}")
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


@dataclass(frozen=True)
class ReadBack:
    """How ``verify`` reads a pushed ref back: the command, and what its answer must be."""

    command: Callable[[str], Command]
    parse: Callable[[str, str], str]  # (ref, stdout) -> digest; ValueError: a problem to report
    differ: str  # what differing digests mean
    what: str  # what the digest names, with {digest}


def _single_image(plan: BuildPlan, pushed: Mapping[str, Optional[str]],
                  insecure: bool) -> ReadBack:

    def parse(ref: str, stdout: str) -> str:
        try:
            digest = parse_manifest_verbose(stdout)
        except IndexManifest as index:
            raise ValueError(f"{ref} is {index}, not a single image manifest: SageMaker refuses "
                             "image indexes; build without attestations (--provenance=false "
                             "--sbom=false) for a single platform") from None
        except ValueError as bad:
            raise ValueError(f"{ref}: cannot read `docker manifest inspect --verbose`: {bad}") \
                from None
        if digest != pushed.get(ref):
            raise ValueError(f"{ref} resolves to {digest} on the registry, but docker push "
                             f"reported {pushed.get(ref)}")
        return digest

    return ReadBack(lambda ref: manifest_inspect_command(ref, insecure), parse,
                    "were pushed as different manifests", "{digest}")


def _index(plan: BuildPlan) -> ReadBack:
    wanted = [normalize_platform(p) for p in plan.platforms]

    def parse(ref: str, stdout: str) -> str:
        try:
            index = parse_index_raw(stdout)
        except SingleManifest as single:
            raise ValueError(f"{ref} is {single}") from None
        except ValueError as bad:
            raise ValueError(f"{ref}: cannot read `docker buildx imagetools inspect --raw`: "
                             f"{bad}") from None
        have = {normalize_platform(p) for p in index.platforms}
        missing = [p for p in wanted if p not in have]
        if missing:
            raise ValueError(f"{ref}: the index lacks {', '.join(missing)} (it has "
                             f"{', '.join(index.platforms) or 'no platform'})")
        return index.digest

    return ReadBack(lambda ref: imagetools_inspect_command(ref, plan.platforms), parse, "name different indexes",
                    "the image index {digest} of " + ", ".join(plan.platforms)
                    + f" ({NOT_FOR_SAGEMAKER})")


def verify(runner: Runner, ctx: Context, digests: MutableMapping[str, Optional[str]]) -> str:
    """Read every pushed ref back from the registry: every ref must name what was pushed (the
    single image manifest ``docker push`` reported, or for a multi-platform build an index of
    every platform), all one digest. Returns ``<repository>@<digest>``, also written to stdout,
    ready to pin; PushFailed lists every problem. A multi-platform build's refs (pushed by the
    build itself) get their index digests recorded in ``digests``."""
    plan = ctx.plan
    registry = plan.registry
    assert registry is not None
    read_back = (_index(plan) if plan.multi_platform
                 else _single_image(plan, digests, ctx.push.insecure))
    problems: list[str] = []
    found: dict[str, str] = {}
    unread: list[str] = []
    # one concurrent pass reads every ref back; a transient failure is retried on its own
    commands = [read_back.command(ref) for ref in ctx.push.refs]
    firsts = runner.run_all(commands)
    for ref, cmd, first in zip(ctx.push.refs, commands, firsts):
        result, _ = run_retrying(runner, cmd, ctx.sleep, cmd.display(), plan.limits, first=first)
        if not result.ok:
            said = result.stdout + result.stderr
            if digests.get(ref) and not plan.multi_platform:
                # docker push completed and named the digest: a client that cannot read it
                # back (its view of the registry differs from the daemon's) fails nothing
                unread.append(f"{ref}: {tail(said, 1)}")
                found[ref] = str(digests[ref])
                continue
            problems.append(f"{ref}: cannot read its manifest back from the registry:\n"
                            f"{tail(said, 5)}")
            continue
        try:
            found[ref] = read_back.parse(ref, result.stdout)
        except ValueError as problem:
            problems.append(str(problem))
    if plan.multi_platform:
        digests.update(found)
    distinct = sorted(set(found.values()))
    if len(distinct) > 1:
        problems.append(f"the tags of this build {read_back.differ}: "
                        + ", ".join(f"{ref} {d}" for ref, d in found.items()))
    if problems:
        raise PushFailed("verification failed:\n" + "\n".join(f"  {p}" for p in problems))
    pinned = f"{registry.uri}@{distinct[0]}"
    if unread:
        runner.log(f"warning: docker push completed for every tag, but `docker manifest inspect` "
                   f"could not read {len(unread)} of them back, so those carry the digest docker "
                   "push reported, unverified: " + "; ".join(unread))
    verified = "pushed" if len(unread) == len(found) else (
        f"pushed ({len(found) - len(unread)} read back)" if unread else "pushed and verified")
    runner.report(f"{verified} {len(found)} tags, all "
                  f"{read_back.what.format(digest=distinct[0])}:", SUCCESS)
    for ref in found:
        runner.report(f"  {ref}")
    if ctx.push.skipped:
        runner.report(f"left out (the repository keeps them immutable): "
                      f"{', '.join(ctx.push.skipped)}")
    runner.emit(pinned)  # stdout: the one line a script wants
    return pinned
