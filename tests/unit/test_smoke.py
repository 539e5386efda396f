"""The smoke test's logic, against faked docker calls and faked HTTP answers: the image starts as
SageMaker starts it (docker run IMAGE serve, port 8080, GET /ping), then /health is checked."""

import json

import pytest

from ragbuild import cli, smoke
from ragbuild.errors import SmokeTestFailed, UsageError
from ragbuild.runner import DryRunner, Runner

DOCKER = "docker"
IMAGE = "rag-worker:v1.0.0"
NAME = "ragbuild-smoke-0123456789ab"
RUN = ["run", "-d", "--name", NAME, "-p", "127.0.0.1::8080", "--label", "org.ragbuild.smoke=1",
       IMAGE]
STATE = ["inspect", "--format", "{{.State.Running}} {{.State.ExitCode}}", NAME]


JSON_STATE = ["inspect", "--format", "{{json .State}}", NAME]
RUNNING = json.dumps({"Status": "running", "Running": True, "ExitCode": 0})


def register_start(fp, port_line="127.0.0.1:49155\n", command=("serve",), state=RUNNING):
    fp.register([fp.program(DOCKER), *RUN, *command], stdout="c0ffee1234567890\n")
    fp.register([fp.program(DOCKER), "port", NAME, "8080/tcp"], stdout=port_line)
    fp.register([fp.program(DOCKER), "rm", "-f", NAME], stdout=NAME + "\n")
    fp.register([fp.program(DOCKER), *JSON_STATE], stdout=state)  # the diagnosis, on a failure


def removed(fp) -> int:
    return fp.call_count([fp.program(DOCKER), "rm", "-f", NAME])


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def expectation(**kw):
    values = dict(image=IMAGE, version="1.0.0", environment="prod", git_commit="abc1234")
    values.update(kw)
    return smoke.Expectation(**values)


HEALTHY = {"status": "ok", "version": "1.0.0", "environment": "prod", "git_commit": "abc1234",
           "build_timestamp": "20260101-000000"}


def server(health=HEALTHY, ping=200, ready_after=1, health_status=200):
    """A fake ``http_get``: /ping answers ``ping`` from the ``ready_after``-th poll on (nothing
    before), /health answers ``health`` as JSON; every request is kept in ``.seen``."""
    seen = []

    def fetch(port, path):
        seen.append((port, path))
        if path == "/ping":
            polls = sum(1 for _, p in seen if p == "/ping")
            return (ping, b"") if polls >= ready_after else (None, b"")
        body = health if isinstance(health, bytes) else json.dumps(health).encode()
        return health_status, body

    fetch.seen = seen
    return fetch


def run(fetch, **kw):
    clock = FakeClock()
    kw.setdefault("timeout", 60)
    return smoke.run(Runner(), kw.pop("expect", expectation()), name=NAME, fetch=fetch,
                     clock=clock, sleep=clock.sleep, **kw), clock


def test_starts_as_sagemaker_waits_for_ping_then_checks_health(fp, capsys):
    register_start(fp)
    fetch = server(ready_after=3)
    health, _ = run(fetch)
    assert health == HEALTHY
    assert fetch.seen == [(49155, "/ping")] * 3 + [(49155, "/health")]
    assert fp.call_count([fp.program(DOCKER), *RUN, "serve"]) == 1
    assert removed(fp) == 1
    assert "smoke test passed: rag-worker:v1.0.0 started as `docker run IMAGE serve` answered " \
           "/ping and /health" in capsys.readouterr().err


def test_a_configured_start_command_replaces_serve(fp):
    command = ("uvicorn", "src.rag_worker.inference:app", "--port", "8080")
    register_start(fp, command=command)
    run(server(), expect=expectation(command=command))
    assert fp.call_count([fp.program(DOCKER), *RUN, *command]) == 1


