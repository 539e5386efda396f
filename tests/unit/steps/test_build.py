"""steps/build.py: the build step on its own: a build that pushes (its answer file, the digest
it wrote, going again with docker push), and a failed build's cause in one line."""

from __future__ import annotations

from fakes import FAKE_IMAGE_ID
from ragbuild.plan import PushPlan, build_command
from registry_fakes import DIGEST, PLAIN, build_plan, pushing_plan, register_local_image

import dataclasses
import json
import pytest
from ragbuild import steps
from ragbuild.docker_config import DockerTarget
from ragbuild.errors import DockerUnavailable
from ragbuild.run.runner import Runner
import os


# --- a build that pushes (plan.build_pushes) ---------------------------------------------------


def _is_pushing_build(argv):
    return argv[1:4] == ["buildx", "build", "--builder"] and "--push" in argv


def test_a_build_that_pushes_records_the_digest_it_wrote_for_every_ref(fp, tmp_path):
    plan, pushing = pushing_plan()
    digest = "sha256:" + "12" * 32

    def build(process):
        argv = list(process.args)
        assert _is_pushing_build(argv) and argv[argv.index("--builder") + 1] == "default"
        path = argv[argv.index("--metadata-file") + 1]
        with open(path, "w") as metadata:
            json.dump(
                {"containerimage.digest": digest, "containerimage.config.digest": "x"}, metadata
            )

    fp.register([fp.program("docker"), "buildx", "build", fp.any()], callback=build)
    built = steps.build.build(Runner(), plan, pushing)
    assert built.pushed is True
    assert built.digests == {ref: digest for ref in plan.refs}


@pytest.mark.parametrize("written", ["", "{}", '{"containerimage.digest": "sha256:short"}', "[1]"])
def test_a_build_that_pushes_without_a_digest_cannot_be_verified(fp, tmp_path, written):
    from ragbuild.errors import PushFailed

    plan, pushing = pushing_plan()

    def build(process):
        argv = list(process.args)
        if written:
            with open(argv[argv.index("--metadata-file") + 1], "w") as metadata:
                metadata.write(written)

    fp.register([fp.program("docker"), "buildx", "build", fp.any()], callback=build)
    with pytest.raises(PushFailed, match="named no manifest digest") as failed:
        steps.build.build(Runner(), plan, pushing)
    # the build did push: every ref is recorded as pushed, digest unknown (the metadata's
    # pushed_refs), and the message says so, as a docker push that printed no digest does
    assert failed.value.pushed == {ref: None for ref in plan.refs}
    assert f"pushed: {plan.refs[0]} (digest unknown)" in str(failed.value)


def test_a_push_that_fails_after_this_runs_build_goes_again_with_docker_push(fp, tmp_path, capsys):
    """buildx names the image in the daemon before it pushes: every ref on one image with this
    run's created label means the build worked and the push failed. No second build."""
    plan, pushing = pushing_plan()
    fp.register([fp.program("docker"), "buildx", "build", fp.any()], returncode=1)
    register_local_image(fp, plan, plan.created)
    built = steps.build.build(Runner(), plan, pushing)
    assert built.pushed is False
    assert built.digests == {}
    err = capsys.readouterr().err
    assert "after it built and tagged the image" in err and "the push failed" in err
    assert not [c for c in fp.calls if list(c)[1] == "build"]  # never built twice


@pytest.mark.parametrize(
    "found",
    [
        "missing",  # no image with the primary tag
        "older",  # an earlier build's image: another created label
        "fewer tags",  # not every ref names it
    ],
)
def test_a_failed_build_that_pushes_is_the_builds_failure_without_a_second_build(
    fp, tmp_path, capsys, found
):
    from ragbuild.errors import CommandFailed

    plan, pushing = pushing_plan()
    fp.register([fp.program("docker"), "buildx", "build", fp.any()], returncode=1)
    if found == "missing":
        fp.register(
            [fp.program("docker"), "image", "inspect", "--format", fp.any(), plan.primary],
            returncode=1,
            stderr="Error: No such image\n",
        )
    else:
        register_local_image(
            fp,
            plan,
            "2020-01-01T00:00:00+00:00" if found == "older" else plan.created,
            refs=plan.refs[:1] if found == "fewer tags" else None,
        )
    fp.register([fp.program("docker"), "version", "--format", fp.any()], stdout="28.2.2\n")
    fp.register([fp.program("docker"), "buildx", "version"], stdout="v0.13.1\n")
    with pytest.raises(CommandFailed, match=r"the build failed: no image of this run") as err:
        steps.build.build(Runner(), plan, pushing)
    assert err.value.returncode == 1
    assert not [c for c in fp.calls if list(c)[1] == "build"]
    assert "docker push" not in capsys.readouterr().err


