"""Issue 23 against the real tools: the ECR calls of a push address the registry's account (the
``registryId`` the real aws CLI sends, recorded on its way to moto: ``aws_recorder``), a denied
describe is "cannot check", a smoke-test container that dies at once is diagnosed from what it
said, ``clean`` removes this project's images only, and messages say what happened."""

from __future__ import annotations

import re

import pytest

from .aws_recorder import Recorder
from .support import planned_refs, tags_of
from .test_push import (  # noqa: F401 (ecr_host, ecr_repository: fixtures)
    assert_registry_holds,
    config_json,
    ecr_host,
    ecr_repository,
    pinned_line,
    tiny_args,
)

pytestmark = pytest.mark.e2e

ACCOUNT = "123456789012"  # the account in E2E_ECR_HOST
CALLER = "111122223333"  # CI's own account: not the registry's


def push_lines(result) -> list:
    return [line for line in result.stderr.splitlines() if line.startswith("+ docker push ")]


def test_a_cross_account_push_addresses_the_registrys_account(
    project, images, ecr_repository, ecr_host, tiny_context, docker_config, e2e_env, ecr_registry
):
    name = ecr_repository("xacct")
    uri = images.track_repository(f"{ecr_host}/{name}")
    dockerfile = tiny_context(f'LABEL org.ragbuild.e2e.case="{name}"')
    with Recorder(e2e_env["AWS_ENDPOINT_URL"], caller_account=CALLER) as aws:
        result = project.script(
            *tiny_args(dockerfile, "--env", "dev", "--registry", uri, "--push"),
            env={"DOCKER_CONFIG": docker_config, "AWS_ENDPOINT_URL": aws.url},
        ).assert_ok()
    images.track_result(result)
    about = aws.about_a_repository()
    assert about, aws.requests
    # every call about the repository, as the real aws CLI sent it, names the registry's account
    assert [(op, body.get("registryId")) for op, body in about] == [
        (op, ACCOUNT) for op, _ in about
    ], aws.requests
    refs = planned_refs(result)
    assert_registry_holds(ecr_registry, name, tags_of(refs), pinned_line(result))
    # issue 23, case 4: after the login, the message names the login docker stored
    assert "none: no credHelpers" not in result.text, result.describe()
    answered = [
        line for line in result.stderr.splitlines() if "takes the push's credentials" in line
    ]
    assert len(answered) == 1 and f"auths['{ecr_host}']" in answered[0], result.describe()
    assert ecr_host in config_json(docker_config).get("auths", {})


def test_an_immutable_cross_account_repository_lists_its_tags_in_the_registrys_account(
    project, images, ecr_repository, ecr_host, tiny_context, docker_config, e2e_env, ecr_registry
):
    name = ecr_repository("ximmutable", "--image-tag-mutability", "IMMUTABLE")
    uri = images.track_repository(f"{ecr_host}/{name}")
    dockerfile = tiny_context(f'LABEL org.ragbuild.e2e.case="{name}"')
    with Recorder(e2e_env["AWS_ENDPOINT_URL"], caller_account=CALLER) as aws:
        result = project.script(
            *tiny_args(
                dockerfile, "--env", "dev", "--registry", uri, "--push", "--skip-existing-immutable"
            ),
            env={"DOCKER_CONFIG": docker_config, "AWS_ENDPOINT_URL": aws.url},
        ).assert_ok()
    images.track_result(result)
    about = aws.about_a_repository()
    assert [op for op, _ in about] == ["DescribeRepositories", "ListImages"], aws.requests
    assert {body.get("registryId") for _, body in about} == {ACCOUNT}, aws.requests
    assert set(ecr_registry.tags(name)) == {f"dev-{result.timestamp()}", f"git-{project.sha}"}


def test_a_repository_missing_in_the_registrys_account_is_created_there(
    project, docker, unique, ecr_host, tiny_context, docker_config, e2e_env, ecr_registry
):
    name = unique("xmissing")  # never created in moto (the registry's account)
    dockerfile = tiny_context(f'LABEL org.ragbuild.e2e.case="{name}"')
    with Recorder(e2e_env["AWS_ENDPOINT_URL"], caller_account=CALLER) as aws:
        result = project.script(
            *tiny_args(dockerfile, "--env", "dev", "--registry", f"{ecr_host}/{name}", "--push"),
            env={"DOCKER_CONFIG": docker_config, "AWS_ENDPOINT_URL": aws.url},
        )
    assert result.returncode == 1, result.describe()
    errors = result.error_lines()
    assert len(errors) == 1, result.describe()
    assert f"does not exist in account {ACCOUNT}" in errors[0]
    assert errors[0].endswith(
        f"aws ecr create-repository --repository-name {name} --region "
        f"us-east-1 --registry-id {ACCOUNT}"
    ), errors[0]
    assert [body.get("registryId") for _, body in aws.about_a_repository()] == [ACCOUNT]
    assert ecr_registry.tags(name) == []


