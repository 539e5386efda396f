"""The smoke test's logic, against faked docker calls and a faked /health."""

import pytest

from ragbuild import cli, smoke
from ragbuild.errors import SmokeTestFailed
from ragbuild.runner import DryRunner, Runner

DOCKER = "docker"
IMAGE = "rag-worker:v1.0.0"
CID = "c0ffee1234567890"


def register_start(fp, port_line="127.0.0.1:49155\n"):
    fp.register([fp.program(DOCKER), "run", "-d", "-p", "127.0.0.1::8080", "--label",
                 "org.ragbuild.smoke=1", IMAGE], stdout=CID + "\n")
    fp.register([fp.program(DOCKER), "port", CID, "8080/tcp"], stdout=port_line)
    fp.register([fp.program(DOCKER), "rm", "-f", CID], stdout=CID + "\n")


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


def test_passes_when_health_reports_what_was_built(fp, capsys):
    register_start(fp)
    seen_ports = []

    def fetch(port):
        seen_ports.append(port)
        return HEALTHY if len(seen_ports) >= 3 else None  # answers on the third poll

    clock = FakeClock()
    health = smoke.run(Runner(), expectation(), fetch=fetch, clock=clock, sleep=clock.sleep)
    assert health == HEALTHY
    assert seen_ports == [49155, 49155, 49155]
    assert fp.call_count([fp.program(DOCKER), "rm", "-f", CID]) == 1
    assert "smoke test passed" in capsys.readouterr().err


def test_mismatch_fails_with_logs_and_still_removes_container(fp):
    register_start(fp)
    fp.register([fp.program(DOCKER), "logs", "--tail", "30", CID], stdout="INFO started\n")
    clock = FakeClock()
    with pytest.raises(SmokeTestFailed) as err:
        smoke.run(Runner(), expectation(environment="dev"), fetch=lambda port: HEALTHY,
                  clock=clock, sleep=clock.sleep)
    message = str(err.value)
    assert "environment is 'prod', expected 'dev'" in message
    assert "INFO started" in message
    assert fp.call_count([fp.program(DOCKER), "rm", "-f", CID]) == 1


def test_timeout_is_bounded_and_removes_container(fp):
    register_start(fp)
    for _ in range(200):
        fp.register([fp.program(DOCKER), "inspect", "--format", "{{.State.Running}}", CID],
                    stdout="true\n")
    fp.register([fp.program(DOCKER), "logs", "--tail", "30", CID], stdout="", stderr="boot...\n")
    clock = FakeClock()
    with pytest.raises(SmokeTestFailed) as err:
        smoke.run(Runner(), expectation(), timeout=5, fetch=lambda port: None, clock=clock,
                  sleep=clock.sleep)
    assert "did not answer within 5s" in str(err.value)
    assert "boot..." in str(err.value)
    assert 5 <= clock.now <= 6
    assert fp.call_count([fp.program(DOCKER), "rm", "-f", CID]) == 1


def test_container_that_exits_fails_early(fp):
    register_start(fp)
    fp.register([fp.program(DOCKER), "inspect", "--format", "{{.State.Running}}", CID],
                stdout="false\n")
    fp.register([fp.program(DOCKER), "logs", "--tail", "30", CID],
                stdout="ModuleNotFoundError: No module named 'fastapi'\n")
    clock = FakeClock()
    with pytest.raises(SmokeTestFailed) as err:
        smoke.run(Runner(), expectation(), timeout=60, fetch=lambda port: None, clock=clock,
                  sleep=clock.sleep)
    assert "exited before /health answered" in str(err.value)
    assert "No module named 'fastapi'" in str(err.value)
    assert clock.now < 60


def test_container_that_cannot_start_is_a_smoke_failure(fp):
    fp.allow_unregistered(False)  # no container: nothing to remove, no logs to read
    fp.register([fp.program(DOCKER), "run", "-d", "-p", "127.0.0.1::8080", "--label",
                 "org.ragbuild.smoke=1", IMAGE], returncode=125,
                stderr="Unable to find image 'rag-worker:v1.0.0' locally\n")
    with pytest.raises(SmokeTestFailed) as err:
        smoke.run(Runner(), expectation())
    assert str(err.value).startswith(f"smoke test of {IMAGE} could not run: `docker run -d")
    assert "Unable to find image" in str(err.value)


@pytest.mark.parametrize("answer, fragment", [
    ([1, 2], "/health answered [1, 2], not a JSON object"),
    ("ok", '/health answered "ok", not a JSON object'),
    ({**HEALTHY, "status": "degraded"}, "status is 'degraded', expected 'ok'"),
])
def test_health_must_be_an_object_that_says_ok(fp, answer, fragment):
    register_start(fp)
    fp.register([fp.program(DOCKER), "logs", "--tail", "30", CID], stdout="")
    with pytest.raises(SmokeTestFailed) as err:
        smoke.run(Runner(), expectation(), fetch=lambda port: answer)
    assert fragment in str(err.value)
    assert fp.call_count([fp.program(DOCKER), "rm", "-f", CID]) == 1


def test_a_200_whose_body_is_not_json_fails_at_once(monkeypatch):
    class Response:
        status = 200

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self):
            return b"\xff<html>"

    monkeypatch.setattr(smoke.urllib.request, "urlopen", lambda url, timeout: Response())
    with pytest.raises(SmokeTestFailed, match="/health answered 200 with a body that is not JSON"):
        smoke.fetch_health(49155)


def test_smoke_commands_are_logged_as_the_dry_run_prints_them(fp, capsys):
    """One code path: the real run's ``+`` lines are the dry run's, with the container id."""
    register_start(fp)
    smoke.run(Runner(), expectation(), fetch=lambda port: HEALTHY)
    logged = [line[2:] for line in capsys.readouterr().err.splitlines() if line.startswith("+ ")]
    smoke.run(DryRunner(), expectation())
    printed = capsys.readouterr().out.splitlines()
    assert logged == [line.replace("CONTAINER", CID) for line in printed]
    assert printed == ["docker run -d -p 127.0.0.1::8080 --label org.ragbuild.smoke=1 " + IMAGE,
                       "docker port CONTAINER 8080/tcp", "docker rm -f CONTAINER"]


@pytest.mark.parametrize("output, port", [("127.0.0.1:49153\n", 49153),
                                          ("0.0.0.0:8081\n[::]:8081\n", 8081)])
def test_parse_port(output, port):
    assert smoke.parse_port(output) == port


def test_parse_port_refuses_garbage():
    with pytest.raises(SmokeTestFailed):
        smoke.parse_port("")


def test_smoke_subcommand_exit_status_and_message(fp, capsys, monkeypatch):
    register_start(fp)
    fp.register([fp.program(DOCKER), "logs", "--tail", "30", CID], stdout="")
    monkeypatch.setattr(smoke, "fetch_health", lambda port, timeout=2.0: {**HEALTHY, "version": "0.9.0"})
    code = cli.main(["smoke", IMAGE, "--expect-version", "1.0.0"])
    assert code == 1
    err = capsys.readouterr().err
    assert "error: rag-worker:v1.0.0: /health answered but version is '0.9.0', expected '1.0.0'" in err


def test_smoke_subcommand_dry_run_prints_commands(fp, capsys):
    assert cli.main(["smoke", "--dry-run", IMAGE]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "docker run -d -p 127.0.0.1::8080 --label org.ragbuild.smoke=1 rag-worker:v1.0.0"
    assert out[-1] == "docker rm -f CONTAINER"
    assert len(fp.calls) == 0
