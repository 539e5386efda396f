"""What every subcommand's parser shares: an ArgumentParser whose errors are one line and exit
2 (``UsageError``), argparse types that refuse a bad number with its reason, and the
``--dry-run`` every subcommand but completion has."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Callable, NoReturn, TypeVar

from ragbuild.errors import UsageError

if TYPE_CHECKING:  # imported when a command runs (--help stays fast)
    from ragbuild.config import LatestPolicy, Options

#: The program's name in usage lines and messages.
PROG = "build-image.py"
#: The subcommands' names (cli.SUBCOMMANDS, set by cli.main): a build's stray word that is one
#: was a command written after an option (``-q promote ...``)
COMMANDS: tuple[str, ...] = ()

N = TypeVar("N", int, float)


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises UsageError (one line, exit 2) instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def number(
    convert: Callable[[str], N], accept: Callable[[N], bool], what: str
) -> Callable[[str], N]:
    """An argparse type: ``convert`` the text, and refuse it unless ``accept`` holds."""

    def parse(text: str) -> N:
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accept(value):  # a nan fails every comparison, so it is refused
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    return parse


port = number(int, lambda v: 1 <= v <= 65535, "a port number (1-65535)")


lines = number(int, lambda v: v >= 0, "a number of lines (0 or more)")


def limit(key: str) -> Callable[[str], float]:
    """The argparse type of a limit (limits.py), the same check setup.cfg's value gets."""
    from ragbuild.limits import BY_KEY

    setting = BY_KEY[key]
    return number(setting.convert, setting.accept, setting.what)


def limit_help(key: str) -> str:
    from ragbuild.limits import BY_KEY, default_text

    setting = BY_KEY[key]
    return f"{setting.help} (default: {key} in setup.cfg [ragbuild], else {default_text(setting)})"


def sub_parser(name: str, description: str) -> ArgumentParser:
    parser = ArgumentParser(prog=f"{PROG} {name}", description=description, allow_abbrev=False)
    parser.add_argument("--dry-run", action="store_true", help="print the commands; run nothing")
    return parser


def tag_options(ns: argparse.Namespace, policy: LatestPolicy) -> Options:
    """``Options`` of the flags that decide the tags (``commands.build.add_tag_flags``), as a
    build, ``push IMAGE`` and ``promote`` read them; ``policy``: the latest policy made of
    --latest/--no-latest/--latest-policy (``commands.build.latest_policy``). Each command adds
    its other flags (``dataclasses.replace``)."""
    from ragbuild.config import Options

    return Options(
        version=ns.version,
        env=ns.env,
        tags=tuple(ns.tags),
        semver_tags=ns.semver_tags,
        latest_policy=policy,
        build_number=ns.build_number,
        ci_tags=ns.ci_tags,
    )
