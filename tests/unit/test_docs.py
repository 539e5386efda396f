"""The documentation as a reader meets it: README.md short and starting with the two set-up
commands, every relative link in README.md, docs/*.md and benchmarks/README.md leading to a file
and heading that exist (GitHub's anchors), every page reachable from README.md and listed in the
index docs/README.md, benchmarks/README.md short, and the tables that mirror code (exit
statuses, make targets) naming all of it."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from ragbuild import cli, errors
from ragbuild.commands import build as build_cli
from fakes import REPO

README = REPO / "README.md"
INDEX = REPO / "docs" / "README.md"
COMMANDS = REPO / "docs" / "commands.md"
BENCHMARKS = REPO / "benchmarks" / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md")), BENCHMARKS]
MAX_README_LINES = 150
MAX_README_WORDS = 600  # issue 21; `wc -w` counts the same
MAX_BENCHMARKS_LINES = 150  # issue 21: the current figures; the history is in git


def without_code_blocks(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)


def anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lowercase, punctuation other than '-' and '_'
    dropped, spaces as '-' (the rule of github/cmark-gfm's heading ids)."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set:
    found, seen = set(), {}
    for heading in re.findall(r"^#{1,6} +(.+?) *$", without_code_blocks(page.read_text()), re.M):
        slug = anchor(heading)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def links(page: Path) -> list:
    """The relative link targets of ``page`` (``path``, ``path#anchor`` or ``#anchor``)."""
    targets = re.findall(r"\]\(([^)\s]+)\)", without_code_blocks(page.read_text()))
    return [target for target in targets if not re.match(r"[a-z]+:", target)]


def shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if REPO in path.parents else path.name


def broken_links(page: Path) -> list:
    broken = []
    for target in links(page):
        path, _, fragment = target.partition("#")
        goal = (page.parent / path).resolve() if path else page
        if not goal.exists():
            broken.append(f"{target}: no file {shown(goal)}")
        elif fragment and (goal.suffix != ".md" or fragment not in anchors(goal)):
            broken.append(f"{target}: no heading #{fragment} in {shown(goal)}")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(page):
    assert broken_links(page) == []


def test_a_broken_link_or_anchor_is_found(tmp_path):
    (tmp_path / "there.md").write_text("# A page\n\n## Exit status\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](there.md#exit-status) [gone](missing.md) [no such](there.md#nope)\n"
        "```sh\n[ignored](in-a-code-block.md)\n```\n[web](https://example.com/x)\n"
    )
    found = [entry.split(":")[0] for entry in broken_links(page)]
    assert found == ["missing.md", "there.md#nope"]


def test_anchors_follow_github():
    assert anchor("Cleaning up (`clean`)") == "cleaning-up-clean"
    assert anchor("`setup.cfg [ragbuild]`") == "setupcfg-ragbuild"
    assert anchor("What differs from bash, and why") == "what-differs-from-bash-and-why"
    assert anchor("`GITHUB_OUTPUT`") == "github_output"


def test_readme_is_short_and_starts_with_the_two_set_up_commands():
    text = README.read_text()
    lines = text.splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines"
    assert len(text.split()) <= MAX_README_WORDS, f"README.md has {len(text.split())} words"
    block = lines[lines.index("```sh") + 1 : lines.index("```")]
    assert [line.split()[:2] for line in block] == [["make", "build-dev"], ["make", "test"]]
    assert lines.index("```sh") < 4  # the first thing after the title


def linked_pages(page: Path) -> set:
    """The Markdown files ``page`` links to (anchors dropped; a bare ``#anchor`` is ``page``)."""
    targets = {(page.parent / target.partition("#")[0]).resolve() for target in links(page)}
    return {target for target in targets if target.suffix == ".md" and target.is_file()}


def reachable(start: Path) -> set:
    seen, todo = {start}, [start]
    while todo:
        for target in linked_pages(todo.pop()) - seen:
            seen.add(target)
            todo.append(target)
    return seen


def test_every_page_is_reachable_from_the_readme_and_the_index_links_them_all():
    assert INDEX in linked_pages(README)
    assert [shown(page) for page in PAGES if page not in reachable(README)] == []
    indexed = linked_pages(INDEX)
    assert [
        shown(page) for page in PAGES if page not in indexed and page not in (README, INDEX)
    ] == []


def test_a_page_only_one_link_away_from_another_is_reachable(tmp_path):
    (tmp_path / "a.md").write_text("[b](b.md#x) [self](#top)\n")
    (tmp_path / "b.md").write_text("[c](sub/c.md)\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.md").write_text("[back](../a.md) [gone](d.md)\n")
    (tmp_path / "lone.md").write_text("# nobody links here\n")
    assert reachable(tmp_path / "a.md") == {
        tmp_path / name for name in ("a.md", "b.md", "sub/c.md")
    }


def test_the_pages_named_in_help_exist(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    named = set(re.findall(r"\b(?:docs/[\w.-]+\.md|README\.md)", out))
    assert "docs/configuration.md" in named
    assert [name for name in sorted(named) if not (REPO / name).is_file()] == []
    assert 'README.md, "Exit status"' in out and "exit-status" in anchors(README)


def section(page: Path, heading: str) -> str:
    """The text of ``page`` from the heading ``## heading`` to the next ``## `` heading."""
    text = page.read_text()
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def test_benchmarks_readme_is_short():
    lines = BENCHMARKS.read_text().splitlines()
    assert len(lines) <= MAX_BENCHMARKS_LINES, f"benchmarks/README.md has {len(lines)} lines"


@pytest.mark.parametrize("page", [README, COMMANDS], ids=shown)
def test_the_exit_status_table_names_every_exit_status(page):
    table = section(page, "Exit status")
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", table, re.M)}
    defined = {
        value
        for module in (errors, cli)
        for name, value in vars(module).items()
        if name.startswith("EXIT_") and isinstance(value, int)
    }
    assert defined <= documented and 3 in documented  # 3: an unexpected exception (a bug)


@pytest.mark.parametrize("page", [README, COMMANDS], ids=shown)
def test_the_make_targets_table_names_every_target(page):
    phony = re.search(r"^\.PHONY: (.+)$", (REPO / "Makefile").read_text(), re.M).group(1).split()
    table = section(page, "Make targets")
    listed = {
        name
        for cell in re.findall(r"^\| ([^|]+) \|", table, re.M)
        for name in re.findall(r"`([a-z0-9-]+)", cell)
    }
    assert [target for target in phony if target != "help" and target not in listed] == []


def documented_commands() -> list:
    """Every ``./scripts/build-image.py ...`` line of the pages' code blocks (``\\`` continuations
    joined), as (page, argv after the program)."""
    found = []
    for page in PAGES:
        for block in re.findall(r"^```(?:sh)?\n(.*?)^```", page.read_text(), re.M | re.S):
            for line in block.replace("\\\n", " ").splitlines():
                if not line.lstrip().startswith("./scripts/build-image.py "):
                    continue  # output shown in a block (an error's "Docker's") is no command
                words = shlex.split(line.split(" # ")[0])
                found.append((page, words[1:]))
    return found


def test_every_documented_build_command_parses():
    commands = documented_commands()
    assert len([page for page, _ in commands if page == README]) >= 8
    parser = build_cli.build_parser()
    for _page, argv in commands:
        if argv and argv[0] in cli.SUBCOMMANDS:  # push, promote: their own parsers
            cli.subcommand(argv[0])[0]().parse_args(argv[1:])
            continue
        parser.parse_args(argv)  # a UsageError names the flag that is gone or renamed
