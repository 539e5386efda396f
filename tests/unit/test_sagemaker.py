"""The SageMaker gate's logic, against faked docker calls and a faked, timed HTTP server: the
image starts as SageMaker starts it, and each rule of the serving contract fails naming the rule
and the figure measured."""

import json

import pytest

from ragbuild import cli, manifest, sagemaker, shape, smoke
from ragbuild.errors import SmokeTestFailed
from ragbuild.run.dry import DryRunner
from ragbuild.run.runner import Runner

DOCKER = "docker"
IMAGE = "rag-worker:v1.0.0"
FIRST, SECOND = "ragbuild-smoke-000000000001", "ragbuild-smoke-000000000002"
LABEL = ["--label", "org.ragbuild.smoke=1"]
RUN_FIRST = [
    "run",
    "-d",
    "--name",
    FIRST,
    "--tmpfs",
    "/opt/ml/model:ro",
    "-p",
    "127.0.0.1::8080",
    *LABEL,
    IMAGE,
]
RUN_SECOND = [
    "run",
    "-d",
    "--name",
    SECOND,
    "--tmpfs",
    "/opt/ml/model:ro",
    "-p",
    "127.0.0.1::8090",
    "-p",
    "127.0.0.1::8080",
    "-e",
    "SAGEMAKER_BIND_TO_PORT=8090",
    *LABEL,
    IMAGE,
]
# the host ports docker publishes: the first start's 8080, the second's 8090 and 8080
P1, P2, P2_DEFAULT = 49155, 49156, 49157


def state(name):
    return ["inspect", "--format", "{{.State.Running}} {{.State.ExitCode}}", name]


HEALTHY = {
    "status": "ok",
    "version": "1.0.0",
    "environment": "prod",
    "git_commit": "abc1234",
    "build_timestamp": "20260101-000000",
}


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


class Server:
    """A fake image: what each port answers, taking the time it takes on the fake clock.
    ``ping_seconds``: how long /ping takes; ``ready_after``: the /ping poll from which it
    answers (before: connection closed); ``moved``: whether it listens on the moved port."""

    def __init__(
        self,
        clock,
        *,
        ping=200,
        ping_seconds=0.01,
        ready_after=1,
        health=HEALTHY,
        invocations=200,
        invocations_seconds=0.05,
        moved=True,
    ):
        self.clock, self.ping, self.ping_seconds = clock, ping, ping_seconds
        self.ready_after, self.health, self.moved = ready_after, health, moved
        self.invocations, self.invocations_seconds = invocations, invocations_seconds
        self.seen = []

    def __call__(self, port, method, path, body, timeout):
        self.seen.append((port, method, path))
        listening = {P1: True, P2: self.moved, P2_DEFAULT: not self.moved}[port]
        if path == "/ping":
            polls = sum(1 for p, _, q in self.seen if q == "/ping" and p == port)
            if not listening or polls < self.ready_after:
                return sagemaker.Outcome(None, 0.001)
            if self.ping_seconds > timeout:
                self.clock.now += timeout
                return sagemaker.Outcome(None, timeout, accepted=True)
            self.clock.now += self.ping_seconds
            return sagemaker.Outcome(self.ping, self.ping_seconds, True)
        if path == "/health":
            data = (
                self.health if isinstance(self.health, bytes) else json.dumps(self.health).encode()
            )
            return sagemaker.Outcome(200, 0.01, True, data)
        assert (method, path, body) == ("POST", "/invocations", sagemaker.INVOCATION)
        if self.invocations is None:
            self.clock.now += timeout
            return sagemaker.Outcome(None, timeout, accepted=True)
        self.clock.now += self.invocations_seconds
        return sagemaker.Outcome(self.invocations, self.invocations_seconds, True)


def register_first(fp, command=("serve",), exits_after=1):
    fp.register([fp.program(DOCKER), *RUN_FIRST, *command], stdout="c0ffee\n")
    fp.register([fp.program(DOCKER), "port", FIRST, "8080/tcp"], stdout=f"127.0.0.1:{P1}\n")
    fp.register([fp.program(DOCKER), "kill", "--signal", "TERM", FIRST], stdout=FIRST + "\n")
    for _ in range(exits_after - 1):
        fp.register([fp.program(DOCKER), *state(FIRST)], stdout="true 0\n")
    fp.register([fp.program(DOCKER), *state(FIRST)], stdout="false 0\n")
    fp.register([fp.program(DOCKER), "rm", "-f", FIRST], stdout=FIRST + "\n")


