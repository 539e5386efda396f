"""Which proxy the Docker daemon uses for a URL, so that ragbuild's own registry requests (the
push pre-flight and read-back, registry.py) go the way the daemon's push goes, not the way the
shell's ``http_proxy`` would send them.

The daemon reaches registries through Go's ``http.ProxyFromEnvironment``: its own
HTTP_PROXY, HTTPS_PROXY and NO_PROXY (its environment, or daemon.json ``proxies`` since 23.0),
which ``docker info`` shows as ``HTTPProxy``, ``HTTPSProxy`` and ``NoProxy`` (``INFO_FORMAT``).
``proxy_for`` copies the rule of golang.org/x/net/http/httpproxy ``Config.ProxyFunc``
(https://pkg.go.dev/golang.org/x/net/http/httpproxy, proxy.go):

* an ``https`` URL uses HTTPS_PROXY only, an ``http`` URL HTTP_PROXY only (no fallback);
* a proxy value without a scheme (``proxy:3128``) is ``http://proxy:3128``;
* ``localhost`` (exactly; ``LOCALHOST`` is not it) and loopback IPs are never proxied;
* NO_PROXY is a comma list, case-insensitive, blanks trimmed: ``*`` (nothing is proxied), an IP
  or CIDR (``10.0.0.0/8``), an IP with a port (``1.2.3.4:80``, ``[2001:db8::1]:443``), a domain
  (``example.com``: it and its subdomains), ``.example.com`` or ``*.example.com`` (subdomains
  only), a domain with a port (``example.com:5000``: that port only); a port-less URL has its
  scheme's port (80, 443). A domain entry is a suffix match on the host's text, IPs included.

The daemon masks a proxy's credentials in ``docker info`` (moby ``MaskCredentials``: user and
password both ``xxxxx``): ``masked``. Pure: no I/O; push.py asks docker and warns.
"""

from __future__ import annotations

import ipaddress
import json
import re
import urllib.parse
from dataclasses import dataclass
from typing import Optional, Union
from collections.abc import Mapping

from ragbuild.run.command import Command, Kind

#: ``docker info --format`` for the three fields, as one JSON object (docker 20.10 and newer).
INFO_FORMAT = (
    '{"HTTPProxy":{{json .HTTPProxy}},"HTTPSProxy":{{json .HTTPSProxy}},'
    '"NoProxy":{{json .NoProxy}}}'
)
#: What ``docker info`` shows in place of a proxy's user and password.
MASK = "xxxxx"
#: The port of a URL without one (Go httpproxy ``portMap``).
PORTS = {"http": "80", "https": "443", "socks5": "1080"}
#: The proxy schemes Go's parseProxy keeps as given; anything else gets ``http://`` put in front.
PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")

IP = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


@dataclass(frozen=True)
class ProxySettings:
    """The daemon's proxy settings, as ``docker info`` shows them ("" when unset)."""

    http_proxy: str = ""
    https_proxy: str = ""
    no_proxy: str = ""

    @property
    def any(self) -> bool:
        return bool(proxy_url(self.http_proxy) or proxy_url(self.https_proxy))

    def masked(self) -> tuple[str, ...]:
        """The proxy URLs whose credentials ``docker info`` masked (``xxxxx``)."""
        found = []
        for value in (self.https_proxy, self.http_proxy):
            url = proxy_url(value)
            if url and MASK in (urllib.parse.urlsplit(url).password or "") and url not in found:
                found.append(url)
        return tuple(found)

    def describe(self) -> str:
        """``HTTPS_PROXY=http://proxy:3128, NO_PROXY=.corp``, or ``no proxy``; credentials are
        never shown."""
        parts = [
            f"{name}={without_credentials(value) if name != 'NO_PROXY' else value}"
            for name, value in (
                ("HTTP_PROXY", self.http_proxy),
                ("HTTPS_PROXY", self.https_proxy),
                ("NO_PROXY", self.no_proxy),
            )
            if value
        ]
        return ", ".join(parts) if self.any else "no proxy"


DIRECT = ProxySettings()


