"""ECR before a push (ecr.py): tag mutability, login with the password on stdin, the
repository pre-flight and the immutable tags, against faked aws and docker calls."""

import json
import os
import logging

import pytest

from ragbuild import ecr, push_preflight
from ragbuild.errors import CommandFailed, PushFailed, ToolMissing
from ragbuild.plan import build_command
from ragbuild.run.runner import Runner

from registry_fakes import *  # noqa: F401,F403 (the shared fakes, clean_env included)
from registry_fakes import clean_env  # noqa: F401 (autouse)


# --- tag mutability ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mutability, filters, immutable, mutable",
    [
        ("MUTABLE", (), [], ["latest", "dev", "v1.2.3"]),
        ("IMMUTABLE", (), ["latest", "dev", "v1.2.3"], []),
        # IMMUTABLE_WITH_EXCLUSION: tags matching a filter stay mutable
        (
            "IMMUTABLE_WITH_EXCLUSION",
            ("latest", "dev*"),
            ["v1.2.3", "git-abc1234", "xdev"],
            ["latest", "dev", "dev-20260102-030405", "devel"],
        ),
        # MUTABLE_WITH_EXCLUSION: only tags matching a filter are immutable
        ("MUTABLE_WITH_EXCLUSION", ("v*", "*.*.*"), ["v1.2.3", "1.2.3"], ["latest", "dev", "1.2"]),
    ],
)
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
    info = ecr.parse_describe_repositories(
        repository_json(mutability="IMMUTABLE_WITH_EXCLUSION", filters=("latest", "dev*"))
    )
    assert info == ecr.RepositoryInfo("rag-worker", "IMMUTABLE_WITH_EXCLUSION", ("latest", "dev*"))


# --- login -------------------------------------------------------------------------------------


