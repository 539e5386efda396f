"""--push (push.py): each ref tagged from the image's ID and pushed, with retries, against
faked aws and docker calls (pytest-subprocess). The checks before it are test_push_preflight.py,
the read-back test_verify.py, the push through main() cli/test_push.py."""

import io
from fakes import FAKE_IMAGE_ID
from ragbuild.run.command import Result
from registry_fakes import (
    DIGEST,
    OTHER_DIGEST,
    OTHER_IMAGE,
    PLAIN,
    build_plan,
    ctx_for,
    push_and_verify,
    register_push,
    serve,
)

import os

import pytest

from ragbuild.proxy import INFO_FORMAT

from ragbuild import push, push_preflight
from ragbuild.docker_config import read_docker_config
from ragbuild.errors import Interrupted, PushFailed
from ragbuild.plan import build_command
from ragbuild.run.dry import DryRunner
from ragbuild.run.runner import Runner

from registry_fakes import *  # noqa: F401,F403 (the shared fakes, clean_env included)
from registry_fakes import clean_env  # noqa: F401 (autouse)


# --- pure helpers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "output, kind",
    [
        (
            "tag invalid: The image tag 'latest' already exists in the 'rag-worker' repository and "
            "cannot be overwritten because the repository is immutable.",
            push.Failure.IMMUTABLE,
        ),
        ("unauthorized: authentication required", push.Failure.AUTH),
        ("no basic auth credentials", push.Failure.AUTH),
        (
            "denied: Your authorization token has expired. Reauthenticate and try again.",
            push.Failure.AUTH,
        ),
        ("denied: requested access to the resource is denied\nunexpected EOF", push.Failure.AUTH),
        (
            "name unknown: The repository with name 'x' does not exist in the registry with id '1'",
            push.Failure.NOT_FOUND,
        ),
        ("error: repository rag-worker not found", push.Failure.NOT_FOUND),
        (
            "read tcp 127.0.0.1:4242->127.0.0.1:443: read: connection reset by peer",
            push.Failure.TRANSIENT,
        ),
        ("dial tcp: lookup registry: i/o timeout", push.Failure.TRANSIENT),
        ("net/http: TLS handshake timeout", push.Failure.TRANSIENT),
        ('Put "https://r/v2/x/blobs/uploads/": EOF', push.Failure.TRANSIENT),
        ("received unexpected HTTP status: 503 Service Unavailable", push.Failure.TRANSIENT),
        ("received unexpected HTTP status: 500 Internal Server Error", push.Failure.TRANSIENT),
        ("toomanyrequests: Rate exceeded", push.Failure.TRANSIENT),
        (
            "Cannot connect to the Docker daemon at unix:///var/run/docker.sock.",
            push.Failure.DAEMON,
        ),
        (
            'Get "http://localhost:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused',
            push.Failure.UNREACHABLE,
        ),
        ("dial tcp: lookup nosuch.example: no such host", push.Failure.UNREACHABLE),
        ("An image does not exist locally with the tag: r/x", push.Failure.OTHER),
        ("size: 429 layers", push.Failure.OTHER),
    ],
)
def test_push_failures_are_classified(output, kind):
    assert push.classify_failure(output) == kind


def test_parse_push_digest_takes_the_digest_line():
    assert push.parse_push_digest(push_ok(f"{ECR}/r:dev")) == DIGEST
    assert push.parse_push_digest("latest: Pushed\n") is None


# --- push --------------------------------------------------------------------------------------


def test_pushes_each_ref_then_verifies_and_prints_the_digest_ref(fp, capsys):
    plan = build_plan(f"{PLAIN}/rag-worker")
    for ref in plan.refs:
        register_push(fp, ref)
    for ref in plan.refs:
        serve(ref)
    sleep = FakeSleep()
    pinned = push_and_verify(prepared(plan, sleep), Runner())
    assert pinned == f"{PLAIN}/rag-worker@{DIGEST}"
    assert [c[1:] for c in fp.calls if c[1] == "push"] == [["push", r] for r in plan.refs]
    assert not any("--all-tags" in c for c in fp.calls)
    assert all(c[1] == "push" for c in fp.calls)  # the read-back starts no process
    assert sorted(url for url, _ in FakeRegistry.current.manifest_requests()) == sorted(
        f"https://{PLAIN}/v2/rag-worker/manifests/{ref.rsplit(':', 1)[1]}" for ref in plan.refs
    )
    assert sleep.delays == []
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == pinned
    assert f"dev-{TS}: digest: {DIGEST}" in out  # tee: progress shown


