#!/usr/bin/env python3
"""Drop-in for scripts/build-image.sh: runs ragbuild from a fresh clone, no install needed."""
import os
import sys
from importlib.util import find_spec

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

# module -> package; the context guard's matcher needs Python 3.11, older ones use the Docker SDK's
MATCHER = ("e2b_dockerfile_utils", "e2b-dockerfile-utils") if sys.version_info >= (3, 11) \
    else ("docker", "docker")
NEEDED = {"plumbum": "plumbum", "semver": "semver", "shtab": "shtab", MATCHER[0]: MATCHER[1]}
MISSING = [package for module, package in NEEDED.items() if find_spec(module) is None]
if MISSING:
    sys.stderr.write(f"error: missing Python packages {', '.join(MISSING)}: run `make venv` "
                     f"(or `python3 -m pip install {' '.join(NEEDED.values())}`)\n")
    sys.exit(1)

from ragbuild.cli import main  # noqa: E402

sys.exit(main())
