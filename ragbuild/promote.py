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
import re
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Optional
from collections.abc import Mapping, Sequence

from ragbuild.errors import PushFailed, RagbuildError, UsageError
from ragbuild.run.console import SUCCESS
from ragbuild.plan import CREATED_LABEL, DRY_DIGEST, TIMESTAMP_FORMAT, BuildPlan
from ragbuild.run.command import DRY_IMAGE_ID, Command, Kind, Mode
from ragbuild.config import Config, Options
from ragbuild.git import GitInfo
from ragbuild.reference import Registry, check_tag, parse_registry
from ragbuild.run.runner import Runner, tail

if TYPE_CHECKING:
    from ragbuild import steps

#: The labels the Dockerfile sets from the build args (OCI's annotation keys).
REVISION_LABEL = "org.opencontainers.image.revision"
VERSION_LABEL = "org.opencontainers.image.version"
DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")


# --- the flags both commands share -------------------------------------------------------------


def add_target_flags(parser: argparse.ArgumentParser) -> None:
    """The flags that decide the target tags, as the build has them (same names, same rules)."""
    parser.add_argument(
        "-e",
        "--env",
        metavar="ENV",
        help="environment whose tags to give it: dev, staging, prod (setup.cfg)",
    )
    parser.add_argument(
        "-v",
        "--version",
        metavar="VERSION",
        help="semantic version (adds v<version> and <version>; prod needs one)",
    )
    parser.add_argument(
        "-t",
        "--tag",
        metavar="TAG",
        action="append",
        default=[],
        dest="tags",
        help="additional custom tag (repeatable)",
    )
    parser.add_argument(
        "--latest",
        dest="latest",
        action="store_true",
        default=None,
        help="also tag 'latest' (default)",
    )
    parser.add_argument(
        "--no-latest", dest="latest", action="store_false", help="do not tag 'latest'"
    )
    parser.add_argument(
        "--latest-policy",
        choices=("always", "auto", "never"),
        default=None,
        help="as for a build (docs/tags-and-policies.md)",
    )
    parser.add_argument(
        "--semver-tags",
        action="store_true",
        help="also tag <major> and <major>.<minor> for a release version",
    )
    parser.add_argument("--build-number", metavar="N", help="also tag build-N")
    parser.add_argument(
        "--ci-tags",
        action="store_true",
        help="tag build-N from BUILD_NUMBER, GITHUB_RUN_NUMBER or CI_PIPELINE_IID",
    )
    parser.add_argument(
        "--allow-dirty",
        action="store_true",
        help="allow --env prod for an image built from a dirty tree (GIT_COMMIT <sha>-dirty)",
    )
    parser.add_argument(
        "--replace-version-tags",
        action="store_true",
        help="move v<version> and <version> when the registry has them at "
        "another digest (by default the run stops: a version names one "
        "image for good)",
    )
    parser.add_argument(
        "--skip-existing-immutable",
        action="store_true",
        help="with an IMMUTABLE ECR repository, leave the tags it would refuse out",
    )
    parser.add_argument(
        "--not-for-sagemaker",
        action="store_true",
        help="the image is not for SageMaker: a single OCI manifest may be "
        "shipped (by default it must be a Docker v2 schema 2 manifest, the "
        "one shape SageMaker pulls; docs/smoke-test.md)",
    )
    parser.add_argument(
        "--metadata-file",
        metavar="PATH",
        help="write JSON with the refs, digests, the source and the gate, also "
        "when a step fails (docs/metadata.md)",
    )


def target_options(ns: argparse.Namespace, registry: str, registry_source: str) -> Options:
    """The build's ``Options`` for the target tags of ``ns`` (a pushing build: ``push``);
    ``ns.policy``: the latest policy the CLI made of --latest/--no-latest/--latest-policy."""
    return Options(
        version=ns.version,
        env=ns.env,
        registry=registry,
        registry_source=registry_source,
        tags=tuple(ns.tags),
        push=True,
        dry_run=ns.dry_run,
        allow_dirty=ns.allow_dirty,
        replace_version_tags=ns.replace_version_tags,
        skip_existing_immutable=ns.skip_existing_immutable,
        metadata_file=ns.metadata_file,
        semver_tags=ns.semver_tags,
        latest_policy=ns.policy,
        build_number=ns.build_number,
        ci_tags=ns.ci_tags,
        not_for_sagemaker=getattr(ns, "not_for_sagemaker", False),
    )