def test_with_source_date_epoch_a_failed_build_that_pushes_builds_again_to_tell(
    fp, tmp_path, capsys
):
    """SOURCE_DATE_EPOCH gives every build one created label: an earlier build's image would
    pass for this run's, so the build runs again without the push instead."""
    from ragbuild.errors import CommandFailed

    plan, pushing = pushing_plan()
    fp.register([fp.program("docker"), "buildx", "build", fp.any()], returncode=1)
    fp.register([fp.program("docker"), "build", fp.any()])  # the same build, cached, no push
    assert steps.build.build(Runner(), plan, pushing, unique_created=False).pushed is False
    err = capsys.readouterr().err
    assert "building again without the push" in err and "the push failed" in err
    plain = [c for c in fp.calls if list(c)[1] == "build"]
    assert len(plain) == 1 and "--push" not in list(plain[0])
    fp.register([fp.program("docker"), "buildx", "build", fp.any()], returncode=1)
    fp.register([fp.program("docker"), "build", fp.any()], returncode=1)
    fp.register([fp.program("docker"), "version", "--format", fp.any()], stdout="28.2.2\n")
    fp.register([fp.program("docker"), "buildx", "version"], stdout="v0.13.1\n")
    with pytest.raises(CommandFailed, match=r"docker build failed \(exit 1\)"):
        steps.build.build(Runner(), plan, pushing, unique_created=False)


def test_a_dry_run_prints_the_build_that_pushes_as_the_real_run_starts_it(fp, tmp_path):
    """docs/dry-run.md: the real run's ``+`` lines are the dry run's output. The build's
    --metadata-file was a fresh temporary directory each run, deleted when the build ended: the
    dry run printed a path no real run uses, and pasted it made a build that pushed and then
    failed writing to a directory that is gone. A dry run makes no directory either."""
    import io
    from ragbuild.run.dry import DryRunner

    plan, pushing = pushing_plan()
    out = io.StringIO()
    steps.build.build(DryRunner(out=out, log=io.StringIO()), plan, pushing)
    assert not os.path.exists(
        os.path.dirname(steps.build.answer_path(plan))
    )  # not even the directory
    printed = [line for line in out.getvalue().splitlines() if "buildx build" in line]

    def build(process):
        with open(list(process.args)[list(process.args).index("--metadata-file") + 1], "w") as f:
            json.dump({"containerimage.digest": "sha256:" + "12" * 32}, f)

    fp.register([fp.program("docker"), "buildx", "build", fp.any()], callback=build)
    log = io.StringIO()
    steps.build.build(Runner(log=log), plan, pushing)
    executed = [line[2:] for line in log.getvalue().splitlines() if line.startswith("+ ")]
    assert len(printed) == 1 and executed == printed
    assert not os.path.exists(steps.build.answer_path(plan))  # removed once read


def test_a_build_that_pushes_never_takes_an_earlier_runs_answer(fp, tmp_path):
    """The answer file of a run with the same plan (SOURCE_DATE_EPOCH) is removed before the
    build: a build that writes none is one that named no digest, not the earlier digest."""
    from ragbuild.errors import PushFailed

    plan, pushing = pushing_plan()
    os.mkdir(os.path.dirname(steps.build.answer_path(plan)), 0o700)  # as an earlier run left it
    with open(steps.build.answer_path(plan), "w") as stale:
        json.dump({"containerimage.digest": "sha256:" + "34" * 32}, stale)
    fp.register([fp.program("docker"), "buildx", "build", fp.any()])
    with pytest.raises(PushFailed, match="named no manifest digest") as failed:
        steps.build.build(Runner(), plan, pushing)
    assert set(failed.value.pushed.values()) == {None}


