"""Ship the tested image without building it again: ``push IMAGE`` and ``promote SOURCE``.

Both compute the tags a build for ``--env``/``--version`` would push with the build's own rules
(``plan.make_plan``: version tags, ``<env>-<timestamp>``, ``<env>``, ``git-<sha>``, build
number, custom tags, the latest policy and channels), from the image's own facts instead of
the clock and the checkout: the timestamp is the image's ``BUILD_TIMESTAMP`` (its environment,
else its ``org.opencontainers.image.created`` label), the commit its ``GIT_COMMIT``
(``org.opencontainers.image.revision``).

``push IMAGE`` (a local image ID or ref): ``docker image inspect`` gives its ID and facts; then
the push of a build without the build (push.py: the pre-flight with ECR login, immutable tags
and the version-tag rule; ``docker tag <ID> REF`` before each ``docker push``; the read-back).

``promote SOURCE`` (``R:tag`` or ``R@sha256:...``): the source's manifest is read through the
registry API and written byte for byte under each target tag of the same repository
(manifest.py): no build, no docker push, no layer upload; then every tag must name the
source's digest. A version tag already at that digest is left as it is; at another digest it
stops the run (exit 1) unless ``--replace-version-tags``. Before any tag is written the gate
runs on the source's digest (``gate``: today the smoke test, the image pulled by digest unless
the engine has it), unless ``--no-gate REASON``; the metadata records either.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Optional, Union
from collections.abc import Mapping

from ragbuild.credentials import docker_credentials
from ragbuild.errors import Interrupted, PushFailed, UsageError, interrupted_text, signal_of
from ragbuild.run.console import SUCCESS
from ragbuild.plan import DRY_DIGEST, BuildPlan
from ragbuild.run.command import DRY_IMAGE_ID, Command, Kind, Mode
from ragbuild.config import Config, Options
from ragbuild.git import GitInfo
from ragbuild.reference import Source, parse_source
from ragbuild.run.runner import Runner, tail
from ragbuild.push_image import (
    REVISION_LABEL,
    _check_outputs,
    check_flags,
    check_platform,
    describe_targets,
    health_warning,
    image_git,
    image_moment,
    planned_platform,
    target_options,
    target_plan,
)

if TYPE_CHECKING:
    from ragbuild import steps
    from ragbuild.manifest import ReadFailed


@dataclass
class Promotion:
    """What the promote steps found, for the next step and the metadata (typed ``Any``: the
    registry modules are imported by a promotion only)."""

    source: Source
    session: Any = None  # registry_api.Session
    raw: Any = None  # manifest_api.Raw: the source's manifest
    image: Any = None  # manifest_api.ImageConfig
    repository: Any = None  # ecr.RepositoryInfo (ECR only)
    existing: dict[str, Union[str, ReadFailed]] = field(default_factory=dict)  # or "": none
    todo: tuple[str, ...] = ()  # the refs to write
    skipped: tuple[str, ...] = ()  # immutable refs left out
    found: Optional[bool] = None  # the registry has SOURCE; False: it answered 404


def promote_recorder(state: steps.RunState, runner: Runner, promotion: Promotion) -> steps.Recorder:
    """steps.Recorder plus the promotion's ``source``: ref and digest promoted, ``found`` (false
    only for the registry's 404 for SOURCE: what CI tests for "never pushed"; null: unknown)."""
    from ragbuild import steps

    class Recorder(steps.Recorder):
        keys = (*steps.Recorder.keys, "source")

        def document(self) -> dict[str, Any]:
            doc = super().document()
            raw = promotion.raw
            doc["source"] = {
                "ref": promotion.source.ref,
                "digest": raw.digest if raw is not None else None,
                "media_type": raw.media_type if raw is not None else None,
                "found": promotion.found,
            }
            return doc

    return Recorder.for_state(state, runner)


def dry_raw(source: Source) -> Any:
    """What a dry run takes the source's manifest to be."""
    from ragbuild import manifest as manifest_api

    digest = source.reference if source.reference.startswith("sha256:") else DRY_DIGEST
    return manifest_api.Raw(
        b"{}",
        manifest_api.DOCKER_MANIFEST,
        digest,
        manifest_api.Manifest(digest, manifest_api.DOCKER_MANIFEST, config=DRY_IMAGE_ID),
    )


