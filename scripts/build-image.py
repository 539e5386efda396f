#!/usr/bin/env python3
"""Drop-in for scripts/build-image.sh: runs ragbuild from a fresh clone, no install needed."""
import os
import sys
from importlib.util import find_spec

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

MISSING = [name for name in ("plumbum", "semver") if find_spec(name) is None]
if MISSING:
    sys.stderr.write(f"error: missing Python packages {', '.join(MISSING)}: run `make venv` "
                     "(or `python3 -m pip install plumbum semver`)\n")
    sys.exit(1)

from ragbuild.cli import main  # noqa: E402

sys.exit(main())
