"""Issue 22, "the image pushed is the image tested": from the build on, the run follows the image
by the ID the build wrote (``--iidfile``), never by a tag looked up again; each ref is tagged
from that ID just before its push, and the registry must then serve that image."""

from __future__ import annotations

import dataclasses
import io
import json
import os

import pytest
from email.message import Message

import fakes
from fakes import FAKE_IMAGE_ID
from ragbuild import cli, push, steps, verify
from ragbuild.manifest import parse_manifest
from ragbuild.docker_config import DockerTarget
from ragbuild.errors import CommandFailed, PushFailed
from ragbuild.run.command import Command
from ragbuild.plan import PushPlan, build_command
from ragbuild.run.dry import DryRunner
from ragbuild.run.runner import Runner
from ragbuild.run.command import Result
from registry_fakes import (
    DIGEST,
    OTHER_DIGEST,
    OTHER_MANIFEST,
    PLAIN,
    FakeRegistry,
    build_plan,
    digest_of,
    prepared,
    push_and_verify,
    register_push,
    serve,
)

#: the config digest of OTHER_MANIFEST: another build's image on the classic store
OTHER_IMAGE = "sha256:" + "22" * 32


def ctx_for(plan, before=None, image_id=FAKE_IMAGE_ID):
    ctx = prepared(plan)
    return dataclasses.replace(
        ctx, image_id=image_id, push=dataclasses.replace(ctx.push, before=before or {})
    )


def calls(fp):
    return [list(call)[1:] for call in fp.calls]


# --- the registry's manifest names an image ----------------------------------------------------


def test_a_manifest_names_the_image_whose_id_is_its_config_or_itself():
    manifest = parse_manifest(OTHER_MANIFEST, Message())
    assert manifest.config == OTHER_IMAGE
    assert manifest.names_image(OTHER_IMAGE)  # classic store: the ID is the config's digest
    assert manifest.names_image(digest_of(OTHER_MANIFEST))  # containerd store: the manifest's
    assert not manifest.names_image(FAKE_IMAGE_ID) and not manifest.names_image("")


# --- the runner reads the ID file --------------------------------------------------------------


def test_the_runner_reads_the_id_file_and_removes_it(tmp_path):
    path = tmp_path / "answers" / "x.iid"
    os.mkdir(path.parent, 0o700)
    path.write_text("stale from an earlier run")  # no answer of this one
    script = f"import sys; open({str(path)!r}, 'w').write('sha256:' + 'ab' * 32 + '\\n')"
    result = Runner(log=io.StringIO()).run(Command(("python3", "-c", script), iid_file=str(path)))
    assert result.image_id == "sha256:" + "ab" * 32
    assert not path.exists()
    silent = Runner(log=io.StringIO()).run(Command(("true",), iid_file=str(path)))
    assert silent.image_id == ""  # wrote none: the stale one was removed before


def test_a_dry_run_takes_the_build_to_name_image_id(tmp_path):
    result = DryRunner(out=io.StringIO(), log=io.StringIO()).run(
        Command(("docker", "build", "."), iid_file=str(tmp_path / "x.iid"))
    )
    assert result.image_id == "IMAGE_ID"


# --- the build's ID, then everything by it -----------------------------------------------------


