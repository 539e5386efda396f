"""``--push``: push every tag, retrying transient failures, and verify every digest.

What to push and how is decided before the build (``prepare``: the refs, the immutable tags
left out, whether the build must drop attestations, the credentials) and handed to the build as
a ``PushPlan``. After the build, ``push`` pushes each ref on its own (``docker push``, retried
with backoff when the failure is transient) and ``verify`` reads every pushed ref back from the
registry's API, in-process and concurrently, through the pre-flight's ``registry.Session`` (its
scheme, TLS and credentials): every tag must name the one single-image manifest ``docker push``
reported (SageMaker refuses an index:
https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-inference-code.html), or, for a
multi-platform build, one image index holding every platform. ECR's login and repository checks
are in ecr.py. Like the other steps this module starts no process itself.
"""

from __future__ import annotations

import enum
import json
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional, TypeVar, Union
from collections.abc import Mapping, MutableMapping, Sequence

from ragbuild import ecr
from ragbuild.docker_config import DockerConfig, daemon_down, daemon_unreachable
from ragbuild.errors import Interrupted, PushFailed, interrupted_text, signal_of
from ragbuild.limits import Limits
from ragbuild.plan import DRY_DIGEST, BuildPlan, PushPlan
from ragbuild.run.command import Command, Kind, Mode
from ragbuild.run.command import Result
from ragbuild.run.runner import Runner, tail

if TYPE_CHECKING:  # access (urllib, ssl) and proxy are imported by a push only
    from ragbuild import manifest, registry

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
    (
        Failure.NOT_FOUND,
        re.compile(
            r"name unknown|repository\b[^\n]*\bnot found"
            r"|does not exist in the registry",
            re.I,
        ),
    ),
    (Failure.UNREACHABLE, re.compile(r"connection refused|no such host|server misbehaving", re.I)),
    (
        Failure.TRANSIENT,
        re.compile(
            r"connection reset|broken pipe|i/o timeout|timeout|timed out|\bEOF\b"
            r"|toomanyrequests|too many requests"
            r"|HTTP(?: status)?:? *5\d\d\b|\b5\d\d (?:internal server error|bad gateway"
            r"|service unavailable|gateway time-?out)"
            r"|internal server error|bad gateway|service unavailable|gateway time-?out",
            re.I,
        ),
    ),
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
    """containerd's spelling rules for comparison (platforms.Normalize, ``normalizeArch``, which
    docker and buildx apply to ``--platform``: https://github.com/containerd/platforms/blob/v0.2.1/database.go):
    x86_64 and amd64/v1 are amd64, aarch64 and arm64/v8 are arm64, arm is arm/v7, armhf arm/v7,
    armel arm/v6, i386 386."""
    parts = platform.split("/")
    name, variant = (parts[1:2] or [""])[0], "/".join(parts[2:])
    arch = _ARCH_ALIASES.get(name, name)
    variant = _ALIAS_VARIANT.get(name, variant)
    if arch == "amd64" and variant == "v1" or arch == "arm64" and variant in ("8", "v8", "v8.0"):
        variant = ""
    elif arch == "arm" and variant in ("", "5", "6", "7", "8"):
        variant = f"v{variant or 7}"
    return "/".join(part for part in (parts[0], arch, variant) if part)


#: containerd's architecture aliases, and the variant those that imply one set
_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "i386": "386"}
_ARCH_ALIASES.update(armhf="arm", armel="arm")
_ALIAS_VARIANT = {"i386": "", "armhf": "v7", "armel": "v6"}


# --- commands ----------------------------------------------------------------------------------


def push_command(ref: str, mode: Mode = Mode.TEE) -> Command:
    """``docker push ref``: shown live (``TEE``), or kept and shown when done (``CAPTURE``, for
    the tags pushed at once)."""
    return Command(
        ("docker", "push", ref), mode=mode, check=False, assume=f"digest: {DRY_DIGEST} size: 0"
    )


# --- after the build ---------------------------------------------------------------------------


