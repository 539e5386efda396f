"""Project defaults: the ``[ragbuild]`` section of the project's setup.cfg (in the working
directory, where the Dockerfile is), e.g.::

    [ragbuild]
    image-name = rag-worker
    environments = dev, staging, prod
    scan-command = grype {image} --fail-on high
    smoke-command = serve
    smoke-timeout = 120
    host-ca = /etc/ssl/certs/corporate-ca.pem
    host-index = true

``host-ca`` names the CA bundle builds trust (a path, relative to the working directory), over
the one the host's pip uses; ``host-index = true`` passes the host pip's index settings
(pip_config.py; the flags ``--host-ca``, ``--no-host-ca`` and ``--host-index`` beat them).

Limits (``smoke-timeout``, ``push-attempts``, ``push-backoff``, ``context-warn-mb``) are listed
with their defaults in limits.py; the flag of the same name beats the setting.

No setup.cfg means the defaults. A setup.cfg that exists but cannot be used (unreadable, a
directory, not UTF-8, not INI) is refused in one line (exit 2), never silently ignored. Values
are taken literally: ``%`` is not configparser's interpolation.
"""

from __future__ import annotations

import configparser
import os
from typing import Optional

from ragbuild.errors import UsageError
from ragbuild.limits import SETTINGS, Limits
from ragbuild.plan import (DEFAULT_ENVIRONMENTS, DEFAULT_IMAGE_NAME, DEFAULT_SMOKE_COMMAND, Config,
                           check_image_name, check_start_command, check_tag)

KNOWN = ("image-name", "environments", "scan-command", "smoke-command", "host-ca", "host-index",
         *(setting.key for setting in SETTINGS))
#: configparser's booleans (``getboolean``), for ``host-index``.
BOOLEANS = {"1": True, "yes": True, "true": True, "on": True,
            "0": False, "no": False, "false": False, "off": False}


def read_text(path: str) -> Optional[str]:
    """The file's text, or None when there is no such file; any other failure is a UsageError."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise UsageError(f"{path} is a directory, not a config file") from None
    except OSError as err:
        raise UsageError(f"{path}: cannot be read: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise UsageError(f"{path}: not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset "
                         f"{err.start})") from None


def load_config(directory: str = ".") -> Config:
    path = os.path.join(directory, "setup.cfg")
    text = read_text(path)
    if text is None:
        return Config()
    parser = configparser.ConfigParser(interpolation=None)  # % is a literal character
    try:
        parser.read_string(text, source=path)
    except configparser.Error as err:
        raise UsageError(f"{path}: cannot be read as a config file: {err.message.splitlines()[0]}") from None
    if not parser.has_section("ragbuild"):
        return Config()
    section = parser["ragbuild"]
    where = f"{path} [ragbuild]"
    unknown = set(section) - set(KNOWN)
    if unknown:
        raise UsageError(f"{where}: unknown setting {sorted(unknown)[0]!r}; known: {', '.join(KNOWN)}")
    for key in KNOWN:
        if key in section and not section[key].strip():
            raise UsageError(f"{where} {key} is empty; give a value, or remove the line for the "
                             "default")
    scan_command = section.get("scan-command", "").strip() or None
    if scan_command is not None:
        from ragbuild.scan import parse_scan_command

        parse_scan_command(scan_command, f"{where} scan-command")
    envs = tuple(section.get("environments", "").replace(",", " ").split())
    for env in envs:
        check_tag(env, f"{where} environments:")
    image_name = section.get("image-name", DEFAULT_IMAGE_NAME).strip()
    check_image_name(image_name, f"{where} image-name")
    smoke_command = section.get("smoke-command", DEFAULT_SMOKE_COMMAND).strip()
    check_start_command(smoke_command, f"{where} smoke-command")
    host_index = section.get("host-index", "false").strip().lower()
    if host_index not in BOOLEANS:
        raise UsageError(f"{where} host-index: {host_index!r} is not true or false")
    return Config(image_name=image_name, environments=envs or DEFAULT_ENVIRONMENTS,
                  scan_command=scan_command, smoke_command=smoke_command,
                  limits=read_limits(section, where),
                  host_ca=section.get("host-ca", "").strip() or None,
                  host_index=BOOLEANS[host_index])


def read_limits(section: configparser.SectionProxy, where: str) -> Limits:
    """The limits setup.cfg sets (limits.py's table), each checked as its flag is."""
    given = {}
    for setting in SETTINGS:
        if setting.key in section:
            try:
                given[setting.field] = setting.parse(section[setting.key].strip())
            except ValueError as err:
                raise UsageError(f"{where} {setting.key}: {err}") from None
    return Limits().override(**given)