def promote(
    runner: Runner, ns: argparse.Namespace, config: Config, environ: Mapping[str, str] = os.environ
) -> int:
    """``ragbuild promote SOURCE --env ENV [--version X]``; the exit status."""
    from ragbuild import (
        manifest as manifest_api,
        registry as registry_api,
        docker_config as builders,
        ecr,
        gate_record,
        push_preflight,
        steps,
    )

    registry_flag, registry_source = ns.registry, "--registry"
    if registry_flag is None and environ.get("ECR_REGISTRY_URI"):
        registry_flag, registry_source = environ["ECR_REGISTRY_URI"], "ECR_REGISTRY_URI"
    source = parse_source(ns.source, registry_flag, registry_source)
    registry = source.registry
    options = target_options(ns, registry.uri, "SOURCE")
    if ns.no_gate is not None and not ns.no_gate.strip():
        raise UsageError(
            "--no-gate needs a reason (it is recorded): e.g. --no-gate 'tested in staging run 42'"
        )
    _check_outputs(options, environ)
    docker_config = builders.read_docker_config(environ)
    target = builders.docker_target(environ, docker_config)
    check_flags(runner, options, config, environ)
    planned = planned_platform(options)
    runner = runner.aimed_at(target.docker_flags())
    promotion = Promotion(source)
    # the plan until the source's facts are read: the registry, for the pre-flight's messages
    plan = BuildPlan(
        base=registry.uri,
        tags=(),
        build_args=(),
        timestamp="",
        git=GitInfo(),
        version=None,
        env=None,
        registry=registry,
        options=options,
        docker=target,
    )
    facts = steps.Facts(
        git=GitInfo(), moment=datetime.now(), docker_config=docker_config, docker=target
    )
    state = steps.RunState(options, config, facts, plan, environ)
    creds = docker_credentials(runner, docker_config, registry.host)

    def preflight(runner: Runner, state: steps.RunState) -> steps.Made:
        push_preflight.check_helper(runner, creds, environ)
        logged_in = None
        if registry.is_ecr:
            logged_in = ecr.authenticate(runner, registry, creds, environ)
            promotion.repository = ecr.check_repository(runner, registry, environ)
        promotion.session = push_preflight.reach_registry(
            runner,
            state.plan,
            creds,
            docker_config,
            registry_api.Login("AWS", logged_in) if logged_in is not None else None,
            environ,
        )
        session = promotion.session
        what = f"GET {manifest_api.manifest_url(session, source.reference)} ({registry_api.describe(session)})"
        raw = runner.check(
            f"{what}: the source's manifest, as bytes",
            lambda: fetch_source(runner, state.plan, what, promotion),
            dry_raw(source),
        )
        promotion.raw = raw
        check_source_shape(source.ref, raw, options)
        assumed = manifest_api.ImageConfig(
            DRY_IMAGE_ID, {}, {"BUILD_TIMESTAMP": "19700101-000000"}, planned
        )
        blob = raw.parsed.config or "of its first platform's image"
        image = runner.check(
            f"GET the source's config blob ({blob}): its BUILD_TIMESTAMP and "
            "GIT_COMMIT, which the target tags are made of (a dry run shows "
            "19700101-000000 and no git-<sha>)",
            lambda: _retry(
                runner, state.plan, "GET the config blob", lambda: manifest_api.config(session, raw)
            ),
            assumed,
        )
        promotion.image = image
        if not raw.parsed.is_index:  # an index (several platforms) is promoted as it is
            check_platform(source.ref, image.platform, planned, "nothing was written")
        git = image_git(image.value("GIT_COMMIT") or image.labels.get(REVISION_LABEL))
        moment = image_moment(image.env, image.labels, f"the source {source.ref}")
        return steps.Made(
            plan=target_plan(runner, options, config, git, moment, environ, target),
            facts=replace(state.facts, git=git, moment=moment),
            image=steps.Image(image.digest, _size(raw), (), image.labels, followed=image.digest),
            image_id=image.digest,
        )

    def targets(runner: Runner, state: steps.RunState) -> None:  # the pre-flight's second part
        raw, image, session = promotion.raw, promotion.image, promotion.session
        runner.log(
            f"promoting {source.ref} ({raw.digest}, {raw.media_type}): its manifest "
            "written under each tag, no build, no layer upload"
        )
        for line in describe_targets(state.plan):
            runner.log(line)
        warning = health_warning(image.env, state.plan)
        if warning:
            runner.log(warning)
        existing = push_preflight.read_existing(runner, state.plan, session, state.plan.refs)
        promotion.existing = existing
        promotion.todo = check_existing(runner, state.plan, existing, raw.digest)
        if registry.is_ecr and promotion.todo:
            todo_tags = tuple(ref.rsplit(":", 1)[1] for ref in promotion.todo)
            skip = ecr.immutable_conflicts(
                runner, replace(state.plan, tags=todo_tags), promotion.repository, environ
            )
            skipped = tuple(f"{registry.uri}:{tag}" for tag in skip)
            promotion.skipped = skipped
            promotion.todo = tuple(ref for ref in promotion.todo if ref not in skipped)

    def gate_step(runner: Runner, state: steps.RunState) -> steps.Made:
        if ns.no_gate is not None:
            runner.log(f"warning: --no-gate: {source.ref} is promoted untested ({ns.no_gate})")
            return steps.Made(gate=gate_record.not_run(ns.no_gate))
        return steps.Made(gate=gate(runner, state.plan, config, promotion))

    def write(runner: Runner, state: steps.RunState) -> steps.Made:
        return steps.Made(digests=write_tags(runner, state.plan, promotion))

    def verify(runner: Runner, state: steps.RunState) -> steps.Made:
        pinned, verified = verify_tags(runner, state.plan, promotion)
        return steps.Made(digests=verified, pinned=pinned)

    recorder = promote_recorder(state, runner, promotion)
    steps.run_steps(
        runner,
        state,
        recorder,
        (
            ("pre-flight", preflight),
            ("pre-flight", targets),
            ("gate", gate_step),
            ("promote", write),
            ("verify", verify),
        ),
    )
    return 0


