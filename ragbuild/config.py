"""Project defaults: the ``[ragbuild]`` section of the project's setup.cfg (in the working
directory, where the Dockerfile is), e.g.::

    [ragbuild]
    image-name = rag-worker
    environments = dev, staging, prod
    scan-command = grype {image} --fail-on high
"""

from __future__ import annotations

import configparser
import os

from ragbuild.errors import UsageError
from ragbuild.plan import DEFAULT_ENVIRONMENTS, DEFAULT_IMAGE_NAME, Config, check_tag


def load_config(directory: str = ".") -> Config:
    path = os.path.join(directory, "setup.cfg")
    parser = configparser.ConfigParser()
    try:
        parser.read(path, encoding="utf-8")
    except configparser.Error as err:
        raise UsageError(f"{path}: cannot be read as a config file: {err.message.splitlines()[0]}") from None
    if not parser.has_section("ragbuild"):
        return Config()
    section = parser["ragbuild"]
    unknown = set(section) - {"image-name", "environments", "scan-command"}
    if unknown:
        raise UsageError(f"{path} [ragbuild]: unknown setting {sorted(unknown)[0]!r}; "
                         "known: image-name, environments, scan-command")
    scan_command = section.get("scan-command", "", raw=True).strip() or None  # raw: % is literal
    if scan_command is not None:
        from ragbuild.scan import parse_scan_command

        parse_scan_command(scan_command, f"{path} [ragbuild] scan-command")
    envs = tuple(section.get("environments", "").replace(",", " ").split())
    for env in envs:
        check_tag(env, f"{path} [ragbuild] environments:")
    return Config(image_name=section.get("image-name", DEFAULT_IMAGE_NAME).strip() or DEFAULT_IMAGE_NAME,
                  environments=envs or DEFAULT_ENVIRONMENTS, scan_command=scan_command)
