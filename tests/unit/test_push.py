"""--push: ECR host recognition, login, pre-flight, push with retries and verification, against
faked aws and docker calls (pytest-subprocess), and through the CLI."""

import json
import os
import logging
from datetime import datetime

import fakes
import pytest

from ragbuild import cli, ecr, push
from ragbuild.builders import DockerConfig, read_docker_config
from ragbuild.errors import CommandFailed, Interrupted, PushFailed, ToolMissing
from ragbuild.plan import (Config, GitInfo, Options, PushPlan, format_created, make_plan,
                           parse_registry)
from ragbuild.runner import DryRunner, Runner

ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
PLAIN = "registry.example.com:5000"
PASSWORD = "eyJwYXlsb2FkIjoiU0VDUkVULVRPS0VOLTQyIn0="  # what get-login-password prints
DIGEST = "sha256:" + "ab" * 32
OTHER_DIGEST = "sha256:" + "cd" * 32
MOMENT = datetime(2026, 1, 2, 3, 4, 5)
TS = "20260102-030405"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in ("DOCKER", "AWS_CLI", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_ECR",
                 "ECR_REGISTRY_URI", "SOURCE_DATE_EPOCH"):
        monkeypatch.delenv(name, raising=False)
    config_dir = tmp_path / "docker-config"
    config_dir.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(config_dir))
    return config_dir


class FakeSleep:
    def __init__(self):
        self.delays = []

    def __call__(self, seconds):
        self.delays.append(seconds)


def build_plan(registry=f"{ECR}/rag-worker", **options):
    values = dict(env="dev", registry=registry, push=True)
    values.update(options)
    return make_plan(Options(**values), Config(), GitInfo(sha="abc1234"), MOMENT)


def refs_of(base, tags=(f"dev-{TS}", "dev", "git-abc1234", "latest")):
    return [f"{base}:{tag}" for tag in tags]


def docker(fp, *args, **kw):
    fp.register([fp.program("docker"), *args], **kw)


def aws(fp, *args, **kw):
    fp.register([fp.program("aws"), "ecr", *args], **kw)


def register_probe(fp, buildx=False):
    help_text = "Usage:  docker build [OPTIONS] PATH | URL | -\n      --pull\n"
    if buildx:
        help_text += "      --provenance string   Shorthand for \"--attest=type=provenance\"\n"
    docker(fp, "build", "--help", stdout=help_text)
    fakes.register_registry_config(fp)  # asked after the login and repository checks


def register_login(fp, host=ECR, seen=None):
    aws(fp, "get-login-password", "--region", "us-east-1", stdout=PASSWORD + "\n")

    def stdin(data):
        if seen is not None:
            seen.append(data)
        return {"stdout": "Login Succeeded\n"}

    docker(fp, "login", "--username", "AWS", "--password-stdin", host, stdin_callable=stdin)


def repository_json(name="rag-worker", mutability="MUTABLE", filters=()):
    repo = {"repositoryName": name, "imageTagMutability": mutability,
            "repositoryUri": f"{ECR}/{name}"}
    if filters:
        repo["imageTagMutabilityExclusionFilters"] = [
            {"filterType": "WILDCARD", "filter": f} for f in filters]
    return json.dumps({"repositories": [repo]})


def register_describe(fp, path="rag-worker", **kw):
    aws(fp, "describe-repositories", "--repository-names", path, "--region", "us-east-1",
        "--output", "json", **kw)


def register_list_images(fp, tags, path="rag-worker"):
    ids = [{"imageDigest": OTHER_DIGEST, "imageTag": t} for t in tags]
    aws(fp, "list-images", "--repository-name", path, "--region", "us-east-1", "--filter",
        "tagStatus=TAGGED", "--output", "json", stdout=json.dumps({"imageIds": ids}))


def push_ok(ref, digest=DIGEST):
    tag = ref.rsplit(":", 1)[1]
    return (f"The push refers to repository [{ref.rsplit(':', 1)[0]}]\n"
            f"5c1cc8fb3f8e: Pushed\n{tag}: digest: {digest} size: 528\n")


def register_push(fp, ref, stdout=None, returncode=0, digest=DIGEST):
    docker(fp, "push", ref, stdout=push_ok(ref, digest) if stdout is None else stdout,
           returncode=returncode)


def verbose_manifest(ref, digest=DIGEST, media_type=DOCKER_MANIFEST):
    return json.dumps({"Ref": ref, "Descriptor": {"mediaType": media_type, "digest": digest,
                                                  "size": 528},
                       "SchemaV2Manifest": {"schemaVersion": 2, "mediaType": media_type}})


def register_inspect(fp, ref, stdout=None, returncode=0, digest=DIGEST, insecure=False):
    args = ["manifest", "inspect"] + (["--insecure"] if insecure else []) + ["--verbose", ref]
    docker(fp, *args, stdout=verbose_manifest(ref, digest) if stdout is None else stdout,
           returncode=returncode)