def register_second(fp, command=("serve",)):
    fp.register([fp.program(DOCKER), *RUN_SECOND, *command], stdout="c0ffee\n")
    fp.register([fp.program(DOCKER), "port", SECOND, "8090/tcp"], stdout=f"127.0.0.1:{P2}\n")
    fp.register(
        [fp.program(DOCKER), "port", SECOND, "8080/tcp"], stdout=f"127.0.0.1:{P2_DEFAULT}\n"
    )
    fp.register([fp.program(DOCKER), "rm", "-f", SECOND], stdout=SECOND + "\n")


def register_logs(fp, name=FIRST, text="INFO started\n", state=None):
    """What a failure reads of the container before it is removed (diagnose.why_stopped): its
    state (``state``: docker's ``.State`` object, default a running one), then its logs."""
    state = state or {"Status": "running", "Running": True, "ExitCode": 0}
    fp.register(
        [fp.program(DOCKER), "inspect", "--format", "{{json .State}}", name],
        stdout=json.dumps(state),
    )
    fp.register([fp.program(DOCKER), "logs", "--tail", "30", name], stdout=text)


def removed(fp, name):
    return fp.call_count([fp.program(DOCKER), "rm", "-f", name])


def expectation(**kw):
    values = dict(image=IMAGE, version="1.0.0", environment="prod", git_commit="abc1234")
    values.update(kw)
    return smoke.Expectation(**values)


def gate(clock, server, runner=None, **kw):
    names = iter([FIRST, SECOND])
    kw.setdefault("timeout", 60)
    return sagemaker.run(
        runner or Runner(),
        kw.pop("expect", expectation()),
        http=server,
        clock=clock,
        sleep=clock.sleep,
        names=lambda: next(names),
        **kw,
    )


def test_a_conforming_image_passes_with_its_figures(fp, capsys):
    fp.allow_unregistered(False)
    register_first(fp, exits_after=3)
    register_second(fp)
    clock = FakeClock()
    server = Server(clock, ping_seconds=0.2, ready_after=3, invocations_seconds=1.5)
    result = gate(clock, server)
    assert result.health == HEALTHY
    assert (result.ping_seconds, result.invocations_status, result.invocations_seconds) == (
        0.2,
        200,
        1.5,
    )
    assert result.stop_seconds == 0.5  # two polls of 0.25 s before the third saw it gone
    assert result.moved_port == 8090 and result.moved_ping_seconds == 0.2
    assert result.tested_at.endswith("Z")
    assert [(p, q) for p, _, q in server.seen] == (
        [(P1, "/ping")] * 3 + [(P1, "/health"), (P1, "/invocations")] + [(P2, "/ping")] * 3
    )
    assert removed(fp, FIRST) == 1 and removed(fp, SECOND) == 1
    err = capsys.readouterr().err
    assert (
        "smoke test passed: rag-worker:v1.0.0 started as `docker run IMAGE serve` answered "
        "/ping and /health with {" in err
    )
    assert (
        "/opt/ml/model read-only, /ping in 0.20s (limit 2s), /invocations 200 in 1.50s "
        "(limit 60s), exit 0.50s after SIGTERM (limit 30s), SAGEMAKER_BIND_TO_PORT=8090 "
        "answered /ping in 0.20s" in err
    )
    assert "+ docker inspect" not in err  # the polls have no + lines: the wait line says it
    assert json.loads(json.dumps(result.figures()))["stop_seconds"] == 0.5


def test_a_slow_ping_fails_naming_the_rule_and_the_figure(fp):
    register_first(fp)
    register_logs(fp)
    clock = FakeClock()
    with pytest.raises(sagemaker.GateFailed) as err:
        gate(clock, Server(clock, ping_seconds=3.0))
    assert err.value.rule == "ping-2s"
    first = str(err.value).splitlines()[0]
    assert first.startswith(
        "SageMaker contract: GET /ping answers within 2 s [ping-2s]: /ping "
        "took 3.0 s (rag-worker:v1.0.0) once the port accepted connections"
    )
    assert sagemaker.CONTRACT_URL in first
    assert "INFO started" in str(err.value)
    assert removed(fp, FIRST) == 1
    assert fp.call_count([fp.program(DOCKER), *RUN_SECOND, "serve"]) == 0