@pytest.mark.every_leg
def test_denied_describe_is_cannot_check_and_the_existing_tags_go_first(
    project, images, ecr_repository, ecr_host, tiny_context, docker_config, e2e_env, ecr_registry
):
    name = ecr_repository("denied")
    uri = images.track_repository(f"{ecr_host}/{name}")
    dockerfile = tiny_context(f'LABEL org.ragbuild.e2e.case="{name}"')
    env = {"DOCKER_CONFIG": docker_config}
    flags = tiny_args(dockerfile, "--env", "dev", "--registry", uri, "--push")
    with Recorder(e2e_env["AWS_ENDPOINT_URL"], deny=("DescribeRepositories",)) as aws:
        first = project.script(*flags, env={**env, "AWS_ENDPOINT_URL": aws.url}).assert_ok()
        images.track_result(first)
        (dockerfile.parent / "changed").write_text("a new image\n")
        dockerfile.write_text(dockerfile.read_text() + "COPY changed /changed\n")
        second = project.script(*flags, env={**env, "AWS_ENDPOINT_URL": aws.url}).assert_ok()
        images.track_result(second)
    for result in (first, second):
        warned = [line for line in result.stderr.splitlines() if "cannot check" in line]
        assert len(warned) == 1 and warned[0].startswith(
            f"warning: cannot check ECR repository {name} in account {ACCOUNT}"
        ), result.describe()
        assert not result.error_lines(), result.describe()
    ts = second.timestamp()
    # the tags the registry already had (dev, git-<sha>, latest: the same commit) are pushed
    # first, one docker push each, the new one last
    pushed = [line.split()[-1].rsplit(":", 1)[1] for line in push_lines(second)]
    assert set(pushed[:3]) == {"dev", f"git-{project.sha}", "latest"}, second.describe()
    assert pushed[3:] == [f"dev-{ts}"], second.describe()
    assert set(tags_of(planned_refs(second))) <= set(ecr_registry.tags(name))


# --- a smoke-test container that dies at once ----------------------------------------------------


@pytest.mark.every_leg
def test_a_serve_with_crlf_line_endings_is_diagnosed_from_the_container(
    project, docker, images, tiny_context, unique
):
    dockerfile = tiny_context("COPY serve /usr/local/bin/serve")
    # a Windows checkout with core.autocrlf=true
    serve = dockerfile.parent / "serve"
    serve.write_bytes(b"#!/bin/sh\r\nexec python -m http.server 8080\r\n")
    serve.chmod(0o755)  # COPY keeps the mode
    tag = f"{unique('crlf')}:t"
    built = docker("build", "--quiet", "--tag", tag, dockerfile.parent).assert_ok()
    images.track(built.stdout.strip())

    result = project.script("smoke", tag)
    assert result.returncode == 1, result.describe()
    errors = result.error_lines()
    assert len(errors) == 1, result.describe()
    assert not re.search(r"docker port \S+ 8080/tcp` failed", result.text), result.describe()
    assert errors[0].startswith(
        "error: SageMaker contract: GET /ping answers 200 [ready]: the "
        "container exited (exit 1) before /ping answered 200 "
        f"({tag})"
    ), errors[0]
    assert "/usr/local/bin/serve has CRLF line endings" in errors[0], errors[0]
    assert "No public port" not in result.text, result.describe()
    # the container's last log lines, as it said them
    assert "exec /usr/local/bin/serve: no such file or directory" in result.stderr, (
        result.describe()
    )
    # and the container is gone
    assert docker.containers(f"ancestor={tag}") == []


def test_run_local_of_an_image_that_dies_at_once_says_so(
    project, docker, images, tiny_context, unique
):
    from .support import LOCAL_CONTAINER, free_port

    dockerfile = tiny_context("COPY serve /usr/local/bin/serve", 'CMD ["serve"]')
    serve = dockerfile.parent / "serve"
    serve.write_bytes(b"#!/bin/sh\r\nexec python -m http.server 8080\r\n")
    serve.chmod(0o755)
    tag = f"{unique('crlfrun')}:t"
    built = docker("build", "--quiet", "--tag", tag, dockerfile.parent).assert_ok()
    images.track(built.stdout.strip())
    docker.remove_container(LOCAL_CONTAINER)
    try:
        result = project.script("run", tag, "--port", str(free_port()))
        assert result.returncode == 1, result.describe()
        assert "is running as" not in result.text, result.describe()
        errors = result.error_lines()
        assert len(errors) == 1 and errors[0].startswith(
            f"error: {tag} stopped at once (exited (exit "
        ), result.describe()
        assert "/usr/local/bin/serve has CRLF line endings" in errors[0], errors[0]
        assert "nothing changed: no container was left" in errors[0], errors[0]
        assert "exec /usr/local/bin/serve: no such file or directory" in result.stderr
        assert docker.containers(f"ancestor={tag}") == []
    finally:
        docker.remove_container(LOCAL_CONTAINER)


