"""Day-to-day commands behind make run-local, logs and clean: each a plan of docker calls."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Optional

from ragbuild.run import signals
from ragbuild.commands.args import ArgumentParser, lines, port, sub_parser
from ragbuild.errors import EXIT_OK
from ragbuild.smoke import docker_reason
from ragbuild.errors import CommandFailed
from ragbuild.run.command import Command, Kind, Mode
from ragbuild.reference import check_image_ref
from ragbuild.run.command import Result
from ragbuild.run.runner import Runner

if TYPE_CHECKING:
    from ragbuild.run.runner import Runner

LOCAL_CONTAINER = "rag-worker-local"


def inspect_local_command(name: str, port: int) -> Command:
    """Whether ``name`` exists, runs, and which host ports it publishes. A dry run takes it to
    exist, running on another port."""
    return Command(
        (
            "docker",
            "container",
            "inspect",
            "--format",
            "{{.State.Running}} {{json .HostConfig.PortBindings}}",
            name,
        ),
        check=False,
        kind=Kind.PROBE,
        assume="true {}",
        dry_note=f"a real run stops {name} before starting the new one only when it "
        f"publishes port {port} itself, and starts it again if the new one "
        "fails",
    )


def published_ports(bindings_json: str) -> set[int]:
    """``{"8080/tcp":[{"HostIp":"","HostPort":"19090"}]}`` -> ``{19090}``."""
    try:
        bindings = json.loads(bindings_json or "null") or {}
    except ValueError:
        return set()
    ports = set()
    for entries in bindings.values() if isinstance(bindings, dict) else ():
        for entry in entries or ():
            port = str((entry or {}).get("HostPort") or "")
            if port.isdigit():
                ports.add(int(port))
    return ports


#: How docker says a published port is in use: by another container ("port is already
#: allocated") or by another process ("bind: address already in use").
PORT_TAKEN_MARKERS = ("port is already allocated", "address already in use")


def temporary_name(name: str) -> str:
    import secrets

    return f"{name}-new-{secrets.token_hex(4)}"


def run_local(runner: Runner, image: str, *, port: int, name: str = LOCAL_CONTAINER) -> None:
    """Replace the local container with a fresh one of IMAGE on PORT (detached), or change
    nothing: the new container is created under a temporary name and started before the old one
    is removed, so a failed start (a taken port, a missing image) leaves the old one serving and
    no container behind. Only when the old one holds PORT itself is it stopped first, and started
    again if the new one fails. A signal midway rolls back the same way."""
    temporary = temporary_name(name)
    old = runner.run(inspect_local_command(name, port))
    running, _, bindings = old.stdout.strip().partition(" ")
    exists = old.ok
    holds_port = exists and running == "true" and port in published_ports(bindings)
    stopped = created = replaced = False
    try:
        made = runner.run(
            Command(
                ("docker", "create", "--name", temporary, "-p", f"{port}:8080", image), check=False
            )
        )
        created = True  # docker create may leave a container even when it fails
        if not made.ok:
            raise CommandFailed(
                _start_failure(made, port, name, exists, image), returncode=made.returncode
            )
        if holds_port:
            runner.run(Command(("docker", "stop", name)))
            stopped = True
        started = runner.run(Command(("docker", "start", temporary), check=False))
        if not started.ok:
            raise CommandFailed(
                _start_failure(started, port, name, exists, image), returncode=started.returncode
            )
        died = _died_at_once(runner, temporary, image, name, exists)
        if died:  # before the old one goes: the rollback below keeps it
            raise CommandFailed(died)
        if exists:
            runner.run(Command(("docker", "rm", "-f", name), check=False))
        replaced = True  # the new one runs and the old one is gone: no way back, only forward
        renamed = runner.run(Command(("docker", "rename", temporary, name), check=False))
        if not renamed.ok:
            raise CommandFailed(
                f"{image} is running as {temporary}, and renaming it to {name} "
                f"failed: {docker_reason(renamed)}; rename it with docker rename "
                f"{temporary} {name}",
                returncode=renamed.returncode,
            )
    except BaseException:  # a failure or a signal before the swap: back to how it was
        if replaced:
            raise
        with signals.deferred():  # a second signal waits until the rollback is done
            if created:
                runner.run(Command(("docker", "rm", "-f", temporary), check=False))
            if stopped and not runner.run(Command(("docker", "start", name), check=False)).ok:
                runner.log(
                    f"warning: {name} was stopped to free port {port} and could not be "
                    f"started again: docker start {name}"
                )
        raise
    runner.report(
        f"{image} is running as {name}: curl http://localhost:{port}/health; "
        "logs: make logs; stop: docker rm -f " + name
    )


#: Seconds ``run`` waits after ``docker start`` before it asks whether the container still runs:
#: docker start returns once the process is started; one that cannot exec its command (a CRLF
#: ``#!`` line) or exits at once has stopped by then.
SETTLE = 0.5


def _died_at_once(runner: Runner, container: str, image: str, name: str, exists: bool) -> str:
    """ "" while ``container`` runs ``SETTLE`` seconds after its start; else the failure, from
    what it said (``diagnose.why_stopped``: exit code, the usual cause, its last log lines),
    read before the rollback removes it."""
    import time

    from ragbuild import diagnose

    def probe() -> str:
        time.sleep(SETTLE)
        state = diagnose.parse_state(runner.run(diagnose.state_command(container)).stdout)
        if state.running or not state.status:
            return ""
        state, hint, text = diagnose.why_stopped(runner, container)
        kept = (
            f"nothing changed: {name} is as it was"
            if exists
            else "nothing changed: no container was left"
        )
        said = f"; {hint}" if hint else ""
        return (
            f"{image} stopped at once ({state.describe()}){said}; {kept}\n--- last "
            f"{diagnose.LOG_LINES} log lines of the container ---\n{text or '(no output)'}"
        )

    return runner.check(
        f"wait {SETTLE:g}s, then ask whether {container} still runs (docker "
        "inspect; stopped: its state and last log lines say why)",
        probe,
        "",
    )


#: What ``shell`` runs in the image: bash when the image has it, else /bin/sh (slim and alpine
#: images). ``--entrypoint`` so an image's ENTRYPOINT does not swallow it.
SHELL_SCRIPT = "if command -v bash >/dev/null 2>&1; then exec bash; else exec /bin/sh; fi"


def shell_command(image: str, *, tty: bool) -> Command:
    """``docker run --rm -i[t] --entrypoint /bin/sh IMAGE -c SHELL_SCRIPT``: the guide's
    ``docker run -it IMAGE /bin/bash``, removed on exit (``--rm``). ``-t`` only when our stdin
    is a terminal: piped commands (``echo 'ls' | ragbuild shell``) run without one, as docker
    refuses ``-t`` when stdin is not a TTY ("the input device is not a TTY")."""
    flags = ("-it",) if tty else ("-i",)
    return Command(
        ("docker", "run", "--rm", *flags, "--entrypoint", "/bin/sh", image, "-c", SHELL_SCRIPT),
        mode=Mode.INTERACTIVE,
        check=False,
    )


def shell(runner: Runner, image: str, *, tty: bool) -> int:
    """Run the shell; its exit status (a signal as 128 + its number, as a shell reports it)."""
    result = runner.run(shell_command(image, tty=tty))
    return 128 - result.returncode if result.returncode < 0 else result.returncode


def _start_failure(result: Result, port: int, name: str, exists: bool, image: str) -> str:
    reason = docker_reason(result)
    kept = (
        f"nothing changed: {name} is as it was"
        if exists
        else "nothing changed: no container was left"
    )
    if any(marker in reason.lower() for marker in PORT_TAKEN_MARKERS):
        return (
            f"port {port} is taken (docker: {reason}); pass --port with a free port, e.g. "
            f"run --port {port + 1 if port < 65535 else port - 1}; {kept}"
        )
    return f"cannot start {image} as {name}: {reason}; {kept}"


def logs(
    runner: Runner, *, name: str = LOCAL_CONTAINER, follow: bool = False, lines: int = 200
) -> None:
    """``docker logs --tail LINES [--follow] NAME``. Following ends the way ``tail -f`` and
    ``docker logs -f`` are ended, by Ctrl-C: that SIGINT (ours, or docker's own exit on it:
    130) is the normal end, exit 0 with nothing said; SIGTERM and SIGHUP still exit 128 + N."""
    import signal

    from ragbuild.errors import Interrupted, signal_of

    argv = ["docker", "logs", "--tail", str(lines)]
    if follow:
        argv.append("--follow")
    try:
        runner.run(Command(tuple(argv + [name]), mode=Mode.STREAM))
    except (Interrupted, KeyboardInterrupt) as stop:
        if not (follow and signal_of(stop) == signal.SIGINT):
            raise
    except CommandFailed as failed:
        if not (follow and failed.returncode in (128 + signal.SIGINT, -signal.SIGINT)):
            raise


# --- clean -------------------------------------------------------------------------------------


def run_parser() -> ArgumentParser:
    parser = sub_parser(
        "run",
        "Run the image locally in the background as container "
        f"{LOCAL_CONTAINER} (replacing an earlier one).",
    )
    parser.add_argument("image", nargs="?", help="image (default: <image-name>:dev)")
    parser.add_argument(
        "--port", type=port, default=8080, help="host port, 1-65535 (default: %(default)s)"
    )
    return parser


def image_or_dev(image: Optional[str]) -> str:
    """IMAGE as given (checked: an image reference, never an option), else <image-name>:dev."""
    from ragbuild.config import load_config

    if image is not None:
        return check_image_ref(image)
    return f"{load_config().image_name}:dev"


def cmd_run(argv: list[str]) -> int:
    from ragbuild.run.dry import make_runner

    ns = run_parser().parse_args(argv)
    run_local(make_runner(ns.dry_run), image_or_dev(ns.image), port=ns.port)
    return EXIT_OK


def logs_parser() -> ArgumentParser:
    parser = sub_parser("logs", f"Show the logs of the local container {LOCAL_CONTAINER}.")
    parser.add_argument("-f", "--follow", action="store_true", help="keep following the logs")
    parser.add_argument(
        "--tail", type=lines, default=200, help="lines to show, 0 or more (default: %(default)s)"
    )
    return parser


def cmd_logs(argv: list[str]) -> int:
    from ragbuild.run.dry import make_runner

    ns = logs_parser().parse_args(argv)
    logs(make_runner(ns.dry_run), follow=ns.follow, lines=ns.tail)
    return EXIT_OK


def shell_parser() -> ArgumentParser:
    parser = sub_parser(
        "shell",
        "An interactive shell in IMAGE (bash, or /bin/sh when the image "
        "has no bash), as the guide's `docker run -it IMAGE /bin/bash`; "
        "the container is removed on exit. Commands piped in run without "
        "a terminal. Exit status: the shell's.",
    )
    parser.add_argument("image", nargs="?", help="image (default: <image-name>:dev)")
    return parser


def cmd_shell(argv: list[str]) -> int:
    from ragbuild.run.dry import make_runner

    ns = shell_parser().parse_args(argv)
    return shell(
        make_runner(ns.dry_run), image_or_dev(ns.image), tty=bool(sys.stdin and sys.stdin.isatty())
    )
