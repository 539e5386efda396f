"""The host CA lookup (pip_config.host_ca, its ``cert`` from pip_config.read) against
``pip config list`` (issue 23), on the generated configurations of test_pip_config.py (same seed,
``RAGBUILD_PIP_CONFIG_SEED``, and count, ``RAGBUILD_PIP_CONFIG_CASES``).

``pip config list`` prints what pip's configuration holds after its files (in pip's order, a
later file's key replacing an earlier one's) and ``PIP_*`` variables are merged, one
``section.key='value'`` line each (https://pip.pypa.io/en/stable/cli/pip_config/). ``pip install``
then takes ``[global]``, over it ``[install]``, over both the variables, and skips an empty value
(pip's ConfigOptionParser): the cert pip uses, derived from the listing, must be ragbuild's.
The command runs in one interpreter for all cases (pip's own ``main``, the environment set per
case), as the other oracle does."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from ragbuild import pip_config
from ragbuild.pip_config import HostCA
from test_pip_config import CASES, SEED, generate_cases

LISTER = r"""
import contextlib, io, json, os, sys
from pip._internal.cli.main import main
cases = json.load(sys.stdin)
base = dict(os.environ)
said = []
for case in cases:
    os.environ.clear()
    os.environ.update(base)
    os.environ.update(case)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["config", "list"])
    said.append([code, out.getvalue()])
print(json.dumps(said))
"""


def cert_of(listing: str):
    """The cert ``pip install`` takes from ``pip config list``'s lines, or None."""
    values = {}
    for line in listing.splitlines():
        key, _, value = line.partition("=")
        values[key] = value[1:-1] if value[:1] == value[-1:] == "'" else value
    for section in (":env:", "install", "global"):
        if values.get(f"{section}.cert"):
            return values[f"{section}.cert"]
    return None


def test_the_host_ca_is_the_cert_pip_config_list_gives_pip_install(tmp_path):
    cases = generate_cases(tmp_path)
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIP_", "XDG_"))
        and k not in ("HOME", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")
    }
    done = subprocess.run(
        [sys.executable, "-c", LISTER],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        env=clean,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    set_somewhere = 0
    for i, (case, (code, listing)) in enumerate(zip(cases, json.loads(done.stdout))):
        assert code == 0, (i, listing)
        environ = {**clean, **case}
        cert = cert_of(listing)
        expected = None if cert is None else HostCA(pip_config.expand_user(cert, environ), "")
        found = pip_config.host_ca(environ, prefix=sys.prefix)
        got = None if found is None else HostCA(found.path, "")
        assert got == expected, (
            f"case {i} (RAGBUILD_PIP_CONFIG_SEED={SEED}): {case}\npip config list:\n{listing}"
            f"ragbuild: {found}"
        )
        if found is not None:
            assert (found.source == "PIP_CERT") is bool(environ.get("PIP_CERT")), found
            set_somewhere += 1
    assert 0.2 * CASES < set_somewhere < 0.95 * CASES, set_somewhere
