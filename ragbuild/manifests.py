"""Manifests as bytes: what ``promote`` copies from one tag to others through the registry API,
without docker, without a build and without a layer upload.

A manifest is read (``fetch``: ``GET /v2/<name>/manifests/<reference>``, by tag or digest)
and written under another tag (``put``: ``PUT /v2/<name>/manifests/<tag>``) byte for byte with
the media type it was served with, so its digest, the sha256 of those bytes, stays the same:
https://distribution.github.io/distribution/spec/api/#pushing-an-image-manifest, OCI
distribution-spec "Pushing Manifests" (a registry that has the manifest's blobs accepts it
without any upload). Re-encoding it (``jq``, ``docker buildx imagetools create``) changes the
digest. The image's config blob (``config``) gives its labels and environment. ECR speaks the
same API with the token of ``aws ecr get-login-password`` as Basic auth for user ``AWS``
(https://docs.aws.amazon.com/AmazonECR/latest/userguide/registry_auth.html).

Every request goes through an ``access.Session`` (scheme, TLS, credentials, the daemon's
proxy); each function raises ``access.ReadFailed`` with the reason in words
``push.classify_failure`` reads, or ValueError for an answer that is not what was asked.
"""

from __future__ import annotations

import hashlib
import http.client
import json
from dataclasses import dataclass, field
from typing import Optional

from ragbuild import access

#: The image config's media types (Docker's and OCI's).
CONFIG_TYPES = ("application/vnd.docker.container.image.v1+json",
                "application/vnd.oci.image.config.v1+json")


@dataclass(frozen=True)
class Raw:
    """A manifest as the registry served it: the bytes, the media type, their sha256 digest,
    and ``parsed`` (``access.parse_manifest``: index or not, config digest, platforms)."""

    body: bytes
    media_type: str
    digest: str
    parsed: access.Manifest = field(repr=False)


@dataclass(frozen=True)
class ImageConfig:
    """What the promotion needs of an image's config blob: its labels and its environment
    (``Config.Labels``, ``Config.Env`` as ``KEY=VALUE`` strings)."""

    digest: str
    labels: dict
    env: dict

    def value(self, key: str) -> Optional[str]:
        """``key`` of the image's environment (``ENV`` in the Dockerfile), None when unset."""
        return self.env.get(key)


def _refused(refused: access.Refused, what: str) -> access.ReadFailed:
    where = "its token server" if refused.token_server else "the registry"
    return access.ReadFailed(f"{where} refused docker's credentials for {what} (HTTP "
                             f"{refused.status}; unauthorized)", refused.status)


def _path(session: access.Session, kind: str, reference: str) -> str:
    return f"/v2/{session.registry.path}/{kind}/{reference}"


def fetch(session: access.Session, reference: str) -> Raw:
    """The manifest ``reference`` (a tag, or ``sha256:...``) names, as bytes, accepting every
    manifest and index type (``access.MANIFEST_TYPES``). ValueError when the body's sha256
    differs from a digest ``reference`` or from the registry's ``Docker-Content-Digest``."""
    try:
        answer = session.get(_path(session, "manifests", reference), "pull",
                             access.MANIFEST_TYPES)
    except access.Refused as refused:
        raise _refused(refused, "pulling") from None
    except (OSError, http.client.HTTPException) as err:
        raise access.ReadFailed(access.network_reason(err)) from None
    if answer.status != 200:
        raise access.ReadFailed(f"HTTP {answer.status} {access._status_text(answer)}".rstrip(),
                                answer.status)
    parsed = access.parse_manifest(answer.body, answer.headers)
    if reference.startswith("sha256:") and parsed.digest != reference:
        raise ValueError(f"asked for {reference}, the registry served bytes whose sha256 is "
                         f"{parsed.digest}")
    content_type = (answer.headers.get("Content-Type") or "").split(";")[0].strip()
    media_type = content_type or parsed.media_type
    return Raw(answer.body, media_type, parsed.digest, parsed)


def put(session: access.Session, tag: str, raw: Raw) -> str:
    """``PUT`` ``raw``'s bytes under ``tag`` with its media type (a ``pull,push`` token).
    Returns the digest the registry says it stored (``Docker-Content-Digest``, else the bytes'
    sha256); ``ReadFailed`` with the registry's answer when it did not take it (an immutable
    ECR tag: ``TAG_INVALID``/``ImageTagAlreadyExistsException``, HTTP 400)."""
    try:
        answer = session.get(_path(session, "manifests", tag), "pull,push", method="PUT",
                             data=raw.body, headers={"Content-Type": raw.media_type})
    except access.Refused as refused:
        raise _refused(refused, "pushing") from None
    except (OSError, http.client.HTTPException) as err:
        raise access.ReadFailed(access.network_reason(err)) from None
    if answer.status not in (200, 201):
        raise access.ReadFailed(f"HTTP {answer.status} {access._status_text(answer)}".rstrip(),
                                answer.status)
    return answer.headers.get("Docker-Content-Digest") or raw.digest


def blob(session: access.Session, digest: str) -> bytes:
    """The blob ``digest`` (a redirect to storage followed, as docker follows it); ValueError
    when its sha256 is not ``digest``."""
    try:
        answer = session.get(_path(session, "blobs", digest), "pull")
    except access.Refused as refused:
        raise _refused(refused, "pulling") from None
    except (OSError, http.client.HTTPException) as err:
        raise access.ReadFailed(access.network_reason(err)) from None
    if answer.status != 200:
        raise access.ReadFailed(f"HTTP {answer.status} {access._status_text(answer)}".rstrip(),
                                answer.status)
    found = "sha256:" + hashlib.sha256(answer.body).hexdigest()
    if found != digest:
        raise ValueError(f"the blob {digest} came with bytes whose sha256 is {found}")
    return answer.body


def image_manifest(session: access.Session, raw: Raw) -> Raw:
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


def config(session: access.Session, raw: Raw) -> ImageConfig:
    """The config blob of the image ``raw`` is (of an index: its first platform's image):
    labels and environment."""
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
    return ImageConfig(digest, dict(labels) if isinstance(labels, dict) else {}, env)
