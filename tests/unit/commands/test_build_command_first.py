"""A subcommand written after an option (``build-image.py -q promote SOURCE``) is parsed as a
build's stray words; the reason says the command goes first, not that docker options go
after ``--``. A stray word that is no command keeps the build's own message."""

import pytest

from ragbuild import cli


@pytest.mark.parametrize(
    "argv",
    [
        ["-q", "promote", "registry.example.com/app:dev", "--env", "staging"],
        ["--dry-run", "doctor"],
        ["-q", "push", "sha256:" + "a" * 64, "--env", "dev"],
    ],
)
def test_a_command_after_an_option_says_to_name_it_first(argv, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"error: {argv[1]} is a command: name it first, then its options" in err
    assert "docker build options go after --" not in err


def test_a_stray_word_that_is_no_command_keeps_the_builds_message(capsys):
    assert cli.main(["--env", "dev", "promte"]) == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: promte (docker build options go after --" in err


def test_a_tag_named_like_a_command_is_no_command(project, capsys):
    # an option's value is not a stray word: `--tag push` tags, it does not dispatch
    assert cli.main(["--env", "dev", "--tag", "push", "--dry-run"]) == 0