def parse_info(text: str) -> ProxySettings:
    """``docker info --format INFO_FORMAT``'s answer; ValueError when it is not that."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    values = [data.get(key) or "" for key in ("HTTPProxy", "HTTPSProxy", "NoProxy")]
    if not all(isinstance(value, str) for value in values):
        raise ValueError("HTTPProxy, HTTPSProxy or NoProxy is not a string")
    return ProxySettings(*values)


def proxy_url(value: str) -> Optional[str]:
    """A proxy setting as Go's ``parseProxy`` reads it: None when empty; a URL whose scheme is
    one of ``PROXY_SCHEMES`` as it is; anything else with ``http://`` in front."""
    value = value or ""
    if not value:
        return None
    match = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", value)
    if match and match[1].lower() in PROXY_SCHEMES:
        return value
    return "http://" + value


def split_host_port(hostport: str) -> tuple[str, str]:
    """Go's ``net.SplitHostPort``: ``(host, port)`` of ``host:port`` or ``[v6]:port``, the port
    unchecked; ValueError when there is no port or the brackets are wrong."""
    colon = hostport.rfind(":")
    if colon < 0:
        raise ValueError("missing port in address")
    start, end_search = 0, 0
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise ValueError("missing ']' in address")
        if end + 1 == len(hostport):
            raise ValueError("missing port in address")
        if end + 1 != colon:
            raise ValueError(
                "too many colons in address"
                if hostport[end + 1] == ":"
                else "missing port in address"
            )
        host = hostport[1:end]
        start, end_search = 1, end + 1
    else:
        host = hostport[:colon]
        if ":" in host:
            raise ValueError("too many colons in address")
    if "[" in hostport[start:]:
        raise ValueError("unexpected '[' in address")
    if "]" in hostport[end_search:]:
        raise ValueError("unexpected ']' in address")
    return host, hostport[colon + 1 :]


def url_host_port(url: str) -> tuple[str, str, str]:
    """``(scheme, host, port)`` of a URL as Go's ``url.URL`` gives them (``Hostname()``,
    ``Port()``: the host's text unchanged, brackets off, "" for no port)."""
    parts = urllib.parse.urlsplit(url)
    hostport = parts.netloc.rpartition("@")[2]
    host, port = hostport, ""
    colon = host.rfind(":")
    if colon >= 0 and re.fullmatch(r":[0-9]*", host[colon:]):
        host, port = host[:colon], host[colon + 1 :]
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return parts.scheme.lower(), host, port


def parse_ip(text: str, zone: bool = False) -> Optional[IP]:
    """An IPv4 or IPv6 address as Go parses one (``net.ParseIP``; ``netip.ParseAddr`` with
    ``zone``, whose zone is dropped), an IPv4-mapped IPv6 address as its IPv4; else None."""
    if "%" in text:
        if not zone:
            return None
        text = text.split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _idna(host: str) -> str:
    """Go's ``idnaASCII``: an ASCII host unchanged, else its IDNA form (as given when that
    fails)."""
    if host.isascii():
        return host
    try:
        return ".".join(
            label.encode("idna").decode("ascii") if label and not label.isascii() else label
            for label in host.split(".")
        )
    except UnicodeError:
        return host


@dataclass(frozen=True)
class _Rule:
    """One NO_PROXY entry: ``kind`` is "all", "cidr", "ip" or "domain"."""

    kind: str
    network: Optional[Union[ipaddress.IPv4Network, ipaddress.IPv6Network]] = None
    ip: Optional[IP] = None
    domain: str = ""  # with a leading "."
    port: str = ""  # "": any port
    match_host: bool = False  # the domain itself matches too (no leading "." given)

    def matches(self, host: str, port: str, ip: Optional[IP]) -> bool:
        if self.kind == "all":
            return True
        if self.kind == "cidr":
            assert self.network is not None
            return ip is not None and ip.version == self.network.version and ip in self.network
        if self.kind == "ip":
            return ip == self.ip and (not self.port or self.port == port)
        if host.endswith(self.domain) or self.match_host and host == self.domain[1:]:
            return not self.port or self.port == port
        return False


def _cidr(entry: str) -> Optional[Union[ipaddress.IPv4Network, ipaddress.IPv6Network]]:
    """``net.ParseCIDR``: an address, "/", a decimal prefix length (host bits allowed)."""
    address, slash, bits = entry.partition("/")
    if not slash or not re.fullmatch(r"0|[1-9][0-9]{0,2}", bits) or "%" in address:
        return None
    try:
        ipaddress.ip_address(address)
        return ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return None


