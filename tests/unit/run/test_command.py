"""run/command.py: a command as data; its display is shell-quoted and hides what its argv keeps."""

from __future__ import annotations
import shlex
from ragbuild.run.command import Command


def test_display_is_shell_quoted_and_round_trips():
    cmd = Command(
        ("docker", "build", "-t", "a b", "--build-arg", "X=it's"),
        env=(("K", "v w"),),
        stdin="<password>",
    )
    assert cmd.display() == (
        "K='v w' docker build -t 'a b' --build-arg 'X=it'\"'\"'s' < <password>"
    )
    assert shlex.split(Command(("docker", "x y", "$HOME")).display()) == ["docker", "x y", "$HOME"]


def test_display_hides_what_the_argv_keeps():
    cmd = Command(
        ("docker", "build", "--build-arg", "API_TOKEN=x", "."), env=(("GITHUB_TOKEN", "t"),)
    )
    assert cmd.display() == "GITHUB_TOKEN='***' docker build --build-arg 'API_TOKEN=***' ."
    assert cmd.argv[3] == "API_TOKEN=x" and cmd.hides_secrets
    assert not Command(("docker", "build", "--build-arg", "NOTE=x", ".")).hides_secrets
