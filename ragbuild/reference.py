"""Docker's image reference grammar (docker/distribution ``reference``), and ECR's host pattern.

The regular expressions and limits (buildx.py and docker_config.py import them too), and the checks of what a
user names with them: a tag, an image name, a registry (``Registry``, ECR's region).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from ragbuild.errors import UsageError

#: A tag: up to 128 characters, not starting with '.' or '-'.
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
#: docker's limit on a repository name, registry host included (reference.NameTotalLengthMax).
NAME_MAX = 255
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
REGISTRY_RE = re.compile(rf"(?P<host>{_DOMAIN})/(?P<path>{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)")
IMAGE_NAME_RE = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
#: ``[host[:port]/]path[:tag][@sha256:digest]``
IMAGE_REF_RE = re.compile(
    rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?"
)
# The pattern of amazon-ecr-credential-helper (ecr-login/api/client.go, ``ecrPattern``): account,
# optional -fips, region, and each AWS partition's domain: amazonaws.com, amazonaws.com.cn,
# amazonaws.eu (European Sovereign Cloud), the dual-stack ``dkr-ecr.<region>.on.aws`` and
# ``on.amazonwebservices.com.cn``, and the ISO partitions. Matched against the host name without
# its port, as the helper does (``url.Hostname()``).
ECR_HOST_RE = re.compile(
    r"(?P<account>[0-9]{12})\.dkr[.-]ecr(?P<fips>-fips)?\.(?P<region>[a-zA-Z0-9][a-zA-Z0-9-_]*)\."
    r"(?:amazonaws\.(?:com(?:\.cn)?|eu)|on\.(?:aws|amazonwebservices\.com\.cn)|sc2s\.sgov\.gov"
    r"|c2s\.ic\.gov|cloud\.adc-e\.uk|csp\.hci\.ic\.gov)"
)


def familiar(ref: str) -> str:
    """A ref as docker lists it in RepoTags: Docker Hub's ``docker.io/`` or ``index.docker.io/``
    dropped, and ``library/`` with it for an official image (``docker.io/library/x:t`` and
    ``library/x:t`` are listed as ``x:t``)."""
    for prefix in ("docker.io/", "index.docker.io/"):
        if ref.startswith(prefix):
            ref = ref[len(prefix) :]
            break
    if ref.startswith("library/") and "/" not in ref[len("library/") :]:
        ref = ref[len("library/") :]
    return ref


@dataclass(frozen=True)
class Registry:
    host: str
    path: str
    region: Optional[str] = None  # set for ECR hosts only
    fips: bool = False  # an ECR FIPS endpoint (dkr.ecr-fips.<region>...)

    @property
    def is_ecr(self) -> bool:
        return self.region is not None

    @property
    def uri(self) -> str:
        return f"{self.host}/{self.path}"


def check_tag(tag: str, source: str = "--tag") -> str:
    if not TAG_RE.fullmatch(tag):
        raise UsageError(
            f"{source} {tag!r} is not a valid Docker tag: up to 128 letters, digits, "
            "'_', '.' or '-', not starting with '.' or '-'"
        )
    return tag


def parse_registry(uri: str, source: str = "--registry") -> Registry:
    """``host[:port]/repository`` with docker's reference grammar; ECR hosts get their region.
    ``source`` names where the value came from (the flag, or ECR_REGISTRY_URI) in messages."""
    if not uri:
        raise UsageError(
            f"{source} is empty; give host[:port]/repository, e.g. "
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/rag-worker "
            "(with make: ECR_URI=...)"
        )
    if "://" in uri:
        raise UsageError(f"{source} {uri!r}: drop the scheme, docker wants host[:port]/repository")
    match = REGISTRY_RE.fullmatch(uri)
    if not match:
        lower = uri.lower()
        hint = f"; did you mean {lower!r}?" if lower != uri and REGISTRY_RE.fullmatch(lower) else ""
        raise UsageError(
            f"{source} {uri!r} is not host[:port]/repository with a lowercase "
            f"repository path (no tag){hint}"
        )
    host, path = match["host"], match["path"]
    if len(uri) > NAME_MAX:
        raise UsageError(
            f"{source} is {len(uri)} characters long; docker allows at most "
            f"{NAME_MAX} in a repository name, registry host included"
        )
    if not ("." in host or ":" in host or host == "localhost"):
        raise UsageError(
            f"{source} {uri!r} has no registry host ({host!r} would mean Docker Hub "
            f"user); write e.g. docker.io/{uri}"
        )
    ecr = ECR_HOST_RE.fullmatch(host.rsplit(":", 1)[0] if host.count(":") == 1 else host)
    if ecr:
        return Registry(host, path, region=ecr["region"], fips=bool(ecr["fips"]))
    return Registry(host, path)


def check_image_name(name: str, source: str = "--image-name") -> str:
    if not name:
        raise UsageError(f"{source} is empty; give a lowercase image name like rag-worker")
    if not IMAGE_NAME_RE.fullmatch(name):
        raise UsageError(f"{source} {name!r} is not a lowercase image name like rag-worker")
    if len(name) > NAME_MAX:
        raise UsageError(
            f"{source} is {len(name)} characters long; docker allows at most "
            f"{NAME_MAX} in a repository name"
        )
    return name


def repository_of(ref: str) -> str:
    """``host:5000/a/b:tag`` -> ``host:5000/a/b``: the tag follows the last ':' after the last '/'."""
    name, colon, tag = ref.rpartition(":")
    return name if colon and "/" not in tag else ref


def check_image_ref(ref: str, source: str = "IMAGE") -> str:
    """An image reference docker will take as one (never as an option)."""
    if not ref:
        raise UsageError(f"{source} is empty; give an image such as rag-worker:dev")
    if ref.startswith("-"):
        raise UsageError(
            f"{source} {ref!r} starts with '-': docker would read it as an option; "
            "give an image such as rag-worker:dev"
        )
    if not IMAGE_REF_RE.fullmatch(ref) or len(repository_of(ref.split("@")[0])) > NAME_MAX:
        raise UsageError(
            f"{source} {ref!r} is not an image reference: "
            "[host[:port]/]lowercase/path[:tag][@sha256:digest], e.g. rag-worker:dev"
        )
    return ref


#: A manifest or image digest as docker and the registry API write it.
DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class Source:
    """SOURCE of a promotion: the repository and the tag or digest it names there."""

    registry: Registry
    reference: str  # a tag, or sha256:...

    @property
    def ref(self) -> str:
        sep = "@" if self.reference.startswith("sha256:") else ":"
        return f"{self.registry.uri}{sep}{self.reference}"


def parse_source(
    text: str, registry: Optional[str] = None, registry_source: str = "--registry"
) -> Source:
    """``R:tag`` or ``R@sha256:<64 hex>`` (R: host[:port]/repository; ``R:tag@sha256:...`` is
    the digest, as docker reads it); with ``registry`` (the flag, or ECR_REGISTRY_URI) a bare
    tag or digest in it. UsageError for anything else."""
    if not text:
        raise UsageError(
            "SOURCE is empty; give <registry>/<repository>:<tag> or "
            "<registry>/<repository>@sha256:<digest>"
        )
    if DIGEST_RE.fullmatch(text):  # a bare digest: in --registry's repository
        repository, reference = "", text
    elif "@" in text:
        repository, _, reference = text.partition("@")
        if not DIGEST_RE.fullmatch(reference):
            raise UsageError(f"SOURCE {text!r}: {reference!r} is not a digest sha256:<64 hex>")
        named = repository.rsplit("/", 1)[-1]
        if ":" in named:  # name:tag@digest: docker takes it and goes by the digest alone
            check_tag(named.split(":", 1)[1], "SOURCE's tag")
            repository = repository[: len(repository) - len(named)] + named.split(":", 1)[0]
    else:
        slash = text.rfind("/")
        colon = text.rfind(":")
        if colon > slash:
            repository, reference = text[:colon], text[colon + 1 :]
            check_tag(reference, "SOURCE's tag")
        elif "/" not in text and registry is not None:
            repository, reference = "", text
            check_tag(reference, "SOURCE's tag")
        else:
            raise UsageError(
                f"SOURCE {text!r} names no tag or digest: give "
                "<registry>/<repository>:<tag> or ...@sha256:<digest>"
            )
    if not repository:
        if registry is None:
            raise UsageError(
                f"SOURCE {text!r} names no repository: give "
                "<registry>/<repository>:<tag>, or --registry"
            )
        return Source(parse_registry(registry, registry_source), reference)
    parsed = parse_registry(repository, "SOURCE")
    if registry is not None and parse_registry(registry, registry_source).uri != parsed.uri:
        raise UsageError(
            f"SOURCE {text!r} is in {parsed.uri}, and {registry_source} names "
            f"{registry}: promote writes tags in SOURCE's own repository; drop one"
        )
    return Source(parsed, reference)
