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

What a run is asked: ``Options`` (the build command's flags, as parsed) and ``Config`` (these
settings, over ragbuild's defaults), and the checks of a start or scan command either names.
"""

from __future__ import annotations

import configparser
import enum
import os
import shlex
from dataclasses import dataclass, field
from typing import Optional
from collections.abc import Sequence

from ragbuild.errors import UsageError
from ragbuild.limits import SETTINGS, Limits
from ragbuild.reference import check_image_name, check_tag

KNOWN = (
    "image-name",
    "environments",
    "scan-command",
    "smoke-command",
    "host-ca",
    "host-index",
    *(setting.key for setting in SETTINGS),
)
#: configparser's booleans (``getboolean``), for ``host-index``.
BOOLEANS = {
    "1": True,
    "yes": True,
    "true": True,
    "on": True,
    "0": False,
    "no": False,
    "false": False,
    "off": False,
}


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
        raise UsageError(
            f"{path}: not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start})"
        ) from None


def load_config(directory: str = ".") -> Config:
    path = os.path.join(directory, "setup.cfg")
    text = read_text(path)
    if text is None:
        return Config()
    parser = configparser.ConfigParser(interpolation=None)  # % is a literal character
    try:
        parser.read_string(text, source=path)
    except configparser.Error as err:
        raise UsageError(
            f"{path}: cannot be read as a config file: {err.message.splitlines()[0]}"
        ) from None
    if not parser.has_section("ragbuild"):
        return Config()
    section = parser["ragbuild"]
    where = f"{path} [ragbuild]"
    unknown = set(section) - set(KNOWN)
    if unknown:
        raise UsageError(
            f"{where}: unknown setting {sorted(unknown)[0]!r}; known: {', '.join(KNOWN)}"
        )
    for key in KNOWN:
        if key in section and not section[key].strip():
            raise UsageError(
                f"{where} {key} is empty; give a value, or remove the line for the default"
            )
    scan_command = section.get("scan-command", "").strip() or None
    if scan_command is not None:
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
    return Config(
        image_name=image_name,
        environments=envs or DEFAULT_ENVIRONMENTS,
        scan_command=scan_command,
        smoke_command=smoke_command,
        limits=read_limits(section, where),
        host_ca=section.get("host-ca", "").strip() or None,
        host_index=BOOLEANS[host_index],
    )


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


DEFAULT_IMAGE_NAME = "rag-worker"


DEFAULT_ENVIRONMENTS = ("dev", "staging", "prod")


#: The smoke test starts the image as SageMaker does: ``docker run IMAGE serve``, port 8080,
#: ``GET /ping`` (https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-inference-code.html)
DEFAULT_SMOKE_COMMAND = "serve"


class LatestPolicy(str, enum.Enum):
    """--latest-policy: which builds move ``latest`` (and, with --semver-tags, the channels)."""

    ALWAYS = "always"  # every build, as bash did (the default)
    AUTO = "auto"  # a release not lower than the highest v* git tag of the channel
    NEVER = "never"  # no build (--no-latest)

    def __str__(self) -> str:  # messages say "--latest-policy always", on every Python
        return str(self.value)


@dataclass(frozen=True)
class Config:
    """Project defaults from the ``[ragbuild]`` section of setup.cfg."""

    image_name: str = DEFAULT_IMAGE_NAME
    environments: tuple[str, ...] = DEFAULT_ENVIRONMENTS
    scan_command: Optional[str] = None  # the vulnerability scanner for --scan, with {image}
    smoke_command: str = DEFAULT_SMOKE_COMMAND  # what the smoke test starts: docker run IMAGE ...
    limits: Limits = field(default_factory=Limits)  # limits.py: setup.cfg's, over the defaults
    host_ca: Optional[str] = None  # the CA bundle builds trust (``host-ca``); None: the host pip's
    host_index: bool = False  # ``host-index = true``: builds get the host pip's index settings


@dataclass(frozen=True)
class Options:
    """The build command's flags, as parsed (before validation)."""

    version: Optional[str] = None
    env: Optional[str] = None
    registry: Optional[str] = None
    registry_source: str = "--registry"  # or ECR_REGISTRY_URI, when the value came from there
    tags: tuple[str, ...] = ()
    no_cache: bool = False
    push: bool = False
    dry_run: bool = False
    build_args: tuple[str, ...] = ()  # KEY=VALUE or KEY, as given
    file: str = "Dockerfile"
    context: str = "."
    image_name: Optional[str] = None
    allow_dirty: bool = False
    git_commit: Optional[str] = None  # --git-commit SHA: the commit of a tree without .git
    smoke_test: bool = False
    skip_existing_immutable: bool = False
    replace_version_tags: bool = False  # an existing v<version>/<version> may move (push.py)
    # checks beyond bash's (guard.py)
    context_warn_mb: Optional[float] = None  # limits.py: None is setup.cfg's, else the default
    allow_secrets: bool = False
    scan: bool = False  # scan.py: the vulnerability gate before the push
    scan_command: Optional[str] = None
    metadata_file: Optional[str] = None  # metadata.py
    # tags beyond bash's (tags.py)
    semver_tags: bool = False
    latest_policy: LatestPolicy = LatestPolicy.ALWAYS  # --latest/--no-latest too
    build_number: Optional[str] = None
    ci_tags: bool = False
    # where and how to build (buildx.py, docker_config.py)
    builder: Optional[str] = None
    platform: Optional[str] = None  # comma list, as given
    cache_from: tuple[str, ...] = ()
    cache_to: tuple[str, ...] = ()
    pull: bool = False
    # docker build options ragbuild does not model, passed through (passthrough.py)
    secrets: tuple[str, ...] = ()  # --secret SPEC
    ssh: tuple[str, ...] = ()  # --ssh SPEC
    docker_options: tuple[str, ...] = ()  # the words after --
    # what the build's downloads trust and use of the host's network (pip_config.py)
    host_ca: Optional[str] = None  # --host-ca PATH
    no_host_ca: bool = False  # --no-host-ca
    host_index: Optional[bool] = None  # --host-index; None: setup.cfg's
    # the production start path and the limits (smoke.py, limits.py): None is setup.cfg's
    smoke_command: Optional[str] = None
    smoke_timeout: Optional[float] = None
    push_attempts: Optional[int] = None
    push_backoff: Optional[float] = None
    quiet: bool = False  # -q/--quiet: only errors and the result lines
    not_for_sagemaker: bool = False  # the push need not be SageMaker's manifest shape


def split_command(text: str, source: str, example: str) -> tuple[str, ...]:
    """A command line given as text (a flag, a setup.cfg value), split as a shell would split it
    (no shell runs it); empty or unbalanced quoting is refused in one line naming ``source``."""
    try:
        words = tuple(shlex.split(text))
    except ValueError as err:
        raise UsageError(f"{source} {text!r} cannot be split into words: {err}") from None
    if not words:
        raise UsageError(f"{source} is empty; give {example}")
    return words


def check_start_command(text: str, source: str = "--smoke-command") -> tuple[str, ...]:
    """The words after IMAGE in ``docker run IMAGE ...`` (shell quoting, as typed)."""
    return split_command(
        text,
        source,
        "the command the platform starts the image with, e.g. "
        f"{DEFAULT_SMOKE_COMMAND} (SageMaker's)",
    )


PLACEHOLDER = "{image}"


def parse_scan_command(text: str, source: str) -> tuple[str, ...]:
    """Split a scan command as a shell would (no shell runs it); it must name ``{image}``."""
    words = split_command(
        text, source, f"a command with {PLACEHOLDER}, e.g. 'grype {PLACEHOLDER} --fail-on high'"
    )
    if not any(PLACEHOLDER in word for word in words):
        raise UsageError(
            f"{source} {text!r} does not say where the image goes: put {PLACEHOLDER} "
            f"in it, e.g. '{words[0]} {PLACEHOLDER}'"
        )
    return words


def check_env(env: str, environments: Sequence[str]) -> str:
    """``--env``, one of the environments setup.cfg names; UsageError with the nearest name."""
    if env in environments:
        return env
    if not env:
        raise UsageError(f"--env is empty; choose one of: {', '.join(environments)}")
    lower = env.lower()
    # difflib misses the long spellings people type ("production" vs "prod"): prefixes count too
    import difflib  # only for a mistyped name, not every run's start

    near = (
        difflib.get_close_matches(lower, environments, n=1)
        or [e for e in environments if lower.startswith(e.lower()) or e.lower().startswith(lower)][
            :1
        ]
    )
    hint = f"; did you mean {near[0]!r}?" if near else ""
    raise UsageError(f"--env {env!r} is not one of {', '.join(environments)}{hint}")
