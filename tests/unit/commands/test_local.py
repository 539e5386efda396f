"""run-local, logs and shell (commands/local.py): the docker calls they make; the
subcommands' flag checks. clean is commands/test_clean.py."""

import io
import json
import os
import signal

import pytest

from ragbuild import cli
from ragbuild.commands import local as local_commands

DOCKER = "docker"
INSPECT_LOCAL = [DOCKER, "container", "inspect", "--format", "{{.Image}}", "rag-worker-local"]
LABEL = "org.ragbuild.repository"


#: docker inspect's {{json .State}} of a container that runs
RUNNING_STATE = json.dumps({"Status": "running", "Running": True})


def image(image_id, tags, repository=None, **labels):
    if repository is not None:
        labels[LABEL] = repository
    return {"Id": image_id, "RepoTags": list(tags), "Config": {"Labels": labels or None}}


# --- run, logs ---------------------------------------------------------------------------------


NEW = "rag-worker-local-new-0badcafe"
INSPECT_OLD = [
    "container",
    "inspect",
    "--format",
    "{{.State.Running}} {{json .HostConfig.PortBindings}}",
    "rag-worker-local",
]


@pytest.fixture
def local(fp, monkeypatch):
    """A fixed temporary name; ``local(old=...)`` registers the old container's inspect:
    None (no container), or its ``running`` state and host port."""
    monkeypatch.setattr(local_commands, "temporary_name", lambda name: NEW)
    monkeypatch.setattr(local_commands, "SETTLE", 0)

    def register(old=None, new_state=RUNNING_STATE):
        fp.register(
            [fp.program(DOCKER), "inspect", "--format", "{{json .State}}", NEW], stdout=new_state
        )  # after its start: does it still run?
        if old is None:
            fp.register(
                [fp.program(DOCKER), *INSPECT_OLD],
                returncode=1,
                stderr="Error: No such container: rag-worker-local\n",
            )
        else:
            running, host_port = old
            bindings = json.dumps({"8080/tcp": [{"HostIp": "", "HostPort": str(host_port)}]})
            fp.register([fp.program(DOCKER), *INSPECT_OLD], stdout=f"{running} {bindings}\n")

    return register


def calls(fp) -> list:
    return [" ".join(map(str, call[1:])) for call in fp.calls]


def test_run_local_starts_the_new_container_before_removing_the_old(fp, local, capsys):
    fp.allow_unregistered(False)
    local(old=("true", 19090))
    fp.register(
        [fp.program(DOCKER), "create", "--name", NEW, "-p", "9000:8080", "rag-worker:dev"],
        stdout="abc\n",
    )
    fp.register([fp.program(DOCKER), "start", NEW])
    fp.register([fp.program(DOCKER), "rm", "-f", "rag-worker-local"])
    fp.register([fp.program(DOCKER), "rename", NEW, "rag-worker-local"])
    assert cli.main(["run", "--port", "9000"]) == 0
    assert calls(fp)[1:] == [
        f"create --name {NEW} -p 9000:8080 rag-worker:dev",
        f"start {NEW}",
        f"inspect --format {{{{json .State}}}} {NEW}",
        "rm -f rag-worker-local",
        f"rename {NEW} rag-worker-local",
    ]
    assert "curl http://localhost:9000/health" in capsys.readouterr().err


@pytest.mark.parametrize(
    "said",
    [
        "Error response from daemon: driver failed programming external connectivity on endpoint "
        "x: Error starting userland proxy: listen tcp4 0.0.0.0:18080: bind: address already in use",
        "Error response from daemon: Bind for 0.0.0.0:18080 failed: port is already allocated",
    ],
)
def test_a_taken_port_keeps_the_old_container_and_leaves_nothing(fp, local, capsys, said):
    fp.allow_unregistered(False)
    local(old=("true", 19090))
    fp.register(
        [fp.program(DOCKER), "create", "--name", NEW, "-p", "18080:8080", "rag-worker:dev"],
        stdout="abc\n",
    )
    fp.register(
        [fp.program(DOCKER), "start", NEW],
        returncode=1,
        stderr=said + "\nError: failed to start containers: " + NEW + "\n",
    )
    fp.register([fp.program(DOCKER), "rm", "-f", NEW])
    assert cli.main(["run", "--port", "18080"]) == 1
    assert calls(fp)[-1] == f"rm -f {NEW}"  # the old one was never touched
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: port 18080 is taken (docker: ")
    assert err[-1].endswith(
        "; pass --port with a free port, e.g. run --port 18081; nothing "
        "changed: rag-worker-local is as it was"
    )


def test_the_old_container_on_the_same_port_is_stopped_first_and_restarted_on_failure(
    fp, local, capsys
):
    fp.allow_unregistered(False)
    local(old=("true", 8080))
    fp.register([fp.program(DOCKER), "create", "--name", NEW, "-p", "8080:8080", "broken:1"])
    fp.register([fp.program(DOCKER), "stop", "rag-worker-local"])
    fp.register(
        [fp.program(DOCKER), "start", NEW],
        returncode=1,
        stderr='exec: "uvicorn": executable file not found in $PATH\n',
    )
    fp.register([fp.program(DOCKER), "rm", "-f", NEW])
    fp.register([fp.program(DOCKER), "start", "rag-worker-local"])
    assert cli.main(["run", "broken:1"]) == 1
    assert calls(fp)[1:] == [
        f"create --name {NEW} -p 8080:8080 broken:1",
        "stop rag-worker-local",
        f"start {NEW}",
        f"rm -f {NEW}",
        "start rag-worker-local",
    ]
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        'error: cannot start broken:1 as rag-worker-local: exec: "uvicorn": executable file not '
        "found in $PATH; nothing changed: rag-worker-local is as it was"
    )


