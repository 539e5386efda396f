"""``--metadata-file`` and ``$GITHUB_OUTPUT``: what a build made, for the tools after it.

The pipeline (steps/__init__.py) times each step and keeps what it found in its typed run state (the
summary's image id and labels, the pushed digests, the verified ``<repository>@<digest>``); its
``Recorder`` reads those fields into the document whose keys and helpers are here. The JSON file is written at the end of the run, and also
when a step fails or is interrupted (``status`` says which, with the step and the error), so a
CI job can keep it as a record of a failed build too; it is not written when the flags or the
config are refused before any step ran. ``$GITHUB_OUTPUT``, when set, gets ``tags``, ``digest``
and ``image-id`` after a successful run only. In ``--dry-run`` nothing is written: the runner says
what would be (``Runner.apply``).
"""

from __future__ import annotations

import os
from typing import Optional
from collections.abc import Iterable

from ragbuild.errors import UsageError
from ragbuild.run.redaction import redact_value


#: Keys of the JSON document, in order (docs/metadata.md lists them).
KEYS = (
    "status",
    "failed_step",
    "error",
    "image",
    "refs",
    "pushed_refs",
    "version",
    "environment",
    "git_commit",
    "timestamp",
    "created",
    "image_id",
    "size",
    "labels",
    "build_args",
    "build_options",
    "digests",
    "digest",
    "pinned",
    "gate",
    "steps",
)


def redact(build_args: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The build args as the metadata shows them: ``redaction.redact_value`` of each, the rule of
    every printout (secret-looking names' values and URL credentials hidden)."""
    return {key: redact_value(key, value) for key, value in build_args}


def github_output_lines(
    tags: Iterable[str], digest: str, image_id: str, delimiter: Optional[str] = None
) -> str:
    """GitHub's ``$GITHUB_OUTPUT`` syntax: ``name=value``, and ``name<<DELIM ... DELIM`` for the
    multi-line ``tags`` (one ref per line), with a delimiter that occurs in no value."""
    if delimiter is None:
        import uuid

        delimiter = f"ghadelimiter_{uuid.uuid4()}"
    return (
        f"tags<<{delimiter}\n" + "".join(f"{tag}\n" for tag in tags) + f"{delimiter}\n"
        f"digest={digest}\nimage-id={image_id}\n"
    )


def check_path(path: str, name: str = "--metadata-file", *, append: bool = False) -> None:
    """An output file the end of the run writes (``--metadata-file``, replaced) or appends to
    (``$GITHUB_OUTPUT``, ``append``), checked with the build's other paths before git or docker
    runs (and again by ``steps.Recorder``): one the end of the run can write, or exit 2 now, not
    after a build or a push."""
    if not path:
        raise UsageError(f"{name} is empty; name a file, e.g. {name} build.json")
    if os.path.isdir(path):
        raise UsageError(f"{name} {path} is a directory; name a file")
    if append and os.path.exists(path):
        if not os.access(path, os.W_OK):
            raise UsageError(f"{name} {path} is not writable")
        return
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageError(f"{name} {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):  # the file is written beside itself, then renamed
        raise UsageError(f"{name} {path}: directory {parent} is not writable")