def test_a_build_that_writes_no_id_stops_the_run(project, strict_fp, capsys):
    strict_fp.register([strict_fp.program("docker"), "build", strict_fp.any()], iid=None)
    assert cli.main(["--env", "dev"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == (
        "error: the build succeeded but wrote no image ID to its --iidfile, so what follows "
        "cannot tell this run's image from another build's with the same tags; nothing was "
        "pushed by ragbuild"
    )
    assert fakes.docker_calls(strict_fp) == 1  # no inspect of a tag instead


def test_the_summary_and_smoke_test_follow_the_id_not_a_tag(
    project, strict_fp, capsys, monkeypatch
):
    from ragbuild import sagemaker, smoke

    monkeypatch.setattr(smoke, "container_name", lambda: "ragbuild-smoke-0")
    health = json.dumps({"status": "ok", "environment": "dev", "git_commit": fakes.SHA}).encode()
    monkeypatch.setattr(
        sagemaker,
        "http_request",
        lambda port, method, path, *rest: sagemaker.Outcome(200, 0.01, True, health),
    )
    docker = strict_fp.program("docker")
    strict_fp.register([docker, "build", strict_fp.any()])
    refs = [
        f"rag-worker:dev-{fakes.STAMP}",
        "rag-worker:dev",
        f"rag-worker:git-{fakes.SHA}",
        "rag-worker:latest",
    ]
    strict_fp.register(
        [docker, "image", "inspect", "--format", strict_fp.any(min=1, max=1), FAKE_IMAGE_ID],
        stdout=f"{FAKE_IMAGE_ID} 1 {json.dumps(refs)} {{}}\n",
    )
    strict_fp.register(
        [
            docker,
            "run",
            "-d",
            "--name",
            "ragbuild-smoke-0",
            "--tmpfs",
            "/opt/ml/model:ro",
            "-p",
            "127.0.0.1::8080",
            "--label",
            "org.ragbuild.smoke=1",
            FAKE_IMAGE_ID,
            "serve",
        ],
        stdout="ragbuild-smoke-0\n",
    )
    strict_fp.register([docker, "port", "ragbuild-smoke-0", "8080/tcp"], stdout="127.0.0.1:5\n")
    strict_fp.register([docker, "kill", "--signal", "TERM", "ragbuild-smoke-0"])
    strict_fp.register(
        [
            docker,
            "inspect",
            "--format",
            "{{.State.Running}} {{.State.ExitCode}}",
            "ragbuild-smoke-0",
        ],
        stdout="false 0\n",
    )
    strict_fp.register([docker, "rm", "-f", "ragbuild-smoke-0"])
    strict_fp.register(
        [
            docker,
            "run",
            "-d",
            "--name",
            "ragbuild-smoke-0",
            "--tmpfs",
            "/opt/ml/model:ro",
            "-p",
            "127.0.0.1::8090",
            "-p",
            "127.0.0.1::8080",
            "-e",
            "SAGEMAKER_BIND_TO_PORT=8090",
            "--label",
            "org.ragbuild.smoke=1",
            FAKE_IMAGE_ID,
            "serve",
        ],
        stdout="ragbuild-smoke-0\n",
    )
    strict_fp.register([docker, "port", "ragbuild-smoke-0", "8090/tcp"], stdout="127.0.0.1:6\n")
    strict_fp.register([docker, "port", "ragbuild-smoke-0", "8080/tcp"], stdout="127.0.0.1:7\n")
    strict_fp.register([docker, "rm", "-f", "ragbuild-smoke-0"])
    code = cli.main(["--env", "dev", "--smoke-test"])
    assert code == 0, capsys.readouterr().err


# --- the push: tagged from the ID, then the registry must serve it -----------------------------


def test_each_ref_is_tagged_from_the_id_just_before_its_push(fp, capsys):
    plan = build_plan(f"{PLAIN}/rag-worker")
    for ref in plan.refs:
        register_push(fp, ref)
        serve(ref)
    pinned = push_and_verify(ctx_for(plan), Runner())
    assert pinned == f"{PLAIN}/rag-worker@{DIGEST}"
    first, *rest = plan.refs
    assert calls(fp)[:2] == [["tag", FAKE_IMAGE_ID, first], ["push", first]]
    # the others: tagged at once, then pushed at once
    assert calls(fp)[2:] == [["tag", FAKE_IMAGE_ID, ref] for ref in rest] + [
        ["push", ref] for ref in rest
    ]


def test_another_image_under_the_first_ref_stops_before_anything_more_is_pushed(fp, capsys):
    """Case 3: another build took the tag between docker tag and docker push; the registry
    now serves it. Nothing more is pushed; the message names it and how to restore."""
    plan = build_plan(f"{PLAIN}/rag-worker")
    first, *rest = plan.refs
    register_push(fp, first, digest=OTHER_DIGEST)
    serve(first, OTHER_DIGEST)
    fp.register(
        [fp.program("docker"), "image", "inspect", "--format", "{{json .RepoTags}}", OTHER_IMAGE],
        stdout='["rag-worker:v1.1.0-rc.1","rag-worker:dev"]\n',
    )
    before = {first: "", plan.refs[1]: DIGEST}
    with pytest.raises(PushFailed) as stopped:
        push.push(Runner(), ctx_for(plan, before))
    message = str(stopped.value)
    assert message.splitlines()[:2] == [
        "the registry serves another image under this run's tags:",
        f"  {first} now serves {OTHER_IMAGE} (locally: rag-worker:v1.1.0-rc.1, rag-worker:dev), "
        f"not this run's image {FAKE_IMAGE_ID}",
    ]
    assert f"{first} did not exist before this run: delete it" in message
    assert f"pushed: {first}\nnot pushed: {', '.join(rest)}" in message
    assert fp.call_count([fp.program("docker"), "push", fp.any()]) == 1
    assert fp.call_count([fp.program("docker"), "tag", fp.any()]) == 1


def test_a_later_ref_pushed_as_another_manifest_stops_and_says_how_to_restore(fp):
    plan = build_plan(f"{PLAIN}/rag-worker")
    first, second, *rest = plan.refs
    register_push(fp, first)
    serve(first)
    register_push(fp, second, digest=OTHER_DIGEST)
    serve(second, OTHER_DIGEST)
    for ref in rest:
        register_push(fp, ref)
        serve(ref)
    fp.register([fp.program("docker"), "image", "inspect", fp.any()], returncode=1)
    before = {second: "sha256:" + "ab" * 32}
    with pytest.raises(PushFailed) as stopped:
        push.push(Runner(), ctx_for(plan, before))
    message = str(stopped.value)
    assert f"  {second} now serves {OTHER_IMAGE}, not this run's image" in message
    assert (
        f"  docker buildx imagetools create --tag {second} {PLAIN}/rag-worker@sha256:" + "ab" * 32
    ) in message.splitlines()
    assert first not in message.split("To put the tags back:")[1].split("pushed:")[0]


def test_the_read_back_refuses_a_manifest_of_another_image(fp):
    """A build that pushed itself (or a push the registry mixed up): verify names it."""
    plan = build_plan(f"{PLAIN}/rag-worker")
    for ref in plan.refs:
        serve(ref, OTHER_DIGEST)
    ctx = ctx_for(plan, before={ref: "" for ref in plan.refs})
    with pytest.raises(PushFailed) as stopped:
        verify.verify(Runner(), ctx, {ref: OTHER_DIGEST for ref in plan.refs})
    message = str(stopped.value)
    assert f"{plan.refs[0]} serves the image {OTHER_IMAGE}, not this run's image" in message
    assert "did not exist before this run" in message


def test_a_containerd_store_id_is_the_manifest_digest(fp):
    plan = build_plan(f"{PLAIN}/rag-worker")
    for ref in plan.refs:
        register_push(fp, ref)
        serve(ref)
    assert push_and_verify(ctx_for(plan, image_id=DIGEST), Runner()).endswith(DIGEST)


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


def test_a_multi_platform_build_has_no_id_to_follow():
    plan = build_plan(f"{PLAIN}/rag-worker", platform="linux/amd64,linux/arm64")
    assert "--iidfile" not in build_command(plan, PushPlan(plan.refs), iid_file="i").argv


def test_a_dry_run_push_shows_the_tags_from_the_id(project, strict_fp, capsys):
    code = cli.main(["--env", "dev", "--registry", f"{PLAIN}/rag-worker", "--push", "--dry-run"])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = out.splitlines()
    first = f"{PLAIN}/rag-worker:dev-{fakes.STAMP}"
    assert lines.index(f"docker tag IMAGE_ID {first}") + 1 == lines.index(f"docker push {first}")
    assert (
        "dry run: a real run would GET https://registry.example.com:5000/v2/rag-worker/"
        f"manifests/dev-{fakes.STAMP} and expect the manifest of this run's image IMAGE_ID"
    ) in err
    assert FakeRegistry.current.requests == []


def test_a_failing_docker_tag_stops_before_the_push_and_lists_progress(fp):
    class TagFails(Runner):
        def run_all(self, cmds, *, show_output=False):
            assert [cmd.argv[:2] for cmd in cmds] == [("docker", "tag")] * len(cmds)
            return [Result(1, "", "Error response from daemon: No such image: x\n") for _ in cmds]

    plan = build_plan(f"{PLAIN}/rag-worker")
    with pytest.raises(PushFailed) as stopped:
        push.push(TagFails(log=io.StringIO()), ctx_for(plan))
    assert str(stopped.value).startswith(f"docker tag {FAKE_IMAGE_ID} {plan.refs[0]} failed")
    assert "No such image" in str(stopped.value) and "pushed: nothing" in str(stopped.value)
    assert fp.call_count([fp.program("docker"), "push", fp.any()]) == 0


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
