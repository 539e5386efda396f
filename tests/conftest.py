"""Shared test set-up.

plumbum runs ``uname -p`` (through ``platform``) the first time it is imported; under
pytest-subprocess that would be an unregistered process, so import it before any test fakes
processes.
"""

import plumbum  # noqa: F401
from plumbum import local  # noqa: F401
