"""clean (commands/clean.py, cleanup.py): only this project's tags go, images a container uses keep
every tag, against faked docker calls through main()."""

import json
import pytest
from ragbuild import cli
from ragbuild.cleanup import ragbuild_refs


DOCKER = "docker"


LS = [DOCKER, "image", "ls", "--filter", "label=org.ragbuild.repository", "--quiet", "--no-trunc"]


LABEL = "org.ragbuild.repository"


def image(image_id, tags, repository=None, **labels):
    if repository is not None:
        labels[LABEL] = repository
    return {"Id": image_id, "RepoTags": list(tags), "Config": {"Labels": labels or None}}


CONTAINERS = [DOCKER, "container", "ls", "--all", "--quiet", "--no-trunc"]


INSPECT_CONTAINERS = [
    DOCKER,
    "container",
    "inspect",
    "--format",
    "{{.Id}} {{.Image}} {{.State.Status}} {{.Name}}",
]


def register_containers(fp, containers):
    """``containers``: (name, image ID, status) of every container of the daemon."""
    ids = [f"c{n:063d}" for n in range(len(containers))]
    fp.register([fp.program(DOCKER), *CONTAINERS[1:]], stdout="".join(f"{i}\n" for i in ids))
    if ids:
        fp.register(
            [fp.program(DOCKER), *INSPECT_CONTAINERS[1:], *ids],
            stdout="".join(
                f"{i} {image} {status} /{name}\n"
                for i, (name, image, status) in zip(ids, containers)
            ),
        )


def register_listing(fp, images, *, local_image=None, containers=()):
    ids = [i["Id"] for i in images]
    fp.register([fp.program(DOCKER), *LS[1:]], stdout="".join(f"{i}\n" for i in ids))
    if ids:
        fp.register([fp.program(DOCKER), "image", "inspect", *ids], stdout=json.dumps(images))
    local = [("rag-worker-local", local_image, "running")] if local_image is not None else []
    register_containers(fp, [*containers, *local])


# --- clean -------------------------------------------------------------------------------------

OURS = image(
    "sha256:aaa",
    ["rag-worker:dev", "rag-worker:latest"],
    "rag-worker",
    **{"org.ragbuild.project": "rag-worker"},
)


# docker copies labels into an image built FROM ours: the fork carries our label, not our tags
FORK = image("sha256:fff", ["my-fork:1"], "rag-worker", **{"org.ragbuild.project": "rag-worker"})


# `docker tag rag-worker:git-abc team/x:1`: one image, our tag and the user's
USER_TAGGED = image("sha256:uuu", ["rag-worker:git-abc", "team/x:1"], "rag-worker")


REGISTRY = image(
    "sha256:rrr",
    ["localhost:5000/team/rag:dev", "localhost:5000/team/rag-other:1"],
    "localhost:5000/team/rag",
)


DANGLING = image("sha256:ddd", [], "rag-worker")


def test_clean_removes_only_the_tags_of_the_labelled_repository(fp, capsys):
    register_listing(fp, [OURS, FORK, USER_TAGGED, REGISTRY, DANGLING])
    rm = [
        fp.program(DOCKER),
        "image",
        "rm",
        "rag-worker:dev",
        "rag-worker:latest",
        "rag-worker:git-abc",
        "localhost:5000/team/rag:dev",
    ]
    fp.register(rm)
    assert cli.main(["clean", "--registry", "localhost:5000/team/rag"]) == 0
    assert fp.call_count(rm) == 1  # one call, no --force: a tag docker would refuse stays
    assert fp.call_count([fp.program(DOCKER), "image", "rm", "--force", fp.any()]) == 0
    assert fp.call_count([fp.program(DOCKER), "rm", fp.any()]) == 0  # no local container
    err = capsys.readouterr().err
    assert (
        "removed 4 tag(s) of ragbuild builds: 1 image(s) deleted; 3 labelled image(s) keep "
        "tags of their own"
    ) in err
    assert (
        "1 untagged image(s)" in err
        and "docker image prune --filter label=org.ragbuild.repository" in err
    )


