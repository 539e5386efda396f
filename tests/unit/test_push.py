"""--push (push.py): registry hosts, push with retries and verification, against
faked aws and docker calls (pytest-subprocess), and through the CLI."""

import hashlib
import json
import os
import re
import logging

import fakes
import pytest

from ragbuild.proxy import INFO_FORMAT

from ragbuild import cli, ecr, push, push_preflight
from ragbuild.docker_config import DockerConfig, read_docker_config
from ragbuild.errors import CommandFailed, Interrupted, PushFailed
from ragbuild.plan import build_command, format_created
from ragbuild.reference import parse_registry
from ragbuild.run.dry import DryRunner
from ragbuild.run.runner import Runner

import fakes
from registry_fakes import *  # noqa: F401,F403 (the shared fakes, clean_env included)
from registry_fakes import clean_env  # noqa: F401 (autouse)


# --- ECR host recognition ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "host, region",
    [
        ("123456789012.dkr.ecr.us-east-1.amazonaws.com", "us-east-1"),
        ("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com", "us-gov-west-1"),
        ("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn", "cn-north-1"),
        ("123456789012.dkr-ecr.eu-west-1.on.aws", "eu-west-1"),  # dual-stack
        ("123456789012.dkr-ecr.cn-northwest-1.on.amazonwebservices.com.cn", "cn-northwest-1"),
        ("123456789012.dkr.ecr.eusc-de-east-1.amazonaws.eu", "eusc-de-east-1"),
        ("123456789012.dkr.ecr.us-iso-east-1.c2s.ic.gov", "us-iso-east-1"),
        ("123456789012.dkr.ecr.us-isob-east-1.sc2s.sgov.gov", "us-isob-east-1"),
        ("123456789012.dkr.ecr.eu-isoe-west-1.cloud.adc-e.uk", "eu-isoe-west-1"),
        ("123456789012.dkr.ecr.us-isof-south-1.csp.hci.ic.gov", "us-isof-south-1"),
        ("123456789012.dkr.ecr.us-east-1.amazonaws.com:443", "us-east-1"),
    ],
)
def test_ecr_hosts_of_every_partition_give_their_region(host, region):
    registry = parse_registry(f"{host}/team/rag-worker")
    assert registry.is_ecr
    assert registry.region == region
    assert registry.path == "team/rag-worker"


@pytest.mark.parametrize(
    "host",
    [
        "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.example",
        "123456789012.dkr.ecr.us-east-1.on.aws.evil.example",
        "evil123456789012.dkr.ecr.us-east-1.amazonaws.com",
        "12345678901.dkr.ecr.us-east-1.amazonaws.com",
        "123456789012.dkr.ecr.us-east-1.amazonaws.co",
        "123456789012.dkrxecr.us-east-1.amazonaws.com",
        "123456789012.dkr.ecr.us-east-1.amazonaws.eu.com",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com.cn.example",
        "public.ecr.aws",
        "localhost:5000",
    ],
)
def test_look_alike_hosts_are_not_ecr(host):
    registry = parse_registry(f"{host}/rag-worker")
    assert not registry.is_ecr
    assert registry.region is None


def test_fips_host_asks_the_aws_cli_for_the_fips_endpoint_and_others_keep_the_env():
    fips = parse_registry("123456789012.dkr.ecr-fips.us-east-1.amazonaws.com/r")
    assert ("AWS_USE_FIPS_ENDPOINT", "true") in ecr.get_login_password_command(fips).env
    plain = parse_registry(f"{ECR}/r")
    # nothing set over the caller's AWS_PROFILE / AWS_ENDPOINT_URL*
    assert ecr.get_login_password_command(plain).env == ()
    assert ecr.describe_repositories_command(plain).env == ()


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


