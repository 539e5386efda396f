"""The build step: ``docker build`` (or ``docker buildx build``) of the plan, the image ID it
wrote, the digest a build that pushed reported, and why a failed build failed (``diagnose``)."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Optional
from collections.abc import Mapping, Sequence

from ragbuild.buildx import buildx_version_command
from ragbuild.docker_config import daemon_down, daemon_unreachable
from ragbuild.errors import CommandFailed, DockerUnavailable, PushFailed
from ragbuild.plan import CREATED_LABEL, PUSHED_DIGEST_KEY, BuildPlan, PushPlan, build_command
from ragbuild.images import inspect_command
from ragbuild.run.command import Command, Kind
from ragbuild.passthrough import not_for_buildx
from ragbuild.run.command import Result
from ragbuild.run.runner import Runner, ended
from ragbuild.steps.summary import parse_inspect

if TYPE_CHECKING:  # scan.py is imported when --scan asks for it, guard.py by the context step
    pass

#: A docker client whose own docker build has BuildKit built in (no buildx plugin needed, the
#: classic builder's options taken): docker 23.0 made docker build buildx.
CLASSIC_CLIENT = (
    "a client older than 23.0, whose docker build has BuildKit built in (e.g. "
    "Debian 12's /usr/bin/docker)"
)


@dataclass(frozen=True)
class Built:
    """What the build step made: whether the build pushed the refs itself, and the image's ID
    (``docker build --iidfile``; None for a multi-platform build, which leaves no local image),
    which the summary, smoke test, scan, push and read-back follow from then on."""

    pushed: bool
    image_id: Optional[str]
    #: the manifest digest a build that pushed reported (buildx's ``containerimage.digest``):
    #: the image's ID in a daemon with the containerd image store, where buildx's --iidfile
    #: names the config instead (``summarize`` tries it when the daemon does not know the ID)
    manifest: Optional[str] = None
    #: ref -> the digest a one-platform build that pushed reported, for every ref
    digests: Mapping[str, Optional[str]] = field(default_factory=dict)


def build(
    runner: Runner,
    plan: BuildPlan,
    push: Optional[PushPlan],
    *,
    unique_created: bool = True,
) -> Built:
    """The one build; ``push``: the pre-flight's push decisions (attestations, whether the
    build pushes: ``plan.build_pushes``). Returns whether the build pushed and the image's ID
    (``Built``); a one-platform build that pushed gives the manifest digest it reported for
    every ref (``Built.digests``). A one-platform build that succeeded without writing its ID stops
    the run: nothing after it may fall back to a tag (CommandFailed).

    When a build that pushes fails, the failure was the build's or the push's. buildx's
    ``docker`` driver names the image in the daemon before it pushes, so when every ref names
    one local image whose created label (``plan.created``) is this run's, the build succeeded
    and the push failed: the run goes on to ``docker push`` each ref, which retries transient
    failures and says what a refused push needs (push.py). When they do not, the build failed
    and nothing runs again. ``unique_created`` false (SOURCE_DATE_EPOCH fixes the label, so an
    earlier build may carry it): the build runs again without the push to tell the two apart
    (a failing step runs twice; with ``--no-cache`` the whole build)."""
    if push is None or not push.by_build or plan.multi_platform:
        image_id = _build(runner, plan, push)
        return Built(push is not None and plan.multi_platform, image_id)
    pushing = build_command(
        plan, push, metadata_file=answer_path(plan), iid_file=answer_path(plan, "iid")
    )
    try:
        result = runner.run(pushing)
    except CommandFailed as failure:
        ended_as = ended(failure.returncode)
        built: Optional[str] = None
        if not unique_created:
            runner.log(
                f"warning: docker buildx build --push {ended_as}; building again without "
                "the push, to tell a failed build from a failed push (SOURCE_DATE_EPOCH "
                "gives every build the same created label)"
            )
            built = _build(runner, plan, replace(push, by_build=False))
        elif (built := built_by_this_run(runner, plan)) is not None:
            runner.log(
                f"warning: docker buildx build --push {ended_as} after it built and "
                f"tagged the image (this run's created label): {built}"
            )
        else:
            diagnose(runner, plan)
            cause = explain(plan, pushing, failure)
            said = (
                f": {cause} (nothing was pushed)"
                if cause
                else "; its output is above (the "
                "build failed: no image of this run carries the tags, nothing was pushed)"
            )
            raise CommandFailed(
                f"docker buildx build {ended_as}{said}", returncode=failure.returncode
            ) from None
        runner.log(
            "the build itself succeeded: the push failed, so each tag goes with docker "
            "push (retried when the failure is transient)"
        )
        return Built(False, built)
    image_id = _image_id(result, plan)
    digest = parse_pushed_digest(result.stdout)
    digests = {ref: digest for ref in push.refs}  # pushed, whether or not the build named it
    if digest is None:
        from ragbuild.push import progress

        raise PushFailed(
            "docker buildx build --push succeeded but named no manifest digest in "
            f"its --metadata-file ({PUSHED_DIGEST_KEY}), so the push cannot be "
            f"verified\n{progress(push.refs, digests)}",
            pushed=digests,
        )
    return Built(True, image_id, digest, digests)


def _image_id(result: Result, plan: BuildPlan) -> Optional[str]:
    """The ID the build wrote to its ``--iidfile`` (None for a multi-platform build); a
    successful one-platform build without it stops the run."""
    if plan.multi_platform:
        return None
    if not result.image_id:
        raise CommandFailed(
            "the build succeeded but wrote no image ID to its --iidfile, so what "
            "follows cannot tell this run's image from another build's with the "
            "same tags; nothing was pushed by ragbuild"
        )
    return result.image_id


def built_by_this_run(runner: Runner, plan: BuildPlan) -> Optional[str]:
    """The ID of the one local image every ref of the plan names when its created label is this
    run's ``plan.created`` (``docker image inspect``), else None (a ref that is missing too)."""
    result = runner.run(replace(inspect_command(plan.primary, plan.refs), check=False))
    if not result.ok:
        return None
    try:
        image = parse_inspect(result.stdout)
    except ValueError:
        return None
    if image.lacks(plan.refs) or (image.labels or {}).get(CREATED_LABEL) != plan.created:
        return None
    return image.id