def test_a_ping_that_never_answers_once_connected_fails_the_ping_rule(fp):
    register_first(fp)
    register_logs(fp)
    clock = FakeClock()
    with pytest.raises(sagemaker.GateFailed) as err:
        gate(clock, Server(clock, ping_seconds=100))
    assert err.value.rule == "ping-2s" and err.value.figure == "no answer within 5 s"


def test_invocations_must_answer_below_500(fp):
    register_first(fp)
    register_logs(fp)
    clock = FakeClock()
    with pytest.raises(sagemaker.GateFailed) as err:
        gate(clock, Server(clock, invocations=501, invocations_seconds=0.01))
    assert err.value.rule == "invocations-60s"
    assert "POST /invocations answers below 500 within 60 s [invocations-60s]: answered 501" in str(
        err.value
    )


def test_invocations_without_an_answer_in_60_s_fail(fp):
    register_first(fp)
    register_logs(fp)
    clock = FakeClock()
    with pytest.raises(sagemaker.GateFailed) as err:
        gate(clock, Server(clock, invocations=None))
    assert err.value.rule == "invocations-60s" and err.value.figure == "no answer after 60.0 s"


def test_a_4xx_from_invocations_passes(fp):
    register_first(fp)
    register_second(fp)
    clock = FakeClock()
    assert gate(clock, Server(clock, invocations=415)).invocations_status == 415


def test_a_container_that_ignores_sigterm_fails_after_30_s(fp):
    fp.register([fp.program(DOCKER), *RUN_FIRST, "serve"], stdout="c0ffee\n")
    fp.register([fp.program(DOCKER), "port", FIRST, "8080/tcp"], stdout=f"127.0.0.1:{P1}\n")
    fp.register([fp.program(DOCKER), "kill", "--signal", "TERM", FIRST])
    for _ in range(200):
        fp.register([fp.program(DOCKER), *state(FIRST)], stdout="true 0\n")
    register_logs(fp)
    fp.register([fp.program(DOCKER), "rm", "-f", FIRST])
    clock = FakeClock()
    with pytest.raises(sagemaker.GateFailed) as err:
        gate(clock, Server(clock))
    assert err.value.rule == "sigterm-30s"
    assert (
        "the container exits within 30 s of SIGTERM [sigterm-30s]: still running 30 s after "
        "SIGTERM" in str(err.value)
    )
    assert 30 <= clock.now <= 31
    assert removed(fp, FIRST) == 1


def test_an_image_that_ignores_the_bind_port_fails_and_says_where_it_listens(fp):
    register_first(fp)
    register_second(fp)
    for _ in range(100):
        fp.register([fp.program(DOCKER), *state(SECOND)], stdout="true 0\n")
    register_logs(fp, SECOND)
    clock = FakeClock()
    with pytest.raises(sagemaker.GateFailed) as err:
        gate(clock, Server(clock, moved=False), timeout=5)
    assert err.value.rule == "bind-to-port"
    assert (
        "the server listens on SAGEMAKER_BIND_TO_PORT when it is set [bind-to-port]: with "
        "SAGEMAKER_BIND_TO_PORT=8090, no 200 within 5 s (nothing answered) on port 8090; it "
        "answers on 8080 instead (200)"
    ) in str(err.value)
    assert removed(fp, SECOND) == 1


def test_a_container_that_exits_fails_early_with_its_logs(fp):
    fp.register([fp.program(DOCKER), *RUN_FIRST, "serve"], stdout="c0ffee\n")
    fp.register([fp.program(DOCKER), "port", FIRST, "8080/tcp"], stdout=f"127.0.0.1:{P1}\n")
    fp.register([fp.program(DOCKER), *state(FIRST)], stdout="false 3\n")
    register_logs(fp, text="ModuleNotFoundError: No module named 'fastapi'\n")
    fp.register([fp.program(DOCKER), "rm", "-f", FIRST])
    clock = FakeClock()
    with pytest.raises(sagemaker.GateFailed) as err:
        gate(clock, Server(clock, ready_after=10**6))
    assert err.value.rule == "ready"
    assert "the container exited (exit 3) before /ping answered 200" in str(err.value)
    assert "No module named 'fastapi'" in str(err.value)
    assert clock.now < 5


