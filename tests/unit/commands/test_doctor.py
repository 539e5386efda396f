"""``doctor``: one line per check in the issue's order, a fix for each problem, exit 0 only when
a build (and push) would work; its findings are the build's own checks' messages."""

from __future__ import annotations

import io
import os
import tempfile

import pytest

from fakes import register_git, register_proxy_info
from ragbuild import cli, deps, registry
from ragbuild.commands import doctor, doctor_engine, findings
from ragbuild.commands import build as build_cli
from ragbuild import buildx, docker_config
from ragbuild.config import load_config

ORDER = [
    "python",
    "docker client",
    "docker daemon",
    "buildkit",
    "buildx builders",
    "git",
    "git tags",
    "plan",
    "dockerfile and context",
    "registry",
    "dockerfile frontend",
    "base image",
    "package index",
]
ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
DAEMON_DOWN = (
    "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
    "Is the docker daemon running?\n"
)


def docker(fp, *argv, **kw):
    return fp.register([fp.program("docker"), *argv], **kw)


from ragbuild.push_preflight import REGISTRY_INFO_FORMAT  # noqa: E402

REGISTRY_CONFIG = '{"InsecureRegistryCIDRs":["127.0.0.0/8"],"IndexConfigs":{}}'


def git_facts(fp):
    fp.allow_unregistered(False)
    register_git(fp)


def daemon_registry_config(fp):
    docker(fp, "info", "--format", REGISTRY_INFO_FORMAT, stdout=REGISTRY_CONFIG + "\n")


#: The directory doctor makes for its probe builds (``probes``), known to the fakes.
PROBES = {}
CERT_FAILED = (
    "WARNING: Retrying ... Could not fetch URL https://pypi.org/simple/pip/: There was "
    "a problem confirming the ssl certificate: HTTPSConnectionPool(host='pypi.org', "
    "port=443): Max retries exceeded with url: /simple/pip/ (Caused by SSLError("
    "SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify "
    "failed: self-signed certificate in certificate chain (_ssl.c:992)'))) - skipping\n"
    "ERROR: No matching distribution found for pip\n"
)
PROXY_403 = (
    "ERROR: Could not install packages due to an OSError: HTTPSConnectionPool(host="
    "'pypi.org', port=443): Max retries exceeded with url: /simple/pip/ (Caused by "
    "ProxyError('Unable to connect to proxy', OSError('Tunnel connection failed: 403 "
    "Forbidden')))\n"
)
SAVED = "Collecting pip\nSaved /tmp/ragbuild-probe/pip-26.3-py3-none-any.whl\nSuccessfully downloaded pip\n"
NO_HOST = (
    "ERROR: failed to solve: failed to solve with frontend dockerfile.v0: failed to create "
    'LLB definition: failed to do request: Head "https://registry-1.docker.io/v2/docker/'
    'dockerfile/manifests/1.7": dial tcp: lookup registry-1.docker.io: no such host\n'
)


@pytest.fixture(autouse=True)
def probes(tmp_path, monkeypatch):
    """doctor's probe directory, at a known path (it is removed at the end of the run)."""
    directory = tmp_path / "ragbuild-doctor-probes"

    def mkdtemp(prefix=""):
        directory.mkdir()
        return str(directory)

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    PROBES["dir"] = directory
    return directory


def probe_build(fp, name, *, words=(), answer=None, returncode=0, stderr="", builder=None):
    """A probe build doctor starts (probe.Probe.command); ``answer``: ``(status, said)`` the
    index probe's pip leaves in its export directory, as the engine's export would; ``builder``:
    ``docker buildx build --builder`` it (``"current"``: buildx's current builder)."""
    d = PROBES["dir"]
    output = (
        f"type=local,dest={d}/{name}" if name.startswith("index") else "type=tar,dest=/dev/null"
    )
    head = (
        ["buildx", "build"] + (["--builder", builder] if builder != "current" else [])
        if builder
        else ["build"]
    )
    argv = [
        fp.program("docker"),
        *head,
        "-f",
        f"{d}/{name}.Dockerfile",
        "--no-cache",
        "-o",
        output,
        *words,
        str(d),
    ]

    def export(process):
        os.makedirs(f"{d}/{name}")
        with open(f"{d}/{name}/status", "w") as handle:
            handle.write(f"{answer[0]}\n")
        with open(f"{d}/{name}/said", "w") as handle:
            handle.write(answer[1])

    fp.register(
        argv, callback=export if answer is not None else None, returncode=returncode, stderr=stderr
    )


