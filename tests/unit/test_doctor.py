"""``doctor``: one line per check in the issue's order, a fix for each problem, exit 0 only when
a build (and push) would work; its findings are the build's own checks' messages."""

from __future__ import annotations

import io
import json

import pytest

from fakes import register_git, register_proxy_info
from ragbuild import access, builders, cli, deps, doctor
from ragbuild.config import load_config

ORDER = ["python", "docker client", "docker daemon", "buildkit", "buildx builders", "git",
         "git tags", "plan", "dockerfile and context", "registry", "base image"]
ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
DAEMON_DOWN = ("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
               "Is the docker daemon running?\n")


def docker(fp, *argv, **kw):
    return fp.register([fp.program("docker"), *argv], **kw)


REGISTRY_CONFIG = '{"InsecureRegistryCIDRs":["127.0.0.0/8"],"IndexConfigs":{}}'


def git_facts(fp):
    fp.allow_unregistered(False)
    register_git(fp)


def daemon_registry_config(fp):
    docker(fp, "info", "--format", "{{json .RegistryConfig}}", stdout=REGISTRY_CONFIG + "\n")


def healthy(fp, *, client="20.10.24", buildx=True, base_local=True):
    git_facts(fp)
    docker(fp, "version", "--format", "{{.Client.Version}}", stdout=f"{client}\n")
    docker(fp, "version", "--format", "{{.Server.Version}}", stdout="20.10.24\n")
    if buildx:
        docker(fp, "buildx", "version", stdout="github.com/docker/buildx 0.13.1 abc\n")
        docker(fp, "buildx", "ls", stdout="NAME/NODE DRIVER/ENDPOINT STATUS\n"
                                          "default * docker\n  default default running\n")
    else:
        docker(fp, "buildx", "version", returncode=1, stderr="'buildx' is not a docker command.\n")
    docker(fp, "image", "inspect", "--format", "{{.Id}}", "python:3.11-slim",
           stdout="sha256:ab\n" if base_local else "", returncode=0 if base_local else 1)
    register_proxy_info(fp)  # asked before the registry's check (when there is a registry)


