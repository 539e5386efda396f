"""What the host's pip trusts and where it installs from, read as pip reads it.

- ``read(environ)``: pip's settings for ``pip install``, merged in pip's own order (its
  configuration files, then ``PIP_*`` variables; ``install.X`` beats ``global.X``; an empty
  value is ignored). pip's rules, copied: https://pip.pypa.io/en/stable/topics/configuration/
  (files: ``$XDG_CONFIG_DIRS``/pip/pip.conf and /etc/pip.conf, then ~/.pip/pip.conf and
  ``$XDG_CONFIG_HOME``/pip/pip.conf unless ``PIP_CONFIG_FILE`` names an existing file, then
  ``sys.prefix``/pip.conf, then ``PIP_CONFIG_FILE``; ``PIP_CONFIG_FILE=/dev/null`` loads no file).
  tests/unit/test_pip_config.py compares it with pip's own parser on generated configurations.
- ``host_ca(...)``: the CA bundle a build gets as the BuildKit secret ``CA_SECRET_ID``.
- ``host_index(...)``: the index settings a build gets as the secret ``INDEX_SECRET_ID``.

Pure but for the file reads, which take ``environ`` and ``prefix`` as given.
"""

from __future__ import annotations

import configparser
import os
import sys
from dataclasses import dataclass
from typing import Optional
from collections.abc import Mapping

#: BuildKit secret ids ragbuild reserves; a user's ``--secret`` with one of them is refused.
CA_SECRET_ID = "ragbuild-host-ca"
INDEX_SECRET_ID = "ragbuild-host-index"
RESERVED_SECRET_IDS = (CA_SECRET_ID, INDEX_SECRET_ID)
#: BuildKit refuses a secret over 500 KiB (buildkit session/secrets/secretsprovider: "secret too
#: big"); checked before the build so the run stops with one line instead.
SECRET_MAX_BYTES = 500 * 1024
#: pip's option names for the index settings the build can use, as the Dockerfile reads them.
INDEX_KEYS = ("index-url", "extra-index-url", "trusted-host", "find-links", "no-index")
#: pip's true values (``strtobool``).
TRUE = ("y", "yes", "t", "true", "on", "1")


def expand_user(path: str, environ: Mapping[str, str]) -> str:
    """``~`` and ``~/...`` with ``environ``'s HOME, as pip's path options expand them."""
    if path == "~" or path.startswith("~/"):
        home = environ.get("HOME") or os.path.expanduser("~")
        return home + path[1:]
    return os.path.expanduser(path)


def _normalize(name: str) -> str:
    name = name.lower().replace("_", "-")
    return name[2:] if name.startswith("--") else name


def config_files(environ: Mapping[str, str], prefix: str = sys.prefix) -> list[str]:
    """pip's configuration files in the order they are loaded (a later one wins)."""
    env_file = environ.get("PIP_CONFIG_FILE")
    if env_file == os.devnull:
        return []
    dirs = environ.get("XDG_CONFIG_DIRS") or "/etc/xdg"
    files = [os.path.join(d, "pip", "pip.conf") for d in dirs.split(os.pathsep) if d]
    files.append("/etc/pip.conf")
    if not (env_file and os.path.exists(env_file)):
        home = environ.get("HOME") or os.path.expanduser("~")
        xdg_home = environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
        files += [os.path.join(home, ".pip", "pip.conf"), os.path.join(xdg_home, "pip", "pip.conf")]
    files.append(os.path.join(prefix, "pip.conf"))
    if env_file:
        files.append(env_file)
    return files


@dataclass(frozen=True)
class Setting:
    value: str
    source: str  # where pip takes it from: ``PIP_CERT`` or ``/etc/pip.conf [global] cert``


