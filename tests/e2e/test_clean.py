"""`make clean` removes the images labelled as this project's, and no other.

It removes every image carrying ``org.ragbuild.project=rag-worker`` on the engine, the session's
shared worker build included, so this module runs after all the others (``RUNS_LAST``).
"""

from __future__ import annotations

import pytest

from .support import BASE_IMAGE, PROJECT_LABEL

pytestmark = pytest.mark.e2e

RUNS_LAST = True
LABEL = f"{PROJECT_LABEL}=rag-worker"
FORK = "my-rag-worker-fork:1"


@pytest.fixture
def fork(docker, tiny_context, images):
    """An unrelated image whose name contains "rag-worker" (bash's clean grepped for that). It is
    an image of its own rather than a second name of the base image, so a clean that wrongly
    removed it by id could not take python:3.11-slim (which every build here needs) with it."""
    dockerfile = tiny_context('LABEL org.example.fork="1"')
    docker("build", "-q", "-t", FORK, dockerfile.parent, env={"DOCKER_BUILDKIT": "1"}).assert_ok()
    images.track(docker.image_id(FORK))
    yield FORK
    docker.quiet("image", "rm", FORK)


def test_make_clean_removes_only_the_labelled_images(project, fork, tiny_context, unique, docker,
                                                     images):
    base_id = docker.image_id(BASE_IMAGE)
    fork_id = docker.image_id(fork)
    # one labelled image for certain (others may exist from earlier cases), and one unlabelled
    # image of this project's build path
    labelled = project.script("--env", "dev", "-f", tiny_context(f'LABEL {LABEL}'),
                              "--image-name", images.track_repository(unique("labelled")))
    labelled_id = labelled.assert_ok().built_id()
    plain_name = images.track_repository(unique("unlabelled"))
    plain_id = project.script("--env", "dev", "-f", tiny_context(), "--image-name",
                              plain_name).assert_ok().built_id()
    before = docker.labelled(LABEL)
    assert labelled_id in before and plain_id not in before

    result = project.make("clean").assert_ok()
    assert f"removed {len(before)} image(s)" in result.stderr, result.describe()
    assert docker.labelled(LABEL) == set()
    assert docker.image_id(labelled_id) is None
    # what is not labelled survives: the fork, the base image, our unlabelled build
    assert docker.image_id(fork) == fork_id
    assert docker.image_id(BASE_IMAGE) == base_id
    assert docker.image_id(plain_name + ":dev") == plain_id

    again = project.make("clean")
    assert again.returncode == 0, again.describe()
    assert "nothing to clean" in again.stderr
    assert docker.image_id(fork) == fork_id
