"""A registry's manifests over a ``registry.Session``: the read-back after a push, what each tag
names (``read_manifest``, ``find_manifest``; a ``Manifest`` says whether it names the image that
was built: ``verify.verify``), and for promote a manifest's exact bytes read and written under
another tag (``get_raw``, ``put_raw``, the config blob), as the distribution API serves them
(https://distribution.github.io/distribution/spec/api/)."""

from __future__ import annotations

import hashlib
import http.client
import json
from dataclasses import dataclass, field
from email.message import Message
from typing import Any, Optional
from collections.abc import Sequence

from ragbuild.registry import Answer, Refused, Session, network_reason
from ragbuild.run.runner import tail

#: The manifest media types (https://distribution.github.io/distribution/spec/manifest-v2-2/,
#: https://github.com/opencontainers/image-spec/blob/main/media-types.md).
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
INDEX_TYPES = (DOCKER_MANIFEST_LIST, OCI_INDEX)
#: What the read-back accepts, as docker's client asks: a registry serves a manifest only in a
#: type the request accepts (else it may convert it, or answer 404).
MANIFEST_TYPES = (DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_MANIFEST, OCI_INDEX)


@dataclass(frozen=True)
class Manifest:
    """What a tag names on the registry: the digest (sha256 of the bytes served), the media
    type, and for an image index the platforms of its images ("os/arch[/variant]",
    attestations' ``unknown/unknown`` left out)."""

    digest: str
    media_type: str
    platforms: tuple[str, ...] = ()
    #: an image manifest's config digest (``config.digest``): what the classic image store calls
    #: the image's ID; "" for an index or a manifest without one
    config: str = ""

    def names_image(self, image_id: str) -> bool:
        """Whether this is the manifest of the local image ``image_id``: the classic store's ID
        is the config's digest, the containerd store's the manifest's own digest
        (https://docs.docker.com/engine/storage/containerd/)."""
        return bool(image_id) and image_id in (self.config, self.digest)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES


class ReadFailed(Exception):
    """The registry did not give the manifest; the message says why (HTTP status or network
    error, worded so ``push.classify_failure`` tells a transient one). ``status``: the HTTP
    status the registry answered with, None when none came."""

    def __init__(self, message: str, status: Optional[int] = None):
        super().__init__(message)
        self.status = status


def manifest_url(session: Session, tag: str) -> str:
    return session.base + _path(session, "manifests", tag)


def read_manifest(session: Session, tag: str) -> Manifest:
    """``GET /v2/<name>/manifests/<tag>`` accepting ``MANIFEST_TYPES``, with a ``pull`` token
    (https://distribution.github.io/distribution/spec/api/#pulling-an-image-manifest, OCI
    distribution-spec "Pulling manifests"). The digest is the sha256 of the body; a
    ``Docker-Content-Digest`` header that differs is an error. ``ReadFailed``: no manifest;
    ValueError: a body that is no manifest."""
    answer = _ask(session, "manifests", tag, "pull", accept=MANIFEST_TYPES)
    return parse_manifest(answer.body, answer.headers)


def find_manifest(session: Session, tag: str) -> Optional[Manifest]:
    """What ``tag`` names now, or None when the registry has no such tag (HTTP 404, as the
    distribution API answers an unknown tag: ``MANIFEST_UNKNOWN``; ECR the same, mutable or
    immutable). ``ReadFailed`` for every other failure: the caller cannot tell."""
    try:
        return read_manifest(session, tag)
    except ReadFailed as failed:
        if failed.status == 404:
            return None
        raise


def _status_text(answer: Answer) -> str:
    """The registry's error code (``MANIFEST_UNKNOWN``...) or HTTP's reason phrase."""
    try:
        errors = json.loads(answer.body).get("errors") or []
        return "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
    except (ValueError, AttributeError, TypeError):
        pass
    try:
        return http.HTTPStatus(answer.status).phrase
    except ValueError:
        return ""


def _path(session: Session, kind: str, reference: str) -> str:
    return f"/v2/{session.registry.path}/{kind}/{reference}"