# --- clean: this project's images only -----------------------------------------------------------


@pytest.mark.every_leg
def test_clean_removes_this_projects_images_only_and_none_a_container_uses(
    new_project, docker, images, tiny_context, unique
):
    ours = images.track_repository(unique("ours"))
    theirs = images.track_repository(unique("theirs"))
    project = new_project("clean23", image_name=ours)
    other = new_project("other23", image_name=theirs)

    def build(proj, *lines, flags=()):
        dockerfile = tiny_context(*lines)
        return proj.script(
            "--env", "dev", *flags, "-f", dockerfile, "--context", dockerfile.parent
        ).assert_ok()

    busy = build(project, 'LABEL org.example.case="busy"', flags=("--tag", "busy", "--tag", "b2"))
    gone = build(project, 'LABEL org.example.case="gone"')  # takes dev, latest, ... from busy
    busy_tags = sorted(docker.inspect(busy.built_id())["RepoTags"])
    # (and dev-<timestamp> when the second build ran in another second)
    assert {f"{ours}:b2", f"{ours}:busy"} <= set(busy_tags), busy_tags
    foreign = build(other, 'LABEL org.example.case="theirs"')
    foreign_tags = sorted(docker.inspect(foreign.built_id())["RepoTags"])
    container = unique("stopped-user")
    docker("create", "--name", container, busy.built_id()).assert_ok()
    try:
        result = project.make("clean").assert_ok()
        # the other project's labelled image: untouched, and named as kept
        assert sorted(docker.inspect(foreign.built_id())["RepoTags"]) == foreign_tags
        named = re.search(
            r"^kept the images of other repositories \((.*)\): not this "
            rf"project's \({re.escape(ours)}\)",
            result.stderr,
            re.M,
        )
        assert named and theirs in named[1].split(", "), result.describe()
        # the image a (stopped) container uses keeps every tag, named with its container
        assert sorted(docker.inspect(busy.built_id())["RepoTags"]) == busy_tags
        kept = [line for line in result.stderr.splitlines() if line.startswith("kept " + ours)]
        assert len(kept) == 1 and f"container {container} (created)" in kept[0], result.describe()
        # this project's other image is deleted
        assert docker.image_id(gone.built_id()) is None

        # the prediction against docker: image rm of the busy image's tags (no --force) untags
        # all but the last, then refuses: what clean would have left, one tag of several
        said = docker("image", "rm", *busy_tags)
        assert said.returncode != 0 and "is using its referenced image" in said.stderr, (
            said.describe()
        )
        assert len(docker.inspect(busy.built_id())["RepoTags"]) == 1

        # the other project's image is cleaned when clean is told it is this one's (--all is
        # not run here: the engine is shared, and --all would reach other runs' images)
        widened = project.script("clean", "--image-name", theirs).assert_ok()
        assert docker.image_id(foreign.built_id()) is None, widened.describe()
    finally:
        docker.remove_container(container)


# --- Ctrl-C ends logs -f ----------------------------------------------------------------------------


def test_ctrl_c_on_make_logs_follow_exits_0_and_make_says_nothing(project, docker, runner):
    import signal
    import subprocess
    import time

    from .support import BASE_IMAGE, LOCAL_CONTAINER, send_signal

    docker.remove_container(LOCAL_CONTAINER)
    docker(
        "run",
        "-d",
        "--name",
        LOCAL_CONTAINER,
        BASE_IMAGE,
        "python",
        "-c",
        "import time; print('worker up', flush=True); time.sleep(300)",
    ).assert_ok()
    try:
        proc = subprocess.Popen(
            ["make", "-C", str(project.path), f"VENV={project.venv}", "logs", "ARGS=-f"],
            env=runner.environ(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )  # a terminal's foreground job
        time.sleep(3)  # following
        code, _ = send_signal(proc, signal.SIGINT, group=True)  # what Ctrl-C sends
        out, err = proc.communicate()
        out, err = out.decode(), err.decode()
        assert "worker up" in out + err, (out, err)
        # make got the Ctrl-C too and ends by it, as a Ctrl-C'd make always does (the shell
        # shows 130); what matters is that it says nothing: the recipe exited 0
        assert code in (0, -signal.SIGINT), (code, err)
        assert "error" not in err.lower() and "interrupt" not in err.lower(), err

        # the script itself: exit 0, no error:
        proc = project.popen_script("logs", "-f", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(3)
        code, _ = send_signal(proc, signal.SIGINT, group=True)
        out, err = (part.decode() for part in proc.communicate())
        assert "worker up" in out + err, (out, err)
        assert code == 0, (code, err)
        assert "error" not in err.lower(), err
    finally:
        docker.remove_container(LOCAL_CONTAINER)