def test_health_alone_is_not_ready_ping_must_answer_200(fp):
    """An image that serves /health but not /ping is not what SageMaker can run."""
    register_start(fp)
    for _ in range(50):
        fp.register([fp.program(DOCKER), *STATE], stdout="true 0\n")
    fp.register([fp.program(DOCKER), "logs", "--tail", "30", NAME], stdout="GET /ping 404\n")
    with pytest.raises(SmokeTestFailed) as err:
        run(server(ping=404), timeout=5)
    assert str(err.value).splitlines()[0] == (
        "/ping did not answer 200 within 5s (last answer: 404) (--smoke-timeout, or "
        "smoke-timeout in setup.cfg [ragbuild])")
    assert removed(fp) == 1


def test_mismatch_fails_with_logs_and_still_removes_container(fp):
    register_start(fp)
    fp.register([fp.program(DOCKER), "logs", "--tail", "30", NAME], stdout="INFO started\n")
    with pytest.raises(SmokeTestFailed) as err:
        run(server(), expect=expectation(environment="dev"))
    message = str(err.value)
    assert "environment is 'prod', expected 'dev'" in message
    assert "INFO started" in message
    assert removed(fp) == 1


def test_timeout_is_bounded_and_removes_container(fp):
    register_start(fp)
    for _ in range(200):
        fp.register([fp.program(DOCKER), *STATE], stdout="true 0\n")
    fp.register([fp.program(DOCKER), "logs", "--tail", "30", NAME], stdout="", stderr="boot...\n")
    with pytest.raises(SmokeTestFailed) as err:
        _, clock = run(server(ready_after=10**6), timeout=5)
    assert "/ping did not answer 200 within 5s" in str(err.value)
    assert "boot..." in str(err.value)
    assert removed(fp) == 1


def test_the_timeout_given_is_the_one_waited(fp):
    register_start(fp)
    for _ in range(400):
        fp.register([fp.program(DOCKER), *STATE], stdout="true 0\n")
    fp.register([fp.program(DOCKER), "logs", "--tail", "30", NAME], stdout="")
    clock = FakeClock()
    with pytest.raises(SmokeTestFailed, match="within 120s"):
        smoke.run(Runner(), expectation(), timeout=120, name=NAME, fetch=server(ready_after=10**6),
                  clock=clock, sleep=clock.sleep)
    assert 120 <= clock.now <= 121


def test_container_that_exits_fails_early(fp):
    register_start(fp, state=json.dumps({"Status": "exited", "Running": False, "ExitCode": 3}))
    fp.register([fp.program(DOCKER), *STATE], stdout="false 3\n")
    fp.register([fp.program(DOCKER), "logs", "--tail", "30", NAME],
                stdout="ModuleNotFoundError: No module named 'fastapi'\n")
    with pytest.raises(SmokeTestFailed) as err:
        _, clock = run(server(ready_after=10**6))
    assert f"{NAME} exited (exit 3) before /ping answered" in str(err.value)
    assert str(err.value).count("exit 3") == 1  # said once, not again from the diagnosis
    assert "No module named 'fastapi'" in str(err.value)


@pytest.mark.parametrize("returncode, stderr, fragment", [
    (127, 'docker: Error response from daemon: failed to create shim task: OCI runtime create '
          'failed: runc create failed: unable to start container process: exec: "serve": '
          'executable file not found in $PATH: unknown.\n',
     "`serve` must be an executable file on the image's PATH"),
    (125, "Unable to find image 'rag-worker:v1.0.0' locally\ndocker: Error response from daemon: "
          "pull access denied for rag-worker.\nSee 'docker run --help'.\n",
     "pull access denied for rag-worker."),
])
def test_a_start_failure_is_one_line_and_leaves_no_created_container(fp, returncode, stderr,
                                                                     fragment):
    """docker run creates the container, then fails to start it: it is removed by name."""
    fp.allow_unregistered(False)
    fp.register([fp.program(DOCKER), *RUN, "serve"], returncode=returncode, stderr=stderr,
                stdout="bb2691f9bc6aed806c601a1652d6441d\n")  # docker run -d created it: its id
    fp.register([fp.program(DOCKER), "rm", "-f", NAME])
    with pytest.raises(SmokeTestFailed) as err:
        run(server())
    message = str(err.value)
    assert len(message.splitlines()) == 1, message
    assert message.startswith(f"smoke test of {IMAGE}: `docker run IMAGE serve` failed to start "
                              f"(exit {returncode}): ")
    assert fragment in message
    assert removed(fp) == 1


