"""steps/summary.py: the summary after a build follows the image by its ID (issue 22)."""

from __future__ import annotations
import io
import json
import pytest
from fakes import FAKE_IMAGE_ID
from ragbuild import steps
from ragbuild.errors import CommandFailed
from ragbuild.run.runner import Runner
from registry_fakes import DIGEST, PLAIN, build_plan


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