def test_one_inspect_call_for_every_listed_image(fp):
    register_listing(fp, [OURS, FORK])
    fp.register([fp.program(DOCKER), "image", "rm", "rag-worker:dev", "rag-worker:latest"])
    assert cli.main(["clean"]) == 0
    assert fp.call_count([fp.program(DOCKER), "image", "inspect", fp.any()]) == 1


def test_a_second_clean_has_nothing_to_clean_but_leaves_forks_and_user_tags(fp, capsys):
    register_listing(fp, [FORK, image("sha256:uuu", ["team/x:1"], "rag-worker")])
    assert cli.main(["clean"]) == 0
    err = capsys.readouterr().err
    assert "nothing to clean" in err and "2 labelled image(s) carry only tags of their own" in err
    assert fp.call_count([fp.program(DOCKER), "image", "rm", fp.any()]) == 0


def test_clean_with_no_labelled_image_is_not_an_error(fp, capsys):
    register_listing(fp, [])
    assert cli.main(["clean"]) == 0
    assert "nothing to clean" in capsys.readouterr().err
    assert fp.call_count([fp.program(DOCKER), "image", "inspect", fp.any()]) == 0
    assert fp.call_count([fp.program(DOCKER), "image", "rm", fp.any()]) == 0


def test_custom_image_name_is_cleaned_by_its_label(fp, tmp_path, monkeypatch):
    """The Dockerfile's project label says rag-worker whatever image-name is; the build's
    repository label names the image's own repository."""
    (tmp_path / "setup.cfg").write_text("[ragbuild]\nimage-name = my-worker\n")
    monkeypatch.chdir(tmp_path)
    custom = image(
        "sha256:ccc", ["my-worker:dev"], "my-worker", **{"org.ragbuild.project": "rag-worker"}
    )
    register_listing(fp, [custom])
    fp.register([fp.program(DOCKER), "image", "rm", "my-worker:dev"])
    assert cli.main(["clean"]) == 0


def test_local_container_is_removed_only_when_it_runs_an_image_being_deleted(fp):
    register_listing(fp, [OURS], local_image="sha256:aaa")
    fp.register([fp.program(DOCKER), "rm", "-f", "rag-worker-local"])
    fp.register([fp.program(DOCKER), "image", "rm", "rag-worker:dev", "rag-worker:latest"])
    assert cli.main(["clean"]) == 0
    assert fp.call_count([fp.program(DOCKER), "rm", "-f", "rag-worker-local"]) == 1


def test_the_local_container_goes_only_after_every_other_tag_went(fp, capsys):
    """A refusal for another image (a container of someone else uses it) keeps the local
    container running; when the rest went, the container and then its image's tags go."""
    other = image("sha256:bbb", ["rag-worker:git-old"], "rag-worker")
    register_listing(fp, [OURS, other], local_image="sha256:aaa")
    fp.register(
        [fp.program(DOCKER), "image", "rm", "rag-worker:git-old"],
        returncode=1,
        stderr="Error response from daemon: conflict: unable to remove repository reference "
        '"rag-worker:git-old" (must force) - container 3e08b362cf36 is using its '
        "referenced image bbb\n",
    )
    assert cli.main(["clean"]) == 1
    assert fp.call_count([fp.program(DOCKER), "rm", fp.any()]) == 0  # left running
    assert "container rag-worker-local was left running" in capsys.readouterr().err

    register_listing(fp, [OURS, other], local_image="sha256:aaa")
    fp.register([fp.program(DOCKER), "image", "rm", "rag-worker:git-old"])
    fp.register([fp.program(DOCKER), "rm", "-f", "rag-worker-local"])
    fp.register([fp.program(DOCKER), "image", "rm", "rag-worker:dev", "rag-worker:latest"])
    assert cli.main(["clean"]) == 0
    order = [" ".join(map(str, call[1:3])) for call in fp.calls][-3:]
    assert order == ["image rm", "rm -f", "image rm"]


