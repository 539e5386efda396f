"""What ``clean`` may touch: this project's images, and not those a container uses.

This project's images are those whose ``org.ragbuild.repository`` label (``plan.base``: the
registry URI of a push, else the image name) is a repository a build here would use: the image
name (``--image-name``, else setup.cfg's ``image-name``) and the registry (``--registry``, else
``ECR_REGISTRY_URI``), as a build takes them (``project_repositories``). ``--all`` widens it to
every labelled image.

An image a container uses (running or stopped, ``docker container ls --all``) keeps every tag:
docker's ``image rm`` untags such an image as long as another tag is left and refuses only its
last tag ("conflict: unable to remove repository reference ... container ... is using its
referenced image": https://docs.docker.com/reference/cli/docker/image/rm/), so removing its tags
one by one would leave it with only part of them. The one exception is the local ``run``
container, which ``clean`` removes itself when it runs an image whose every tag goes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional
from collections.abc import Sequence

from ragbuild.errors import CommandFailed
from ragbuild.run.command import Command, Kind
from ragbuild.reference import familiar
from ragbuild.run.runner import Runner


@dataclass(frozen=True)
class Container:
    id: str
    name: str
    image: str  # the image ID it was created from
    status: str  # running, exited, created, ...


def project_repositories(image_name: str, registry_uri: Optional[str]) -> tuple[str, ...]:
    """The label values of this project's builds: the image name, and the registry URI when a
    build here pushes (docker's familiar form, as ``image ls`` shows them)."""
    found = [familiar(image_name)]
    if registry_uri:
        found.append(familiar(registry_uri))
    return tuple(dict.fromkeys(found))


def in_scope(label: Optional[str], repositories: Optional[Sequence[str]]) -> bool:
    """Whether an image labelled ``label`` is this project's (``repositories`` None: --all)."""
    if not label:
        return False
    return repositories is None or familiar(label) in repositories


def list_containers_command() -> Command:
    return Command(
        ("docker", "container", "ls", "--all", "--quiet", "--no-trunc"),
        check=False,
        kind=Kind.PROBE,
        assume="",
        dry_note="a real run keeps every tag of an image a container uses (running or "
        "stopped), the local run container excepted",
    )


def inspect_containers_command(ids: Sequence[str]) -> Command:
    return Command(
        (
            "docker",
            "container",
            "inspect",
            "--format",
            "{{.Id}} {{.Image}} {{.State.Status}} {{.Name}}",
            *ids,
        ),
        check=False,
        kind=Kind.PROBE,
    )


def containers(runner: Runner) -> list[Container]:
    """Every container of the daemon, running or stopped, with the image ID it uses. A
    container removed between the listing and the inspect is left out (docker prints the
    others, then exits 1)."""
    listed = runner.run(list_containers_command())
    if not listed.ok:
        raise CommandFailed(
            f"`{list_containers_command().display()}` failed (exit "
            f"{listed.returncode}): {listed.stderr.strip()[:500]}",
            returncode=listed.returncode,
        )
    ids = list(dict.fromkeys(listed.stdout.split()))
    if not ids:
        return []
    result = runner.run(inspect_containers_command(ids))
    if not result.ok and "No such" not in result.stderr:
        raise CommandFailed(
            f"`{inspect_containers_command(['...']).display()}` failed (exit "
            f"{result.returncode}): {result.stderr.strip()[:500]}",
            returncode=result.returncode,
        )
    found = []
    for line in result.stdout.splitlines():
        parts = line.split(" ", 3)
        if len(parts) == 4:
            found.append(Container(parts[0], parts[3].lstrip("/"), parts[1], parts[2]))
    return found


def users(found: Sequence[Container], skip: str = "") -> dict[str, list[Container]]:
    """image ID -> the containers using it (``skip``: the local run container's name)."""
    using: dict[str, list[Container]] = {}
    for container in found:
        if container.name != skip:
            using.setdefault(container.image, []).append(container)
    return using


def describe_users(using: Sequence[Container]) -> str:
    """``container foo (running), container bar (exited)``."""
    return ", ".join(f"container {c.name} ({c.status})" for c in using)