# --- the image's own facts ---------------------------------------------------------------------


def image_git(revision: Optional[str]) -> GitInfo:
    """The commit an image was built from, as the build named it (``GIT_COMMIT``: ``<sha>``,
    ``<sha>-dirty``, ``unknown``): its ``git-<sha>`` tag is the build's."""
    if not revision or revision == "unknown":
        return GitInfo(reason="the image names no commit (GIT_COMMIT unknown)")
    sha, dirty = (
        (revision[: -len("-dirty")], True) if revision.endswith("-dirty") else (revision, False)
    )
    if not re.fullmatch(r"[0-9a-f]{7,64}", sha):
        raise UsageError(
            f"the image's GIT_COMMIT {revision!r} is not a commit id, so its "
            "git-<sha> tag cannot be made"
        )
    return GitInfo(sha=sha, dirty=dirty)


def image_moment(env: Mapping[str, str], labels: Mapping[str, str], what: str) -> datetime:
    """The build's instant as the image carries it: ``BUILD_TIMESTAMP`` (bash's
    ``%Y%m%d-%H%M%S``, the ``<env>-<timestamp>`` tag's) from its environment, else the
    wall-clock time of its ``org.opencontainers.image.created`` label (the same instant, RFC
    3339 with the offset the timestamp was written in). UsageError without either."""
    stamp = env.get("BUILD_TIMESTAMP") or labels.get("BUILD_TIMESTAMP")
    if stamp and stamp != "unknown":
        try:
            return datetime.strptime(stamp, TIMESTAMP_FORMAT)
        except ValueError:
            pass
    created = labels.get(CREATED_LABEL)
    if created:
        try:
            return datetime.fromisoformat(created.replace("Z", "+00:00")).replace(tzinfo=None)
        except ValueError:
            pass
    raise UsageError(
        f"{what} carries no BUILD_TIMESTAMP (nor {CREATED_LABEL}), so its "
        "<env>-<timestamp> tag cannot be made: it was not built by ragbuild"
    )


def target_plan(
    runner: Runner,
    options: Options,
    config: Config,
    git: GitInfo,
    moment: datetime,
    environ: Mapping[str, str],
    docker: Any = None,
) -> BuildPlan:
    """The build's plan for ``options`` with the image's facts: its tags are the ones a build
    for that environment and version pushes. A dirty image for prod needs --allow-dirty."""
    from ragbuild import plan as plans
    from ragbuild.tags import CI_BUILD_NUMBER_VARS

    if options.env == "prod" and git.dirty and not options.allow_dirty:
        raise UsageError(
            f"the image was built from a tree with uncommitted changes (GIT_COMMIT "
            f"{git.commit}): pass --allow-dirty to ship it as prod anyway"
        )
    from ragbuild.git import version_tags
    from ragbuild.steps.facts import needs_version_tags

    known = version_tags(runner, None) if needs_version_tags(options) else None
    return plans.make_plan(
        replace(options, allow_dirty=True),
        config,
        git,
        moment,
        version_tags=known,
        environ={k: environ[k] for k in CI_BUILD_NUMBER_VARS if k in environ},
        docker=docker,
    )


def check_flags(
    runner: Runner, options: Options, config: Config, environ: Mapping[str, str]
) -> None:
    """The flags as a build checks them (--env, --version, tags, the latest policy), before
    docker or the registry is asked anything: a bad one exits 2 with nothing run. The plan
    itself is made once the image's facts are known."""
    target_plan(runner, options, config, GitInfo(sha="0000000"), datetime(2000, 1, 1), environ)


def health_warning(env: Mapping[str, str], plan: BuildPlan) -> Optional[str]:
    """A warning when the image reports another VERSION or ENVIRONMENT on /health than the
    tags it gets say (a dev build shipped as prod), naming how a deployment sets them."""
    said = []
    for key, wanted in (("ENVIRONMENT", plan.env), ("VERSION", plan.version)):
        have = env.get(key)
        if wanted is not None and have is not None and have != wanted:
            said.append(f"{key}={have}")
    if not said:
        return None
    return (
        f"note: the image reports {', '.join(said)} on /health (baked in at its build), not "
        f"this run's {'/'.join(x for x in (plan.env, plan.version) if x)}; a deployment "
        "sets them in its environment (SageMaker: the model's Environment; docs/promote.md)"
    )


