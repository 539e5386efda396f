"""The one manifest shape SageMaker pulls: a single Docker v2 schema 2 image manifest of the
planned platform, not an index and not an OCI manifest (aws/amazon-sagemaker-feedback#180);
checked after every push for SageMaker and on a promote's SOURCE (docs/smoke-test.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional

if TYPE_CHECKING:
    from ragbuild import manifest as manifest_api, registry as registry_api


# --- the manifest shape -------------------------------------------------------------------------

#: The one manifest shape SageMaker pulls: a single Docker v2 schema 2 image manifest, not an
#: index (Docker manifest list or OCI index) and not a single OCI image manifest
#: (aws/amazon-sagemaker-feedback#180, mlflow/mlflow#13834).
SAGEMAKER_SHAPE = "application/vnd.docker.distribution.manifest.v2+json"
#: The fix for an index: a plan for one platform ships one image, whatever --not-for-sagemaker
#: says (only a multi-platform plan ships an index).
INDEX_FIX = (
    "build for one platform without attestations and with Docker media types (ragbuild's "
    "own build does: docker buildx build --provenance=false --sbom=false --output "
    "type=image,oci-mediatypes=false)"
)
SHAPE_FIX = f"{INDEX_FIX}, or pass --not-for-sagemaker when the image is not for SageMaker"


def shape_problem(
    ref: str,
    manifest: manifest_api.Manifest,
    platform: Optional[str] = None,
    planned: Optional[str] = None,
    normalize: Callable[[str], str] = str.lower,
) -> Optional[str]:
    """Why ``ref``'s manifest (as the registry serves it) is not SageMaker's shape, with the fix;
    None when it is. ``platform``: the image's (its config's ``os/architecture``), checked
    against ``planned`` when both are known, each ``normalize``d (``push.normalize_platform``:
    containerd's spelling rules)."""
    if manifest.is_index:
        return (
            f"{ref} is an image index ({manifest.media_type}), not a single Docker v2 schema "
            f"2 manifest: SageMaker refuses an index; {INDEX_FIX}"
        )
    if manifest.media_type != SAGEMAKER_SHAPE:
        return (
            f"{ref} is a single {manifest.media_type} manifest, not a Docker v2 schema 2 "
            f"manifest ({SAGEMAKER_SHAPE}): SageMaker refuses it; {SHAPE_FIX}"
        )
    if platform and planned:
        return platform_problem(ref, platform, planned, normalize)
    return None


#: The platform a plan for SageMaker means when it names none: its x86 instance types (a
#: Graviton one, ml.*g*, takes --platform linux/arm64).
DEFAULT_PLATFORM = "linux/amd64"


def planned_platform(platforms: tuple[str, ...], not_for_sagemaker: bool) -> Optional[str]:
    """The one platform a push or promote of a single image must be: ``--platform``'s, else
    ``DEFAULT_PLATFORM`` for SageMaker; None (no rule) with --not-for-sagemaker and no
    --platform."""
    if platforms:
        return str(platforms[0])
    return None if not_for_sagemaker else DEFAULT_PLATFORM


def platform_problem(
    ref: str,
    platform: Optional[str],
    planned: str,
    normalize: Callable[[str], str] = str.lower,
) -> Optional[str]:
    """Why the image ``ref`` (its config's ``os/architecture[/variant]``: ``platform``, None
    when it names none) is not of the ``planned`` platform; None when it is."""
    if platform and normalize(platform) == normalize(planned):
        return None
    found = f"an image for {platform}" if platform else "an image whose config names no platform"
    return (
        f"{ref} is {found}, not the planned {planned} (the shape rule: one image of the "
        f"planned platform): build it with --platform {planned}, or pass --platform "
        f"{platform or 'OS/ARCH'} when that is the plan"
    )


def check_shape(
    session: registry_api.Session,
    ref: str,
    planned: Optional[str] = None,
    normalize: Callable[[str], str] = str.lower,
) -> Optional[str]:
    """Read ``ref``'s manifest (and, with a ``planned`` platform, its config) from the registry
    and say why it is not SageMaker's shape; None when it is. For promote: SOURCE's shape before
    any tag is written. ``manifest_api.ReadFailed`` when the registry does not serve it."""
    from ragbuild import manifest as manifest_api

    tag = ref.rsplit("@", 1)[1] if "@" in ref else ref.rsplit(":", 1)[1]
    manifest = manifest_api.read_manifest(session, tag)
    platform = manifest_api.config_platform(session, manifest) if planned else None
    return shape_problem(ref, manifest, platform, planned, normalize)