def prepared(plan, sleep=None, helper=None):
    """The push and verify steps' context for a plain registry, without prepare's probes."""
    return push.Context(plan, PushPlan(plan.refs, helper=helper), read_docker_config(),
                        os.environ, sleep or FakeSleep())


def push_and_verify(context, runner, digests=None):
    """What the pipeline does after the build (timing each as its own step)."""
    digests = {} if digests is None else digests
    push.push(runner, context, digests)
    return push.verify(runner, context, digests)


# --- ECR host recognition ----------------------------------------------------------------------


@pytest.mark.parametrize("host, region", [
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
])
def test_ecr_hosts_of_every_partition_give_their_region(host, region):
    registry = parse_registry(f"{host}/team/rag-worker")
    assert registry.is_ecr
    assert registry.region == region
    assert registry.path == "team/rag-worker"


@pytest.mark.parametrize("host", [
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
])
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


@pytest.mark.parametrize("output, kind", [
    ("tag invalid: The image tag 'latest' already exists in the 'rag-worker' repository and "
     "cannot be overwritten because the repository is immutable.", push.Failure.IMMUTABLE),
    ("unauthorized: authentication required", push.Failure.AUTH),
    ("no basic auth credentials", push.Failure.AUTH),
    ("denied: Your authorization token has expired. Reauthenticate and try again.", push.Failure.AUTH),
    ("denied: requested access to the resource is denied\nunexpected EOF", push.Failure.AUTH),
    ("name unknown: The repository with name 'x' does not exist in the registry with id '1'",
     push.Failure.NOT_FOUND),
    ("error: repository rag-worker not found", push.Failure.NOT_FOUND),
    ("read tcp 127.0.0.1:4242->127.0.0.1:443: read: connection reset by peer", push.Failure.TRANSIENT),
    ("dial tcp: lookup registry: i/o timeout", push.Failure.TRANSIENT),
    ("net/http: TLS handshake timeout", push.Failure.TRANSIENT),
    ("Put \"https://r/v2/x/blobs/uploads/\": EOF", push.Failure.TRANSIENT),
    ("received unexpected HTTP status: 503 Service Unavailable", push.Failure.TRANSIENT),
    ("received unexpected HTTP status: 500 Internal Server Error", push.Failure.TRANSIENT),
    ("toomanyrequests: Rate exceeded", push.Failure.TRANSIENT),
    ("Cannot connect to the Docker daemon at unix:///var/run/docker.sock.", push.Failure.DAEMON),
    ('Get "http://localhost:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused',
     push.Failure.UNREACHABLE),
    ("dial tcp: lookup nosuch.example: no such host", push.Failure.UNREACHABLE),
    ("An image does not exist locally with the tag: r/x", push.Failure.OTHER),
    ("size: 429 layers", push.Failure.OTHER),
])
def test_push_failures_are_classified(output, kind):
    assert push.classify_failure(output) == kind


def test_parse_push_digest_takes_the_digest_line():
    assert push.parse_push_digest(push_ok(f"{ECR}/r:dev")) == DIGEST
    assert push.parse_push_digest("latest: Pushed\n") is None


def test_parse_manifest_verbose_reads_descriptor_and_refuses_indexes():
    assert push.parse_manifest_verbose(verbose_manifest("r:dev")) == DIGEST
    # an index: docker prints a list with one entry per platform manifest
    listing = json.dumps([json.loads(verbose_manifest("r:dev@" + DIGEST))])
    with pytest.raises(push.IndexManifest):
        push.parse_manifest_verbose(listing)
    with pytest.raises(push.IndexManifest):
        push.parse_manifest_verbose(verbose_manifest("r:dev", media_type=push.INDEX_TYPES[1]))
    with pytest.raises(ValueError):
        push.parse_manifest_verbose("no such manifest: r:dev")


@pytest.mark.parametrize("mutability, filters, immutable, mutable", [
    ("MUTABLE", (), [], ["latest", "dev", "v1.2.3"]),
    ("IMMUTABLE", (), ["latest", "dev", "v1.2.3"], []),
    # IMMUTABLE_WITH_EXCLUSION: tags matching a filter stay mutable
    ("IMMUTABLE_WITH_EXCLUSION", ("latest", "dev*"), ["v1.2.3", "git-abc1234", "xdev"],
     ["latest", "dev", "dev-20260102-030405", "devel"]),
    # MUTABLE_WITH_EXCLUSION: only tags matching a filter are immutable
    ("MUTABLE_WITH_EXCLUSION", ("v*", "*.*.*"), ["v1.2.3", "1.2.3"], ["latest", "dev", "1.2"]),
])
def test_tag_mutability_with_exclusion_filters(mutability, filters, immutable, mutable):
    repo = ecr.RepositoryInfo("r", mutability, filters)
    assert [t for t in immutable if not repo.is_immutable(t)] == []
    assert [t for t in mutable if repo.is_immutable(t)] == []


def test_wildcards_match_the_whole_tag_and_treat_dots_literally():
    assert ecr.wildcard_match("prod-*", "prod-1")
    assert ecr.wildcard_match("prod-*", "prod-")
    assert not ecr.wildcard_match("prod-*", "xprod-1")
    assert not ecr.wildcard_match("1.2", "102")


