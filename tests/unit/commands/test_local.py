"""run-local, logs and clean: the docker calls they make, and what clean leaves alone; the
subcommands' flag checks; the Makefile's ECR_URI default."""

import io
import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from ragbuild import cli
from ragbuild.commands import local as local_commands
from ragbuild.commands.clean import ragbuild_refs
from ragbuild.reference import repository_of
from ragbuild.reference import familiar

REPO = Path(__file__).resolve().parents[3]
DOCKER = "docker"
LS = [DOCKER, "image", "ls", "--filter", "label=org.ragbuild.repository", "--quiet", "--no-trunc"]
INSPECT_LOCAL = [DOCKER, "container", "inspect", "--format", "{{.Image}}", "rag-worker-local"]
LABEL = "org.ragbuild.repository"


#: docker inspect's {{json .State}} of a container that runs
RUNNING_STATE = json.dumps({"Status": "running", "Running": True})


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


@pytest.mark.parametrize(
    "ref, repository",
    [
        ("rag-worker:dev", "rag-worker"),
        ("localhost:5000/a/b:1", "localhost:5000/a/b"),
        ("localhost:5000/a/b", "localhost:5000/a/b"),
        ("team/x:1", "team/x"),
    ],
)
def test_repository_of(ref, repository):
    assert repository_of(ref) == repository


@pytest.mark.parametrize(
    "label, familiar_name",
    [
        ("docker.io/team/rag", "team/rag"),
        ("docker.io/library/rag", "rag"),
        ("index.docker.io/rag", "rag"),
        ("docker.io/library/a/b", "library/a/b"),
        ("rag-worker", "rag-worker"),
        ("r.example.com/library/x", "r.example.com/library/x"),
    ],
)
def test_familiar_matches_how_docker_lists_docker_hub_names(label, familiar_name):
    assert familiar(label) == familiar_name


def test_docker_hub_registry_label_matches_the_listed_tags():
    listed = image("sha256:h", ["team/rag:dev", "team/rag-x:dev"], "docker.io/team/rag")
    assert ragbuild_refs(listed) == ["team/rag:dev"]


def test_an_image_without_the_label_has_no_ragbuild_refs():
    assert ragbuild_refs(image("sha256:n", ["rag-worker:dev"])) == []


# --- run, logs ---------------------------------------------------------------------------------


NEW = "rag-worker-local-new-0badcafe"
INSPECT_OLD = [
    "container",
    "inspect",
    "--format",
    "{{.State.Running}} {{json .HostConfig.PortBindings}}",
    "rag-worker-local",
]


@pytest.fixture
def local(fp, monkeypatch):
    """A fixed temporary name; ``local(old=...)`` registers the old container's inspect:
    None (no container), or its ``running`` state and host port."""
    monkeypatch.setattr(local_commands, "temporary_name", lambda name: NEW)
    monkeypatch.setattr(local_commands, "SETTLE", 0)

    def register(old=None, new_state=RUNNING_STATE):
        fp.register(
            [fp.program(DOCKER), "inspect", "--format", "{{json .State}}", NEW], stdout=new_state
        )  # after its start: does it still run?
        if old is None:
            fp.register(
                [fp.program(DOCKER), *INSPECT_OLD],
                returncode=1,
                stderr="Error: No such container: rag-worker-local\n",
            )
        else:
            running, host_port = old
            bindings = json.dumps({"8080/tcp": [{"HostIp": "", "HostPort": str(host_port)}]})
            fp.register([fp.program(DOCKER), *INSPECT_OLD], stdout=f"{running} {bindings}\n")

    return register


def calls(fp) -> list:
    return [" ".join(map(str, call[1:])) for call in fp.calls]


def test_run_local_starts_the_new_container_before_removing_the_old(fp, local, capsys):
    fp.allow_unregistered(False)
    local(old=("true", 19090))
    fp.register(
        [fp.program(DOCKER), "create", "--name", NEW, "-p", "9000:8080", "rag-worker:dev"],
        stdout="abc\n",
    )
    fp.register([fp.program(DOCKER), "start", NEW])
    fp.register([fp.program(DOCKER), "rm", "-f", "rag-worker-local"])
    fp.register([fp.program(DOCKER), "rename", NEW, "rag-worker-local"])
    assert cli.main(["run", "--port", "9000"]) == 0
    assert calls(fp)[1:] == [
        f"create --name {NEW} -p 9000:8080 rag-worker:dev",
        f"start {NEW}",
        f"inspect --format {{{{json .State}}}} {NEW}",
        "rm -f rag-worker-local",
        f"rename {NEW} rag-worker-local",
    ]
    assert "curl http://localhost:9000/health" in capsys.readouterr().err


