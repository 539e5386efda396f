"""The build command end to end through ``main()``: flags, validation before any docker call,
the dry run, the one build and one inspect, failures and exit codes. The parser on its own is
commands/test_build.py; the entry points (python -m, the script) are cli/test_entry_points.py.

Processes are faked with pytest-subprocess; ``strict_fp`` refuses anything not registered and
answers the git queries with HEAD a1b2c3d. The clock is SOURCE_DATE_EPOCH=2023-12-03 14:30:22 UTC.
"""

from __future__ import annotations
import re
import shlex
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
import pytest
from plumbum import local
from fakes import (
    EPOCH,
    GIT_QUERIES,
    STAMP,
    docker_calls,
    register_git,
    set_tz,
    FAKE_IMAGE_ID,
    run_main,
)
from ragbuild import steps
from ragbuild.errors import Interrupted


DOCKER = "docker"

DEV_BUILD = (
    "DOCKER_BUILDKIT=1 docker build -f Dockerfile -t rag-worker:dev-20231203-143022 "
    "-t rag-worker:dev -t rag-worker:git-a1b2c3d -t rag-worker:latest "
    "--build-arg ENVIRONMENT=dev --build-arg GIT_COMMIT=a1b2c3d "
    "--build-arg BUILD_TIMESTAMP=20231203-143022 "
    "--label org.opencontainers.image.created=2023-12-03T14:30:22+00:00 "
    "--label org.ragbuild.repository=rag-worker --iidfile IIDFILE ."
)
#: the summary inspects the image by the ID the build wrote (a dry run: IMAGE_ID)
DEV_INSPECT = (
    "docker image inspect --format '{{.Id}} {{.Size}} {{json .RepoTags}} "
    "{{json .Config.Labels}}' IMAGE_ID"
)
DEV_INSPECT_REAL = DEV_INSPECT.replace("IMAGE_ID", FAKE_IMAGE_ID)


def normal(text: str) -> str:
    """``text`` with the build's --iidfile path (in the test's own temp directory) as IIDFILE."""
    return re.sub(r"--iidfile \S+", "--iidfile IIDFILE", text)


def normal_argv(argv) -> list:
    return shlex.split(normal(shlex.join(str(word) for word in argv)))


def tags_of(build_line):
    words = shlex.split(build_line)
    return [words[i + 1] for i, word in enumerate(words) if word == "-t"]


def test_registry_from_environment_reaches_the_tags(project, strict_fp, capsys, monkeypatch):
    monkeypatch.setenv("ECR_REGISTRY_URI", "r.example.com/team/rag")
    code, out, _ = run_main(["--env", "dev", "--dry-run"], capsys)
    assert code == 0
    assert tags_of(out.splitlines()[0])[0] == f"r.example.com/team/rag:dev-{STAMP}"


def test_bad_registry_from_environment_names_the_variable(project, strict_fp, capsys, monkeypatch):
    monkeypatch.setenv("ECR_REGISTRY_URI", "https://r.example.com/rag")
    code, _, err = run_main(["--env", "dev", "--dry-run"], capsys)
    assert code == 2
    assert err.splitlines()[-1].startswith(
        "error: ECR_REGISTRY_URI 'https://r.example.com/rag': drop"
    )
    assert docker_calls(strict_fp) == 0


def test_short_help(strict_fp, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["scripts/build-image.py"])
    code, out, _ = run_main(["-h"], capsys)
    assert code == 0 and out.startswith("usage: build-image.py")


def test_build_subcommand_name_is_accepted(project, strict_fp, capsys):
    code, out, _ = run_main(["build", "--env", "dev", "--dry-run"], capsys)
    assert code == 0 and normal(out).splitlines() == [DEV_BUILD, DEV_INSPECT]


# --- project configuration (setup.cfg [ragbuild]) ----------------------------------------------