@pytest.mark.parametrize("answer, fragment", [
    ([1, 2], "/health answered [1, 2], not a JSON object"),
    ("ok", '/health answered "ok", not a JSON object'),
    ({**HEALTHY, "status": "degraded"}, "status is 'degraded', expected 'ok'"),
    (b"\xff<html>", "/health answered 200 with a body that is not JSON"),
])
def test_health_must_be_an_object_that_says_ok(fp, answer, fragment):
    register_start(fp)
    fp.register([fp.program(DOCKER), "logs", "--tail", "30", NAME], stdout="")
    with pytest.raises(SmokeTestFailed) as err:
        run(server(health=answer))
    assert fragment in str(err.value)
    assert removed(fp) == 1


def test_health_missing_after_ping_is_named(fp):
    register_start(fp)
    fp.register([fp.program(DOCKER), "logs", "--tail", "30", NAME], stdout="")
    with pytest.raises(SmokeTestFailed, match="/ping answered 200 but /health answered 404"):
        run(server(health_status=404))


def test_http_get_reads_status_and_body_and_none_when_nothing_listens():
    import socket

    with socket.socket() as sock:  # a port that is bound but not listening: refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        assert smoke.http_get(port, "/ping", timeout=1) == (None, b"")


def test_smoke_commands_are_logged_as_the_dry_run_prints_them(fp, capsys):
    """One code path: the real run's ``+`` lines are the dry run's."""
    register_start(fp)
    run(server())
    logged = [line[2:] for line in capsys.readouterr().err.splitlines() if line.startswith("+ ")]
    smoke.run(DryRunner(), expectation(), name=NAME)
    printed = capsys.readouterr().out.splitlines()
    assert logged == printed
    assert printed == [f"docker run -d --name {NAME} -p 127.0.0.1::8080 --label "
                       f"org.ragbuild.smoke=1 {IMAGE} serve",
                       f"docker port {NAME} 8080/tcp", f"docker rm -f {NAME}"]


@pytest.mark.parametrize("output, port", [("127.0.0.1:49153\n", 49153),
                                          ("0.0.0.0:8081\n[::]:8081\n", 8081)])
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
    register_start(fp)
    fp.register([fp.program(DOCKER), "logs", "--tail", "30", NAME], stdout="")
    monkeypatch.setattr(smoke, "http_get", server(health={**HEALTHY, "version": "0.9.0"}))
    code = cli.main(["smoke", IMAGE, "--expect-version", "1.0.0"])
    assert code == 1
    err = capsys.readouterr().err
    assert "error: rag-worker:v1.0.0: /health answered but version is '0.9.0', expected '1.0.0'" in err


