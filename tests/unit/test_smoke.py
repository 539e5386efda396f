"""The smoke test's parts (smoke.py) and the smoke subcommand; the gate itself, which uses them,
is tested in test_sagemaker.py."""

import json

import pytest

from ragbuild import cli, smoke
from ragbuild.errors import SmokeTestFailed, UsageError

DOCKER = "docker"
IMAGE = "rag-worker:v1.0.0"
NAME = "ragbuild-smoke-0123456789ab"
RUN = [
    "run",
    "-d",
    "--name",
    NAME,
    "--tmpfs",
    "/opt/ml/model:ro",
    "-p",
    "127.0.0.1::8080",
    "--label",
    "org.ragbuild.smoke=1",
    IMAGE,
]


HEALTHY = {
    "status": "ok",
    "version": "1.0.0",
    "environment": "prod",
    "git_commit": "abc1234",
    "build_timestamp": "20260101-000000",
}


@pytest.mark.parametrize(
    "output, port", [("127.0.0.1:49153\n", 49153), ("0.0.0.0:8081\n[::]:8081\n", 8081)]
)
def test_parse_port(output, port):
    assert smoke.parse_port(output) == port


def test_parse_port_refuses_garbage():
    with pytest.raises(SmokeTestFailed):
        smoke.parse_port("")


def test_container_names_are_unique():
    assert len({smoke.container_name() for _ in range(50)}) == 50


@pytest.fixture
def fixed_name(monkeypatch):
    monkeypatch.setattr(smoke, "container_name", lambda: NAME)


def test_smoke_subcommand_exit_status_and_message(fp, capsys, monkeypatch, fixed_name):
    from ragbuild import sagemaker

    fp.register([fp.program(DOCKER), *RUN, "serve"], stdout="c0ffee\n")
    fp.register([fp.program(DOCKER), "port", NAME, "8080/tcp"], stdout="127.0.0.1:49155\n")
    fp.register(
        [fp.program(DOCKER), "inspect", "--format", "{{json .State}}", NAME],
        stdout=json.dumps({"Status": "running", "Running": True}),
    )
    fp.register([fp.program(DOCKER), "logs", "--tail", "30", NAME], stdout="")
    fp.register([fp.program(DOCKER), "rm", "-f", NAME])
    health = json.dumps({**HEALTHY, "version": "0.9.0"}).encode()
    monkeypatch.setattr(
        sagemaker,
        "http_request",
        lambda port, method, path, *rest: sagemaker.Outcome(
            200, 0.01, True, health if path == "/health" else b""
        ),
    )
    code = cli.main(["smoke", IMAGE, "--expect-version", "1.0.0"])
    assert code == 1
    err = capsys.readouterr().err
    assert (
        "error: rag-worker:v1.0.0: /health answered but version is '0.9.0', expected '1.0.0'" in err
    )


def test_smoke_subcommand_dry_run_prints_commands(fp, capsys, fixed_name):
    assert cli.main(["smoke", "--dry-run", IMAGE]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        f"docker run -d --name {NAME} --tmpfs /opt/ml/model:ro -p 127.0.0.1::8080 "
        "--label org.ragbuild.smoke=1 rag-worker:v1.0.0 serve"
    )
    assert out[-1] == f"docker rm -f {NAME}"
    assert len(fp.calls) == 0


def test_smoke_subcommand_command_flag_and_setup_cfg(fp, capsys, fixed_name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "setup.cfg").write_text("[ragbuild]\nsmoke-command = /opt/start --fast\n")
    assert cli.main(["smoke", "--dry-run", IMAGE]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith(f"{IMAGE} /opt/start --fast")
    assert cli.main(["smoke", "--dry-run", IMAGE, "--command", "serve --workers 2"]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith(f"{IMAGE} serve --workers 2")
    assert cli.main(["smoke", "--dry-run", IMAGE, "--command", ""]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --command is empty; give the command the platform starts the image with, e.g. "
        "serve (SageMaker's)"
    )


def test_check_start_command_reads_shell_quoting():
    from ragbuild.config import check_start_command

    assert check_start_command("serve --opt 'a b'") == ("serve", "--opt", "a b")
    with pytest.raises(UsageError, match="cannot be split into words: No closing quotation"):
        check_start_command("serve 'a")