def test_setup_cfg_sets_image_name_and_environments(project, strict_fp, capsys):
    (project / "setup.cfg").write_text(
        "[metadata]\nname = x\n\n[ragbuild]\nimage-name = acme-worker\nenvironments = dev, qa\n"
    )
    code, out, _ = run_main(["--env", "qa", "--dry-run", "--no-latest"], capsys)
    assert code == 0
    assert tags_of(out.splitlines()[0]) == [
        f"acme-worker:qa-{STAMP}",
        "acme-worker:qa",
        "acme-worker:git-a1b2c3d",
    ]


def test_setup_cfg_environments_limit_env(project, strict_fp, capsys):
    (project / "setup.cfg").write_text("[ragbuild]\nenvironments = dev qa\n")
    code, _, err = run_main(["--env", "staging", "--dry-run"], capsys)
    assert code == 2
    assert err == "error: --env 'staging' is not one of dev, qa\n"


def test_image_name_flag_beats_setup_cfg(project, strict_fp, capsys):
    (project / "setup.cfg").write_text("[ragbuild]\nimage-name = acme-worker\n")
    code, out, _ = run_main(["--env", "dev", "--dry-run", "--image-name=other"], capsys)
    assert code == 0 and tags_of(out.splitlines()[0])[0] == f"other:dev-{STAMP}"


def test_setup_cfg_unknown_key_is_refused(project, strict_fp, capsys):
    (project / "setup.cfg").write_text("[ragbuild]\nimage_name = typo\n")
    code, _, err = run_main(["--env", "dev", "--dry-run"], capsys)
    assert code == 2
    assert err.startswith("error: ") and "unknown setting 'image_name'" in err
    assert docker_calls(strict_fp) == 0


# --- validation: one line, exit 2, nothing started ---------------------------------------------

BAD_INPUTS = [
    ([], "give --version and/or --env"),
    (["--env", "dve"], "--env 'dve' is not one of dev, staging, prod; did you mean 'dev'?"),
    (["--env", "production", "--version", "1.0.0"], "did you mean 'prod'?"),
    (["--version", "1.0", "--env", "dev"], "--version '1.0' is not a semantic version"),
    (["--version", "01.2.3", "--env", "dev"], "--version '01.2.3' is not a semantic version"),
    (["--version", "latest", "--env", "dev"], "--version 'latest' is not a semantic version"),
    (["--version=1.2.3.4", "--env=dev"], "--version '1.2.3.4' is not a semantic version"),
    (["--version="], "--version '' is empty"),
    (["--env", "prod"], "--env prod needs --version"),
    (["--env", "dev", "--tag", ".hidden"], "--tag '.hidden' is not a valid Docker tag"),
    (["--env", "dev", "-t", "ok", "-t", "a:b"], "--tag 'a:b' is not a valid Docker tag"),
    (["--env", "dev", "--tag", "x" * 129], "is not a valid Docker tag: up to 128"),
    (
        ["--env", "dev", "--registry", "r.example.com/Rag"],
        "--registry 'r.example.com/Rag' is not host[:port]/repository with a lowercase",
    ),
    (["--env", "dev", "--registry", "https://r.example.com/x"], "drop the scheme"),
    (["--env", "dev", "--registry", "rag-worker"], "--registry 'rag-worker' is not host[:port]"),
    (["--env", "dev", "--push"], "--push needs a registry"),
    (["--env", "dev", "-f", "missing.Dockerfile"], "Dockerfile 'missing.Dockerfile' not found"),
    (["--env", "dev", "--context", "nowhere"], "build context 'nowhere' is not a directory"),
    (["--env", "dev", "--build-arg", "NOVALUE"], "--build-arg 'NOVALUE' is not KEY=VALUE"),
    (["--env", "dev", "--build-arg", "VERSION=9"], "--build-arg VERSION is set by ragbuild itself"),
    (["--env", "dev", "--image-name", "Rag"], "--image-name 'Rag' is not a lowercase image name"),
    (["--env", "dev", "--bogus"], "unrecognized arguments: --bogus"),
    (["--env", "dev", "--ver", "1.0.0"], "unrecognized arguments: --ver"),  # no abbreviations
    (["--env"], "argument -e/--env: expected one argument"),
]