def answer_path(plan: BuildPlan, kind: str = "metadata.json") -> str:
    """Where a build that pushes writes its ``--metadata-file``: one path for one plan, so a
    dry run prints the line a real run starts (docs/dry-run.md) and creates nothing. In the
    user's own directory ``ragbuild-<uid>`` of the temp directory (``TMPDIR``), which the runner
    makes, mode 0700, and refuses when it is anyone else's or open to others; named after the
    plan (every ref it pushes, ``created``, commit), so a run of another plan (``--env prod``
    beside ``--env dev`` in the same second) does not meet it; two runs that do would push the
    same tags. The runner removes it before the build and once read (``Command.answer_file``).
    ``kind``: the file's suffix, ``iid`` for the ``--iidfile`` every one-platform build writes
    (``Command.iid_file``)."""
    import hashlib
    import tempfile  # only a build that pushes needs it

    key = "\0".join((*plan.refs, plan.created, plan.git.commit, str(os.getuid())))
    name = hashlib.sha256(key.encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"ragbuild-{os.getuid()}", f"{name}.{kind}")


def parse_pushed_digest(text: str) -> Optional[str]:
    """The manifest digest in what ``docker buildx build --metadata-file`` wrote, or None."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    digest = data.get(PUSHED_DIGEST_KEY) if isinstance(data, dict) else None
    return (
        digest if isinstance(digest, str) and re.fullmatch(r"sha256:[0-9a-f]{64}", digest) else None
    )


def _build(runner: Runner, plan: BuildPlan, push: Optional[PushPlan]) -> Optional[str]:
    """The build without its own push; the image's ID (``_image_id``)."""
    command = build_command(plan, push, iid_file=answer_path(plan, "iid"))
    try:
        result = runner.run(command)
    except CommandFailed as failure:
        diagnose(runner, plan)
        what = "docker buildx build" if plan.buildx else "docker build"
        cause = explain(plan, command, failure)
        if cause:
            raise CommandFailed(
                f"{what} {ended(failure.returncode)}: {cause}", returncode=failure.returncode
            ) from None
        hint = ""
        if plan.options.pull:
            hint = (
                "; with --pull, docker must reach the registry of every FROM image: check "
                "the network and registry login, or drop --pull to build from the local copy"
            )
        raise CommandFailed(
            f"{what} {ended(failure.returncode)}; its output is above{hint}",
            returncode=failure.returncode,
        ) from None
    return _image_id(result, plan)