@pytest.mark.parametrize(
    "running, removed",
    [
        ("sha256:fff", ["rag-worker:dev", "rag-worker:latest", "rag-worker:git-abc"]),
        # the user-tagged image survives the clean and the local container uses it: every tag stays
        ("sha256:uuu", ["rag-worker:dev", "rag-worker:latest"]),
    ],
    ids=["fork", "user-tagged"],
)
def test_local_container_running_a_surviving_image_is_left(fp, running, removed):
    register_listing(fp, [OURS, FORK, USER_TAGGED], local_image=running)
    fp.register([fp.program(DOCKER), "image", "rm", *removed])
    assert cli.main(["clean"]) == 0
    assert fp.call_count([fp.program(DOCKER), "rm", fp.any()]) == 0


def test_a_tag_docker_refuses_to_remove_is_a_clear_failure(fp, capsys):
    register_listing(fp, [OURS])
    fp.register(
        [fp.program(DOCKER), "image", "rm", "rag-worker:dev", "rag-worker:latest"],
        returncode=1,
        stdout="Untagged: rag-worker:dev\n",
        stderr="Error response from daemon: conflict: unable to remove repository reference "
        '"rag-worker:latest" (must force) - container 0123 is using its referenced image\n',
    )
    assert cli.main(["clean"]) == 1
    err = capsys.readouterr().err
    assert "must force" in err and "remove that container with docker rm -f" in err


def test_tags_removed_by_someone_else_meanwhile_are_not_an_error(fp, capsys):
    """A concurrent clean (or a user) removed some tags between the listing and the rm."""
    register_listing(fp, [OURS])
    fp.register(
        [fp.program(DOCKER), "image", "rm", "rag-worker:dev", "rag-worker:latest"],
        returncode=1,
        stdout="Untagged: rag-worker:latest\n",
        stderr="Error: No such image: rag-worker:dev\n",
    )
    assert cli.main(["clean"]) == 0
    assert "removed 1 tag(s) of ragbuild builds (1 were gone already)" in capsys.readouterr().err


def test_a_refusal_among_vanished_tags_still_fails(fp, capsys):
    register_listing(fp, [OURS])
    fp.register(
        [fp.program(DOCKER), "image", "rm", "rag-worker:dev", "rag-worker:latest"],
        returncode=1,
        stderr="Error: No such image: rag-worker:dev\nError response from daemon: conflict: "
        'unable to remove repository reference "rag-worker:latest" (must force)\n',
    )
    assert cli.main(["clean"]) == 1
    err = capsys.readouterr().err
    assert "must force" in err and "No such image" not in err


def test_an_image_removed_between_listing_and_inspect_is_skipped(fp):
    fp.register([fp.program(DOCKER), *LS[1:]], stdout="sha256:aaa\nsha256:gone\n")
    fp.register(
        [fp.program(DOCKER), "image", "inspect", "sha256:aaa", "sha256:gone"],
        returncode=1,
        stdout=json.dumps([OURS]),
        stderr="Error: No such image: sha256:gone\n",
    )
    register_containers(fp, [])
    fp.register([fp.program(DOCKER), "image", "rm", "rag-worker:dev", "rag-worker:latest"])
    assert cli.main(["clean"]) == 0


