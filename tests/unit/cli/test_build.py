"""The build command end to end through ``main()``: flags, validation before any docker call,
the dry run, the one build and one inspect, failures and exit codes, and the script entry points.

Processes are faked with pytest-subprocess; ``strict_fp`` refuses anything not registered and
answers the git queries with HEAD a1b2c3d. The clock is SOURCE_DATE_EPOCH=2023-12-03 14:30:22 UTC.
"""

from __future__ import annotations
import os
import re
import shlex
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
import pytest
from plumbum import local
from fakes import EPOCH, GIT_QUERIES, STAMP, docker_calls, register_git, set_tz
from ragbuild import cli, steps
from ragbuild.commands import build as build_cli
from ragbuild.config import load_config
from ragbuild.commands import rerun
from ragbuild.config import Config
from ragbuild.errors import Interrupted
from ragbuild.git import GitInfo
from ragbuild.plan import make_plan
from fakes import FAKE_IMAGE_ID


REPO = Path(__file__).resolve().parents[3]
DOCKER = "docker"

DEV_BUILD = (
    "DOCKER_BUILDKIT=1 docker build -f Dockerfile -t rag-worker:dev-20231203-143022 "
    "-t rag-worker:dev -t rag-worker:git-a1b2c3d -t rag-worker:latest "
    "--build-arg ENVIRONMENT=dev --build-arg GIT_COMMIT=a1b2c3d "
    "--build-arg BUILD_TIMESTAMP=20231203-143022 "
    "--label org.opencontainers.image.created=2023-12-03T14:30:22+00:00 "
    "--label org.ragbuild.repository=rag-worker --iidfile IIDFILE ."
)
#: the summary inspects the image by the ID the build wrote (a dry run: IMAGE_ID)
DEV_INSPECT = (
    "docker image inspect --format '{{.Id}} {{.Size}} {{json .RepoTags}} "
    "{{json .Config.Labels}}' IMAGE_ID"
)
DEV_INSPECT_REAL = DEV_INSPECT.replace("IMAGE_ID", FAKE_IMAGE_ID)


def normal(text: str) -> str:
    """``text`` with the build's --iidfile path (in the test's own temp directory) as IIDFILE."""
    return re.sub(r"--iidfile \S+", "--iidfile IIDFILE", text)


def normal_argv(argv) -> list:
    return shlex.split(normal(shlex.join(str(word) for word in argv)))


def run_main(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def tags_of(build_line):
    words = shlex.split(build_line)
    return [words[i + 1] for i, word in enumerate(words) if word == "-t"]


# --- flags -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "short, long_eq, field, value",
    [
        (["-v", "1.2.3"], ["--version=1.2.3"], "version", "1.2.3"),
        (["--version", "1.2.3"], ["--version=1.2.3"], "version", "1.2.3"),
        (["-e", "dev"], ["--env=dev"], "env", "dev"),
        (["-r", "r.example.com/x"], ["--registry=r.example.com/x"], "registry", "r.example.com/x"),
        (["-t", "a", "-t", "b"], ["--tag=a", "--tag=b"], "tags", ("a", "b")),
        (["--no-latest"], ["--no-latest"], "latest_policy", "never"),
        (["--no-latest", "--latest"], ["--latest"], "latest_policy", "always"),
        (["--no-cache"], ["--no-cache"], "no_cache", True),
        (["--push"], ["--push"], "push", True),
        (["--dry-run"], ["--dry-run"], "dry_run", True),
        (
            ["--build-arg", "A=1", "--build-arg", "B=x=y"],
            ["--build-arg=A=1", "--build-arg=B=x=y"],
            "build_args",
            ("A=1", "B=x=y"),
        ),
        (["-f", "docker/Dockerfile"], ["--file=docker/Dockerfile"], "file", "docker/Dockerfile"),
        (["--context", "src"], ["--context=src"], "context", "src"),
        (["--image-name", "acme"], ["--image-name=acme"], "image_name", "acme"),
    ],
)
def test_each_flag_in_both_spellings(short, long_eq, field, value, monkeypatch):
    monkeypatch.delenv("ECR_REGISTRY_URI", raising=False)
    assert getattr(build_cli.parse_build(short), field) == value
    assert getattr(build_cli.parse_build(long_eq), field) == value


def test_defaults(monkeypatch):
    monkeypatch.delenv("ECR_REGISTRY_URI", raising=False)
    options = build_cli.parse_build([])
    assert (options.version, options.env, options.registry, options.tags) == (None, None, None, ())
    assert (
        options.latest_policy == "always"
        and not options.no_cache
        and not options.push
        and not options.dry_run
    )
    assert (options.file, options.context, options.image_name) == ("Dockerfile", ".", None)


def test_registry_defaults_to_ecr_registry_uri(monkeypatch):
    monkeypatch.setenv("ECR_REGISTRY_URI", "123456789012.dkr.ecr.eu-west-1.amazonaws.com/rag")
    assert build_cli.parse_build([]).registry == "123456789012.dkr.ecr.eu-west-1.amazonaws.com/rag"
    assert build_cli.parse_build(["-r", "r.example.com/x"]).registry == "r.example.com/x"
    monkeypatch.setenv("ECR_REGISTRY_URI", "")
    assert build_cli.parse_build([]).registry is None


def test_registry_from_environment_reaches_the_tags(project, strict_fp, capsys, monkeypatch):
    monkeypatch.setenv("ECR_REGISTRY_URI", "r.example.com/team/rag")
    code, out, _ = run_main(["--env", "dev", "--dry-run"], capsys)
    assert code == 0
    assert tags_of(out.splitlines()[0])[0] == f"r.example.com/team/rag:dev-{STAMP}"


def test_bad_registry_from_environment_names_the_variable(project, strict_fp, capsys, monkeypatch):
    monkeypatch.setenv("ECR_REGISTRY_URI", "https://r.example.com/rag")
    code, _, err = run_main(["--env", "dev", "--dry-run"], capsys)
    assert code == 2
    assert err.splitlines()[-1].startswith(
        "error: ECR_REGISTRY_URI 'https://r.example.com/rag': drop"
    )
    assert docker_calls(strict_fp) == 0


