#!/usr/bin/env python3
"""Drop-in for scripts/build-image.sh: runs ragbuild from a fresh clone, no install needed."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

from ragbuild.deps import NEEDED, install_hint, missing  # noqa: E402 (imports nothing)

MISSING = missing()
if MISSING:
    sys.stderr.write(f"error: missing Python packages {', '.join(MISSING)}: "
                     f"{install_hint(NEEDED.values())}\n")
    sys.exit(1)

from ragbuild.cli import main  # noqa: E402

sys.exit(main())
