"""The build's steps on their own: docker's config.json, the summary's tag check, the daemon
diagnosis, and what a dry run of the checks before the build prints."""

from __future__ import annotations

import json

import pytest

from ragbuild import push, steps, builders
from ragbuild.builders import DockerTarget
from ragbuild.errors import DockerUnavailable
from ragbuild.reference import familiar
from ragbuild.runner import Runner


# --- docker's config.json: one reader ----------------------------------------------------------


@pytest.mark.parametrize("content, context, helpers", [
    (json.dumps({"currentContext": "big-box", "credHelpers": {"r.example": "ecr-login"}}).encode(),
     "big-box", {"r.example": "ecr-login"}),
    (b"\xff\xfe not utf-8", None, {}),
    (b"{broken", None, {}),
    (b"[]", None, {}),
    (json.dumps({"currentContext": 3, "credHelpers": ["ecr-login"]}).encode(), None, {}),
    (json.dumps({"credHelpers": {"a": "", "b": None, "c": "gcloud"}}).encode(), None,
     {"c": "gcloud"}),
])
def test_read_docker_config(tmp_path, content, context, helpers):
    (tmp_path / "config.json").write_bytes(content)
    config = builders.read_docker_config({"DOCKER_CONFIG": str(tmp_path)})
    assert (config.current_context, config.cred_helpers) == (context, helpers)


def test_a_missing_docker_config_is_nothing_set(tmp_path):
    assert builders.read_docker_config({"DOCKER_CONFIG": str(tmp_path)}) == builders.DockerConfig(str(tmp_path / 'config.json'))


# --- the summary's tag check -------------------------------------------------------------------


@pytest.mark.parametrize("ref, listed", [
    ("docker.io/library/rag-worker:dev", "rag-worker:dev"),
    ("index.docker.io/team/rag-worker:dev", "team/rag-worker:dev"),
    ("docker.io/team/rag-worker:dev", "team/rag-worker:dev"),
    ("library/rag-worker:dev", "rag-worker:dev"),
    ("docker.io/library/team/x:dev", "library/team/x:dev"),
    ("localhost:5000/library/x:dev", "localhost:5000/library/x:dev"),
    ("rag-worker:dev", "rag-worker:dev"),
])
def test_refs_are_compared_as_docker_lists_them(ref, listed):
    assert familiar(ref) == listed
    assert familiar(listed) == listed


@pytest.mark.parametrize("base", ["docker.io/library/rag-worker", "index.docker.io/team/rag",
                                  "library/rag-worker"])
def test_a_good_build_on_docker_hub_names_never_lacks_tags(fp, base, capsys):
    from datetime import datetime

    from ragbuild.plan import Config, GitInfo, Options, make_plan

    if "/" in base and "." in base.split("/")[0]:
        options = Options(env="dev", registry=base)
    else:
        options = Options(env="dev", image_name=base)
    plan = make_plan(options, Config(), GitInfo(sha="abc1234"), datetime(2026, 1, 1))
    listed = [familiar(ref) for ref in plan.refs]
    fp.register([fp.program("docker"), "image", "inspect", fp.any()],
                stdout=f"sha256:0123 12 {json.dumps(listed)} null\n")
    info = steps.summarize(Runner(), plan)
    assert info.repo_tags == tuple(listed)


# --- the daemon: one list of markers, one message ----------------------------------------------


def test_push_and_diagnose_share_the_daemon_markers_and_message():
    for marker in builders.DAEMON_DOWN_MARKERS:
        assert push.classify_failure(f"docker: {marker.upper()}") == push.Failure.DAEMON
    # a push's "connection refused" is the registry's, not the daemon's
    assert push.classify_failure("dial tcp 10.0.0.1:5000: connect: connection refused") == \
        push.Failure.UNREACHABLE
    target = DockerTarget(host="tcp://10.0.0.5:2375")
    assert builders.daemon_unreachable(target).startswith(
        "cannot reach the Docker daemon at tcp://10.0.0.5:2375: start it")


def test_diagnose_names_the_unreachable_daemon(fp):
    from types import SimpleNamespace

    fp.register([fp.program("docker"), "version", "--format", "{{.Client.Version}}"],
                returncode=1, stderr="error during connect: Get \"http://x/v1.24/version\"\n")
    target = DockerTarget(context="buildbox")
    with pytest.raises(DockerUnavailable) as err:
        steps.diagnose(Runner(), SimpleNamespace(docker=target))
    assert str(err.value) == builders.daemon_unreachable(target)


# --- the checks before the build, in a dry run -------------------------------------------------


def test_a_dry_run_with_a_missing_scanner_warns_and_prints_the_scan_it_would_run(project,
                                                                                 strict_fp,
                                                                                 capsys):
    from ragbuild import cli

    code = cli.main(["--env", "dev", "--dry-run", "--scan-command",
                     "no-such-scanner-4711 {image} --fail-on high"])
    out, err = capsys.readouterr()
    assert code == 0
    assert ("warning: the scanner no-such-scanner-4711 (--scan-command) is not installed or not "
            "executable (a real run stops here)") in err.splitlines()
    assert out.splitlines()[-1] == ("no-such-scanner-4711 rag-worker:dev-20231203-143022 "
                                    "--fail-on high")
    assert err.count("no-such-scanner-4711") == 1  # one warning, not one per check