@pytest.mark.parametrize("argv, fragment", BAD_INPUTS)
@pytest.mark.parametrize("dry_run", [False, True], ids=["real", "dry"])
def test_bad_input_is_one_line_exit_2_and_no_docker(
    argv, fragment, dry_run, project, strict_fp, capsys
):
    code, out, err = run_main(argv + (["--dry-run"] if dry_run else []), capsys)
    assert code == 2
    assert err.startswith("error: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert fragment in err
    assert "Traceback" not in err and out == ""
    assert docker_calls(strict_fp) == 0


def test_bad_source_date_epoch(project, strict_fp, capsys, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    code, _, err = run_main(["--env", "dev"], capsys)
    assert code == 2
    assert err == "error: SOURCE_DATE_EPOCH='yesterday' is not a number of seconds since 1970\n"
    assert docker_calls(strict_fp) == 0


# --- dry run -----------------------------------------------------------------------------------


def test_dry_run_prints_the_exact_commands_and_runs_only_git(project, strict_fp, capsys):
    code, out, err = run_main(["--env", "dev", "--dry-run"], capsys)
    assert code == 0
    assert normal(out).splitlines() == [DEV_BUILD, DEV_INSPECT]
    assert [Path(call[0]).name for call in strict_fp.calls] == ["git"] * GIT_QUERIES
    assert "tags:\n  - rag-worker:dev-20231203-143022\n" in err  # the plan is still shown


def test_dry_run_quotes_what_the_shell_would_split(project, strict_fp, capsys):
    code, out, _ = run_main(
        ["--env", "dev", "--dry-run", "--no-latest", "--build-arg", "NOTE=two words; $HOME"], capsys
    )
    assert code == 0
    build = out.splitlines()[0]
    assert "--build-arg 'NOTE=two words; $HOME'" in build
    assert shlex.split(build)[0:3] == ["DOCKER_BUILDKIT=1", "docker", "build"]


def test_dry_run_shows_bare_docker_even_when_docker_is_set(project, strict_fp, capsys, monkeypatch):
    monkeypatch.setenv("DOCKER", "/opt/x/mydocker")
    code, out, _ = run_main(["--env", "dev", "--dry-run"], capsys)
    assert code == 0 and normal(out).splitlines() == [DEV_BUILD, DEV_INSPECT]


DRY_RUN_EXAMPLES = [
    (
        ["--env", "dev"],
        [
            "rag-worker:dev-20231203-143022",
            "rag-worker:dev",
            "rag-worker:git-a1b2c3d",
            "rag-worker:latest",
        ],
    ),
    (
        ["--version", "1.0.0", "--env", "prod"],
        [
            "rag-worker:v1.0.0",
            "rag-worker:1.0.0",
            "rag-worker:prod-20231203-143022",
            "rag-worker:prod",
            "rag-worker:git-a1b2c3d",
            "rag-worker:latest",
        ],
    ),
    (
        ["--env", "staging", "--version", "1.0.0-rc.1"],
        [
            "rag-worker:v1.0.0-rc.1",
            "rag-worker:1.0.0-rc.1",
            "rag-worker:staging-20231203-143022",
            "rag-worker:staging",
            "rag-worker:git-a1b2c3d",
            "rag-worker:latest",
        ],
    ),
    (
        ["--env", "dev", "--registry", "123456789.dkr.ecr.us-east-1.amazonaws.com/rag-worker-dev"],
        [
            "123456789.dkr.ecr.us-east-1.amazonaws.com/rag-worker-dev:dev-20231203-143022",
            "123456789.dkr.ecr.us-east-1.amazonaws.com/rag-worker-dev:dev",
            "123456789.dkr.ecr.us-east-1.amazonaws.com/rag-worker-dev:git-a1b2c3d",
            "123456789.dkr.ecr.us-east-1.amazonaws.com/rag-worker-dev:latest",
        ],
    ),
    (
        ["--env", "dev", "--tag", "my-custom-tag"],
        [
            "rag-worker:dev-20231203-143022",
            "rag-worker:dev",
            "rag-worker:git-a1b2c3d",
            "rag-worker:my-custom-tag",
            "rag-worker:latest",
        ],
    ),
    (
        ["--env", "dev", "--no-cache"],
        [
            "rag-worker:dev-20231203-143022",
            "rag-worker:dev",
            "rag-worker:git-a1b2c3d",
            "rag-worker:latest",
        ],
    ),
]


@pytest.mark.parametrize("argv, expected", DRY_RUN_EXAMPLES)
def test_guide_examples_as_dry_runs(argv, expected, project, strict_fp, capsys):
    code, out, _ = run_main(argv + ["--dry-run"], capsys)
    assert code == 0
    build, inspect = out.splitlines()
    assert tags_of(build) == expected
    assert ("--no-cache" in shlex.split(build)) == ("--no-cache" in argv)
    assert inspect.endswith(" IMAGE_ID")  # the image the build's --iidfile names


# --- the clock ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tz", ["UTC", "EST+5", "IST-5:30", "Asia/Tokyo", "Pacific/Chatham", "America/St_Johns"]
)
def test_source_date_epoch_is_formatted_in_utc_under_every_tz(
    tz, project, strict_fp, capsys, monkeypatch
):
    """issue 11 (d): SOURCE_DATE_EPOCH=1700000000 gave dev-20231115-071320 under Asia/Tokyo."""
    set_tz(monkeypatch, tz)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    code, out, _ = run_main(["--env", "dev", "--dry-run"], capsys)
    assert code == 0
    build = out.splitlines()[0]
    assert tags_of(build)[0] == "rag-worker:dev-20231114-221320"
    assert "--build-arg BUILD_TIMESTAMP=20231114-221320 " in build
    assert "--label org.opencontainers.image.created=2023-11-14T22:13:20+00:00 " in build


@pytest.mark.parametrize("tz, hours", [("UTC", 0), ("EST+5", -5), ("IST-5:30", 5.5)])
def test_without_source_date_epoch_the_timestamp_is_local_time_in_tz(
    tz, hours, project, strict_fp, capsys, monkeypatch
):
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    set_tz(monkeypatch, tz)
    before = datetime.now(timezone.utc)
    code, out, _ = run_main(["--env", "dev", "--dry-run"], capsys)
    assert code == 0
    build = out.splitlines()[0]
    stamp = tags_of(build)[0].split(":dev-")[1]
    wall = datetime.strptime(stamp, "%Y%m%d-%H%M%S")
    expected = before.replace(tzinfo=None) + timedelta(hours=hours)
    assert abs((wall - expected).total_seconds()) < 5
    sign = "-" if hours < 0 else "+"
    offset = f"{sign}{int(abs(hours)):02d}:{int(abs(hours) % 1 * 60):02d}"
    assert f"org.opencontainers.image.created={wall.isoformat()}{offset} " in build


def test_same_source_date_epoch_gives_the_same_commands(project, fp, capsys, monkeypatch):
    register_git(fp)
    register_git(fp)
    register_git(fp)
    first = run_main(["--env", "dev", "--dry-run"], capsys)
    second = run_main(["--env", "dev", "--dry-run"], capsys)
    assert first == second
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(int(EPOCH) + 1))
    third = run_main(["--env", "dev", "--dry-run"], capsys)
    assert "dev-20231203-143023" in third[1]