def describe_targets(plan: BuildPlan) -> list:
    """The lines printed before anything is pushed: the image's facts and the target tags."""
    lines = [f"repository: {plan.base}"]
    if plan.version:
        lines.append(f"version: {plan.version}")
    if plan.env:
        lines.append(f"environment: {plan.env}")
    lines.append(f"git commit: {plan.git.commit} (the image's)")
    lines.append(f"timestamp: {plan.timestamp} (the image's BUILD_TIMESTAMP)")
    lines.append("tags:")
    lines += [f"  - {ref}" for ref in plan.refs]
    if plan.notes:
        lines.append("tag choices:")
        lines += [f"  {note}" for note in plan.notes]
    return lines


def tested_push_hint(
    plan: BuildPlan, image_id: str, words: Sequence[str], environ: Mapping[str, str] = os.environ
) -> str:
    """After a build whose smoke test passed and that did not push: the ``push`` command that
    ships the image it tested (by its ID, so nothing is built again), with the flags that give
    it the same tags. ``words``: how to start this program (``cli.rerun_words``). The registry
    is the build's, else ``ECR_URI`` (make's) or ``ECR_REGISTRY_URI``; with none, the line says
    to set one and the command reads it from ``$ECR_REGISTRY_URI``."""
    import shlex

    from ragbuild import tags as channels

    opts = plan.options
    flags = []
    if plan.env:
        flags += ["--env", plan.env]
    if plan.version:
        flags += ["--version", plan.version]
    for tag in opts.tags:
        flags += ["--tag", tag]
    if opts.semver_tags:
        flags.append("--semver-tags")
    if opts.latest_policy != channels.LatestPolicy.ALWAYS:
        flags += ["--latest-policy", str(opts.latest_policy)]
    number = channels.build_number(opts.build_number, opts.ci_tags, environ)
    if number:
        flags += ["--build-number", number.value]
    if plan.git.dirty and plan.env == "prod":
        flags.append("--allow-dirty")
    registry = (
        plan.registry.uri
        if plan.registry
        else environ.get("ECR_URI") or environ.get("ECR_REGISTRY_URI")
    )
    head = shlex.join([*words, "push", image_id])
    if registry:
        return f"push the tested image: {head} {shlex.join(['--registry', registry, *flags])}"
    return (
        "push the tested image: set ECR_REGISTRY_URI (make: ECR_URI) to "
        "<account>.dkr.ecr.<region>.amazonaws.com/<repository>, then: "
        f'{head} --registry "$ECR_REGISTRY_URI" {shlex.join(flags)}'
    )


# --- push IMAGE --------------------------------------------------------------------------------


def inspect_image_command(image: str) -> Command:
    """The local image's ID, size, tags, labels and environment, as one JSON line."""
    import json

    given_id = image if DIGEST_RE.fullmatch(image) else DRY_IMAGE_ID
    assume = json.dumps(
        {
            "Id": given_id,
            "Size": 0,
            "RepoTags": [image],
            "Config": {"Labels": {}, "Env": ["BUILD_TIMESTAMP=19700101-000000"]},
        }
    )
    return Command(
        ("docker", "image", "inspect", "--format", "{{json .}}", image),
        check=False,
        kind=Kind.PROBE,
        assume=assume,
        dry_note="the tags' timestamp and commit are the image's own (BUILD_TIMESTAMP, "
        "GIT_COMMIT); a dry run, which asks nothing, shows 19700101-000000 "
        "and no git-<sha> tag",
    )


