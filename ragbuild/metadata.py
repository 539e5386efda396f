"""``--metadata-file`` and ``$GITHUB_OUTPUT``: what a build made, for the tools after it.

The pipeline (pipeline.py) times each step and keeps what it found in its typed run state (the
summary's image id and labels, the pushed digests, the verified ``<repository>@<digest>``); the
``Recorder`` reads those fields. The JSON file is written at the end of the run, and also
when a step fails or is interrupted (``status`` says which, with the step and the error), so a
CI job can keep it as a record of a failed build too; it is not written when the flags or the
config are refused before any step ran. ``$GITHUB_OUTPUT``, when set, gets ``tags``, ``digest``
and ``image-id`` after a successful run only. In ``--dry-run`` nothing is written: the runner says
what would be (``Runner.apply``).
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import TYPE_CHECKING, Iterable, Optional

from ragbuild.errors import Interrupted, RagbuildError, UsageError
from ragbuild.plan import redact_argv, redact_value

if TYPE_CHECKING:  # the pipeline imports this module
    from ragbuild.pipeline import RunState
    from ragbuild.runner import Runner

#: Keys of the JSON document, in order (docs/metadata.md lists them).
KEYS = ("status", "failed_step", "error", "image", "refs", "pushed_refs", "version",
        "environment", "git_commit", "timestamp", "created", "image_id", "size", "labels",
        "build_args", "build_options", "digests", "digest", "pinned", "steps")


def redact(build_args: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The build args as the metadata shows them: ``plan.redact_value`` of each, the rule of
    every printout (secret-looking names' values and URL credentials hidden)."""
    return {key: redact_value(key, value) for key, value in build_args}


def github_output_lines(tags: Iterable[str], digest: str, image_id: str, delimiter: Optional[str] = None) -> str:
    """GitHub's ``$GITHUB_OUTPUT`` syntax: ``name=value``, and ``name<<DELIM ... DELIM`` for the
    multi-line ``tags`` (one ref per line), with a delimiter that occurs in no value."""
    if delimiter is None:
        import uuid

        delimiter = f"ghadelimiter_{uuid.uuid4()}"
    return (f"tags<<{delimiter}\n" + "".join(f"{tag}\n" for tag in tags) + f"{delimiter}\n"
            f"digest={digest}\nimage-id={image_id}\n")


def check_path(path: str, name: str = "--metadata-file", *, append: bool = False) -> None:
    """An output file the end of the run writes (``--metadata-file``, replaced) or appends to
    (``$GITHUB_OUTPUT``, ``append``), checked with the build's other paths before git or docker
    runs (and again by ``Recorder``): one the end of the run can write, or exit 2 now, not
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


class Recorder:
    """Writes what a build made (``pipeline.RunState``) to ``--metadata-file`` and
    ``$GITHUB_OUTPUT``."""

    def __init__(self, state: RunState, runner: Runner, *, path: Optional[str] = None,
                 github_output: Optional[str] = None):
        self.state = state
        self.runner = runner
        self.path = path
        self.github_output = github_output or None
        self.status = "succeeded"
        self.failed_step: Optional[str] = None
        self.error: Optional[str] = None
        if path is not None:
            check_path(path)
        if self.github_output is not None:
            check_path(self.github_output, "$GITHUB_OUTPUT", append=True)

    @classmethod
    def for_state(cls, state: RunState, runner: Runner) -> "Recorder":
        return cls(state, runner, path=state.options.metadata_file,
                   github_output=state.environ.get("GITHUB_OUTPUT"))

    def failed(self, step: str, err: BaseException) -> None:
        """Record a step's failure (or interruption, or a bug's exception) and write the file
        before the error goes on to the CLI."""
        # Ctrl-C, SIGTERM or SIGHUP (errors.Stopped), or the Interrupted the runner made of it
        interrupted = isinstance(err, (KeyboardInterrupt, Interrupted))
        self.status = "interrupted" if interrupted else "failed"
        self.failed_step = step
        if isinstance(err, (RagbuildError, KeyboardInterrupt)):
            text = str(err) or ("interrupted" if interrupted else type(err).__name__)
        else:
            text = f"{type(err).__name__}: {err}"
        self.error = text.strip().splitlines()[0]
        self._write_file(quiet_errors=True)

    # --- the document --------------------------------------------------------------------------

    def document(self) -> dict:
        state = self.state
        plan = state.plan
        image = state.image
        pinned = state.pinned
        digests = dict(state.digests)
        digest = pinned.rsplit("@", 1)[1] if pinned else None
        doc = {
            "status": self.status,
            "failed_step": self.failed_step,
            "error": self.error,
            "image": plan.base,
            "refs": list(plan.refs),
            "pushed_refs": list(digests),
            "version": plan.version,
            "environment": plan.env,
            "git_commit": plan.git.commit,
            "timestamp": plan.timestamp,
            "created": plan.created,  # the label the build set: one instant, one format
            "image_id": image.id if image else None,
            "size": image.size if image else None,
            "labels": dict(image.labels) if image else {},
            "build_args": redact(plan.build_args),
            "build_options": list(redact_argv(plan.passthrough)),  # --secret, --ssh, after --
            "digests": digests,
            "digest": digest,
            "pinned": pinned,
            "steps": {step: round(seconds, 3) for step, seconds in state.times.items()},
        }
        assert tuple(doc) == KEYS
        return doc

    # --- writing -------------------------------------------------------------------------------

    def finish(self) -> None:
        """After the last step: the file, then $GITHUB_OUTPUT (success only)."""
        self._write_file()
        if not self.github_output:
            return
        github_output = self.github_output
        doc = self.document()
        tags = doc["pushed_refs"] or doc["refs"]

        def append() -> None:
            try:
                with open(github_output, "a", encoding="utf-8") as handle:
                    handle.write(github_output_lines(tags, doc["digest"] or "",
                                                     doc["image_id"] or ""))
            except OSError as err:
                raise RagbuildError(f"cannot append to $GITHUB_OUTPUT ({github_output}): "
                                    f"{err.strerror}") from None
            self.runner.log("appended tags, digest and image-id to $GITHUB_OUTPUT")

        self.runner.apply(f"append tags, digest and image-id to $GITHUB_OUTPUT ({github_output})",
                          append)

    def _write_file(self, quiet_errors: bool = False) -> None:
        if self.path is None:
            return
        path = self.path

        def write() -> None:
            text = json.dumps(self.document(), indent=2) + "\n"
            temporary = f"{path}.tmp-{os.getpid()}"
            try:
                with open(temporary, "w", encoding="utf-8") as handle:
                    handle.write(text)
                os.replace(temporary, path)  # readers never see half a file
            except OSError as err:
                with contextlib.suppress(OSError):  # no .tmp-<pid> left behind
                    os.unlink(temporary)
                message = f"cannot write --metadata-file {path}: {err.strerror}"
                if quiet_errors:  # the step's own error matters more
                    self.runner.log(f"warning: {message}")
                    return
                raise RagbuildError(message) from None
            self.runner.log(f"wrote the build metadata ({self.status}) to {path}")

        self.runner.apply(f"write the build metadata to {path} (JSON: {', '.join(KEYS)})", write)
