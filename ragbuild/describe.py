"""The plan as the log shows it before anything runs (``describe_plan``: image, version, git
commit, where it builds, tags, build args), and sizes as people read them (``human_size``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ragbuild import passthrough
from ragbuild.buildx import NOT_FOR_SAGEMAKER

if TYPE_CHECKING:  # semver is imported where a version needs it
    pass

from ragbuild.plan import BuildPlan
from ragbuild.run.redaction import redact_value


def describe_plan(plan: BuildPlan) -> list[str]:
    """The lines printed before the build: image, tags, build args."""
    lines = [f"image: {plan.base}"]
    if plan.version:
        lines.append(f"version: {plan.version}")
    if plan.env:
        lines.append(f"environment: {plan.env}")
    lines.append(
        f"git commit: {plan.git.commit}"
        + (" (--git-commit: a tree without .git, not compared)" if plan.git.given else "")
    )
    lines.append(f"timestamp: {plan.timestamp}")
    lines += _describe_builder(plan)
    opts = plan.options
    lines += plan.host.describe()
    lines += passthrough.describe(opts.secrets, opts.ssh, opts.docker_options)
    lines.append("tags:")
    lines += [f"  - {ref}" for ref in plan.refs]
    if plan.notes:
        lines.append("tag choices:")
        lines += [f"  {note}" for note in plan.notes]
    hidden = any(redact_value(k, v) != v for k, v in plan.build_args)
    lines.append("build args (secret values shown as ***):" if hidden else "build args:")
    lines += [f"  {k}={redact_value(k, v)}" for k, v in plan.build_args]
    return lines


def _describe_builder(plan: BuildPlan) -> list[str]:
    """Which daemon, builder, platforms and cache the build uses."""
    opts, lines = plan.options, []
    if plan.docker is not None:
        lines.append(f"docker daemon: {plan.docker.describe()}")
    if plan.buildx:
        name = (
            f"{opts.builder} (--builder)"
            if opts.builder
            else "the selected buildx builder (docker buildx use, or BUILDX_BUILDER)"
        )
        lines.append(f"builder: {name}, via docker buildx build (for {'; '.join(plan.buildx)})")
    if plan.multi_platform:
        lines.append(
            f"platforms: {', '.join(plan.platforms)} (one image index, pushed by the build "
            f"itself; {NOT_FOR_SAGEMAKER})"
        )
    elif plan.platforms:
        lines.append(f"platform: {plan.platforms[0]}")
    for cache in plan.cache_from:
        lines.append(f"cache from: {cache.raw if plan.buildx else cache.ref}")
    for cache in plan.cache_to:
        how = "" if plan.buildx else " (plain docker build: BUILDKIT_INLINE_CACHE=1)"
        lines.append(f"cache to: {cache.raw}{how}")
    if opts.pull:
        lines.append("pull: always pull the FROM images (--pull)")
    return lines


def human_size(size: int) -> str:
    if size < 1000:
        return f"{size:.0f}B"
    value = size / 1000
    for unit in ("kB", "MB"):
        if value < 1000:
            return f"{value:.1f}{unit}"
        value /= 1000
    return f"{value:.1f}GB"