def push_image(
    runner: Runner, ns: argparse.Namespace, config: Config, environ: Mapping[str, str] = os.environ
) -> int:
    """``ragbuild push IMAGE --registry R --env ENV [--version X]``: push.py's push of a build,
    for an image already built (and tested), no build. Returns the exit status."""
    import json

    from ragbuild import docker_config as builders, push_preflight, steps
    from ragbuild.reference import check_image_ref
    from ragbuild.smoke import docker_reason

    check_image_ref(ns.image)  # an ID (sha256:...) passes as a reference too
    registry, source = ns.registry, "--registry"
    if registry is None and environ.get("ECR_REGISTRY_URI"):
        registry, source = environ["ECR_REGISTRY_URI"], "ECR_REGISTRY_URI"
    if registry is None:
        raise UsageError(
            "push needs a registry: pass --registry host/repository or set "
            "ECR_REGISTRY_URI (with make: ECR_URI=...)"
        )
    options = target_options(ns, registry, source)
    parse_registry(registry, source)  # refused before docker runs
    _check_outputs(options, environ)
    docker_config = builders.read_docker_config(environ)
    target = builders.docker_target(environ, docker_config)
    check_flags(runner, options, config, environ)
    result = runner.run(inspect_image_command(ns.image))
    if not result.ok:
        raise RagbuildError(f"no local image {ns.image}: {docker_reason(result)}")
    try:
        data = json.loads(result.stdout)
        image_id, size = str(data["Id"]), int(data.get("Size") or 0)
        labels = (data.get("Config") or {}).get("Labels") or {}
        env = dict(
            item.split("=", 1)
            for item in (data.get("Config") or {}).get("Env") or []
            if "=" in item
        )
        repo_tags = tuple(data.get("RepoTags") or ())
    except (ValueError, KeyError, TypeError, AttributeError) as bad:
        raise RagbuildError(f"cannot read docker image inspect of {ns.image}: {bad}") from None
    git = image_git(env.get("GIT_COMMIT") or labels.get(REVISION_LABEL))
    moment = image_moment(env, labels, f"the image {ns.image}")
    plan = target_plan(runner, options, config, git, moment, environ, target)
    runner.log(
        f"pushing the local image {image_id}"
        + (f" ({ns.image})" if ns.image != image_id else "")
        + ", no build"
    )
    for line in describe_targets(plan):
        runner.log(line)
    warning = health_warning(env, plan)
    if warning:
        runner.log(warning)
    facts = steps.Facts(git=git, moment=moment, docker_config=docker_config, docker=target)
    state = steps.RunState(options, config, facts, plan, environ)
    state.image = steps.Image(image_id, size, repo_tags, labels, followed=image_id)
    state.image_id = image_id

    def preflight(runner: Runner, state: steps.RunState) -> None:
        state.preflight = steps.Preflight(
            push=push_preflight.prepare(runner, plan, docker_config, environ)
        )

    run_steps(
        runner,
        state,
        steps.Recorder.for_state(state, runner),
        (("pre-flight", preflight), ("push", steps._push), ("verify", steps._verify)),
    )
    return 0


def _check_outputs(options: Options, environ: Mapping[str, str]) -> None:
    """``--metadata-file`` and ``$GITHUB_OUTPUT`` writable, before anything runs (exit 2)."""
    from ragbuild.metadata import check_path

    if options.metadata_file is not None:
        check_path(options.metadata_file)
    if environ.get("GITHUB_OUTPUT"):
        check_path(environ["GITHUB_OUTPUT"], "$GITHUB_OUTPUT", append=True)