def test_ecr_login_feeds_the_password_on_stdin_and_never_shows_it(fp, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    register_preflight(fp)
    seen = []
    register_login(fp, seen=seen)
    register_describe(fp, stdout=repository_json())
    pushing = push_preflight.prepare(Runner(), build_plan())

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
    register_preflight(fp)
    register_login(fp)
    register_describe(fp, stdout=repository_json())
    push_preflight.prepare(Runner(), build_plan())
    err = capsys.readouterr().err
    assert "AWS_PROFILE=ci" in err and "AWS_ENDPOINT_URL_ECR=http://127.0.0.1:18633" in err


def test_refused_docker_login_fails_without_leaking_the_password(fp, capsys):
    register_preflight(fp)
    aws(fp, "get-login-password", "--region", "us-east-1", stdout=PASSWORD + "\n")
    # even if docker echoed the password, the message shows *** instead
    docker(
        fp,
        "login",
        "--username",
        "AWS",
        "--password-stdin",
        ECR,
        returncode=1,
        stderr=f"Error response from daemon: login attempt failed with status: 401 "
        f"Unauthorized (password {PASSWORD})\n",
    )
    with pytest.raises(CommandFailed) as err:
        push_preflight.prepare(Runner(), build_plan())
    message = str(err.value)
    assert "docker login to " + ECR in message and "401 Unauthorized" in message
    assert PASSWORD not in message and PASSWORD not in repr(err.value.args)
    out, errout = capsys.readouterr()
    assert PASSWORD not in out + errout
    assert fp.call_count([fp.program("aws"), "ecr", "describe-repositories", fp.any()]) == 0


@pytest.mark.parametrize(
    "stderr, expected",
    [
        (
            'Unable to locate credentials. You can configure credentials by running "aws configure".',
            "no AWS credentials found",
        ),
        (
            "An error occurred (ExpiredTokenException) when calling the GetAuthorizationToken operation: "
            "The security token included in the request is expired",
            "have expired",
        ),
        (
            'Could not connect to the endpoint URL: "https://api.ecr.us-east-1.amazonaws.com/"',
            "cannot reach the ECR API for region us-east-1",
        ),
        ("The config profile (nope) could not be found", "AWS profile 'nope' is not configured"),
        ("aws: error: argument operation: Invalid choice, valid choices are: ...", "too old"),
        (
            "An error occurred (AccessDeniedException) when calling the GetAuthorizationToken operation:"
            " User: arn:aws:iam::1:user/x is not authorized to perform: ecr:GetAuthorizationToken",
            "ecr:GetAuthorizationToken",
        ),
    ],
)
def test_aws_login_failures_say_what_to_do(fp, stderr, expected):
    register_preflight(fp)
    aws(fp, "get-login-password", "--region", "us-east-1", returncode=255, stderr=stderr + "\n")
    with pytest.raises(CommandFailed) as err:
        push_preflight.prepare(Runner(), build_plan())
    assert expected in str(err.value)
    assert fp.call_count([fp.program("docker"), "login", fp.any()]) == 0


def test_missing_aws_cli_names_how_to_install_it(fp, monkeypatch):
    register_preflight(fp)
    monkeypatch.setenv("AWS_CLI", "ragbuild-test-no-such-aws")
    with pytest.raises(ToolMissing) as err:
        push_preflight.prepare(Runner(), build_plan())
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
    fp.register(
        [fp.program(f"docker-credential-{name}"), "get"],
        stdout=answer if stdout is None else stdout,
        returncode=returncode,
        stderr=stderr,
    )


def test_configured_credential_helper_skips_login(fp, clean_env, capsys, tmp_path, monkeypatch):
    (clean_env / "config.json").write_text(json.dumps({"credHelpers": {ECR: "ecr-login"}}))
    install_fake_helper(tmp_path, monkeypatch)
    register_preflight(fp)
    register_describe(fp, stdout=repository_json())
    register_helper_get(fp)
    pushing = push_preflight.prepare(Runner(), build_plan())
    assert pushing.helper == "ecr-login"
    assert fp.call_count([fp.program("aws"), "ecr", "get-login-password", fp.any()]) == 0
    assert fp.call_count([fp.program("docker"), "login", fp.any()]) == 0
    err = capsys.readouterr().err
    assert "not logging in" in err and "docker-credential-ecr-login" in err


def test_missing_credential_helper_stops_before_the_build(fp, clean_env):
    """Known up front: docker would push without credentials after the whole build."""
    (clean_env / "config.json").write_text(json.dumps({"credHelpers": {ECR: "ecr-login"}}))
    register_preflight(fp)
    with pytest.raises(PushFailed) as err:
        push_preflight.prepare(Runner(), build_plan())
    message = str(err.value)
    assert "docker-credential-ecr-login, which credHelpers in" in message
    assert "is not installed (not on PATH)" in message and "amazon-ecr-credential-helper" in message
    assert fp.call_count([fp.program("aws"), fp.any()]) == 0  # no login, no pre-flight


def test_plain_registry_gets_no_login_and_no_preflight(fp):
    register_preflight(fp)
    pushing = push_preflight.prepare(Runner(), build_plan(f"{PLAIN}/rag-worker"))
    assert pushing.refs == tuple(refs_of(f"{PLAIN}/rag-worker"))
    # no login, no aws, no probe of the client; no docker info but for the daemon's proxy
    # settings: verified HTTPS answered
    assert [c[1:3] for c in fp.calls] == [["info", "--format"]]


def test_a_plain_build_that_pushes_turns_buildx_default_attestations_off(fp):
    """A plain `docker build` may be buildx (docker >= 23 with the plugin), whose default
    provenance would make the push an image index: it gets BUILDX_NO_DEFAULT_ATTESTATIONS=1
    (the classic builder ignores it) instead of a `docker build --help` probe; a build that
    pushes nothing keeps its environment as it was."""
    register_preflight(fp)
    plan = build_plan(f"{PLAIN}/rag-worker")
    pushing = push_preflight.prepare(Runner(), plan)
    assert not plan.buildx
    assert [c[1:3] for c in fp.calls] == [["info", "--format"]]  # the daemon's proxy settings
    cmd = build_command(plan, pushing)
    assert dict(cmd.env) == {"DOCKER_BUILDKIT": "1", "BUILDX_NO_DEFAULT_ATTESTATIONS": "1"}
    assert "--provenance=false" not in cmd.argv  # the classic builder would refuse the flag
    assert dict(build_command(plan).env) == {"DOCKER_BUILDKIT": "1"}
    assert cmd.display().startswith(
        "DOCKER_BUILDKIT=1 BUILDX_NO_DEFAULT_ATTESTATIONS=1 docker build "
    )


# --- pre-flight --------------------------------------------------------------------------------


def test_missing_repository_names_the_create_command(fp):
    register_preflight(fp)
    register_login(fp)
    register_describe(
        fp,
        returncode=254,
        stderr=(
            "An error occurred (RepositoryNotFoundException) when calling the DescribeRepositories "
            "operation: The repository with name 'rag-worker' does not exist in the registry with id "
            "'123456789012'\n"
        ),
    )
    with pytest.raises(PushFailed) as err:
        push_preflight.prepare(Runner(), build_plan())
    assert "aws ecr create-repository --repository-name rag-worker --region us-east-1" in str(
        err.value
    )


def test_immutable_repository_stops_on_existing_tags(fp):
    register_preflight(fp)
    register_login(fp)
    register_describe(fp, stdout=repository_json(mutability="IMMUTABLE"))
    register_list_images(fp, ["latest", "dev", "dev-20250101-000000"])
    with pytest.raises(PushFailed) as err:
        push_preflight.prepare(Runner(), build_plan())
    message = str(err.value)
    assert "the planned tags dev, latest cannot be pushed" in message
    assert "--skip-existing-immutable" in message
    assert f"dev-{TS}" not in message and "git-abc1234" not in message


def test_skip_existing_immutable_leaves_them_out_of_the_push(fp, capsys):
    register_preflight(fp)
    register_login(fp)
    register_describe(fp, stdout=repository_json(mutability="IMMUTABLE"))
    register_list_images(fp, ["latest", "dev"])
    plan = build_plan(skip_existing_immutable=True)
    pushing = push_preflight.prepare(Runner(), plan)
    base = f"{ECR}/rag-worker"
    assert pushing.refs == (f"{base}:dev-{TS}", f"{base}:git-abc1234")
    assert pushing.skipped == (f"{base}:dev", f"{base}:latest")
    assert plan.refs == tuple(refs_of(base))  # the build still tags them all
    assert "skipping tags that rag-worker keeps immutable" in capsys.readouterr().err


def test_exclusion_filters_decide_which_tags_conflict(fp):
    register_preflight(fp)
    register_login(fp)
    register_describe(
        fp, stdout=repository_json(mutability="IMMUTABLE_WITH_EXCLUSION", filters=("latest",))
    )
    register_list_images(fp, ["latest", "dev"])
    with pytest.raises(PushFailed) as err:
        push_preflight.prepare(Runner(), build_plan())
    assert "the planned tags dev cannot be pushed" in str(err.value)  # latest is excluded: mutable


def test_mutable_repository_needs_no_tag_listing(fp):
    register_preflight(fp)
    register_login(fp)
    register_describe(
        fp, stdout=repository_json(mutability="MUTABLE_WITH_EXCLUSION", filters=("v*",))
    )
    pushing = push_preflight.prepare(Runner(), build_plan())  # no v* tags planned
    assert fp.call_count([fp.program("aws"), "ecr", "list-images", fp.any()]) == 0
    assert len(pushing.refs) == 4


def test_fresh_immutable_repository_refuses_the_moving_tags(fp):
    """latest and the env tag must move with every build: an immutable repository would freeze
    them at their first push, so they stop the run even before they exist there."""
    register_preflight(fp)
    register_login(fp)
    register_describe(fp, stdout=repository_json(mutability="IMMUTABLE"))
    register_list_images(fp, [])
    with pytest.raises(PushFailed) as err:
        push_preflight.prepare(Runner(), build_plan())
    message = str(err.value)
    assert "the planned tags dev, latest cannot be pushed" in message
    assert f"dev-{TS}" not in message and "git-abc1234" not in message


def test_fresh_immutable_repository_with_skip_pushes_only_new_unique_tags(fp):
    register_preflight(fp)
    register_login(fp)
    register_describe(fp, stdout=repository_json(mutability="IMMUTABLE"))
    register_list_images(fp, [])
    pushing = push_preflight.prepare(Runner(), build_plan(skip_existing_immutable=True))
    base = f"{ECR}/rag-worker"
    assert pushing.refs == (f"{base}:dev-{TS}", f"{base}:git-abc1234")


# --- semver channels in an immutable repository ------------------------------------------------


def test_semver_channels_are_moving_tags_in_an_immutable_repository(fp):
    """<major> and <major>.<minor> move with every release of their line, like latest."""
    register_preflight(fp)
    register_login(fp)
    register_describe(fp, stdout=repository_json(mutability="IMMUTABLE"))
    register_list_images(fp, [])
    plan = build_plan(version="1.4.1", env="prod", semver_tags=True, latest_policy="never")
    assert "1.4" in plan.tags and "1" in plan.tags
    with pytest.raises(PushFailed) as err:
        push_preflight.prepare(Runner(), plan)
    assert "the planned tags 1.4, 1, prod cannot be pushed" in str(err.value)


def test_moving_tags_without_semver_tags_are_latest_and_the_env():
    assert build_plan(version="1.4.1", env="prod").moving_tags == {"latest", "prod"}
    assert build_plan(version="1.4.1", env="prod", semver_tags=True).moving_tags == {
        "latest",
        "prod",
        "1",
        "1.4",
    }


# --- the registry's account (issue 23) ------------------------------------------------------------

CENTRAL = "210987654321.dkr.ecr.us-east-1.amazonaws.com"  # a central registry, not the caller's


@pytest.mark.parametrize(
    "host, account",
    [
        (ECR, "123456789012"),
        ("210987654321.dkr.ecr.eu-west-1.amazonaws.com", "210987654321"),
        ("111122223333.dkr.ecr-fips.us-gov-west-1.amazonaws.com", "111122223333"),
        ("444455556666.dkr-ecr.ap-south-1.on.aws", "444455556666"),
        ("777788889999.dkr.ecr.cn-north-1.amazonaws.com.cn", "777788889999"),
    ],
)
def test_the_account_is_the_one_in_the_registry_host(host, account):
    registry = parse_registry(f"{host}/team/app")
    assert ecr.account_of(registry) == account
    for cmd in (ecr.describe_repositories_command(registry), ecr.list_images_command(registry)):
        assert cmd.argv[cmd.argv.index("--registry-id") + 1] == account, cmd.argv


def test_every_repository_call_of_a_cross_account_push_names_the_registrys_account(fp):
    register_preflight(fp)
    aws(fp, "get-login-password", "--region", "us-east-1", stdout=PASSWORD + "\n")
    docker(
        fp, "login", "--username", "AWS", "--password-stdin", CENTRAL, stdout="Login Succeeded\n"
    )
    aws(
        fp,
        "describe-repositories",
        "--repository-names",
        "app",
        "--registry-id",
        "210987654321",
        "--region",
        "us-east-1",
        "--output",
        "json",
        stdout=repository_json("app", mutability="IMMUTABLE"),
    )
    aws(
        fp,
        "list-images",
        "--repository-name",
        "app",
        "--registry-id",
        "210987654321",
        "--region",
        "us-east-1",
        "--filter",
        "tagStatus=TAGGED",
        "--output",
        "json",
        stdout=json.dumps({"imageIds": []}),
    )
    with pytest.raises(PushFailed, match="--registry-id 210987654321"):
        push_preflight.prepare(Runner(), build_plan(f"{CENTRAL}/app"))
    calls = [list(map(str, c)) for c in fp.calls if "ecr" in map(str, c)]
    about_the_repository = [c for c in calls if "get-login-password" not in c]
    assert len(about_the_repository) == 2
    assert all(c[c.index("--registry-id") + 1] == "210987654321" for c in about_the_repository)


def test_a_repository_missing_in_another_account_must_be_created_there(fp):
    register_preflight(fp)
    aws(fp, "get-login-password", "--region", "us-east-1", stdout=PASSWORD + "\n")
    docker(
        fp, "login", "--username", "AWS", "--password-stdin", CENTRAL, stdout="Login Succeeded\n"
    )
    aws(
        fp,
        "describe-repositories",
        "--repository-names",
        "app",
        "--registry-id",
        "210987654321",
        "--region",
        "us-east-1",
        "--output",
        "json",
        returncode=254,
        stderr="An error occurred (RepositoryNotFoundException) when calling the "
        "DescribeRepositories operation: The repository with name 'app' does not exist "
        "in the registry with id '210987654321'\n",
    )
    with pytest.raises(PushFailed) as err:
        push_preflight.prepare(Runner(), build_plan(f"{CENTRAL}/app"))
    message = str(err.value)
    assert "\n" not in message
    assert "does not exist in account 210987654321" in message
    assert "with credentials of account 210987654321" in message
    assert message.endswith(
        "aws ecr create-repository --repository-name app --region us-east-1 "
        "--registry-id 210987654321"
    )


@pytest.mark.parametrize(
    "stderr",
    [
        "An error occurred (AccessDeniedException) when calling the DescribeRepositories operation: "
        "User: arn:aws:iam::111122223333:user/ci is not authorized to perform: "
        "ecr:DescribeRepositories on resource: arn:aws:ecr:us-east-1:210987654321:repository/app",
        "An error occurred (AccessDenied) when calling the DescribeRepositories operation: denied",
    ],
)
def test_denied_describe_is_cannot_check_and_existing_tags_go_first(fp, capsys, stderr):
    register_preflight(fp)
    register_login(fp)
    register_describe(fp, returncode=254, stderr=stderr + "\n")
    base = f"{ECR}/rag-worker"
    serve(f"{base}:latest")  # the registry API: latest exists, the other tags are new
    pushing = push_preflight.prepare(Runner(), build_plan())
    warnings = [line for line in capsys.readouterr().err.splitlines() if "cannot check" in line]
    assert len(warnings) == 1 and warnings[0].startswith(
        "warning: cannot check ECR repository rag-worker in account 123456789012"
    )
    # the existing tag first, pushed alone: an immutable repository refuses it before any other
    assert pushing.refs == (
        f"{base}:latest",
        f"{base}:dev-{TS}",
        f"{base}:dev",
        f"{base}:git-abc1234",
    )
    assert pushing.before[f"{base}:latest"] == DIGEST
    assert pushing.in_order  # never pushed by the build, all at once
    assert fp.call_count([fp.program("aws"), "ecr", "list-images", fp.any()]) == 0


def test_an_immutable_refusal_of_the_first_existing_tag_leaves_nothing_pushed(fp):
    plan = build_plan()
    base = f"{ECR}/rag-worker"
    before = {ref: "" for ref in plan.refs}
    before[f"{base}:latest"] = DIGEST
    refs = push_preflight.existing_first(plan.refs, before)
    assert refs[0] == f"{base}:latest"
    context = prepared(plan)
    context = push.Context(
        plan,
        PushPlan(refs, credentials=context.push.credentials, session=context.push.session),
        context.docker_config,
        context.environ,
        context.sleep,
    )
    register_push(
        fp,
        refs[0],
        returncode=1,
        stdout=(
            "tag invalid: The image tag 'latest' already exists in the 'rag-worker' repository and "
            "cannot be overwritten because the repository is immutable.\n"
        ),
    )
    with pytest.raises(PushFailed) as err:
        push.push(Runner(), context)
    assert "pushed: nothing" in str(err.value)
    assert "--registry-id 123456789012" in str(err.value)
    assert sum(1 for c in fp.calls if "push" in map(str, c)) == 1


def test_after_an_ecr_login_the_messages_name_the_login_docker_stored(fp, capsys):
    register_preflight(fp)
    register_login(fp)
    register_describe(fp, stdout=repository_json())
    pushing = push_preflight.prepare(Runner(), build_plan())
    err = capsys.readouterr().err
    assert "none: no credHelpers" not in err
    assert pushing.credentials.auth_key == ECR
    answered = [line for line in err.splitlines() if "takes the push's credentials" in line]
    assert len(answered) == 1 and f"(auths['{ECR}'] in " in answered[0], err


def test_skip_existing_immutable_without_describe_leaves_out_the_existing_tags(fp, capsys):
    register_preflight(fp)
    register_login(fp)
    register_describe(
        fp,
        returncode=254,
        stderr="An error occurred (AccessDeniedException) when "
        "calling the DescribeRepositories operation\n",
    )
    base = f"{ECR}/rag-worker"
    serve(f"{base}:latest")
    serve(f"{base}:dev")
    pushing = push_preflight.prepare(Runner(), build_plan(skip_existing_immutable=True))
    assert pushing.skipped == (f"{base}:dev", f"{base}:latest")
    assert pushing.refs == (f"{base}:dev-{TS}", f"{base}:git-abc1234")
    assert (
        "leaving out the tags rag-worker already has (its mutability is unknown): dev, latest"
        in capsys.readouterr().err
    )


def test_fips_host_asks_the_aws_cli_for_the_fips_endpoint_and_others_keep_the_env():
    fips = parse_registry("123456789012.dkr.ecr-fips.us-east-1.amazonaws.com/r")
    assert ("AWS_USE_FIPS_ENDPOINT", "true") in ecr.get_login_password_command(fips).env
    plain = parse_registry(f"{ECR}/r")
    # nothing set over the caller's AWS_PROFILE / AWS_ENDPOINT_URL*
    assert ecr.get_login_password_command(plain).env == ()
    assert ecr.describe_repositories_command(plain).env == ()
