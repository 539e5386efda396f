"""Shared test set-up.

plumbum runs ``uname -p`` (through ``platform``) the first time it is imported; under
pytest-subprocess that would be an unregistered process, so import it before any test fakes
processes.

The Ctrl-C tests send SIGINT to this process and to the ragbuild it starts, and expect what a
terminal user gets. A test run started where SIGINT is ignored (a shell's background job:
``make test &``, ``nohup``, a CI step started so) inherits SIG_IGN, which Python keeps and
ragbuild rightly leaves alone (``signals.install``), so those tests waited out their children
and failed; give SIGINT Python's own handler back (children then start with SIGINT's default).
"""

import signal

import plumbum  # noqa: F401
from plumbum import local  # noqa: F401

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