def run_steps(
    runner: Runner,
    state: steps.RunState,
    recorder: steps.Recorder,
    steps: Sequence[tuple],
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Each ``(name, step)`` in order, timed into ``state.times``, as steps.run runs a
    build's; the metadata is written at the end, and when a step fails."""
    for name, step in steps:
        started = clock()
        try:
            step(runner, state)
        except BaseException as err:
            state.times[name] = clock() - started
            recorder.failed(name, err)
            raise
        state.times[name] = clock() - started
    recorder.finish()


# --- promote SOURCE ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """SOURCE of a promotion: the repository and the tag or digest it names there."""

    registry: Registry
    reference: str  # a tag, or sha256:...

    @property
    def ref(self) -> str:
        sep = "@" if self.reference.startswith("sha256:") else ":"
        return f"{self.registry.uri}{sep}{self.reference}"


def parse_source(
    text: str, registry: Optional[str] = None, registry_source: str = "--registry"
) -> Source:
    """``R:tag`` or ``R@sha256:<64 hex>`` (R: host[:port]/repository); with ``registry`` (the
    flag, or ECR_REGISTRY_URI) a bare tag or digest in it. UsageError for anything else."""
    if not text:
        raise UsageError(
            "SOURCE is empty; give <registry>/<repository>:<tag> or "
            "<registry>/<repository>@sha256:<digest>"
        )
    if DIGEST_RE.fullmatch(text):  # a bare digest: in --registry's repository
        repository, reference = "", text
    elif "@" in text:
        repository, _, reference = text.partition("@")
        if not DIGEST_RE.fullmatch(reference):
            raise UsageError(f"SOURCE {text!r}: {reference!r} is not a digest sha256:<64 hex>")
    else:
        slash = text.rfind("/")
        colon = text.rfind(":")
        if colon > slash:
            repository, reference = text[:colon], text[colon + 1 :]
            check_tag(reference, "SOURCE's tag")
        elif "/" not in text and registry is not None:
            repository, reference = "", text
            check_tag(reference, "SOURCE's tag")
        else:
            raise UsageError(
                f"SOURCE {text!r} names no tag or digest: give "
                "<registry>/<repository>:<tag> or ...@sha256:<digest>"
            )
    if not repository:
        if registry is None:
            raise UsageError(
                f"SOURCE {text!r} names no repository: give "
                "<registry>/<repository>:<tag>, or --registry"
            )
        return Source(parse_registry(registry, registry_source), reference)
    parsed = parse_registry(repository, "SOURCE")
    if registry is not None and parse_registry(registry, registry_source).uri != parsed.uri:
        raise UsageError(
            f"SOURCE {text!r} is in {parsed.uri}, and {registry_source} names "
            f"{registry}: promote writes tags in SOURCE's own repository; drop one"
        )
    return Source(parsed, reference)


@dataclass
class Promotion:
    """What the promote steps found, for the next step and the metadata (typed ``Any``: the
    registry modules are imported by a promotion only)."""

    source: Source
    session: Any = None  # registry_api.Session
    raw: Any = None  # manifest_api.Raw: the source's manifest
    image: Any = None  # manifest_api.ImageConfig
    repository: Any = None  # ecr.RepositoryInfo (ECR only)
    existing: dict = field(default_factory=dict)  # ref -> digest, "", ReadFailed
    todo: tuple = ()  # the refs to write
    skipped: tuple = ()  # immutable refs left out
    gate: Optional[dict] = None


def promote_recorder(state: steps.RunState, runner: Runner, promotion: Promotion) -> steps.Recorder:
    """steps.Recorder with the promotion's own keys in its document: ``source`` (the ref
    and digest promoted) and ``gate`` (what was tested, the figures and when, or why not)."""
    from ragbuild import steps

    class Recorder(steps.Recorder):
        def document(self) -> dict:
            doc = super().document()
            raw = promotion.raw
            doc["source"] = {
                "ref": promotion.source.ref,
                "digest": raw.digest if raw is not None else None,
                "media_type": raw.media_type if raw is not None else None,
            }
            doc["gate"] = promotion.gate
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
        push_preflight,
        steps,
    )
    from ragbuild.plan import BuildPlan as Plan

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
    runner = runner.aimed_at(target.docker_flags())
    promotion = Promotion(source)
    # the plan until the source's facts are read: the registry, for the pre-flight's messages
    plan = Plan(
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
    creds = docker_config.credentials(registry.host)

    def preflight(runner: Runner, state: steps.RunState) -> None:
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
            lambda: _retry(
                runner, state.plan, what, lambda: manifest_api.fetch(session, source.reference)
            ),
            dry_raw(source),
        )
        promotion.raw = raw
        check_source_shape(source.ref, raw, options)
        assumed = manifest_api.ImageConfig(DRY_IMAGE_ID, {}, {"BUILD_TIMESTAMP": "19700101-000000"})
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
        git = image_git(image.value("GIT_COMMIT") or image.labels.get(REVISION_LABEL))
        moment = image_moment(image.env, image.labels, f"the source {source.ref}")
        state.plan = target_plan(runner, options, config, git, moment, environ, target)
        state.facts = replace(state.facts, git=git, moment=moment)
        state.image = steps.Image(image.digest, _size(raw), (), image.labels, followed=image.digest)
        state.image_id = image.digest
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

    def gate_step(runner: Runner, state: steps.RunState) -> None:
        if ns.no_gate is not None:
            promotion.gate = {"ran": False, "reason": ns.no_gate, "at": _now()}
            runner.log(f"warning: --no-gate: {source.ref} is promoted untested ({ns.no_gate})")
            return
        promotion.gate = gate(runner, state.plan, config, promotion)

    def write(runner: Runner, state: steps.RunState) -> None:
        written = write_tags(runner, state.plan, promotion)
        state.digests.update(written)

    def verify(runner: Runner, state: steps.RunState) -> None:
        state.pinned = verify_tags(runner, state.plan, promotion, state.digests)

    recorder = promote_recorder(state, runner, promotion)
    run_steps(
        runner,
        state,
        recorder,
        (("pre-flight", preflight), ("gate", gate_step), ("promote", write), ("verify", verify)),
    )
    return 0


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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