def test_tag_build_arg_and_created_label_name_one_instant_while_the_clock_ticks(
    project, strict_fp, capsys, monkeypatch
):
    ticks = iter(datetime(2020, 1, 1, 0, 0, second) for second in range(1, 60))
    monkeypatch.setattr(steps.facts, "clock", lambda *a, **k: next(ticks))
    code, out, _ = run_main(["--env", "dev", "--dry-run"], capsys)
    assert code == 0
    stamps = set(re.findall(r"dev-(2020\d{4}-\d{6})", out))
    assert stamps == set(re.findall(r"BUILD_TIMESTAMP=(\S+)", out)) and len(stamps) == 1
    (stamp,) = stamps
    created = re.search(r"org\.opencontainers\.image\.created=(\S+)", out)[1]
    assert created.startswith(f"2020-01-01T00:00:{stamp[-2:]}")


# --- the build: one docker build, one docker image inspect -------------------------------------


def register_build_and_inspect(fp, program=DOCKER, repo_tags=None, returncode=0):
    build = fp.register([fp.program(program), "build", fp.any()], returncode=returncode)
    tags = (
        repo_tags
        if repo_tags is not None
        else [
            f"rag-worker:dev-{STAMP}",
            "rag-worker:dev",
            "rag-worker:git-a1b2c3d",
            "rag-worker:latest",
        ]
    )
    listed = "[" + ",".join(f'"{t}"' for t in tags) + "]"
    inspect = fp.register(
        [fp.program(program), "image", "inspect", fp.any()],
        stdout=f"sha256:0123456789ab 151234567 {listed}\n",
    )
    return build, inspect