def test_smoke_subcommand_dry_run_prints_commands(fp, capsys, fixed_name):
    assert cli.main(["smoke", "--dry-run", IMAGE]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (f"docker run -d --name {NAME} -p 127.0.0.1::8080 --label "
                      "org.ragbuild.smoke=1 rag-worker:v1.0.0 serve")
    assert out[-1] == f"docker rm -f {NAME}"
    assert len(fp.calls) == 0


def test_smoke_subcommand_command_flag_and_setup_cfg(fp, capsys, fixed_name, tmp_path,
                                                     monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "setup.cfg").write_text("[ragbuild]\nsmoke-command = /opt/start --fast\n")
    assert cli.main(["smoke", "--dry-run", IMAGE]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith(f"{IMAGE} /opt/start --fast")
    assert cli.main(["smoke", "--dry-run", IMAGE, "--command", "serve --workers 2"]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith(f"{IMAGE} serve --workers 2")
    assert cli.main(["smoke", "--dry-run", IMAGE, "--command", ""]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --command is empty; give the command the platform starts the image with, e.g. "
        "serve (SageMaker's)")


def test_check_start_command_reads_shell_quoting():
    from ragbuild.plan import check_start_command

    assert check_start_command("serve --opt 'a b'") == ("serve", "--opt", "a b")
    with pytest.raises(UsageError, match="cannot be split into words: No closing quotation"):
        check_start_command("serve 'a")


# --- a container that dies at once (issue 23) -----------------------------------------------------

EXITED = json.dumps({"Status": "exited", "Running": False, "ExitCode": 1, "OOMKilled": False,
                     "Error": ""})
EXEC_ENOENT = "exec /usr/local/bin/serve: no such file or directory\n"


def tar_of(path: str, content: bytes) -> str:
    """What ``docker cp NAME:PATH -`` prints (as the runner decodes it)."""
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(path.rsplit("/", 1)[1])
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue().decode(errors="replace")


@pytest.fixture
def no_port(fp):
    """``docker port`` of a container that died at once, as docker 20.10 to 28 answers."""
    def start(**kw):
        fp.register([fp.program(DOCKER), *RUN, "serve"], stdout="c0ffee1234567890\n")
        fp.register([fp.program(DOCKER), "port", NAME, "8080/tcp"], returncode=1,
                    stderr=f"Error: No public port '8080/tcp' published for {NAME}\n")
        fp.register([fp.program(DOCKER), "rm", "-f", NAME], stdout=NAME + "\n")
        fp.register([fp.program(DOCKER), *JSON_STATE], stdout=kw.get("state", EXITED))
        fp.register([fp.program(DOCKER), "logs", "--tail", "30", NAME],
                    stderr=kw.get("logs", EXEC_ENOENT))
        copied = kw.get("copied")
        fp.register([fp.program(DOCKER), "cp", f"{NAME}:/usr/local/bin/serve", "-"],
                    **({"stdout": copied} if copied is not None else
                       {"returncode": 1, "stderr": "Error: Could not find the file\n"}))
    return start


@pytest.mark.parametrize("content, hint", [
    (b"#!/bin/sh\r\nexec uvicorn app:app\r\n", "/usr/local/bin/serve has CRLF line endings"),
    (b"#!/usr/bin/python3.9\nprint()\n", "the interpreter on /usr/local/bin/serve's #! line, "
                                         "/usr/bin/python3.9, is not in the image"),
    (None, "/usr/local/bin/serve is not in the image, or its #! line"),
])
def test_a_container_that_dies_at_once_is_diagnosed_from_what_it_said(fp, no_port, content,
                                                                      hint):
    no_port(copied=tar_of("/usr/local/bin/serve", content) if content is not None else None)
    with pytest.raises(SmokeTestFailed) as err:
        run(server())
    message = str(err.value)
    first = message.splitlines()[0]
    assert first.startswith(f"smoke test of {IMAGE}: `docker run IMAGE serve` stopped at once, "
                            "before /ping could be asked (container exited (exit 1)); "), first
    assert hint in first
    assert "No public port" not in message
    assert message.splitlines()[-1] == EXEC_ENOENT.strip()  # the container's own words
    # read before the container was removed, and the container still removed
    calls = [" ".join(map(str, c[1:3])) for c in fp.calls]
    assert calls.index("rm -f") > max(calls.index("inspect --format"), calls.index("logs --tail"))
    assert removed(fp) == 1


@pytest.mark.parametrize("said, hint", [
    ("exec /app/serve: permission denied", "/app/serve is not executable"),
    ("exec /app/serve: exec format error", "/app/serve has no #! line, or is a binary of another"),
    ("Traceback ...\nModuleNotFoundError: fastapi", ""),
])
def test_exec_hints_name_the_usual_cause(said, hint):
    from ragbuild import diagnose

    assert diagnose.exec_hint(said, None).startswith(hint)
    assert bool(diagnose.exec_hint(said, None)) == bool(hint)


def test_an_oom_kill_is_named_in_the_state():
    from ragbuild import diagnose

    state = diagnose.parse_state(json.dumps({"Status": "exited", "Running": False,
                                             "ExitCode": 137, "OOMKilled": True}))
    assert state.describe() == "exited (exit 137, killed: out of memory)"
    assert diagnose.parse_state("not json") == diagnose.State()