def test_describe_repositories_json_is_read_with_its_exclusion_filters():
    info = ecr.parse_describe_repositories(repository_json(
        mutability="IMMUTABLE_WITH_EXCLUSION", filters=("latest", "dev*")))
    assert info == ecr.RepositoryInfo("rag-worker", "IMMUTABLE_WITH_EXCLUSION", ("latest", "dev*"))


def test_cred_helper_is_found_by_host():
    """docker looks credHelpers up by the exact host key (config/configfile/file.go)."""
    helpers = {ECR: "ecr-login", "gcr.io": "gcloud", "bad.example": 7}
    assert DockerConfig(cred_helpers=helpers).cred_helper(ECR) == "ecr-login"
    assert DockerConfig(cred_helpers={f"https://{ECR}": "ecr-login"}).cred_helper(ECR) is None
    assert DockerConfig(cred_helpers=helpers).cred_helper("other.example") is None
    assert DockerConfig(cred_helpers=helpers).cred_helper("bad.example") is None
    assert DockerConfig(cred_helpers={}).cred_helper(ECR) is None


@pytest.mark.parametrize("content", [b"{not json", b'{"credHelpers": "ecr-login"}', b"[1]",
                                     '{"credHelpers": {}, "x": "\u00e9"}'.encode("latin-1")])
def test_an_unreadable_docker_config_means_no_credential_helper(fp, clean_env, content):
    """One reader of config.json (steps.read_docker_config): non-UTF-8 or malformed is nothing
    set, as for the current context, never a traceback."""
    (clean_env / "config.json").write_bytes(content)
    register_probe(fp)
    register_login(fp)
    register_describe(fp, stdout=repository_json())
    assert push.prepare(Runner(), build_plan()).helper is None


# --- login -------------------------------------------------------------------------------------