def read(environ: Mapping[str, str], prefix: str = sys.prefix) -> dict[str, Setting]:
    """``{option: Setting}`` for ``pip install``: files' ``[global]``, then ``[install]``, then
    ``PIP_*`` variables. As in pip, a later file's value replaces an earlier one's for the same
    section and key, even when it is empty, and an empty value is then ignored (so an empty
    ``cert =`` in ~/.pip/pip.conf unsets /etc/pip.conf's). An unreadable file is skipped (pip
    would stop on it; the build then simply gets nothing from it)."""
    merged: dict[tuple[str, str], Setting] = {}  # later files over earlier ones
    for path in config_files(environ, prefix):
        parser = configparser.RawConfigParser()
        try:
            parser.read(path, encoding="utf-8")
        except (configparser.Error, OSError, UnicodeDecodeError):
            continue
        for section in ("global", "install"):
            if parser.has_section(section):
                for key, value in parser.items(section):
                    merged[section, _normalize(key)] = Setting(value, f"{path} [{section}] {key}")
    for name, value in environ.items():
        if name.startswith("PIP_") and name[4:].lower() not in ("version", "help"):
            merged[":env:", _normalize(name[4:])] = Setting(value, name)
    found: dict[str, Setting] = {}
    for section in ("global", "install", ":env:"):
        found.update(
            {
                key: setting
                for (where, key), setting in merged.items()
                if where == section and setting.value
            }
        )
    return found


@dataclass(frozen=True)
class HostCA:
    """The CA bundle the build trusts: ``path`` and where it was found (``source``)."""

    path: str
    source: str


def host_ca(
    environ: Mapping[str, str],
    *,
    given: Optional[str] = None,
    given_source: str = "--host-ca",
    prefix: str = sys.prefix,
) -> Optional[HostCA]:
    """The CA bundle the host's pip would use: ``given`` (``--host-ca`` or setup.cfg's
    ``host-ca``), else pip's ``cert`` (``PIP_CERT``, then its configuration files), else
    ``REQUESTS_CA_BUNDLE`` (which pip's requests reads when ``cert`` is unset), else
    ``SSL_CERT_FILE`` (what uv and OpenSSL read). None when none names one. A ``~`` is
    expanded, as pip's ``cert`` option does. Whether the file exists is ``check_ca``'s."""
    if given:
        return HostCA(expand_user(given, environ), given_source)
    cert = read(environ, prefix).get("cert")
    if cert is not None:
        source = "PIP_CERT" if cert.source == "PIP_CERT" else f"pip's config ({cert.source})"
        return HostCA(expand_user(cert.value, environ), source)
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        if environ.get(name):
            return HostCA(expand_user(environ[name], environ), name)
    return None


@dataclass(frozen=True)
class CAProblem:
    message: str
    too_big: bool = False  # over BuildKit's secret limit: docker's client refuses the build


def check_ca(ca: HostCA) -> Optional[CAProblem]:
    """Why the bundle cannot be passed (missing, not a file, over BuildKit's secret limit,
    unreadable), or None."""
    where = f"the host CA bundle {ca.path} (from {ca.source})"
    try:
        size = os.stat(ca.path).st_size
    except OSError as err:
        return CAProblem(f"{where} cannot be read: {err.strerror}")
    if not os.path.isfile(ca.path):
        return CAProblem(f"{where} is not a file")
    if size > SECRET_MAX_BYTES:
        return CAProblem(
            f"{where} is {size // 1024} KiB, over BuildKit's "
            f"{SECRET_MAX_BYTES // 1024} KiB limit for a build secret: give "
            "--host-ca a bundle of the CAs the build needs (your proxy's), or "
            "--no-host-ca",
            too_big=True,
        )
    if not os.access(ca.path, os.R_OK):
        return CAProblem(f"{where} is not readable")
    return None


#: The build args the Dockerfile maps to uv's flags (pip's names).
INDEX_BUILD_ARGS = tuple("PIP_" + key.upper().replace("-", "_") for key in INDEX_KEYS)


def secret_build_args(
    build_args: tuple[tuple[str, str], ...],
) -> tuple[tuple[str, str], ...]:
    """The ``(name, value)`` index build args that carry credentials (a URL's ``user:token@``,
    ``redaction.secret_build_args``): they reach the build in the index secret instead, since
    the Dockerfile's builder stage writes its build args' flags into a layer."""
    from ragbuild.run.redaction import secret_build_args as secret_names

    secret = set(secret_names(build_args))
    return tuple((k, v) for k, v in build_args if k in INDEX_BUILD_ARGS and k in secret)


def _is_url(value: str) -> bool:
    return value.split("://", 1)[0].lower() in ("http", "https") and "://" in value