def test_a_cached_build_runs_exactly_build_then_inspect(project, strict_fp, capsys):
    build, inspect = register_build_and_inspect(strict_fp)
    code, out, err = run_main(["--env", "dev"], capsys)
    assert code == 0, err
    assert docker_calls(strict_fp) == 2
    assert [Path(call[0]).name for call in strict_fp.calls] == ["git"] * GIT_QUERIES + [
        "docker",
        "docker",
    ]
    assert normal_argv(strict_fp.calls[GIT_QUERIES])[1:] == shlex.split(DEV_BUILD)[2:]
    assert list(strict_fp.calls[GIT_QUERIES + 1])[1:] == shlex.split(DEV_INSPECT_REAL)[1:]
    kwargs = build.calls[0].kwargs
    assert kwargs["env"]["DOCKER_BUILDKIT"] == "1"
    # docker's stdout is ours; its progress (stderr) is passed on by the runner, which keeps
    # its end for build_failure (through a pty on a terminal: test_runner.py)
    assert kwargs["stdout"] is None and kwargs["stderr"] == subprocess.PIPE
    assert out == ""


def test_plan_before_build_and_summary_after(project, strict_fp, capsys):
    register_build_and_inspect(strict_fp)
    code, _, err = run_main(["--env", "dev"], capsys)
    assert code == 0
    lines = normal(err).splitlines()
    build_at = lines.index(f"+ {DEV_BUILD}")
    assert lines.index("  - rag-worker:dev-20231203-143022") < build_at
    assert lines.index("  GIT_COMMIT=a1b2c3d") < build_at
    after = lines[build_at + 1 :]
    assert after[:6] == [
        f"+ {DEV_INSPECT_REAL}",
        "built sha256:0123456789ab (151.2MB) with 4 tags:",
        "  rag-worker:dev-20231203-143022",
        "  rag-worker:dev",
        "  rag-worker:git-a1b2c3d",
        "  rag-worker:latest",
    ]
    assert "run it: docker run -p 8080:8080 rag-worker:dev-20231203-143022" in after
    assert any(line.startswith("push it: ") for line in after)


def test_no_cache_reaches_the_build(project, strict_fp, capsys):
    build, _ = register_build_and_inspect(strict_fp)
    assert run_main(["--env", "dev", "--no-cache"], capsys)[0] == 0
    assert "--no-cache" in strict_fp.calls[GIT_QUERIES]
    assert docker_calls(strict_fp) == 2


def test_docker_variable_starts_that_binary(project, strict_fp, capsys, monkeypatch):
    monkeypatch.setenv("DOCKER", "/opt/x/mydocker")
    register_build_and_inspect(strict_fp, program="mydocker")
    code, _, err = run_main(["--env", "dev"], capsys)
    assert code == 0, err
    assert [call[0] for call in list(strict_fp.calls)[GIT_QUERIES:]] == ["/opt/x/mydocker"] * 2
    assert f"+ {DEV_BUILD}" in normal(err).splitlines()  # the log still says docker