def retrying(
    runner: Runner,
    attempt: Callable[[], R],
    failed: Callable[[R], Optional[str]],
    sleep: Callable[[float], None],
    what: str,
    limits: Limits = Limits(),
    first: Optional[R] = None,
) -> tuple[R, Optional[Failure]]:
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
        runner.log(
            f"{what} failed ({tail(output, 1)}); retrying in {delay:g}s "
            f"(attempt {tries + 1} of {limits.push_attempts})"
        )
        with runner.waiting(f"the next attempt of {what}", delay):
            sleep(delay)
        tries += 1
        result = attempt()
    return result, None


def run_retrying(
    runner: Runner,
    cmd: Command,
    sleep: Callable[[float], None],
    what: str,
    limits: Limits = Limits(),
    first: Optional[Result] = None,
) -> tuple[Result, Optional[Failure]]:
    """``retrying`` a command (``first``: its result from ``Runner.run_all``)."""
    return retrying(
        runner,
        lambda: runner.run(cmd),
        lambda result: None if result.ok else result.stdout + result.stderr,
        sleep,
        what,
        limits,
        first,
    )


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


def push(runner: Runner, ctx: Context) -> dict[str, Optional[str]]:
    """``docker push`` each ref on its own; returns ref -> the digest each push reported, in
    the order they went (a failure's error carries those pushed: ``PushFailed.pushed``). Each ref is first tagged from the built image's ID (``docker tag ID
    REF``, ``ctx.image_id``): another build on the daemon may have taken the tag since this
    run's build (its smoke test and scan take minutes), and ``docker push REF`` sends whatever
    the tag names when it runs. The first ref goes alone, its progress shown live: it uploads
    the layers; then the registry must serve this run's image under it (``check_pushed``)
    before anything more is pushed. The others only point more tags at the same manifest, so
    they are tagged, then pushed at once (``Runner.run_all``), each one's output shown when it
    is done; a transient failure among them is retried on its own; each must report the first
    one's digest. On a failure or Ctrl-C the error lists what was pushed and what was not."""
    refs = ctx.push.refs
    digests: dict[str, Optional[str]] = {}
    try:
        if refs:
            _tag(runner, ctx, refs[:1])
            result, kind = run_retrying(
                runner, push_command(refs[0]), ctx.sleep, f"docker push {refs[0]}", ctx.plan.limits
            )
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
                result, kind = run_retrying(
                    runner,
                    push_command(ref, Mode.CAPTURE),
                    ctx.sleep,
                    f"docker push {ref}",
                    ctx.plan.limits,
                    first=first,
                )
                _record(ctx, ref, result, kind, digests)
        for ref, first in results.items():
            if first.ok:
                _record(ctx, ref, first, None, digests)  # fails on a success without a digest
        if refs:
            check_same(runner, ctx, refs[0], rest, digests)
    except PushFailed as failure:
        said = f"{failure}\n{progress(ctx.push.refs, digests)}"
        raise PushFailed(said, pushed=digests) from None
    except (Interrupted, KeyboardInterrupt) as stop:
        text = str(stop) if isinstance(stop, Interrupted) else interrupted_text(signal_of(stop))
        said = f"{text}\n{progress(ctx.push.refs, digests)}"
        raise Interrupted(said, signum=signal_of(stop), pushed=digests) from None
    return digests


def _tag(runner: Runner, ctx: Context, refs: Sequence[str]) -> None:
    """``docker tag <image ID> REF`` for each of ``refs``, just before their push (at once:
    each is a quick call to the daemon). Nothing when the run has no image ID to follow."""
    from ragbuild.images import tag_command

    if ctx.image_id is None or not refs:
        return
    image_id = ctx.image_id
    for ref, result in zip(refs, runner.run_all([tag_command(image_id, ref) for ref in refs])):
        if not result.ok:
            if daemon_down(result.stderr):
                raise PushFailed(f"{ref}: {daemon_unreachable(ctx.plan.docker)}")
            raise PushFailed(
                f"docker tag {image_id} {ref} failed (the image of this run is "
                f"gone?):\n{tail(result.stdout + result.stderr)}"
            )


