"""``--metadata-file`` and ``$GITHUB_OUTPUT``: what a build made, for the tools after it.

The CLI hands each step to ``Recorder.time``, which measures its wall time and keeps what it
returned (the summary's image id and labels, the pre-flight's push with its digests, the
verified ``<repository>@<digest>``). The JSON file is written at the end of the run, and also
when a step fails or is interrupted (``status`` says which, with the step and the error), so a
CI job can keep it as a record of a failed build too; it is not written when the flags or the
config are refused before any step ran. ``$GITHUB_OUTPUT``, when set, gets ``tags``, ``digest``
and ``image-id`` after a successful run only. In ``--dry-run`` nothing is written: the log says
what would be.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from typing import Optional

from ragbuild.errors import Interrupted, RagbuildError, UsageError
from ragbuild.plan import redact_value

#: Keys of the JSON document, in order (the README lists them).
KEYS = ("status", "failed_step", "error", "image", "refs", "pushed_refs", "version",
        "environment", "git_commit", "timestamp", "created", "image_id", "size", "labels",
        "build_args", "digests", "digest", "pinned", "steps")


def redact(build_args) -> dict:
    """The build args as the metadata shows them: ``plan.redact_value`` of each, the rule of
    every printout (secret-looking names' values and URL credentials hidden)."""
    return {key: redact_value(key, value) for key, value in build_args}


def github_output_lines(tags, digest: str, image_id: str, delimiter: Optional[str] = None) -> str:
    """GitHub's ``$GITHUB_OUTPUT`` syntax: ``name=value``, and ``name<<DELIM ... DELIM`` for the
    multi-line ``tags`` (one ref per line), with a delimiter that occurs in no value."""
    if delimiter is None:
        import uuid

        delimiter = f"ghadelimiter_{uuid.uuid4()}"
    return (f"tags<<{delimiter}\n" + "".join(f"{tag}\n" for tag in tags) + f"{delimiter}\n"
            f"digest={digest}\nimage-id={image_id}\n")


def check_path(path: str) -> None:
    """``--metadata-file``, checked with the build's other paths before git or docker runs (and
    again by ``Recorder``): a file the end of the run can write, or exit 2 now, not after a push."""
    if not path:
        raise UsageError("--metadata-file is empty; name a file, e.g. --metadata-file build.json")
    if os.path.isdir(path):
        raise UsageError(f"--metadata-file {path} is a directory; name a file")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageError(f"--metadata-file {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):  # the file is written beside itself, then renamed
        raise UsageError(f"--metadata-file {path}: directory {parent} is not writable")


class Recorder:
    """Times the steps and writes what the build made."""

    def __init__(self, plan, runner, *, path: Optional[str] = None,
                 github_output: Optional[str] = None, clock=time.monotonic):
        self.plan = plan
        self.runner = runner
        self.path = path
        self.github_output = github_output or None
        self.clock = clock
        self.steps = {}  # step -> seconds, in the order they ran
        self.results = {}  # step -> what it returned
        self.status = "succeeded"
        self.failed_step = None
        self.error = None
        if path is not None:
            check_path(path)

    @classmethod
    def for_options(cls, options, plan, runner, environ=os.environ) -> "Recorder":
        return cls(plan, runner, path=options.metadata_file,
                   github_output=environ.get("GITHUB_OUTPUT"))

    def time(self, step: str, function, *args, **kwargs):
        """Run one step, keep its wall time and its result; on a failure, record it and write
        the metadata file before the error goes on to the CLI."""
        started = self.clock()
        try:
            result = function(*args, **kwargs)
        except BaseException as err:  # also a bug's exception: the record of the failure matters
            self._timed(step, started)
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
            raise
        self._timed(step, started)
        self.results[step] = result
        return result

    def _timed(self, step: str, started: float) -> None:
        self.steps[step] = self.clock() - started

    # --- the document --------------------------------------------------------------------------

    def document(self) -> dict:
        plan = self.plan
        image = self.results.get("inspect") or {}
        pushing = getattr(self.results.get("pre-flight"), "pushing", None)  # steps.Preflight
        pinned = self.results.get("verify")
        digests = dict(getattr(pushing, "digests", None) or {})
        digest = pinned.rsplit("@", 1)[1] if pinned else None
        created = plan.created  # the label the build set: one instant, one format
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
            "created": created,
            "image_id": image.get("id"),
            "size": image.get("size"),
            "labels": image.get("labels") or {},
            "build_args": redact(plan.build_args),
            "digests": digests,
            "digest": digest,
            "pinned": pinned,
            "steps": {step: round(seconds, 3) for step, seconds in self.steps.items()},
        }
        assert tuple(doc) == KEYS
        return doc

    # --- writing -------------------------------------------------------------------------------

    def finish(self) -> None:
        """After the last step: the file, then $GITHUB_OUTPUT (success only)."""
        self._write_file()
        if not self.github_output:
            return
        if self.runner.dry_run:
            self.runner.log(f"dry run: would append tags, digest and image-id to $GITHUB_OUTPUT "
                            f"({self.github_output})")
            return
        doc = self.document()
        tags = doc["pushed_refs"] or doc["refs"]
        try:
            with open(self.github_output, "a", encoding="utf-8") as handle:
                handle.write(github_output_lines(tags, doc["digest"] or "", doc["image_id"] or ""))
        except OSError as err:
            raise RagbuildError(f"cannot append to $GITHUB_OUTPUT ({self.github_output}): "
                                f"{err.strerror}") from None
        self.runner.log("appended tags, digest and image-id to $GITHUB_OUTPUT")

    def _write_file(self, quiet_errors: bool = False) -> None:
        if self.path is None:
            return
        if self.runner.dry_run:
            self.runner.log(f"dry run: would write the build metadata to {self.path} "
                            f"(JSON: {', '.join(KEYS)})")
            return
        text = json.dumps(self.document(), indent=2) + "\n"
        temporary = f"{self.path}.tmp-{os.getpid()}"
        try:
            with open(temporary, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(temporary, self.path)  # readers never see half a file
        except OSError as err:
            with contextlib.suppress(OSError):  # no .tmp-<pid> left behind
                os.unlink(temporary)
            message = f"cannot write --metadata-file {self.path}: {err.strerror}"
            if quiet_errors:  # the step's own error matters more
                self.runner.log(f"warning: {message}")
                return
            raise RagbuildError(message) from None
        self.runner.log(f"wrote the build metadata ({self.status}) to {self.path}")