@dataclass(frozen=True)
class HostIndex:
    """The host's index settings a build can use: ``env`` as ``(PIP_NAME, value)`` pairs, and
    the values it cannot (``dropped``: local paths and ``file://`` URLs, as ``option value``)."""

    env: tuple[tuple[str, str], ...] = ()
    dropped: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()  # where each passed setting came from

    def secret_text(self) -> str:
        """The secret's content: ``PIP_NAME=value`` lines, which the Dockerfile exports."""
        return "".join(f"{name}={value}\n" for name, value in self.env)


def host_index(
    settings: Mapping[str, Setting],
    overridden: tuple[str, ...] = (),
    given: tuple[tuple[str, str], ...] = (),
) -> HostIndex:
    """From ``read``'s settings, what a build can use: ``index-url``, ``extra-index-url``,
    ``trusted-host``, and ``find-links`` and ``no-index`` when the find-links are URLs. Paths and
    ``file://`` URLs (a build cannot see the host's disk) are dropped, each listed. A key in
    ``overridden`` (given with ``--build-arg PIP_*``, which wins) is left out; ``given`` are
    such build args that carry credentials (``secret_build_args``), passed here as given."""
    env, dropped, sources = [], [], []
    links_ok = False
    for key in INDEX_KEYS:
        name = "PIP_" + key.upper().replace("-", "_")
        setting = settings.get(key)
        if setting is None or name in overridden:
            continue
        if key == "no-index":
            if setting.value.strip().lower() in TRUE:
                if links_ok:
                    env.append((name, "1"))
                    sources.append(setting.source)
                else:
                    dropped.append("no-index (no find-links URL to install from)")
            continue
        values = setting.value.split()
        kept = values if key == "trusted-host" else [v for v in values if _is_url(v)]
        dropped += [f"{key} {v}" for v in values if v not in kept]
        if kept:
            env.append((name, " ".join(kept)))
            sources.append(setting.source)
            links_ok = links_ok or key == "find-links"
    env += given
    sources += [f"--build-arg {name}" for name, _ in given]
    return HostIndex(tuple(env), tuple(dropped), tuple(sources))


#: The variable the docker client reads the index secret from (``--secret id=...,env=NAME``):
#: its name says SECRET, so every printout shows ``***`` for its value (run/redaction.py).
INDEX_SECRET_ENV = "RAGBUILD_HOST_INDEX_SECRET"


@dataclass(frozen=True)
class HostNetwork:
    """What a build gets of the host's network settings: the CA bundle (``ca``, or None with
    ``ca_note`` saying why) and the index settings (``index``, with ``--host-index``)."""

    ca: Optional[HostCA] = None
    ca_note: str = ""  # why no CA is passed: "--no-host-ca", "none found", a warning
    index: Optional[HostIndex] = None

    def build_words(self) -> tuple[str, ...]:
        """``docker build`` words: a ``--secret`` per thing passed. The CA by its path (docker's
        client reads the file), the index settings from ``INDEX_SECRET_ENV`` (``build_env``)."""
        words: tuple[str, ...] = ()
        if self.ca is not None:
            words += ("--secret", f"id={CA_SECRET_ID},src={self.ca.path}")
        if self.index is not None and self.index.env:
            words += ("--secret", f"id={INDEX_SECRET_ID},env={INDEX_SECRET_ENV}")
        return words

    def build_env(self) -> tuple[tuple[str, str], ...]:
        """The build command's added environment: the index secret's text."""
        if self.index is not None and self.index.env:
            return ((INDEX_SECRET_ENV, self.index.secret_text()),)
        return ()

    def describe(self) -> list[str]:
        """The plan's lines: which CA and index settings the build gets, from where."""
        if self.ca is not None:
            lines = [
                f"host CA: {self.ca.path} (from {self.ca.source}), passed as build secret "
                f"{CA_SECRET_ID} (--no-host-ca: none)"
            ]
        else:
            lines = [f"host CA: none ({self.ca_note})"]
        if self.index is not None:
            from ragbuild.run.redaction import redact_value

            passed = ", ".join(
                f"{name}={redact_value(name, value)} (from {source})"
                for (name, value), source in zip(self.index.env, self.index.sources)
            )
            lines.append(
                f"package index, as build secret {INDEX_SECRET_ID}: {passed}"
                if passed
                else "package index (--host-index): nothing a build can use, no secret"
            )
        return lines