def test_builds_of_other_plans_in_the_same_second_get_other_answer_files(tmp_path):
    """``--env dev`` and ``--env staging`` of one commit, started together (a CI matrix), must not
    read each other's digest."""
    from registry_fakes import build_plan

    dev, prod = (
        build_plan(registry="localhost:5000/rag-worker", env="dev"),
        build_plan(registry="localhost:5000/rag-worker", env="staging"),
    )
    assert dev.created == prod.created and dev.base == prod.base
    assert steps.build.answer_path(dev) != steps.build.answer_path(prod)
    assert steps.build.answer_path(dev) == steps.build.answer_path(dataclasses.replace(dev))


# --- a failed build's cause, from what docker said (build_failure) -----------------------------
# The faked docker's stderr is a real failed build's output (build_failures/, which
# test_build_failure.py describes); the runner reads it as it reads the real one's pipe.


def _said(name):
    from pathlib import Path

    return (Path(__file__).parents[1] / "build_failures" / f"{name}.txt").read_bytes().decode()


def _runner():
    """Logs to a pipe-like stream: never a terminal, so docker's stderr is read through a pipe
    (a fake's as a real one's) even under ``pytest -s`` on a terminal (test_runner.py has the
    pty)."""
    import io

    return Runner(log=io.StringIO())


def _local_plan(**options):
    from registry_fakes import build_plan

    return dataclasses.replace(
        build_plan(registry=None, push=False, **options), docker=DockerTarget()
    )


def _register_diagnosis(fp, client="20.10.24+dfsg1"):
    fp.register([fp.program("docker"), "version", "--format", fp.any()], stdout=f"{client}\n")
    fp.register([fp.program("docker"), "buildx", "version"], stdout="v0.13.1\n")


@pytest.mark.parametrize("returncode", [1, 17])
def test_a_failed_build_says_its_cause_in_one_line_after_its_output(fp, returncode):
    from ragbuild.build_failure import classify
    from ragbuild.errors import CommandFailed

    said = _said("tls-pip.legacy")
    fp.register([fp.program("docker"), "build", fp.any()], returncode=returncode, stderr=said)
    _register_diagnosis(fp)
    plan = _local_plan()
    runner = _runner()
    with pytest.raises(CommandFailed) as err:
        steps.build.build(runner, plan, None)
    expected = classify(said, not_passed=plan.host.ca_note).message
    assert str(err.value) == f"docker build failed (exit {returncode}): {expected}"
    assert err.value.returncode == returncode  # docker's
    assert said in runner._log.getvalue()  # streamed to the user as it came


def test_a_failed_build_of_another_cause_points_at_its_output(fp):
    from ragbuild.errors import CommandFailed

    fp.register(
        [fp.program("docker"), "build", fp.any()],
        returncode=1,
        stderr=_said("other-after-tls.modern"),
    )
    _register_diagnosis(fp)
    with pytest.raises(CommandFailed) as err:
        steps.build.build(_runner(), _local_plan(pull=True), None)
    assert str(err.value).startswith(
        "docker build failed (exit 1); its output is above; with "
        "--pull, docker must reach the registry"
    )


def test_with_pull_an_unreachable_base_image_says_to_drop_it(fp):
    from ragbuild.errors import CommandFailed

    fp.register(
        [fp.program("docker"), "build", fp.any()], returncode=1, stderr=_said("base-pull.legacy")
    )
    _register_diagnosis(fp)
    with pytest.raises(CommandFailed) as err:
        steps.build.build(_runner(), _local_plan(pull=True), None)
    said = str(err.value)
    assert said.startswith(
        "docker build failed (exit 1): the engine cannot get the base image "
        "python:3.11-slim (its registry's name does not resolve"
    )
    assert "drop --pull to build from its copy" in said
    assert said.count("--pull, docker must reach") == 0  # one fix, not two


