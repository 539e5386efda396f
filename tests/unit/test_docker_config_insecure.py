"""Whether the daemon pushes over plain HTTP: the rule issue 23's differential
(tests/e2e/test_registry_differential.py) found ragbuild and docker to disagree on."""

from __future__ import annotations

import json

import pytest

from ragbuild.docker_config import parse_registry_config

CONFIG = {
    "InsecureRegistryCIDRs": ["127.0.0.0/8"],
    "IndexConfigs": {"docker.io": {"Name": "docker.io", "Secure": True}},
}
CONTAINERD = [["driver-type", "io.containerd.snapshotter.v1"]]


def no_lookup(name: str) -> list:
    return []


@pytest.mark.parametrize(
    "host, classic, containerd",
    [
        ("[::1]:5000", False, True),  # docker 26, containerd store: plain HTTP to ::1
        ("127.0.0.1:5000", True, True),
        ("localhost:5000", False, True),  # by name, without a lookup, on containerd
        ("registry.example:5000", False, False),
        ("[fd00::2]:5000", False, False),
    ],
)
def test_the_containerd_store_reaches_loopback_over_plain_http(host, classic, containerd):
    plain = parse_registry_config(json.dumps({"RegistryConfig": CONFIG, "DriverStatus": []}))
    store = parse_registry_config(
        json.dumps({"RegistryConfig": CONFIG, "DriverStatus": CONTAINERD})
    )
    assert (plain.containerd, store.containerd) == (False, True)
    assert plain.is_insecure(host, no_lookup) is classic
    assert store.is_insecure(host, no_lookup) is containerd


def test_the_bare_registry_config_still_reads():
    config = parse_registry_config(json.dumps(CONFIG))
    assert not config.containerd and config.is_insecure("127.0.0.1:5000", no_lookup)


def test_a_wrapped_registry_config_of_the_wrong_type_is_refused():
    with pytest.raises(ValueError):
        parse_registry_config(json.dumps({"RegistryConfig": [], "DriverStatus": None}))