def check_pushed(
    runner: Runner, ctx: Context, ref: str, digests: Mapping[str, Optional[str]]
) -> None:
    """After the first push: the registry must serve this run's image under ``ref``: the
    manifest's config digest is the image's ID (the classic image store's ID), or the
    manifest's own digest is (the containerd store's); ``manifest.Manifest.names_image``.
    Anything else (another build re-tagged the ref between ``docker tag`` and ``docker push``)
    stops the run before anything more is pushed, naming the other image and how to restore
    the tag; so does a manifest of a shape the read-back refuses for a one-platform plan
    (``shape.shape_problem``: an index, e.g. ``push IMAGE`` of a multi-platform image on the
    containerd store, whose ID is the index's digest). A dry run says it would ask."""
    from ragbuild import manifest

    if ctx.image_id is None:
        return
    image_id = ctx.image_id
    session = session_of(ctx)
    tag = ref.rsplit(":", 1)[1]
    assume: Union[manifest.Manifest, str] = manifest.Manifest(
        digests.get(ref) or DRY_DIGEST, manifest.DOCKER_MANIFEST, config=image_id
    )
    answer = runner.check(
        f"GET {manifest.manifest_url(session, tag)} and expect the manifest of "
        f"this run's image {image_id} (its config digest, or on the containerd "
        "image store its own digest) before anything more is pushed",
        lambda: read_back(runner, ctx, ref),
        assume,
    )
    if isinstance(answer, str):
        raise PushFailed(
            f"the registry's {ref} cannot be read back after its push, so whether "
            f"it serves this run's image is unknown: {answer}"
        )
    if not answer.names_image(image_id):
        raise PushFailed(wrong_image(runner, ctx, {ref: answer.config or answer.digest}))
    plan = ctx.plan
    if not plan.multi_platform and (answer.is_index or not plan.options.not_for_sagemaker):
        from ragbuild import shape  # verify.py's rule for one platform, before more is pushed

        problem = shape.shape_problem(ref, answer)
        if problem:
            raise PushFailed(f"{problem} (read back after its push; nothing more was pushed)")


def check_same(
    runner: Runner,
    ctx: Context,
    first: str,
    rest: Sequence[str],
    digests: Mapping[str, Optional[str]],
) -> None:
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
        found[ref] = answer if isinstance(answer, str) else answer.config or answer.digest
    raise PushFailed(wrong_image(runner, ctx, found))


def wrong_image(runner: Runner, ctx: Context, found: Mapping[str, str]) -> str:
    """The message for refs the registry serves another image under (``found``: ref -> that
    image's config digest, or why it could not be read): which image it is (its local tags,
    when the daemon has it: ``docker image inspect``), that nothing more was pushed, and how to
    put each tag back where it was before the run (``PushPlan.before``)."""
    lines = []
    for ref, other in found.items():
        if not other.startswith("sha256:"):  # pushed as another manifest, not readable back
            lines.append(
                f"  {ref} was pushed as another manifest than this run's image "
                f"{ctx.image_id}, and cannot be read back: {tail(other, 1)}"
            )
            continue
        lines.append(
            f"  {ref} now serves {other}{_local_tags(runner, other)}, not this run's "
            f"image {ctx.image_id}"
        )
    lines.append(
        "another build on this daemon took the tag between `docker tag` and `docker "
        "push`; nothing more was pushed. To put the tags back:"
    )
    lines += [f"  {advice}" for advice in restore_advice(ctx, list(found))]
    return "the registry serves another image under this run's tags:\n" + "\n".join(lines)


def _local_tags(runner: Runner, image: str) -> str:
    """`` (locally: a:1, b:2)``: the daemon's tags of ``image``, or "" when it has none."""
    result = runner.run(
        Command(
            ("docker", "image", "inspect", "--format", "{{json .RepoTags}}", image),
            check=False,
            kind=Kind.PROBE,
        )
    )
    try:
        tags = json.loads(result.stdout) if result.ok else []
    except ValueError:
        tags = []
    return f" (locally: {', '.join(tags)})" if isinstance(tags, list) and tags else ""


def restore_advice(ctx: Context, refs: Sequence[str]) -> list[str]:
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
            advice.append(
                f"{ref} did not exist before this run: delete it (the registry's API "
                "or console; ECR: aws ecr batch-delete-image --image-ids "
                f"imageTag={ref.rsplit(':', 1)[1]})"
            )
        else:
            advice.append(
                f"{ref}: what it named before this run is unknown (it could not be "
                "read before the build)"
            )
    return advice