def test_ecr_login_feeds_the_password_on_stdin_and_never_shows_it(fp, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    register_probe(fp)
    seen = []
    register_login(fp, seen=seen)
    register_describe(fp, stdout=repository_json())
    pushing = push.prepare(Runner(), build_plan())

    assert seen == [PASSWORD.encode()]  # stdin, not argv
    login_calls = [c for c in fp.calls if "login" in c]
    assert login_calls and all(PASSWORD not in " ".join(map(str, c)) for c in login_calls)
    assert pushing.refs == tuple(refs_of(f"{ECR}/rag-worker"))
    out, err = capsys.readouterr()
    assert PASSWORD not in out + err + caplog.text
    assert f"logged in to {ECR}" in err
    assert "<password from aws ecr get-login-password>" in err


def test_login_message_names_the_aws_profile_and_endpoint(fp, capsys, monkeypatch):
    monkeypatch.setenv("AWS_PROFILE", "ci")
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECR", "http://127.0.0.1:18633")
    register_probe(fp)
    register_login(fp)
    register_describe(fp, stdout=repository_json())
    push.prepare(Runner(), build_plan())
    err = capsys.readouterr().err
    assert "AWS_PROFILE=ci" in err and "AWS_ENDPOINT_URL_ECR=http://127.0.0.1:18633" in err


def test_refused_docker_login_fails_without_leaking_the_password(fp, capsys):
    register_probe(fp)
    aws(fp, "get-login-password", "--region", "us-east-1", stdout=PASSWORD + "\n")
    # even if docker echoed the password, the message shows *** instead
    docker(fp, "login", "--username", "AWS", "--password-stdin", ECR, returncode=1,
           stderr=f"Error response from daemon: login attempt failed with status: 401 "
                  f"Unauthorized (password {PASSWORD})\n")
    with pytest.raises(CommandFailed) as err:
        push.prepare(Runner(), build_plan())
    message = str(err.value)
    assert "docker login to " + ECR in message and "401 Unauthorized" in message
    assert PASSWORD not in message and PASSWORD not in repr(err.value.args)
    out, errout = capsys.readouterr()
    assert PASSWORD not in out + errout
    assert fp.call_count([fp.program("aws"), "ecr", "describe-repositories", fp.any()]) == 0


@pytest.mark.parametrize("stderr, expected", [
    ('Unable to locate credentials. You can configure credentials by running "aws configure".',
     "no AWS credentials found"),
    ("An error occurred (ExpiredTokenException) when calling the GetAuthorizationToken operation: "
     "The security token included in the request is expired", "have expired"),
    ('Could not connect to the endpoint URL: "https://api.ecr.us-east-1.amazonaws.com/"',
     "cannot reach the ECR API for region us-east-1"),
    ("The config profile (nope) could not be found", "AWS profile 'nope' is not configured"),
    ("aws: error: argument operation: Invalid choice, valid choices are: ...", "too old"),
    ("An error occurred (AccessDeniedException) when calling the GetAuthorizationToken operation:"
     " User: arn:aws:iam::1:user/x is not authorized to perform: ecr:GetAuthorizationToken",
     "ecr:GetAuthorizationToken"),
])
def test_aws_login_failures_say_what_to_do(fp, stderr, expected):
    register_probe(fp)
    aws(fp, "get-login-password", "--region", "us-east-1", returncode=255, stderr=stderr + "\n")
    with pytest.raises(CommandFailed) as err:
        push.prepare(Runner(), build_plan())
    assert expected in str(err.value)
    assert fp.call_count([fp.program("docker"), "login", fp.any()]) == 0


def test_missing_aws_cli_names_how_to_install_it(fp, monkeypatch):
    register_probe(fp)
    monkeypatch.setenv("AWS_CLI", "ragbuild-test-no-such-aws")
    with pytest.raises(ToolMissing) as err:
        push.prepare(Runner(), build_plan())
    assert "pip install awscli" in str(err.value) and "AWS CLI v2" in str(err.value)


def install_fake_helper(tmp_path, monkeypatch, name="ecr-login"):
    bin_dir = tmp_path / "helper-bin"
    bin_dir.mkdir()
    helper = bin_dir / f"docker-credential-{name}"
    helper.write_text("#!/bin/sh\nexit 1\n")
    helper.chmod(0o755)
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    monkeypatch.setenv("PATH", path)
    from plumbum import local

    monkeypatch.setitem(local.env, "PATH", path)  # plumbum's own copy, which it resolves on


def register_helper_get(fp, name="ecr-login", stdout=None, returncode=0, stderr=""):
    answer = json.dumps({"ServerURL": ECR, "Username": "AWS", "Secret": PASSWORD})
    fp.register([fp.program(f"docker-credential-{name}"), "get"],
                stdout=answer if stdout is None else stdout, returncode=returncode, stderr=stderr)


def test_configured_credential_helper_skips_login(fp, clean_env, capsys, tmp_path, monkeypatch):
    (clean_env / "config.json").write_text(json.dumps({"credHelpers": {ECR: "ecr-login"}}))
    install_fake_helper(tmp_path, monkeypatch)
    register_probe(fp)
    register_describe(fp, stdout=repository_json())
    register_helper_get(fp)
    pushing = push.prepare(Runner(), build_plan())
    assert pushing.helper == "ecr-login"
    assert fp.call_count([fp.program("aws"), "ecr", "get-login-password", fp.any()]) == 0
    assert fp.call_count([fp.program("docker"), "login", fp.any()]) == 0
    err = capsys.readouterr().err
    assert "not logging in" in err and "docker-credential-ecr-login" in err


def test_missing_credential_helper_stops_before_the_build(fp, clean_env):
    """Known up front: docker would push without credentials after the whole build."""
    (clean_env / "config.json").write_text(json.dumps({"credHelpers": {ECR: "ecr-login"}}))
    register_probe(fp)
    with pytest.raises(PushFailed) as err:
        push.prepare(Runner(), build_plan())
    message = str(err.value)
    assert "docker-credential-ecr-login, which credHelpers in" in message
    assert "is not installed (not on PATH)" in message and "amazon-ecr-credential-helper" in message
    assert fp.call_count([fp.program("aws"), fp.any()]) == 0  # no login, no pre-flight


def test_plain_registry_gets_no_login_and_no_preflight(fp):
    register_probe(fp)
    pushing = push.prepare(Runner(), build_plan(f"{PLAIN}/rag-worker"))
    assert pushing.refs == tuple(refs_of(f"{PLAIN}/rag-worker"))
    # the attestation probe and the daemon's registry configuration; no login, no aws
    assert [c[1] for c in fp.calls] == ["build", "info"]


@pytest.mark.parametrize("buildx", [True, False])
def test_buildx_builds_drop_attestations(fp, buildx):
    register_probe(fp, buildx=buildx)
    pushing = push.prepare(Runner(), build_plan(f"{PLAIN}/rag-worker"))
    assert pushing.no_attestations is buildx


# --- pre-flight --------------------------------------------------------------------------------


def test_missing_repository_names_the_create_command(fp):
    register_probe(fp)
    register_login(fp)
    register_describe(fp, returncode=254, stderr=(
        "An error occurred (RepositoryNotFoundException) when calling the DescribeRepositories "
        "operation: The repository with name 'rag-worker' does not exist in the registry with id "
        "'123456789012'\n"))
    with pytest.raises(PushFailed) as err:
        push.prepare(Runner(), build_plan())
    assert ("aws ecr create-repository --repository-name rag-worker --region us-east-1"
            in str(err.value))


def test_immutable_repository_stops_on_existing_tags(fp):
    register_probe(fp)
    register_login(fp)
    register_describe(fp, stdout=repository_json(mutability="IMMUTABLE"))
    register_list_images(fp, ["latest", "dev", "dev-20250101-000000"])
    with pytest.raises(PushFailed) as err:
        push.prepare(Runner(), build_plan())
    message = str(err.value)
    assert "the planned tags dev, latest cannot be pushed" in message
    assert "--skip-existing-immutable" in message
    assert f"dev-{TS}" not in message and "git-abc1234" not in message


def test_skip_existing_immutable_leaves_them_out_of_the_push(fp, capsys):
    register_probe(fp)
    register_login(fp)
    register_describe(fp, stdout=repository_json(mutability="IMMUTABLE"))
    register_list_images(fp, ["latest", "dev"])
    plan = build_plan(skip_existing_immutable=True)
    pushing = push.prepare(Runner(), plan)
    base = f"{ECR}/rag-worker"
    assert pushing.refs == (f"{base}:dev-{TS}", f"{base}:git-abc1234")
    assert pushing.skipped == (f"{base}:dev", f"{base}:latest")
    assert plan.refs == tuple(refs_of(base))  # the build still tags them all
    assert "skipping tags that rag-worker keeps immutable" in capsys.readouterr().err


def test_exclusion_filters_decide_which_tags_conflict(fp):
    register_probe(fp)
    register_login(fp)
    register_describe(fp, stdout=repository_json(mutability="IMMUTABLE_WITH_EXCLUSION",
                                                 filters=("latest",)))
    register_list_images(fp, ["latest", "dev"])
    with pytest.raises(PushFailed) as err:
        push.prepare(Runner(), build_plan())
    assert "the planned tags dev cannot be pushed" in str(err.value)  # latest is excluded: mutable


def test_mutable_repository_needs_no_tag_listing(fp):
    register_probe(fp)
    register_login(fp)
    register_describe(fp, stdout=repository_json(mutability="MUTABLE_WITH_EXCLUSION",
                                                 filters=("v*",)))
    pushing = push.prepare(Runner(), build_plan())  # no v* tags planned
    assert fp.call_count([fp.program("aws"), "ecr", "list-images", fp.any()]) == 0
    assert len(pushing.refs) == 4


def test_fresh_immutable_repository_refuses_the_moving_tags(fp):
    """latest and the env tag must move with every build: an immutable repository would freeze
    them at their first push, so they stop the run even before they exist there."""
    register_probe(fp)
    register_login(fp)
    register_describe(fp, stdout=repository_json(mutability="IMMUTABLE"))
    register_list_images(fp, [])
    with pytest.raises(PushFailed) as err:
        push.prepare(Runner(), build_plan())
    message = str(err.value)
    assert "the planned tags dev, latest cannot be pushed" in message
    assert f"dev-{TS}" not in message and "git-abc1234" not in message


def test_fresh_immutable_repository_with_skip_pushes_only_new_unique_tags(fp):
    register_probe(fp)
    register_login(fp)
    register_describe(fp, stdout=repository_json(mutability="IMMUTABLE"))
    register_list_images(fp, [])
    pushing = push.prepare(Runner(), build_plan(skip_existing_immutable=True))
    base = f"{ECR}/rag-worker"
    assert pushing.refs == (f"{base}:dev-{TS}", f"{base}:git-abc1234")


# --- push --------------------------------------------------------------------------------------


def test_pushes_each_ref_then_verifies_and_prints_the_digest_ref(fp, capsys):
    plan = build_plan(f"{PLAIN}/rag-worker")
    for ref in plan.refs:
        register_push(fp, ref)
    for ref in plan.refs:
        register_inspect(fp, ref)
    sleep = FakeSleep()
    pinned = push_and_verify(prepared(plan, sleep), Runner())
    assert pinned == f"{PLAIN}/rag-worker@{DIGEST}"
    assert [c[1:] for c in fp.calls if c[1] == "push"] == [["push", r] for r in plan.refs]
    assert not any("--all-tags" in c for c in fp.calls)
    assert all(c[1:3] == ["manifest", "inspect"] for c in fp.calls if c[1] != "push")
    assert sleep.delays == []
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == pinned
    assert f"dev-{TS}: digest: {DIGEST}" in out  # tee: progress shown


def test_the_daemons_insecure_registries_are_inspected_with_insecure():
    assert "--insecure" in push.manifest_inspect_command("vm:5000/r:dev", True).argv
    ecr = push.manifest_inspect_command(f"{ECR}/r:dev", False)
    assert "--insecure" not in ecr.argv
    assert ("DOCKER_CLI_EXPERIMENTAL", "enabled") in ecr.env


def test_transient_failures_are_retried_with_backoff(fp, capsys):
    plan = build_plan(f"{PLAIN}/rag-worker", latest_policy="never")
    first, *rest = plan.refs
    register_push(fp, first, stdout="read: connection reset by peer\n", returncode=1)
    register_push(fp, first, stdout="received unexpected HTTP status: 502 Bad Gateway\n",
                  returncode=1)
    register_push(fp, first)
    for ref in rest:
        register_push(fp, ref)
    for ref in plan.refs:
        register_inspect(fp, ref)
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


@pytest.mark.parametrize("registry, output, expected", [
    (f"{PLAIN}/rag-worker", "unauthorized: authentication required",
     f"run `docker login {PLAIN}`"),
    (f"{PLAIN}/rag-worker", "no basic auth credentials", f"run `docker login {PLAIN}`"),
    (f"{ECR}/rag-worker", "denied: Your authorization token has expired. Reauthenticate.",
     "the ECR token may have expired"),
    (f"{ECR}/rag-worker", "name unknown: The repository with name 'rag-worker' does not exist",
     "aws ecr create-repository --repository-name rag-worker --region us-east-1"),
    (f"{PLAIN}/rag-worker", "repository rag-worker not found", f"{PLAIN} has no repository"),
    (f"{PLAIN}/rag-worker", "dial tcp 10.0.0.1:5000: connect: connection refused",
     f"cannot reach {PLAIN}"),
    (f"{ECR}/rag-worker", "tag invalid: The image tag 'dev' already exists in the 'rag-worker' "
     "repository and cannot be overwritten because the repository is immutable.",
     "already exists and the repository's tags are immutable"),
])
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


def test_failed_push_lists_what_was_and_was_not_pushed(fp):
    plan = build_plan(f"{PLAIN}/rag-worker")
    a, b, c, d = plan.refs
    register_push(fp, a)
    register_push(fp, b)
    register_push(fp, c, stdout="denied: requested access to the resource is denied\n",
                  returncode=1)
    with pytest.raises(PushFailed) as err:
        push_and_verify(prepared(plan), Runner())
    assert err.value.exit_code == 1
    message = str(err.value)
    assert f"pushed: {a}, {b}\n" in message
    assert f"not pushed: {c}, {d}" in message
    assert fp.call_count([fp.program("docker"), "push", d]) == 0


# --- verification ------------------------------------------------------------------------------


def test_registry_digest_must_match_what_push_reported(fp):
    plan = build_plan(f"{PLAIN}/rag-worker", latest_policy="never")
    for ref in plan.refs:
        register_push(fp, ref)
    register_inspect(fp, plan.refs[0])
    register_inspect(fp, plan.refs[1], digest=OTHER_DIGEST)
    register_inspect(fp, plan.refs[2])
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
    register_inspect(fp, plan.refs[0])
    register_inspect(fp, plan.refs[1], digest=OTHER_DIGEST)
    register_inspect(fp, plan.refs[2])
    with pytest.raises(PushFailed) as err:
        push_and_verify(prepared(plan), Runner())
    assert "pushed as different manifests" in str(err.value)


def test_index_manifest_is_refused_naming_sagemaker(fp):
    plan = build_plan(f"{PLAIN}/rag-worker", latest_policy="never", env="staging")
    for ref in plan.refs:
        register_push(fp, ref)
    listing = json.dumps([json.loads(verbose_manifest(plan.refs[0] + "@" + DIGEST))])
    register_inspect(fp, plan.refs[0], stdout=listing)
    for ref in plan.refs[1:]:
        register_inspect(fp, ref)
    with pytest.raises(PushFailed) as err:
        push_and_verify(prepared(plan), Runner())
    message = str(err.value)
    assert "SageMaker" in message and plan.refs[0] in message
    assert "--provenance=false" in message


# --- dry run -----------------------------------------------------------------------------------


def test_dry_run_prints_the_whole_push_and_starts_no_process(fp, capsys):
    fp.allow_unregistered(False)
    plan = build_plan(dry_run=True)
    runner = DryRunner()
    pushing = push.prepare(runner, plan)
    push_and_verify(push.Context(plan, pushing, read_docker_config(), os.environ, FakeSleep()),
                    runner)
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == "docker build --help"  # the probe is printed like any other command
    assert lines[1] == "aws ecr get-login-password --region us-east-1"
    assert lines[2] == (f"docker login --username AWS --password-stdin {ECR} "
                        "< <password from aws ecr get-login-password>")
    assert lines[3].startswith("aws ecr describe-repositories --repository-names rag-worker")
    assert lines[4] == "docker info --format '{{json .RegistryConfig}}'"
    assert lines[5:9] == [f"docker push {ref}" for ref in plan.refs]
    assert lines[9:] == [f"DOCKER_CLI_EXPERIMENTAL=enabled docker manifest inspect --verbose {ref}"
                         for ref in plan.refs]
    assert PASSWORD not in out
    assert len(fp.calls) == 0  # not even the probe ran
    # what the dry run cannot know is said on stderr
    assert "a real run adds --provenance=false --sbom=false" in err
    assert "lists the repository's tags (aws ecr list-images)" in err
    assert f"dry run: a real run would ask {ECR}/v2/ (HTTPS) whether it answers" in err
    assert "pushed and verified" not in err and "logged in" not in err  # a real run's findings
    assert not pushing.no_attestations


def test_dry_run_warns_about_a_missing_credential_helper_and_shows_the_rest(fp, clean_env,
                                                                           capsys):
    """The dry run's rule for a tool a real run needs: a warning, and the plan goes on."""
    fp.allow_unregistered(False)
    (clean_env / "config.json").write_text(json.dumps({"credHelpers": {ECR: "ecr-login"}}))
    runner = DryRunner()
    pushing = push.prepare(runner, build_plan(dry_run=True))
    out, err = capsys.readouterr()
    assert ("warning: docker-credential-ecr-login, which credHelpers in" in err
            and "(a real run stops here)" in err)
    assert out.splitlines()[1].startswith("aws ecr describe-repositories ")
    assert pushing.helper == "ecr-login" and len(fp.calls) == 0


def test_buildx_plans_skip_the_attestation_probe(fp):
    fp.allow_unregistered(False)
    plan = build_plan(f"{PLAIN}/rag-worker", builder="remote")
    assert plan.buildx
    fakes.register_registry_config(fp)
    assert push.prepare(Runner(), plan).no_attestations
    assert [c[1] for c in fp.calls] == ["info"]  # the daemon's registry configuration only


# --- through the CLI ---------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "Dockerfile").write_text("FROM python:3.11-slim\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(int(MOMENT.timestamp())))
    return tmp_path


def register_git(fp):
    fakes.register_git(fp, stdout="abc1234\n")


def cli_build_argv(ref):
    return ["docker", "build", "-f", "Dockerfile", *sum((["-t", r] for r in ref), []),
            "--build-arg", "ENVIRONMENT=dev", "--build-arg", "GIT_COMMIT=abc1234",
            "--build-arg", f"BUILD_TIMESTAMP={TS}",
            "--label", f"org.opencontainers.image.created={format_created(MOMENT)}",
            "--label", f"org.ragbuild.repository={ref[0].rsplit(':', 1)[0]}"]


def test_failed_build_never_pushes(fp, project, capsys):
    register_git(fp)
    register_probe(fp)
    register_login(fp)
    register_describe(fp, stdout=repository_json())
    refs = refs_of(f"{ECR}/rag-worker")
    fp.register([fp.program("docker"), *cli_build_argv(refs)[1:], "."], returncode=1)
    docker(fp, "version", "--format", "{{.Client.Version}}", stdout="20.10.24\n")
    code = cli.main(["--env", "dev", "--registry", f"{ECR}/rag-worker", "--push"])
    assert code == 1
    assert fp.call_count([fp.program("docker"), "push", fp.any()]) == 0
    assert fp.call_count([fp.program("docker"), "manifest", fp.any()]) == 0
    out, err = capsys.readouterr()
    assert "docker build failed" in err
    assert PASSWORD not in out + err


def test_failed_preflight_never_builds(fp, project, capsys):
    register_git(fp)
    register_probe(fp)
    register_login(fp)
    register_describe(fp, returncode=254,
                      stderr="An error occurred (RepositoryNotFoundException) ...\n")
    code = cli.main(["--env", "dev", "--registry", f"{ECR}/rag-worker", "--push"])
    assert code == 1
    assert fp.call_count([fp.program("docker"), "build", "-f", fp.any()]) == 0
    assert fp.call_count([fp.program("docker"), "push", fp.any()]) == 0
    assert "aws ecr create-repository" in capsys.readouterr().err


def test_full_ecr_push_through_the_cli_keeps_the_password_out_of_every_output(
        fp, project, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    register_git(fp)
    register_probe(fp, buildx=True)
    seen = []
    register_login(fp, seen=seen)
    register_describe(fp, stdout=repository_json())
    refs = refs_of(f"{ECR}/rag-worker")
    fp.register([fp.program("docker"), *cli_build_argv(refs)[1:], "--provenance=false",
                 "--sbom=false", "."])
    tags = json.dumps(refs)
    docker(fp, "image", "inspect", "--format",
           "{{.Id}} {{.Size}} {{json .RepoTags}} {{json .Config.Labels}}", refs[0],
           stdout=f"sha256:{'ee' * 32} 123456 {tags}\n")
    for ref in refs:
        register_push(fp, ref)
    for ref in refs:
        register_inspect(fp, ref)
    code = cli.main(["--env", "dev", "--registry", f"{ECR}/rag-worker", "--push"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert seen == [PASSWORD.encode()]
    assert out.splitlines()[-1] == f"{ECR}/rag-worker@{DIGEST}"
    assert PASSWORD not in out + err + caplog.text
    # every push comes after the build, which dropped buildx's attestations
    calls = [list(c) for c in fp.calls]
    build_at = [i for i, c in enumerate(calls) if "--provenance=false" in c]
    pushes_at = [i for i, c in enumerate(calls) if c[1] == "push"]
    assert len(build_at) == 1 and len(pushes_at) == 4 and min(pushes_at) > build_at[0]


# --- failures in the middle of a push ----------------------------------------------------------


def test_a_push_without_a_digest_is_listed_as_pushed(fp):
    """docker push exited 0, so the ref is on the registry: it is not "not pushed"."""
    plan = build_plan(f"{PLAIN}/rag-worker")
    a, b, c, d = plan.refs
    register_push(fp, a)
    register_push(fp, b, stdout="b: Pushed\n")  # exit 0, no digest line
    with pytest.raises(PushFailed) as err:
        push_and_verify(prepared(plan), Runner())
    message = str(err.value)
    assert "succeeded but printed no digest" in message
    assert f"pushed: {a}, {b} (digest unknown)\n" in message
    assert message.endswith(f"not pushed: {c}, {d}")


@pytest.mark.parametrize("stop", ["child", "sleep"])
def test_ctrl_c_during_the_pushes_lists_what_was_pushed_and_exits_130(fp, monkeypatch, stop):
    plan = build_plan(f"{PLAIN}/rag-worker")
    a, b, c, d = plan.refs
    register_push(fp, a)
    if stop == "child":  # Ctrl-C while docker push runs: the runner stops it, raises Interrupted
        real_run = Runner.run

        def run(self, cmd, **kw):
            if cmd.argv[-1] == b:
                raise Interrupted("interrupted; stopped docker push")
            return real_run(self, cmd, **kw)

        monkeypatch.setattr(Runner, "run", run)
        sleep = FakeSleep()
    else:  # Ctrl-C while waiting to retry
        register_push(fp, b, stdout="read: connection reset by peer\n", returncode=1)

        def sleep(seconds):
            raise KeyboardInterrupt

    with pytest.raises(Interrupted) as err:
        push.push(Runner(), prepared(plan, sleep), {})
    assert err.value.exit_code == 130
    assert str(err.value).splitlines()[1:] == [f"pushed: {a}", f"not pushed: {b}, {c}, {d}"]


# --- odd registry answers ----------------------------------------------------------------------


@pytest.mark.parametrize("descriptor", [{"mediaType": DOCKER_MANIFEST, "digest": 12},
                                        {"mediaType": DOCKER_MANIFEST, "digest": None},
                                        {"mediaType": DOCKER_MANIFEST}])
def test_a_descriptor_without_a_string_digest_is_a_verification_problem(fp, descriptor):
    plan = build_plan(f"{PLAIN}/rag-worker", latest_policy="never")
    for ref in plan.refs:
        register_push(fp, ref)
        register_inspect(fp, ref, stdout=json.dumps({"Descriptor": descriptor}))
    with pytest.raises(PushFailed) as err:
        push_and_verify(prepared(plan), Runner())
    assert "cannot read `docker manifest inspect --verbose`: no digest in the Descriptor" in str(
        err.value)


@pytest.mark.parametrize("filters", [[{"filterType": "WILDCARD", "filter": 7}], ["latest"],
                                     {"filter": "x"}])
def test_odd_exclusion_filters_are_a_one_line_failure(fp, filters):
    register_probe(fp)
    register_login(fp)
    repo = json.loads(repository_json(mutability="IMMUTABLE_WITH_EXCLUSION"))
    repo["repositories"][0]["imageTagMutabilityExclusionFilters"] = filters
    register_describe(fp, stdout=json.dumps(repo))
    with pytest.raises(CommandFailed, match="cannot read `aws ecr describe-repositories` output"):
        push.prepare(Runner(), build_plan())


@pytest.mark.parametrize("stdout", ['{"imageIds": "latest"}', '{"imageIds": [1]}', "[]"])
def test_odd_list_images_output_is_a_one_line_failure(fp, stdout):
    register_probe(fp)
    register_login(fp)
    register_describe(fp, stdout=repository_json(mutability="IMMUTABLE"))
    aws(fp, "list-images", fp.any(), stdout=stdout)
    with pytest.raises(CommandFailed, match="cannot read `aws ecr list-images` output"):
        push.prepare(Runner(), build_plan())


def test_a_daemon_that_goes_away_during_the_push_gets_the_daemon_message(fp):
    plan = build_plan(f"{PLAIN}/rag-worker")
    register_push(fp, plan.refs[0], returncode=1, stdout=(
        "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker "
        "daemon running?\n"))
    with pytest.raises(PushFailed) as err:
        push_and_verify(prepared(plan), Runner())
    from ragbuild.builders import daemon_unreachable

    assert str(err.value).startswith(f"{plan.refs[0]}: {daemon_unreachable(None)}")


def test_fips_is_read_from_the_registry_once():
    assert parse_registry("123456789012.dkr.ecr-fips.us-east-1.amazonaws.com/r").fips
    assert not parse_registry(f"{ECR}/r").fips
    assert not parse_registry(f"{PLAIN}/r").fips


# --- semver channels in an immutable repository ------------------------------------------------


def test_semver_channels_are_moving_tags_in_an_immutable_repository(fp):
    """<major> and <major>.<minor> move with every release of their line, like latest."""
    register_probe(fp)
    register_login(fp)
    register_describe(fp, stdout=repository_json(mutability="IMMUTABLE"))
    register_list_images(fp, [])
    plan = build_plan(version="1.4.1", env="prod", semver_tags=True, latest_policy="never")
    assert "1.4" in plan.tags and "1" in plan.tags
    with pytest.raises(PushFailed) as err:
        push.prepare(Runner(), plan)
    assert "the planned tags 1.4, 1, prod cannot be pushed" in str(err.value)


def test_moving_tags_without_semver_tags_are_latest_and_the_env():
    assert build_plan(version="1.4.1", env="prod").moving_tags == {"latest", "prod"}
    assert build_plan(version="1.4.1", env="prod", semver_tags=True).moving_tags == {
        "latest", "prod", "1", "1.4"}