def test_transient_failures_are_retried_with_backoff(fp, capsys):
    plan = build_plan(f"{PLAIN}/rag-worker", latest_policy="never")
    first, *rest = plan.refs
    register_push(fp, first, stdout="read: connection reset by peer\n", returncode=1)
    register_push(
        fp, first, stdout="received unexpected HTTP status: 502 Bad Gateway\n", returncode=1
    )
    register_push(fp, first)
    for ref in rest:
        register_push(fp, ref)
    for ref in plan.refs:
        serve(ref)
    sleep = FakeSleep()
    push_and_verify(prepared(plan, sleep), Runner())
    assert fp.call_count([fp.program("docker"), "push", first]) == 3
    assert sleep.delays == [2.0, 4.0]
    assert "retrying in 2s (attempt 2 of 3)" in capsys.readouterr().err


def test_transient_failure_gives_up_after_three_attempts(fp):
    plan = build_plan(f"{PLAIN}/rag-worker")
    first = plan.refs[0]
    for _ in range(3):
        register_push(fp, first, stdout="Put https://x/v2/: EOF\n", returncode=1)
    sleep = FakeSleep()
    with pytest.raises(PushFailed) as err:
        push_and_verify(prepared(plan, sleep), Runner())
    assert fp.call_count([fp.program("docker"), "push", first]) == 3
    assert sleep.delays == [2.0, 4.0]
    assert "push failed 3 times" in str(err.value)


@pytest.mark.parametrize(
    "registry, output, expected",
    [
        (
            f"{PLAIN}/rag-worker",
            "unauthorized: authentication required",
            f"run `docker login {PLAIN}`",
        ),
        (f"{PLAIN}/rag-worker", "no basic auth credentials", f"run `docker login {PLAIN}`"),
        (
            f"{ECR}/rag-worker",
            "denied: Your authorization token has expired. Reauthenticate.",
            "the ECR token may have expired",
        ),
        (
            f"{ECR}/rag-worker",
            "name unknown: The repository with name 'rag-worker' does not exist",
            "aws ecr create-repository --repository-name rag-worker --region us-east-1",
        ),
        (f"{PLAIN}/rag-worker", "repository rag-worker not found", f"{PLAIN} has no repository"),
        (
            f"{PLAIN}/rag-worker",
            "dial tcp 10.0.0.1:5000: connect: connection refused",
            f"cannot reach {PLAIN}",
        ),
        (
            f"{ECR}/rag-worker",
            "tag invalid: The image tag 'dev' already exists in the 'rag-worker' "
            "repository and cannot be overwritten because the repository is immutable.",
            "already exists and the repository's tags are immutable",
        ),
    ],
)
def test_permanent_push_failures_are_not_retried(fp, registry, output, expected):
    plan = build_plan(registry)
    first = plan.refs[0]
    register_push(fp, first, stdout=output + "\n", returncode=1)
    sleep = FakeSleep()
    with pytest.raises(PushFailed) as err:
        push_and_verify(prepared(plan, sleep), Runner())
    assert expected in str(err.value)
    assert fp.call_count([fp.program("docker"), "push", first]) == 1
    assert sleep.delays == []


def test_refused_push_with_a_credential_helper_points_at_its_credentials(fp):
    plan = build_plan(f"{ECR}/rag-worker")
    register_push(fp, plan.refs[0], stdout="no basic auth credentials\n", returncode=1)
    pushing = prepared(plan, helper="ecr-login")
    with pytest.raises(PushFailed) as err:
        push_and_verify(pushing, Runner())
    assert "docker-credential-ecr-login (credHelpers in" in str(err.value)
    assert "check the AWS credentials it uses" in str(err.value)