def test_help_shows_flags_examples_environment_and_exit_codes(strict_fp, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["scripts/build-image.py"])
    code, out, err = run_main(["--help"], capsys)
    assert code == 0 and err == ""
    for flag in (
        "-v VERSION, --version VERSION",
        "-e ENV, --env ENV",
        "-r URI, --registry URI",
        "-t TAG, --tag TAG",
        "--latest",
        "--no-latest",
        "--no-cache",
        "--push",
        "-h, --help",
        "--dry-run",
        "--build-arg KEY=VALUE",
        "-f FILE, --file FILE",
        "--context CONTEXT",
        "--image-name IMAGE_NAME",
    ):
        assert re.search(option_pattern(flag), out), flag
    environment = help_section(out, "environment variables")
    for variable in (
        "ECR_REGISTRY_URI",
        "DOCKER",
        "SOURCE_DATE_EPOCH",
        "TZ",
        "AWS_CLI",
        "DOCKER_HOST",
        "DOCKER_CONTEXT",
        "DOCKER_CONFIG",
        "BUILDX_BUILDER",
        "GITHUB_OUTPUT",
        "BUILD_NUMBER",
        "AWS_PROFILE",
    ):
        assert variable in environment.replace(",", " ").split(), variable
    status = " ".join(help_section(out, "exit status").split())
    for code_meaning in (
        "0 success",
        "1 a command failed",
        "2 bad usage",
        "3 a bug",
        "141 stdout closed early",
        "(130 Ctrl-C/SIGINT, 143 SIGTERM, 129 SIGHUP)",
    ):
        assert code_meaning in status, code_meaning
    assert out.rstrip().endswith(help_section(out, "examples").rstrip())  # examples come last
    assert len(strict_fp.calls) == 0


def option_pattern(option: str) -> str:
    """A regex for an option line of ``--help`` as argparse writes it in any Python: up to 3.12
    the metavar follows every option string (``-v VERSION, --version VERSION``), from 3.13 only
    the last (``-v, --version VERSION``; https://bugs.python.org/issue45110), as Debian 13's
    3.13.5 does."""
    *firsts, last = option.split(", ")
    return ", ".join(
        [re.escape(name.split(" ")[0]) + r"(?: \S+)?" for name in firsts] + [re.escape(last)]
    )


@pytest.mark.parametrize(
    "text", ["  -v VERSION, --version VERSION  the version", "  -v, --version VERSION  the version"]
)
def test_option_pattern_reads_the_help_of_every_python(text):
    assert re.search(option_pattern("-v VERSION, --version VERSION"), text)
    assert not re.search(option_pattern("-e ENV, --env ENV"), text)


def help_section(text: str, title: str) -> str:
    """The lines of ``--help`` under the heading that starts with ``title`` (up to the next one)."""
    lines, inside = [], False
    for line in text.splitlines():
        if line and not line.startswith(" "):
            inside = line.endswith(":") and (line[:-1] == title or line.startswith(f"{title} ("))
        elif inside:
            lines.append(line)
    assert lines, f"no section {title!r} in --help"
    return "\n".join(lines) + "\n"


#: The argument groups of the build command's --help, in order, and the flags each one holds.
HELP_GROUPS = {
    "tags": [
        "--version",
        "--env",
        "--tag",
        "--image-name",
        "--latest",
        "--no-latest",
        "--semver-tags",
        "--latest-policy",
        "--build-number",
        "--ci-tags",
    ],
    "build": [
        "--file",
        "--context",
        "--build-arg",
        "--no-cache",
        "--host-ca",
        "--no-host-ca",
        "--host-index",
        "--pull",
    ],
    "push": [
        "--registry",
        "--push",
        "--skip-existing-immutable",
        "--replace-version-tags",
        "--push-attempts",
        "--push-backoff",
    ],
    "safety": [
        "--allow-dirty",
        "--git-commit",
        "--smoke-test",
        "--smoke-command",
        "--smoke-timeout",
        "--context-warn-mb",
        "--allow-secrets",
        "--scan",
        "--scan-command",
    ],
    "output": ["--dry-run", "--quiet", "--metadata-file"],
    "builders": ["--builder", "--platform", "--not-for-sagemaker", "--cache-from", "--cache-to"],
    "docker build options passed through": ["--secret", "--ssh"],
}