def no_proxy_rules(no_proxy: str) -> tuple[_Rule, ...]:
    """NO_PROXY as Go's ``config.init`` reads it (module docstring): the rules, in order; an
    entry ``*`` makes it ``(all,)``; malformed entries are left out."""
    rules = []
    for entry in no_proxy.split(","):
        entry = entry.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return (_Rule("all"),)
        network = _cidr(entry)
        if network is not None:
            rules.append(_Rule("cidr", network=network))
            continue
        try:
            host, port = split_host_port(entry)
            if not host:
                continue
            if host.startswith("[") and host.endswith("]"):
                host = host[1:-1]
        except ValueError:
            host, port = entry, ""
        ip = parse_ip(host)
        if ip is not None:
            rules.append(_Rule("ip", ip=ip, port=port))
            continue
        if not host:
            continue
        if host.startswith("*."):
            host = host[1:]
        match_host = not host.startswith(".")
        if match_host:
            host = "." + host
        rules.append(_Rule("domain", domain=_idna(host), port=port, match_host=match_host))
    return tuple(rules)


def use_proxy(host: str, port: str, no_proxy: str) -> bool:
    """Go's ``useProxy`` for ``host`` (as in the URL, IDNA applied) and ``port``: never for
    ``localhost`` or a loopback IP; else unless a NO_PROXY rule matches."""
    if host == "localhost":
        return False
    ip = parse_ip(host, zone=True)
    if ip is not None and ip.is_loopback:
        return False
    lowered = host.strip().lower()
    rules = no_proxy_rules(no_proxy)
    if ip is not None and any(r.matches(lowered, port, ip) for r in rules if r.kind != "domain"):
        return False
    return not any(r.matches(lowered, port, ip) for r in rules if r.kind in ("domain", "all"))


def proxy_for(url: str, settings: ProxySettings) -> Optional[str]:
    """The proxy URL the daemon would send a request for ``url`` through, or None for direct
    (Go httpproxy ``proxyForURL``: the scheme's proxy, unless ``use_proxy`` says no)."""
    scheme, host, port = url_host_port(url)
    if scheme == "https":
        proxy = proxy_url(settings.https_proxy)
    elif scheme == "http":
        proxy = proxy_url(settings.http_proxy)
    else:
        return None
    if proxy is None:
        return None
    if not use_proxy(_idna(host), port or PORTS.get(scheme, ""), settings.no_proxy):
        return None
    return proxy


def without_credentials(url: str) -> str:
    """``url`` without its user and password (for messages, and for a proxy whose credentials
    ``docker info`` masked and no one gave)."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def with_credentials_from(proxy: str, environ: Mapping[str, str]) -> Optional[str]:
    """``proxy``, masked by ``docker info``, with the credentials of the same proxy (scheme,
    host and port) in the shell's ``https_proxy``/``http_proxy`` (either case), or None."""
    want = urllib.parse.urlsplit(proxy)
    for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        given = proxy_url(environ.get(name, ""))
        if not given:
            continue
        have = urllib.parse.urlsplit(given)
        if (
            (have.scheme, have.hostname, have.port) == (want.scheme, want.hostname, want.port)
            and have.password
            and MASK not in have.password
        ):
            return given
    return None


def remote_daemon(endpoint: Optional[str]) -> bool:
    """Whether the daemon at ``endpoint`` (DOCKER_HOST or a context's host; None: the local
    socket) runs on another machine: ``ssh://``, or ``tcp://`` to a host that is not loopback."""
    if not endpoint:
        return False
    scheme, host, _ = url_host_port(endpoint)
    if scheme == "ssh":
        return True
    if scheme not in ("tcp", "http", "https"):
        return False  # unix://, fd://, npipe://: this machine
    ip = parse_ip(host)
    return not (host.lower() == "localhost" or ip is not None and ip.is_loopback)


def proxy_command() -> Command:
    """The daemon's proxy settings (``docker info``: HTTPProxy, HTTPSProxy, NoProxy), which
    ragbuild's own registry requests follow (proxy.py). Asked once, by the push pre-flight
    (and doctor), just before the first registry request; a dry run takes it as no proxy."""
    return Command(
        ("docker", "info", "--format", INFO_FORMAT),
        check=False,
        kind=Kind.PROBE,
        assume=json.dumps({"HTTPProxy": "", "HTTPSProxy": "", "NoProxy": ""}),
    )