def _size(raw: Any) -> int:
    """The image's compressed size: its config and layers as its manifest lists them (0 for
    an index)."""
    import json

    try:
        data = json.loads(raw.body)
        parts = [data.get("config") or {}, *(data.get("layers") or [])]
        return sum(int(part.get("size") or 0) for part in parts)
    except (ValueError, TypeError, AttributeError):
        return 0


def _retry(runner: Runner, plan: BuildPlan, what: str, attempt: Callable[[], Any]) -> Any:
    """``attempt()`` with push.py's retries of a transient failure; the last failure raised
    as PushFailed in words for the user."""
    from ragbuild import manifest as manifest_api, push

    def once() -> Any:
        try:
            return attempt()
        except manifest_api.ReadFailed as failed:
            return failed
        except ValueError as bad:
            raise PushFailed(f"{what}: {bad}") from None

    answer, _ = push.retrying(
        runner,
        once,
        lambda got: str(got) if isinstance(got, manifest_api.ReadFailed) else None,
        time.sleep,
        what,
        plan.limits,
    )
    if isinstance(answer, manifest_api.ReadFailed):
        raise PushFailed(f"{what} failed: {answer}")
    return answer


def fetch_source(runner: Runner, plan: BuildPlan, what: str, promotion: Promotion) -> Any:
    """SOURCE's manifest (``manifest.fetch``, retried as ``_retry`` does). The registry's HTTP
    404 (the distribution API's ``MANIFEST_UNKNOWN``; ECR's too) sets ``promotion.found`` to
    False and stops the run naming SOURCE as not in the registry (PushFailed, exit 1)."""
    from ragbuild import manifest as manifest_api

    source = promotion.source

    def attempt() -> Any:
        try:
            raw = manifest_api.fetch(promotion.session, source.reference)
        except manifest_api.ReadFailed as failed:
            if failed.status == 404:
                promotion.found = False
                raise PushFailed(
                    f"{source.ref} is not in the registry: {what} answered {failed}; "
                    "nothing was written"
                ) from None
            raise
        promotion.found = True  # asked and served (a dry run asks nothing: null)
        return raw

    return _retry(runner, plan, what, attempt)


