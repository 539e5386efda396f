"""Day-to-day commands behind make run-local, logs and clean: each a plan of docker calls."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Optional, Sequence

from ragbuild import signals
from ragbuild.errors import CommandFailed, UsageError
from ragbuild.plan import REPOSITORY_LABEL, Command, Kind, Mode
from ragbuild.reference import IMAGE_REF_RE, NAME_MAX, familiar
from ragbuild.runner import Result, Runner

if TYPE_CHECKING:
    from ragbuild.runner import Runner

LOCAL_CONTAINER = "rag-worker-local"
#: What a dry run of ``clean`` takes the tags of ragbuild's builds to be (it lists no images).
DRY_REFS = "RAGBUILD_REFS"


def check_image_ref(ref: str, source: str = "IMAGE") -> str:
    """An image reference docker will take as one (never as an option)."""
    if not ref:
        raise UsageError(f"{source} is empty; give an image such as rag-worker:dev")
    if ref.startswith("-"):
        raise UsageError(f"{source} {ref!r} starts with '-': docker would read it as an option; "
                         "give an image such as rag-worker:dev")
    if not IMAGE_REF_RE.fullmatch(ref) or len(repository_of(ref.split("@")[0])) > NAME_MAX:
        raise UsageError(f"{source} {ref!r} is not an image reference: "
                         "[host[:port]/]lowercase/path[:tag][@sha256:digest], e.g. rag-worker:dev")
    return ref


def inspect_local_command(name: str, port: int) -> Command:
    """Whether ``name`` exists, runs, and which host ports it publishes. A dry run takes it to
    exist, running on another port."""
    return Command(("docker", "container", "inspect", "--format",
                    "{{.State.Running}} {{json .HostConfig.PortBindings}}", name), check=False,
                   kind=Kind.PROBE, assume="true {}",
                   dry_note=f"a real run stops {name} before starting the new one only when it "
                            f"publishes port {port} itself, and starts it again if the new one "
                            "fails")


def published_ports(bindings_json: str) -> set:
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
        made = runner.run(Command(("docker", "create", "--name", temporary, "-p", f"{port}:8080",
                                   image), check=False))
        created = True  # docker create may leave a container even when it fails
        if not made.ok:
            raise CommandFailed(_start_failure(made, port, name, exists, image),
                                returncode=made.returncode)
        if holds_port:
            runner.run(Command(("docker", "stop", name)))
            stopped = True
        started = runner.run(Command(("docker", "start", temporary), check=False))
        if not started.ok:
            raise CommandFailed(_start_failure(started, port, name, exists, image),
                                returncode=started.returncode)
        died = _died_at_once(runner, temporary, image, name, exists)
        if died:  # before the old one goes: the rollback below keeps it
            raise CommandFailed(died)
        if exists:
            runner.run(Command(("docker", "rm", "-f", name), check=False))
        replaced = True  # the new one runs and the old one is gone: no way back, only forward
        renamed = runner.run(Command(("docker", "rename", temporary, name), check=False))
        if not renamed.ok:
            raise CommandFailed(f"{image} is running as {temporary}, and renaming it to {name} "
                                f"failed: {docker_reason(renamed)}; rename it with docker rename "
                                f"{temporary} {name}", returncode=renamed.returncode)
    except BaseException:  # a failure or a signal before the swap: back to how it was
        if replaced:
            raise
        with signals.deferred():  # a second signal waits until the rollback is done
            if created:
                runner.run(Command(("docker", "rm", "-f", temporary), check=False))
            if stopped and not runner.run(Command(("docker", "start", name), check=False)).ok:
                runner.log(f"warning: {name} was stopped to free port {port} and could not be "
                           f"started again: docker start {name}")
        raise
    runner.report(f"{image} is running as {name}: curl http://localhost:{port}/health; "
                  "logs: make logs; stop: docker rm -f " + name)


#: Seconds ``run`` waits after ``docker start`` before it asks whether the container still runs:
#: docker start returns once the process is started; one that cannot exec its command (a CRLF
#: ``#!`` line) or exits at once has stopped by then.
SETTLE = 0.5


def _died_at_once(runner: Runner, container: str, image: str, name: str, exists: bool) -> str:
    """"" while ``container`` runs ``SETTLE`` seconds after its start; else the failure, from
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
        kept = (f"nothing changed: {name} is as it was" if exists
                else "nothing changed: no container was left")
        said = f"; {hint}" if hint else ""
        return (f"{image} stopped at once ({state.describe()}){said}; {kept}\n--- last "
                f"{diagnose.LOG_LINES} log lines of the container ---\n{text or '(no output)'}")

    return runner.check(f"wait {SETTLE:g}s, then ask whether {container} still runs (docker "
                        "inspect; stopped: its state and last log lines say why)", probe, "")


#: What ``shell`` runs in the image: bash when the image has it, else /bin/sh (slim and alpine
#: images). ``--entrypoint`` so an image's ENTRYPOINT does not swallow it.
SHELL_SCRIPT = "if command -v bash >/dev/null 2>&1; then exec bash; else exec /bin/sh; fi"