def check_existing(runner: Runner, plan: BuildPlan, existing: Mapping, digest: str) -> tuple:
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
    SageMaker pulls (``sagemaker.shape_problem``: a Docker v2 schema 2 manifest), unless
    ``--not-for-sagemaker``; an index (a multi-platform build's) is promoted as it is."""
    from ragbuild import sagemaker

    if raw.parsed.is_index or options.not_for_sagemaker:
        return
    problem = sagemaker.shape_problem(ref, raw.parsed)
    if problem:
        raise PushFailed(f"{problem}; nothing was written")


def gate(runner: Runner, plan: BuildPlan, config: Config, promotion: Promotion) -> dict:
    """The gate on the source's digest before any tag is written: the SageMaker gate
    (``sagemaker.run``: ``docker run IMAGE serve`` with ``/opt/ml/model`` read-only, ``/ping``
    within 2 s, ``/invocations``, the exit after SIGTERM, ``SAGEMAKER_BIND_TO_PORT``), with
    ``/health``'s ``git_commit`` against the source's revision (not the target's version), on
    the image pulled by digest unless the engine has it (that pull is the gate's, not the
    promotion's). Returns what the metadata records: what was tested, the figures and when."""
    from ragbuild import sagemaker, smoke

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
    started, at = time.monotonic(), _now()
    passed = sagemaker.run(runner, expect, timeout=plan.limits.smoke_timeout)
    return {
        "ran": True,
        "test": "sagemaker",
        "image": ref,
        "pulled": pulled,
        "at": at,
        "seconds": round(time.monotonic() - started, 3),
        "health": passed.health,
        "figures": {
            key: value for key, value in passed.figures().items() if key not in ("image", "health")
        },
    }


def write_tags(runner: Runner, plan: BuildPlan, promotion: Promotion) -> dict:
    """PUT the source's manifest under each ref to write, one after the other (a transient
    failure retried); each must be stored at the source's digest. Returns ref -> digest of
    those written; PushFailed says what was written and what not."""
    from ragbuild import manifest as manifest_api

    raw = promotion.raw
    session = promotion.session
    written: dict = {}
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
                raise PushFailed(f"{failed}\nwritten: {done}\nnot written: {left}") from None
            if stored != raw.digest:
                raise PushFailed(
                    f"{ref}: the registry stored the manifest as {stored}, not "
                    f"{raw.digest}: it changed the bytes"
                )
            written[f"{plan.base}:{tag}"] = stored

        runner.apply(f"PUT {url} with the source's manifest, byte for byte ({raw.media_type})", put)
    return written


def verify_tags(runner: Runner, plan: BuildPlan, promotion: Promotion, digests: dict) -> str:
    """Every target ref (but the immutable ones left out) read back at once: each must name the
    source's digest. Returns and prints ``<repository>@<digest>``."""
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
    problems = []
    for ref, answer in zip(refs, answers):
        if isinstance(answer, str):
            problems.append(f"{ref}: cannot read it back: {tail(answer, 1)}")
        elif answer.digest != digest:
            problems.append(f"{ref} names {answer.digest}, not {digest}")
        else:
            digests[ref] = digest
    if problems:
        raise PushFailed("verification failed:\n" + "\n".join(f"  {p}" for p in problems))
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
    return pinned