def test_cred_helper_is_found_by_host():
    """docker looks credHelpers up by the exact host key (config/configfile/file.go)."""
    helpers = {ECR: "ecr-login", "gcr.io": "gcloud", "bad.example": 7}
    assert DockerConfig(cred_helpers=helpers).credentials(ECR).helper == "ecr-login"
    assert (
        DockerConfig(cred_helpers={f"https://{ECR}": "ecr-login"}).credentials(ECR).helper is None
    )
    assert DockerConfig(cred_helpers=helpers).credentials("other.example").helper is None
    assert DockerConfig(cred_helpers=helpers).credentials("bad.example").helper is None
    assert DockerConfig(cred_helpers={}).credentials(ECR).helper is None


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b'{"credHelpers": "ecr-login"}',
        b"[1]",
        '{"credHelpers": {}, "x": "\u00e9"}'.encode("latin-1"),
    ],
)
def test_an_unreadable_docker_config_means_no_credential_helper(fp, clean_env, content):
    """One reader of config.json (steps.read_docker_config): non-UTF-8 or malformed is nothing
    set, as for the current context, never a traceback."""
    (clean_env / "config.json").write_bytes(content)
    register_preflight(fp)
    register_login(fp)
    register_describe(fp, stdout=repository_json())
    assert push_preflight.prepare(Runner(), build_plan()).helper is None


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


# --- verification ------------------------------------------------------------------------------


def test_registry_digest_must_match_what_push_reported(fp):
    plan = build_plan(f"{PLAIN}/rag-worker", latest_policy="never")
    for ref in plan.refs:
        register_push(fp, ref)
    serve(plan.refs[0])
    serve(plan.refs[1], digest=OTHER_DIGEST)
    serve(plan.refs[2])
    with pytest.raises(PushFailed) as err:
        push_and_verify(prepared(plan), Runner())
    message = str(err.value)
    assert f"{plan.refs[1]} resolves to {OTHER_DIGEST}" in message
    assert plan.refs[0] + " resolves" not in message


def test_tags_of_one_build_must_share_one_digest(fp):
    plan = build_plan(f"{PLAIN}/rag-worker", latest_policy="never")
    register_push(fp, plan.refs[0])
    register_push(fp, plan.refs[1], digest=OTHER_DIGEST)
    register_push(fp, plan.refs[2])
    serve(plan.refs[0])
    serve(plan.refs[1], digest=OTHER_DIGEST)
    serve(plan.refs[2])
    with pytest.raises(PushFailed) as err:
        push_and_verify(prepared(plan), Runner())
    assert "pushed as different manifests" in str(err.value)


@pytest.mark.parametrize(
    "media_type", [OCI_INDEX, "application/vnd.docker.distribution.manifest.list.v2+json"]
)
def test_index_manifest_is_refused_naming_sagemaker(fp, media_type):
    """A single-platform push must name one image manifest: buildx's default attestations make
    an index of the image and an unknown/unknown entry, which SageMaker refuses."""
    plan = build_plan(f"{PLAIN}/rag-worker", latest_policy="never", env="staging")
    for ref in plan.refs:
        register_push(fp, ref)
    serve_index(plan.refs[0], ("linux/amd64",), media_type=media_type, attestations=1)
    for ref in plan.refs[1:]:
        serve(ref)
    with pytest.raises(PushFailed) as err:
        push_and_verify(prepared(plan), Runner())
    message = str(err.value)
    assert (
        f"{plan.refs[0]} is an image index ({media_type}), not a single image manifest: "
        "SageMaker refuses image indexes" in message
    )
    assert "--provenance=false" in message
    assert message.count("is an image index") == 1


def test_a_single_oci_manifest_fails_sagemakers_shape_unless_not_for_sagemaker(fp):
    """SageMaker takes a Docker v2 schema 2 manifest only; an engine with the containerd image
    store can push an OCI one. --not-for-sagemaker accepts it."""
    oci = "application/vnd.oci.image.manifest.v1+json"
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": oci,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": "sha256:" + "33" * 32,
                "size": 1,
            },
            "layers": [],
        }
    ).encode()
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    plan = build_plan(f"{PLAIN}/rag-worker", latest_policy="never")
    for ref in plan.refs:
        register_push(fp, ref, digest=digest)
        serve(ref, body=body, media_type=oci)
    with pytest.raises(PushFailed) as err:
        push_and_verify(prepared(plan), Runner())
    message = str(err.value)
    assert (
        f"{plan.refs[0]} is a single {oci} manifest, not a Docker v2 schema 2 manifest "
        "(application/vnd.docker.distribution.manifest.v2+json): SageMaker refuses it" in message
    )
    assert "oci-mediatypes=false" in message and "--not-for-sagemaker" in message
    plan = build_plan(f"{PLAIN}/rag-worker", latest_policy="never", not_for_sagemaker=True)
    for ref in plan.refs:
        register_push(fp, ref, digest=digest)
    assert push_and_verify(prepared(plan), Runner()) == f"{PLAIN}/rag-worker@{digest}"


