"""The Python packages ragbuild needs at run time, as one list for the script's start-up check
(scripts/build-image.py, before anything else is imported) and ``doctor``. Imports nothing."""

from __future__ import annotations

import sys
from importlib.util import find_spec
from typing import Optional
from collections.abc import Iterable

# module -> package; the context guard's matcher needs Python 3.11, older ones use the Docker SDK's
MATCHER = (
    ("e2b_dockerfile_utils", "e2b-dockerfile-utils")
    if sys.version_info >= (3, 11)
    else ("docker", "docker")
)
NEEDED = {"plumbum": "plumbum", "semver": "semver", "shtab": "shtab", MATCHER[0]: MATCHER[1]}


def missing() -> list[str]:
    """The packages of NEEDED that cannot be imported, in NEEDED's order."""
    return [package for module, package in NEEDED.items() if find_spec(module) is None]


def install_hint(packages: Optional[Iterable[str]] = None) -> str:
    return f"run `make venv` (or `python3 -m pip install {' '.join(packages or NEEDED.values())}`)"