def test_refused_push_names_a_credsstore_helper_as_credsstore(fp):
    """The message says where docker's credentials came from, credsStore as well as
    credHelpers (``Credentials.describe``), not always credHelpers."""
    plan = build_plan(f"{ECR}/rag-worker")
    register_push(fp, plan.refs[0], stdout="no basic auth credentials\n", returncode=1)
    with pytest.raises(PushFailed) as err:
        push_and_verify(prepared(plan, helper="ecr-login", origin="credsStore"), Runner())
    assert "docker-credential-ecr-login (credsStore in" in str(err.value)
    assert "credHelpers" not in str(err.value)


def test_failed_push_lists_what_was_and_was_not_pushed(fp):
    plan = build_plan(f"{PLAIN}/rag-worker")
    a, b, c, d = plan.refs
    register_push(fp, a)
    register_push(fp, b)
    register_push(
        fp, c, stdout="denied: requested access to the resource is denied\n", returncode=1
    )
    register_push(fp, d)  # the refs after the first go at once: d is pushed all the same
    with pytest.raises(PushFailed) as err:
        push_and_verify(prepared(plan), Runner())
    assert err.value.exit_code == 1
    message = str(err.value)
    assert f"pushed: {a}, {b}, {d}\n" in message
    assert message.endswith(f"not pushed: {c}")
    assert FakeRegistry.current.manifest_requests() == []  # no verification


def test_a_failed_first_push_stops_before_the_others(fp):
    """The first ref uploads the layers, alone: when it fails, no other tag is tried."""
    plan = build_plan(f"{PLAIN}/rag-worker")
    a, b, c, d = plan.refs
    register_push(
        fp, a, stdout="denied: requested access to the resource is denied\n", returncode=1
    )
    with pytest.raises(PushFailed) as err:
        push_and_verify(prepared(plan), Runner())
    assert str(err.value).endswith(f"pushed: nothing\nnot pushed: {a}, {b}, {c}, {d}")
    assert fp.call_count([fp.program("docker"), "push", fp.any()]) == 1


def test_the_tags_after_the_first_are_pushed_at_once_with_their_output_shown(fp, capsys):
    """All of them are started before any is waited for (the + lines come first), their
    output is shown, and a transient failure among them is retried on its own."""
    plan = build_plan(f"{PLAIN}/rag-worker")
    a, b, c, d = plan.refs
    register_push(fp, a)
    register_push(fp, b, stdout="read: connection reset by peer\n", returncode=1)
    register_push(fp, b)
    register_push(fp, c)
    register_push(fp, d)
    sleep = FakeSleep()
    digests = push.push(Runner(), prepared(plan, sleep))
    assert digests == {a: DIGEST, c: DIGEST, d: DIGEST, b: DIGEST}
    assert sleep.delays == [2.0]
    out, err = capsys.readouterr()
    plus = [line for line in err.splitlines() if line.startswith("+ docker push ")]
    assert plus == [f"+ docker push {ref}" for ref in (a, b, c, d, b)]
    assert all(push_ok(ref, DIGEST) in out for ref in (a, c, d))


# --- dry run -----------------------------------------------------------------------------------


def test_dry_run_prints_the_whole_push_and_starts_no_process(fp, capsys):
    fp.allow_unregistered(False)
    plan = build_plan(dry_run=True)
    runner = DryRunner()
    pushing = push_preflight.prepare(runner, plan)
    push_and_verify(
        push.Context(plan, pushing, read_docker_config(), os.environ, FakeSleep()), runner
    )
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == "aws ecr get-login-password --region us-east-1"
    assert lines[1] == (
        f"docker login --username AWS --password-stdin {ECR} "
        "< <password from aws ecr get-login-password>"
    )
    assert lines[2].startswith("aws ecr describe-repositories --repository-names rag-worker")
    assert lines[3] == f"docker info --format '{INFO_FORMAT}'"  # the daemon's proxy settings
    assert lines[4:8] == [f"docker push {ref}" for ref in plan.refs]
    assert lines[8:] == []  # the read-back starts no process: it is said on stderr
    assert PASSWORD not in out
    assert len(fp.calls) == 0 and FakeRegistry.current.requests == []
    # what the dry run cannot know is said on stderr
    assert "lists the repository's tags (aws ecr list-images)" in err
    assert (
        f"dry run: a real run would ask {ECR}/v2/ (HTTPS; if that fails, `docker info` says "
        "whether the daemon may go insecure) whether it answers" in err
    )
    reads = [line for line in err.splitlines() if "/manifests/" in line and " expect " in line]
    before = [line for line in err.splitlines() if "before the push" in line]
    assert len(before) == len(plan.refs)  # the pre-flight's read of each tag, said too
    assert reads == [
        f"dry run: a real run would GET https://{ECR}/v2/rag-worker/manifests/"
        f"{ref.rsplit(':', 1)[1]} (HTTPS; a pull token, the Docker and OCI manifest "
        "and index types accepted) and expect the single image manifest the push "
        "reported"
        for ref in plan.refs
    ]
    assert "pushed and verified" not in err and "logged in" not in err  # a real run's findings
    assert "--provenance=false" not in build_command(plan, pushing).argv


