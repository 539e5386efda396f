"""How the image is built: a buildx builder, target platforms and the build cache (the daemon or
context it is built on: docker_config.py). Pure: values in, validated values and messages out.

The plain ``docker build`` (BuildKit built into the daemon, as Debian's docker 20.10) does one
platform, ``--pull``, ``--cache-from <image>`` and an inline cache (the
``BUILDKIT_INLINE_CACHE=1`` build arg). Everything else needs ``docker buildx build``:

* ``--builder NAME`` (``docker build --builder`` exists only where ``docker build`` is buildx,
  docker 23+; ``docker buildx build --builder`` works on every client that has the plugin);
* more than one ``--platform``: the result is an image index, which the classic image store
  cannot load, so the build pushes it itself (``--push``) instead of ``--load``;
* ``--cache-to`` other than ``type=inline``, and ``--cache-from`` other than a registry ref
  (``type=local``, ``type=gha``, ...).

A ``docker buildx build`` of one platform gets ``--load``, so the image lands in the daemon's
store as with ``docker build`` and the summary, smoke test and push work unchanged; one that
pushes (``plan.build_pushes``: the daemon's own builder, ``DockerTarget.own_builder``) gets
``--push``, which with the docker driver also stores the image in the daemon, tagged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from ragbuild.errors import UsageError
from ragbuild.reference import IMAGE_REF_RE
from ragbuild.run.command import Command, Kind

#: os/arch[/variant], as docker spells platforms: linux/amd64, linux/arm64, linux/arm/v7.
PLATFORM_RE = re.compile(r"[a-z0-9]+/[a-z0-9_]+(?:/[a-z0-9]+)?")
#: buildx builder names (``docker buildx create --name``).
BUILDER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
CACHE_FROM_TYPES = ("registry", "local", "gha", "s3", "azblob")
CACHE_TO_TYPES = ("inline",) + CACHE_FROM_TYPES
#: The attribute each cache type cannot do without, per direction.
_REQUIRED = {
    ("registry", "--cache-from"): "ref",
    ("registry", "--cache-to"): "ref",
    ("local", "--cache-from"): "src",
    ("local", "--cache-to"): "dest",
}

BUILDX_HINT = (
    "install the buildx plugin (docker-buildx-plugin from Docker's packages, or "
    "docker-buildx on Debian/Ubuntu), or set DOCKER to a docker client that has it"
)
#: Shown wherever a multi-platform build is planned.
NOT_FOR_SAGEMAKER = (
    "SageMaker runs a single-platform image, not an index: for SageMaker build "
    "one platform (--platform linux/amd64)"
)


@dataclass(frozen=True)
class Cache:
    """One ``--cache-from`` / ``--cache-to`` value: its buildx type and the value as given."""

    type: str
    raw: str
    ref: Optional[str] = None  # the image ref of a registry cache (all plain docker build takes)


def parse_platforms(raw: str) -> tuple[str, ...]:
    """``linux/amd64,linux/arm64`` -> ("linux/amd64", "linux/arm64"); duplicates once."""
    items = [item.strip() for item in raw.split(",")]
    if not raw.strip() or any(not item for item in items):
        raise UsageError(
            f"--platform {raw!r} has an empty entry; give os/arch[,os/arch...], "
            "e.g. linux/amd64 or linux/amd64,linux/arm64"
        )
    for item in items:
        if not PLATFORM_RE.fullmatch(item):
            raise UsageError(
                f"--platform {item!r} is not os/arch[/variant] in lowercase, e.g. "
                "linux/amd64, linux/arm64, linux/arm/v7"
            )
    return tuple(dict.fromkeys(items))


def check_builder(name: str) -> str:
    if not BUILDER_RE.fullmatch(name):
        raise UsageError(
            f"--builder {name!r} is not a buildx builder name (letters, digits, "
            "'_', '.', '-'); `docker buildx ls` lists them"
        )
    return name


def parse_cache(raw: str, flag: str) -> Cache:
    """A buildx cache spec (``type=registry,ref=host/repo:cache,mode=max``), or a bare image
    ref, which buildx and docker read as a registry cache."""
    types = CACHE_FROM_TYPES if flag == "--cache-from" else CACHE_TO_TYPES
    example = "type=registry,ref=<registry>/<repository>:buildcache" + (
        ",mode=max" if flag == "--cache-to" else ""
    )
    if not raw:
        raise UsageError(f"{flag} is empty; give e.g. {example}")
    if "\n" in raw or "\r" in raw:
        raise UsageError(f"{flag} {raw!r} has a line break; give e.g. {example}")
    if "=" not in raw:
        _check_ref(raw, flag, raw)
        return Cache("registry", raw, ref=raw)
    attrs = {}
    for part in raw.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{flag} {raw!r}: {part!r} is not key=value; give e.g. {example}")
        attrs[key.strip().lower()] = value.strip()
    kind = attrs.get("type") or ("registry" if "ref" in attrs else "")
    if kind not in types:
        inline = (
            " (type=inline is written with --cache-to; read it back with --cache-from <image>)"
            if kind == "inline"
            else ""
        )
        raise UsageError(f"{flag} {raw!r}: type must be one of {', '.join(types)}{inline}")
    needed = _REQUIRED.get((kind, flag))
    if needed and not attrs.get(needed):
        raise UsageError(f"{flag} {raw!r}: type={kind} needs {needed}=..., e.g. {example}")
    ref = attrs.get("ref") if kind == "registry" else None
    if ref is not None:
        _check_ref(ref, flag, raw)
    return Cache(kind, raw, ref=ref)


def _check_ref(ref: str, flag: str, raw: str) -> None:
    if not IMAGE_REF_RE.fullmatch(ref):
        raise UsageError(
            f"{flag} {raw!r}: {ref!r} is not an image reference like "
            "registry.example.com/rag-worker:buildcache"
        )


def buildx_reasons(
    *,
    builder: Optional[str],
    platforms: tuple[str, ...],
    cache_from: tuple[Cache, ...],
    cache_to: tuple[Cache, ...],
) -> tuple[str, ...]:
    """Why this build needs ``docker buildx build`` (empty: plain ``docker build`` does)."""
    reasons = []
    if builder:
        reasons.append(f"--builder {builder}")
    if len(platforms) > 1:
        reasons.append(f"--platform {','.join(platforms)}")
    reasons += [f"--cache-from {c.raw}" for c in cache_from if c.type != "registry"]
    reasons += [f"--cache-to {c.raw}" for c in cache_to if c.type != "inline"]
    return tuple(reasons)


#: What ``docker info --format '{{json .DriverStatus}}'`` shows for the containerd image store.
CONTAINERD_SNAPSHOTTER = "io.containerd.snapshotter"


def builder_driver(inspect_stdout: str) -> Optional[str]:
    """The ``Driver:`` of ``docker buildx inspect`` (docker, docker-container, kubernetes,
    remote), None when the output has none."""
    match = re.search(r"^Driver:\s*(\S+)", inspect_stdout, re.M)
    return match[1] if match else None


def docker_driver_needs(platforms: tuple[str, ...], cache_to: tuple[Cache, ...]) -> tuple[str, ...]:
    """What in this build the docker driver can do only on the containerd image store: an index
    of several platforms, a cache export other than inline (buildx: "Multi-platform build is not
    supported for the docker driver", "Cache export is not supported for the docker driver")."""
    needs = []
    if len(platforms) > 1:
        needs.append(f"--platform {','.join(platforms)} builds an image index")
    needs += [f"--cache-to {c.raw} exports a build cache" for c in cache_to if c.type != "inline"]
    return tuple(needs)


def docker_driver_problem(
    needs: tuple[str, ...], builder: Optional[str], driver: Optional[str], driver_status: str
) -> Optional[str]:
    """Why this builder cannot do ``needs`` (``docker_driver_needs``; None: it can). The docker
    driver can only with the containerd image store (``docker info``'s DriverStatus names the
    ``io.containerd.snapshotter``); buildx says the same at the build, after the login
    (https://docs.docker.com/go/build-multi-platform/, https://docs.docker.com/go/build-cache-backends/)."""
    if not needs or driver != "docker" or CONTAINERD_SNAPSHOTTER in driver_status:
        return None
    name = f"builder {builder!r}" if builder else "the selected buildx builder"
    return (
        f"{' and '.join(needs)}, and {name} uses the docker driver on an engine with the "
        "classic image store, which cannot: turn on the containerd image store (daemon.json "
        '{"features": {"containerd-snapshotter": true}}), or build on an engine that '
        "has it (--builder <its docker context>)"
    )


def buildx_version_command(reasons: tuple[str, ...] = ()) -> Command:
    """Whether the client has buildx, asked before a build that needs it (a dry run prints it:
    it starts no docker)."""
    return Command(
        ("docker", "buildx", "version"),
        check=False,
        kind=Kind.PROBE,
        dry_note=f"a real run stops here when `docker buildx version` fails: this "
        f"build needs docker buildx (for {'; '.join(reasons)})",
    )


def builder_inspect_command(builder: Optional[str], needs: tuple[str, ...] = ()) -> Command:
    """The builder's driver, asked before a build that needs more than the docker driver on the
    classic image store can do (docker_driver_needs, builder_driver)."""
    return Command(
        ("docker", "buildx", "inspect", *((builder,) if builder else ())),
        check=False,
        kind=Kind.PROBE,
        dry_note=f"a real run stops here when the builder cannot do this build "
        f"({'; '.join(needs)}): the docker driver needs the containerd image "
        "store for it",
    )


def driver_status_command() -> Command:
    """The engine's image store, asked when the builder uses the docker driver."""
    return Command(
        ("docker", "info", "--format", "{{json .DriverStatus}}"), check=False, kind=Kind.PROBE
    )