def _ask(
    session: Session,
    kind: str,
    reference: str,
    actions: str,
    *,
    accept: Sequence[str] = (),
    ok: tuple[int, ...] = (200,),
    **request: Any,
) -> Answer:
    """One request of the registry API for ``/v2/<name>/<kind>/<reference>`` (``Session.get``
    with a token for ``actions``); every failure is ``ReadFailed`` with its HTTP status:
    credentials refused, a network error (``network_reason``), or a status not in ``ok``
    (the registry's error code, ``_status_text``)."""
    try:
        answer = session.get(_path(session, kind, reference), actions, accept, **request)
    except Refused as refused:
        where = "its token server" if refused.token_server else "the registry"
        what = "pushing" if "push" in actions else "pulling"
        raise ReadFailed(
            f"{where} refused docker's credentials for {what} (HTTP {refused.status}; "
            "unauthorized)",
            refused.status,
        ) from None
    except (OSError, http.client.HTTPException) as err:
        raise ReadFailed(network_reason(err)) from None
    if answer.status not in ok:
        raise ReadFailed(f"HTTP {answer.status} {_status_text(answer)}".rstrip(), answer.status)
    return answer


def parse_manifest(body: bytes, headers: Message) -> Manifest:
    """The manifest in a registry's answer; ValueError when it is none, or when the
    registry's ``Docker-Content-Digest`` is not the sha256 of the body."""
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    said = headers.get("Docker-Content-Digest")
    if said and said != digest:
        raise ValueError(f"the registry says {said} but the body's sha256 is {digest}")
    try:
        data = json.loads(body)
    except ValueError:
        raise ValueError(f"not JSON: {tail(body.decode(errors='replace'), 3)!r}") from None
    if not isinstance(data, dict):
        raise ValueError("not a manifest")
    content_type = (headers.get("Content-Type") or "").split(";")[0].strip()
    media_type = data.get("mediaType") or content_type
    manifests = data.get("manifests")
    if media_type not in INDEX_TYPES and not (not media_type and isinstance(manifests, list)):
        config = data.get("config")
        config_digest = config.get("digest") if isinstance(config, dict) else None
        return Manifest(
            digest,
            media_type or "no media type",
            config=config_digest if isinstance(config_digest, str) else "",
        )
    if not isinstance(manifests, list) or not all(isinstance(entry, dict) for entry in manifests):
        raise ValueError("an index whose manifests are not a list of descriptors")
    platforms = []
    for entry in manifests:
        spec = entry.get("platform") or {}
        if not isinstance(spec, dict):
            raise ValueError(f"a platform that is not an object: {spec!r}")
        parts = (spec.get("os"), spec.get("architecture"), spec.get("variant"))
        name = "/".join(str(part) for part in parts if part)
        if name and name != "unknown/unknown":
            platforms.append(name)
    return Manifest(digest, media_type or OCI_INDEX, tuple(platforms))


# --- promote: a manifest's bytes, read and written ------------------------------------------


#: The image config's media types (Docker's and OCI's).
CONFIG_TYPES = (
    "application/vnd.docker.container.image.v1+json",
    "application/vnd.oci.image.config.v1+json",
)


@dataclass(frozen=True)
class Raw:
    """A manifest as the registry served it: the bytes, the media type, their sha256 digest,
    and ``parsed`` (``parse_manifest``: index or not, config digest, platforms)."""

    body: bytes
    media_type: str
    digest: str
    parsed: Manifest = field(repr=False)


@dataclass(frozen=True)
class ImageConfig:
    """What the promotion needs of an image's config blob: its labels and its environment
    (``Config.Labels``, ``Config.Env`` as ``KEY=VALUE`` strings), and its platform
    (``os/architecture[/variant]``, None when it names none)."""

    digest: str
    labels: dict[str, str]
    env: dict[str, str]
    platform: Optional[str] = None

    def value(self, key: str) -> Optional[str]:
        """``key`` of the image's environment (``ENV`` in the Dockerfile), None when unset."""
        return self.env.get(key)