def test_a_missing_image_leaves_nothing_and_says_so_in_one_line(fp, local, capsys):
    fp.allow_unregistered(False)
    local(old=None)
    fp.register(
        [fp.program(DOCKER), "create", "--name", NEW, "-p", "8080:8080", "nope:1"],
        returncode=125,
        stderr="Unable to find image 'nope:1' locally\nError response "
        "from daemon: pull access denied for nope\n",
    )
    fp.register([fp.program(DOCKER), "rm", "-f", NEW])
    assert cli.main(["run", "nope:1"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: cannot start nope:1 as rag-worker-local: Error response from daemon: pull access "
        "denied for nope; nothing changed: no container was left"
    )


def test_a_signal_midway_rolls_back(fp, local, monkeypatch):
    local(old=("true", 8080))
    fp.register([fp.program(DOCKER), "create", "--name", NEW, "-p", "8080:8080", "rag-worker:dev"])
    fp.register([fp.program(DOCKER), "stop", "rag-worker-local"])
    fp.register(
        [fp.program(DOCKER), "start", NEW],  # SIGTERM arrives while docker start runs
        callback=lambda process: os.kill(os.getpid(), signal.SIGTERM),
    )
    fp.register([fp.program(DOCKER), "rm", "-f", NEW])
    fp.register([fp.program(DOCKER), "start", "rag-worker-local"])
    assert cli.main(["run"]) == 143
    assert calls(fp)[-2:] == [f"rm -f {NEW}", "start rag-worker-local"]


def test_run_local_dry_run_prints_every_step(fp, local, capsys):
    assert cli.main(["run", "--dry-run", "--port", "9000"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "docker container inspect --format '{{.State.Running}} {{json .HostConfig.PortBindings}}' "
        "rag-worker-local",
        f"docker create --name {NEW} -p 9000:8080 rag-worker:dev",
        f"docker start {NEW}",
        "docker rm -f rag-worker-local",
        f"docker rename {NEW} rag-worker-local",
    ]
    assert "only when it publishes port 9000 itself" in err
    assert len(fp.calls) == 0


def test_logs_follow(fp):
    fp.register([fp.program(DOCKER), "logs", "--tail", "200", "--follow", "rag-worker-local"])
    assert cli.main(["logs", "-f"]) == 0


FOLLOW = [DOCKER, "logs", "--tail", "200", "--follow", "rag-worker-local"]


def test_ctrl_c_ends_logs_follow_with_exit_0_and_no_error(fp, capsys):
    """Ctrl-C is how following ends: the SIGINT reaches ragbuild (and docker, 130)."""
    fp.register(
        [fp.program(DOCKER), *FOLLOW[1:]],
        callback=lambda process: os.kill(os.getpid(), signal.SIGINT),
    )
    assert cli.main(["logs", "-f"]) == 0
    fp.register([fp.program(DOCKER), *FOLLOW[1:]], returncode=130)  # docker's own exit on it
    assert cli.main(["logs", "-f"]) == 0
    assert "error" not in capsys.readouterr().err


def test_sigterm_still_stops_logs_follow_with_143_and_ctrl_c_without_follow_is_130(fp, capsys):
    fp.register(
        [fp.program(DOCKER), *FOLLOW[1:]],
        callback=lambda process: os.kill(os.getpid(), signal.SIGTERM),
    )
    assert cli.main(["logs", "-f"]) == 143
    fp.register(
        [fp.program(DOCKER), "logs", "--tail", "200", "rag-worker-local"],
        callback=lambda process: os.kill(os.getpid(), signal.SIGINT),
    )
    assert cli.main(["logs"]) == 130
    fp.register(
        [fp.program(DOCKER), *FOLLOW[1:]],
        returncode=1,
        stderr="Error: No such container: rag-worker-local\n",
    )
    assert cli.main(["logs", "-f"]) == 1


@pytest.mark.parametrize(
    "image_ref",
    [
        "rag-worker:dev",
        "localhost:5000/team/rag:1.0.0",
        "[::1]:5000/rag",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/rag-worker:v1.2.3",
        "rag-worker@sha256:" + "a" * 64,
        "sha256:" + "b" * 64,
        "0123abcd",
    ],
)
def test_run_takes_any_image_reference(fp, local, image_ref):
    local(old=None)
    fp.register([fp.program(DOCKER), "create", "--name", NEW, "-p", "8080:8080", image_ref])
    fp.register([fp.program(DOCKER), "start", NEW])
    fp.register([fp.program(DOCKER), "rename", NEW, "rag-worker-local"])
    assert cli.main(["run", image_ref]) == 0


# --- bad input: one line, exit 2, no docker call -----------------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["run", "--port", "eighty"],
            "error: argument --port: 'eighty' is not a port number (1-65535)",
        ),
        (["run", "--port", "0"], "error: argument --port: '0' is not a port number (1-65535)"),
        (
            ["run", "--port", "65536"],
            "error: argument --port: '65536' is not a port number (1-65535)",
        ),
        (["run", "--port=-1"], "error: argument --port: '-1' is not a port number (1-65535)"),
        (
            ["smoke", "rag-worker:dev", "--timeout", "nan"],
            "error: argument --timeout: 'nan' is not a number of seconds (more than 0)",
        ),
        (
            ["smoke", "rag-worker:dev", "--timeout", "inf"],
            "error: argument --timeout: 'inf' is not a number of seconds (more than 0)",
        ),
        (
            ["smoke", "rag-worker:dev", "--timeout", "1e999"],
            "error: argument --timeout: '1e999' is not a number of seconds (more than 0)",
        ),
        (
            ["smoke", "rag-worker:dev", "--timeout", "0"],
            "error: argument --timeout: '0' is not a number of seconds (more than 0)",
        ),
        (
            ["smoke", "rag-worker:dev", "--timeout=-5"],
            "error: argument --timeout: '-5' is not a number of seconds (more than 0)",
        ),
        (
            ["logs", "--tail", "-3"],
            "error: argument --tail: '-3' is not a number of lines (0 or more)",
        ),
        (["run", ""], "error: IMAGE is empty; give an image such as rag-worker:dev"),
        (["smoke", ""], "error: IMAGE is empty; give an image such as rag-worker:dev"),
        (
            ["run", "--dry-run", "--", "--privileged"],
            "error: IMAGE '--privileged' starts with '-': docker would read it as an option; give an "
            "image such as rag-worker:dev",
        ),
        (
            ["smoke", "--", "-v/:/host"],
            "error: IMAGE '-v/:/host' starts with '-': docker would read it as an option; give an "
            "image such as rag-worker:dev",
        ),
        (
            ["run", "Rag-Worker:dev"],
            "error: IMAGE 'Rag-Worker:dev' is not an image reference: "
            "[host[:port]/]lowercase/path[:tag][@sha256:digest], e.g. rag-worker:dev",
        ),
        (["smoke", "rag worker"], "error: IMAGE 'rag worker' is not an image reference"),
        (["smoke", "rag-worker:"], "error: IMAGE 'rag-worker:' is not an image reference"),
        (
            ["run", "rag-worker@sha256:abc"],
            "error: IMAGE 'rag-worker@sha256:abc' is not an image reference",
        ),
    ],
)
def test_bad_subcommand_input_is_one_line_and_exit_2(fp, capsys, argv, message):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err
    assert len(fp.calls) == 0


