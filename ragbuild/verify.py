"""The verify step: after the push, read back what each tag names in the registry and check it
is the image this run built; the result is the ``<repository>@<digest>`` to deploy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional
from collections.abc import Mapping

from ragbuild.buildx import NOT_FOR_SAGEMAKER
from ragbuild.errors import PushFailed
from ragbuild.run.console import SUCCESS
from ragbuild.plan import DRY_DIGEST
from ragbuild.run.runner import Runner

if TYPE_CHECKING:  # registry (urllib, ssl) and proxy are imported by a push only
    from ragbuild import manifest
    from ragbuild import registry as registry_api
from ragbuild.push import Context, normalize_platform, read_back, restore_advice, session_of


def _judge(
    ctx: Context, ref: str, manifest: manifest.Manifest, pushed: Mapping[str, Optional[str]]
) -> str:
    """The digest ``ref`` names, when it is what was pushed; ValueError says what it is not."""
    plan = ctx.plan
    if not plan.multi_platform:
        if manifest.is_index:
            raise ValueError(
                f"{ref} is an image index ({manifest.media_type}), not a single "
                "image manifest: SageMaker refuses image indexes; build without "
                "attestations "
                "(--provenance=false --sbom=false) for a single platform"
            )
        if not plan.options.not_for_sagemaker:
            from ragbuild import shape

            problem = shape.shape_problem(ref, manifest)
            if problem:
                raise ValueError(problem)
        if manifest.digest != pushed.get(ref):
            raise ValueError(
                f"{ref} resolves to {manifest.digest} on the registry, but the push "
                f"reported {pushed.get(ref)}"
            )
        if ctx.image_id is not None and not manifest.names_image(ctx.image_id):
            raise ValueError(
                f"{ref} serves the image {manifest.config or manifest.digest}, not "
                f"this run's image {ctx.image_id}; to put it back: "
                + "; ".join(restore_advice(ctx, [ref]))
            )
        return manifest.digest
    if not manifest.is_index:
        raise ValueError(
            f"{ref} is a single image manifest ({manifest.media_type}), not an "
            "image index of the platforms"
        )
    have = {normalize_platform(p) for p in manifest.platforms}
    missing = [p for p in plan.platforms if normalize_platform(p) not in have]
    if missing:
        raise ValueError(
            f"{ref}: the index lacks {', '.join(missing)} (it has "
            f"{', '.join(manifest.platforms) or 'no platform'})"
        )
    return manifest.digest


def _check_platform(
    runner: Runner, ctx: Context, session: registry_api.Session, ref: str
) -> list[str]:
    """The planned platform (``--platform``) is the pushed image's: its config's os/architecture
    (``shape.check_shape``), asked once, the refs all naming one manifest."""
    from ragbuild import manifest as manifest_api, shape

    planned = ctx.plan.platforms[0]

    def ask() -> Optional[str]:
        try:
            return shape.check_shape(session, ref, planned, normalize_platform)
        except (manifest_api.ReadFailed, ValueError) as failed:
            return f"{ref}: its platform cannot be read back: {failed}"

    problem = runner.check(
        f"read {ref}'s image config and expect the platform {planned}", ask, None
    )
    return [problem] if problem else []


@dataclass(frozen=True)
class Verified:
    """What the read-back found: the ``<repository>@<digest>`` to pin, and ref -> the index
    digest of each ref a multi-platform build pushed itself (none for a one-platform build:
    its push reported them)."""

    pinned: str
    digests: Mapping[str, Optional[str]] = field(default_factory=dict)


def verify(runner: Runner, ctx: Context, digests: Mapping[str, Optional[str]]) -> Verified:
    """Read every pushed ref back from the registry, all at once (``Runner.check_all``,
    ``read_back``): every ref must name what was pushed (the single image manifest ``docker
    push`` reported, or for a multi-platform build an index of every platform), all one digest.
    ``digests``: ref -> what the push reported. Returns ``Verified``, its ``pinned`` also
    written to stdout; PushFailed lists every problem. A multi-platform build's refs (pushed by
    the build itself) get their index digests in ``Verified.digests`` (and the error's
    ``pushed``). A dry run says what it would ask and takes the registry to
    answer with what was pushed."""
    from ragbuild import manifest
    from ragbuild.registry import describe

    plan = ctx.plan
    registry = plan.registry
    session = session_of(ctx)
    assert registry is not None
    if plan.multi_platform:
        expect = f"an image index of {', '.join(plan.platforms)}"
        what = (
            "the image index {digest} of " + ", ".join(plan.platforms) + f" ({NOT_FOR_SAGEMAKER})"
        )
        differ = "name different indexes"
    else:
        expect = "the single image manifest the push reported"
        what = "{digest}"
        differ = "were pushed as different manifests"

    def dry(ref: str) -> manifest.Manifest:  # what a dry run takes the registry to have answered
        if plan.multi_platform:
            return manifest.Manifest(DRY_DIGEST, manifest.OCI_INDEX, plan.platforms)
        return manifest.Manifest(
            digests.get(ref) or DRY_DIGEST, manifest.DOCKER_MANIFEST, config=ctx.image_id or ""
        )

    checks = [
        (
            f"GET {manifest.manifest_url(session, ref.rsplit(':', 1)[1])} "
            f"({describe(session)}; a pull token, the Docker and OCI manifest and index "
            f"types accepted) and expect {expect}",
            lambda ref=ref: read_back(runner, ctx, ref),
            dry(ref),
        )
        for ref in ctx.push.refs
    ]
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
    recorded = dict(found) if plan.multi_platform else {}
    if (
        not plan.multi_platform
        and plan.platforms
        and found
        and not plan.options.not_for_sagemaker
        and not problems
    ):
        problems += _check_platform(runner, ctx, session, next(iter(found)))
    distinct = sorted(set(found.values()))
    if len(distinct) > 1:
        problems.append(
            f"the tags of this build {differ}: "
            + ", ".join(f"{ref} {d}" for ref, d in found.items())
        )
    if problems:
        said = "verification failed:\n" + "\n".join(f"  {p}" for p in problems)
        raise PushFailed(said, pushed=recorded)
    pinned = f"{registry.uri}@{distinct[0]}"
    runner.report(
        f"pushed and verified {len(found)} tags, all {what.format(digest=distinct[0])}:", SUCCESS
    )
    for ref in found:
        runner.report(f"  {ref}")
    if ctx.push.skipped:
        why = (
            "they exist, and the repository's mutability is unknown"
            if ctx.push.in_order
            else "the repository keeps them immutable"
        )
        runner.report(f"left out ({why}): {', '.join(ctx.push.skipped)}")
    runner.emit(pinned)  # stdout: the one line a script wants
    return Verified(pinned, recorded)
