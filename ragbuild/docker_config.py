"""Docker's own configuration, read as docker reads it: which daemon or context it talks to
(``DockerTarget``), its config.json (``DockerConfig``: credentials, helpers, CLI plugins) and
the daemon's registry configuration (insecure registries, mirrors). Pure but for reading
docker's files; no process is started here.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from typing import Callable, Optional
from collections.abc import Mapping, Sequence


@dataclass(frozen=True)
class DockerTarget:
    """Which daemon docker talks to, as docker decides it: DOCKER_HOST beats DOCKER_CONTEXT,
    which beats the ``currentContext`` of config.json (``docker context use``).

    ``--builder NAME`` where NAME is a docker context (``default`` included) names that context's
    builder, which buildx refuses from any other context ("use `docker --context=NAME buildx` to
    switch to context NAME", buildx 0.13.1). ``for_builder`` records it as ``builder_context``, and then every docker
    command of the run (build, inspect, smoke, scan, push, verify) runs as ``docker --context
    NAME ...`` (``docker_flags``): the image is looked for, run and pushed where it was built.
    The ``--context`` flag beats DOCKER_HOST and DOCKER_CONTEXT (``resolveContextName`` in
    https://github.com/docker/cli/blob/v26.1.5/cli/command/cli.go)."""

    host: Optional[str] = None
    context: Optional[str] = None  # DOCKER_CONTEXT
    current_context: Optional[str] = None  # config.json currentContext
    #: ((name, docker host), ...) of the contexts in $DOCKER_CONFIG/contexts ("default" is implied)
    contexts: tuple[tuple[str, Optional[str]], ...] = ()
    builder_context: Optional[str] = None  # the context whose builder --builder names
    #: BUILDX_BUILDER, which buildx (and ``docker build`` where it is buildx) reads when no
    #: --builder is given, with the same refusal of another context's builder
    env_builder: Optional[str] = None
    builder_source: str = "--builder"

    def for_builder(self, builder: Optional[str]) -> DockerTarget:
        """This target with ``builder_context`` set when ``builder`` (else BUILDX_BUILDER) is a
        docker context's builder (``docker buildx ls`` lists one per context, named after it)."""
        source = "--builder" if builder else "BUILDX_BUILDER"
        builder = builder or self.env_builder
        if builder and (builder == "default" or builder in dict(self.contexts)):
            return replace(self, builder_context=builder, builder_source=source)
        return self

    def own_builder(self) -> Optional[str]:
        """The name of the daemon's own builder (buildx's ``docker`` driver, which builds in
        the daemon and stores the image there): buildx names it after the docker context,
        ``default`` for DOCKER_HOST or no context (``docker buildx ls``). None when
        BUILDX_BUILDER picks some other builder, which may not store the image in the daemon."""
        if self.builder_context:
            return self.builder_context
        if self.env_builder:
            return None
        if self.host:
            return "default"
        return self.context or self.current_context or "default"

    def docker_flags(self) -> tuple[str, ...]:
        """The global flags every docker command of the run gets: ``("--context", NAME)`` when
        the builder is a context's, else none."""
        return ("--context", self.builder_context) if self.builder_context else ()

    def endpoint(self) -> Optional[str]:
        """DOCKER_HOST for programs other than docker (a scanner reading the daemon) when the
        builder is another context's: that context's docker host, else None (they inherit
        ours)."""
        if self.builder_context and self.builder_context != "default":
            return dict(self.contexts).get(self.builder_context)
        return None

    def _source(self) -> tuple[str, Optional[str]]:
        """The setting that decides, in docker's order: ("builder"|"host"|"context"|"current"|
        "default", its value)."""
        if self.builder_context and self.builder_context != "default":
            return "builder", self.builder_context
        if self.host:
            return "host", self.host
        if self.builder_context == "default":
            return "default", None
        if self.context:
            return "context", self.context
        if self.current_context and self.current_context != "default":
            return "current", self.current_context
        return "default", None

    def daemon_host(self) -> Optional[str]:
        """The address docker reaches its daemon at (DOCKER_HOST, or the context's docker
        host), None for the local socket (or a context whose host is not known)."""
        kind, value = self._source()
        if kind == "host":
            return value
        if kind in ("builder", "context", "current") and value is not None:
            return dict(self.contexts).get(value)
        return None

    def describe(self) -> str:
        kind, value = self._source()
        if kind == "host":
            ignored = (
                f" (DOCKER_CONTEXT={self.context} is ignored while DOCKER_HOST is set)"
                if self.context and not self.builder_context
                else ""
            )
            return f"DOCKER_HOST={value}{ignored}"
        named = (
            f"--builder {value}"
            if self.builder_source == "--builder"
            else f"BUILDX_BUILDER={value}"
        )
        return {
            "builder": f"docker context {value!r} ({named}: that context's builder; "
            f"every docker command runs with --context {value})",
            "context": f"docker context {value!r} (DOCKER_CONTEXT)",
            "current": f"docker context {value!r} (docker context use)",
            "default": "the local socket (default context)",
        }[kind]

    def unreachable(self) -> str:
        """Where the unreachable daemon is, for the diagnose message."""
        kind, value = self._source()
        named = (
            f"--builder {value}"
            if self.builder_source == "--builder"
            else f"BUILDX_BUILDER={value}"
        )
        return {
            "builder": f"of docker context {value!r} ({named})",
            "host": f"at {value}",
            "context": f"of docker context {value!r} (DOCKER_CONTEXT)",
            "current": f"of docker context {value!r}",
            "default": "at the local socket",
        }[kind]


#: What docker says when it cannot reach its daemon (``docker version``, ``docker push``, ...),
#: lowercase. Nothing about a registry: "connection refused" from a push is the registry's.
DAEMON_DOWN_MARKERS = (
    "cannot connect to the docker daemon",
    "is the docker daemon running",
    "error during connect",
)


def daemon_down(output: str) -> bool:
    """Whether docker's output says it could not reach its daemon (``DAEMON_DOWN_MARKERS``)."""
    text = output.lower()
    return any(marker in text for marker in DAEMON_DOWN_MARKERS)


def daemon_unreachable(target: Optional[DockerTarget]) -> str:
    """The one message for a daemon docker cannot reach."""
    where = f" {target.unreachable()}" if target is not None else ""
    return (
        f"cannot reach the Docker daemon{where}: start it (e.g. `systemctl start docker`, or "
        "`make engine` as root on Debian or Ubuntu) or point DOCKER_HOST or DOCKER_CONTEXT "
        "at a running one"
    )


#: Where docker keeps Docker Hub's credentials (its ``IndexServer``), whatever the host is called.
DOCKER_HUB_KEY = "https://index.docker.io/v1/"


#: The names docker takes for Docker Hub (distribution/reference normalizes ``index.docker.io``
#: to ``docker.io``). ``registry-1.docker.io``, Hub's API host, is not one of them: docker files
#: its credentials under that name (a push asks a helper for ``registry-1.docker.io``, checked
#: by tests/e2e/test_registry_differential.py).
DOCKER_HUB_HOSTS = ("docker.io", "index.docker.io")


#: The credential helper of amazon-ecr-credential-helper: it gets ECR tokens itself and cannot
#: store a ``docker login`` ("not implemented").
ECR_HELPER = "ecr-login"


@dataclass(frozen=True)
class Credentials:
    """Where docker gets the credentials for one registry host (``DockerConfig.credentials``)."""

    host: str
    helper: Optional[str] = None  # docker-credential-<helper> reads (and stores) them
    origin: str = ""  # "credHelpers", "credsStore", "auths", or "" (none configured)
    auth_key: Optional[str] = None  # the ``auths`` entry that holds them (no helper)
    config_path: str = ""
    #: the docker client major version whose ``auths`` key rule was applied (``_hostname``);
    #: None: the rule of clients before 28, or the rules agree for this config
    client_major: Optional[int] = None

    def describe(self) -> str:
        """``docker-credential-ecr-login (credHelpers in /root/.docker/config.json)``."""
        if self.helper:
            return f"docker-credential-{self.helper} ({self.origin} in {self.config_path})"
        if self.auth_key:
            return f"auths[{self.auth_key!r}] in {self.config_path}"
        return f"none: no credHelpers, credsStore or auths entry in {self.config_path}"


def credentials_key(host: str) -> str:
    """The key docker files a registry's credentials under: the host (with its port), Docker
    Hub's under ``DOCKER_HUB_KEY``."""
    return DOCKER_HUB_KEY if host in DOCKER_HUB_HOSTS else host


def _hostname(key: str, client_major: Optional[int] = None) -> str:
    """docker's ``ConvertToHostname``: an ``auths`` key without scheme and path. Clients before
    28 strip only a lowercase ``http://`` or ``https://``; the 28 client parses a key holding
    ``://`` as a URL (any scheme, in any case: ``HTTPS://host:5000`` is ``host:5000``) and
    falls back to the old cut (docker cli, cli/config/credentials/file_store.go
    ``ConvertToHostname``: https://github.com/docker/cli/blob/v28.0.0/cli/config/credentials/file_store.go).
    ``client_major`` None: the older rule."""
    if client_major is not None and client_major >= 28:
        import re

        # Go's url.Parse: a scheme, then the authority up to /, ? or #; its Hostname and Port
        found = re.match(r"[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)", key)
        authority = found[1].rpartition("@")[2] if found else ""
        name = re.fullmatch(r"(\[[^\]]*\]|[^:\[\]]*)(?::(\d*))?", authority)
        if name and name[1] not in ("", "[]"):
            return f"{name[1]}:{name[2]}" if name[2] else name[1]
    for scheme in ("http://", "https://"):
        if key.startswith(scheme):
            key = key[len(scheme) :]
    return key.split("/", 1)[0]


@dataclass(frozen=True)
class DockerConfig:
    """What ragbuild reads from docker's ``config.json`` (read once per run,
    ``read_docker_config``): https://docs.docker.com/reference/cli/docker/#configuration-files"""

    path: str = ""  # the file it was read from (or would have been), for messages
    current_context: Optional[str] = None  # set by ``docker context use``
    cred_helpers: Mapping[str, str] = field(default_factory=dict)  # host -> helper (credHelpers)
    creds_store: Optional[str] = None  # the default helper (credsStore)
    #: key -> {"auth": ...} (auths), each entry's JSON as docker wrote it
    auths: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    #: cliPluginsExtraDirs: more places docker looks for CLI plugins
    plugin_dirs: tuple[str, ...] = ()

    def credentials(self, host: str, client_major: Optional[int] = None) -> Credentials:
        """Where docker gets ``host``'s credentials, in docker's order: ``credHelpers[host]``,
        then ``credsStore``, then the ``auths`` entry (docker cli, config/configfile/file.go
        ``GetCredentialsStore``; https://docs.docker.com/reference/cli/docker/login/#credential-stores).
        A ``credHelpers`` entry whose helper is ``""`` names the ``auths`` entry, not
        ``credsStore`` (docker takes the entry's existence, then its empty name as "no
        helper"). An ``auths`` key matches as ``auths_key`` says."""
        key = credentials_key(host)
        found = Credentials(host=host, config_path=self.path, client_major=client_major)
        helper = self.cred_helpers.get(key)
        if isinstance(helper, str) and helper:
            return replace(found, helper=helper, origin="credHelpers")
        if self.creds_store and helper is None:
            return replace(found, helper=self.creds_store, origin="credsStore")
        name = self.auths_key(host, client_major)
        if name is not None:
            return replace(found, origin="auths", auth_key=name)
        return found

    def auths_key(self, host: str, client_major: Optional[int] = None) -> Optional[str]:
        """The ``auths`` key docker's file store reads for ``host``: the key itself, else a key
        whose host name (``_hostname``, as the client ``client_major`` converts it) is the
        host; None when no key matches. docker also reads it when a helper fails (it ignores
        the helper's error and sends the file's entry)."""
        key = credentials_key(host)
        if key in self.auths:
            return key
        for name in self.auths:
            if _hostname(name, client_major) == _hostname(key):
                return name
        return None


def docker_config_path(environ: Mapping[str, str] = os.environ) -> str:
    directory = environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(directory, "config.json")


def read_docker_config(environ: Mapping[str, str] = os.environ) -> DockerConfig:
    """The one reader of ``$DOCKER_CONFIG/config.json``: a missing, unreadable, non-UTF-8 or
    malformed file, or values of the wrong type, read as nothing set."""
    path = docker_config_path(environ)
    try:
        with open(path, encoding="utf-8") as config:
            data = json.load(config)
    except (OSError, ValueError):  # UnicodeDecodeError is a ValueError
        return DockerConfig(path)
    if not isinstance(data, dict):
        return DockerConfig(path)
    context = data.get("currentContext")
    helpers = data.get("credHelpers")
    helpers = helpers if isinstance(helpers, dict) else {}
    store = data.get("credsStore")
    auths = data.get("auths")
    auths = auths if isinstance(auths, dict) else {}
    extra = data.get("cliPluginsExtraDirs")
    return DockerConfig(
        path=path,
        current_context=context if isinstance(context, str) and context else None,
        # an empty helper name is kept: it turns credsStore off for its host (``credentials``);
        # so does null, which Go's JSON decoding makes "" in a map of strings
        cred_helpers={
            host: helper or ""
            for host, helper in helpers.items()
            if isinstance(helper, (str, type(None)))
        },
        creds_store=store if isinstance(store, str) and store else None,
        auths={key: entry for key, entry in auths.items() if isinstance(entry, dict)},
        plugin_dirs=tuple(d for d in extra if isinstance(d, str) and d)
        if isinstance(extra, list)
        else (),
    )


#: Where docker looks for CLI plugins after ``$DOCKER_CONFIG/cli-plugins`` and the config's
#: ``cliPluginsExtraDirs``, in its order (docker cli, cli-plugins/manager/manager_unix.go
#: ``defaultSystemPluginDirs``: https://github.com/docker/cli/blob/v26.1.5/cli-plugins/manager/manager_unix.go).
SYSTEM_PLUGIN_DIRS = (
    "/usr/local/lib/docker/cli-plugins",
    "/usr/local/libexec/docker/cli-plugins",
    "/usr/lib/docker/cli-plugins",
    "/usr/libexec/docker/cli-plugins",
)


def find_cli_plugin(
    name: str, config: DockerConfig, environ: Mapping[str, str] = os.environ
) -> Optional[str]:
    """The path of the docker CLI plugin ``docker-<name>`` docker would run (the first
    executable file in its plugin directories, in docker's order), or None. A look at the
    disk, not a process: what ``docker <name>`` would find, for the 20.10 client and newer."""
    dirs = (
        os.path.join(os.path.dirname(docker_config_path(environ)), "cli-plugins"),
        *config.plugin_dirs,
        *SYSTEM_PLUGIN_DIRS,
    )
    for directory in dirs:
        path = os.path.join(directory, f"docker-{name}")
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


# --- the daemon's registry configuration --------------------------------------------------------

#: dockerd's default ``insecure-registries`` CIDR: loopback registries may speak plain HTTP.
#: The daemon adds it whatever its configuration says: moby v20.10.24 registry/config.go line 159,
#: ``registries = append(registries, "127.0.0.0/8")`` in ``LoadInsecureRegistries``
#: (https://github.com/moby/moby/blob/v20.10.24/registry/config.go#L159); since v28.0 also
#: ``::1/128`` (daemon/pkg/registry/config.go ``loadInsecureRegistries``).
DEFAULT_INSECURE_CIDRS = ("127.0.0.0/8",)


def always_insecure(host: str, resolve: Optional[Callable[[str], Sequence[str]]] = None) -> bool:
    """Whether every daemon treats ``host`` (``name[:port]``) as insecure, whatever its
    configuration: the host is, or resolves only to, loopback addresses, one of them in
    127.0.0.0/8, which moby always lists (``DEFAULT_INSECURE_CIDRS``; ``::1`` alone counts only
    on docker >= 28, so it is the daemon's to say). An ``IndexConfigs`` entry could only mark
    such a host insecure too: the daemon makes entries for ``insecure-registries`` names
    (``Secure: false``) and for docker.io alone. No ``docker info`` is needed to know it."""
    import ipaddress

    addresses = _addresses(host, resolve)
    ips = []
    for address in addresses:
        try:
            ips.append(ipaddress.ip_address(address.split("%")[0]))
        except ValueError:
            return False
    loopback = ipaddress.ip_network(DEFAULT_INSECURE_CIDRS[0])
    return (
        bool(ips)
        and all(ip.is_loopback for ip in ips)
        and any(ip.version == 4 and ip in loopback for ip in ips)
    )


def _host_name(host: str) -> str:
    """``host`` (``name[:port]``, ``[v6]:port``, a bare IPv6 address) without its port and
    brackets."""
    if host.startswith("["):
        return host[1:].split("]")[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _addresses(host: str, resolve: Optional[Callable[[str], Sequence[str]]] = None) -> list[str]:
    """The addresses ``host`` (``name[:port]``, ``[v6]:port``) resolves to, as the daemon finds
    them (moby ``isCIDRMatch``: a lookup, else the name as an IP)."""
    import ipaddress

    name = _host_name(host)
    addresses = list((resolve or _resolve)(name))
    if not addresses:
        try:
            addresses = [str(ipaddress.ip_address(name))]
        except ValueError:
            addresses = []
    return addresses


@dataclass(frozen=True)
class RegistryConfig:
    """The daemon's ``RegistryConfig`` (``docker info``)."""

    insecure_cidrs: tuple[str, ...] = DEFAULT_INSECURE_CIDRS
    index_secure: Mapping[str, bool] = field(default_factory=dict)  # IndexConfigs[name].Secure
    #: the daemon stores images in containerd (DriverStatus ``driver-type`` is
    #: ``io.containerd.snapshotter.v1``): its pushes also go plain HTTP to ``localhost`` and
    #: loopback addresses, ``::1`` included (containerd remotes/docker ``MatchLocalhost``:
    #: https://github.com/containerd/containerd/blob/v1.7.20/remotes/docker/resolver.go)
    containerd: bool = False

    def is_insecure(
        self, host: str, resolve: Optional[Callable[[str], Sequence[str]]] = None
    ) -> bool:
        """Whether the daemon talks to ``host`` (``name[:port]``) insecurely, its own way (moby
        registry/config.go ``isSecureIndex``): an ``IndexConfigs`` entry for the host decides;
        else the host is insecure when an address it resolves to (or it, as an IP) lies in an
        insecure CIDR. So ``vm:5000``, with vm resolving to 127.0.0.1, is insecure by default,
        and ``registry.example:5000`` is so only when the daemon lists it."""
        import ipaddress

        if host in self.index_secure:
            return not self.index_secure[host]
        if self.containerd and _is_localhost(host):
            return True
        addresses = _addresses(host, resolve)
        networks = []
        for cidr in self.insecure_cidrs:
            try:
                networks.append(ipaddress.ip_network(cidr, strict=False))
            except ValueError:
                continue
        for address in addresses:
            try:
                ip = ipaddress.ip_address(address)
            except ValueError:
                continue
            if any(ip.version == net.version and ip in net for net in networks):
                return True
        return False


def _is_localhost(host: str) -> bool:
    """containerd's ``MatchLocalhost``: ``host`` (``name[:port]``, ``[v6]:port``) is
    ``localhost`` or a loopback IP, as written (no lookup)."""
    import ipaddress

    name = _host_name(host)
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _resolve(name: str) -> list[str]:
    import socket

    try:
        return sorted({str(info[4][0]) for info in socket.getaddrinfo(name, None)})
    except (OSError, UnicodeError):
        return []


def parse_registry_config(text: str) -> RegistryConfig:
    """``docker info --format '{{json .RegistryConfig}}'``, or the object ``push.
    REGISTRY_INFO_FORMAT`` makes of it with ``DriverStatus``; ValueError if it is neither."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    containerd = False
    if "RegistryConfig" in data:
        status = data.get("DriverStatus") or []
        containerd = isinstance(status, list) and any(
            isinstance(pair, list) and pair[1:2] == ["io.containerd.snapshotter.v1"]
            for pair in status
        )
        data = data["RegistryConfig"]
        if not isinstance(data, dict):
            raise ValueError("RegistryConfig is not a JSON object")
    cidrs = data.get("InsecureRegistryCIDRs") or []
    indexes = data.get("IndexConfigs") or {}
    if not isinstance(cidrs, list) or not isinstance(indexes, dict):
        raise ValueError("InsecureRegistryCIDRs or IndexConfigs has the wrong type")
    return RegistryConfig(
        tuple(str(c) for c in cidrs),
        {
            name: bool(entry.get("Secure", True))
            for name, entry in indexes.items()
            if isinstance(entry, dict)
        },
        containerd,
    )


def read_docker_contexts(
    environ: Mapping[str, str] = os.environ,
) -> tuple[tuple[str, Optional[str]], ...]:
    """``((name, docker host), ...)`` of the contexts ``docker context create`` stored in
    ``$DOCKER_CONFIG/contexts/meta/<sha256 of name>/meta.json`` (``Name``,
    ``Endpoints.docker.Host``); unreadable or malformed entries are skipped, ``default`` (never
    stored) is not listed. https://docs.docker.com/engine/manage-resources/contexts/"""
    meta = os.path.join(os.path.dirname(docker_config_path(environ)), "contexts", "meta")
    try:
        entries = sorted(os.listdir(meta))
    except OSError:
        return ()
    found = []
    for entry in entries:
        try:
            with open(os.path.join(meta, entry, "meta.json"), encoding="utf-8") as file:
                data = json.load(file)
        except (OSError, ValueError):
            continue
        name = data.get("Name") if isinstance(data, dict) else None
        if not isinstance(name, str) or not name:
            continue
        endpoints = data.get("Endpoints")
        endpoint = endpoints.get("docker") if isinstance(endpoints, dict) else None
        host = endpoint.get("Host") if isinstance(endpoint, dict) else None
        found.append((name, host if isinstance(host, str) and host else None))
    return tuple(found)


def docker_target(environ: Mapping[str, str], config: DockerConfig) -> DockerTarget:
    """Where docker will talk to, from the environment and its config (docker's precedence),
    with the docker contexts (whose builders --builder or BUILDX_BUILDER may name)."""
    return DockerTarget(
        host=environ.get("DOCKER_HOST") or None,
        context=environ.get("DOCKER_CONTEXT") or None,
        current_context=config.current_context,
        env_builder=environ.get("BUILDX_BUILDER") or None,
        contexts=read_docker_contexts(environ),
    )