def test_image_lacking_a_tag_fails(project, strict_fp, capsys):
    register_build_and_inspect(strict_fp, repo_tags=[f"rag-worker:dev-{STAMP}"])
    code, _, err = run_main(["--env", "dev"], capsys)
    assert code == 1
    assert "error: the built image lacks tags rag-worker:dev, rag-worker:git-a1b2c3d" in err


# --- failures ----------------------------------------------------------------------------------


@pytest.fixture
def no_docker_on_path(tmp_path, monkeypatch):
    """A PATH holding only a git (faked by fp anyway): docker is not installed."""
    bin_dir = tmp_path / "nodocker"
    bin_dir.mkdir()
    (bin_dir / "git").write_text("#!/bin/sh\nexit 99\n")
    (bin_dir / "git").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    with local.env(PATH=str(bin_dir)):
        yield


def test_docker_not_installed(project, strict_fp, no_docker_on_path, capsys):
    code, _, err = run_main(["--env", "dev"], capsys)
    assert code == 1
    assert (
        err.splitlines()[-1]
        == "error: docker not found: install docker (as root on Debian or Ubuntu: make engine) or set DOCKER to its path"
    )
    assert docker_calls(strict_fp) == 0


def test_docker_variable_naming_a_missing_file(project, fp, capsys, monkeypatch, tmp_path):
    register_git(fp)
    fp.allow_unregistered(True)  # the start really is attempted, and fails
    monkeypatch.setenv("DOCKER", str(tmp_path / "nope" / "docker"))
    code, _, err = run_main(["--env", "dev"], capsys)
    assert code == 1
    assert err.splitlines()[-1] == (
        f"error: {tmp_path}/nope/docker not found: install docker "
        "(as root on Debian or Ubuntu: make engine) or set DOCKER to its path"
    )


def register_failed_build(fp, version_stdout="", version_stderr="", version_rc=0, buildx_rc=None):
    fp.register([fp.program(DOCKER), "build", fp.any()], returncode=1)
    fp.register(
        [fp.program(DOCKER), "version", "--format", "{{.Client.Version}}"],
        stdout=version_stdout,
        stderr=version_stderr,
        returncode=version_rc,
    )
    if buildx_rc is not None:
        fp.register(
            [fp.program(DOCKER), "buildx", "version"],
            returncode=buildx_rc,
            stderr="docker: 'buildx' is not a docker command.\n" if buildx_rc else "",
            stdout="" if buildx_rc else "github.com/docker/buildx v0.12.1\n",
        )


DAEMON_DOWN = (
    "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
    "Is the docker daemon running?\n"
)


def test_daemon_unreachable(project, strict_fp, capsys):
    register_failed_build(strict_fp, "24.0.7\n", DAEMON_DOWN, version_rc=1)
    code, _, err = run_main(["--env", "dev"], capsys)
    assert code == 1
    last = err.splitlines()[-1]
    assert last.startswith("error: cannot reach the Docker daemon at the local socket")
    assert "DOCKER_HOST" in last
    assert docker_calls(strict_fp) == 2  # build, version: no inspect