def fetch(session: Session, reference: str) -> Raw:
    """The manifest ``reference`` (a tag, or ``sha256:...``) names, as bytes, accepting every
    manifest and index type (``MANIFEST_TYPES``). ValueError when the body's sha256
    differs from a digest ``reference`` or from the registry's ``Docker-Content-Digest``."""
    answer = _ask(session, "manifests", reference, "pull", accept=MANIFEST_TYPES)
    parsed = parse_manifest(answer.body, answer.headers)
    if reference.startswith("sha256:") and parsed.digest != reference:
        raise ValueError(
            f"asked for {reference}, the registry served bytes whose sha256 is {parsed.digest}"
        )
    content_type = (answer.headers.get("Content-Type") or "").split(";")[0].strip()
    media_type = content_type or parsed.media_type
    return Raw(answer.body, media_type, parsed.digest, parsed)


def put(session: Session, tag: str, raw: Raw) -> str:
    """``PUT`` ``raw``'s bytes under ``tag`` with its media type (a ``pull,push`` token).
    Returns the digest the registry says it stored (``Docker-Content-Digest``, else the bytes'
    sha256); ``ReadFailed`` with the registry's answer when it did not take it (an immutable
    ECR tag: ``TAG_INVALID``/``ImageTagAlreadyExistsException``, HTTP 400)."""
    answer = _ask(
        session,
        "manifests",
        tag,
        "pull,push",
        ok=(200, 201),
        method="PUT",
        data=raw.body,
        headers={"Content-Type": raw.media_type},
    )
    return answer.headers.get("Docker-Content-Digest") or raw.digest


def blob(session: Session, digest: str) -> bytes:
    """The blob ``digest`` (a redirect to storage followed, as docker follows it); ValueError
    when its sha256 is not ``digest``."""
    answer = _ask(session, "blobs", digest, "pull")
    found = "sha256:" + hashlib.sha256(answer.body).hexdigest()
    if found != digest:
        raise ValueError(f"the blob {digest} came with bytes whose sha256 is {found}")
    return answer.body


def image_manifest(session: Session, raw: Raw) -> Raw:
    """``raw`` when it is an image manifest; for an index, its first image of a real platform
    (attestations, ``unknown/unknown``, left out), fetched by digest."""
    if not raw.parsed.is_index:
        return raw
    data = json.loads(raw.body)
    for entry in data.get("manifests") or []:
        spec = entry.get("platform") or {}
        if spec.get("os") == "unknown" or not isinstance(entry.get("digest"), str):
            continue
        return fetch(session, entry["digest"])
    raise ValueError(f"the index {raw.digest} names no image of a platform")


def config(session: Session, raw: Raw) -> ImageConfig:
    """The config blob of the image ``raw`` is (of an index: its first platform's image):
    labels, environment and platform."""
    image = image_manifest(session, raw)
    digest = image.parsed.config
    if not digest:
        raise ValueError(f"the manifest {image.digest} names no config blob")
    try:
        data = json.loads(blob(session, digest))
    except ValueError as bad:
        raise ValueError(f"the config blob {digest} is not JSON: {bad}") from None
    settings = (data.get("config") or {}) if isinstance(data, dict) else {}
    labels = settings.get("Labels") or {}
    env = dict(item.split("=", 1) for item in settings.get("Env") or [] if "=" in item)
    labels = dict(labels) if isinstance(labels, dict) else {}
    return ImageConfig(digest, labels, env, _platform(data) if isinstance(data, dict) else None)


def _platform(config: dict[str, Any]) -> Optional[str]:
    parts = (config.get("os"), config.get("architecture"), config.get("variant"))
    return "/".join(str(part) for part in parts if part) or None


def config_platform(session: Session, image: Manifest) -> Optional[str]:
    """The ``os/architecture[/variant]`` of an image manifest's config blob (``blob``); None
    when it names none or it cannot be read (the SageMaker shape rule: shape.check_shape)."""
    if not image.config:
        return None
    try:
        config = json.loads(blob(session, image.config))
    except (ReadFailed, ValueError):
        return None
    return _platform(config) if isinstance(config, dict) else None
