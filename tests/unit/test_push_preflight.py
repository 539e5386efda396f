"""push_preflight.py: the checks before a push (credentials, the daemon's answers, version tags that
must not move), against faked aws and docker calls (pytest-subprocess)."""

import json
import fakes
import pytest
from ragbuild import push_preflight
from ragbuild.errors import CommandFailed, PushFailed
from ragbuild.plan import build_command
from ragbuild.run.dry import DryRunner
from ragbuild.run.runner import Runner
import fakes
from registry_fakes import *  # noqa: F401,F403 (the shared fakes, clean_env included)
from registry_fakes import clean_env  # noqa: F401 (autouse)


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
