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

from dataclasses import dataclass, field
from typing import Any, Optional
from collections.abc import Mapping, Sequence

from ragbuild.errors import CommandFailed
from ragbuild.run.command import Command, Kind
from ragbuild.plan import REPOSITORY_LABEL
from ragbuild.reference import familiar, repository_of
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


def ragbuild_refs(image: Mapping[str, Any]) -> list[str]:
    """The tags of ``image`` (``docker image inspect``'s object) on the repository its label
    names: what ragbuild's build put there. A fork built FROM a ragbuild image inherits the
    label but not those tags; a tag the user added (``docker tag rag-worker:dev team/x:1``)
    is on another repository. Both are kept."""
    labels = (image.get("Config") or {}).get("Labels") or {}
    repository = labels.get(REPOSITORY_LABEL)
    if not repository:
        return []
    want = familiar(repository)
    return [ref for ref in image.get("RepoTags") or [] if familiar(repository_of(ref)) == want]


@dataclass(frozen=True)
class Removal:
    """What ``clean`` does to the images in scope (``plan_removal``), before it does it."""

    #: image ID -> the tags ``clean`` removes ([] for an image it keeps whole)
    removing: Mapping[str, list[str]] = field(default_factory=dict)
    #: image ID -> (its ragbuild tags, kept; the containers that use it)
    in_use: Mapping[str, tuple[list[str], list[Container]]] = field(default_factory=dict)
    #: the images docker deletes: every tag of theirs goes, and no image names it its parent
    deleted: frozenset[str] = frozenset()
    #: the images whose every tag goes that docker keeps, untagged: the parent of another
    #: image (``docker commit``, the classic builder), which it does not delete
    parents: frozenset[str] = frozenset()
    #: the local run container, when it runs an image whose every tag goes (clean removes it
    #: first: docker refuses the last tag of an image a container uses)
    local: Optional[Container] = None

    def refs(self) -> list[str]:
        return [ref for refs in self.removing.values() for ref in refs]


def plan_removal(
    images: Sequence[Mapping[str, Any]],
    found: Sequence[Container],
    local_name: str,
    others: Sequence[Mapping[str, Any]] = (),
) -> Removal:
    """Which tags of ``images`` (this project's, inspected) ``clean`` removes, given every
    container of the daemon (``found``): the ragbuild tags (``ragbuild_refs``) of each
    image no container uses. An image a container uses (running or stopped) keeps every tag
    (docker's ``image rm`` would untag it while another tag is left and refuse its last,
    leaving part of its tags removed); the local run container ``local_name`` counts as a
    user only when its image keeps a tag. An image whose every tag goes is deleted by docker
    (https://docs.docker.com/reference/cli/docker/image/rm/), unless another image of
    ``images`` names it its ``Parent``: then docker untags it and keeps it, without a word
    (moby daemon/images/image_delete.go: a child is a soft conflict, ignored once a tag was
    removed). ``others``: the daemon's other images (inspected), whose ``Parent`` counts too:
    an image built FROM one of this project's with the classic builder inherits its label, so
    the label's listing holds it even where the label now names another repository."""
    removing: dict[str, list[str]] = {
        str(image.get("Id")): ragbuild_refs(image) for image in images
    }
    tags = {str(image.get("Id")): image.get("RepoTags") or [] for image in images}
    local = next((c for c in found if c.name == local_name), None)
    using = users(found, skip=local_name)
    if (
        local is not None
        and local.image in removing
        and len(removing[local.image]) < len(tags[local.image])
    ):
        using.setdefault(local.image, []).append(local)  # its image survives: it is a user
    in_use: dict[str, tuple[list[str], list[Container]]] = {}
    for image_id, image_refs in list(removing.items()):
        if image_refs and image_id in using:
            in_use[image_id] = (image_refs, using[image_id])
            removing[image_id] = []
    untagged = frozenset(
        image_id
        for image_id, image_refs in removing.items()
        if image_refs and len(image_refs) == len(tags[image_id])
    )
    parents = frozenset(
        str(image.get("Parent")) for image in (*images, *others) if image.get("Parent")
    )
    runs_untagged = local is not None and local.image in untagged
    return Removal(
        removing, in_use, untagged - parents, untagged & parents, local if runs_untagged else None
    )