def explain(plan: BuildPlan, command: Command, failure: CommandFailed) -> Optional[str]:
    """Why the build ``command`` failed, in one line with its fix, when what it printed (the
    end ``failure.output`` kept) names a cause ``build_failure`` knows; else None. Whether the
    build had the host's CA is read from ``command`` itself (its ``--secret id=ragbuild-host-ca``),
    why not from the plan (``plan.host.ca_note``)."""
    from ragbuild.build_failure import classify
    from ragbuild.pip_config import CA_SECRET_ID

    cause = classify(
        failure.output,
        host_ca=passed_secret(command.argv, CA_SECRET_ID),
        not_passed=plan.host.ca_note,
        pull=plan.options.pull,
    )
    return cause.message if cause else None


def passed_secret(argv: Sequence[str], secret_id: str) -> Optional[str]:
    """The file a build command passes as the BuildKit secret ``secret_id`` (``--secret
    id=ID,src=PATH``, also ``source=`` and ``--secret=...``), or None when it passes none."""
    specs = [word.split("=", 1)[1] for word in argv if word.startswith("--secret=")]
    specs += [value for flag, value in zip(argv, argv[1:]) if flag == "--secret"]
    for spec in specs:
        fields = dict(part.split("=", 1) for part in spec.split(",") if "=" in part)
        if fields.get("id") == secret_id:
            return fields.get("src") or fields.get("source") or ""
    return None


def diagnose(runner: Runner, plan: BuildPlan) -> None:
    """After a failed build, tell an unreachable daemon, a client without BuildKit, or a
    classic-builder option after ``--`` on a client whose docker build is buildx (Docker 23+:
    ``passthrough.NOT_FOR_BUILDX``) from a failing Dockerfile. Runs only on the failure path,
    so a good build pays nothing for it."""
    result = runner.run(
        Command(
            ("docker", "version", "--format", "{{.Client.Version}}"), check=False, kind=Kind.PROBE
        )
    )
    client = result.stdout.strip()
    text = result.stderr.lower()
    if result.returncode != 0 and "permission denied" in text:
        raise DockerUnavailable(
            "no permission to use the Docker daemon's socket: add your user to "
            "the docker group (then log in again), or run with sudo"
        )
    target = plan.docker
    missing = re.search(r'context "([^"]*)" does not exist', result.stderr)
    if result.returncode != 0 and missing:
        said = f" (the plan said: {target.describe()})" if target is not None else ""
        raise DockerUnavailable(
            f"docker context {missing[1]!r} does not exist{said}: `docker "
            "context ls` lists the contexts; fix DOCKER_CONTEXT, or `docker "
            "context use` an existing one"
        )
    if result.returncode != 0 and daemon_down(result.stderr):
        raise DockerUnavailable(daemon_unreachable(target))
    major = client.split(".")[0]
    if major.isdigit() and int(major) >= 23:
        buildx = runner.run(buildx_version_command())
        if buildx.returncode != 0:
            raise DockerUnavailable(
                f"this docker client ({client}) needs the buildx plugin for "
                f"BuildKit builds: install buildx (docker-buildx-plugin), or set "
                f"DOCKER to {CLASSIC_CLIENT}"
            )
        # docker build is buildx on this client, and buildx has no classic-only option
        refused = not_for_buildx(plan.passthrough)
        if refused:
            raise CommandFailed(
                f"this docker client ({client}) builds with buildx, which refuses "
                f'{", ".join(refused)} ("unknown flag"): an option of the classic '
                f"builder's docker build, given after --; drop it, or set DOCKER to "
                f"{CLASSIC_CLIENT}"
            )
