"""``push IMAGE``: a local image already built (and tested) pushed with the tags a build for an
environment and version would push, without building it again; and what promote shares with it:
the target plan a build's rules make for an existing image (its own timestamp and commit),
the flags, the hint a tested build prints, and the steps run with the build's recorder
(docs/promote.md)."""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Optional
from collections.abc import Mapping, Sequence

from ragbuild.errors import PushFailed, RagbuildError, UsageError
from ragbuild.plan import CREATED_LABEL, TIMESTAMP_FORMAT, BuildPlan
from ragbuild.plan import REVISION_LABEL
from ragbuild.run.command import DRY_IMAGE_ID, Command, Kind
from ragbuild.config import Config, Options
from ragbuild.git import GitInfo
from ragbuild.reference import DIGEST_RE, parse_registry
from ragbuild.run.runner import Runner

if TYPE_CHECKING:
    from ragbuild import steps


# --- the flags both commands share -------------------------------------------------------------


def target_options(ns: argparse.Namespace, registry: str, registry_source: str) -> Options:
    """The build's ``Options`` for the target tags of ``ns`` (a pushing build: ``push``);
    ``ns.policy``: the latest policy the CLI made of --latest/--no-latest/--latest-policy."""
    from ragbuild.commands.args import tag_options

    return replace(
        tag_options(ns, ns.policy),
        registry=registry,
        registry_source=registry_source,
        push=True,
        dry_run=ns.dry_run,
        allow_dirty=ns.allow_dirty,
        replace_version_tags=ns.replace_version_tags,
        skip_existing_immutable=ns.skip_existing_immutable,
        metadata_file=ns.metadata_file,
        not_for_sagemaker=getattr(ns, "not_for_sagemaker", False),
        platform=getattr(ns, "platform", None),
    )


def planned_platform(options: Options) -> Optional[str]:
    """The platform the image must be (``shape.planned_platform``: ``--platform``, else
    linux/amd64 for SageMaker; None with --not-for-sagemaker alone). UsageError for a list:
    push and promote ship the one image they are given."""
    from ragbuild import shape
    from ragbuild.buildx import parse_platforms

    platforms = parse_platforms(options.platform) if options.platform is not None else ()
    if len(platforms) > 1:
        raise UsageError(
            f"--platform {options.platform}: push and promote ship one image, so one "
            "platform (an image index is promoted as it is: leave --platform out)"
        )
    return shape.planned_platform(platforms, options.not_for_sagemaker)


def check_platform(
    ref: str, platform: Optional[str], planned: Optional[str], done: str = "nothing was pushed"
) -> None:
    """The image's platform (its config's, as docker or the registry reports it) is the
    planned one, before anything is written (PushFailed, exit 1); no rule when ``planned`` is
    None."""
    from ragbuild import shape
    from ragbuild.push import normalize_platform

    problem = planned and shape.platform_problem(ref, platform, planned, normalize_platform)
    if problem:
        raise PushFailed(f"{problem}; {done}")


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


def describe_targets(plan: BuildPlan) -> list[str]:
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


def inspect_image_command(image: str, platform: Optional[str] = None) -> Command:
    """The local image's ID, size, tags, labels, environment and platform (``Os``,
    ``Architecture``, ``Variant``), as one JSON line; a dry run assumes ``platform``."""
    import json

    given_id = image if DIGEST_RE.fullmatch(image) else DRY_IMAGE_ID
    assume = json.dumps(
        {
            "Id": given_id,
            "Size": 0,
            "RepoTags": [image],
            "Config": {"Labels": {}, "Env": ["BUILD_TIMESTAMP=19700101-000000"]},
            **dict(zip(("Os", "Architecture", "Variant"), (platform or "linux/amd64").split("/"))),
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
    planned = planned_platform(options)
    result = runner.run(inspect_image_command(ns.image, planned))
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
        parts = (data.get("Os"), data.get("Architecture"), data.get("Variant"))
        platform = "/".join(str(part) for part in parts if part) or None
    except (ValueError, KeyError, TypeError, AttributeError) as bad:
        raise RagbuildError(f"cannot read docker image inspect of {ns.image}: {bad}") from None
    git = image_git(env.get("GIT_COMMIT") or labels.get(REVISION_LABEL))
    moment = image_moment(env, labels, f"the image {ns.image}")
    plan = target_plan(runner, options, config, git, moment, environ, target)
    check_platform(f"the local image {ns.image}", platform, planned)
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
    image = steps.Image(image_id, size, repo_tags, labels, followed=image_id)
    state = steps.RunState(options, config, facts, plan, environ, image=image, image_id=image_id)

    def preflight(runner: Runner, state: steps.RunState) -> steps.Made:
        push = push_preflight.prepare(runner, plan, docker_config, environ, image_id)
        return steps.Made(preflight=steps.Preflight(push=push))

    steps.run_steps(
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


# --- promote SOURCE ----------------------------------------------------------------------------