def check_existing(
    runner: Runner, plan: BuildPlan, existing: Mapping[str, Union[str, ReadFailed]], digest: str
) -> tuple[str, ...]:
    """The refs to write: those not at ``digest`` yet. A version tag (``plan.version_refs``) at
    ``digest`` already is a no-op; at another digest it stops the run (PushFailed, exit 1)
    unless --replace-version-tags; one that could not be read stops it too."""
    from ragbuild import manifest as manifest_api

    moved = []
    for ref in plan.version_refs:
        found = existing.get(ref)
        if isinstance(found, manifest_api.ReadFailed):
            raise PushFailed(
                f"cannot tell whether {ref} already exists, so whether this "
                f"promotion would move a version tag ({tail(str(found), 1)}); "
                "nothing was written"
            )
        if found and found != digest:
            moved.append(f"{ref} (now {found})")
    if moved and not plan.options.replace_version_tags:
        raise PushFailed(
            f"the registry already has {', '.join(moved)}: a version tag never "
            f"moves to another image; promote another --version, or pass "
            "--replace-version-tags to move it (nothing was written)"
        )
    if moved:
        runner.log(f"warning: --replace-version-tags: this promotion moves {', '.join(moved)}")
    same = [ref for ref in plan.refs if existing.get(ref) == digest]
    if same:
        runner.report(f"already at {digest}, left as they are: {', '.join(same)}")
    return tuple(ref for ref in plan.refs if existing.get(ref) != digest)


def check_source_shape(ref: str, raw: Any, options: Options) -> None:
    """Before any tag is written: a single-image source must be the one manifest shape
    SageMaker pulls (``shape.shape_problem``: a Docker v2 schema 2 manifest), unless
    ``--not-for-sagemaker``; an index (a multi-platform build's) is promoted as it is."""
    from ragbuild import shape

    if raw.parsed.is_index or options.not_for_sagemaker:
        return
    problem = shape.shape_problem(ref, raw.parsed)
    if problem:
        raise PushFailed(f"{problem}; nothing was written")


def gate(runner: Runner, plan: BuildPlan, config: Config, promotion: Promotion) -> dict[str, Any]:
    """The gate on the source's digest before any tag is written: the SageMaker gate
    (``sagemaker.run``: ``docker run IMAGE serve`` with ``/opt/ml/model`` read-only, ``/ping``
    within 2 s, ``/invocations``, the exit after SIGTERM, ``SAGEMAKER_BIND_TO_PORT``), with
    ``/health``'s ``git_commit`` against the source's revision (not the target's version), on
    the image pulled by digest unless the engine has it (that pull is the gate's, not the
    promotion's). Returns what the metadata records (``sagemaker.recorded``: what was tested,
    the figures and when; a failure carries it as ``GateFailed.record``)."""
    from ragbuild import gate_record, sagemaker, smoke

    raw = promotion.raw
    ref = f"{plan.base}@{raw.digest}"
    have = runner.run(
        Command(
            ("docker", "image", "inspect", "--format", "{{.Id}}", ref),
            check=False,
            kind=Kind.PROBE,
            dry_note=f"a real run pulls {ref} (docker pull) when the engine does not have it",
        )
    )
    pulled = False
    if not have.ok:
        result = runner.run(Command(("docker", "pull", ref), mode=Mode.TEE, check=False))
        if not result.ok:
            raise PushFailed(
                f"the gate cannot pull {ref} to test it: "
                f"{tail(result.stdout + result.stderr, 3)}; nothing was written "
                "(--no-gate REASON promotes it untested)"
            )
        pulled = True
    revision = plan.git.commit if plan.git.sha else None
    expect = smoke.Expectation(image=ref, git_commit=revision, command=plan.smoke_command)
    return gate_record.recorded(
        ref, lambda: sagemaker.run(runner, expect, timeout=plan.limits.smoke_timeout), pulled
    )[1]