@pytest.mark.parametrize(
    "said",
    [
        "Error response from daemon: driver failed programming external connectivity on endpoint "
        "x: Error starting userland proxy: listen tcp4 0.0.0.0:18080: bind: address already in use",
        "Error response from daemon: Bind for 0.0.0.0:18080 failed: port is already allocated",
    ],
)
def test_a_taken_port_keeps_the_old_container_and_leaves_nothing(fp, local, capsys, said):
    fp.allow_unregistered(False)
    local(old=("true", 19090))
    fp.register(
        [fp.program(DOCKER), "create", "--name", NEW, "-p", "18080:8080", "rag-worker:dev"],
        stdout="abc\n",
    )
    fp.register(
        [fp.program(DOCKER), "start", NEW],
        returncode=1,
        stderr=said + "\nError: failed to start containers: " + NEW + "\n",
    )
    fp.register([fp.program(DOCKER), "rm", "-f", NEW])
    assert cli.main(["run", "--port", "18080"]) == 1
    assert calls(fp)[-1] == f"rm -f {NEW}"  # the old one was never touched
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: port 18080 is taken (docker: ")
    assert err[-1].endswith(
        "; pass --port with a free port, e.g. run --port 18081; nothing "
        "changed: rag-worker-local is as it was"
    )


def test_the_old_container_on_the_same_port_is_stopped_first_and_restarted_on_failure(
    fp, local, capsys
):
    fp.allow_unregistered(False)
    local(old=("true", 8080))
    fp.register([fp.program(DOCKER), "create", "--name", NEW, "-p", "8080:8080", "broken:1"])
    fp.register([fp.program(DOCKER), "stop", "rag-worker-local"])
    fp.register(
        [fp.program(DOCKER), "start", NEW],
        returncode=1,
        stderr='exec: "uvicorn": executable file not found in $PATH\n',
    )
    fp.register([fp.program(DOCKER), "rm", "-f", NEW])
    fp.register([fp.program(DOCKER), "start", "rag-worker-local"])
    assert cli.main(["run", "broken:1"]) == 1
    assert calls(fp)[1:] == [
        f"create --name {NEW} -p 8080:8080 broken:1",
        "stop rag-worker-local",
        f"start {NEW}",
        f"rm -f {NEW}",
        "start rag-worker-local",
    ]
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        'error: cannot start broken:1 as rag-worker-local: exec: "uvicorn": executable file not '
        "found in $PATH; nothing changed: rag-worker-local is as it was"
    )


