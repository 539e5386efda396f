"""The docker commands on the local image: ``docker image inspect`` (what a build made) and
``docker tag`` (a ref put on the image by its ID before each push)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # semver is imported where a version needs it
    pass

from ragbuild.run.command import Command, Kind


def tag_command(image_id: str, ref: str) -> Command:
    """``docker tag IMAGE_ID REF``: a ref named from the image's ID just before its push, so the
    push sends this run's image even when another build took the tag meanwhile."""
    return Command(("docker", "tag", image_id, ref), check=False)


def inspect_command(ref: str, refs: tuple[str, ...] = ()) -> Command:
    """The summary's one call: id, size, tags and (for --metadata-file) the image's labels.
    ``ref``: the image's ID (or a ref); ``refs``: the tags a dry run takes it to have."""
    return Command(
        (
            "docker",
            "image",
            "inspect",
            "--format",
            "{{.Id}} {{.Size}} {{json .RepoTags}} {{json .Config.Labels}}",
            ref,
        ),
        kind=Kind.PROBE,
        assume=f"IMAGE_ID 0 {json.dumps(list(refs or (ref,)))} null",
    )
