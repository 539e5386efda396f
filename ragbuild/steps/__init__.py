"""The build as a workflow of small steps over one typed run state (like nox's sessions).

facts -> plan -> context guard -> pre-flight -> build -> summary -> smoke test -> scan -> push
-> verify -> record. From the build on, every step follows the image by the ID the build wrote
(``--iidfile``), never by a tag another build on the daemon may have moved meanwhile. ``gather`` makes the facts and the plan, which is final before the build:
what to push and how is decided there or by the pre-flight, whose ``PushPlan`` the build
consumes. ``run`` then runs each ``Step`` that applies, timed once by the loop; a failing step
stops the run, and the metadata recorder (``Recorder``, below; the keys in metadata.py)
writes what the state holds either way. Only this module writes the state: each step returns
what it made (a failed push's error carries what went: ``PushFailed.pushed``). One module a step: facts.py, context.py, preflight.py,
build.py, summary.py (inspect); smoke, scan, push and verify run smoke.py, scan.py, push.py
and verify.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional
from collections.abc import Mapping, Sequence

from ragbuild.config import Config, Options
from ragbuild.describe import describe_plan
from ragbuild.errors import Interrupted, PushFailed, RagbuildError
from ragbuild.git import shown_path
from ragbuild.metadata import KEYS, check_path, github_output_lines, redact
from ragbuild.plan import BuildPlan
from ragbuild.run.redaction import redact_argv
from ragbuild.run.runner import Runner
from ragbuild.steps import build, context, preflight, summary
from ragbuild.steps.facts import Facts, gather_facts, make_plan
from ragbuild.steps.preflight import Preflight
from ragbuild.steps.summary import Image

if TYPE_CHECKING:  # imported where a step needs them
    from ragbuild import guard, push


@dataclass
class RunState:
    """What one build run knows, filled in step by step. ``digests`` gets each ref a step
    pushed or read back (a failed push still records what went); the other fields are each one
    step's typed result."""

    options: Options
    config: Config
    facts: Facts
    plan: BuildPlan
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    preflight: Preflight = field(default_factory=Preflight)
    context: Optional[guard.ContextReport] = None  # what the context guard found
    image: Optional[Image] = None
    health: Optional[dict[str, Any]] = None  # what /health answered in the smoke test (JSON)
    #: the SageMaker gate's record (sagemaker.recorded), or None
    gate: Optional[dict[str, Any]] = None
    #: ref -> digest the push reported (None: pushed, digest unknown)
    digests: dict[str, Optional[str]] = field(default_factory=dict)
    build_pushed: bool = False  # the build pushed the refs itself (no docker push after it)
    #: the built image's ID (``docker build --iidfile``), which every later step follows; None
    #: for a multi-platform build (no local image)
    image_id: Optional[str] = None
    built_manifest: Optional[str] = None  # what a build that pushed reported (build.Built)
    pinned: Optional[str] = None  # <repository>@<digest>, verified
    times: dict[str, float] = field(default_factory=dict)  # step -> seconds, in the order run


# --- the steps, each from the state's typed fields to one typed field -------------------------


def _context(runner: Runner, state: RunState) -> None:
    state.context = context.check_context(runner, state.plan)


def _preflight(runner: Runner, state: RunState) -> None:
    classic = state.context is not None and state.context.classic_walk
    state.preflight = preflight.preflight(
        runner, state.plan, state.config, state.facts, state.environ, classic
    )


def _build(runner: Runner, state: RunState) -> None:
    built = build.build(
        runner,
        state.plan,
        state.preflight.push,
        unique_created=state.facts.unique_created,
    )
    state.build_pushed, state.image_id, state.built_manifest = (
        built.pushed,
        built.image_id,
        built.manifest,
    )
    state.digests.update(built.digests)