def write_tags(runner: Runner, plan: BuildPlan, promotion: Promotion) -> dict[str, str]:
    """PUT the source's manifest under each ref to write, one after the other (a transient
    failure retried); each must be stored at the source's digest. Returns ref -> digest of
    those written; PushFailed says what was written and what not, and carries them
    (``PushFailed.pushed``) for the metadata."""
    from ragbuild import manifest as manifest_api

    raw = promotion.raw
    session = promotion.session
    written: dict[str, str] = {}
    for ref in promotion.todo:
        tag = ref.rsplit(":", 1)[1]
        url = manifest_api.manifest_url(session, tag)

        def put(tag: str = tag, url: str = url, ref: str = ref) -> None:
            try:
                stored = _retry(
                    runner, plan, f"PUT {url}", lambda: manifest_api.put(session, tag, raw)
                )
            except PushFailed as failed:
                done = ", ".join(written) or "nothing"
                left = ", ".join(r for r in promotion.todo if r not in written)
                said = f"{failed}\nwritten: {done}\nnot written: {left}"
                raise PushFailed(said, pushed=written) from None  # the metadata records them
            except (Interrupted, KeyboardInterrupt) as stop:  # Ctrl-C: the same record
                text = (
                    str(stop)
                    if isinstance(stop, Interrupted)
                    else interrupted_text(signal_of(stop))
                )
                done = ", ".join(written) or "nothing"
                raise Interrupted(
                    f"{text}\nwritten: {done}", signum=signal_of(stop), pushed=written
                ) from None
            if stored != raw.digest:
                raise PushFailed(
                    f"{ref}: the registry stored the manifest as {stored}, not "
                    f"{raw.digest}: it changed the bytes",
                    pushed={**written, ref: stored},
                )
            written[f"{plan.base}:{tag}"] = stored

        runner.apply(f"PUT {url} with the source's manifest, byte for byte ({raw.media_type})", put)
    return written


def verify_tags(
    runner: Runner, plan: BuildPlan, promotion: Promotion
) -> tuple[str, dict[str, str]]:
    """Every target ref (but the immutable ones left out) read back at once: each must name the
    source's digest. Returns (and prints) ``<repository>@<digest>``, with ref -> digest of those
    read back at it (PushFailed's ``pushed`` when another was not)."""
    from ragbuild import manifest as manifest_api

    raw = promotion.raw
    digest = raw.digest
    session = promotion.session
    refs = [ref for ref in plan.refs if ref not in promotion.skipped]

    def read(ref: str) -> Any:
        try:
            return manifest_api.read_manifest(session, ref.rsplit(":", 1)[1])
        except (manifest_api.ReadFailed, ValueError) as failed:
            return str(failed)

    checks = [
        (
            f"GET {manifest_api.manifest_url(session, ref.rsplit(':', 1)[1])} and expect {digest}",
            lambda ref=ref: read(ref),
            manifest_api.Manifest(digest, raw.media_type),
        )
        for ref in refs
    ]
    answers = runner.check_all(checks)
    problems, verified = [], {}
    for ref, answer in zip(refs, answers):
        if isinstance(answer, str):
            problems.append(f"{ref}: cannot read it back: {tail(answer, 1)}")
        elif answer.digest != digest:
            problems.append(f"{ref} names {answer.digest}, not {digest}")
        else:
            verified[ref] = digest
    if problems:
        said = "verification failed:\n" + "\n".join(f"  {p}" for p in problems)
        raise PushFailed(said, pushed=verified)
    pinned = f"{plan.base}@{digest}"
    runner.report(
        f"promoted and verified {len(refs)} tags, all {digest} ({promotion.source.ref}):", SUCCESS
    )
    for ref in refs:
        runner.report(f"  {ref}")
    if promotion.skipped:
        runner.report(
            f"left out (the repository keeps them immutable): {', '.join(promotion.skipped)}"
        )
    runner.emit(pinned)
    return pinned, verified
