"""steps/summary.py: the summary after a build follows the image by its ID (issue 22)."""

from __future__ import annotations
import io
import json
import pytest
from fakes import FAKE_IMAGE_ID
from ragbuild import steps
from ragbuild.errors import CommandFailed
from ragbuild.run.runner import Runner
from registry_fakes import DIGEST, PLAIN, build_plan, pushing_plan, register_local_image

from ragbuild.reference import familiar


def test_on_the_containerd_store_the_summary_follows_the_pushed_manifest(fp):
    """buildx's --iidfile names the config; a containerd-store daemon knows the image by its
    manifest's digest (what the build that pushed reported): the run follows that."""
    plan = build_plan(f"{PLAIN}/rag-worker")
    docker = fp.program("docker")
    fp.register(
        [docker, "image", "inspect", "--format", fp.any(min=1, max=1), FAKE_IMAGE_ID],
        returncode=1,
        stderr=f"Error response from daemon: No such image: {FAKE_IMAGE_ID}\n",
    )
    fp.register(
        [docker, "image", "inspect", "--format", fp.any(min=1, max=1), DIGEST],
        stdout=f"{DIGEST} 1 {json.dumps(list(plan.refs))} {{}}\n",
    )
    image = steps.summary.summarize(
        Runner(log=io.StringIO()), plan, FAKE_IMAGE_ID, pushed=True, manifest=DIGEST
    )
    assert image.followed == DIGEST == image.id


def test_the_classic_store_knows_the_id_and_asks_once(fp):
    plan = build_plan(f"{PLAIN}/rag-worker")
    fp.register(
        [fp.program("docker"), "image", "inspect", "--format", fp.any(min=1, max=1), FAKE_IMAGE_ID],
        stdout=f"{FAKE_IMAGE_ID} 1 {json.dumps(list(plan.refs))} {{}}\n",
    )
    image = steps.summary.summarize(Runner(log=io.StringIO()), plan, FAKE_IMAGE_ID, manifest=DIGEST)
    assert image.followed == FAKE_IMAGE_ID and len(fp.calls) == 1


@pytest.mark.parametrize(
    "created, unique, followed",
    [
        ("THIS", True, "sha256:" + "cd" * 32),
        ("2020-01-01T00:00:00+00:00", True, None),
        ("THIS", False, None),
    ],
)
def test_without_a_manifest_digest_the_primary_ref_counts_only_with_this_runs_label(
    fp, created, unique, followed
):
    """A plain build on the containerd store (buildx without attestations writes the config
    digest): the primary ref is asked, and taken only when its created label is this run's."""
    plan = build_plan(f"{PLAIN}/rag-worker")
    label = plan.created if created == "THIS" else created
    docker = fp.program("docker")
    fp.register(
        [docker, "image", "inspect", "--format", fp.any(min=1, max=1), FAKE_IMAGE_ID],
        returncode=1,
        stderr="Error response from daemon: No such image\n",
    )
    fp.register(
        [docker, "image", "inspect", "--format", fp.any(min=1, max=1), plan.primary],
        stdout=f"sha256:{'cd' * 32} 1 {json.dumps(list(plan.refs))} "
        f"{json.dumps({'org.opencontainers.image.created': label})}\n",
    )

    def summarize():
        return steps.summary.summarize(
            Runner(log=io.StringIO()),
            plan,
            FAKE_IMAGE_ID,  # noqa
            unique_created=unique,
        )

    if followed:
        assert summarize().followed == followed  # the daemon's own ID from then on
    else:
        with pytest.raises(CommandFailed) as stopped:
            summarize()
        assert str(stopped.value).startswith(f"the daemon knows no image {FAKE_IMAGE_ID}")


# --- the summary's tag check -------------------------------------------------------------------


@pytest.mark.parametrize(
    "ref, listed",
    [
        ("docker.io/library/rag-worker:dev", "rag-worker:dev"),
        ("index.docker.io/team/rag-worker:dev", "team/rag-worker:dev"),
        ("docker.io/team/rag-worker:dev", "team/rag-worker:dev"),
        ("library/rag-worker:dev", "rag-worker:dev"),
        ("docker.io/library/team/x:dev", "library/team/x:dev"),
        ("localhost:5000/library/x:dev", "localhost:5000/library/x:dev"),
        ("rag-worker:dev", "rag-worker:dev"),
    ],
)
def test_refs_are_compared_as_docker_lists_them(ref, listed):
    assert familiar(ref) == listed
    assert familiar(listed) == listed


@pytest.mark.parametrize(
    "base", ["docker.io/library/rag-worker", "index.docker.io/team/rag", "library/rag-worker"]
)
def test_a_good_build_on_docker_hub_names_never_lacks_tags(fp, base, capsys):
    from datetime import datetime

    from ragbuild.config import Config, Options
    from ragbuild.git import GitInfo
    from ragbuild.plan import make_plan

    if "/" in base and "." in base.split("/")[0]:
        options = Options(env="dev", registry=base)
    else:
        options = Options(env="dev", image_name=base)
    plan = make_plan(options, Config(), GitInfo(sha="abc1234"), datetime(2026, 1, 1))
    listed = [familiar(ref) for ref in plan.refs]
    fp.register(
        [fp.program("docker"), "image", "inspect", fp.any()],
        stdout=f"sha256:0123 12 {json.dumps(listed)} null\n",
    )
    info = steps.summary.summarize(Runner(), plan)
    assert info.repo_tags == tuple(listed)


# --- a build that pushes (plan.build_pushes) ---------------------------------------------------


@pytest.mark.parametrize("pushed", [True, False])
def test_tags_missing_after_a_build_that_pushed_says_the_tags_are_out(fp, tmp_path, pushed):
    """The summary's tag check fails after the build pushed: the user learns the tags went to
    the registry anyway (the verification does not run after a failed step)."""
    from ragbuild.errors import CommandFailed

    plan, _ = pushing_plan()
    register_local_image(fp, plan, plan.created, refs=plan.refs[:1])
    with pytest.raises(CommandFailed) as err:
        steps.summary.summarize(Runner(), plan, pushed=pushed)
    said = str(err.value)
    assert said.startswith(f"the built image lacks tags {', '.join(plan.refs[1:])}; ")
    assert (
        f"the build had already pushed its {len(plan.refs)} tags to localhost:5000/rag-worker "
        "(not read back)" in said
    ) is pushed
