"""manifest.py: what a registry's manifest says (the image it names)."""

from __future__ import annotations
from email.message import Message
from fakes import FAKE_IMAGE_ID
from ragbuild.manifest import parse_manifest
from registry_fakes import OTHER_IMAGE, OTHER_MANIFEST, digest_of


# --- the registry's manifest names an image ----------------------------------------------------


def test_a_manifest_names_the_image_whose_id_is_its_config_or_itself():
    manifest = parse_manifest(OTHER_MANIFEST, Message())
    assert manifest.config == OTHER_IMAGE
    assert manifest.names_image(OTHER_IMAGE)  # classic store: the ID is the config's digest
    assert manifest.names_image(digest_of(OTHER_MANIFEST))  # containerd store: the manifest's
    assert not manifest.names_image(FAKE_IMAGE_ID) and not manifest.names_image("")
