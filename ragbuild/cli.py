"""The CLI: the top-level dispatch to a subcommand (ragbuild/commands/, each with its own
parser; the build when no name comes first), and every error mapped to an exit status, in one
place."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Callable, NoReturn, Optional
from collections.abc import Sequence

from ragbuild.commands import args, build
from ragbuild.commands.rerun import program_name
from ragbuild.errors import EXIT_BUG, EXIT_OK, EXIT_USAGE, RagbuildError, Stopped, signal_of

#: Exit status after stdout was closed early (``... --dry-run | head -1``): 128 + SIGPIPE, what a
#: shell reports for a tool the broken pipe stopped, so ``set -o pipefail`` sees it as usual.
EXIT_BROKEN_PIPE = 141

#: name -> (its module in ragbuild/commands, its parser, its command), imported when asked for:
#: the build (the default) never imports doctor or clean.
SUBCOMMANDS = {
    "smoke": ("smoke", "smoke_parser", "cmd_smoke"),
    "run": ("local", "run_parser", "cmd_run"),
    "logs": ("local", "logs_parser", "cmd_logs"),
    "clean": ("clean", "clean_parser", "cmd_clean"),
    "shell": ("local", "shell_parser", "cmd_shell"),
    "doctor": ("doctor", "doctor_parser", "cmd_doctor"),
    "push": ("promote", "push_parser", "cmd_push"),
    "promote": ("promote", "promote_parser", "cmd_promote"),
    "completion": ("completion", "completion_parser", "cmd_completion"),
}


def subcommand(name: str) -> tuple[Callable[[], build.ArgumentParser], Callable[[list[str]], int]]:
    """The parser and the command of subcommand ``name``."""
    module_name, parser, command = SUBCOMMANDS[name]
    module = importlib.import_module(f"ragbuild.commands.{module_name}")
    return getattr(module, parser), getattr(module, command)


def parsers() -> dict[str, Callable[[], build.ArgumentParser]]:
    """Every subcommand's parser (a function making it), by name: what completion completes."""
    return {name: subcommand(name)[0] for name in SUBCOMMANDS}


def _error(message: str) -> None:
    from ragbuild.run.console import paint

    print(paint(f"error: {message}", sys.stderr), file=sys.stderr)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from ragbuild.run import signals

    previous = signals.install()  # SIGTERM and SIGHUP get Ctrl-C's cleanup, and exit 128 + N
    try:
        return _main(argv)
    finally:
        signals.restore(previous)


def run() -> NoReturn:
    """The program's entry point (``scripts/build-image.py``, ``python -m ragbuild``, the
    ``ragbuild`` console script): ``main()``, then exit with its status.

    Before exiting, ``gc.freeze()`` takes every object out of the garbage collector's sight, so
    the interpreter's shutdown does not walk them all once more: after a push that was 17-35 ms
    of every run on the benchmark machine, about 6 ms with it (benchmarks/shutdown_cost.py;
    benchmarks/README.md, "Current figures"; runs 6 and 7 in
    ``git show 9b045af:benchmarks/README.md``). The rest of the shutdown is as ever
    (``atexit``, finalizers of whatever the reference counts free, the flush of stdout and
    stderr); the memory of what a cycle held goes back to the OS with the process.
    https://docs.python.org/3/library/gc.html#gc.freeze"""
    import gc

    status = main()
    gc.freeze()
    sys.exit(status)


def _main(argv: Optional[Sequence[str]] = None) -> int:
    args.PROG = program_name()
    args.COMMANDS = tuple(SUBCOMMANDS)
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in SUBCOMMANDS:
            return subcommand(argv[0])[1](argv[1:])
        if argv and argv[0] == "build":
            argv = argv[1:]
        return build.cmd_build(argv)
    except RagbuildError as err:
        _error(str(err))
        return err.exit_code
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM/SIGHUP outside any child (Stopped)
        _error(str(stop) if isinstance(stop, Stopped) else "interrupted")
        return 128 + signal_of(stop)
    except BrokenPipeError:
        # stdout's reader is gone (`| head -1`): nothing more can be said there, and Python's
        # final flush would fail again, so stdout becomes /dev/null (the recipe of the Python docs)
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # a stdout without a file descriptor
            pass
        return EXIT_BROKEN_PIPE
    except Exception:  # a bug: the traceback is for the report
        import traceback  # only here: a bug's report, not every run's start

        traceback.print_exc()
        print(
            f"error: this is a bug in ragbuild (exit {EXIT_BUG}); please report it with the "
            "traceback above and the command you ran",
            file=sys.stderr,
        )
        return EXIT_BUG
    except SystemExit as exit_:  # --help
        return (
            exit_.code
            if isinstance(exit_.code, int)
            else (EXIT_OK if exit_.code is None else EXIT_USAGE)
        )