def _record(
    ctx: Context,
    ref: str,
    result: Result,
    kind: Optional[Failure],
    digests: MutableMapping[str, Optional[str]],
) -> None:
    """Note what ``docker push ref`` reported in ``digests``; PushFailed when it failed, or
    succeeded without naming a digest (the ref is then listed as pushed, digest unknown)."""
    output = result.stdout + result.stderr
    if not result.ok:
        raise PushFailed(f"{explain_push(ctx, ref, kind)}\n{tail(output)}")
    digests[ref] = digests.get(ref) or parse_push_digest(output)
    if not digests[ref]:
        raise PushFailed(
            f"docker push {ref} succeeded but printed no digest, so it "
            f"cannot be verified:\n{tail(output)}"
        )


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
        fix = (
            f"`aws ecr put-image-tag-mutability --repository-name {path} --registry-id "
            f"{ecr.account_of(registry)} --region {registry.region} ...`"
            if registry.is_ecr
            else "the registry's settings"
        )
        return (
            f"{ref}: the tag {tag!r} already exists and the repository's tags are "
            "immutable, so it cannot be overwritten; push only new tags "
            "(--skip-existing-immutable leaves existing ones out, --no-latest drops "
            f"'latest'), or allow overwriting with {fix}"
        )
    if kind is Failure.AUTH:
        aws = ecr.aws_context(ctx.environ)
        creds = ctx.push.credentials
        if registry.is_ecr and creds is not None and creds.helper:
            return (
                f"{ref}: {host} refused the push; docker gets its credentials from "
                f"{creds.describe()}{aws}: check the AWS credentials it uses and that "
                "they may push (ecr:PutImage, ecr:InitiateLayerUpload, ...)"
            )
        if registry.is_ecr:
            return (
                f"{ref}: {host} refused the push: the ECR token may have expired or the "
                f"AWS identity{aws} may not push to {path} "
                "(ecr:PutImage, ecr:InitiateLayerUpload, ...); run again to log in anew"
            )
        return (
            f"{ref}: {host} refused the push: not logged in, or not allowed to push to "
            f"{path}; run `docker login {host}` and try again"
        )
    if kind is Failure.NOT_FOUND:
        if registry.is_ecr:
            return (
                f"{ref}: repository {path} does not exist in account "
                f"{ecr.account_of(registry)} ({host}); {ecr.create_advice(registry)}"
            )
        return f"{ref}: {host} has no repository {path} (or does not let you see it)"
    if kind is Failure.DAEMON:
        return f"{ref}: {daemon_unreachable(ctx.plan.docker)}"
    if kind is Failure.UNREACHABLE:
        return (
            f"{ref}: cannot reach {host}: check the host and port in --registry and that "
            "the registry is up"
        )
    if kind is Failure.TRANSIENT:
        return (
            f"{ref}: push failed {ctx.plan.limits.push_attempts} times with a network or "
            "registry error (--push-attempts, --push-backoff)"
        )
    return f"docker push {ref} failed"


def session_of(ctx: Context) -> registry.Session:
    """The pre-flight's registry session (``prepare`` made it)."""
    session = ctx.push.session
    assert session is not None, "the push was not prepared"
    return session


def read_back(runner: Runner, ctx: Context, ref: str) -> Union[manifest.Manifest, str]:
    """What ``ref`` names on the registry (``manifest.read_manifest`` through the pre-flight's
    session), a transient failure retried as a push is (``retrying``); or the problem, in
    words for the user."""
    from ragbuild import manifest

    session = session_of(ctx)
    tag = ref.rsplit(":", 1)[1]
    url = manifest.manifest_url(session, tag)

    def attempt() -> Union[manifest.Manifest, manifest.ReadFailed]:
        try:
            return manifest.read_manifest(session, tag)
        except manifest.ReadFailed as failed:
            return failed

    try:
        answer, _ = retrying(
            runner,
            attempt,
            lambda got: str(got) if isinstance(got, manifest.ReadFailed) else None,
            ctx.sleep,
            f"GET {url}",
            ctx.plan.limits,
        )
    except ValueError as bad:
        return f"{ref}: {url} served no manifest: {bad}"
    if isinstance(answer, manifest.ReadFailed):
        return f"{ref}: cannot read its manifest back from the registry ({url}):\n{answer}"
    return answer