def _inspect(runner: Runner, state: RunState) -> None:
    state.image = summary.summarize(
        runner,
        state.plan,
        state.image_id,
        pushed=state.build_pushed,
        manifest=state.built_manifest,
        unique_created=state.facts.unique_created,
    )
    if state.image is not None and state.image_id is not None:
        state.image_id = state.image.followed  # the ID the daemon knows the image by


def _smoke(runner: Runner, state: RunState) -> None:
    from ragbuild import gate_record, sagemaker

    image = state.image_id or state.plan.primary
    try:
        result, state.gate = gate_record.recorded(
            image, lambda: sagemaker.check(runner, state.plan, state.image_id)
        )
    except sagemaker.GateFailed as failed:
        state.gate = failed.record  # the metadata says which rule broke
        raise
    state.health = result.health


def _scan(runner: Runner, state: RunState) -> None:
    from ragbuild import scan

    assert state.preflight.scanner is not None
    scan.run(runner, state.preflight.scanner, state.plan, state.image_id)  # none after a failure


def _push_context(state: RunState) -> push.Context:
    from ragbuild import push

    assert state.preflight.push is not None
    return push.Context(
        state.plan,
        state.preflight.push,
        state.facts.docker_config,
        state.environ,
        image_id=state.image_id,
    )


def _push(runner: Runner, state: RunState) -> None:
    from ragbuild import push

    state.digests.update(push.push(runner, _push_context(state)))


def _verify(runner: Runner, state: RunState) -> None:
    from ragbuild import verify

    verified = verify.verify(runner, _push_context(state), state.digests)
    state.digests.update(verified.digests)
    state.pinned = verified.pinned


@dataclass(frozen=True)
class Step:
    name: str  # as the metadata's ``steps`` and ``failed_step`` name it
    run: Callable[[Runner, RunState], None]
    applies: Callable[[RunState], bool] = lambda state: True


STEPS = (
    Step("context", _context),  # before login and the long build
    Step("pre-flight", _preflight, lambda s: preflight.needs_preflight(s.plan)),
    Step("build", _build),
    Step("inspect", _inspect),
    Step("smoke", _smoke, lambda s: s.options.smoke_test),
    Step("scan", _scan, lambda s: s.preflight.scanner is not None),
    # unless the build pushed (plan.build_pushes: buildx with the daemon's own builder, or
    # several platforms)
    Step("push", _push, lambda s: s.preflight.push is not None and not s.build_pushed),
    Step("verify", _verify, lambda s: s.preflight.push is not None),
)


def gather(
    runner: Runner, options: Options, config: Config, environ: Mapping[str, str] = os.environ
) -> RunState:
    """Facts, then the plan, printed before any step runs."""
    facts = gather_facts(runner, options, environ, config)
    plan = make_plan(options, config, facts)
    git = facts.git
    if not git.sha:
        runner.log(f"warning: {git.reason}: no git-<sha> tag, GIT_COMMIT=unknown")
    elif git.dirty:
        runner.log(
            f"warning: the git tree has uncommitted changes ({git.describe_changes()}): "
            f"tagging git-{git.sha}-dirty"
        )
    if git.outside:
        first = shown_path(git.outside[0])
        what = (
            f"the file docker sends {first} is"
            if len(git.outside) == 1
            else f"{len(git.outside)} files docker sends (e.g. {first}) are"
        )
        them = "it" if len(git.outside) == 1 else "them"
        runner.log(
            f"warning: {what} outside the git work tree {git.toplevel}: commit {git.sha} "
            f"says nothing about {them}"
        )
    for line in describe_plan(plan):
        runner.log(line)
    return RunState(options, config, facts, plan, environ)


def run(
    runner: Runner, state: RunState, *, clock: Callable[[], float] = time.monotonic
) -> RunState:
    """Run every step that applies, in order, each timed; the metadata is written at the end,
    and also when a step fails or is interrupted (then the error goes on to the CLI). Every
    docker command of the steps goes where the plan builds (``Runner.aimed_at``)."""
    if state.plan.docker is not None:
        runner = runner.aimed_at(state.plan.docker.docker_flags())
    recorder = Recorder.for_state(state, runner)
    for step in STEPS:
        if step.applies(state):
            _run_step(runner, state, recorder, step.name, step.run, clock)
    recorder.finish()
    return state


