"""proxy.py: the daemon's proxy rule (Go's golang.org/x/net/http/httpproxy, the cases of its
proxy_test.go re-stated), docker info's fields, and that ragbuild's own HTTP follows the daemon's
proxy settings, never the shell's (access.py's requests, push.daemon_proxies' warnings, the
smoke test's polling). tests/e2e/test_proxy.py checks the rule against a real dockerd."""

from __future__ import annotations

import json

import pytest

from ragbuild import proxy
from ragbuild.proxy import ProxySettings, proxy_for

P = "http://proxy.corp:3128"


def settings(http="", https="", no=""):
    return ProxySettings(http, https, no)


# --- the rule (Go's httpproxy) ------------------------------------------------------------------

@pytest.mark.parametrize("value, url", [
    ("127.0.0.1:8080", "http://127.0.0.1:8080"),
    ("cache.corp.example.com:1234", "http://cache.corp.example.com:1234"),
    ("cache.corp.example.com", "http://cache.corp.example.com"),
    ("localhost", "http://localhost"),  # a single label is no scheme
    ("https://cache.corp.example.com", "https://cache.corp.example.com"),
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ("socks5://127.0.0.1", "socks5://127.0.0.1"),
    ("user:pw@proxy:3128", "http://user:pw@proxy:3128"),
    ("", None),
])
def test_a_proxy_value_without_a_scheme_is_http(value, url):
    assert proxy.proxy_url(value) == url


@pytest.mark.parametrize("config, url, want", [
    (settings(http="http.proxy.tld", https="secure.proxy.tld"), "http://insecure.tld/",
     "http://http.proxy.tld"),  # http uses HTTP_PROXY
    (settings(http="http.proxy.tld", https="secure.proxy.tld"), "https://secure.tld/",
     "http://secure.proxy.tld"),  # https uses HTTPS_PROXY
    (settings(http="http.proxy.tld", https="https://secure.proxy.tld"), "https://secure.tld/",
     "https://secure.proxy.tld"),
    (settings(http="http.proxy.tld"), "https://secure.tld/", None),  # no fallback to HTTP_PROXY
    (settings(https="secure.proxy.tld"), "http://insecure.tld/", None),  # nor the other way
    (settings(http="http.proxy.tld"), "ftp://insecure.tld/", None),
    (settings(), "https://example.com/", None),
    (settings(http="proxy", no="example.com"), "http://example.com/", None),
    (settings(http="proxy", no=".example.com"), "http://example.com/", "http://proxy"),
    (settings(http="proxy", no="ample.com"), "http://example.com/", "http://proxy"),
    (settings(http="proxy", no="example.com"), "http://foo.example.com/", None),
    (settings(http="proxy", no=".foo.com"), "http://example.com/", "http://proxy"),
    (settings(http="proxy", no=".示例.com"), "http://www.示例.com", None),
    (settings(http="proxy", no="xn--fsq092h.com"), "http://www.示例.com", None),
    (settings(http="proxy", no="示例.com"), "http://www.xn--fsq092h.com", None),
    # the port a URL has by its scheme counts for an entry with a port
    (settings(https=P, no="registry.corp:443"), "https://registry.corp/v2/", None),
    (settings(http=P, no="registry.corp:443"), "http://registry.corp/v2/", P),
    (settings(https=P, no="registry.corp:5000"), "https://registry.corp:5000/v2/", None),
    (settings(https=P, no="registry.corp:5000"), "https://registry.corp:5001/v2/", P),
    (settings(https=P, no="registry.corp:"), "https://registry.corp:5001/v2/", None),  # any port
    # case: entries and hosts compare lowercased, but only "localhost" itself is never proxied
    (settings(https=P, no="REGISTRY.Corp"), "https://registry.CORP:5000/v2/", None),
    (settings(https=P), "https://LOCALHOST:5000/v2/", P),
    (settings(https=P), "https://localhost:5000/v2/", None),
    (settings(https=P), "https://localhost/v2/", None),
    (settings(https=P), "https://localhost.corp:5000/v2/", P),
    (settings(https=P), "https://127.0.0.2:5000/v2/", None),
    (settings(https=P), "https://[::1]:5000/v2/", None),
    (settings(https=P), "https://[::ffff:127.0.0.1]:5000/v2/", None),
    (settings(https=P), "https://[::2]:5000/v2/", P),
    (settings(https=P, no=" a.corp , ,b.corp "), "https://b.corp/v2/", None),  # blanks trimmed
    (settings(https=P, no="*"), "https://anything.example/v2/", None),
    (settings(https=P, no="a.corp,*"), "https://anything.example/v2/", None),
    (settings(https=P, no="*.corp"), "https://corp/v2/", P),  # subdomains only
    (settings(https=P, no="*.corp"), "https://x.corp/v2/", None),
    (settings(https=P, no=":1"), "https://example.com/v2/", P),  # malformed: ignored
    (settings(https=P, no="3.4"), "https://1.2.3.4/v2/", None),  # a domain suffix of an IP's text
    (settings(https=P, no="10.0.0.0/8"), "https://10.1.2.3:5000/v2/", None),
    (settings(https=P, no="10.0.0.0/8"), "https://11.1.2.3:5000/v2/", P),
    (settings(https=P, no="10.1.2.3/8"), "https://10.200.0.1/v2/", None),  # host bits allowed
    (settings(https=P, no="10.0.0.0/33"), "https://10.0.0.1/v2/", P),  # no CIDR: a domain
    (settings(https=P, no="[2001:db8::1]:5000"), "https://[2001:db8::1]:5000/v2/", None),
    (settings(https=P, no="[2001:db8::1]:5000"), "https://[2001:db8::1]:443/v2/", P),
    (settings(https=P, no="2001:db8::1"), "https://[2001:db8::1]:443/v2/", None),
    (settings(https=P, no="2001:db8::/32"), "https://[2001:db8:5::1]/v2/", None),
    (settings(https=P, no="::ffff:10.1.1.1"), "https://10.1.1.1/v2/", None),  # IPv4-mapped
    (settings(https="http://user:pw@proxy:3128"), "https://registry/v2/",
     "http://user:pw@proxy:3128"),
])
def test_proxy_for_follows_gos_rule(config, url, want):
    assert proxy_for(url, config) == want


