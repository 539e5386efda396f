"""``clean``: remove the tags ragbuild's builds made (label org.ragbuild.repository), and no
other tag."""

from __future__ import annotations

import json
from typing import Any, Optional
from collections.abc import Sequence

from ragbuild.commands.args import ArgumentParser, sub_parser
from ragbuild.commands.local import LOCAL_CONTAINER
from ragbuild.errors import EXIT_OK, CommandFailed
from ragbuild.plan import REPOSITORY_LABEL
from ragbuild.reference import familiar
from ragbuild.run.command import Command, Kind
from ragbuild.run.runner import Runner

#: What a dry run of ``clean`` takes the tags of ragbuild's builds to be (it lists no images).
DRY_REFS = "RAGBUILD_REFS"


PRUNE_HINT = f"docker image prune --filter label={REPOSITORY_LABEL}"


def list_images_command() -> Command:
    """Every image carrying the repository label: ragbuild's, and images built FROM them."""
    return Command(
        ("docker", "image", "ls", "--filter", f"label={REPOSITORY_LABEL}", "--quiet", "--no-trunc"),
        kind=Kind.PROBE,
        assume="IMAGE_IDS",
    )


def inspect_images_command(ids: Sequence[str]) -> Command:
    """ONE inspect of every listed id (tags and labels); checked by ``_inspect``."""
    return Command(
        ("docker", "image", "inspect", *ids),
        check=False,
        kind=Kind.PROBE,
        assume=json.dumps(
            [
                {
                    "Id": "IMAGE_ID",
                    "RepoTags": [DRY_REFS],
                    "Config": {"Labels": {REPOSITORY_LABEL: DRY_REFS}},
                }
            ]
        ),
    )


def clean(
    runner: Runner, *, name: str = LOCAL_CONTAINER, repositories: Optional[Sequence[str]] = None
) -> list[str]:
    """Remove the tags ragbuild's builds of this project put on images (label
    org.ragbuild.repository naming one of ``repositories``: ``cleanup.project_repositories``;
    None: every labelled image, ``clean --all``), and only those: docker deletes an image once
    its last tag is gone, so an image that also carries a tag of its own (a fork, a user's
    ``docker tag``) survives under that tag. An image a container uses (running or stopped)
    keeps every tag, and is named with its containers; the local run container is removed only
    when it runs an image this deletes. Returns the refs removed."""
    from ragbuild import cleanup

    listed = runner.run(list_images_command())
    ids = list(dict.fromkeys(listed.stdout.split()))
    images = _inspect(runner, ids) if ids else []

    def label(image: dict[str, Any]) -> Optional[str]:
        return ((image.get("Config") or {}).get("Labels") or {}).get(REPOSITORY_LABEL)

    ours = [
        image
        for image in images
        if label(image) == DRY_REFS or cleanup.in_scope(label(image), repositories)
    ]
    others = sorted(
        {
            familiar(label(image) or "")
            for image in images
            if image not in ours and image.get("RepoTags")
        }
    )
    if others:
        assert repositories is not None
        runner.log(
            f"kept the images of other repositories ({', '.join(others)}): not this "
            f"project's ({', '.join(repositories)}); clean --all removes every ragbuild "
            "build's tags"
        )
    images, rest = ours, [image for image in images if image not in ours]
    untagged = sum(1 for image in images if not image.get("RepoTags"))
    wanted = any(cleanup.ragbuild_refs(image) for image in images)
    found = cleanup.containers(runner) if wanted else []
    plan = cleanup.plan_removal(images, found, name, others=rest)
    removing, deleted, in_use = plan.removing, plan.deleted, set(plan.in_use)
    for image_id, (image_refs, using) in plan.in_use.items():
        runner.log(
            f"kept {', '.join(image_refs)}: image {str(image_id)[:19]} is used by "
            f"{cleanup.describe_users(using)} (docker would untag it "
            "while another tag is left; remove the container, then clean again)"
        )
    refs = [ref for image_refs in removing.values() for ref in image_refs]
    if not refs:
        kept = len(images) - untagged - len(in_use)
        why = f"; {kept} labelled image(s) carry only tags of their own (kept)" if kept else ""
        runner.log(
            f"nothing to clean: no image has a tag a ragbuild build made (the repository "
            f"in its {REPOSITORY_LABEL} label){why}"
        )
        _hint_untagged(runner, untagged)
        return []
    # the local container goes only once every other tag went: a refusal keeps it running
    last = removing[plan.local.image] if plan.local is not None else []
    first = [ref for ref in refs if ref not in last]
    gone = _remove_tags(runner, first, keeping=name if last else None) if first else []
    if last:
        runner.run(Command(("docker", "rm", "-f", name), check=False))  # gone already: fine
        gone += _remove_tags(runner, last)
    kept = sum(
        1
        for image in images
        if image.get("RepoTags")
        and image.get("Id") not in deleted
        and image.get("Id") not in plan.parents
        and image.get("Id") not in in_use
    )
    also = f"; {kept} labelled image(s) keep tags of their own" if kept else ""
    if plan.parents:
        also += (
            f"; {len(plan.parents)} left untagged, as the parent of another image "
            "(docker deletes it with its last child)"
        )
    also += f"; {len(in_use)} kept in use by containers" if in_use else ""
    already = f" ({len(gone)} were gone already)" if gone else ""
    runner.report(
        f"removed {len(refs) - len(gone)} tag(s) of ragbuild builds{already}: "
        f"{len(deleted)} image(s) deleted{also}"
    )
    _hint_untagged(runner, untagged)
    return refs