def test_the_read_back_asks_for_every_manifest_type_with_one_request_per_tag(fp):
    plan = build_plan(f"{PLAIN}/rag-worker", latest_policy="never")
    for ref in plan.refs:
        register_push(fp, ref)
        serve(ref)
    push_and_verify(prepared(plan), Runner())
    requests = FakeRegistry.current.manifest_requests()
    assert len(requests) == len(plan.refs)
    for _, headers in requests:
        assert headers["Accept"].split(", ") == [
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.index.v1+json",
        ]


def test_a_transient_503_is_retried_then_passes(fp, capsys):
    plan = build_plan(f"{PLAIN}/rag-worker", latest_policy="never")
    for ref in plan.refs:
        register_push(fp, ref)
        serve(ref)
    FakeRegistry.current.fail[plan.refs[1]] = [
        503,
        ConnectionResetError(104, "Connection reset by peer"),
    ]
    sleep = FakeSleep()
    assert push_and_verify(prepared(plan, sleep), Runner()) == f"{PLAIN}/rag-worker@{DIGEST}"
    assert sleep.delays == [2.0, 4.0]
    err = capsys.readouterr().err
    tag = plan.refs[1].rsplit(":", 1)[1]
    assert (
        f"GET https://{PLAIN}/v2/rag-worker/manifests/{tag} failed (HTTP 503 Service "
        "Unavailable); retrying in 2s (attempt 2 of 3)" in err
    )
    assert "pushed and verified 3 tags" in err


@pytest.mark.parametrize(
    "failures, retried",
    [([503] * 3, 3), ([429] * 3, 3), ([404], 1), ([401, 401], 1), ([500, 404], 2)],
)
def test_a_read_back_that_keeps_failing_fails_verification(fp, failures, retried):
    """Transient answers (5xx, 429) are retried up to --push-attempts; a missing manifest or
    refused credentials are not."""
    plan = build_plan(f"{PLAIN}/rag-worker", latest_policy="never")
    for ref in plan.refs:
        register_push(fp, ref)
        serve(ref)
    FakeRegistry.current.fail[plan.refs[0]] = list(failures)
    with pytest.raises(PushFailed) as err:
        push_and_verify(prepared(plan), Runner())
    assert f"{plan.refs[0]}: cannot read its manifest back from the registry" in str(err.value)
    tag = plan.refs[0].rsplit(":", 1)[1]
    asked = [url for url, _ in FakeRegistry.current.manifest_requests() if url.endswith(tag)]
    assert len(asked) == retried + (1 if failures[-1] == 401 else 0)  # a 401 is answered once


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


def test_dry_run_warns_about_a_missing_credential_helper_and_shows_the_rest(fp, clean_env, capsys):
    """The dry run's rule for a tool a real run needs: a warning, and the plan goes on."""
    fp.allow_unregistered(False)
    (clean_env / "config.json").write_text(json.dumps({"credHelpers": {ECR: "ecr-login"}}))
    runner = DryRunner()
    pushing = push_preflight.prepare(runner, build_plan(dry_run=True))
    out, err = capsys.readouterr()
    assert (
        "warning: docker-credential-ecr-login, which credHelpers in" in err
        and "(a real run stops here)" in err
    )
    assert out.splitlines()[0].startswith("aws ecr describe-repositories ")
    assert pushing.helper == "ecr-login" and len(fp.calls) == 0