#: Go's TestUseProxy list: NO_PROXY and (host, proxied) for requests to port 80.
GO_NO_PROXY = ("foobar.com, .barbaz.net, *.wildcard.io, 192.168.1.1, 192.168.1.2:81, "
               "192.168.1.3:80, 10.0.0.0/30, 2001:db8::52:0:1, [2001:db8::52:0:2]:443, "
               "[2001:db8::52:0:3]:80, 2002:db8:a::45/64")


@pytest.mark.parametrize("host, proxied", [
    ("localhost", False), ("127.0.0.1", False), ("127.0.0.2", False), ("[::1]", False),
    ("[::2]", True), ("192.168.1.1", False), ("192.168.1.2", True), ("192.168.1.3", False),
    ("192.168.1.4", True), ("10.0.0.2", False), ("[2001:db8::52:0:1]", False),
    ("[2001:db8::52:0:2]", True), ("[2001:db8::52:0:3]", False), ("[2002:db8:a::123]", False),
    ("[fe80::424b:c8be:1643:a1b6]", True), ("barbaz.net", True), ("www.barbaz.net", False),
    ("foobar.com", False), ("www.foobar.com", False), ("foofoobar.com", True), ("baz.com", True),
    ("localhost.net", True), ("local.localhost", True), ("barbarbaz.net", True),
    ("wildcard.io", True), ("nested.wildcard.io", False), ("awildcard.io", True),
])
def test_the_no_proxy_list_of_gos_own_tests(host, proxied):
    config = settings(http=P, no=GO_NO_PROXY)
    assert (proxy_for(f"http://{host}:80/", config) is not None) is proxied
    # and "*" leaves every one of them direct
    assert proxy_for(f"http://{host}:80/", settings(http=P, no="*")) is None


@pytest.mark.parametrize("hostport, parts", [
    ("a:1", ("a", "1")), ("[::1]:80", ("::1", "80")), ("a:", ("a", "")), (":1", ("", "1")),
    ("a", ValueError), ("::1", ValueError), ("[::1]", ValueError), ("[::1]x:1", ValueError),
    ("a]:1", ValueError), ("[a:1", ValueError),
])
def test_split_host_port_as_go(hostport, parts):
    if parts is ValueError:
        with pytest.raises(ValueError):
            proxy.split_host_port(hostport)
    else:
        assert proxy.split_host_port(hostport) == parts


# --- docker info ---------------------------------------------------------------------------------

def test_docker_infos_fields_are_read():
    text = json.dumps({"HTTPProxy": "http://p:1", "HTTPSProxy": "", "NoProxy": "a,b"})
    assert proxy.parse_info(text) == ProxySettings("http://p:1", "", "a,b")
    assert proxy.parse_info('{"HTTPProxy":null}') == proxy.DIRECT


@pytest.mark.parametrize("text", ["", "[]", '{"HTTPProxy": 1}', "not json"])
def test_what_is_not_docker_infos_answer_is_refused(text):
    with pytest.raises(ValueError):
        proxy.parse_info(text)


def test_masked_credentials_are_found_and_never_described():
    masked = ProxySettings("http://xxxxx:xxxxx@p:3128", "http://xxxxx:xxxxx@p:3128", "x")
    assert masked.masked() == ("http://xxxxx:xxxxx@p:3128",)
    assert ProxySettings("http://u:real@p:3128").masked() == ()
    described = ProxySettings("http://u:secret@p:3128", "", ".corp").describe()
    assert described == "HTTP_PROXY=http://p:3128, NO_PROXY=.corp" and "secret" not in described
    assert proxy.DIRECT.describe() == "no proxy"


@pytest.mark.parametrize("endpoint, remote", [
    (None, False), ("unix:///var/run/docker.sock", False), ("tcp://127.0.0.1:2375", False),
    ("tcp://localhost:2375", False), ("tcp://[::1]:2375", False), ("fd://", False),
    ("tcp://10.1.2.3:2376", True), ("tcp://build-host:2376", True), ("ssh://me@build-host", True),
])
def test_a_daemon_elsewhere_is_remote(endpoint, remote):
    assert proxy.remote_daemon(endpoint) is remote