def test_a_failed_rename_after_the_swap_keeps_the_new_container_and_says_where(fp, local, capsys):
    fp.allow_unregistered(False)
    local(old=("true", 19090))
    fp.register([fp.program(DOCKER), "create", "--name", NEW, "-p", "8080:8080", "rag-worker:dev"])
    fp.register([fp.program(DOCKER), "start", NEW])
    fp.register([fp.program(DOCKER), "rm", "-f", "rag-worker-local"])
    fp.register(
        [fp.program(DOCKER), "rename", NEW, "rag-worker-local"],
        returncode=1,
        stderr="Error response from daemon: Conflict. The container name is in use\n",
    )
    assert cli.main(["run"]) == 1
    assert calls(fp)[-1] == f"rename {NEW} rag-worker-local"  # the running new one is kept
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: rag-worker:dev is running as {NEW}, and renaming it to rag-worker-local failed: "
        "Error response from daemon: Conflict. The container name is in use; rename it with "
        f"docker rename {NEW} rag-worker-local"
    )


# --- shell -------------------------------------------------------------------------------------


def test_shell_dry_run_prints_the_command_and_starts_nothing(fp, capsys):
    from ragbuild.cli import main

    fp.allow_unregistered(False)
    assert main(["shell", "rag-worker:prod", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out == (
        "docker run --rm -i --entrypoint /bin/sh rag-worker:prod -c 'if command -v bash "
        ">/dev/null 2>&1; then exec bash; else exec /bin/sh; fi'\n"
    )


def test_shell_defaults_to_the_dev_image_of_setup_cfg(fp, capsys, tmp_path, monkeypatch):
    from ragbuild.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "setup.cfg").write_text("[ragbuild]\nimage-name = search-worker\n")
    assert main(["shell", "--dry-run"]) == 0
    assert " search-worker:dev -c " in capsys.readouterr().out


@pytest.mark.parametrize("tty, flag", [(True, "-it"), (False, "-i")])
def test_shell_asks_for_a_terminal_only_on_one_and_returns_the_shells_status(fp, tty, flag):
    from ragbuild.run.runner import Runner

    fp.allow_unregistered(False)
    recorder = fp.register(
        [
            fp.program("docker"),
            "run",
            "--rm",
            flag,
            "--entrypoint",
            "/bin/sh",
            "rag-worker:dev",
            "-c",
            local_commands.SHELL_SCRIPT,
        ],
        returncode=3,
    )
    assert local_commands.shell(Runner(log=io.StringIO()), "rag-worker:dev", tty=tty) == 3
    call = recorder.calls[0]
    assert call.kwargs["stdin"] is None  # the shell reads our stdin (piped commands, a terminal)


def test_a_shell_killed_by_a_signal_reports_128_plus_it(fp):
    from ragbuild.run.runner import Runner

    fp.register([fp.program("docker"), fp.any()], returncode=-9)
    assert local_commands.shell(Runner(log=io.StringIO()), "rag-worker:dev", tty=False) == 137


@pytest.mark.parametrize("image", ["Rag-Worker", "", "a b"])
def test_shell_refuses_a_bad_image_in_one_line(fp, capsys, image):
    from ragbuild.cli import main

    fp.allow_unregistered(False)
    assert main(["shell", image]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: IMAGE")


def test_run_local_of_an_image_that_dies_at_once_says_so_and_keeps_the_old(fp, local, capsys):
    """docker start succeeds, the process cannot exec (a CRLF #! line): not 'is running'."""
    local(
        old=("true", 19090),
        new_state=json.dumps({"Status": "exited", "Running": False, "ExitCode": 1}),
    )
    fp.register(
        [fp.program(DOCKER), "create", "--name", NEW, "-p", "8080:8080", "rag-worker:dev"],
        stdout="abc\n",
    )
    fp.register([fp.program(DOCKER), "start", NEW])
    fp.register(
        [fp.program(DOCKER), "inspect", "--format", "{{json .State}}", NEW],
        stdout=json.dumps({"Status": "exited", "Running": False, "ExitCode": 1}),
    )
    fp.register(
        [fp.program(DOCKER), "logs", "--tail", "30", NEW],
        stderr="exec /usr/local/bin/serve: no such file or directory\n",
    )
    fp.register([fp.program(DOCKER), "cp", f"{NEW}:/usr/local/bin/serve", "-"], returncode=1)
    fp.register([fp.program(DOCKER), "rm", "-f", NEW])
    assert cli.main(["run"]) == 1
    err = capsys.readouterr().err
    assert "is running as" not in err
    assert (
        "error: rag-worker:dev stopped at once (exited (exit 1)); /usr/local/bin/serve is not "
        "in the image, or its #! line"
    ) in err
    assert "nothing changed: rag-worker-local is as it was" in err
    assert "exec /usr/local/bin/serve: no such file or directory" in err
    assert "rm -f rag-worker-local" not in calls(fp)  # the old one was never removed
    assert calls(fp)[-1] == f"rm -f {NEW}"
