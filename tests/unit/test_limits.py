"""Every limit the tool applies is settable wherever its step runs (issue 15 h): a flag on the
command, a setup.cfg [ragbuild] key, a documented default; the flag beats setup.cfg. The limits:
limits.SETTINGS (smoke timeout, push attempts and backoff, context warn size)."""

from __future__ import annotations

import os
from datetime import datetime

import pytest

from fakes import docker_calls, register_git, REPO
from ragbuild import cli, limits, push, sagemaker, smoke
from ragbuild.commands import build as build_cli
from ragbuild.config import load_config
from ragbuild.errors import UsageError
from ragbuild.limits import SETTINGS, Limits
from ragbuild.docker_config import read_docker_config
from ragbuild.config import Config, Options
from ragbuild.git import GitInfo
from ragbuild.plan import PushPlan, make_plan
from ragbuild.run.runner import Runner

KEYS = [setting.key for setting in SETTINGS]


def plan_of(options=None, config=None):
    """A plan with the smoke test and a push, the steps the limits apply to."""
    values = dict(env="dev", smoke_test=True, push=True, registry="registry.example.com:5000/rag")
    values.update(options or {})
    return make_plan(
        Options(**values), config or Config(), GitInfo(sha="abc1234"), datetime(2026, 1, 2, 3, 4, 5)
    )


def test_the_defaults():
    assert Limits() == Limits(
        smoke_timeout=60.0, push_attempts=3, push_backoff=2.0, context_warn_mb=100.0
    )
    assert plan_of().limits == Limits()
    assert plan_of().smoke_command == ("serve",)


@pytest.mark.parametrize(
    "key, text, value",
    [
        ("smoke-timeout", "120", 120.0),
        ("push-attempts", "5", 5),
        ("push-backoff", "0.5", 0.5),
        ("context-warn-mb", "0", 0.0),
    ],
)
def test_setup_cfg_sets_each_limit_and_the_flag_beats_it(tmp_path, key, text, value):
    (tmp_path / "setup.cfg").write_text(f"[ragbuild]\n{key} = {text}\n")
    config = load_config(str(tmp_path))
    field = key.replace("-", "_")
    assert getattr(plan_of(config=config).limits, field) == value
    flagged = build_cli.parse_build(["--env", "dev", f"--{key}", "7"])
    assert getattr(plan_of({field: getattr(flagged, field)}, config).limits, field) == 7


@pytest.mark.parametrize(
    "key, text, what",
    [
        ("smoke-timeout", "0", "a number of seconds (more than 0)"),
        ("smoke-timeout", "nan", "a number of seconds (more than 0)"),
        ("smoke-timeout", "1e999", "a number of seconds (more than 0)"),
        ("push-attempts", "0", "a number of attempts (1-100)"),
        ("push-attempts", "2.5", "a number of attempts (1-100)"),
        ("push-backoff", "-1", "a number of seconds (0-3600)"),
        ("context-warn-mb", "lots", "a number of megabytes (0 or more)"),
    ],
)
def test_a_bad_limit_is_refused_in_one_line_in_setup_cfg_and_as_a_flag(
    tmp_path, capsys, key, text, what
):
    (tmp_path / "setup.cfg").write_text(f"[ragbuild]\n{key} = {text}\n")
    with pytest.raises(UsageError) as err:
        load_config(str(tmp_path))
    assert str(err.value) == f"{tmp_path / 'setup.cfg'} [ragbuild] {key}: {text!r} is not {what}"
    assert cli.main(["--env", "dev", f"--{key}={text}"]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .splitlines()[-1]
        .startswith(f"error: argument --{key}: {text!r} is not {what}")
    )


def test_the_smoke_command_from_setup_cfg_and_the_flag(tmp_path):
    (tmp_path / "setup.cfg").write_text("[ragbuild]\nsmoke-command = /start.sh --port 8080\n")
    config = load_config(str(tmp_path))
    assert plan_of(config=config).smoke_command == ("/start.sh", "--port", "8080")
    assert plan_of({"smoke_command": "serve --x"}, config).smoke_command == ("serve", "--x")
    (tmp_path / "setup.cfg").write_text("[ragbuild]\nsmoke-command = serve 'x\n")
    with pytest.raises(
        UsageError, match=r"\[ragbuild\] smoke-command \"serve 'x\" cannot be split into words"
    ):
        load_config(str(tmp_path))