def run_doctor(argv, capsys):
    code = cli.main(["doctor", *argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    lines = out.splitlines()
    return code, lines[:-1], lines[-1]


def checks(lines):
    return [line.split(None, 1)[1].split(":", 1)[0] for line in lines]


@pytest.fixture
def worker(project):
    (project / "Dockerfile").write_text("ARG PYTHON_IMAGE=python:3.11-slim\nFROM ${PYTHON_IMAGE} AS builder\n"
                                        "FROM builder\n")
    return project


def test_a_healthy_machine_passes_every_check_in_order(worker, fp, capsys):
    healthy(fp)
    code, lines, summary = run_doctor([], capsys)
    assert code == 0, lines
    assert checks(lines) == ORDER
    assert all(line.startswith("ok ") for line in lines), lines
    assert summary == "a build would work"
    assert "docker daemon: 20.10.24 via the local socket (default context)" in lines[2]
    assert lines[3] == "ok       buildkit: buildx plugin (github.com/docker/buildx 0.13.1 abc)"
    assert lines[4] == "ok       buildx builders: default"
    assert lines[-1].endswith("python:3.11-slim is available locally")


def daemon_down(fp):
    git_facts(fp)
    docker(fp, "version", "--format", "{{.Client.Version}}", stdout="20.10.24\n", returncode=1,
           stderr=DAEMON_DOWN)
    docker(fp, "version", "--format", "{{.Server.Version}}", returncode=1, stderr=DAEMON_DOWN)
    # steps.diagnose asks again, as after a failed build
    docker(fp, "version", "--format", "{{.Client.Version}}", stdout="20.10.24\n", returncode=1,
           stderr=DAEMON_DOWN)
    docker(fp, "buildx", "version", returncode=1, stderr="'buildx' is not a docker command.\n")


def test_daemon_down_names_the_fix_of_the_build_and_fails(worker, fp, capsys, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
    daemon_down(fp)
    code, lines, summary = run_doctor([], capsys)
    assert code == 1
    line = next(line for line in lines if "docker daemon:" in line)
    target = builders.DockerTarget(host="tcp://127.0.0.1:1")
    assert line == f"problem  docker daemon: {builders.daemon_unreachable(target)}"
    assert "make engine" in line
    assert lines[-1] == "problem  base image: not checked: no docker daemon"
    assert summary.startswith("2 problem(s)")


def test_no_docker_client_names_make_engine(worker, fp, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER", str(tmp_path / "none" / "docker"))
    git_facts(fp)
    code, lines, _ = run_doctor([], capsys)
    assert code == 1
    assert lines[1] == (f"problem  docker client: {tmp_path}/none/docker not found: install docker "
                        "(as root on Debian or Ubuntu: make engine) or set DOCKER to its path")


def test_a_client_that_needs_buildx_without_it_is_a_problem(worker, fp, capsys):
    healthy(fp, client="28.2.2", buildx=False)
    code, lines, _ = run_doctor([], capsys)
    assert code == 1
    line = next(line for line in lines if line.split(None, 1)[1].startswith("buildkit"))
    assert line.startswith("problem  buildkit: docker 28.2.2 builds with BuildKit only through")
    assert builders.BUILDX_HINT in line


def test_a_missing_builder_is_a_problem_with_the_create_command(worker, fp, capsys):
    healthy(fp)
    code, lines, _ = run_doctor(["--builder", "remote"], capsys)
    assert code == 1
    assert "problem  buildx builders: builder 'remote' does not exist (have: default); fix: " \
           "docker buildx create --name remote" in "\n".join(lines)


def test_secrets_in_the_context_are_a_problem(worker, fp, capsys):
    (worker / ".env").write_text("API_TOKEN=abc\n")
    healthy(fp)
    code, lines, _ = run_doctor([], capsys)
    assert code == 1
    assert any(line.startswith("problem  dockerfile and context: likely secrets in the context: "
                               ".env") and "fix: add them to" in line for line in lines)


def test_missing_packages_say_how_to_install(worker, fp, capsys, monkeypatch):
    monkeypatch.setattr(deps, "missing", lambda: ["shtab"])
    healthy(fp)
    code, lines, _ = run_doctor([], capsys)
    assert code == 1
    assert lines[0].startswith("problem  python: Python 3.") and "missing packages shtab; fix: " \
           "run `make venv`" in lines[0]


def test_a_base_image_neither_local_nor_pullable(worker, fp, capsys):
    healthy(fp, buildx=False, base_local=False)
    code, lines, _ = run_doctor([], capsys)
    assert code == 1
    assert lines[-1] == ("problem  base image: python:3.11-slim is not local and cannot be pulled; "
                         "fix: docker pull python:3.11-slim where a registry answers, or make "
                         "engine (makes python:3.11-slim locally)")


def test_a_bad_plan_is_a_problem_not_a_usage_exit(worker, fp, capsys):
    healthy(fp)
    code, lines, _ = run_doctor(["--env", "prod"], capsys)
    assert code == 1
    assert any(line.startswith("problem  plan: ") and "version" in line for line in lines)


def test_ecr_missing_repository_and_no_aws(worker, fp, capsys, monkeypatch, tmp_path):
    healthy(fp)
    monkeypatch.setenv("AWS_CLI", str(tmp_path / "no-aws"))
    code, lines, _ = run_doctor(["--registry", f"{ECR}/rag-worker"], capsys)
    assert code == 1
    assert any(line.startswith(f"problem  ECR credentials: {tmp_path}/no-aws not found: install "
                               "the AWS CLI") for line in lines), lines


def test_ecr_repository_missing_gives_the_create_command(worker, fp, capsys, monkeypatch):
    healthy(fp)
    fp.register([fp.program("aws"), "ecr", "get-login-password", "--region", "us-east-1"],
                stdout="token\n")
    docker(fp, "login", "--username", "AWS", "--password-stdin", ECR, stdout="Login Succeeded\n")
    monkeypatch.setattr(access, "probe", lambda *args: None)  # (no docker info: HTTPS answered)  # the registry answers, takes them
    fp.register([fp.program("aws"), "ecr", "describe-repositories", "--repository-names",
                 "rag-worker", "--region", "us-east-1", "--output", "json"], returncode=254,
                stderr="An error occurred (RepositoryNotFoundException) when calling the "
                       "DescribeRepositories operation: not found\n")
    code, lines, _ = run_doctor(["--registry", f"{ECR}/rag-worker"], capsys)
    assert code == 1
    assert "ok       ECR credentials: valid for region us-east-1 (from the host " in "\n".join(lines)
    assert any(line == f"problem  ECR repository: ECR repository rag-worker does not exist in {ECR}; "
                       "create it: aws ecr create-repository --repository-name rag-worker "
                       "--region us-east-1" for line in lines), lines


def test_a_registry_that_refuses_the_credentials_is_the_preflights_message(worker, fp, capsys,
                                                                            monkeypatch):
    healthy(fp)
    refusal = "registry.example.com refused the push's credentials (HTTP 401): docker login it"
    monkeypatch.setattr(access, "probe", lambda *args: refusal)
    code, lines, _ = run_doctor(["--registry", "registry.example.com/team/rag-worker"], capsys)
    assert code == 1
    assert lines[-3].startswith("ok       registry credentials: none: no credHelpers")
    assert lines[-2] == (f"problem  registry: {refusal} (checked before the build; nothing was "
                         "built or pushed)")


def test_a_registry_that_does_not_answer(worker, fp, capsys, registry_http):
    """Loopback: insecure to every daemon, so no docker info for its registry configuration
    (fp refuses unregistered ones), only for its proxy settings."""
    healthy(fp)
    code, lines, _ = run_doctor(["--registry", "127.0.0.1:1/rag-worker"], capsys)
    assert code == 1
    line = next(line for line in lines if line.startswith("problem  registry:"))
    assert line.startswith("problem  registry: cannot reach the registry 127.0.0.1:1 over HTTPS "
                           "(nor over plain HTTP, which the daemon allows for it)")
    assert "check the host and port in --registry" in line


@pytest.mark.parametrize("text, args, images", [
    ("ARG PYTHON_IMAGE=python:3.11-slim\nFROM ${PYTHON_IMAGE} AS builder\nFROM builder\n", {},
     ["python:3.11-slim"]),
    ("ARG B=python:3.11-slim\nFROM $B\n", {"B": "python:3.12-slim"}, ["python:3.12-slim"]),
    ("FROM --platform=linux/amd64 debian:12 AS a\nFROM scratch\nCOPY --from=a / /\n", {},
     ["debian:12"]),
])
def test_base_images_read_from_the_dockerfile(tmp_path, text, args, images):
    path = tmp_path / "Dockerfile"
    path.write_text(text)
    assert doctor.base_images(str(path), args) == images


def test_help_and_the_make_target(capsys):
    assert cli.main(["doctor", "--help"]) == 0
    out = capsys.readouterr().out
    assert "doctor" in out and "Exit 0 when a build (and push) would work" in out
    assert cli.main(["--help"]) == 0
    assert "doctor [--registry URI ...]" in capsys.readouterr().out


def test_expired_aws_credentials_say_how_to_refresh(worker, fp, capsys, monkeypatch):
    healthy(fp)
    monkeypatch.setenv("AWS_PROFILE", "ci")
    fp.register([fp.program("aws"), "ecr", "get-login-password", "--region", "us-east-1"],
                returncode=255, stderr="An error occurred (ExpiredTokenException) when calling the "
                                       "GetAuthorizationToken operation: The security token "
                                       "included in the request is expired\n")
    code, lines, _ = run_doctor(["--registry", f"{ECR}/rag-worker"], capsys)
    assert code == 1
    line = next(line for line in lines if "ECR credentials" in line)
    assert line.startswith("problem  ECR credentials: aws ecr get-login-password --region "
                           "us-east-1 failed: the AWS credentials (AWS_PROFILE=ci) have expired: "
                           "refresh them (`aws sso login --profile ci`")
    assert not any("ECR repository" in line for line in lines)  # not asked without credentials


@pytest.mark.parametrize("dry_run", [False, True])
def test_findings_and_the_verdict_go_where_the_runner_writes(worker, fp, capsys, dry_run):
    # doctor never asks which runner it has: the runner it is given writes the findings and the
    # summary (a real run), or the commands and "found nothing" (a dry run), to its own stdout
    from ragbuild.runner import DryRunner, Runner

    healthy(fp)
    out, log = io.StringIO(), io.StringIO()
    runner = (DryRunner if dry_run else Runner)(out=out, log=log)
    options = cli.parse_build(["--env", "dev"], cli.doctor_parser())
    code = doctor.run(doctor.Doctor(runner, options, load_config()))
    assert capsys.readouterr().out == ""
    lines = out.getvalue().splitlines()
    assert code == 0
    if dry_run:
        assert lines[-1] == ("dry run: these are the commands doctor runs (and GET /v2/ of a "
                             "registry); it ran none of them, so it found nothing")
        assert "docker buildx version" in lines
        assert not any(line.startswith(("ok ", "problem ", "warning ")) for line in lines)
    else:
        assert checks(lines[:-1]) == ORDER and lines[-1] == "a build would work"


def test_a_dry_run_prints_the_commands_and_runs_none(worker, fp, capsys):
    git_facts(fp)  # git queries run in a dry run too, as in the build's
    code = cli.main(["doctor", "--dry-run"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[:3] == ["docker version --format '{{.Client.Version}}'",
                       "docker version --format '{{.Server.Version}}'", "docker buildx version"]
    assert "docker image inspect --format '{{.Id}}' python:3.11-slim" in out
    assert out[-1].startswith("dry run: these are the commands doctor runs")
    assert not any(line.startswith(("ok ", "problem ")) for line in out)


def test_doctor_asks_the_daemon_only_when_verified_https_fails(worker, fp, capsys,
                                                              registry_http):
    """The pre-flight's own decision (push.reach_registry): a host that is not loopback and
    does not answer verified HTTPS gets docker info; the daemon does not list it as insecure."""
    healthy(fp)
    daemon_registry_config(fp)
    code, lines, _ = run_doctor(["--registry", "nohost.invalid:5000/rag-worker"], capsys)
    assert code == 1
    assert fp.call_count([fp.program("docker"), "info", "--format",
                          "{{json .RegistryConfig}}"]) == 1
    line = next(line for line in lines if line.startswith("problem  registry:"))
    assert line.startswith("problem  registry: cannot reach the registry nohost.invalid:5000 over "
                           "HTTPS: ")


@pytest.mark.parametrize("version, asks", [("2.0.0-rc.1", False), ("2.0.0", True)])
def test_git_tags_are_a_problem_only_when_auto_depends_on_them(worker, fp, capsys, version, asks):
    """The build's rule (steps.needs_version_tags): a prerelease never moves a tag under auto,
    so no v* tag fetched is no problem for it; a release needs them."""
    healthy(fp)
    fp.register([fp.program("git"), "tag", "--list", "v*"], stdout="", occurrences=2)
    if asks:  # the plan stopped, so doctor asks git again for its own line
        register_git(fp)
    code, lines, _ = run_doctor(["--env", "staging", "--version", version, "--latest-policy",
                                 "auto"], capsys)
    tags_line = next(line for line in lines if " git tags: " in line)
    assert bool(fp.call_count([fp.program("git"), "tag", fp.any()])) == asks
    if asks:
        assert code == 1 and tags_line.startswith("problem") and "no v* version tag" in tags_line
    else:
        assert code == 0 and tags_line.startswith("ok "), lines


@pytest.mark.parametrize("exists", [False, True])
def test_a_release_push_checks_the_version_tags_as_the_preflight_does(worker, fp, capsys, exists):
    from registry_fakes import OTHER_DIGEST, serve

    healthy(fp)
    uri = "registry.example.com/team/rag-worker"
    if exists:
        serve(f"{uri}:v1.2.3", OTHER_DIGEST)
    code, lines, _ = run_doctor(["--registry", uri, "--push", "--env", "prod", "--version",
                                 "1.2.3", "--allow-dirty"], capsys)
    line = next(line for line in lines if " version tags: " in line)
    if exists:
        assert code == 1
        assert line.startswith(f"problem  version tags: the registry already has {uri}:v1.2.3 "
                               f"(now {OTHER_DIGEST})")
    else:
        assert line == "ok       version tags: v1.2.3, 1.2.3: not in the registry yet", lines