def test_a_missing_image_leaves_nothing_and_says_so_in_one_line(fp, local, capsys):
    fp.allow_unregistered(False)
    local(old=None)
    fp.register(
        [fp.program(DOCKER), "create", "--name", NEW, "-p", "8080:8080", "nope:1"],
        returncode=125,
        stderr="Unable to find image 'nope:1' locally\nError response "
        "from daemon: pull access denied for nope\n",
    )
    fp.register([fp.program(DOCKER), "rm", "-f", NEW])
    assert cli.main(["run", "nope:1"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: cannot start nope:1 as rag-worker-local: Error response from daemon: pull access "
        "denied for nope; nothing changed: no container was left"
    )


def test_a_signal_midway_rolls_back(fp, local, monkeypatch):
    local(old=("true", 8080))
    fp.register([fp.program(DOCKER), "create", "--name", NEW, "-p", "8080:8080", "rag-worker:dev"])
    fp.register([fp.program(DOCKER), "stop", "rag-worker-local"])
    fp.register(
        [fp.program(DOCKER), "start", NEW],  # SIGTERM arrives while docker start runs
        callback=lambda process: os.kill(os.getpid(), signal.SIGTERM),
    )
    fp.register([fp.program(DOCKER), "rm", "-f", NEW])
    fp.register([fp.program(DOCKER), "start", "rag-worker-local"])
    assert cli.main(["run"]) == 143
    assert calls(fp)[-2:] == [f"rm -f {NEW}", "start rag-worker-local"]


def test_run_local_dry_run_prints_every_step(fp, local, capsys):
    assert cli.main(["run", "--dry-run", "--port", "9000"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "docker container inspect --format '{{.State.Running}} {{json .HostConfig.PortBindings}}' "
        "rag-worker-local",
        f"docker create --name {NEW} -p 9000:8080 rag-worker:dev",
        f"docker start {NEW}",
        "docker rm -f rag-worker-local",
        f"docker rename {NEW} rag-worker-local",
    ]
    assert "only when it publishes port 9000 itself" in err
    assert len(fp.calls) == 0


def test_logs_follow(fp):
    fp.register([fp.program(DOCKER), "logs", "--tail", "200", "--follow", "rag-worker-local"])
    assert cli.main(["logs", "-f"]) == 0


FOLLOW = [DOCKER, "logs", "--tail", "200", "--follow", "rag-worker-local"]


def test_ctrl_c_ends_logs_follow_with_exit_0_and_no_error(fp, capsys):
    """Ctrl-C is how following ends: the SIGINT reaches ragbuild (and docker, 130)."""
    fp.register(
        [fp.program(DOCKER), *FOLLOW[1:]],
        callback=lambda process: os.kill(os.getpid(), signal.SIGINT),
    )
    assert cli.main(["logs", "-f"]) == 0
    fp.register([fp.program(DOCKER), *FOLLOW[1:]], returncode=130)  # docker's own exit on it
    assert cli.main(["logs", "-f"]) == 0
    assert "error" not in capsys.readouterr().err


def test_sigterm_still_stops_logs_follow_with_143_and_ctrl_c_without_follow_is_130(fp, capsys):
    fp.register(
        [fp.program(DOCKER), *FOLLOW[1:]],
        callback=lambda process: os.kill(os.getpid(), signal.SIGTERM),
    )
    assert cli.main(["logs", "-f"]) == 143
    fp.register(
        [fp.program(DOCKER), "logs", "--tail", "200", "rag-worker-local"],
        callback=lambda process: os.kill(os.getpid(), signal.SIGINT),
    )
    assert cli.main(["logs"]) == 130
    fp.register(
        [fp.program(DOCKER), *FOLLOW[1:]],
        returncode=1,
        stderr="Error: No such container: rag-worker-local\n",
    )
    assert cli.main(["logs", "-f"]) == 1


@pytest.mark.parametrize(
    "image_ref",
    [
        "rag-worker:dev",
        "localhost:5000/team/rag:1.0.0",
        "[::1]:5000/rag",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/rag-worker:v1.2.3",
        "rag-worker@sha256:" + "a" * 64,
        "sha256:" + "b" * 64,
        "0123abcd",
    ],
)
def test_run_takes_any_image_reference(fp, local, image_ref):
    local(old=None)
    fp.register([fp.program(DOCKER), "create", "--name", NEW, "-p", "8080:8080", image_ref])
    fp.register([fp.program(DOCKER), "start", NEW])
    fp.register([fp.program(DOCKER), "rename", NEW, "rag-worker-local"])
    assert cli.main(["run", image_ref]) == 0


# --- bad input: one line, exit 2, no docker call -----------------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["run", "--port", "eighty"],
            "error: argument --port: 'eighty' is not a port number (1-65535)",
        ),
        (["run", "--port", "0"], "error: argument --port: '0' is not a port number (1-65535)"),
        (
            ["run", "--port", "65536"],
            "error: argument --port: '65536' is not a port number (1-65535)",
        ),
        (["run", "--port=-1"], "error: argument --port: '-1' is not a port number (1-65535)"),
        (
            ["smoke", "rag-worker:dev", "--timeout", "nan"],
            "error: argument --timeout: 'nan' is not a number of seconds (more than 0)",
        ),
        (
            ["smoke", "rag-worker:dev", "--timeout", "inf"],
            "error: argument --timeout: 'inf' is not a number of seconds (more than 0)",
        ),
        (
            ["smoke", "rag-worker:dev", "--timeout", "1e999"],
            "error: argument --timeout: '1e999' is not a number of seconds (more than 0)",
        ),
        (
            ["smoke", "rag-worker:dev", "--timeout", "0"],
            "error: argument --timeout: '0' is not a number of seconds (more than 0)",
        ),
        (
            ["smoke", "rag-worker:dev", "--timeout=-5"],
            "error: argument --timeout: '-5' is not a number of seconds (more than 0)",
        ),
        (
            ["logs", "--tail", "-3"],
            "error: argument --tail: '-3' is not a number of lines (0 or more)",
        ),
        (["run", ""], "error: IMAGE is empty; give an image such as rag-worker:dev"),
        (["smoke", ""], "error: IMAGE is empty; give an image such as rag-worker:dev"),
        (
            ["run", "--dry-run", "--", "--privileged"],
            "error: IMAGE '--privileged' starts with '-': docker would read it as an option; give an "
            "image such as rag-worker:dev",
        ),
        (
            ["smoke", "--", "-v/:/host"],
            "error: IMAGE '-v/:/host' starts with '-': docker would read it as an option; give an "
            "image such as rag-worker:dev",
        ),
        (
            ["run", "Rag-Worker:dev"],
            "error: IMAGE 'Rag-Worker:dev' is not an image reference: "
            "[host[:port]/]lowercase/path[:tag][@sha256:digest], e.g. rag-worker:dev",
        ),
        (["smoke", "rag worker"], "error: IMAGE 'rag worker' is not an image reference"),
        (["smoke", "rag-worker:"], "error: IMAGE 'rag-worker:' is not an image reference"),
        (
            ["run", "rag-worker@sha256:abc"],
            "error: IMAGE 'rag-worker@sha256:abc' is not an image reference",
        ),
    ],
)
def test_bad_subcommand_input_is_one_line_and_exit_2(fp, capsys, argv, message):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err
    assert len(fp.calls) == 0