# --- failures in the middle of a push ----------------------------------------------------------


def test_a_push_without_a_digest_is_listed_as_pushed(fp):
    """docker push exited 0, so the ref is on the registry: it is not "not pushed"."""
    plan = build_plan(f"{PLAIN}/rag-worker")
    a, b, c, d = plan.refs
    register_push(fp, a)
    register_push(fp, b, stdout="b: Pushed\n")  # exit 0, no digest line
    register_push(fp, c)  # pushed at once with b
    register_push(fp, d)
    with pytest.raises(PushFailed) as err:
        push_and_verify(prepared(plan), Runner())
    message = str(err.value)
    assert "succeeded but printed no digest" in message
    assert f"pushed: {a}, {b} (digest unknown), {c}, {d}\n" in message
    assert message.endswith("not pushed: nothing")


@pytest.mark.parametrize("stop", ["child", "sleep"])
def test_ctrl_c_during_the_pushes_lists_what_was_pushed_and_exits_130(fp, monkeypatch, stop):
    plan = build_plan(f"{PLAIN}/rag-worker")
    a, b, c, d = plan.refs
    register_push(fp, a)
    if stop == "child":  # Ctrl-C while the other tags' pushes run: the runner stops them all

        def run_all(self, cmds, **kw):
            raise Interrupted("interrupted; stopped 3 `docker push` commands")

        monkeypatch.setattr(Runner, "run_all", run_all)
        sleep = FakeSleep()
        expected = [f"pushed: {a}", f"not pushed: {b}, {c}, {d}"]
    else:  # Ctrl-C while waiting to retry b: c and d, pushed at once with it, are listed
        register_push(fp, b, stdout="read: connection reset by peer\n", returncode=1)
        register_push(fp, c)
        register_push(fp, d)

        def sleep(seconds):
            raise KeyboardInterrupt

        expected = [f"pushed: {a}, {c}, {d}", f"not pushed: {b}"]
    with pytest.raises(Interrupted) as err:
        push.push(Runner(), prepared(plan, sleep))
    assert err.value.exit_code == 130
    assert str(err.value).splitlines()[1:] == expected


def test_a_daemon_that_goes_away_during_the_push_gets_the_daemon_message(fp):
    plan = build_plan(f"{PLAIN}/rag-worker")
    register_push(
        fp,
        plan.refs[0],
        returncode=1,
        stdout=(
            "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker "
            "daemon running?\n"
        ),
    )
    with pytest.raises(PushFailed) as err:
        push_and_verify(prepared(plan), Runner())
    from ragbuild.docker_config import daemon_unreachable

    assert str(err.value).startswith(f"{plan.refs[0]}: {daemon_unreachable(None)}")


def calls(fp):
    return [list(call)[1:] for call in fp.calls]


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


def test_a_containerd_store_id_is_the_manifest_digest(fp):
    plan = build_plan(f"{PLAIN}/rag-worker")
    for ref in plan.refs:
        register_push(fp, ref)
        serve(ref)
    assert push_and_verify(ctx_for(plan, image_id=DIGEST), Runner()).endswith(DIGEST)


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