def _remove_tags(
    runner: Runner, refs: Sequence[str], keeping: Optional[Sequence[str]] = None
) -> list[str]:
    """``docker image rm`` of ``refs`` (no --force); returns docker's lines for tags removed
    since the listing (a concurrent clean, a user: gone, as clean wants). Any other refusal
    raises, saying that the container ``keeping`` was left as it was."""
    remove = Command(("docker", "image", "rm", *refs), check=False)
    result = runner.run(remove)
    said = [line for line in result.stderr.splitlines() if line.strip()]
    gone = [line for line in said if "No such image:" in line]
    refused = [line for line in said if line not in gone]
    if not result.ok and (refused or not gone):
        detail = "\n".join(refused[-15:]) or f"exit {result.returncode}"
        kept = f"; container {keeping} was left running" if keeping else ""
        raise CommandFailed(
            f"`{remove.display()}` failed (exit {result.returncode}):\n{detail}\n"
            "(an image a container uses is kept: remove that container with "
            f"docker rm -f, then run clean again{kept})",
            returncode=result.returncode,
        )
    return gone


def _inspect(runner: Runner, ids: Sequence[str]) -> list[dict[str, Any]]:
    """ONE ``docker image inspect`` of every listed id. An image removed since the listing is
    only missing from the answer (docker prints the others, then exits 1)."""
    result = runner.run(inspect_images_command(ids))
    try:
        images = json.loads(result.stdout or "[]")
    except ValueError:
        images = None
    if not isinstance(images, list) or (not result.ok and "No such" not in result.stderr):
        raise CommandFailed(
            f"`{inspect_images_command(['...']).display()}` failed "
            f"(exit {result.returncode}): {result.stderr.strip()[:500]}",
            returncode=result.returncode,
        )
    return images


def _hint_untagged(runner: Runner, count: int) -> None:
    if count:
        runner.log(
            f"{count} untagged image(s) with the label left (earlier builds' leftovers, "
            f"or a fork's); to remove them: {PRUNE_HINT}"
        )


def clean_parser() -> ArgumentParser:
    parser = sub_parser(
        "clean",
        "Remove the tags this project's ragbuild builds put on images "
        "(the image name and registry a build here uses, matched "
        "against their org.ragbuild.repository label), and no other "
        "tag: an image built FROM one, or one you tagged yourself, "
        "keeps its own tags; an image a container uses keeps all of "
        "them. Untagged leftovers: " + PRUNE_HINT,
    )
    parser.add_argument(
        "--image-name",
        default=None,
        help="the local image name a build here uses (default: image-name in "
        "setup.cfg, else rag-worker)",
    )
    parser.add_argument(
        "--registry",
        default=None,
        help="the registry URI a build here pushes to (default: $ECR_REGISTRY_URI)",
    )
    parser.add_argument(
        "--all", action="store_true", help="every image a ragbuild build labelled, of any project"
    )
    return parser


def cmd_clean(argv: list[str]) -> int:
    import os

    from ragbuild import cleanup
    from ragbuild.config import load_config
    from ragbuild.reference import check_image_name, parse_registry
    from ragbuild.run.dry import make_runner

    ns = clean_parser().parse_args(argv)
    repositories = None
    if not ns.all:
        name = (
            check_image_name(ns.image_name)
            if ns.image_name is not None
            else load_config().image_name
        )
        registry, source = ns.registry, "--registry"
        if registry is None and os.environ.get("ECR_REGISTRY_URI"):
            registry, source = os.environ["ECR_REGISTRY_URI"], "ECR_REGISTRY_URI"
        uri = parse_registry(registry, source).uri if registry is not None else None
        repositories = cleanup.project_repositories(name, uri)
    clean(make_runner(ns.dry_run), repositories=repositories)
    return EXIT_OK