def shell_command(image: str, *, tty: bool) -> Command:
    """``docker run --rm -i[t] --entrypoint /bin/sh IMAGE -c SHELL_SCRIPT``: the guide's
    ``docker run -it IMAGE /bin/bash``, removed on exit (``--rm``). ``-t`` only when our stdin
    is a terminal: piped commands (``echo 'ls' | ragbuild shell``) run without one, as docker
    refuses ``-t`` when stdin is not a TTY ("the input device is not a TTY")."""
    flags = ("-it",) if tty else ("-i",)
    return Command(("docker", "run", "--rm", *flags, "--entrypoint", "/bin/sh", image,
                    "-c", SHELL_SCRIPT), mode=Mode.INTERACTIVE, check=False)


def shell(runner: "Runner", image: str, *, tty: bool) -> int:
    """Run the shell; its exit status (a signal as 128 + its number, as a shell reports it)."""
    result = runner.run(shell_command(image, tty=tty))
    return 128 - result.returncode if result.returncode < 0 else result.returncode


#: Lines docker adds after the reason: ``docker run``'s "See 'docker run --help'.", ``docker
#: start``'s "Error: failed to start containers: NAME".
DOCKER_TRAILERS = ("See 'docker ", "Error: failed to start containers")


def docker_reason(result: Result) -> str:
    """The one line of a failed docker command's output that says why (the daemon's, on
    stderr), or its exit status when it said nothing."""
    text = result.stderr if result.stderr.strip() else result.stdout  # run -d: stdout is the id
    said = [line.strip() for line in text.splitlines() if line.strip()]
    why = [line for line in said if not line.startswith(DOCKER_TRAILERS)]
    return (why or said or [f"exit {result.returncode}"])[-1]


def _start_failure(result: Result, port: int, name: str, exists: bool, image: str) -> str:
    reason = docker_reason(result)
    kept = (f"nothing changed: {name} is as it was" if exists
            else "nothing changed: no container was left")
    if any(marker in reason.lower() for marker in PORT_TAKEN_MARKERS):
        return (f"port {port} is taken (docker: {reason}); pass --port with a free port, e.g. "
                f"run --port {port + 1 if port < 65535 else port - 1}; {kept}")
    return f"cannot start {image} as {name}: {reason}; {kept}"


def logs(runner: Runner, *, name: str = LOCAL_CONTAINER, follow: bool = False, lines: int = 200) -> None:
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

PRUNE_HINT = f"docker image prune --filter label={REPOSITORY_LABEL}"


def list_images_command() -> Command:
    """Every image carrying the repository label: ragbuild's, and images built FROM them."""
    return Command(("docker", "image", "ls", "--filter", f"label={REPOSITORY_LABEL}",
                    "--quiet", "--no-trunc"), kind=Kind.PROBE, assume="IMAGE_IDS")


def inspect_images_command(ids: Sequence[str]) -> Command:
    """ONE inspect of every listed id (tags and labels); checked by ``_inspect``."""
    return Command(("docker", "image", "inspect", *ids), check=False, kind=Kind.PROBE,
                   assume=json.dumps([{"Id": "IMAGE_ID", "RepoTags": [DRY_REFS],
                                       "Config": {"Labels": {REPOSITORY_LABEL: DRY_REFS}}}]))


def repository_of(ref: str) -> str:
    """``host:5000/a/b:tag`` -> ``host:5000/a/b``: the tag follows the last ':' after the last '/'."""
    name, colon, tag = ref.rpartition(":")
    return name if colon and "/" not in tag else ref


def ragbuild_refs(image: dict) -> list:
    """The tags of ``image`` on the repository its label names: what ragbuild's build put there.
    A fork built FROM a ragbuild image inherits the label but not those tags; a tag the user
    added (``docker tag rag-worker:dev team/x:1``) is on another repository. Both are kept."""
    labels = (image.get("Config") or {}).get("Labels") or {}
    repository = labels.get(REPOSITORY_LABEL)
    if not repository:
        return []
    want = familiar(repository)
    return [ref for ref in image.get("RepoTags") or [] if familiar(repository_of(ref)) == want]