def test_clean_dry_run_prints_and_runs_nothing(fp, capsys):
    assert cli.main(["clean", "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "docker image ls --filter label=org.ragbuild.repository --quiet --no-trunc",
        "docker image inspect IMAGE_IDS",
        "docker container ls --all --quiet --no-trunc",
        "docker image rm RAGBUILD_REFS",
    ]
    assert (
        "dry run: a real run keeps every tag of an image a container uses (running or "
        "stopped), the local run container excepted"
    ) in err
    assert len(fp.calls) == 0


def test_docker_hub_registry_label_matches_the_listed_tags():
    listed = image("sha256:h", ["team/rag:dev", "team/rag-x:dev"], "docker.io/team/rag")
    assert ragbuild_refs(listed) == ["team/rag:dev"]


def test_an_image_without_the_label_has_no_ragbuild_refs():
    assert ragbuild_refs(image("sha256:n", ["rag-worker:dev"])) == []


# --- this project's images only; images in use keep every tag (issue 23) ------------------------

OTHER_PROJECT = image("sha256:ooo", ["other-app:dev", "other-app:latest"], "other-app")


TEAMMATE = image("sha256:ttt", ["localhost:5000/team/other:1"], "localhost:5000/team/other")


def test_clean_leaves_other_projects_images_and_names_them(fp, capsys):
    register_listing(fp, [OURS, OTHER_PROJECT, TEAMMATE])
    fp.register([fp.program(DOCKER), "image", "rm", "rag-worker:dev", "rag-worker:latest"])
    assert cli.main(["clean"]) == 0
    removed = [c for c in fp.calls if list(map(str, c[1:3])) == ["image", "rm"]]
    assert len(removed) == 1 and "other-app:dev" not in map(str, removed[0])
    err = capsys.readouterr().err
    assert (
        "kept the images of other repositories (localhost:5000/team/other, other-app): not "
        "this project's (rag-worker); clean --all removes every ragbuild build's tags"
    ) in err


def test_the_project_is_what_a_build_here_uses(fp, tmp_path, monkeypatch):
    """setup.cfg's image name and ECR_REGISTRY_URI, as a build takes them; flags over both."""
    (tmp_path / "setup.cfg").write_text("[ragbuild]\nimage-name = other-app\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ECR_REGISTRY_URI", "localhost:5000/team/other")
    register_listing(fp, [OURS, OTHER_PROJECT, TEAMMATE])
    fp.register(
        [
            fp.program(DOCKER),
            "image",
            "rm",
            "other-app:dev",
            "other-app:latest",
            "localhost:5000/team/other:1",
        ]
    )
    assert cli.main(["clean"]) == 0
    register_listing(fp, [OURS, OTHER_PROJECT, TEAMMATE])
    fp.register([fp.program(DOCKER), "image", "rm", "rag-worker:dev", "rag-worker:latest"])
    assert (
        cli.main(["clean", "--image-name", "rag-worker", "--registry", "localhost:5000/nothing"])
        == 0
    )


def test_clean_all_widens_to_every_labelled_image(fp):
    register_listing(fp, [OURS, OTHER_PROJECT])
    rm = [
        fp.program(DOCKER),
        "image",
        "rm",
        "rag-worker:dev",
        "rag-worker:latest",
        "other-app:dev",
        "other-app:latest",
    ]
    fp.register(rm)
    assert cli.main(["clean", "--all"]) == 0
    assert fp.call_count(rm) == 1


@pytest.mark.parametrize("status", ["running", "exited", "created"])
def test_an_image_a_container_uses_keeps_every_tag(fp, capsys, status):
    other = image("sha256:bbb", ["rag-worker:git-old", "rag-worker:prod"], "rag-worker")
    register_listing(fp, [OURS, other], containers=[("teammate-debug", "sha256:bbb", status)])
    fp.register([fp.program(DOCKER), "image", "rm", "rag-worker:dev", "rag-worker:latest"])
    assert cli.main(["clean"]) == 0
    removed = [list(map(str, c)) for c in fp.calls if list(map(str, c[1:3])) == ["image", "rm"]]
    assert len(removed) == 1 and "rag-worker:git-old" not in removed[0]
    err = capsys.readouterr().err
    assert (
        f"kept rag-worker:git-old, rag-worker:prod: image sha256:bbb is used by container "
        f"teammate-debug ({status})"
    ) in err
    assert "1 image(s) deleted; 1 kept in use by containers" in err


def test_nothing_but_images_in_use_is_nothing_to_clean(fp, capsys):
    register_listing(fp, [OURS], containers=[("x", "sha256:aaa", "exited")])
    assert cli.main(["clean"]) == 0
    assert fp.call_count([fp.program(DOCKER), "image", "rm", fp.any()]) == 0
    err = capsys.readouterr().err
    assert "kept rag-worker:dev, rag-worker:latest: image sha256:aaa is used by container x" in err
    assert "nothing to clean" in err


def test_a_registry_that_is_not_a_registry_uri_is_a_usage_error(fp, capsys):
    assert cli.main(["clean", "--registry", "not a uri"]) == 2
    assert len(fp.calls) == 0
