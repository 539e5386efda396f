"""The context guard: what the build context sends after .dockerignore, its size warning, the
refusal of likely secrets, the build-arg warning, and its place in the build (before any docker
call, in --dry-run too). Contexts are real directories under tmp_path."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fakes import docker_calls, register_git, tree, REPO
from ragbuild import cli, guard
from ragbuild.commands import build as build_cli
from ragbuild.errors import UsageError
from ragbuild.run.redaction import secret_build_args


def sent(root: Path, dockerfile: str = "Dockerfile") -> guard.ContextReport:
    """What the guard counts as sent from the context ``root``."""
    return guard.scan_context(str(root), str(root / dockerfile))


# --- .dockerignore semantics (the library's; checked where Docker differs from gitignore) ------


MATCHER_CASES = [
    # (patterns, path, excluded)
    (["*.log"], "a.log", True),
    (["*.log"], "sub/a.log", False),  # Docker anchors at the root; gitignore would match
    (["**/*.log"], "sub/deep/a.log", True),
    (["data"], "data/x/y.bin", True),  # a matched directory excludes what is under it
    (["data", "!data/keep.txt"], "data/keep.txt", False),
    (["data", "!data/keep.txt"], "data/drop.txt", True),
    (["/build/"], "build/out.o", True),  # leading and trailing slashes do not matter
    (["# a comment", ""], "# a comment", False),
    (["*", "!src"], "src/app.py", False),
    (["docs/*.md"], "docs/deep/x.md", False),
]


@pytest.fixture(params=["e2b", "docker-sdk"])
def matcher_factory(request):
    if request.param == "e2b":
        return guard.make_matcher
    pytest.importorskip("docker.utils.build")
    return guard._SdkMatcher


@pytest.mark.parametrize("patterns, path, excluded", MATCHER_CASES)
def test_dockerignore_semantics(matcher_factory, patterns, path, excluded):
    assert matcher_factory(list(patterns)).matches(path) is excluded


def test_the_walk_counts_files_and_bytes_after_dockerignore(tmp_path):
    root = tree(
        tmp_path,
        {
            "Dockerfile": 10,
            ".dockerignore": ".git\n**/__pycache__\n*.log\ndata\n!data/keep.bin\n",
            "src/app.py": 100,
            "src/__pycache__/app.pyc": 5000,
            "app.log": 7000,
            "sub/kept.log": 3,
            ".git/objects/pack": 90000,
            "data/big.bin": 80000,
            "data/keep.bin": 20,
        },
    )
    report = sent(root)
    ignore_size = len((root / ".dockerignore").read_text())
    # Dockerfile, .dockerignore, src/app.py, sub/kept.log, data/keep.bin
    assert report.files == 5
    assert report.bytes == 10 + ignore_size + 100 + 3 + 20
    assert report.ignore_file == str(root / ".dockerignore")
    assert report.entries["src/"] == [100, 1] and report.entries["data/"] == [20, 1]


def test_an_excluded_directory_without_exceptions_is_not_walked(tmp_path, monkeypatch):
    root = tree(
        tmp_path,
        {
            "Dockerfile": 1,
            ".dockerignore": "node_modules\n",
            "node_modules/a/b.js": 1,
            "src/x.py": 1,
        },
    )
    walked = []
    real = os.scandir
    monkeypatch.setattr(guard.os, "scandir", lambda d: walked.append(Path(d).name) or real(d))
    sent(root)
    assert "node_modules" not in walked and "src" in walked


def test_dockerfile_specific_ignore_file_wins(tmp_path):
    root = tree(
        tmp_path,
        {
            "Dockerfile": 1,
            "Dockerfile.dockerignore": "big\n",
            ".dockerignore": "small\n",
            "big/x": 1000,
            "small/y": 10,
        },
    )
    report = sent(root)
    assert report.ignore_file == str(root / "Dockerfile.dockerignore")
    assert "big/" not in report.entries and report.entries["small/"] == [10, 1]


def test_symlinks_are_sent_as_links_not_followed(tmp_path):
    outside = tree(tmp_path / "outside", {"huge.bin": 100000})
    root = tree(tmp_path / "ctx", {"Dockerfile": 1})
    (root / "link").symlink_to(outside, target_is_directory=True)
    report = sent(root)
    assert report.files == 2 and report.bytes < 1000


def test_an_invalid_pattern_is_a_usage_error_naming_the_file(tmp_path):
    root = tree(tmp_path, {"Dockerfile": 1, ".dockerignore": "[a-\n"})
    with pytest.raises(UsageError, match=r"\.dockerignore: Invalid ignore pattern '\[a-'"):
        sent(root)


# --- what counts as a secret -------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, content, why",
    [
        (".env", "", "environment file"),
        ("config/.env.production", "", "environment file"),
        (".env.example", "", None),
        ("certs/server.pem", "", "PEM key or certificate"),
        ("id_rsa", "", "SSH private key"),
        ("keys/id_ed25519", "", "SSH private key"),
        ("id_rsa.pub", "", None),
        (".aws/credentials", "", "AWS credentials"),
        ("home/.aws/credentials", "", "AWS credentials"),
        (".aws/config", "", None),
        (".npmrc", "//registry.npmjs.org/:_authToken=npm_abc123\n", "token or password"),
        (".npmrc", "//registry.npmjs.org/:_authToken=${NPM_TOKEN}\n", None),
        (".npmrc", "registry=https://registry.npmjs.org/\n", None),
        (
            ".pypirc",
            "[pypi]\nusername = __token__\npassword = pypi-AgEIcHlwaS5vcmc\n",
            "token or password",
        ),
        (".pypirc", "[distutils]\nindex-servers = pypi\n# password = \n", None),
        (".netrc", "", "netrc credentials"),
        ("src/app.py", "password = 'x'", None),  # only the files named above are read
    ],
)
def test_secret_reason(path, content, why):
    assert guard.secret_reason(path, lambda: content) == why


@pytest.mark.parametrize(
    "name, secret",
    [
        ("NPM_TOKEN", True),
        ("DB_PASSWORD", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("API_KEY", True),
        ("OPENAI_APIKEY", True),
        ("github-token", True),
        ("PIP_INDEX_URL", False),
        ("PYTHON_IMAGE", False),
        ("KEYBOARD", False),
        ("MONKEY_PATCH", False),
    ],
)
def test_secret_looking_build_arg_names(name, secret):
    assert secret_build_args([(name, "v")]) == ([name] if secret else [])


# --- the ignore file as BuildKit reads it, and the two senders' walks (found by
# tests/e2e/test_context_differential.py against the real clients) ----------------------------


@pytest.mark.parametrize(
    "data, lines",
    [
        (b"a\nb\n", ["a", "b"]),
        (b"a\r\nb", ["a", "b"]),  # CRLF; no final newline
        (
            b"\xef\xbb\xbf  .dockerignore\t\r\n",
            ["  .dockerignore\t"],
        ),  # the BOM goes, first line only
        (b"a\rb\r", ["a\rb"]),  # a lone CR is no line end (Go's bufio.ScanLines)
        (b"a\xc2\x85b\xe2\x80\xa8c\x0cd\n", ["a\x85b\u2028c\x0cd"]),  # nor these (str.splitlines)
        (
            b"caf\xe9.txt\n",
            [os.fsdecode(b"caf\xe9.txt")],
        ),  # Latin-1 bytes: as os.scandir names them
    ],
)
def test_ignore_file_lines_as_buildkit_reads_them(data, lines):
    assert guard.read_ignore_file(data) == lines


def test_a_bom_before_a_pattern_does_not_hide_it(tmp_path):
    root = tree(tmp_path, {"Dockerfile": 1, ".dockerignore": 1, "a.txt": 1})
    (root / ".dockerignore").write_bytes(b"\xef\xbb\xbf  .dockerignore\t\r\na.txt\r\n")
    assert sorted(rel for rel, _ in guard.walk_context(guard.ContextRules(str(root)))) == [
        "Dockerfile"
    ]


def test_a_latin1_pattern_matches_the_latin1_file_name(tmp_path):
    (tmp_path / "Dockerfile").write_text("x")
    (tmp_path / os.fsdecode(b"caf\xe9.txt")).write_text("x")
    (tmp_path / ".dockerignore").write_bytes(b"caf\xe9.txt\n.dockerignore\n")
    assert [rel for rel, _ in guard.walk_context(guard.ContextRules(str(tmp_path)))] == [
        "Dockerfile"
    ]


@pytest.mark.parametrize("data, number", [(b"a.txt\rb.txt\r", 1), (b"# ok\x01\nx\n\ta\x01b \n", 3)])
def test_a_pattern_with_a_control_character_is_refused_as_docker_fails_on_it(
    tmp_path, data, number
):
    (tmp_path / ".dockerignore").write_bytes(data)
    with pytest.raises(
        UsageError,
        match=rf"\.dockerignore line {number}: the pattern .* holds a "
        r"control character, .*PROTOCOL_ERROR.*LF or CRLF",
    ):
        guard.ContextRules(str(tmp_path))


def test_a_tab_inside_a_pattern_is_refused_around_it_trimmed(tmp_path):
    (tmp_path / ".dockerignore").write_bytes(b"\ta b\t\r\n")
    guard.ContextRules(str(tmp_path))  # trimmed, as docker does
    (tmp_path / ".dockerignore").write_bytes(b"a\tb\n")
    with pytest.raises(UsageError, match=r"line 1: .*a tab, on Docker 26 engines"):
        guard.ContextRules(str(tmp_path))


WILD = {
    "Dockerfile": 1,
    "node_modules/pkg/keep.js": 1,
    "node_modules/pkg/a.js": 1,
    "src/keep.py": 1,
}


@pytest.mark.parametrize(
    "ignore, differ, buildx, classic",
    [
        # an exception with a wildcard: buildx walks into the excluded directory, the old CLI does not
        ("node_modules\n!**/keep*\n", True, ["node_modules/pkg/keep.js"], []),
        (
            "node_modules\n!node_modules/pkg/keep.js\n",
            True,
            ["node_modules/pkg/keep.js"],
            ["node_modules/pkg/keep.js"],
        ),  # its text starts with the directory's: both walk in
        ("node_modules\n", False, [], []),
        # the older matcher tries a pattern on a path's leading directories: !node_modules/pkg
        # brings back what */*/* left out; buildx's matcher skips an exception that did not match
        # a directory while it was not excluded (case 66 of seed 11, remote and legacy legs)
        (
            "*/*/*\n!node_modules/pkg\n",
            True,
            [],
            ["node_modules/pkg/a.js", "node_modules/pkg/keep.js"],
        ),
    ],
)
def test_the_two_senders_walks_into_excluded_directories(tmp_path, ignore, differ, buildx, classic):
    root = tree(tmp_path, {**WILD, ".dockerignore": ignore})
    rules = guard.ContextRules(str(root))
    assert rules.clients_differ is differ

    def sent():
        return sorted(rel for rel, _ in guard.walk_context(rules) if rel.startswith("node_"))

    assert sent() == buildx
    rules.prefix_exceptions = True
    assert sent() == classic


# --- in the build command ----------------------------------------------------------------------


def test_secrets_in_the_context_stop_the_build_before_any_docker_call(project, strict_fp, capsys):
    (project / ".env").write_text("DB_PASSWORD=x\n")
    code = cli.main(["--env", "dev"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.splitlines()[-1].startswith(
        "error: the build context would send likely secrets: .env (environment file)"
    )
    assert docker_calls(strict_fp) == 0


def test_dry_run_shows_the_context_summary_and_refuses_alike(project, strict_fp, capsys):
    code = cli.main(["--env", "dev", "--dry-run"])
    out, err = capsys.readouterr()
    assert code == 0
    assert "build context .: 1 file, 13B (no .dockerignore)" in err.splitlines()
    assert "build context" not in out  # stdout stays the commands a real run executes
    (project / "id_rsa").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    register_git(strict_fp)
    assert cli.main(["--env", "dev", "--dry-run"]) == 2
    assert "id_rsa (SSH private key)" in capsys.readouterr().err


def test_help_lists_the_guard_flags(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--context-warn-mb MB" in out and "--allow-secrets" in out


@pytest.mark.parametrize("value", ["-1", "lots", "nan"])
def test_context_warn_mb_must_be_a_size(value):
    with pytest.raises(UsageError, match="--context-warn-mb"):
        build_cli.parse_build(["--env", "dev", f"--context-warn-mb={value}"])


def test_help_and_usage_errors_work_without_the_matcher_library(tmp_path):
    """The .dockerignore matcher is needed only to build: --help, a subcommand's --help and a
    refused flag answer as usual where neither matcher library can be imported."""
    probe = (
        "import sys; sys.modules['e2b_dockerfile_utils'] = sys.modules['docker'] = None\n"
        "from ragbuild import cli\n"
        "print([cli.main(argv) for argv in (['--help'], ['clean', '--help'], ['--env', 'nope'])])\n"
    )
    # not in this repository: untracked files there (which docker would send) make git_info
    # ask the matcher whether the tree is dirty, before the flags are checked
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.stdout.strip().splitlines()[-1] == "[0, 0, 2]", done.stderr
    assert "--env 'nope' is not one of" in done.stderr


# --- the project's Dockerfile ------------------------------------------------------------------


def _instructions(text):
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    logical, current = [], ""
    for line in text.splitlines():
        if not current and line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        if current and line.lstrip().startswith("#"):
            continue
        logical.append(current + line)
        current = ""
    return [line.strip() for line in logical if line.strip()]


def test_the_dockerfile_names_no_index_build_arg_as_a_variable_in_a_run_step():
    # BuildKit prints each RUN step with the build args it names ($VAR, ${VAR}) substituted
    # (`#6 [builder 3/3] RUN for v in https://user:token@idx/simple; ...`), so a private index
    # URL's token would be in every build log; the Dockerfile reads them with printenv instead.

    text = (REPO / "Dockerfile").read_text()
    steps = _instructions(text)
    passed_in = [
        step.split()[1] for step in steps if step.upper().startswith("ARG ") and "=" not in step
    ]  # no default: given
    assert "PIP_INDEX_URL" in passed_in and "PIP_EXTRA_INDEX_URL" in passed_in
    named = [
        (name, step[:60])
        for step in steps
        if step.upper().startswith("RUN ")
        for name in passed_in
        if re.search(rf"\$\{{?{name}\b", step)
    ]
    assert named == []