def clean(runner: Runner, *, name: str = LOCAL_CONTAINER,
          repositories: Optional[Sequence[str]] = None) -> list:
    """Remove the tags ragbuild's builds of this project put on images (label
    org.ragbuild.repository naming one of ``repositories``: ``cleanup.project_repositories``;
    None: every labelled image, ``clean --all``), and only those: docker deletes an image once
    its last tag is gone, so an image that also carries a tag of its own (a fork, a user's
    ``docker tag``) survives under that tag. An image a container uses (running or stopped)
    keeps every tag, and is named with its containers; the local run container is removed only
    when it runs an image this deletes. Returns the refs removed."""
    from ragbuild import cleanup

    listed = runner.run(list_images_command())
    ids = list(dict.fromkeys(listed.stdout.split()))
    images = _inspect(runner, ids) if ids else []

    def label(image: dict) -> Optional[str]:
        return ((image.get("Config") or {}).get("Labels") or {}).get(REPOSITORY_LABEL)

    ours = [image for image in images
            if label(image) == DRY_REFS or cleanup.in_scope(label(image), repositories)]
    others = sorted({familiar(label(image) or "") for image in images
                     if image not in ours and image.get("RepoTags")})
    if others:
        assert repositories is not None
        runner.log(f"kept the images of other repositories ({', '.join(others)}): not this "
                   f"project's ({', '.join(repositories)}); clean --all removes every ragbuild "
                   "build's tags")
    images = ours
    removing = {image.get("Id"): ragbuild_refs(image) for image in images}
    tags = {image.get("Id"): image.get("RepoTags") or [] for image in images}
    untagged = sum(1 for image in images if not image.get("RepoTags"))
    found = cleanup.containers(runner) if any(removing.values()) else []
    local = next((c for c in found if c.name == name), None)
    using = cleanup.users(found, skip=name)
    if local is not None and local.image in removing \
            and len(removing[local.image]) < len(tags[local.image]):
        using.setdefault(local.image, []).append(local)  # its image survives: it is a user
    in_use = set()
    for image_id, image_refs in list(removing.items()):
        if image_refs and image_id in using:
            in_use.add(image_id)
            runner.log(f"kept {', '.join(image_refs)}: image {str(image_id)[:19]} is used by "
                       f"{cleanup.describe_users(using[image_id])} (docker would untag it "
                       "while another tag is left; remove the container, then clean again)")
            removing[image_id] = []
    refs = [ref for image_refs in removing.values() for ref in image_refs]
    if not refs:
        kept = len(images) - untagged - len(in_use)
        why = f"; {kept} labelled image(s) carry only tags of their own (kept)" if kept else ""
        runner.log(f"nothing to clean: no image has a tag a ragbuild build made (the repository "
                   f"in its {REPOSITORY_LABEL} label){why}")
        _hint_untagged(runner, untagged)
        return []
    deleted = {image_id for image_id, image_refs in removing.items()
               if image_refs and len(image_refs) == len(tags[image_id])}
    local_image = local.image if local is not None else ""
    # the local container goes only once every other tag went: a refusal keeps it running
    last = removing[local_image] if local_image in deleted else []
    first = [ref for ref in refs if ref not in last]
    gone = _remove_tags(runner, first, keeping=name if last else None) if first else []
    if last:
        runner.run(Command(("docker", "rm", "-f", name), check=False))  # gone already: fine
        gone += _remove_tags(runner, last)
    kept = sum(1 for image in images if image.get("RepoTags") and image.get("Id") not in deleted
               and image.get("Id") not in in_use)
    also = f"; {kept} labelled image(s) keep tags of their own" if kept else ""
    also += f"; {len(in_use)} kept in use by containers" if in_use else ""
    already = f" ({len(gone)} were gone already)" if gone else ""
    runner.report(f"removed {len(refs) - len(gone)} tag(s) of ragbuild builds{already}: "
                  f"{len(deleted)} image(s) deleted{also}")
    _hint_untagged(runner, untagged)
    return refs


def _remove_tags(runner: Runner, refs: Sequence[str],
                 keeping: Optional[Sequence[str]] = None) -> list:
    """``docker image rm`` of ``refs`` (no --force); returns docker's lines for tags removed
    since the listing (a concurrent clean, a user: gone, as clean wants). Any other refusal
    raises, saying that the container ``keeping`` was left as it was."""
    remove = Command(("docker", "image", "rm", *refs), check=False)
    result = runner.run(remove)
    said = [line for line in result.stderr.splitlines() if line.strip()]
    gone = [line for line in said if "No such image:" in line]
    refused = [line for line in said if line not in gone]
    if not result.ok and (refused or not gone):
        detail = "\n".join(refused[-15:]) or f"exit {result.returncode}"
        kept = f"; container {keeping} was left running" if keeping else ""
        raise CommandFailed(f"`{remove.display()}` failed (exit {result.returncode}):\n{detail}\n"
                            "(an image a container uses is kept: remove that container with "
                            f"docker rm -f, then run clean again{kept})",
                            returncode=result.returncode)
    return gone


def _inspect(runner: Runner, ids: Sequence[str]) -> list:
    """ONE ``docker image inspect`` of every listed id. An image removed since the listing is
    only missing from the answer (docker prints the others, then exits 1)."""
    result = runner.run(inspect_images_command(ids))
    try:
        images = json.loads(result.stdout or "[]")
    except ValueError:
        images = None
    if not isinstance(images, list) or (not result.ok and "No such" not in result.stderr):
        raise CommandFailed(f"`{inspect_images_command(['...']).display()}` failed "
                            f"(exit {result.returncode}): {result.stderr.strip()[:500]}",
                            returncode=result.returncode)
    return images


def _hint_untagged(runner: Runner, count: int) -> None:
    if count:
        runner.log(f"{count} untagged image(s) with the label left (earlier builds' leftovers, "
                   f"or a fork's); to remove them: {PRUNE_HINT}")
