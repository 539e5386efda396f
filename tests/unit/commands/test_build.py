"""commands/build.py: the build's parser: every flag in both spellings, the defaults, the help's
groups, sections and examples."""

from __future__ import annotations
import re
import shlex
import sys
import pytest
from ragbuild import cli
from ragbuild.commands import build as build_cli
from fakes import run_main


DOCKER = "docker"


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