def test_every_limit_has_a_build_flag_with_its_default_in_help(capsys):
    assert cli.main(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for setting in SETTINGS:
        assert f"{setting.flag} " in out, setting.key
        assert (
            f"(default: {setting.key} in setup.cfg [ragbuild], else {limits.default_text(setting)})"
        ) in out, setting.key
    assert "--smoke-command CMD" in out


#: What the faked gate answers: a pass, with no figures worth checking here.
PASSED = sagemaker.GateResult("rag-worker:dev", 0.0, 0.0, 200, 0.0, 0.0, 8090, 0.0)


def test_the_smoke_subcommand_takes_its_timeout_from_setup_cfg_and_the_flag(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    seen = []
    monkeypatch.setattr(
        sagemaker, "run", lambda runner, expect, timeout: seen.append(timeout) or PASSED
    )
    assert cli.main(["smoke", "rag-worker:dev"]) == 0
    (tmp_path / "setup.cfg").write_text("[ragbuild]\nsmoke-timeout = 120\n")
    assert cli.main(["smoke", "rag-worker:dev"]) == 0
    assert cli.main(["smoke", "rag-worker:dev", "--timeout", "5"]) == 0
    assert seen == [60.0, 120.0, 5.0]


def test_the_build_path_smoke_test_waits_as_long_as_configured(
    project, strict_fp, capsys, monkeypatch
):
    """The combined path (make prod-ready, --smoke-test) gets the timeout the smoke command had."""
    register_git(strict_fp)  # a second run
    strict_fp.register([strict_fp.program("docker"), "build", "-f", strict_fp.any()], occurrences=2)
    strict_fp.register(
        [strict_fp.program("docker"), "image", "inspect", strict_fp.any()],
        stdout='sha256:1 1 ["rag-worker:dev-20231203-143022","rag-worker:dev",'
        '"rag-worker:git-a1b2c3d","rag-worker:latest"] {}\n',
        occurrences=2,
    )
    seen = []
    monkeypatch.setattr(
        sagemaker,
        "run",
        lambda runner, expect, timeout: seen.append((timeout, expect.command)) or PASSED,
    )
    assert cli.main(["--env", "dev", "--smoke-test", "--smoke-timeout", "120"]) == 0
    (project / "setup.cfg").write_text("[ragbuild]\nsmoke-timeout = 90\nsmoke-command = go\n")
    assert cli.main(["--env", "dev", "--smoke-test"]) == 0
    assert seen == [(120.0, ("serve",)), (90.0, ("go",))]


class FakeSleep:
    def __init__(self):
        self.delays = []

    def __call__(self, seconds):
        self.delays.append(seconds)


@pytest.mark.parametrize("attempts, backoff, delays", [(1, 2.0, []), (4, 0.5, [0.5, 1.0, 2.0])])
def test_push_attempts_and_backoff_are_the_plans(fp, attempts, backoff, delays):
    plan = plan_of({"push_attempts": attempts, "push_backoff": backoff, "latest_policy": "never"})
    ref = plan.refs[0]
    for _ in range(attempts):
        fp.register(
            [fp.program("docker"), "push", ref],
            returncode=1,
            stdout="read: connection reset by peer\n",
        )
    sleep = FakeSleep()
    context = push.Context(plan, PushPlan(plan.refs), read_docker_config(), os.environ, sleep)
    with pytest.raises(push.PushFailed) as err:
        push.push(Runner(), context)
    assert sleep.delays == delays
    assert fp.call_count([fp.program("docker"), "push", ref]) == attempts
    assert f"push failed {attempts} times" in str(err.value)


def test_every_limit_is_documented_with_its_default():
    doc = (REPO / "docs" / "lifecycle.md").read_text()
    for setting in SETTINGS:
        assert f"| `{setting.key}` | `{setting.flag}` | {limits.default_text(setting)} |" in doc


def test_a_dry_run_shows_the_smoke_start_command_and_timeout(
    project, strict_fp, capsys, monkeypatch
):
    monkeypatch.setattr(smoke, "container_name", lambda: "ragbuild-smoke-0")
    assert (
        cli.main(
            [
                "--env",
                "dev",
                "--dry-run",
                "--smoke-test",
                "--smoke-timeout",
                "120",
                "--smoke-command",
                "serve --workers 2",
            ]
        )
        == 0
    )
    out, err = capsys.readouterr()
    assert (
        "docker run -d --name ragbuild-smoke-0 --tmpfs /opt/ml/model:ro -p 127.0.0.1::8080 "
        "--label org.ragbuild.smoke=1 IMAGE_ID serve --workers 2"
    ) in out.splitlines()
    # (the image the build's --iidfile names)
    assert (
        "dry run: a real run would wait up to 120s for GET /ping on port 8080 to answer 200, "
        "each answer within 2s" in err.splitlines()
    )
    assert out.splitlines()[-1] == "docker rm -f ragbuild-smoke-0"


@pytest.mark.parametrize(
    "flags, step",
    [
        (["--smoke-timeout", "120"], "--smoke-test"),
        (["--smoke-command", "serve"], "--smoke-test"),
        (["--push-attempts", "5"], "--push"),
        (["--push-backoff", "1"], "--push"),
    ],
)
def test_a_limit_flag_for_a_step_the_run_does_not_take_is_refused(
    project, strict_fp, capsys, flags, step
):
    assert cli.main(["--env", "dev", *flags]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: {flags[0]} only changes what {step} does: add {step}, or drop {flags[0]}"
    )
    assert docker_calls(strict_fp) == 0
