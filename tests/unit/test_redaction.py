"""Secrets never printed: a secret-looking build arg's value and URL credentials are shown as
``***`` in the plan, the ``+ docker build`` line, the dry run, the push hint and the metadata;
the real argv keeps them. One rule (plan.redact_value) for all of them."""

from __future__ import annotations

import json

import pytest

from ragbuild import cli, metadata
from ragbuild.plan import Command, describe_plan, redact_argv, redact_value

URL = "PIP_INDEX_URL=https://user:tok3n@mirror.example/simple"
SECRET_FLAGS = ["--build-arg", URL, "--build-arg", "API_TOKEN=s3cr3t",
                "--build-arg=NPM_KEY=k3y", "--build-arg", "NOTE=plain"]
LEAKS = ("tok3n", "s3cr3t", "k3y")


@pytest.mark.parametrize("key, value, shown", [
    ("API_TOKEN", "x", "***"),
    ("DB_PASSWORD", "x", "***"),
    ("aws_secret_access_key", "x", "***"),
    ("API_KEY", "x", "***"),
    ("PIP_INDEX_URL", "https://user:tok@mirror/simple", "https://***@mirror/simple"),
    ("PIP_INDEX_URL", "https://mirror/simple", "https://mirror/simple"),
    ("MONKEY", "banana", "banana"),  # KEY only as a whole part
    ("PYTHON_IMAGE", "python:3.11-slim", "python:3.11-slim"),
])
def test_redact_value(key, value, shown):
    assert redact_value(key, value) == shown


def test_redact_argv_handles_both_build_arg_spellings_and_urls_anywhere():
    argv = ("docker", "build", "--build-arg", "API_TOKEN=x", "--build-arg=API_KEY=y",
            "--cache-from", "https://u:p@cache.example/x", "--build-arg", "NOTE=a=b", ".")
    assert redact_argv(argv) == (
        "docker", "build", "--build-arg", "API_TOKEN=***", "--build-arg=API_KEY=***",
        "--cache-from", "https://***@cache.example/x", "--build-arg", "NOTE=a=b", ".")


def test_display_hides_what_the_argv_keeps():
    cmd = Command(("docker", "build", "--build-arg", "API_TOKEN=x", "."),
                  env=(("GITHUB_TOKEN", "t"),))
    assert cmd.display() == "GITHUB_TOKEN='***' docker build --build-arg 'API_TOKEN=***' ."
    assert cmd.argv[3] == "API_TOKEN=x" and cmd.hides_secrets
    assert not Command(("docker", "build", "--build-arg", "NOTE=x", ".")).hides_secrets


def test_dry_run_shows_no_secret_anywhere_and_says_so_once(project, strict_fp, capsys):
    assert cli.main(["--env", "dev", "--dry-run", *SECRET_FLAGS]) == 0
    out, err = capsys.readouterr()
    assert not any(leak in out + err for leak in LEAKS), out + err
    build = out.splitlines()[0]
    assert "'PIP_INDEX_URL=https://***@mirror.example/simple'" in build
    assert "'API_TOKEN=***'" in build and "'NPM_KEY=***'" in build and "NOTE=plain" in build
    assert err.count("are shown as ***") == 1
    assert "build args (secret values shown as ***):" in err.splitlines()
    assert "  API_TOKEN=***" in err.splitlines()


def test_real_run_passes_the_secret_and_prints_it_nowhere(project, strict_fp, capsys):
    build = strict_fp.register([strict_fp.program("docker"), "build", strict_fp.any()])
    strict_fp.register([strict_fp.program("docker"), "image", "inspect", strict_fp.any()],
                       stdout="sha256:0123 12 " + json.dumps(
                           [f"rag-worker:{t}" for t in ("dev-20231203-143022", "dev",
                                                        "git-a1b2c3d", "latest")]) + " null\n")
    assert cli.main(["--env", "dev", "--metadata-file", "m.json", *SECRET_FLAGS]) == 0
    out, err = capsys.readouterr()
    argv = list(build.calls[0].args)
    assert URL in argv and "API_TOKEN=s3cr3t" in argv and "NPM_KEY=k3y" in argv
    assert not any(leak in out + err for leak in LEAKS), err
    hint = [line for line in err.splitlines() if line.startswith("push it: ")]
    assert hint and hint[0].endswith("(put the *** values back)")
    doc = (project / "m.json").read_text()
    assert not any(leak in doc for leak in LEAKS)


def test_the_plan_printout_and_the_metadata_share_the_rule():
    args = (("NPM_TOKEN", "npm_abc"), ("PIP_INDEX_URL", "https://user:s3cret@pypi.example/simple"),
            ("PYTHON_IMAGE", "python:3.11-slim"))
    assert metadata.redact(args) == {key: redact_value(key, value) for key, value in args}


def test_describe_plan_without_secrets_keeps_the_plain_header():
    from datetime import datetime

    from ragbuild.plan import Config, GitInfo, Options, make_plan

    plan = make_plan(Options(env="dev", build_args=("NOTE=x",)), Config(), GitInfo(sha="abc1234"),
                     datetime(2026, 1, 1))
    assert "build args:" in describe_plan(plan) and "  NOTE=x" in describe_plan(plan)