def test_an_unreachable_daemon_is_diagnosed_before_the_output_is_read(fp):
    fp.register(
        [fp.program("docker"), "build", fp.any()], returncode=1, stderr=_said("tls-uv.modern")
    )
    fp.register(
        [fp.program("docker"), "version", "--format", fp.any()],
        returncode=1,
        stderr="Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is "
        "the docker daemon running?\n",
    )
    with pytest.raises(DockerUnavailable, match="cannot reach the Docker daemon"):
        steps.build.build(_runner(), _local_plan(), None)


def test_a_failed_build_that_pushes_says_its_cause_and_that_nothing_was_pushed(fp, tmp_path):
    from ragbuild.build_failure import classify
    from ragbuild.errors import CommandFailed

    plan, pushing = pushing_plan()
    said = _said("tls-uv.modern")
    fp.register([fp.program("docker"), "buildx", "build", fp.any()], returncode=1, stderr=said)
    fp.register(
        [fp.program("docker"), "image", "inspect", "--format", fp.any(), plan.primary],
        returncode=1,
        stderr="Error: No such image\n",
    )
    _register_diagnosis(fp, "28.2.2")
    with pytest.raises(CommandFailed) as err:
        steps.build.build(_runner(), plan, pushing)
    expected = classify(said, not_passed=plan.host.ca_note).message
    assert str(err.value) == f"docker buildx build failed (exit 1): {expected} (nothing was pushed)"
    assert err.value.returncode == 1


def test_the_cause_says_whether_the_build_had_the_host_ca():
    from ragbuild.errors import CommandFailed
    from ragbuild.run.command import Command

    from ragbuild.pip_config import HostNetwork

    failure = CommandFailed("x", returncode=1, output=_said("tls-uv.legacy"))
    plan = dataclasses.replace(_local_plan(), host=HostNetwork(ca_note="--no-host-ca"))
    with_ca = Command(("docker", "build", "--secret", "id=ragbuild-host-ca,src=/corp/ca.pem", "."))
    without = Command(("docker", "build", "--secret", "id=npmrc,src=/home/me/.npmrc", "."))
    assert "passed the host's CA bundle /corp/ca.pem" in steps.build.explain(plan, with_ca, failure)
    assert (
        "passed no host CA bundle to the build (--no-host-ca): drop --no-host-ca"
        in steps.build.explain(plan, without, failure)
    )


@pytest.mark.parametrize(
    "argv, found",
    [
        (["--secret", "id=ragbuild-host-ca,src=/a/ca.pem"], "/a/ca.pem"),
        (["--secret=id=ragbuild-host-ca,source=/b/ca.pem"], "/b/ca.pem"),
        (["--secret", "src=/c/ca.pem,id=ragbuild-host-ca,type=file"], "/c/ca.pem"),
        (["--secret", "id=other,src=/a/ca.pem", "-t", "id=ragbuild-host-ca"], None),
        (["--build-arg", "X=--secret", "id=ragbuild-host-ca,src=/d"], None),
        ([], None),
    ],
)
def test_passed_secret(argv, found):
    assert steps.build.passed_secret(["docker", "build", *argv, "."], "ragbuild-host-ca") == found


def test_a_build_that_pushes_records_its_id(fp, buildx_plugin):
    plan = dataclasses.replace(build_plan(f"{PLAIN}/rag-worker"), docker=DockerTarget())
    pushing = PushPlan(plan.refs, by_build=True)

    def wrote(process):
        args = list(process.args)
        with open(args[args.index("--metadata-file") + 1], "w") as handle:
            json.dump({"containerimage.digest": DIGEST}, handle)

    fp.register([fp.program("docker"), "buildx", "build", fp.any()], callback=wrote)
    built = steps.build.build(Runner(), plan, pushing)
    digests = {ref: DIGEST for ref in plan.refs}
    assert built == steps.build.Built(True, FAKE_IMAGE_ID, DIGEST, digests)
    argv = build_command(plan, pushing, metadata_file="m", iid_file="i").argv
    assert argv[argv.index("--iidfile") + 1] == "i"