def test_help_groups_every_flag_under_one_heading(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    # an option line: "  -t TAG, --tag TAG   <help>"; the flags end at the first double space
    shown = {
        title: [
            word.rstrip(",")
            for line in help_section(out, title).splitlines()
            if line.startswith("  -")
            for word in line[2:].split("  ")[0].split()
            if word.startswith("--")
        ]
        for title in HELP_GROUPS
    }
    assert shown == HELP_GROUPS
    headings = [line[:-1] for line in out.splitlines() if line[:-1] in HELP_GROUPS]
    assert headings == list(HELP_GROUPS)


def test_every_build_flag_is_in_exactly_one_group():
    parser = build_cli.build_parser()
    groups = {
        group.title: {
            option
            for action in group._group_actions
            for option in action.option_strings
            if option.startswith("--")
        }
        for group in parser._action_groups
    }
    assert {
        title: sorted(options) for title, options in groups.items() if title in HELP_GROUPS
    } == {title: sorted(options) for title, options in HELP_GROUPS.items()}
    every_flag = [
        option
        for action in parser._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    ]
    in_groups = [option for options in HELP_GROUPS.values() for option in options]
    assert sorted(every_flag) == sorted(in_groups)  # each once: no flag left out, none twice


def test_every_help_example_is_accepted_by_the_parser(capsys):
    assert cli.main(["--help"]) == 0
    # "  <prog> <flags>" lines, each followed by a "      <what it does>" line
    commands = [
        line.split(maxsplit=1)[1]
        for line in help_section(capsys.readouterr().out, "examples").splitlines()
        if line.startswith("  ") and not line.startswith("   ")
    ]
    assert len(commands) >= 6
    parser = build_cli.build_parser()
    for command in commands:
        parser.parse_args(shlex.split(command.replace("<uri>", "r.example/x")))  # UsageError fails


def test_short_help(strict_fp, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["scripts/build-image.py"])
    code, out, _ = run_main(["-h"], capsys)
    assert code == 0 and out.startswith("usage: build-image.py")


def test_build_subcommand_name_is_accepted(project, strict_fp, capsys):
    code, out, _ = run_main(["build", "--env", "dev", "--dry-run"], capsys)
    assert code == 0 and normal(out).splitlines() == [DEV_BUILD, DEV_INSPECT]


# --- project configuration (setup.cfg [ragbuild]) ----------------------------------------------


def test_setup_cfg_sets_image_name_and_environments(project, strict_fp, capsys):
    (project / "setup.cfg").write_text(
        "[metadata]\nname = x\n\n[ragbuild]\nimage-name = acme-worker\nenvironments = dev, qa\n"
    )
    code, out, _ = run_main(["--env", "qa", "--dry-run", "--no-latest"], capsys)
    assert code == 0
    assert tags_of(out.splitlines()[0]) == [
        f"acme-worker:qa-{STAMP}",
        "acme-worker:qa",
        "acme-worker:git-a1b2c3d",
    ]


def test_setup_cfg_environments_limit_env(project, strict_fp, capsys):
    (project / "setup.cfg").write_text("[ragbuild]\nenvironments = dev qa\n")
    code, _, err = run_main(["--env", "staging", "--dry-run"], capsys)
    assert code == 2
    assert err == "error: --env 'staging' is not one of dev, qa\n"


def test_image_name_flag_beats_setup_cfg(project, strict_fp, capsys):
    (project / "setup.cfg").write_text("[ragbuild]\nimage-name = acme-worker\n")
    code, out, _ = run_main(["--env", "dev", "--dry-run", "--image-name=other"], capsys)
    assert code == 0 and tags_of(out.splitlines()[0])[0] == f"other:dev-{STAMP}"


def test_setup_cfg_unknown_key_is_refused(project, strict_fp, capsys):
    (project / "setup.cfg").write_text("[ragbuild]\nimage_name = typo\n")
    code, _, err = run_main(["--env", "dev", "--dry-run"], capsys)
    assert code == 2
    assert err.startswith("error: ") and "unknown setting 'image_name'" in err
    assert docker_calls(strict_fp) == 0


def test_the_projects_own_setup_cfg():
    assert load_config(str(REPO)) == Config(
        image_name="rag-worker", environments=("dev", "staging", "prod")
    )


def test_no_setup_cfg_means_defaults(tmp_path):
    assert load_config(str(tmp_path)) == Config()


# --- validation: one line, exit 2, nothing started ---------------------------------------------

BAD_INPUTS = [
    ([], "give --version and/or --env"),
    (["--env", "dve"], "--env 'dve' is not one of dev, staging, prod; did you mean 'dev'?"),
    (["--env", "production", "--version", "1.0.0"], "did you mean 'prod'?"),
    (["--version", "1.0", "--env", "dev"], "--version '1.0' is not a semantic version"),
    (["--version", "01.2.3", "--env", "dev"], "--version '01.2.3' is not a semantic version"),
    (["--version", "latest", "--env", "dev"], "--version 'latest' is not a semantic version"),
    (["--version=1.2.3.4", "--env=dev"], "--version '1.2.3.4' is not a semantic version"),
    (["--version="], "--version '' is empty"),
    (["--env", "prod"], "--env prod needs --version"),
    (["--env", "dev", "--tag", ".hidden"], "--tag '.hidden' is not a valid Docker tag"),
    (["--env", "dev", "-t", "ok", "-t", "a:b"], "--tag 'a:b' is not a valid Docker tag"),
    (["--env", "dev", "--tag", "x" * 129], "is not a valid Docker tag: up to 128"),
    (
        ["--env", "dev", "--registry", "r.example.com/Rag"],
        "--registry 'r.example.com/Rag' is not host[:port]/repository with a lowercase",
    ),
    (["--env", "dev", "--registry", "https://r.example.com/x"], "drop the scheme"),
    (["--env", "dev", "--registry", "rag-worker"], "--registry 'rag-worker' is not host[:port]"),
    (["--env", "dev", "--push"], "--push needs a registry"),
    (["--env", "dev", "-f", "missing.Dockerfile"], "Dockerfile 'missing.Dockerfile' not found"),
    (["--env", "dev", "--context", "nowhere"], "build context 'nowhere' is not a directory"),
    (["--env", "dev", "--build-arg", "NOVALUE"], "--build-arg 'NOVALUE' is not KEY=VALUE"),
    (["--env", "dev", "--build-arg", "VERSION=9"], "--build-arg VERSION is set by ragbuild itself"),
    (["--env", "dev", "--image-name", "Rag"], "--image-name 'Rag' is not a lowercase image name"),
    (["--env", "dev", "--bogus"], "unrecognized arguments: --bogus"),
    (["--env", "dev", "--ver", "1.0.0"], "unrecognized arguments: --ver"),  # no abbreviations
    (["--env"], "argument -e/--env: expected one argument"),
]


@pytest.mark.parametrize("argv, fragment", BAD_INPUTS)
@pytest.mark.parametrize("dry_run", [False, True], ids=["real", "dry"])
def test_bad_input_is_one_line_exit_2_and_no_docker(
    argv, fragment, dry_run, project, strict_fp, capsys
):
    code, out, err = run_main(argv + (["--dry-run"] if dry_run else []), capsys)
    assert code == 2
    assert err.startswith("error: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert fragment in err
    assert "Traceback" not in err and out == ""
    assert docker_calls(strict_fp) == 0


def test_bad_source_date_epoch(project, strict_fp, capsys, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    code, _, err = run_main(["--env", "dev"], capsys)
    assert code == 2
    assert err == "error: SOURCE_DATE_EPOCH='yesterday' is not a number of seconds since 1970\n"
    assert docker_calls(strict_fp) == 0


# --- dry run -----------------------------------------------------------------------------------


def test_dry_run_prints_the_exact_commands_and_runs_only_git(project, strict_fp, capsys):
    code, out, err = run_main(["--env", "dev", "--dry-run"], capsys)
    assert code == 0
    assert normal(out).splitlines() == [DEV_BUILD, DEV_INSPECT]
    assert [Path(call[0]).name for call in strict_fp.calls] == ["git"] * GIT_QUERIES
    assert "tags:\n  - rag-worker:dev-20231203-143022\n" in err  # the plan is still shown


def test_dry_run_quotes_what_the_shell_would_split(project, strict_fp, capsys):
    code, out, _ = run_main(
        ["--env", "dev", "--dry-run", "--no-latest", "--build-arg", "NOTE=two words; $HOME"], capsys
    )
    assert code == 0
    build = out.splitlines()[0]
    assert "--build-arg 'NOTE=two words; $HOME'" in build
    assert shlex.split(build)[0:3] == ["DOCKER_BUILDKIT=1", "docker", "build"]


def test_dry_run_shows_bare_docker_even_when_docker_is_set(project, strict_fp, capsys, monkeypatch):
    monkeypatch.setenv("DOCKER", "/opt/x/mydocker")
    code, out, _ = run_main(["--env", "dev", "--dry-run"], capsys)
    assert code == 0 and normal(out).splitlines() == [DEV_BUILD, DEV_INSPECT]


DRY_RUN_EXAMPLES = [
    (
        ["--env", "dev"],
        [
            "rag-worker:dev-20231203-143022",
            "rag-worker:dev",
            "rag-worker:git-a1b2c3d",
            "rag-worker:latest",
        ],
    ),
    (
        ["--version", "1.0.0", "--env", "prod"],
        [
            "rag-worker:v1.0.0",
            "rag-worker:1.0.0",
            "rag-worker:prod-20231203-143022",
            "rag-worker:prod",
            "rag-worker:git-a1b2c3d",
            "rag-worker:latest",
        ],
    ),
    (
        ["--env", "staging", "--version", "1.0.0-rc.1"],
        [
            "rag-worker:v1.0.0-rc.1",
            "rag-worker:1.0.0-rc.1",
            "rag-worker:staging-20231203-143022",
            "rag-worker:staging",
            "rag-worker:git-a1b2c3d",
            "rag-worker:latest",
        ],
    ),
    (
        ["--env", "dev", "--registry", "123456789.dkr.ecr.us-east-1.amazonaws.com/rag-worker-dev"],
        [
            "123456789.dkr.ecr.us-east-1.amazonaws.com/rag-worker-dev:dev-20231203-143022",
            "123456789.dkr.ecr.us-east-1.amazonaws.com/rag-worker-dev:dev",
            "123456789.dkr.ecr.us-east-1.amazonaws.com/rag-worker-dev:git-a1b2c3d",
            "123456789.dkr.ecr.us-east-1.amazonaws.com/rag-worker-dev:latest",
        ],
    ),
    (
        ["--env", "dev", "--tag", "my-custom-tag"],
        [
            "rag-worker:dev-20231203-143022",
            "rag-worker:dev",
            "rag-worker:git-a1b2c3d",
            "rag-worker:my-custom-tag",
            "rag-worker:latest",
        ],
    ),
    (
        ["--env", "dev", "--no-cache"],
        [
            "rag-worker:dev-20231203-143022",
            "rag-worker:dev",
            "rag-worker:git-a1b2c3d",
            "rag-worker:latest",
        ],
    ),
]


@pytest.mark.parametrize("argv, expected", DRY_RUN_EXAMPLES)
def test_guide_examples_as_dry_runs(argv, expected, project, strict_fp, capsys):
    code, out, _ = run_main(argv + ["--dry-run"], capsys)
    assert code == 0
    build, inspect = out.splitlines()
    assert tags_of(build) == expected
    assert ("--no-cache" in shlex.split(build)) == ("--no-cache" in argv)
    assert inspect.endswith(" IMAGE_ID")  # the image the build's --iidfile names


# --- the clock ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tz", ["UTC", "EST+5", "IST-5:30", "Asia/Tokyo", "Pacific/Chatham", "America/St_Johns"]
)
def test_source_date_epoch_is_formatted_in_utc_under_every_tz(
    tz, project, strict_fp, capsys, monkeypatch
):
    """issue 11 (d): SOURCE_DATE_EPOCH=1700000000 gave dev-20231115-071320 under Asia/Tokyo."""
    set_tz(monkeypatch, tz)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    code, out, _ = run_main(["--env", "dev", "--dry-run"], capsys)
    assert code == 0
    build = out.splitlines()[0]
    assert tags_of(build)[0] == "rag-worker:dev-20231114-221320"
    assert "--build-arg BUILD_TIMESTAMP=20231114-221320 " in build
    assert "--label org.opencontainers.image.created=2023-11-14T22:13:20+00:00 " in build


@pytest.mark.parametrize("tz, hours", [("UTC", 0), ("EST+5", -5), ("IST-5:30", 5.5)])
def test_without_source_date_epoch_the_timestamp_is_local_time_in_tz(
    tz, hours, project, strict_fp, capsys, monkeypatch
):
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    set_tz(monkeypatch, tz)
    before = datetime.now(timezone.utc)
    code, out, _ = run_main(["--env", "dev", "--dry-run"], capsys)
    assert code == 0
    build = out.splitlines()[0]
    stamp = tags_of(build)[0].split(":dev-")[1]
    wall = datetime.strptime(stamp, "%Y%m%d-%H%M%S")
    expected = before.replace(tzinfo=None) + timedelta(hours=hours)
    assert abs((wall - expected).total_seconds()) < 5
    sign = "-" if hours < 0 else "+"
    offset = f"{sign}{int(abs(hours)):02d}:{int(abs(hours) % 1 * 60):02d}"
    assert f"org.opencontainers.image.created={wall.isoformat()}{offset} " in build


def test_same_source_date_epoch_gives_the_same_commands(project, fp, capsys, monkeypatch):
    register_git(fp)
    register_git(fp)
    register_git(fp)
    first = run_main(["--env", "dev", "--dry-run"], capsys)
    second = run_main(["--env", "dev", "--dry-run"], capsys)
    assert first == second
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(int(EPOCH) + 1))
    third = run_main(["--env", "dev", "--dry-run"], capsys)
    assert "dev-20231203-143023" in third[1]


def test_without_source_date_epoch_the_clock_is_now_in_tz(monkeypatch):
    set_tz(monkeypatch, "XXX+5")  # POSIX: five hours west of UTC
    expected = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(hours=5)
    moment = steps.facts.clock({})
    assert abs((moment - expected).total_seconds()) < 5
    assert steps.facts.clock({"SOURCE_DATE_EPOCH": ""}) is not None  # empty: now, as unset


def test_tag_build_arg_and_created_label_name_one_instant_while_the_clock_ticks(
    project, strict_fp, capsys, monkeypatch
):
    ticks = iter(datetime(2020, 1, 1, 0, 0, second) for second in range(1, 60))
    monkeypatch.setattr(steps.facts, "clock", lambda *a, **k: next(ticks))
    code, out, _ = run_main(["--env", "dev", "--dry-run"], capsys)
    assert code == 0
    stamps = set(re.findall(r"dev-(2020\d{4}-\d{6})", out))
    assert stamps == set(re.findall(r"BUILD_TIMESTAMP=(\S+)", out)) and len(stamps) == 1
    (stamp,) = stamps
    created = re.search(r"org\.opencontainers\.image\.created=(\S+)", out)[1]
    assert created.startswith(f"2020-01-01T00:00:{stamp[-2:]}")


# --- the build: one docker build, one docker image inspect -------------------------------------


def register_build_and_inspect(fp, program=DOCKER, repo_tags=None, returncode=0):
    build = fp.register([fp.program(program), "build", fp.any()], returncode=returncode)
    tags = (
        repo_tags
        if repo_tags is not None
        else [
            f"rag-worker:dev-{STAMP}",
            "rag-worker:dev",
            "rag-worker:git-a1b2c3d",
            "rag-worker:latest",
        ]
    )
    listed = "[" + ",".join(f'"{t}"' for t in tags) + "]"
    inspect = fp.register(
        [fp.program(program), "image", "inspect", fp.any()],
        stdout=f"sha256:0123456789ab 151234567 {listed}\n",
    )
    return build, inspect


def test_a_cached_build_runs_exactly_build_then_inspect(project, strict_fp, capsys):
    build, inspect = register_build_and_inspect(strict_fp)
    code, out, err = run_main(["--env", "dev"], capsys)
    assert code == 0, err
    assert docker_calls(strict_fp) == 2
    assert [Path(call[0]).name for call in strict_fp.calls] == ["git"] * GIT_QUERIES + [
        "docker",
        "docker",
    ]
    assert normal_argv(strict_fp.calls[GIT_QUERIES])[1:] == shlex.split(DEV_BUILD)[2:]
    assert list(strict_fp.calls[GIT_QUERIES + 1])[1:] == shlex.split(DEV_INSPECT_REAL)[1:]
    kwargs = build.calls[0].kwargs
    assert kwargs["env"]["DOCKER_BUILDKIT"] == "1"
    # docker's stdout is ours; its progress (stderr) is passed on by the runner, which keeps
    # its end for build_failure (through a pty on a terminal: test_runner.py)
    assert kwargs["stdout"] is None and kwargs["stderr"] == subprocess.PIPE
    assert out == ""


def test_plan_before_build_and_summary_after(project, strict_fp, capsys):
    register_build_and_inspect(strict_fp)
    code, _, err = run_main(["--env", "dev"], capsys)
    assert code == 0
    lines = normal(err).splitlines()
    build_at = lines.index(f"+ {DEV_BUILD}")
    assert lines.index("  - rag-worker:dev-20231203-143022") < build_at
    assert lines.index("  GIT_COMMIT=a1b2c3d") < build_at
    after = lines[build_at + 1 :]
    assert after[:6] == [
        f"+ {DEV_INSPECT_REAL}",
        "built sha256:0123456789ab (151.2MB) with 4 tags:",
        "  rag-worker:dev-20231203-143022",
        "  rag-worker:dev",
        "  rag-worker:git-a1b2c3d",
        "  rag-worker:latest",
    ]
    assert "run it: docker run -p 8080:8080 rag-worker:dev-20231203-143022" in after
    assert any(line.startswith("push it: ") for line in after)


def test_no_cache_reaches_the_build(project, strict_fp, capsys):
    build, _ = register_build_and_inspect(strict_fp)
    assert run_main(["--env", "dev", "--no-cache"], capsys)[0] == 0
    assert "--no-cache" in strict_fp.calls[GIT_QUERIES]
    assert docker_calls(strict_fp) == 2


def test_docker_variable_starts_that_binary(project, strict_fp, capsys, monkeypatch):
    monkeypatch.setenv("DOCKER", "/opt/x/mydocker")
    register_build_and_inspect(strict_fp, program="mydocker")
    code, _, err = run_main(["--env", "dev"], capsys)
    assert code == 0, err
    assert [call[0] for call in list(strict_fp.calls)[GIT_QUERIES:]] == ["/opt/x/mydocker"] * 2
    assert f"+ {DEV_BUILD}" in normal(err).splitlines()  # the log still says docker


def test_image_lacking_a_tag_fails(project, strict_fp, capsys):
    register_build_and_inspect(strict_fp, repo_tags=[f"rag-worker:dev-{STAMP}"])
    code, _, err = run_main(["--env", "dev"], capsys)
    assert code == 1
    assert "error: the built image lacks tags rag-worker:dev, rag-worker:git-a1b2c3d" in err


# --- failures ----------------------------------------------------------------------------------


@pytest.fixture
def no_docker_on_path(tmp_path, monkeypatch):
    """A PATH holding only a git (faked by fp anyway): docker is not installed."""
    bin_dir = tmp_path / "nodocker"
    bin_dir.mkdir()
    (bin_dir / "git").write_text("#!/bin/sh\nexit 99\n")
    (bin_dir / "git").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    with local.env(PATH=str(bin_dir)):
        yield


def test_docker_not_installed(project, strict_fp, no_docker_on_path, capsys):
    code, _, err = run_main(["--env", "dev"], capsys)
    assert code == 1
    assert (
        err.splitlines()[-1]
        == "error: docker not found: install docker (as root on Debian or Ubuntu: make engine) or set DOCKER to its path"
    )
    assert docker_calls(strict_fp) == 0


def test_docker_variable_naming_a_missing_file(project, fp, capsys, monkeypatch, tmp_path):
    register_git(fp)
    fp.allow_unregistered(True)  # the start really is attempted, and fails
    monkeypatch.setenv("DOCKER", str(tmp_path / "nope" / "docker"))
    code, _, err = run_main(["--env", "dev"], capsys)
    assert code == 1
    assert err.splitlines()[-1] == (
        f"error: {tmp_path}/nope/docker not found: install docker "
        "(as root on Debian or Ubuntu: make engine) or set DOCKER to its path"
    )


def register_failed_build(fp, version_stdout="", version_stderr="", version_rc=0, buildx_rc=None):
    fp.register([fp.program(DOCKER), "build", fp.any()], returncode=1)
    fp.register(
        [fp.program(DOCKER), "version", "--format", "{{.Client.Version}}"],
        stdout=version_stdout,
        stderr=version_stderr,
        returncode=version_rc,
    )
    if buildx_rc is not None:
        fp.register(
            [fp.program(DOCKER), "buildx", "version"],
            returncode=buildx_rc,
            stderr="docker: 'buildx' is not a docker command.\n" if buildx_rc else "",
            stdout="" if buildx_rc else "github.com/docker/buildx v0.12.1\n",
        )


DAEMON_DOWN = (
    "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
    "Is the docker daemon running?\n"
)


def test_daemon_unreachable(project, strict_fp, capsys):
    register_failed_build(strict_fp, "24.0.7\n", DAEMON_DOWN, version_rc=1)
    code, _, err = run_main(["--env", "dev"], capsys)
    assert code == 1
    last = err.splitlines()[-1]
    assert last.startswith("error: cannot reach the Docker daemon at the local socket")
    assert "DOCKER_HOST" in last
    assert docker_calls(strict_fp) == 2  # build, version: no inspect


def test_daemon_unreachable_names_docker_host(project, strict_fp, capsys, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.0.0.5:2375")
    register_failed_build(
        strict_fp,
        "24.0.7\n",
        "Cannot connect to the Docker daemon at tcp://10.0.0.5:2375. Is the "
        "docker daemon running?\n",
        version_rc=1,
    )
    code, _, err = run_main(["--env", "dev"], capsys)
    assert code == 1 and "at tcp://10.0.0.5:2375" in err.splitlines()[-1]


def test_socket_permission_denied(project, strict_fp, capsys):
    register_failed_build(
        strict_fp,
        "24.0.7\n",
        "permission denied while trying to connect to the Docker daemon socket "
        "at unix:///var/run/docker.sock\n",
        version_rc=1,
    )
    code, _, err = run_main(["--env", "dev"], capsys)
    assert code == 1
    assert err.splitlines()[-1].startswith("error: no permission to use the Docker daemon's socket")


def test_client_without_buildkit(project, strict_fp, capsys):
    register_failed_build(strict_fp, "25.0.3\n", buildx_rc=1)
    code, _, err = run_main(["--env", "dev"], capsys)
    assert code == 1
    last = err.splitlines()[-1]
    assert last.startswith("error: this docker client (25.0.3) needs the buildx plugin")
    assert "install buildx" in last and "set DOCKER" in last


@pytest.mark.parametrize(
    "extra",
    [["--disable-content-trust"], ["--stream"], ["--disable-content-trust=true", "--stream"]],
)
def test_a_classic_builder_option_on_a_buildx_client_is_named(project, strict_fp, capsys, extra):
    """Docker 23+'s docker build is buildx, which refuses the classic builder's options
    ("unknown flag"): the error names them and what to do, not only "docker build failed"."""
    register_failed_build(strict_fp, "28.2.2\n", buildx_rc=0)
    code, _, err = run_main(["--env", "dev", "--", *extra], capsys)
    assert code == 1
    names = ", ".join(dict.fromkeys(word.split("=")[0] for word in extra))
    assert err.splitlines()[-1] == (
        f"error: this docker client (28.2.2) builds with buildx, which refuses {names} "
        '("unknown flag"): an option of the classic builder\'s docker build, given after --; '
        "drop it, or set DOCKER to a client older than 23.0, whose docker build has BuildKit "
        "built in (e.g. Debian 12's /usr/bin/docker)"
    )


def test_a_classic_builder_option_on_a_classic_client_is_a_plain_build_failure(
    project, strict_fp, capsys
):
    register_failed_build(strict_fp, "20.10.24\n")
    code, _, err = run_main(["--env", "dev", "--", "--disable-content-trust"], capsys)
    assert code == 1 and "refuses" not in err


def test_old_client_without_buildx_is_a_plain_build_failure(project, strict_fp, capsys):
    register_failed_build(strict_fp, "20.10.24\n")  # BuildKit built in: buildx is not asked
    code, _, err = run_main(["--env", "dev"], capsys)
    assert code == 1
    assert err.splitlines()[-1] == "error: docker build failed (exit 1); its output is above"
    assert strict_fp.call_count([strict_fp.program(DOCKER), "buildx", "version"]) == 0


def test_failing_dockerfile(project, strict_fp, capsys):
    register_failed_build(strict_fp, "24.0.7\n", buildx_rc=0)
    code, _, err = run_main(["--env", "dev"], capsys)
    assert code == 1
    assert err.splitlines()[-1] == "error: docker build failed (exit 1); its output is above"
    assert (
        strict_fp.call_count([strict_fp.program(DOCKER), "image", "inspect", strict_fp.any()]) == 0
    )


@pytest.mark.parametrize(
    "raised", [KeyboardInterrupt(), Interrupted("interrupted; stopped docker build")]
)
def test_ctrl_c_exits_130(raised, project, strict_fp, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise raised

    monkeypatch.setattr(steps.build, "build", interrupted)
    code, _, err = run_main(["--env", "dev"], capsys)
    assert code == 130
    assert err.splitlines()[-1].startswith("error: interrupted")


# --- entry points ------------------------------------------------------------------------------


def child_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER", "ECR_REGISTRY_URI")}
    env.update(SOURCE_DATE_EPOCH=EPOCH, TZ="UTC", **extra)
    return env


def test_python_dash_m_ragbuild_help():
    done = subprocess.run(
        [sys.executable, "-m", "ragbuild", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: ragbuild [-h]")
    assert "examples:\n  ragbuild --env dev\n" in done.stdout


def test_run_exits_with_mains_status_and_leaves_the_objects_to_the_process(monkeypatch):
    """The entry point: main()'s status is the exit status, and gc.freeze() comes after main()
    (the shutdown's collections skip what the run made; before main() they would miss nothing)."""
    import gc

    calls = []
    monkeypatch.setattr(cli, "main", lambda: calls.append("main") or 3)
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    with pytest.raises(SystemExit) as exit_:
        cli.run()
    assert exit_.value.code == 3
    assert calls == ["main", "freeze"]


@pytest.mark.parametrize("argv, status", [(["--help"], 0), (["--env", "dev", "--bogus"], 2)])
def test_the_script_exits_with_mains_status(fresh_clone, tmp_path, argv, status):
    done = subprocess.run(
        [sys.executable, "-I", str(fresh_clone / "scripts" / "build-image.py"), *argv],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
    )
    assert done.returncode == status, done.stderr


@pytest.fixture
def fresh_clone(tmp_path):
    """The files a clone has, somewhere else, never installed."""
    clone = tmp_path / "clone"
    shutil.copytree(
        REPO / "ragbuild", clone / "ragbuild", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(REPO / "scripts", clone / "scripts")
    return clone


def test_script_help_from_a_fresh_clone(fresh_clone, tmp_path):
    # -I: no PYTHONPATH, no user site, no script directory or cwd on sys.path
    done = subprocess.run(
        [sys.executable, "-I", str(fresh_clone / "scripts" / "build-image.py"), "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: build-image.py")


def test_script_dry_run_from_a_fresh_clone(fresh_clone, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "Dockerfile").write_text("FROM scratch\n")
    done = subprocess.run(
        [
            sys.executable,
            "-I",
            str(fresh_clone / "scripts" / "build-image.py"),
            "--env",
            "dev",
            "--dry-run",
        ],
        cwd=work,
        capture_output=True,
        text=True,
        env=child_env(GIT_CEILING_DIRECTORIES=str(tmp_path)),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    build, inspect = done.stdout.splitlines()
    assert tags_of(build) == [f"rag-worker:dev-{STAMP}", "rag-worker:dev", "rag-worker:latest"]
    assert "--build-arg GIT_COMMIT=unknown" in build
    assert "warning: not a git repository" in done.stderr


def test_script_without_its_packages_says_how_to_install(fresh_clone, tmp_path):
    bare = [sys.executable, "-S", "-I"]  # no site-packages at all
    probe = subprocess.run(
        bare
        + [
            "-c",
            "import importlib.util as u; "
            "print(u.find_spec('plumbum') is None and "
            "u.find_spec('semver') is None)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if probe.stdout.strip() != "True":
        pytest.skip("this interpreter has plumbum or semver outside site-packages")
    done = subprocess.run(
        bare + [str(fresh_clone / "scripts" / "build-image.py"), "--env", "dev"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    matcher = "e2b-dockerfile-utils" if sys.version_info >= (3, 11) else "docker"
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(
        f"error: missing Python packages plumbum, semver, shtab, {matcher}: "
    )
    assert f"pip install plumbum semver shtab {matcher}`" in done.stderr


# --- the guide's commands: bash's tags (the drop-in promise) ------------------------------------

MOMENT = datetime(2023, 12, 3, 14, 30, 22)
GIT = GitInfo(sha="a1b2c3d")
ECR_DEV = "123456789.dkr.ecr.us-east-1.amazonaws.com/rag-worker-dev"
ECR_PROD = "123456789.dkr.ecr.us-east-1.amazonaws.com/rag-worker-prod"

GUIDE_EXAMPLES = [
    pytest.param(
        ["--env", "dev"],
        [
            "rag-worker:dev-20231203-143022",
            "rag-worker:dev",
            "rag-worker:git-a1b2c3d",
            "rag-worker:latest",
        ],
        id="development",
    ),
    pytest.param(
        ["--version", "1.0.0", "--env", "prod"],
        [
            "rag-worker:v1.0.0",
            "rag-worker:1.0.0",
            "rag-worker:prod-20231203-143022",
            "rag-worker:prod",
            "rag-worker:git-a1b2c3d",
            "rag-worker:latest",
        ],
        id="production-1.0.0",
    ),
    pytest.param(
        ["--env", "staging", "--version", "1.0.0-rc.1"],
        [
            "rag-worker:v1.0.0-rc.1",
            "rag-worker:1.0.0-rc.1",
            "rag-worker:staging-20231203-143022",
            "rag-worker:staging",
            "rag-worker:git-a1b2c3d",
            "rag-worker:latest",
        ],
        id="staging-rc",
    ),
    pytest.param(
        ["--env", "dev", "--registry", ECR_DEV],
        [
            f"{ECR_DEV}:dev-20231203-143022",
            f"{ECR_DEV}:dev",
            f"{ECR_DEV}:git-a1b2c3d",
            f"{ECR_DEV}:latest",
        ],
        id="ecr-registry",
    ),
    pytest.param(
        ["--env", "prod", "--version", "1.0.0", "--registry", ECR_PROD, "--push"],
        [
            f"{ECR_PROD}:v1.0.0",
            f"{ECR_PROD}:1.0.0",
            f"{ECR_PROD}:prod-20231203-143022",
            f"{ECR_PROD}:prod",
            f"{ECR_PROD}:git-a1b2c3d",
            f"{ECR_PROD}:latest",
        ],
        id="build-and-push",
    ),
    pytest.param(
        ["--env", "dev", "--no-cache"],
        [
            "rag-worker:dev-20231203-143022",
            "rag-worker:dev",
            "rag-worker:git-a1b2c3d",
            "rag-worker:latest",
        ],
        id="no-cache",
    ),
    pytest.param(
        ["--env", "dev", "--tag", "my-custom-tag"],
        [
            "rag-worker:dev-20231203-143022",
            "rag-worker:dev",
            "rag-worker:git-a1b2c3d",
            "rag-worker:my-custom-tag",
            "rag-worker:latest",
        ],
        id="custom-tag",
    ),
    pytest.param(
        ["--version", "1.2.3", "--env", "prod", "--registry", ECR_PROD, "--push", "--no-cache"],
        [
            f"{ECR_PROD}:v1.2.3",
            f"{ECR_PROD}:1.2.3",
            f"{ECR_PROD}:prod-20231203-143022",
            f"{ECR_PROD}:prod",
            f"{ECR_PROD}:git-a1b2c3d",
            f"{ECR_PROD}:latest",
        ],
        id="multiple-operations",
    ),
    pytest.param(
        ["--version", "1.0.0", "--env", "dev"],
        [
            "rag-worker:v1.0.0",
            "rag-worker:1.0.0",
            "rag-worker:dev-20231203-143022",
            "rag-worker:dev",
            "rag-worker:git-a1b2c3d",
            "rag-worker:latest",
        ],
        id="help-example-version-dev",
    ),
    pytest.param(
        ["--version", "v1.2.3", "--env", "prod", "--registry", ECR_PROD],
        [
            f"{ECR_PROD}:v1.2.3",
            f"{ECR_PROD}:1.2.3",
            f"{ECR_PROD}:prod-20231203-143022",
            f"{ECR_PROD}:prod",
            f"{ECR_PROD}:git-a1b2c3d",
            f"{ECR_PROD}:latest",
        ],
        id="leading-v-stripped-once",
    ),
    pytest.param(
        ["--version", "2.0.0", "--no-latest"],
        [
            "rag-worker:v2.0.0",
            "rag-worker:2.0.0",
            "rag-worker:git-a1b2c3d",
        ],
        id="version-only-no-latest",
    ),
    pytest.param(
        ["--env", "dev", "--no-latest", "--latest"],
        [
            "rag-worker:dev-20231203-143022",
            "rag-worker:dev",
            "rag-worker:git-a1b2c3d",
            "rag-worker:latest",
        ],
        id="latest-after-no-latest",
    ),
]


@pytest.mark.parametrize("argv, expected", GUIDE_EXAMPLES)
def test_the_guides_commands_plan_bashs_tags(argv, expected):
    """The drop-in promise, from the command line the guide gives to the tags bash made."""
    assert list(make_plan(build_cli.parse_build(argv), Config(), GIT, MOMENT).refs) == expected


# --- main(): the program's name as it was started, the push hint's exact command, and a closed ------


REPO = Path(__file__).resolve().parents[3]
REGISTRY = "registry.example.com/rag"


# --- the name in usage lines --------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv0, name",
    [
        ("scripts/build-image.py", "build-image.py"),
        ("./build-image.py", "build-image.py"),
        ("/home/me/.venv/bin/ragbuild", "ragbuild"),
        ("/x/site-packages/ragbuild/__main__.py", "ragbuild"),
    ],
)
def test_program_name(argv0, name):
    assert rerun.program_name(argv0) == name


def test_usage_says_ragbuild_for_the_console_script(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/venv/bin/ragbuild"])
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ragbuild [-h]") and "\n  ragbuild --env dev " in out
    assert cli.main(["--bogus"]) == 2
    assert "(see ragbuild --help)" in capsys.readouterr().err
    assert cli.main(["clean", "--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: ragbuild clean")


# --- the push hint: the exact command ------------------------------------------------------------


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    "argv0, environ, words",
    [
        ("scripts/build-image.py", {}, [".venv/bin/python", "scripts/build-image.py"]),  # make
        (
            "scripts/build-image.py",
            {"VIRTUAL_ENV": "VENV"},
            ["scripts/build-image.py"],
        ),  # activated
        ("./scripts/build-image.py", {"RAGBUILD_IN_VENV": "1"}, ["./scripts/build-image.py"]),  # #!
        ("build-image.py", {"VIRTUAL_ENV": "VENV"}, ["./build-image.py"]),
        ("/opt/venv/bin/ragbuild", {}, ["ragbuild"]),
        ("/x/ragbuild/__main__.py", {}, [".venv/bin/python", "-m", "ragbuild"]),
    ],
)
def test_rerun_words_start_the_program_as_it_was_started(argv0, environ, words, workdir):
    venv = str(workdir / ".venv")
    environ = {k: venv if v == "VENV" else v for k, v in environ.items()}
    assert rerun.rerun_words(argv0, f"{venv}/bin/python", venv, "/usr", environ) == words


def test_outside_a_virtualenv_the_script_runs_through_its_shebang(workdir):
    assert rerun.rerun_words("scripts/build-image.py", "/usr/bin/python3", "/usr", "/usr", {}) == [
        "scripts/build-image.py"
    ]


def hint(argv, monkeypatch, registry=None):
    from datetime import datetime

    from ragbuild.config import Config
    from ragbuild.git import GitInfo
    from ragbuild.plan import make_plan

    monkeypatch.setattr(sys, "argv", ["scripts/build-image.py"])
    monkeypatch.setattr(sys, "prefix", sys.base_prefix)  # not in a virtualenv
    plan = make_plan(
        build_cli.parse_build(argv), Config(), GitInfo(sha="a1b2c3d"), datetime(2023, 1, 1)
    )
    return build_cli.push_hint(plan, argv)


def test_push_hint_is_the_script_with_every_argument_and_push(monkeypatch):
    argv = [
        "--env",
        "prod",
        "--version",
        "1.2.3",
        "--smoke-test",
        "--registry",
        REGISTRY,
        "--build-arg",
        "PIP_INDEX_URL=https://mirror/simple",
        "--tag",
        "qa",
    ]
    assert hint(argv, monkeypatch) == (
        "push it: scripts/build-image.py --env prod --version 1.2.3 --smoke-test --registry "
        f"{REGISTRY} --build-arg PIP_INDEX_URL=https://mirror/simple --tag qa --push"
    )


def test_push_hint_without_a_registry_names_the_flag_and_no_make_target(monkeypatch):
    line = hint(
        ["--env", "prod", "--version", "1.2.3", "--build-arg", "NPM_TOKEN=s3cr3t"], monkeypatch
    )
    assert line == (
        "push it: scripts/build-image.py --env prod --version 1.2.3 --build-arg "
        "'NPM_TOKEN=***' --registry '<registry>/<repository>' --push "
        "(put the *** values back)"
    )
    assert "make" not in line and "s3cr3t" not in line


# --- a closed stdout -----------------------------------------------------------------------------


def test_dry_run_into_a_closed_pipe_exits_141_without_a_traceback(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "Dockerfile").write_text("FROM scratch\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(SOURCE_DATE_EPOCH=EPOCH, TZ="UTC", GIT_CEILING_DIRECTORIES=str(tmp_path))
    read, write = os.pipe()
    os.close(read)  # `| head -1` that has already gone
    try:
        done = subprocess.run(
            [sys.executable, str(REPO / "scripts" / "build-image.py"), "--env", "dev", "--dry-run"],
            cwd=work,
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            timeout=60,
        )
    finally:
        os.close(write)
    assert done.returncode == cli.EXIT_BROKEN_PIPE == 141
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
    assert f"rag-worker:dev-{STAMP}" in done.stderr  # the plan went to stderr as usual


def test_script_started_by_a_python_without_its_packages_uses_the_projects_venv(
    fresh_clone, tmp_path
):
    # ./scripts/build-image.py after `make build-dev`: the #! line's python3 lacks the packages
    # that .venv has; the README's commands must work without activating .venv
    (fresh_clone / ".venv").symlink_to(sys.prefix, target_is_directory=True)  # has them
    done = subprocess.run(
        [sys.executable, "-S", "-I", str(fresh_clone / "scripts" / "build-image.py"), "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: build-image.py")


def test_a_venv_without_the_packages_is_tried_once_then_says_how_to_install(fresh_clone, tmp_path):
    bin_dir = fresh_clone / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    python = bin_dir / "python"  # a .venv whose python lacks the packages too
    python.write_text(f'#!/bin/sh\nexec {sys.executable} -S -I "$@"\n')
    python.chmod(0o755)
    done = subprocess.run(
        [
            sys.executable,
            "-S",
            "-I",
            str(fresh_clone / "scripts" / "build-image.py"),
            "--env",
            "dev",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
    )
    assert done.returncode == 1  # no loop: one try with .venv, then the one-line reason
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("error: missing Python packages plumbum, semver, shtab, ")


# --- the checks before the build, in a dry run -------------------------------------------------


def test_a_dry_run_with_a_missing_scanner_warns_and_prints_the_scan_it_would_run(
    project, strict_fp, capsys
):
    from ragbuild import cli

    code = cli.main(
        [
            "--env",
            "dev",
            "--dry-run",
            "--scan-command",
            "no-such-scanner-4711 {image} --fail-on high",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0
    assert (
        "warning: the scanner no-such-scanner-4711 (--scan-command) is not installed or not "
        "executable (a real run stops here)"
    ) in err.splitlines()
    assert out.splitlines()[-1] == "no-such-scanner-4711 IMAGE_ID --fail-on high"
    assert err.count("no-such-scanner-4711") == 1  # one warning, not one per check