def test_the_timeout_given_is_the_one_waited(fp):
    fp.register([fp.program(DOCKER), *RUN_FIRST, "serve"], stdout="c0ffee\n")
    fp.register([fp.program(DOCKER), "port", FIRST, "8080/tcp"], stdout=f"127.0.0.1:{P1}\n")
    for _ in range(400):
        fp.register([fp.program(DOCKER), *state(FIRST)], stdout="true 0\n")
    register_logs(fp)
    fp.register([fp.program(DOCKER), "rm", "-f", FIRST])
    clock = FakeClock()
    with pytest.raises(
        sagemaker.GateFailed,
        match=r"no 200 within 45 s \(the last answer was "
        r"404\)",
    ):
        gate(clock, Server(clock, ping=404), timeout=45)
    assert 45 <= clock.now <= 46


def test_without_serve_the_start_fails_naming_the_fix(fp):
    fp.allow_unregistered(False)
    fp.register(
        [fp.program(DOCKER), *RUN_FIRST, "serve"],
        returncode=127,
        stderr='docker: Error response from daemon: failed to create task: exec: "serve": '
        "executable file not found in $PATH: unknown.\n",
    )
    fp.register([fp.program(DOCKER), "rm", "-f", FIRST])
    clock = FakeClock()
    with pytest.raises(sagemaker.GateFailed) as err:
        gate(clock, Server(clock))
    assert err.value.rule == "serve"
    assert len(str(err.value).splitlines()) == 1
    assert "`serve` must be an executable file on the image's PATH" in str(err.value)
    assert removed(fp, FIRST) == 1


def test_health_mismatch_fails_with_logs(fp):
    register_first(fp)
    register_logs(fp)
    clock = FakeClock()
    with pytest.raises(SmokeTestFailed) as err:
        gate(clock, Server(clock), expect=expectation(environment="dev"))
    assert "environment is 'prod', expected 'dev'" in str(err.value)
    assert removed(fp, FIRST) == 1


def test_gate_commands_are_logged_as_the_dry_run_prints_them(fp, capsys):
    """One code path: the real run's ``+`` lines are the dry run's, less the polls."""
    register_first(fp)
    register_second(fp)
    clock = FakeClock()
    gate(clock, Server(clock))
    logged = [line[2:] for line in capsys.readouterr().err.splitlines() if line.startswith("+ ")]
    gate(clock, Server(clock), runner=DryRunner())
    printed = capsys.readouterr().out.splitlines()
    polls = [line for line in printed if line.startswith("docker inspect")]
    assert [line for line in printed if line not in polls] == logged
    assert logged == [
        " ".join(["docker", *RUN_FIRST, "serve"]),
        f"docker port {FIRST} 8080/tcp",
        f"docker kill --signal TERM {FIRST}",
        f"docker rm -f {FIRST}",
        " ".join(["docker", *RUN_SECOND, "serve"]),
        f"docker port {SECOND} 8090/tcp",
        f"docker port {SECOND} 8080/tcp",
        f"docker rm -f {SECOND}",
    ]