def index_probes(fp, plain=(0, SAVED), with_ca=None, ca=None, words=()):
    probe_build(fp, "index", answer=plain, words=words)
    if ca is not None:
        probe_build(
            fp,
            "index-ca",
            answer=with_ca,
            words=(*words, "--secret", f"id=ragbuild-host-ca,src={ca}"),
        )


def healthy(
    fp,
    *,
    client="20.10.24",
    buildx=True,
    base_local=True,
    index=True,
    frontend=True,
    builders="default * docker\n  default default running\n",
    builder=None,
):
    git_facts(fp)
    docker(fp, "version", "--format", "{{.Client.Version}}", stdout=f"{client}\n")
    docker(fp, "version", "--format", "{{.Server.Version}}", stdout="20.10.24\n")
    if buildx:
        docker(fp, "buildx", "version", stdout="github.com/docker/buildx 0.13.1 abc\n")
        docker(fp, "buildx", "ls", stdout="NAME/NODE DRIVER/ENDPOINT STATUS\n" + builders)
    else:
        docker(fp, "buildx", "version", returncode=1, stderr="'buildx' is not a docker command.\n")
    docker(
        fp,
        "image",
        "inspect",
        "--format",
        "{{.Id}}",
        "python:3.11-slim",
        stdout="sha256:ab\n" if base_local else "",
        returncode=0 if base_local else 1,
    )
    register_proxy_info(fp)  # asked before the registry's check (when there is a registry)
    if frontend:
        probe_build(fp, "frontend", builder=builder)
    if index:
        index_probes(fp)


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
    (project / "Dockerfile").write_text(
        "ARG PYTHON_IMAGE=python:3.11-slim\nFROM ${PYTHON_IMAGE} AS builder\nFROM builder\n"
    )
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
    assert lines[-3:] == [
        "ok       dockerfile frontend: the engine's own (no `# syntax=` line)",
        "ok       base image: python:3.11-slim is available to the engine (local)",
        "ok       package index: PyPI answers from the engine (pip on python:3.11-slim)",
    ]
    assert not PROBES["dir"].exists()  # the probes' directory is gone


def daemon_down(fp):
    git_facts(fp)
    docker(
        fp,
        "version",
        "--format",
        "{{.Client.Version}}",
        stdout="20.10.24\n",
        returncode=1,
        stderr=DAEMON_DOWN,
    )
    docker(fp, "version", "--format", "{{.Server.Version}}", returncode=1, stderr=DAEMON_DOWN)
    # steps.build.diagnose asks again, as after a failed build
    docker(
        fp,
        "version",
        "--format",
        "{{.Client.Version}}",
        stdout="20.10.24\n",
        returncode=1,
        stderr=DAEMON_DOWN,
    )
    docker(fp, "buildx", "version", returncode=1, stderr="'buildx' is not a docker command.\n")


