"""Docker's image reference grammar (docker/distribution ``reference``), and ECR's host pattern.

Only regular expressions and limits: plan.py and builders.py both import them at the top, so
neither has to import the other to get them.
"""

from __future__ import annotations

import re

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
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?")
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
            ref = ref[len(prefix):]
            break
    if ref.startswith("library/") and "/" not in ref[len("library/"):]:
        ref = ref[len("library/"):]
    return ref
