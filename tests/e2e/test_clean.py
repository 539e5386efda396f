"""`make clean` removes the tags this project's ragbuild builds made, and no other tag or image.

Every ragbuild build labels its image ``org.ragbuild.repository=<the repository of its tags>``.
Docker copies labels into images built FROM it, so the label alone does not make an image
ragbuild's: clean removes only the tags on that repository (no ``--force``), and an image that
also carries a tag of its own (a fork, a user's ``docker tag``) survives under it.

clean acts on every ragbuild-built image of the engine, the session's shared worker build
included, so this module runs after all the others (``RUNS_LAST``).
"""

from __future__ import annotations

import re

import pytest

from .support import free_port, BASE_IMAGE, LOCAL_CONTAINER

pytestmark = pytest.mark.e2e

RUNS_LAST = True
REPOSITORY_LABEL = "org.ragbuild.repository"
UNRELATED = "my-rag-worker-fork:1"


@pytest.fixture
def unrelated(docker, tiny_context, images):
    """An image of someone else whose name contains "rag-worker" (bash's clean grepped for that).
    An image of its own rather than a second name of the base image, so a clean that wrongly
    removed it by id could not take python:3.11-slim (which every build here needs) with it."""
    dockerfile = tiny_context('LABEL org.example.fork="1"')
    docker(
        "build", "-q", "-t", UNRELATED, dockerfile.parent, env={"DOCKER_BUILDKIT": "1"}
    ).assert_ok()
    images.track(docker.image_id(UNRELATED))
    yield UNRELATED
    docker.quiet("image", "rm", UNRELATED)


@pytest.fixture
def containers(docker):
    names = []
    yield names
    for name in names:
        docker.remove_container(name)


@pytest.mark.every_leg
def test_make_clean_removes_only_ragbuilds_tags(
    new_project, unrelated, tiny_context, unique, docker, images, containers, tmp_path
):
    base_id = docker.image_id(BASE_IMAGE)
    unrelated_id = docker.image_id(unrelated)

    # a ragbuild build under a custom image-name of setup.cfg (the Dockerfile says nothing of it)
    name = images.track_repository(unique("ours"))
    project = new_project("clean", image_name=name)
    dockerfile = tiny_context('CMD ["sleep", "300"]')  # run-local keeps it running
    built = project.script(
        "--env", "dev", "-f", dockerfile, "--context", dockerfile.parent
    ).assert_ok()
    ours_id, ts = built.built_id(), built.timestamp()
    ours = sorted(f"{name}:{tag}" for tag in (f"dev-{ts}", "dev", f"git-{project.sha}", "latest"))
    assert sorted(docker.inspect(ours_id)["RepoTags"]) == ours
    labels = docker.inspect(ours_id)["Config"]["Labels"]
    assert labels[REPOSITORY_LABEL] == name
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", labels["org.opencontainers.image.created"]
    ), labels

    # a fork: built FROM ours by someone else, so it inherits the label, not the tags
    fork = images.track_repository(unique("fork")) + ":1"
    fork_context = tmp_path / "fork"
    fork_context.mkdir()
    (fork_context / "Dockerfile").write_text(f'FROM {name}:dev\nLABEL org.example.fork="2"\n')
    docker("build", "-q", "-t", fork, fork_context, env={"DOCKER_BUILDKIT": "1"}).assert_ok()
    fork_id = docker.image_id(fork)
    assert docker.inspect(fork_id)["Config"]["Labels"][REPOSITORY_LABEL] == name

    # a ragbuild image the user also tagged themselves
    tagged_name = images.track_repository(unique("tagged"))
    dockerfile = tiny_context('LABEL org.example.tagged="1"')
    tagged = project.script(
        "--env",
        "dev",
        "--no-latest",
        "--image-name",
        tagged_name,
        "-f",
        dockerfile,
        "--context",
        dockerfile.parent,
    ).assert_ok()
    tagged_id = tagged.built_id()
    user_tag = images.track_repository(unique("team")) + ":1"
    docker("tag", f"{tagged_name}:dev", user_tag).assert_ok()

    # `make run-local` of our image (a container that exits at once is a failed run), and
    # a container of the user's running the fork
    project.script("run", f"{name}:dev", "--port", str(free_port())).assert_ok()
    containers.append(LOCAL_CONTAINER)
    fork_container = unique("fork-container")
    docker("create", "--name", fork_container, fork).assert_ok()
    containers.append(fork_container)

    result = project.make("clean").assert_ok()
    removed = re.search(r"^removed (\d+) tag\(s\) of ragbuild builds", result.stderr, re.M)
    assert removed and int(removed[1]) == len(ours), result.describe()
    assert "--force" not in result.stderr
    # the image built under another --image-name is this project's only when clean is told so
    assert docker.refs(f"{tagged_name}:*") != []
    other = project.script("clean", "--image-name", tagged_name).assert_ok()
    removed = re.search(r"^removed (\d+) tag\(s\) of ragbuild builds", other.stderr, re.M)
    assert removed and int(removed[1]) == 3, other.describe()

    # ragbuild's tags are gone, and our image with them
    assert docker.refs(f"{name}:*") == [] and docker.image_id(ours_id) is None
    assert docker.refs(f"{tagged_name}:*") == []
    # the local container ran an image clean deleted: it is gone; the fork's container is not
    assert docker.containers(f"name=^{LOCAL_CONTAINER}$") == []
    assert len(docker.containers(f"name=^{fork_container}$")) == 1
    # what is not ragbuild's tag survives: the fork, the user's tag, the unrelated and base images
    assert docker.image_id(fork) == fork_id
    assert docker.image_id(user_tag) == tagged_id
    assert docker.inspect(tagged_id)["RepoTags"] == [user_tag]
    assert docker.image_id(unrelated) == unrelated_id
    assert docker.image_id(BASE_IMAGE) == base_id

    again = project.make("clean")
    assert again.returncode == 0, again.describe()
    assert "nothing to clean" in again.stderr, again.describe()
    assert "labelled image(s) carry only tags of their own" in again.stderr  # the fork, the user's
    assert docker.image_id(fork) == fork_id and docker.image_id(user_tag) == tagged_id