# --- the Makefile ------------------------------------------------------------------------------

MAKE_ENV = {
    k: v
    for k, v in os.environ.items()
    if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "ECR_URI", "ECR_REGISTRY_URI", "ARGS")
}


def make_n(*args, env=None):
    if not shutil.which("make"):
        pytest.fail("make is not installed (the Makefile is the project's entry point)")
    done = subprocess.run(
        ["make", "-n", "-C", str(REPO), "-o", ".venv/.installed", *args],
        capture_output=True,
        text=True,
        env={**MAKE_ENV, **(env or {})},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_push_dev_defaults_ecr_uri_to_ecr_registry_uri():
    out = make_n("push-dev", env={"ECR_REGISTRY_URI": "r.example.com/rag"})
    assert '--registry "r.example.com/rag" --push' in out


def test_ecr_uri_on_the_command_line_wins():
    out = make_n(
        "push-prod",
        "ECR_URI=c.example.com/rag",
        "VERSION=1.0.0",
        env={"ECR_REGISTRY_URI": "r.example.com/rag"},
    )
    assert '--registry "c.example.com/rag"' in out


def test_make_help_lists_every_target():
    targets = set(re.findall(r"(?m)^([a-zA-Z0-9_-]+):(?!=)", (REPO / "Makefile").read_text()))
    done = subprocess.run(
        ["make", "-s", "-C", str(REPO), "help"], capture_output=True, text=True, env=MAKE_ENV
    )
    listed = {line.split()[0] for line in done.stdout.splitlines() if line.strip()}
    assert "push-dev" in listed and listed == targets


def test_a_failed_rename_after_the_swap_keeps_the_new_container_and_says_where(fp, local, capsys):
    fp.allow_unregistered(False)
    local(old=("true", 19090))
    fp.register([fp.program(DOCKER), "create", "--name", NEW, "-p", "8080:8080", "rag-worker:dev"])
    fp.register([fp.program(DOCKER), "start", NEW])
    fp.register([fp.program(DOCKER), "rm", "-f", "rag-worker-local"])
    fp.register(
        [fp.program(DOCKER), "rename", NEW, "rag-worker-local"],
        returncode=1,
        stderr="Error response from daemon: Conflict. The container name is in use\n",
    )
    assert cli.main(["run"]) == 1
    assert calls(fp)[-1] == f"rename {NEW} rag-worker-local"  # the running new one is kept
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: rag-worker:dev is running as {NEW}, and renaming it to rag-worker-local failed: "
        "Error response from daemon: Conflict. The container name is in use; rename it with "
        f"docker rename {NEW} rag-worker-local"
    )