def test_daemon_unreachable_names_docker_host(project, strict_fp, capsys, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.0.0.5:2375")
    register_failed_build(
        strict_fp,
        "24.0.7\n",
        "Cannot connect to the Docker daemon at tcp://10.0.0.5:2375. Is the "
        "docker daemon running?\n",
        version_rc=1,
    )
    code, _, err = run_main(["--env", "dev"], capsys)
    assert code == 1 and "at tcp://10.0.0.5:2375" in err.splitlines()[-1]


def test_socket_permission_denied(project, strict_fp, capsys):
    register_failed_build(
        strict_fp,
        "24.0.7\n",
        "permission denied while trying to connect to the Docker daemon socket "
        "at unix:///var/run/docker.sock\n",
        version_rc=1,
    )
    code, _, err = run_main(["--env", "dev"], capsys)
    assert code == 1
    assert err.splitlines()[-1].startswith("error: no permission to use the Docker daemon's socket")


def test_client_without_buildkit(project, strict_fp, capsys):
    register_failed_build(strict_fp, "25.0.3\n", buildx_rc=1)
    code, _, err = run_main(["--env", "dev"], capsys)
    assert code == 1
    last = err.splitlines()[-1]
    assert last.startswith("error: this docker client (25.0.3) needs the buildx plugin")
    assert "install buildx" in last and "set DOCKER" in last


@pytest.mark.parametrize(
    "extra",
    [["--disable-content-trust"], ["--stream"], ["--disable-content-trust=true", "--stream"]],
)
def test_a_classic_builder_option_on_a_buildx_client_is_named(project, strict_fp, capsys, extra):
    """Docker 23+'s docker build is buildx, which refuses the classic builder's options
    ("unknown flag"): the error names them and what to do, not only "docker build failed"."""
    register_failed_build(strict_fp, "28.2.2\n", buildx_rc=0)
    code, _, err = run_main(["--env", "dev", "--", *extra], capsys)
    assert code == 1
    names = ", ".join(dict.fromkeys(word.split("=")[0] for word in extra))
    assert err.splitlines()[-1] == (
        f"error: this docker client (28.2.2) builds with buildx, which refuses {names} "
        '("unknown flag"): an option of the classic builder\'s docker build, given after --; '
        "drop it, or set DOCKER to a client older than 23.0, whose docker build has BuildKit "
        "built in (e.g. Debian 12's /usr/bin/docker)"
    )


def test_a_classic_builder_option_on_a_classic_client_is_a_plain_build_failure(
    project, strict_fp, capsys
):
    register_failed_build(strict_fp, "20.10.24\n")
    code, _, err = run_main(["--env", "dev", "--", "--disable-content-trust"], capsys)
    assert code == 1 and "refuses" not in err


def test_old_client_without_buildx_is_a_plain_build_failure(project, strict_fp, capsys):
    register_failed_build(strict_fp, "20.10.24\n")  # BuildKit built in: buildx is not asked
    code, _, err = run_main(["--env", "dev"], capsys)
    assert code == 1
    assert err.splitlines()[-1] == "error: docker build failed (exit 1); its output is above"
    assert strict_fp.call_count([strict_fp.program(DOCKER), "buildx", "version"]) == 0


def test_failing_dockerfile(project, strict_fp, capsys):
    register_failed_build(strict_fp, "24.0.7\n", buildx_rc=0)
    code, _, err = run_main(["--env", "dev"], capsys)
    assert code == 1
    assert err.splitlines()[-1] == "error: docker build failed (exit 1); its output is above"
    assert (
        strict_fp.call_count([strict_fp.program(DOCKER), "image", "inspect", strict_fp.any()]) == 0
    )


@pytest.mark.parametrize(
    "raised", [KeyboardInterrupt(), Interrupted("interrupted; stopped docker build")]
)
def test_ctrl_c_exits_130(raised, project, strict_fp, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise raised

    monkeypatch.setattr(steps.build, "build", interrupted)
    code, _, err = run_main(["--env", "dev"], capsys)
    assert code == 130
    assert err.splitlines()[-1].startswith("error: interrupted")


# --- the checks before the build, in a dry run -------------------------------------------------


def test_a_dry_run_with_a_missing_scanner_warns_and_prints_the_scan_it_would_run(
    project, strict_fp, capsys
):
    from ragbuild import cli

    code = cli.main(
        [
            "--env",
            "dev",
            "--dry-run",
            "--scan-command",
            "no-such-scanner-4711 {image} --fail-on high",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0
    assert (
        "warning: the scanner no-such-scanner-4711 (--scan-command) is not installed or not "
        "executable (a real run stops here)"
    ) in err.splitlines()
    assert out.splitlines()[-1] == "no-such-scanner-4711 IMAGE_ID --fail-on high"
    assert err.count("no-such-scanner-4711") == 1  # one warning, not one per check