def test_http_request_times_a_real_server_and_tells_refused_from_held():
    import socket
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Slow(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/slow":
                threading.Event().wait(1.0)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        fast = sagemaker.http_request(port, "GET", "/ping", None, 5)
        assert fast.status == 200 and fast.accepted and fast.seconds < 1
        held = sagemaker.http_request(port, "GET", "/slow", None, 0.3)
        assert (held.status, held.accepted) == (None, True) and 0.3 <= held.seconds < 1
    finally:
        server.shutdown()
        server.server_close()
    with socket.socket() as sock:  # bound, not listening: refused, not "accepted"
        sock.bind(("127.0.0.1", 0))
        refused = sagemaker.http_request(sock.getsockname()[1], "GET", "/ping", None, 1)
        assert (refused.status, refused.accepted) == (None, False)


def test_smoke_subcommand_prints_the_figures_and_quiet_only_them(fp, capsys, monkeypatch):
    register_first(fp)
    register_second(fp)
    names = iter([FIRST, SECOND])
    monkeypatch.setattr(smoke, "container_name", lambda: next(names))
    clock = FakeClock()
    server = Server(clock)
    monkeypatch.setattr(
        sagemaker,
        "http_request",
        lambda port, method, path, body, timeout, clock_=None: server(
            port, method, path, body, timeout
        ),
    )
    assert cli.main(["smoke", "-q", IMAGE]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    figures = json.loads(out)
    assert figures["image"] == IMAGE and figures["invocations_status"] == 200


def test_smoke_subcommand_quiet_still_prints_the_error(fp, capsys, monkeypatch):
    fp.register(
        [fp.program(DOCKER), *RUN_FIRST, "serve"],
        returncode=127,
        stderr='exec: "serve": executable file not found in $PATH\n',
    )
    fp.register([fp.program(DOCKER), "rm", "-f", FIRST])
    monkeypatch.setattr(smoke, "container_name", lambda: FIRST)
    assert cli.main(["smoke", "--quiet", IMAGE]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(
        "error: SageMaker contract: the container starts as `docker run IMAGE "
        "serve` [serve]: smoke test of rag-worker:v1.0.0: `docker run IMAGE "
        "serve` failed to start"
    )
    assert "+ docker" not in err


# --- the manifest shape ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "media_type, fragment",
    [
        (
            manifest.OCI_MANIFEST,
            "is a single application/vnd.oci.image.manifest.v1+json manifest, not "
            "a Docker v2 schema 2 manifest",
        ),
        (manifest.OCI_INDEX, "is an image index"),
        (manifest.DOCKER_MANIFEST_LIST, "is an image index"),
    ],
)
def test_only_a_docker_v2_manifest_is_sagemakers_shape(media_type, fragment):
    shown = manifest.Manifest("sha256:" + "1" * 64, media_type)
    problem = shape.shape_problem("r/x:dev", shown)
    assert fragment in problem and "oci-mediatypes=false" in problem
    # the flag does not let a one-platform plan ship an index: not offered for one
    assert ("--not-for-sagemaker" in problem) is (media_type == manifest.OCI_MANIFEST)


def test_the_planned_platform_must_be_the_images():
    shown = manifest.Manifest("sha256:" + "1" * 64, manifest.DOCKER_MANIFEST, config="sha256:2")
    assert shape.shape_problem("r/x:dev", shown) is None
    assert shape.shape_problem("r/x:dev", shown, "linux/amd64", "linux/amd64") is None
    problem = shape.shape_problem("r/x:dev", shown, "linux/arm64", "linux/amd64")
    assert problem == (
        "r/x:dev is an image for linux/arm64, not the planned linux/amd64 (the shape rule: "
        "one image of the planned platform): build it with --platform linux/amd64, or pass "
        "--platform linux/arm64 when that is the plan"
    )


# --- what a promoted image reports ----------------------------------------------------------


def test_a_promote_expects_the_revision_label_not_the_version(fp):
    labels = {
        "org.opencontainers.image.revision": "abc1234",
        "org.opencontainers.image.version": "dev",
    }
    fp.register(
        [fp.program(DOCKER), "image", "inspect", "--format", "{{json .Config.Labels}}", IMAGE],
        stdout=json.dumps(labels) + "\n",
    )
    expect = smoke.revision_expectation(Runner(), IMAGE)
    assert (expect.git_commit, expect.version, expect.environment) == ("abc1234", None, None)
    assert expect.mismatches({"status": "ok", "git_commit": "abc1234", "version": "1.2.3"}) == []
    assert expect.mismatches({"status": "ok", "git_commit": "fff0000"}) == [
        "git_commit is 'fff0000', expected 'abc1234'"
    ]


@pytest.mark.parametrize("labels", [{}, {"org.opencontainers.image.revision": "unknown"}, None])
def test_an_image_without_a_revision_cannot_be_checked(fp, labels):
    fp.register(
        [fp.program(DOCKER), "image", "inspect", "--format", "{{json .Config.Labels}}", IMAGE],
        stdout=json.dumps(labels) + "\n",
    )
    with pytest.raises(SmokeTestFailed, match="has no org.opencontainers.image.revision label"):
        smoke.revision_expectation(Runner(), IMAGE)


def test_a_container_gone_before_its_port_is_read_fails_as_its_exit(fp):
    """`docker port` of an exited container fails ("No public port"): the truth is the exit."""
    fp.register([fp.program(DOCKER), *RUN_FIRST, "serve"], stdout="c0ffee\n")
    fp.register(
        [fp.program(DOCKER), "port", FIRST, "8080/tcp"],
        returncode=1,
        stderr=f"Error: No public port '8080/tcp' published for {FIRST}\n",
    )
    fp.register([fp.program(DOCKER), *state(FIRST)], stdout="false 1\n")
    register_logs(fp, text="/bin/sh: 1: exec: nothing: not found\n")
    fp.register([fp.program(DOCKER), "rm", "-f", FIRST])
    clock = FakeClock()
    with pytest.raises(sagemaker.GateFailed) as err:
        gate(clock, Server(clock))
    assert err.value.rule == "ready"
    assert "the container exited (exit 1) before /ping answered 200" in str(err.value)
    assert "exec: nothing: not found" in str(err.value)
    assert removed(fp, FIRST) == 1


def test_a_build_that_pushes_for_sagemaker_asks_for_docker_media_types():
    """The fix the shape rule names, applied by ragbuild's own push: one platform, for
    SageMaker; not for an index or --not-for-sagemaker."""
    from datetime import datetime

    from ragbuild.config import Config, Options
    from ragbuild.git import GitInfo
    from ragbuild.plan import PushPlan, build_command, make_plan

    def words(**options):
        values = dict(env="dev", registry="localhost:5000/r", push=True)
        values.update(options)
        plan = make_plan(
            Options(**values), Config(), GitInfo(sha="abc1234"), datetime(2026, 1, 2, 3, 4, 5)
        )
        push_plan = PushPlan(plan.refs, by_build=True)
        return " ".join(build_command(plan, push_plan, metadata_file="/tmp/m.json").argv)

    assert (
        "--push --provenance=false --sbom=false --output type=image,oci-mediatypes=false "
        in words()
    )
    assert "oci-mediatypes" not in words(not_for_sagemaker=True)
    assert "oci-mediatypes" not in words(platform="linux/amd64,linux/arm64")


def tar_of(path, content):
    """``docker cp NAME:PATH -``'s answer: a tar stream holding the one file."""
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(path.rsplit("/", 1)[1])
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue().decode(errors="replace")


EXEC_ENOENT = "exec /usr/local/bin/serve: no such file or directory\n"


@pytest.mark.parametrize(
    "content, hint",
    [
        (b"#!/bin/sh\r\nexec uvicorn app:app\r\n", "/usr/local/bin/serve has CRLF line endings"),
        (
            b"#!/usr/bin/python3.9\nprint()\n",
            "the interpreter on /usr/local/bin/serve's #! line, "
            "/usr/bin/python3.9, is not in the image",
        ),
        (None, "/usr/local/bin/serve is not in the image, or its #! line"),
    ],
)
def test_a_container_that_dies_at_once_is_diagnosed_from_what_it_said(fp, content, hint):
    """issue 23 (3): a `serve` checked out with CRLF line endings dies at once; the failure
    says why from the container's own state, logs and file, read before it is removed."""
    fp.register([fp.program(DOCKER), *RUN_FIRST, "serve"], stdout="c0ffee\n")
    fp.register(
        [fp.program(DOCKER), "port", FIRST, "8080/tcp"],
        returncode=1,
        stderr=f"Error: No public port '8080/tcp' published for {FIRST}\n",
    )
    fp.register([fp.program(DOCKER), *state(FIRST)], stdout="false 255\n")
    register_logs(
        fp, text=EXEC_ENOENT, state={"Status": "exited", "Running": False, "ExitCode": 255}
    )
    fp.register(
        [fp.program(DOCKER), "cp", f"{FIRST}:/usr/local/bin/serve", "-"],
        **(
            {"stdout": tar_of("/usr/local/bin/serve", content)}
            if content is not None
            else {"returncode": 1, "stderr": "Error: Could not find the file\n"}
        ),
    )
    fp.register([fp.program(DOCKER), "rm", "-f", FIRST])
    clock = FakeClock()
    with pytest.raises(sagemaker.GateFailed) as err:
        gate(clock, Server(clock))
    message = str(err.value)
    first = message.splitlines()[0]
    assert "the container exited (exit 255) before /ping answered 200" in first
    assert f"; {hint}" in first, first
    assert first.count("exit 255") == 1  # the state is said once
    assert "No public port" not in message
    assert message.splitlines()[-1] == EXEC_ENOENT.strip()  # the container's own words
    calls = [" ".join(map(str, c[1:3])) for c in fp.calls]
    assert calls.index("rm -f") > max(calls.index("inspect --format"), calls.index("logs --tail"))
    assert removed(fp, FIRST) == 1
