"""The read-back: after the push, what each tag names in the registry (``read_manifest``,
``find_manifest``), asked over a ``registry.Session``; a ``Manifest`` says whether it names the
image that was built (``verify.verify``)."""

from __future__ import annotations

import hashlib
import http.client
import json
from dataclasses import dataclass
from email.message import Message
from typing import Optional

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
    platforms: tuple = ()
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
    return f"{session.base}/v2/{session.registry.path}/manifests/{tag}"


def read_manifest(session: Session, tag: str) -> Manifest:
    """``GET /v2/<name>/manifests/<tag>`` accepting ``MANIFEST_TYPES``, with a ``pull`` token
    (https://distribution.github.io/distribution/spec/api/#pulling-an-image-manifest, OCI
    distribution-spec "Pulling manifests"). The digest is the sha256 of the body; a
    ``Docker-Content-Digest`` header that differs is an error. ``ReadFailed``: no manifest;
    ValueError: a body that is no manifest."""
    path = f"/v2/{session.registry.path}/manifests/{tag}"
    try:
        answer = session.get(path, "pull", MANIFEST_TYPES)
    except Refused as refused:
        where = "its token server" if refused.token_server else "the registry"
        raise ReadFailed(f"{where} refused docker's credentials for pulling (HTTP "
                         f"{refused.status}; unauthorized)") from None
    except (OSError, http.client.HTTPException) as err:
        raise ReadFailed(network_reason(err)) from None
    if answer.status != 200:
        raise ReadFailed(f"HTTP {answer.status} {_status_text(answer)}".rstrip(), answer.status)
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
        return Manifest(digest, media_type or "no media type",
                        config=config_digest if isinstance(config_digest, str) else "")
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
