"""run/redaction.py's rules, each printout whole: which build-arg names are secrets, how URL
credentials are hidden, and how an argv is shown. Written against the survivors of
``make mutation`` (docs/test-harness.md#mutation-testing)."""

from __future__ import annotations

import pytest

from ragbuild.run import redaction


@pytest.mark.parametrize(
    "name",
    [
        "GITHUB_TOKEN",
        "token",  # any case
        "DB_PASSWORD",
        "passwd",
        "AWS_SECRET_ACCESS_KEY",
        "MY_CREDENTIALS",
        "API_KEY",
        "KEY",
        "SSH-KEYS",  # '-' separates parts too
        "apikey",
        "PRIVATEKEY",
    ],
)
def test_secret_names(name):
    assert redaction.is_secret_name(name) is True


@pytest.mark.parametrize(
    "name", ["MONKEY", "KEYBOARD", "KEY.ID", "VERSION", "PIP_INDEX_URL", "", "KEY S"]
)
def test_names_that_are_not_secrets(name):
    assert redaction.is_secret_name(name) is False


@pytest.mark.parametrize(
    "key, value, shown",
    [
        ("API_KEY", "abc", "***"),
        ("MODE", "abc", "abc"),
        ("URL", "https://user:tok@host/simple", "https://***@host/simple"),
        ("URL", "HTTPS://tok@h/x and git+ssh://u@g/r", "HTTPS://***@h/x and git+ssh://***@g/r"),
        ("URL", "https://host/a@b", "https://host/a@b"),  # '@' after the path: no userinfo
        ("URL", "user@host", "user@host"),  # no scheme: not a URL
    ],
)
def test_redact_value(key, value, shown):
    assert redaction.redact_value(key, value) == shown


def test_secret_build_args_name_the_hidden_ones_in_order():
    args = [
        ("B_TOKEN", "x"),
        ("MODE", "dev"),
        ("PIP_INDEX_URL", "https://u:p@h/simple"),
        ("A_KEY", "y"),
        ("URL", "https://h/simple"),
    ]
    assert redaction.secret_build_args(args) == ["B_TOKEN", "PIP_INDEX_URL", "A_KEY"]


@pytest.mark.parametrize(
    "argv, shown",
    [
        (
            ["docker", "build", "--build-arg", "API_TOKEN=s3cret", "--build-arg", "MODE=dev", "."],
            ("docker", "build", "--build-arg", "API_TOKEN=***", "--build-arg", "MODE=dev", "."),
        ),
        (
            ["docker", "build", "--build-arg=API_TOKEN=s3cret", "--build-arg=MODE=a=b"],
            ("docker", "build", "--build-arg=API_TOKEN=***", "--build-arg=MODE=a=b"),
        ),
        (
            ["--build-arg", "URL=https://u:p@h/x", "https://u:p@h/y"],
            ("--build-arg", "URL=https://***@h/x", "https://***@h/y"),
        ),
        # the key ends at the first '=': the value may hold more
        (
            ["--build-arg", "API_TOKEN=a=b", "--build-arg", "URL=https://u:p@h/x?a=b"],
            ("--build-arg", "API_TOKEN=***", "--build-arg", "URL=https://***@h/x?a=b"),
        ),
        (["--build-arg=API_TOKEN=a=b"], ("--build-arg=API_TOKEN=***",)),
        # a --build-arg word without '=' (docker reads the variable from the environment)
        (["--build-arg", "API_TOKEN", "x"], ("--build-arg", "API_TOKEN", "x")),
        (["--build-arg=API_TOKEN", "x"], ("--build-arg=API_TOKEN", "x")),
        # ... is shown as is, and the words after it still are checked
        (
            ["--build-arg", "API_TOKEN", "--build-arg", "B_KEY=v", "https://u@h/"],
            ("--build-arg", "API_TOKEN", "--build-arg", "B_KEY=***", "https://***@h/"),
        ),
        # only the word right after --build-arg is a build arg, never the first word because
        # the last one is --build-arg, nor the word after next
        (["API_TOKEN=s", "--build-arg"], ("API_TOKEN=s", "--build-arg")),
        (["--build-arg", "A=1", "API_TOKEN=s"], ("--build-arg", "A=1", "API_TOKEN=s")),
        (["x", "API_TOKEN=s", "--build-arg"], ("x", "API_TOKEN=s", "--build-arg")),
        # the flag is spelled exactly so
        (["--BUILD-ARG", "API_TOKEN=s"], ("--BUILD-ARG", "API_TOKEN=s")),
        (["--build-args=API_TOKEN=s"], ("--build-args=API_TOKEN=s",)),
        ([], ()),
    ],
)
def test_redact_argv(argv, shown):
    assert redaction.redact_argv(argv) == shown


def test_redact_argv_takes_any_iterable():
    assert redaction.redact_argv(iter(["--build-arg", "A_KEY=1"])) == ("--build-arg", "A_KEY=***")
