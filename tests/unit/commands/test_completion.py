"""Tab completion (ragbuild/commands/completion.py): the generated bash script, run by a real bash,
completes flags, subcommands, --env from setup.cfg, --latest-policy; zsh registers both names;
a normal run never loads it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from ragbuild import cli
from ragbuild.commands import completion
from ragbuild.commands import build as build_cli

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "..")
SCRIPT = os.path.join(ROOT, "scripts", "build-image.py")

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def script(shell):
    """The script the CLI's `completion SHELL` prints."""
    return completion.script(shell, build_cli.build_parser(), cli.parsers())


@pytest.fixture(scope="module")
def bash_script(tmp_path_factory):
    path = tmp_path_factory.mktemp("completion") / "build-image.bash"
    path.write_text(script("bash"))
    return path


def complete(bash_script, words, cwd):
    """What bash offers for the last of ``words`` (COMP_WORDS as bash sets them on a tab)."""
    program = f"""
source {bash_script}
COMP_WORDS=("$@"); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
COMP_LINE="$*"; COMP_POINT=${{#COMP_LINE}}; COMPREPLY=()
fn=$(complete -p "$1" | sed -E 's/.* -F ([^ ]+) .*/\\1/')  # what bash calls for this program
"$fn"
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    done = subprocess.run(
        ["bash", "-c", program, "bash", *words], cwd=cwd, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return sorted(set(done.stdout.split()))


def test_env_values_come_from_setup_cfg_when_tab_is_pressed(bash_script, tmp_path):
    (tmp_path / "setup.cfg").write_text(
        "[metadata]\nname = x\n[ragbuild]\nimage-name = w\n"
        "environments = dev, qa,prod  canary\n"
        "[other]\nenvironments = nope\n"
    )
    assert complete(bash_script, ["build-image.py", "--env", ""], tmp_path) == [
        "canary",
        "dev",
        "prod",
        "qa",
    ]
    assert complete(bash_script, ["ragbuild", "-e", "q"], tmp_path) == ["qa"]
    (tmp_path / "setup.cfg").write_text("[ragbuild]\nenvironments = blue green\n")
    assert complete(bash_script, ["build-image.py", "--env", ""], tmp_path) == ["blue", "green"]


@pytest.mark.parametrize(
    "setup_cfg", [None, "[metadata]\nname = x\n", "[ragbuild]\nimage-name = w\n"]
)
def test_env_values_default_without_a_setting(bash_script, tmp_path, setup_cfg):
    if setup_cfg is not None:
        (tmp_path / "setup.cfg").write_text(setup_cfg)
    assert complete(bash_script, ["build-image.py", "--env", ""], tmp_path) == sorted(
        completion.DEFAULT_ENVIRONMENTS
    )


def test_latest_policy_values(bash_script, tmp_path):
    assert complete(bash_script, ["build-image.py", "--latest-policy", ""], tmp_path) == [
        "always",
        "auto",
        "never",
    ]


def test_subcommands_and_their_flags(bash_script, tmp_path):
    assert complete(bash_script, ["build-image.py", ""], tmp_path) == sorted(cli.SUBCOMMANDS)
    assert complete(bash_script, ["build-image.py", "smoke", "--ex"], tmp_path) == [
        "--expect-commit",
        "--expect-env",
        "--expect-version",
    ]
    assert complete(bash_script, ["ragbuild", "completion", ""], tmp_path) == ["bash", "zsh"]


def test_every_build_flag_is_completed(bash_script, tmp_path):
    flags = {
        option
        for action in build_cli.build_parser()._actions
        for option in action.option_strings
        if option.startswith("--")
    }
    offered = set(complete(bash_script, ["build-image.py", "--"], tmp_path))
    assert flags - offered == set()
    assert "--no-cache" in offered and "--ci-tags" in offered


def test_every_subcommand_flag_is_completed(bash_script, tmp_path):
    for name, make in cli.parsers().items():
        flags = {
            option
            for action in make()._actions
            for option in action.option_strings
            if option.startswith("--")
        }
        assert flags <= set(complete(bash_script, ["build-image.py", name, "--"], tmp_path)), name


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
@pytest.mark.parametrize("how", ["eval", "fpath"])
def test_zsh_registers_both_names(tmp_path, how):
    text = script("zsh")
    if how == "eval":
        load = f'autoload -U compinit; compinit -u -D; eval "$(cat {tmp_path}/s)"'
        (tmp_path / "s").write_text(text)
    else:
        (tmp_path / "_build-image.py").write_text(text)
        load = f"fpath=({tmp_path} $fpath); autoload -U compinit; compinit -u -D"
    done = subprocess.run(
        ["zsh", "-f", "-c", f"{load}; print -r -- $_comps[ragbuild] $_comps[build-image.py]"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.split()) == 2, done.stdout


def test_the_cli_prints_the_script_and_help_names_it(capsys):
    assert cli.main(["completion", "bash"]) == 0
    out = capsys.readouterr().out
    assert "complete -o bashdefault -F _shtab_build_image_py ragbuild" in out
    assert cli.main(["completion", "fish"]) == 2
    assert "invalid choice: 'fish'" in capsys.readouterr().err
    assert cli.main(["--help"]) == 0
    assert "completion bash|zsh" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["--help"], ["--env", "dev", "--dry-run"]])
def test_a_normal_run_never_loads_shtab(argv, tmp_path):
    probe = (
        "import runpy, sys\n"
        f"sys.argv = [{SCRIPT!r}, *{argv!r}]\n"
        "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "print('LOADED', sorted(m for m in sys.modules if m.split('.')[0] in "
        "('shtab', 'ragbuild') and m.endswith(('shtab', 'completion'))), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DOCKER": "/bin/true"},
    )
    assert "LOADED []" in done.stderr, done.stderr