def test_buildx_plans_skip_the_attestation_probe(fp):
    fp.allow_unregistered(False)
    fakes.register_proxy_info(fp)
    plan = build_plan(f"{PLAIN}/rag-worker", builder="remote")
    assert plan.buildx
    assert build_command(plan, push_preflight.prepare(Runner(), plan)).argv[-3:] == (
        "--provenance=false",
        "--sbom=false",
        ".",
    )
    # (verified HTTPS answered: the daemon is asked its proxy settings, not its registry config)
    assert [list(c) for c in fp.calls] == [fakes.proxy_info_argv(fp)]


# --- through the CLI ---------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "Dockerfile").write_text("FROM python:3.11-slim\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(int(MOMENT.timestamp())))
    return tmp_path


def register_git(fp):
    fakes.register_git(fp, stdout="abc1234\n")


def IIDFILE(fp):  # noqa: N802 (the words the build's --iidfile takes)
    return ["--iidfile", fp.any(min=1, max=1)]


def cli_build_argv(ref):
    return [
        "docker",
        "build",
        "-f",
        "Dockerfile",
        *sum((["-t", r] for r in ref), []),
        "--build-arg",
        "ENVIRONMENT=dev",
        "--build-arg",
        "GIT_COMMIT=abc1234",
        "--build-arg",
        f"BUILD_TIMESTAMP={TS}",
        "--label",
        f"org.opencontainers.image.created={format_created(MOMENT)}",
        "--label",
        f"org.ragbuild.repository={ref[0].rsplit(':', 1)[0]}",
    ]


def test_failed_build_never_pushes(fp, project, capsys):
    register_git(fp)
    register_preflight(fp)
    register_login(fp)
    register_describe(fp, stdout=repository_json())
    refs = refs_of(f"{ECR}/rag-worker")
    fp.register([fp.program("docker"), *cli_build_argv(refs)[1:], *IIDFILE(fp), "."], returncode=1)
    docker(fp, "version", "--format", "{{.Client.Version}}", stdout="20.10.24\n")
    code = cli.main(["--env", "dev", "--registry", f"{ECR}/rag-worker", "--push"])
    assert code == 1
    assert fp.call_count([fp.program("docker"), "push", fp.any()]) == 0
    # the pre-flight's read of each tag, and no read-back
    assert len(FakeRegistry.current.manifest_requests()) == len(refs)
    out, err = capsys.readouterr()
    assert "docker build failed" in err
    assert PASSWORD not in out + err


def test_failed_preflight_never_builds(fp, project, capsys):
    register_git(fp)
    register_preflight(fp)
    register_login(fp)
    register_describe(
        fp, returncode=254, stderr="An error occurred (RepositoryNotFoundException) ...\n"
    )
    code = cli.main(["--env", "dev", "--registry", f"{ECR}/rag-worker", "--push"])
    assert code == 1
    assert fp.call_count([fp.program("docker"), "build", "-f", fp.any()]) == 0
    assert fp.call_count([fp.program("docker"), "push", fp.any()]) == 0
    assert "aws ecr create-repository" in capsys.readouterr().err


