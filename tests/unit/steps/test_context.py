"""steps/context.py: the context guard step: it asks the client only when the walks differ, reports
the size, refuses secrets (or warns with --allow-secrets), warns about secret build args."""

from __future__ import annotations
import subprocess
import pytest
from ragbuild import steps
from ragbuild.steps.context import check_context
from ragbuild.errors import UsageError
from ragbuild.limits import Limits
from ragbuild.config import Options
from fakes import tree


class Log:
    def __init__(self):
        self.lines = []

    def log(self, message):
        self.lines.append(message)

    @property
    def text(self):
        return "\n".join(self.lines)


class FakePlan:
    def __init__(self, root, build_args=(), context_warn_mb=None, **options):
        self.options = Options(context=str(root), file=str(root / "Dockerfile"), **options)
        self.build_args = tuple(build_args)
        self.limits = Limits().override(context_warn_mb=context_warn_mb)


WILD = {
    "Dockerfile": 1,
    "node_modules/pkg/keep.js": 1,
    "node_modules/pkg/a.js": 1,
    "src/keep.py": 1,
}


class Answers(Log):
    """A runner whose ``docker version`` prints ``client`` (exit ``code``)."""

    def __init__(self, client="", code=0):
        super().__init__()
        self.client, self.code, self.asked = client, code, []

    def run(self, command):
        self.asked.append(command.argv)
        return subprocess.CompletedProcess(command.argv, self.code, self.client + "\n", "")


@pytest.mark.parametrize(
    "client, code, files", [("20.10.24+dfsg1", 0, 2), ("28.0.1", 0, 3), ("", 1, 3)]
)
def test_check_asks_the_client_only_when_the_walks_differ(tmp_path, client, code, files):
    root = tree(tmp_path, {**WILD, ".dockerignore": "node_modules\n!**/keep*\n"})
    runner = Answers(client, code)
    plan = FakePlan(root)
    # Dockerfile, .dockerignore, src/keep.py; buildx's walk also node_modules/pkg/keep.js
    assert check_context(runner, plan).files == files + 1
    assert runner.asked == [("docker", "version", "--format", "{{.Client.Version}}")]
    (root / ".dockerignore").write_text("node_modules\n")
    runner.asked.clear()
    check_context(runner, plan)
    assert runner.asked == []


def test_a_buildx_build_takes_buildx_walk_without_asking(tmp_path):
    root = tree(tmp_path, {**WILD, ".dockerignore": "node_modules\n!**/keep*\n"})
    runner = Answers("20.10.24")
    plan = FakePlan(root, builder="remote")
    assert check_context(runner, plan).files == 4 and runner.asked == []


# --- the step ----------------------------------------------------------------------------------


def test_check_reports_size_and_refuses_secrets_naming_them(tmp_path):
    root = tree(
        tmp_path,
        {"Dockerfile": 1, ".dockerignore": "*.pem\n", "ok.pem": 1, ".env": 1, "deploy/id_rsa": 1},
    )
    log = Log()
    with pytest.raises(UsageError) as refused:
        steps.context.check_context(log, FakePlan(root))
    message = str(refused.value)
    assert message.startswith("the build context would send likely secrets: ")
    assert ".env (environment file)" in message and "deploy/id_rsa (SSH private key)" in message
    assert "ok.pem" not in message  # excluded by .dockerignore: not sent
    assert "--allow-secrets" in message and str(root / ".dockerignore") in message
    assert log.lines[0].startswith(f"build context {root}: 4 files, ")


def test_allow_secrets_turns_the_refusal_into_a_warning(tmp_path):
    root = tree(tmp_path, {"Dockerfile": 1, ".env": 1})
    log = Log()
    steps.context.check_context(log, FakePlan(root, allow_secrets=True))
    assert (
        "warning: sending likely secrets in the build context (--allow-secrets): .env" in log.text
    )


def test_a_large_context_warns_with_the_largest_entries(tmp_path):
    root = tree(
        tmp_path,
        {
            "Dockerfile": 1,
            "data/a.bin": 600_000,
            "data/b.bin": 600_000,
            "model.bin": 300_000,
            "src/app.py": 10,
        },
    )
    log = Log()
    steps.context.check_context(log, FakePlan(root, context_warn_mb=1))
    assert log.lines[0] == f"build context {root}: 5 files, 1.5MB (no .dockerignore)"
    assert log.lines[1].startswith(
        "warning: the build context is 1.5MB, more than 1MB (--context-warn-mb)"
    )
    assert log.lines[2:] == [
        "     1.2MB  data/ (2 files)",
        "   300.0kB  model.bin",
        "       10B  src/ (1 file)",
        "        1B  Dockerfile",
    ]


@pytest.mark.parametrize("limit", [0, 2])
def test_no_size_warning_at_or_below_the_limit_or_with_0(tmp_path, limit):
    root = tree(tmp_path, {"Dockerfile": 1, "data.bin": 1_500_000})
    log = Log()
    steps.context.check_context(log, FakePlan(root, context_warn_mb=limit))
    assert not any(line.startswith("warning") for line in log.lines)


def test_secret_build_arg_warns_about_image_history(tmp_path):
    root = tree(tmp_path, {"Dockerfile": 1})
    log = Log()
    steps.context.check_context(
        log, FakePlan(root, build_args=[("VERSION", "1"), ("NPM_TOKEN", "abc")])
    )
    assert log.lines[0].startswith(
        "warning: --build-arg NPM_TOKEN looks like a secret: build args "
        "stay readable in the image's history"
    )
    assert "abc" not in log.text


@pytest.mark.parametrize(
    "name, value, warned",
    [
        ("PIP_INDEX_URL", "https://u:pAssw0rd@idx.example/simple", True),
        (
            "PIP_EXTRA_INDEX_URL",
            "https://a.example/simple https://__token__:t@b.example/simple",
            True,
        ),
        ("PIP_FIND_LINKS", "git+https://oauth2:glpat-x@gitlab.example/w.git", True),
        ("PIP_INDEX_URL", "https://idx.example/simple", False),
        ("PIP_FIND_LINKS", "http://172.17.0.1:18631/", False),
    ],
)
def test_a_build_arg_with_url_credentials_warns_as_a_secret_name_does(
    tmp_path, name, value, warned
):
    # the value every printout hides as https://***@ is a secret too: docker's progress output
    # shows it wherever a RUN step expands the arg
    root = tree(tmp_path, {"Dockerfile": 1})
    log = Log()
    steps.context.check_context(log, FakePlan(root, build_args=[(name, value)]))
    warnings = [line for line in log.lines if line.startswith("warning:")]
    if warned:
        assert warnings == [warnings[0]] and warnings[0].startswith(
            f"warning: --build-arg {name} carries URL credentials: build args stay readable"
        )
    else:
        assert warnings == []
    assert "pAssw0rd" not in log.text and "glpat-x" not in log.text