# --- shell -------------------------------------------------------------------------------------


def test_shell_dry_run_prints_the_command_and_starts_nothing(fp, capsys):
    from ragbuild.cli import main

    fp.allow_unregistered(False)
    assert main(["shell", "rag-worker:prod", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out == (
        "docker run --rm -i --entrypoint /bin/sh rag-worker:prod -c 'if command -v bash "
        ">/dev/null 2>&1; then exec bash; else exec /bin/sh; fi'\n"
    )


def test_shell_defaults_to_the_dev_image_of_setup_cfg(fp, capsys, tmp_path, monkeypatch):
    from ragbuild.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "setup.cfg").write_text("[ragbuild]\nimage-name = search-worker\n")
    assert main(["shell", "--dry-run"]) == 0
    assert " search-worker:dev -c " in capsys.readouterr().out


@pytest.mark.parametrize("tty, flag", [(True, "-it"), (False, "-i")])
def test_shell_asks_for_a_terminal_only_on_one_and_returns_the_shells_status(fp, tty, flag):
    from ragbuild.run.runner import Runner

    fp.allow_unregistered(False)
    recorder = fp.register(
        [
            fp.program("docker"),
            "run",
            "--rm",
            flag,
            "--entrypoint",
            "/bin/sh",
            "rag-worker:dev",
            "-c",
            local_commands.SHELL_SCRIPT,
        ],
        returncode=3,
    )
    assert local_commands.shell(Runner(log=io.StringIO()), "rag-worker:dev", tty=tty) == 3
    call = recorder.calls[0]
    assert call.kwargs["stdin"] is None  # the shell reads our stdin (piped commands, a terminal)


def test_a_shell_killed_by_a_signal_reports_128_plus_it(fp):
    from ragbuild.run.runner import Runner

    fp.register([fp.program("docker"), fp.any()], returncode=-9)
    assert local_commands.shell(Runner(log=io.StringIO()), "rag-worker:dev", tty=False) == 137


@pytest.mark.parametrize("image", ["Rag-Worker", "", "a b"])
def test_shell_refuses_a_bad_image_in_one_line(fp, capsys, image):
    from ragbuild.cli import main

    fp.allow_unregistered(False)
    assert main(["shell", image]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: IMAGE")


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


def test_run_local_of_an_image_that_dies_at_once_says_so_and_keeps_the_old(fp, local, capsys):
    """docker start succeeds, the process cannot exec (a CRLF #! line): not 'is running'."""
    local(
        old=("true", 19090),
        new_state=json.dumps({"Status": "exited", "Running": False, "ExitCode": 1}),
    )
    fp.register(
        [fp.program(DOCKER), "create", "--name", NEW, "-p", "8080:8080", "rag-worker:dev"],
        stdout="abc\n",
    )
    fp.register([fp.program(DOCKER), "start", NEW])
    fp.register(
        [fp.program(DOCKER), "inspect", "--format", "{{json .State}}", NEW],
        stdout=json.dumps({"Status": "exited", "Running": False, "ExitCode": 1}),
    )
    fp.register(
        [fp.program(DOCKER), "logs", "--tail", "30", NEW],
        stderr="exec /usr/local/bin/serve: no such file or directory\n",
    )
    fp.register([fp.program(DOCKER), "cp", f"{NEW}:/usr/local/bin/serve", "-"], returncode=1)
    fp.register([fp.program(DOCKER), "rm", "-f", NEW])
    assert cli.main(["run"]) == 1
    err = capsys.readouterr().err
    assert "is running as" not in err
    assert (
        "error: rag-worker:dev stopped at once (exited (exit 1)); /usr/local/bin/serve is not "
        "in the image, or its #! line"
    ) in err
    assert "nothing changed: rag-worker-local is as it was" in err
    assert "exec /usr/local/bin/serve: no such file or directory" in err
    assert "rm -f rag-worker-local" not in calls(fp)  # the old one was never removed
    assert calls(fp)[-1] == f"rm -f {NEW}"