@dataclass(frozen=True)
class Made:
    """What a step of another flow (push IMAGE, promote: ``run_steps``) made, which this module
    puts into the state: each field given replaces the state's, ``digests`` are added."""

    plan: Optional[BuildPlan] = None
    facts: Optional[Facts] = None
    preflight: Optional[Preflight] = None
    image: Optional[Image] = None
    image_id: Optional[str] = None
    digests: Mapping[str, Optional[str]] = field(default_factory=dict)
    pinned: Optional[str] = None
    gate: Optional[dict[str, Any]] = None  # the gate's record (``sagemaker.recorded``)


#: A step of another flow: its name (as the metadata's ``steps`` name it; a name given twice
#: is one step, timed as the two parts' sum) and what it runs, returning what it made, if any.
OtherStep = tuple[str, Callable[[Runner, RunState], Optional[Made]]]


def run_steps(
    runner: Runner,
    state: RunState,
    recorder: Recorder,
    table: Sequence[OtherStep],
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Each step of ``table`` in order, as ``run`` runs a build's: timed into ``state.times``,
    what it made put into the state; the metadata is written at the end, and when a step
    fails."""
    for name, step in table:
        _run_step(runner, state, recorder, name, step, clock)
    recorder.finish()


def _run_step(
    runner: Runner,
    state: RunState,
    recorder: Recorder,
    name: str,
    step: Callable[[Runner, RunState], Optional[Made]],
    clock: Callable[[], float],
) -> None:
    """One step, timed; a failure's pushed refs (``PushFailed.pushed``) go into the state
    before the recorder writes it."""
    started = clock()
    try:
        made = step(runner, state)
    except BaseException as err:  # also a bug's exception: the record of the failure matters
        state.times[name] = state.times.get(name, 0.0) + clock() - started
        if isinstance(err, (PushFailed, Interrupted)):
            state.digests.update(err.pushed)
        state.gate = getattr(err, "record", None) or state.gate  # sagemaker.GateFailed's
        recorder.failed(name, err)
        raise
    state.times[name] = state.times.get(name, 0.0) + clock() - started
    if made is None:
        return
    for key in ("plan", "facts", "preflight", "image", "image_id", "pinned", "gate"):
        if getattr(made, key) is not None:
            setattr(state, key, getattr(made, key))
    state.digests.update(made.digests)


class Recorder:
    """Writes what a build made (``steps.RunState``) to ``--metadata-file`` and
    ``$GITHUB_OUTPUT``; ``keys``: the document's keys, in order (metadata.py)."""

    keys: tuple[str, ...] = KEYS

    def __init__(
        self,
        state: RunState,
        runner: Runner,
        *,
        path: Optional[str] = None,
        github_output: Optional[str] = None,
    ):
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
    def for_state(cls, state: RunState, runner: Runner) -> Recorder:
        return cls(
            state,
            runner,
            path=state.options.metadata_file,
            github_output=state.environ.get("GITHUB_OUTPUT"),
        )

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

    def document(self) -> dict[str, Any]:  # JSON
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
            "gate": state.gate,
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
                    handle.write(
                        github_output_lines(tags, doc["digest"] or "", doc["image_id"] or "")
                    )
            except OSError as err:
                raise RagbuildError(
                    f"cannot append to $GITHUB_OUTPUT ({github_output}): {err.strerror}"
                ) from None
            self.runner.log("appended tags, digest and image-id to $GITHUB_OUTPUT")

        self.runner.apply(
            f"append tags, digest and image-id to $GITHUB_OUTPUT ({github_output})", append
        )

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

        self.runner.apply(
            f"write the build metadata to {path} (JSON: {', '.join(self.keys)})", write
        )