def test_daemon_down_names_the_fix_of_the_build_and_fails(worker, fp, capsys, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
    daemon_down(fp)
    code, lines, summary = run_doctor([], capsys)
    assert code == 1
    line = next(line for line in lines if "docker daemon:" in line)
    target = docker_config.DockerTarget(host="tcp://127.0.0.1:1")
    assert line == f"problem  docker daemon: {docker_config.daemon_unreachable(target)}"
    assert "make engine" in line
    assert lines[-3:] == [
        "problem  dockerfile frontend: not checked: no docker daemon",
        "problem  base image: not checked: no docker daemon",
        "problem  package index: not checked: no docker daemon",
    ]
    assert summary.startswith("4 problem(s)")


def test_no_docker_client_names_make_engine(worker, fp, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER", str(tmp_path / "none" / "docker"))
    git_facts(fp)
    code, lines, _ = run_doctor([], capsys)
    assert code == 1
    assert lines[1] == (
        f"problem  docker client: {tmp_path}/none/docker not found: install docker "
        "(as root on Debian or Ubuntu: make engine) or set DOCKER to its path"
    )


def test_a_client_that_needs_buildx_without_it_is_a_problem(worker, fp, capsys):
    healthy(fp, client="28.2.2", buildx=False)
    code, lines, _ = run_doctor([], capsys)
    assert code == 1
    line = next(line for line in lines if line.split(None, 1)[1].startswith("buildkit"))
    assert line.startswith("problem  buildkit: docker 28.2.2 builds with BuildKit only through")
    assert buildx.BUILDX_HINT in line
    assert lines[-1] == "problem  package index: not checked: no BuildKit (above)"  # no probe


def test_a_missing_builder_is_a_problem_with_the_create_command(worker, fp, capsys):
    healthy(fp)
    code, lines, _ = run_doctor(["--builder", "remote"], capsys)
    assert code == 1
    assert (
        "problem  buildx builders: builder 'remote' does not exist (have: default); fix: "
        "docker buildx create --name remote" in "\n".join(lines)
    )


def test_secrets_in_the_context_are_a_problem(worker, fp, capsys):
    (worker / ".env").write_text("API_TOKEN=abc\n")
    healthy(fp)
    code, lines, _ = run_doctor([], capsys)
    assert code == 1
    assert any(
        line.startswith("problem  dockerfile and context: likely secrets in the context: .env")
        and "fix: add them to" in line
        for line in lines
    )


def test_missing_packages_say_how_to_install(worker, fp, capsys, monkeypatch):
    monkeypatch.setattr(deps, "missing", lambda: ["shtab"])
    healthy(fp)
    code, lines, _ = run_doctor([], capsys)
    assert code == 1
    assert (
        lines[0].startswith("problem  python: Python 3.")
        and "missing packages shtab; fix: run `make venv`" in lines[0]
    )


def test_a_base_image_neither_local_nor_pullable(worker, fp, capsys):
    """The engine's own answer: a probe build FROM the image, which the engine cannot pull; the
    index is not probed on an image the engine does not have."""
    healthy(fp, buildx=False, base_local=False, index=False)
    probe_build(
        fp,
        "image-0",
        returncode=1,
        stderr=NO_HOST.replace(
            "docker/dockerfile/manifests/1.7", "library/python/manifests/3.11-slim"
        ),
    )
    probe_build(fp, "index", returncode=1, stderr=NO_HOST)
    code, lines, _ = run_doctor([], capsys)
    assert code == 1
    assert lines[-2] == (
        "problem  base image: the engine does not have python:3.11-slim and cannot "
        'pull it (failed to do request: Head "https://registry-1.docker.io/v2/'
        'library/python/manifests/3.11-slim": dial tcp: lookup '
        "registry-1.docker.io: no such host); fix: docker pull python:3.11-slim "
        "(or docker load it) on the engine, or --build-arg "
        "PYTHON_IMAGE=<an image the engine has>"
    )
    assert lines[-1] == (
        "problem  package index: not checked: the engine cannot get the base "
        "image python:3.11-slim (above)"
    )


def test_a_base_image_the_engine_pulls(worker, fp, capsys):
    healthy(fp, base_local=False)
    probe_build(fp, "image-0")
    code, lines, _ = run_doctor([], capsys)
    assert code == 0, lines
    assert lines[-2] == (
        "ok       base image: python:3.11-slim is not local; the engine pulled it "
        "(the build finds it in its cache)"
    )


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
    assert any(
        line.startswith(
            f"problem  ECR credentials: {tmp_path}/no-aws not found: install the AWS CLI"
        )
        for line in lines
    ), lines


def test_ecr_repository_missing_gives_the_create_command(worker, fp, capsys, monkeypatch):
    healthy(fp)
    fp.register(
        [fp.program("aws"), "ecr", "get-login-password", "--region", "us-east-1"], stdout="token\n"
    )
    docker(fp, "login", "--username", "AWS", "--password-stdin", ECR, stdout="Login Succeeded\n")
    monkeypatch.setattr(
        registry, "probe", lambda *args: None
    )  # (no docker info: HTTPS answered)  # the registry answers, takes them
    fp.register(
        [
            fp.program("aws"),
            "ecr",
            "describe-repositories",
            "--repository-names",
            "rag-worker",
            "--registry-id",
            "123456789012",
            "--region",
            "us-east-1",
            "--output",
            "json",
        ],
        returncode=254,
        stderr="An error occurred (RepositoryNotFoundException) when calling the "
        "DescribeRepositories operation: not found\n",
    )
    code, lines, _ = run_doctor(["--registry", f"{ECR}/rag-worker"], capsys)
    assert code == 1
    assert "ok       ECR credentials: valid for region us-east-1 (from the host " in "\n".join(
        lines
    )
    assert any(
        line.startswith(f"ok       registry credentials: auths['{ECR}'] in ")
        and line.endswith("(the ECR login just stored them)")
        for line in lines
    ), lines
    assert any(
        line == "problem  ECR repository: ECR repository rag-worker does not exist in "
        f"account 123456789012 ({ECR}); create it there, with credentials of "
        "account 123456789012: aws ecr create-repository --repository-name "
        "rag-worker --region us-east-1 --registry-id 123456789012"
        for line in lines
    ), lines


def test_a_registry_that_refuses_the_credentials_is_the_preflights_message(
    worker, fp, capsys, monkeypatch
):
    healthy(fp)
    refusal = "registry.example.com refused the push's credentials (HTTP 401): docker login it"
    monkeypatch.setattr(registry, "probe", lambda *args: refusal)
    code, lines, _ = run_doctor(["--registry", "registry.example.com/team/rag-worker"], capsys)
    assert code == 1
    assert lines[-5].startswith("ok       registry credentials: none: no credHelpers")
    assert lines[-4] == (
        f"problem  registry: {refusal} (checked before the build; nothing was built or pushed)"
    )


def test_a_registry_that_does_not_answer(worker, fp, capsys, registry_http):
    """Loopback: insecure to every daemon, so no docker info for its registry configuration
    (fp refuses unregistered ones), only for its proxy settings."""
    healthy(fp)
    code, lines, _ = run_doctor(["--registry", "127.0.0.1:1/rag-worker"], capsys)
    assert code == 1
    line = next(line for line in lines if line.startswith("problem  registry:"))
    assert line.startswith(
        "problem  registry: cannot reach the registry 127.0.0.1:1 over HTTPS "
        "(nor over plain HTTP, which the daemon allows for it)"
    )
    assert "check the host and port in --registry" in line


@pytest.mark.parametrize(
    "text, args, images",
    [
        (
            "ARG PYTHON_IMAGE=python:3.11-slim\nFROM ${PYTHON_IMAGE} AS builder\nFROM builder\n",
            {},
            [("python:3.11-slim", "PYTHON_IMAGE")],
        ),
        (
            "ARG B=python:3.11-slim\nFROM $B\n",
            {"B": "python:3.12-slim"},
            [("python:3.12-slim", "B")],
        ),
        (
            "FROM --platform=linux/amd64 debian:12 AS a\nFROM scratch\nCOPY --from=a / /\n",
            {},
            [("debian:12", None)],
        ),
    ],
)
def test_base_images_read_from_the_dockerfile(text, args, images):
    assert doctor_engine.from_images(text, args) == images


def test_help_and_the_make_target(capsys):
    assert cli.main(["doctor", "--help"]) == 0
    out = capsys.readouterr().out
    assert "doctor" in out and "Exit 0 when a build (and push) would work" in out
    assert cli.main(["--help"]) == 0
    assert "doctor [--registry URI ...]" in capsys.readouterr().out


def test_expired_aws_credentials_say_how_to_refresh(worker, fp, capsys, monkeypatch):
    healthy(fp)
    monkeypatch.setenv("AWS_PROFILE", "ci")
    fp.register(
        [fp.program("aws"), "ecr", "get-login-password", "--region", "us-east-1"],
        returncode=255,
        stderr="An error occurred (ExpiredTokenException) when calling the "
        "GetAuthorizationToken operation: The security token "
        "included in the request is expired\n",
    )
    code, lines, _ = run_doctor(["--registry", f"{ECR}/rag-worker"], capsys)
    assert code == 1
    line = next(line for line in lines if "ECR credentials" in line)
    assert line.startswith(
        "problem  ECR credentials: aws ecr get-login-password --region "
        "us-east-1 failed: the AWS credentials (AWS_PROFILE=ci) have expired: "
        "refresh them (`aws sso login --profile ci`"
    )
    assert not any("ECR repository" in line for line in lines)  # not asked without credentials


@pytest.mark.parametrize("dry_run", [False, True])
def test_findings_and_the_verdict_go_where_the_runner_writes(worker, fp, capsys, dry_run):
    # doctor never asks which runner it has: the runner it is given writes the findings and the
    # summary (a real run), or the commands and "found nothing" (a dry run), to its own stdout
    from ragbuild.run.dry import DryRunner
    from ragbuild.run.runner import Runner

    healthy(fp)
    out, log = io.StringIO(), io.StringIO()
    runner = (DryRunner if dry_run else Runner)(out=out, log=log)
    options = build_cli.parse_build(["--env", "dev"], doctor.doctor_parser())
    code = doctor.run(findings.Doctor(runner, options, load_config()))
    assert capsys.readouterr().out == ""
    lines = out.getvalue().splitlines()
    assert code == 0
    if dry_run:
        assert lines[-1] == (
            "dry run: these are the commands doctor runs (and GET /v2/ of a "
            "registry); it ran none of them, so it found nothing"
        )
        assert "docker buildx version" in lines
        assert not any(line.startswith(("ok ", "problem ", "warning ")) for line in lines)
    else:
        assert checks(lines[:-1]) == ORDER and lines[-1] == "a build would work"


def test_a_dry_run_prints_the_commands_and_runs_none(worker, fp, capsys):
    git_facts(fp)  # git queries run in a dry run too, as in the build's
    code = cli.main(["doctor", "--dry-run"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[:3] == [
        "docker version --format '{{.Client.Version}}'",
        "docker version --format '{{.Server.Version}}'",
        "docker buildx version",
    ]
    assert "docker image inspect --format '{{.Id}}' python:3.11-slim" in out
    assert any(
        line.startswith("DOCKER_BUILDKIT=1 docker build -f ")
        and "/index.Dockerfile --no-cache -o type=local,dest=" in line
        for line in out
    )
    assert out[-1].startswith("dry run: these are the commands doctor runs")
    assert not any(line.startswith(("ok ", "problem ")) for line in out)


def test_doctor_asks_the_daemon_only_when_verified_https_fails(worker, fp, capsys, registry_http):
    """The pre-flight's own decision (push_preflight.reach_registry): a host that is not loopback and
    does not answer verified HTTPS gets docker info; the daemon does not list it as insecure."""
    healthy(fp)
    daemon_registry_config(fp)
    code, lines, _ = run_doctor(["--registry", "nohost.invalid:5000/rag-worker"], capsys)
    assert code == 1
    assert fp.call_count([fp.program("docker"), "info", "--format", REGISTRY_INFO_FORMAT]) == 1
    line = next(line for line in lines if line.startswith("problem  registry:"))
    assert line.startswith(
        "problem  registry: cannot reach the registry nohost.invalid:5000 over HTTPS: "
    )


# --- what the build fetches, asked of the engine (probe.py) ------------------------------------


@pytest.fixture
def host_ca(tmp_path, monkeypatch):
    """A CA bundle the host's pip trusts (PIP_CERT)."""
    bundle = tmp_path / "proxy-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    monkeypatch.setenv("PIP_CERT", str(bundle))
    return bundle


def index_line(lines):
    return next(line for line in lines if " package index: " in line)


def test_pypi_answers_only_with_the_hosts_ca_which_the_build_passes(worker, fp, capsys, host_ca):
    healthy(fp, index=False)
    index_probes(fp, plain=(1, CERT_FAILED), with_ca=(0, SAVED), ca=host_ca)
    code, lines, summary = run_doctor([], capsys)
    assert code == 0, lines
    assert index_line(lines) == (
        f"ok       package index: PyPI answers only with the host's CA: "
        f"ragbuild passes it ({host_ca}, from PIP_CERT; --no-host-ca "
        "turns it off)"
    )
    assert summary == "a build would work"


def test_pypi_answers_without_the_ca_too(worker, fp, capsys, host_ca):
    healthy(fp, index=False)
    index_probes(fp, plain=(0, SAVED), with_ca=(0, SAVED), ca=host_ca)
    code, lines, _ = run_doctor([], capsys)
    assert code == 0
    assert index_line(lines) == (
        "ok       package index: PyPI answers from the engine (pip on python:3.11-slim)"
    )


def test_an_untrusted_certificate_and_no_host_ca_names_the_flag(worker, fp, capsys):
    healthy(fp, index=False)
    index_probes(fp, plain=(1, CERT_FAILED))
    code, lines, summary = run_doctor([], capsys)
    assert code == 1
    assert index_line(lines) == (
        "problem  package index: PyPI's certificate is not trusted in the build, and the host "
        "names no CA bundle (PIP_CERT, pip's cert, REQUESTS_CA_BUNDLE, SSL_CERT_FILE): "
        "CERTIFICATE_VERIFY_FAILED: certificate verify failed: self-signed certificate in "
        "certificate chain; a TLS-inspecting proxy? fix: --host-ca <its CA bundle>; see "
        "docs/troubleshooting.md"
    )
    assert summary.startswith("1 problem(s): a build would fail")


def test_an_untrusted_certificate_even_with_the_hosts_ca(worker, fp, capsys, host_ca):
    healthy(fp, index=False)
    index_probes(fp, plain=(1, CERT_FAILED), with_ca=(1, CERT_FAILED), ca=host_ca)
    code, lines, _ = run_doctor([], capsys)
    assert code == 1
    assert index_line(lines).startswith(
        f"problem  package index: PyPI's certificate is not trusted in the build, not even with "
        f"the host's CA {host_ca} (from PIP_CERT): CERTIFICATE_VERIFY_FAILED"
    )


def test_pypi_unreachable_from_the_engine_says_what_pip_said(worker, fp, capsys, host_ca):
    healthy(fp, index=False)
    index_probes(fp, plain=(1, PROXY_403), with_ca=(1, PROXY_403), ca=host_ca)
    code, lines, _ = run_doctor([], capsys)
    assert code == 1
    assert index_line(lines) == (
        "problem  package index: PyPI unreachable from the engine: Tunnel connection failed: 403 "
        f"Forbidden; {doctor_engine.INDEX_FIX}"
    )
    assert "docs/troubleshooting.md" in doctor_engine.INDEX_FIX


def test_a_host_ca_the_build_cannot_pass(worker, fp, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("PIP_CERT", str(tmp_path / "gone.pem"))
    healthy(fp, index=False)
    index_probes(fp, plain=(1, CERT_FAILED))  # no probe with a CA that is not there
    code, lines, _ = run_doctor([], capsys)
    assert code == 1
    assert (
        f"warning  host CA: the host CA bundle {tmp_path}/gone.pem (from PIP_CERT) cannot be "
        "read: No such file or directory; the build gets no host CA" in lines
    )  # as the build
    assert index_line(lines).startswith(
        "problem  package index: PyPI's certificate is not "
        "trusted in the build, and the host's CA cannot be passed "
        "(above)"
    )


def test_the_index_of_the_builds_own_build_args_token_hidden(worker, fp, capsys):
    """The probe's pip gets the build's PIP_* and proxy build args (and no other), an index
    with credentials in the index secret, as the build does; the line names that index, its
    credentials never printed."""
    index = "https://user:s3cr3t@pypi.internal.example/simple"
    healthy(fp, index=False)
    index_probes(
        fp,
        plain=(
            1,
            "ERROR: Could not install packages due to an OSError: "
            "HTTPSConnectionPool(host='pypi.internal.example', port=443): Max "
            "retries exceeded (Caused by NewConnectionError('<pip._vendor."
            "urllib3.connection.HTTPSConnection object at 0x7f>: Failed to "
            "establish a new connection: [Errno -2] Name or service not "
            "known'))\n",
        ),
        words=(
            "--build-arg",
            "https_proxy=http://proxy:3128",
            "--secret",
            "id=ragbuild-host-index,env=RAGBUILD_HOST_INDEX_SECRET",
        ),
    )
    code, lines, _ = run_doctor(
        [
            "--build-arg",
            f"PIP_INDEX_URL={index}",
            "--build-arg",
            "https_proxy=http://proxy:3128",
            "--build-arg",
            "OTHER=1",
        ],
        capsys,
    )
    assert code == 1
    assert index_line(lines) == (
        "problem  package index: https://***@pypi.internal.example/simple unreachable from the "
        "engine: Failed to establish a new connection: [Errno -2] Name or service not known; "
        f"{doctor_engine.INDEX_FIX}"
    )
    assert "s3cr3t" not in "\n".join(lines)


def test_a_probe_build_that_could_not_run(worker, fp, capsys):
    healthy(fp, index=False)
    probe_build(
        fp, "index", returncode=1, stderr="ERROR: failed to solve: no space left on device\n"
    )
    code, lines, _ = run_doctor([], capsys)
    assert code == 1
    assert index_line(lines) == (
        "problem  package index: the probe build on python:3.11-slim "
        "failed: no space left on device"
    )


@pytest.mark.parametrize(
    "head, args, fix",
    [
        ("# syntax=docker/dockerfile:1.7\n", [], "remove the `# syntax=` line"),
        (
            "",
            ["--build-arg", "BUILDKIT_SYNTAX=docker/dockerfile:1.7"],
            "drop --build-arg BUILDKIT_SYNTAX",
        ),
    ],
)
def test_a_frontend_the_engine_cannot_pull_names_its_fix(worker, fp, capsys, head, args, fix):
    dockerfile = worker / "Dockerfile"
    dockerfile.write_text(head + dockerfile.read_text())
    healthy(fp, index=False, frontend=False)
    words = ("--build-arg", "BUILDKIT_SYNTAX=docker/dockerfile:1.7") if args else ()
    probe_build(fp, "frontend", returncode=1, stderr=NO_HOST, words=words)
    index_probes(fp)  # not the frontend's build arg: the probe tests the index alone
    code, lines, summary = run_doctor(args, capsys)
    assert code == 1
    source = "--build-arg BUILDKIT_SYNTAX" if args else "the `# syntax=` line"
    assert lines[-3] == (
        f"problem  dockerfile frontend: the engine cannot get docker/dockerfile:1.7, the frontend "
        f'{source} names (failed to do request: Head "https://registry-1.docker.io/v2/docker/'
        'dockerfile/manifests/1.7": dial tcp: lookup registry-1.docker.io: no such host); fix: '
        f"{fix} (the engine's built-in frontend then reads the Dockerfile, RUN --mount "
        "included), or docker pull/load docker/dockerfile:1.7 on the engine"
    )
    assert summary.startswith("1 problem(s)")
    probe = PROBES["dir"] / "frontend.Dockerfile"
    assert not probe.exists()


def test_a_frontend_the_engine_gets(worker, fp, capsys):
    dockerfile = worker / "Dockerfile"
    dockerfile.write_text("# syntax=docker/dockerfile:1.7\n" + dockerfile.read_text())
    healthy(fp)
    code, lines, _ = run_doctor([], capsys)
    assert code == 0, lines
    assert lines[-3] == (
        "ok       dockerfile frontend: docker/dockerfile:1.7 (the `# syntax=` "
        "line): the engine has it or pulls it"
    )


def test_a_builder_that_pulls_for_itself_probes_every_image(worker, fp, capsys):
    """A docker-container builder does not see the daemon's images: no local shortcut, every
    probe through the build's builder."""
    healthy(fp, index=False, builders="kit docker-container\n", builder="kit")
    docker(fp, "buildx", "inspect", "kit", stdout="Name: kit\nDriver: docker-container\n")
    probe_build(fp, "image-0", builder="kit")
    probe_build(fp, "index", builder="kit", answer=(0, SAVED))
    fp.allow_unregistered(False)
    code, lines, _ = run_doctor(["--builder", "kit"], capsys)
    assert lines[-2] == (
        "ok       base image: python:3.11-slim is not local; the engine pulled "
        "it (the build finds it in its cache)"
    ), lines
    assert (
        fp.call_count(
            [fp.program("docker"), "image", "inspect", "--format", "{{.Id}}", "python:3.11-slim"]
        )
        == 0
    )


def test_no_host_ca_when_pypi_needs_it_is_a_problem_naming_the_flag(worker, fp, capsys, host_ca):
    """The build would pass no CA: doctor still probes with the one the host names, to say
    that the flag is what stands in the way."""
    healthy(fp, index=False)
    index_probes(fp, plain=(1, CERT_FAILED), with_ca=(0, SAVED), ca=host_ca)
    code, lines, _ = run_doctor(["--no-host-ca"], capsys)
    assert code == 1
    assert index_line(lines) == (
        f"problem  package index: PyPI answers only with the host's CA ({host_ca}, from PIP_CERT), "
        "which --no-host-ca keeps from the build: CERTIFICATE_VERIFY_FAILED: certificate verify "
        "failed: self-signed certificate in certificate chain; fix: drop --no-host-ca"
    )


def test_no_host_ca_where_pypi_needs_none(worker, fp, capsys, host_ca):
    healthy(fp, index=False)
    index_probes(fp, plain=(0, SAVED), with_ca=(0, SAVED), ca=host_ca)
    code, lines, _ = run_doctor(["--no-host-ca"], capsys)
    assert code == 0, lines
    assert index_line(lines).startswith("ok       package index: PyPI answers from the engine")


@pytest.mark.parametrize("how", ["flag", "setup.cfg"])
def test_the_ca_of_host_ca_or_setup_cfg_is_the_one_probed(worker, fp, capsys, tmp_path, how):
    bundle = tmp_path / "team-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    argv = ["--host-ca", str(bundle)] if how == "flag" else []
    if how == "setup.cfg":
        (worker / "setup.cfg").write_text(f"[ragbuild]\nhost-ca = {bundle}\n")
    healthy(fp, index=False)
    index_probes(fp, plain=(1, CERT_FAILED), with_ca=(0, SAVED), ca=bundle)
    code, lines, _ = run_doctor(argv, capsys)
    assert code == 0, lines
    source = "--host-ca" if how == "flag" else "setup.cfg host-ca"
    assert index_line(lines) == (
        f"ok       package index: PyPI answers only with the host's CA: "
        f"ragbuild passes it ({bundle}, from {source}; --no-host-ca "
        "turns it off)"
    )


def test_host_index_reaches_the_probe_as_the_index_secret(worker, fp, capsys, monkeypatch):
    """--host-index: the host pip's index settings, as the build gets them (the secret's text
    in docker's environment, never on the command line); the line names that index."""
    monkeypatch.setenv("PIP_INDEX_URL", "https://mirror.example/simple")
    healthy(fp, index=False)
    index_probes(fp, words=("--secret", "id=ragbuild-host-index,env=RAGBUILD_HOST_INDEX_SECRET"))
    code, lines, _ = run_doctor(["--host-index"], capsys)
    assert code == 0, lines
    assert index_line(lines) == (
        "ok       package index: https://mirror.example/simple answers "
        "from the engine (pip on python:3.11-slim)"
    )


def test_a_buildx_build_without_builder_probes_on_buildxs_current_builder(worker, fp, capsys):
    """A local --cache-from: the build is docker buildx build on the current builder; so are
    the probes, and that builder's driver decides whether the daemon's images count."""
    healthy(fp, index=False, frontend=False)
    docker(fp, "buildx", "inspect", stdout="Name: default\nDriver: docker\n")
    probe_build(fp, "frontend", builder="current")
    probe_build(fp, "index", builder="current", answer=(0, SAVED))
    code, lines, _ = run_doctor(["--cache-from", f"type=local,src={worker}"], capsys)
    assert lines[-2:] == [
        "ok       base image: python:3.11-slim is available to the engine (local)",
        "ok       package index: PyPI answers from the engine (pip on python:3.11-slim)",
    ], lines


@pytest.mark.parametrize("version, asks", [("2.0.0-rc.1", False), ("2.0.0", True)])
def test_git_tags_are_a_problem_only_when_auto_depends_on_them(worker, fp, capsys, version, asks):
    """The build's rule (steps.facts.needs_version_tags): a prerelease never moves a tag under auto,
    so no v* tag fetched is no problem for it; a release needs them."""
    healthy(fp)
    fp.register([fp.program("git"), "tag", "--list", "v*"], stdout="", occurrences=2)
    if asks:  # the plan stopped, so doctor asks git again for its own line
        register_git(fp)
    code, lines, _ = run_doctor(
        ["--env", "staging", "--version", version, "--latest-policy", "auto"], capsys
    )
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
    code, lines, _ = run_doctor(
        ["--registry", uri, "--push", "--env", "prod", "--version", "1.2.3", "--allow-dirty"],
        capsys,
    )
    line = next(line for line in lines if " version tags: " in line)
    if exists:
        assert code == 1
        assert line.startswith(
            f"problem  version tags: the registry already has {uri}:v1.2.3 (now {OTHER_DIGEST})"
        )
    else:
        assert line == "ok       version tags: v1.2.3, 1.2.3: not in the registry yet", lines
