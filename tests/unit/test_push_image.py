"""push IMAGE (push_image.py): a tested local image pushed by its ID with a build's tags, taken from
the image's own commit and timestamp; the hint that prints that command. Against the fake registry
and faked docker calls."""

import json
from datetime import datetime
import fakes
import pytest
from ragbuild import cli, push_image
from ragbuild.commands import build as build_cli, promote as promote_commands
from ragbuild.errors import UsageError
from ragbuild.git import GitInfo
from ragbuild.config import Options, Config
from ragbuild.plan import make_plan
from registry_fakes import *  # noqa: F401,F403 (the shared fakes, clean_env included)
from registry_fakes import clean_env  # noqa: F401 (autouse)


REPO = f"{PLAIN}/rag-worker"


SOURCE_TS = "20251111-101112"


@pytest.fixture
def project(tmp_path, monkeypatch):
    """The working directory: no setup.cfg (the default environments)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_commit_and_timestamp_are_the_images_own():
    assert push_image.image_git("abc1234-dirty") == GitInfo(sha="abc1234", dirty=True)
    assert push_image.image_git("unknown").sha is None
    with pytest.raises(UsageError, match="not a commit id"):
        push_image.image_git("main")
    assert push_image.image_moment({"BUILD_TIMESTAMP": SOURCE_TS}, {}, "x") == datetime(
        2025, 11, 11, 10, 11, 12
    )
    # no BUILD_TIMESTAMP: the created label's wall-clock time, in the offset it was written in
    assert (
        push_image.image_moment(
            {}, {"org.opencontainers.image.created": "2025-11-11T10:11:12+01:00"}, "x"
        ).strftime("%Y%m%d-%H%M%S")
        == SOURCE_TS
    )
    with pytest.raises(UsageError, match="not built by ragbuild"):
        push_image.image_moment({"BUILD_TIMESTAMP": "unknown"}, {}, "x")


def test_the_target_tags_are_a_builds_for_that_env_and_version():
    moment = datetime(2025, 11, 11, 10, 11, 12)
    build = make_plan(
        Options(
            env="prod", version="1.2.3", registry=REPO, push=True, semver_tags=True, tags=("qa",)
        ),
        Config(),
        GitInfo(sha="abc1234"),
        moment,
    )
    ns = promote_commands.promote_parser().parse_args(
        [f"{REPO}:dev", "--env", "prod", "--version", "1.2.3", "--semver-tags", "--tag", "qa"]
    )
    ns.policy = build_cli.latest_policy(ns.latest, ns.latest_policy)
    plan = push_image.target_plan(
        Runner(),
        push_image.target_options(ns, REPO, "SOURCE"),
        Config(),
        push_image.image_git("abc1234"),
        moment,
        {},
    )
    assert plan.refs == build.refs


# --- push IMAGE -------------------------------------------------------------------------------


IMAGE_ID = "sha256:" + "11" * 32  # the config digest of registry_fakes.MANIFEST


def register_image(
    fp, image="rag-worker:prod", env=("BUILD_TIMESTAMP=" + SOURCE_TS, "GIT_COMMIT=abc1234")
):
    inspected = {
        "Id": IMAGE_ID,
        "Size": 123,
        "RepoTags": [image],
        "Os": "linux",
        "Architecture": "amd64",
        "Config": {"Labels": {"org.opencontainers.image.revision": "abc1234"}, "Env": list(env)},
    }
    docker(fp, "image", "inspect", "--format", "{{json .}}", image, stdout=json.dumps(inspected))


def test_push_of_a_local_image_tags_its_id_and_pushes_no_build(project, fp, capsys):
    register_image(fp)
    fakes.register_proxy_info(fp)
    refs = [
        f"{REPO}:{tag}"
        for tag in ("v1.2.3", "1.2.3", f"prod-{SOURCE_TS}", "prod", "git-abc1234", "latest")
    ]
    for ref in refs:
        docker(fp, "tag", IMAGE_ID, ref)
        register_push(fp, ref)
        serve(ref)  # after the pre-flight's read, which finds no tag (else the version-tag
        FakeRegistry.current.fail[ref] = [404]  # rule would stop the run)
    fp.allow_unregistered(False)
    code = cli.main(
        ["push", "rag-worker:prod", "--registry", REPO, "--env", "prod", "--version", "1.2.3"]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.splitlines()[-1] == f"{REPO}@{DIGEST}"
    for ref in refs:
        assert fp.call_count([fp.program("docker"), "tag", IMAGE_ID, ref]) == 1
        assert fp.call_count([fp.program("docker"), "push", ref]) == 1


def test_push_keeps_the_version_tag_rule(project, fp, capsys):
    register_image(fp)
    fakes.register_proxy_info(fp)
    serve(f"{REPO}:v1.2.3", OTHER_DIGEST)
    fp.allow_unregistered(False)
    code = cli.main(
        ["push", "rag-worker:prod", "--registry", REPO, "--env", "prod", "--version", "1.2.3"]
    )
    assert code == 1
    assert "the registry already has" in capsys.readouterr().err
    assert fp.call_count([fp.program("docker"), "push", fp.any()]) == 0


def test_push_needs_a_registry(project, fp, capsys):
    assert cli.main(["push", "rag-worker:prod", "--env", "prod", "--version", "1.2.3"]) == 2
    assert "set ECR_REGISTRY_URI" in capsys.readouterr().err


def test_an_image_without_a_timestamp_is_refused(project, fp, capsys):
    register_image(fp, env=("PATH=/bin",))
    fp.allow_unregistered(False)
    assert cli.main(["push", "rag-worker:prod", "--registry", REPO, "--env", "dev"]) == 2
    assert "carries no BUILD_TIMESTAMP" in capsys.readouterr().err


# --- the hint after a tested build ------------------------------------------------------------


def plan_for_hint(**options):
    values = dict(env="prod", version="1.2.3")
    values.update(options)
    return make_plan(
        Options(**values), Config(), GitInfo(sha="abc1234"), datetime(2025, 11, 11, 10, 11, 12)
    )


def test_the_hint_pushes_the_tested_image_by_its_id_with_the_same_tags(monkeypatch):
    from ragbuild.tags import LatestPolicy

    plan = plan_for_hint(tags=("qa",), semver_tags=True, latest_policy=LatestPolicy.NEVER)
    hint = push_image.tested_push_hint(
        plan, IMAGE_ID, ["./scripts/build-image.py"], {"ECR_URI": f"{ECR}/rag-worker"}
    )
    command = hint.split(": ", 1)[1]
    argv = command.split()
    assert argv[:3] == ["./scripts/build-image.py", "push", IMAGE_ID]
    ns = promote_commands.push_parser().parse_args(argv[2:])
    ns.policy = build_cli.latest_policy(ns.latest, ns.latest_policy)
    again = push_image.target_plan(
        Runner(),
        push_image.target_options(ns, ns.registry, "--registry"),
        Config(),
        plan.git,
        datetime(2025, 11, 11, 10, 11, 12),
        {},
    )
    assert [ref.split(":", 2)[-1] for ref in again.refs] == list(plan.tags)


def test_without_a_registry_the_hint_says_to_set_one():
    hint = push_image.tested_push_hint(plan_for_hint(), IMAGE_ID, ["ragbuild"], {})
    assert "set ECR_REGISTRY_URI (make: ECR_URI)" in hint
    assert hint.endswith(
        f'ragbuild push {IMAGE_ID} --registry "$ECR_REGISTRY_URI" --env prod --version 1.2.3'
    )