def test_full_ecr_push_through_the_cli_keeps_the_password_out_of_every_output(
    fp, project, capsys, caplog
):
    caplog.set_level(logging.DEBUG)
    register_git(fp)
    register_preflight(fp)
    seen = []
    register_login(fp, seen=seen)
    register_describe(fp, stdout=repository_json())
    refs = refs_of(f"{ECR}/rag-worker")
    fp.register([fp.program("docker"), *cli_build_argv(refs)[1:], *IIDFILE(fp), "."])
    tags = json.dumps(refs)
    docker(
        fp,
        "image",
        "inspect",
        "--format",
        "{{.Id}} {{.Size}} {{json .RepoTags}} {{json .Config.Labels}}",
        fakes.FAKE_IMAGE_ID,
        stdout=f"sha256:{'ee' * 32} 123456 {tags}\n",
    )
    for ref in refs:
        register_push(fp, ref)
    for ref in refs:
        serve(ref)
    code = cli.main(["--env", "dev", "--registry", f"{ECR}/rag-worker", "--push"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert seen == [PASSWORD.encode()]
    assert out.splitlines()[-1] == f"{ECR}/rag-worker@{DIGEST}"
    assert PASSWORD not in out + err + caplog.text
    # every push comes after the build (BUILDX_NO_DEFAULT_ATTESTATIONS=1: see above)
    calls = [list(c) for c in fp.calls]
    build_at = [i for i, c in enumerate(calls) if c[1] == "build"]
    pushes_at = [i for i, c in enumerate(calls) if c[1] == "push"]
    assert len(build_at) == 1 and len(pushes_at) == 4 and min(pushes_at) > build_at[0]


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


# --- odd registry answers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, said, problem",
    [
        (b"not json", None, "served no manifest: not JSON: 'not json'"),
        (b"[1]", None, "served no manifest: not a manifest"),
        (
            MANIFEST,
            OTHER_DIGEST,
            f"served no manifest: the registry says {OTHER_DIGEST} but the "
            f"body's sha256 is {DIGEST}",
        ),
    ],
)
def test_a_body_that_is_no_manifest_is_a_verification_problem(fp, body, said, problem):
    plan = build_plan(f"{PLAIN}/rag-worker", latest_policy="never")
    for ref in plan.refs:
        register_push(fp, ref)
        serve(ref, body=body, said=said)
    with pytest.raises(PushFailed) as err:
        push_and_verify(prepared(plan), Runner())
    tag = plan.refs[0].rsplit(":", 1)[1]
    assert f"{plan.refs[0]}: https://{PLAIN}/v2/rag-worker/manifests/{tag} {problem}" in str(
        err.value
    )


def test_the_media_type_comes_from_the_content_type_when_the_body_has_none(fp):
    """Schema 2 manifests carry mediaType; an OCI manifest may leave it to the Content-Type."""
    plan = build_plan(f"{PLAIN}/rag-worker", latest_policy="never")
    body = json.dumps({"schemaVersion": 2, "manifests": []}).encode()
    for ref in plan.refs:
        register_push(fp, ref)
        serve(ref, body=body, media_type=OCI_INDEX)
    with pytest.raises(PushFailed, match=re.escape(f"is an image index ({OCI_INDEX})")):
        push_and_verify(prepared(plan), Runner())


@pytest.mark.parametrize(
    "filters", [[{"filterType": "WILDCARD", "filter": 7}], ["latest"], {"filter": "x"}]
)
def test_odd_exclusion_filters_are_a_one_line_failure(fp, filters):
    register_preflight(fp)
    register_login(fp)
    repo = json.loads(repository_json(mutability="IMMUTABLE_WITH_EXCLUSION"))
    repo["repositories"][0]["imageTagMutabilityExclusionFilters"] = filters
    register_describe(fp, stdout=json.dumps(repo))
    with pytest.raises(CommandFailed, match="cannot read `aws ecr describe-repositories` output"):
        push_preflight.prepare(Runner(), build_plan())


@pytest.mark.parametrize("stdout", ['{"imageIds": "latest"}', '{"imageIds": [1]}', "[]"])
def test_odd_list_images_output_is_a_one_line_failure(fp, stdout):
    register_preflight(fp)
    register_login(fp)
    register_describe(fp, stdout=repository_json(mutability="IMMUTABLE"))
    aws(fp, "list-images", fp.any(), stdout=stdout)
    with pytest.raises(CommandFailed, match="cannot read `aws ecr list-images` output"):
        push_preflight.prepare(Runner(), build_plan())


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


def test_fips_is_read_from_the_registry_once():
    assert parse_registry("123456789012.dkr.ecr-fips.us-east-1.amazonaws.com/r").fips
    assert not parse_registry(f"{ECR}/r").fips
    assert not parse_registry(f"{PLAIN}/r").fips


# --- version tags never move (issue 22 case 4) --------------------------------------------------


def release_plan(**options):
    return build_plan(f"{PLAIN}/rag-worker", version="1.2.3", env="prod", **options)


@pytest.mark.parametrize("tag", ["v1.2.3", "1.2.3"])
def test_an_existing_version_tag_stops_the_push_before_the_build(fp, tag):
    fakes.register_proxy_info(fp)
    fp.allow_unregistered(False)
    serve(f"{PLAIN}/rag-worker:{tag}", OTHER_DIGEST)
    with pytest.raises(PushFailed) as stopped:
        push_preflight.prepare(Runner(), release_plan())
    message = str(stopped.value)
    assert f"the registry already has {PLAIN}/rag-worker:{tag} (now {OTHER_DIGEST})" in message
    assert "--replace-version-tags" in message and "nothing was built or pushed" in message
    assert "\n" not in message
    assert [list(call)[1:3] for call in fp.calls] == [["info", "--format"]]  # the proxy, no more


def test_moving_tags_that_exist_move_as_before(fp):
    fakes.register_proxy_info(fp)
    for tag in ("prod", "latest"):
        serve(f"{PLAIN}/rag-worker:{tag}", OTHER_DIGEST)
    prepared_push = push_preflight.prepare(Runner(), release_plan())
    assert prepared_push.before[f"{PLAIN}/rag-worker:prod"] == OTHER_DIGEST
    assert prepared_push.before[f"{PLAIN}/rag-worker:v1.2.3"] == ""  # not there


def test_replace_version_tags_lets_them_move_and_says_so(fp, capsys):
    fakes.register_proxy_info(fp)
    serve(f"{PLAIN}/rag-worker:v1.2.3", OTHER_DIGEST)
    prepared_push = push_preflight.prepare(Runner(), release_plan(replace_version_tags=True))
    assert f"{PLAIN}/rag-worker:v1.2.3" in prepared_push.refs
    err = capsys.readouterr().err
    assert (
        f"warning: --replace-version-tags: this push moves {PLAIN}/rag-worker:v1.2.3 (now "
        f"{OTHER_DIGEST}) to the image this run builds"
    ) in err


def test_a_version_tag_that_cannot_be_read_stops_the_push(fp):
    fakes.register_proxy_info(fp)
    FakeRegistry.current.fail[f"{PLAIN}/rag-worker:1.2.3"] = [403]
    with pytest.raises(PushFailed) as stopped:
        push_preflight.prepare(Runner(), release_plan())
    assert str(stopped.value).startswith(
        f"cannot tell whether {PLAIN}/rag-worker:1.2.3 already exists"
    )
    assert "HTTP 403" in str(stopped.value)


def test_an_unreadable_moving_tag_only_loses_its_restore_advice(fp):
    fakes.register_proxy_info(fp)
    FakeRegistry.current.fail[f"{PLAIN}/rag-worker:latest"] = [403]
    prepared_push = push_preflight.prepare(Runner(), release_plan())
    assert not isinstance(prepared_push.before[f"{PLAIN}/rag-worker:latest"], str)


def test_the_version_check_through_the_cli_exits_1_before_the_build(project, fp, capsys):
    fakes.register_proxy_info(fp)
    fp.allow_unregistered(False)
    register_git(fp)
    serve(f"{PLAIN}/rag-worker:v1.2.3", OTHER_DIGEST)
    code = cli.main(
        ["--env", "prod", "--version", "1.2.3", "--registry", f"{PLAIN}/rag-worker", "--push"]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert err.splitlines()[-1].startswith(
        f"error: the registry already has {PLAIN}/rag-worker:v1.2.3 (now {OTHER_DIGEST})"
    )
    assert fp.call_count([fp.program("docker"), "build", fp.any()]) == 0
    assert fp.call_count([fp.program("docker"), "buildx", fp.any()]) == 0


def test_a_dry_run_shows_the_version_check(project, fp, capsys):
    register_git(fp)
    code = cli.main(
        [
            "--env",
            "prod",
            "--version",
            "1.2.3",
            "--registry",
            f"{PLAIN}/rag-worker",
            "--push",
            "--dry-run",
        ]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert (
        f"dry run: a real run would GET https://{PLAIN}/v2/rag-worker/manifests/v1.2.3 "
        "(HTTPS) to learn what the tag names before the push (an existing version tag "
        "stops the run unless --replace-version-tags)"
    ) in err
    assert FakeRegistry.current.manifest_requests() == []


def test_replace_version_tags_needs_a_push_of_a_version(project, fp, capsys):
    register_git(fp)
    code = cli.main(["--env", "dev", "--replace-version-tags"])
    assert code == 2
    assert "--replace-version-tags only lets --push move" in capsys.readouterr().err
