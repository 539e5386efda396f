"""The inspect step: what the build made, read from the daemon by the image ID the build wrote
(size, tags, labels), checked against the plan."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Optional
from collections.abc import Mapping, Sequence

from ragbuild.describe import human_size
from ragbuild.errors import CommandFailed
from ragbuild.images import inspect_command
from ragbuild.plan import CREATED_LABEL, BuildPlan
from ragbuild.reference import familiar
from ragbuild.run.console import SUCCESS
from ragbuild.run.runner import Runner

if TYPE_CHECKING:  # scan.py is imported when --scan asks for it, guard.py by the context step
    pass


@dataclass(frozen=True)
class Image:
    """The built image as ``docker image inspect`` describes it."""

    id: str
    size: int  # bytes
    repo_tags: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    followed: str = ""  # what the summary asked the daemon by: the ID the rest of the run uses

    def lacks(self, refs: Sequence[str]) -> list[str]:
        """The refs of ``refs`` that are not among the image's tags, compared as docker lists
        them (``reference.familiar``: ``docker.io/library/x:t`` is ``x:t``)."""
        listed = {familiar(tag) for tag in self.repo_tags}
        return [ref for ref in refs if familiar(ref) not in listed]


def summarize(
    runner: Runner,
    plan: BuildPlan,
    image_id: Optional[str] = None,
    *,
    pushed: bool = False,
    manifest: Optional[str] = None,
    unique_created: bool = True,
) -> Optional[Image]:
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
        runner.log(
            f"built for {', '.join(plan.platforms)} and pushed by the build itself: "
            "an image index, read back from the registry instead of inspected locally"
        )
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
        raise CommandFailed(
            f"cannot read docker image inspect output: {bad}: {_clip(result.stdout)!r}"
        ) from None
    if by_label and not (unique_created and image.labels.get(CREATED_LABEL) == plan.created):
        why = (
            "SOURCE_DATE_EPOCH gives every build the same created label"
            if not unique_created
            else f"{plan.primary} names an image of another run (created "
            f"{image.labels.get(CREATED_LABEL) or 'unknown'})"
        )
        raise CommandFailed(
            f"the daemon knows no image {image_id} (the ID the build wrote: on "
            "the containerd image store buildx writes the config's digest) and "
            f"{why}, so this run's image cannot be told apart; nothing was "
            "pushed by ragbuild"
        )
    image = replace(image, followed=image.id if by_label else followed)
    runner.report(
        f"built {image.id} ({human_size(image.size)}) with {len(plan.refs)} tags:", SUCCESS
    )
    for ref in plan.refs:
        runner.report(f"  {ref}")
    missing = image.lacks(plan.refs)
    if missing:
        out = (
            f"; the build had already pushed its {len(plan.refs)} tags to "
            f"{plan.registry.uri if plan.registry else 'the registry'} (not read back)"
            if pushed
            else ""
        )
        raise CommandFailed(
            f"the built image lacks tags {', '.join(missing)}; docker reported "
            f"{', '.join(image.repo_tags)}{out}"
        )
    flags = plan.docker.docker_flags() if plan.docker is not None else ()
    runner.report(
        f"run it: docker {''.join(f'{flag} ' for flag in flags)}run -p 8080:8080 {plan.primary}"
    )
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
    if repo_tags is not None and not (
        isinstance(repo_tags, list) and all(isinstance(tag, str) for tag in repo_tags)
    ):
        raise ValueError("the tags are not a list of strings")
    if labels is not None and not isinstance(labels, dict):
        raise ValueError("the labels are not an object")
    return Image(image_id, int(size), tuple(repo_tags or ()), labels or {})


def _clip(text: str, limit: int = 200) -> str:
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]
