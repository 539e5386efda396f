"""proxy.py: the daemon's proxy rule (Go's golang.org/x/net/http/httpproxy, the cases of its
proxy_test.go re-stated), docker info's fields, and that ragbuild's own HTTP follows the daemon's
proxy settings, never the shell's (registry.py's requests, push_preflight.daemon_proxies' warnings, the
smoke test's polling). tests/e2e/test_proxy.py checks the rule against a real dockerd."""

from __future__ import annotations

import base64
import http.server
import json
import threading
import urllib.request

import pytest

import fakes
from ragbuild import manifest, proxy, push_preflight, registry
from ragbuild.docker_config import DockerConfig, DockerTarget
from ragbuild.errors import DockerUnavailable, PushFailed
from ragbuild.proxy import ProxySettings, proxy_for
from ragbuild.reference import parse_registry
from ragbuild.run.runner import Runner

P = "http://proxy.corp:3128"


def settings(http="", https="", no=""):
    return ProxySettings(http, https, no)


# --- the rule (Go's httpproxy) ------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, url",
    [
        ("127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("cache.corp.example.com:1234", "http://cache.corp.example.com:1234"),
        ("cache.corp.example.com", "http://cache.corp.example.com"),
        ("localhost", "http://localhost"),  # a single label is no scheme
        ("https://cache.corp.example.com", "https://cache.corp.example.com"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("socks5://127.0.0.1", "socks5://127.0.0.1"),
        ("user:pw@proxy:3128", "http://user:pw@proxy:3128"),
        ("", None),
    ],
)
def test_a_proxy_value_without_a_scheme_is_http(value, url):
    assert proxy.proxy_url(value) == url


@pytest.mark.parametrize(
    "config, url, want",
    [
        (
            settings(http="http.proxy.tld", https="secure.proxy.tld"),
            "http://insecure.tld/",
            "http://http.proxy.tld",
        ),  # http uses HTTP_PROXY
        (
            settings(http="http.proxy.tld", https="secure.proxy.tld"),
            "https://secure.tld/",
            "http://secure.proxy.tld",
        ),  # https uses HTTPS_PROXY
        (
            settings(http="http.proxy.tld", https="https://secure.proxy.tld"),
            "https://secure.tld/",
            "https://secure.proxy.tld",
        ),
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
        (
            settings(https=P, no="registry.corp:"),
            "https://registry.corp:5001/v2/",
            None,
        ),  # any port
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
        (
            settings(https=P, no="3.4"),
            "https://1.2.3.4/v2/",
            None,
        ),  # a domain suffix of an IP's text
        (settings(https=P, no="10.0.0.0/8"), "https://10.1.2.3:5000/v2/", None),
        (settings(https=P, no="10.0.0.0/8"), "https://11.1.2.3:5000/v2/", P),
        (settings(https=P, no="10.1.2.3/8"), "https://10.200.0.1/v2/", None),  # host bits allowed
        (settings(https=P, no="10.0.0.0/33"), "https://10.0.0.1/v2/", P),  # no CIDR: a domain
        (settings(https=P, no="[2001:db8::1]:5000"), "https://[2001:db8::1]:5000/v2/", None),
        (settings(https=P, no="[2001:db8::1]:5000"), "https://[2001:db8::1]:443/v2/", P),
        (settings(https=P, no="2001:db8::1"), "https://[2001:db8::1]:443/v2/", None),
        (settings(https=P, no="2001:db8::/32"), "https://[2001:db8:5::1]/v2/", None),
        (settings(https=P, no="::ffff:10.1.1.1"), "https://10.1.1.1/v2/", None),  # IPv4-mapped
        (
            settings(https="http://user:pw@proxy:3128"),
            "https://registry/v2/",
            "http://user:pw@proxy:3128",
        ),
    ],
)
def test_proxy_for_follows_gos_rule(config, url, want):
    assert proxy_for(url, config) == want


#: Go's TestUseProxy list: NO_PROXY and (host, proxied) for requests to port 80.
GO_NO_PROXY = (
    "foobar.com, .barbaz.net, *.wildcard.io, 192.168.1.1, 192.168.1.2:81, "
    "192.168.1.3:80, 10.0.0.0/30, 2001:db8::52:0:1, [2001:db8::52:0:2]:443, "
    "[2001:db8::52:0:3]:80, 2002:db8:a::45/64"
)


@pytest.mark.parametrize(
    "host, proxied",
    [
        ("localhost", False),
        ("127.0.0.1", False),
        ("127.0.0.2", False),
        ("[::1]", False),
        ("[::2]", True),
        ("192.168.1.1", False),
        ("192.168.1.2", True),
        ("192.168.1.3", False),
        ("192.168.1.4", True),
        ("10.0.0.2", False),
        ("[2001:db8::52:0:1]", False),
        ("[2001:db8::52:0:2]", True),
        ("[2001:db8::52:0:3]", False),
        ("[2002:db8:a::123]", False),
        ("[fe80::424b:c8be:1643:a1b6]", True),
        ("barbaz.net", True),
        ("www.barbaz.net", False),
        ("foobar.com", False),
        ("www.foobar.com", False),
        ("foofoobar.com", True),
        ("baz.com", True),
        ("localhost.net", True),
        ("local.localhost", True),
        ("barbarbaz.net", True),
        ("wildcard.io", True),
        ("nested.wildcard.io", False),
        ("awildcard.io", True),
    ],
)
def test_the_no_proxy_list_of_gos_own_tests(host, proxied):
    config = settings(http=P, no=GO_NO_PROXY)
    assert (proxy_for(f"http://{host}:80/", config) is not None) is proxied
    # and "*" leaves every one of them direct
    assert proxy_for(f"http://{host}:80/", settings(http=P, no="*")) is None


@pytest.mark.parametrize(
    "hostport, parts",
    [
        ("a:1", ("a", "1")),
        ("[::1]:80", ("::1", "80")),
        ("a:", ("a", "")),
        (":1", ("", "1")),
        ("a", ValueError),
        ("::1", ValueError),
        ("[::1]", ValueError),
        ("[::1]x:1", ValueError),
        ("a]:1", ValueError),
        ("[a:1", ValueError),
    ],
)
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


@pytest.mark.parametrize(
    "endpoint, remote",
    [
        (None, False),
        ("unix:///var/run/docker.sock", False),
        ("tcp://127.0.0.1:2375", False),
        ("tcp://localhost:2375", False),
        ("tcp://[::1]:2375", False),
        ("fd://", False),
        ("tcp://10.1.2.3:2376", True),
        ("tcp://build-host:2376", True),
        ("ssh://me@build-host", True),
    ],
)
def test_a_daemon_elsewhere_is_remote(endpoint, remote):
    assert proxy.remote_daemon(endpoint) is remote


# --- push_preflight.daemon_proxies: docker info, and the warnings -----------------------------------------


def said(capsys) -> list:
    """The lines on stderr other than the runner's ``+ command`` lines."""
    return [line for line in capsys.readouterr().err.splitlines() if not line.startswith("+ ")]


def prepared_plan(docker=None):
    """A push plan, of which daemon_proxies reads only ``docker`` (the daemon's target)."""

    class Plan:
        pass

    plan = Plan()
    plan.docker = docker
    return plan


def test_the_daemons_settings_are_asked_once_and_followed(fp, capsys):
    fakes.register_proxy_info(
        fp, stdout=json.dumps({"HTTPProxy": "http://p:1", "HTTPSProxy": "p:2", "NoProxy": ".corp"})
    )
    found = push_preflight.daemon_proxies(
        Runner(), prepared_plan(), {"https_proxy": "http://shell:9"}
    )
    assert found == ProxySettings("http://p:1", "p:2", ".corp")  # not the shell's
    assert fp.call_count(fakes.proxy_info_argv(fp)) == 1
    assert said(capsys) == []  # nothing to warn about


def test_masked_credentials_are_taken_from_the_same_proxy_in_the_shell(fp, capsys):
    fakes.register_proxy_info(
        fp,
        stdout=json.dumps(
            {"HTTPProxy": "http://xxxxx:xxxxx@p:3128", "HTTPSProxy": "http://xxxxx:xxxxx@p:3128"}
        ),
    )
    found = push_preflight.daemon_proxies(
        Runner(), prepared_plan(), {"HTTPS_PROXY": "http://me:s3cret@p:3128"}
    )
    assert found.https_proxy == found.http_proxy == "http://me:s3cret@p:3128"
    [err] = said(capsys)
    assert "s3cret" not in err
    assert (
        "warning: `docker info` hides the credentials of the daemon's proxy http://p:3128; "
        "ragbuild's registry checks use those of the same proxy in the shell's" in err
    )


def test_masked_credentials_nobody_gives_are_left_out_with_a_warning(fp, capsys):
    fakes.register_proxy_info(fp, stdout=json.dumps({"HTTPSProxy": "http://xxxxx:xxxxx@p:3128"}))
    found = push_preflight.daemon_proxies(
        Runner(), prepared_plan(), {"https_proxy": "http://me:other@elsewhere:3128"}
    )
    assert found.https_proxy == "http://p:3128"
    [err] = said(capsys)
    assert "without them" in err and "HTTP 407" in err


def test_a_proxy_urllib_cannot_use_is_a_warning(fp, capsys):
    fakes.register_proxy_info(fp, stdout=json.dumps({"HTTPSProxy": "socks5://p:1080"}))
    found = push_preflight.daemon_proxies(Runner(), prepared_plan(), {})
    assert registry.usable_proxy("https://r.example/v2/", found) is None  # direct
    assert said(capsys) == [
        "warning: the daemon's proxy socks5://p:1080 is not an http:// "
        "proxy, which ragbuild's registry checks cannot use: they go direct"
    ]


@pytest.mark.parametrize(
    "target, warned",
    [
        (DockerTarget(host="ssh://me@build-host"), "(ssh://me@build-host)"),
        (
            DockerTarget(context="far", contexts=(("far", "tcp://10.0.0.5:2376"),)),
            "(tcp://10.0.0.5:2376)",
        ),
        (DockerTarget(host="tcp://127.0.0.1:18634"), None),
        (DockerTarget(), None),
    ],
)
def test_a_remote_daemon_is_a_one_line_warning(fp, capsys, target, warned):
    fakes.register_proxy_info(fp)
    push_preflight.daemon_proxies(Runner(), prepared_plan(target), {})
    lines = said(capsys)
    if warned is None:
        assert lines == []
    else:
        assert len(lines) == 1 and lines[0].startswith(
            f"warning: the Docker daemon is on another machine {warned}: ragbuild checks the "
            "registry from here"
        )


def test_a_daemon_that_is_down_or_unreadable_stops_the_pre_flight(fp):
    fakes.register_proxy_info(
        fp,
        stdout="",
        returncode=1,
        stderr="Cannot connect to the Docker daemon at unix:///x.sock. "
        "Is the docker daemon running?\n",
    )
    with pytest.raises(DockerUnavailable, match="cannot reach the Docker daemon"):
        push_preflight.daemon_proxies(Runner(), prepared_plan(), {})
    fakes.register_proxy_info(fp, stdout="no json")
    with pytest.raises(PushFailed, match="cannot read the daemon's proxy settings"):
        push_preflight.daemon_proxies(Runner(), prepared_plan(), {})


# --- ragbuild's own requests: the daemon's proxy, never the shell's -----------------------------


class Recorder(http.server.BaseHTTPRequestHandler):
    """A proxy (or server) on loopback that records each request and answers ``answer``."""

    answer = 403

    def _record(self):
        self.server.seen.append((self.command, self.path, self.headers.get("Proxy-Authorization")))
        body = b"{}"
        self.send_response(self.answer)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_CONNECT = do_HEAD = _record

    def log_message(self, *args):
        pass


@pytest.fixture
def listen(registry_http):
    servers = []

    def start(answer=403):
        handler = type("Handler", (Recorder,), {"answer": answer})
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.seen = []
        threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True).start()
        servers.append(httpd)
        return httpd

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def shell_proxies(monkeypatch, url):
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(name, url)


def session(host, proxies, insecure=None):
    return registry.Session(
        parse_registry(f"{host}/team/app"),
        DockerConfig(path="/cfg.json").credentials(host),
        None,
        insecure,
        proxies=proxies,
    )


def test_a_loopback_registry_is_reached_directly_whatever_the_shell_says(listen, monkeypatch):
    """The user's case: http_proxy/https_proxy name a proxy that refuses everything, no
    no_proxy; the daemon has no proxy, so neither have ragbuild's requests."""
    shell = listen(403)
    shell_proxies(monkeypatch, f"http://127.0.0.1:{shell.server_address[1]}")
    served = listen(200)
    host = f"localhost:{served.server_address[1]}"
    assert registry.probe(session(host, proxy.DIRECT), lambda: True) is None
    assert shell.seen == [] and served.seen[-1][:2] == ("GET", "/v2/")


def test_the_daemons_proxy_carries_what_it_would_and_the_shells_nothing(listen, monkeypatch):
    """registry.invalid:5000 through the daemon's proxies: HTTPS as CONNECT to its
    HTTPS_PROXY (which refuses), then plain HTTP (an insecure registry) as a proxied GET to its
    HTTP_PROXY (which answers as the registry); the shell's proxy sees nothing."""
    shell = listen(403)
    shell_proxies(monkeypatch, f"http://127.0.0.1:{shell.server_address[1]}")
    https_proxy, http_proxy = listen(403), listen(200)
    daemon = ProxySettings(
        f"http://127.0.0.1:{http_proxy.server_address[1]}",
        f"127.0.0.1:{https_proxy.server_address[1]}",
        "other.invalid",
    )
    reached = session("registry.invalid:5000", daemon, insecure=True)
    assert registry.probe(reached, lambda: True) is None
    assert https_proxy.seen == [("CONNECT", "registry.invalid:5000", None)]
    assert http_proxy.seen == [("GET", "http://registry.invalid:5000/v2/", None)]
    assert shell.seen == []
    assert registry.describe(reached) == (
        "plain HTTP: an insecure registry of the daemon; through "
        f"the daemon's proxy {daemon.http_proxy}"
    )


def test_the_proxys_credentials_go_to_the_proxy(listen):
    http_proxy = listen(200)
    daemon = ProxySettings(f"http://me:s%40cret@127.0.0.1:{http_proxy.server_address[1]}")
    reached = session("registry.invalid:5000", daemon, insecure=True)
    reached.base = "http://registry.invalid:5000"
    assert reached.request(reached.base + "/v2/").status == 200
    expected = "Basic " + base64.b64encode(b"me:s@cret").decode()
    assert http_proxy.seen == [("GET", "http://registry.invalid:5000/v2/", expected)]
    assert "s%40cret" not in registry.describe(reached)
    # never on a request a redirect makes, which may go direct to another server
    request = urllib.request.Request("https://registry.invalid:5000/v2/")
    registry.DaemonProxy(ProxySettings("", daemon.http_proxy)).https_open(request)
    assert request.unredirected_hdrs == {"Proxy-authorization": expected}
    assert request.headers == {} and request._tunnel_host == "registry.invalid:5000"


def test_a_no_proxy_host_is_reached_directly(listen, monkeypatch):
    served = listen(200)
    refusing = listen(403)
    daemon = ProxySettings(f"http://127.0.0.1:{refusing.server_address[1]}", "", "127.0.0.0/8")
    host = f"127.0.0.1:{served.server_address[1]}"
    assert registry.probe(session(host, daemon), lambda: True) is None
    assert refusing.seen == []


def test_the_pre_flight_hands_the_daemons_settings_to_the_read_back(fp, monkeypatch):
    """push_preflight.prepare: docker info's settings reach the session, so the read-back's requests
    (registry.send, the fake registry here) carry them."""
    from registry_fakes import FakeRegistry, build_plan, serve

    fakes.register_proxy_info(fp, stdout=json.dumps({"HTTPSProxy": "http://p:3128"}))
    shell_proxies(monkeypatch, "http://shell:1")
    plan = build_plan("registry.example.com:5000/rag-worker")
    pushing = push_preflight.prepare(Runner(), plan)
    assert pushing.session.proxies == ProxySettings("", "http://p:3128", "")
    ref = plan.refs[0]
    serve(ref)
    manifest.read_manifest(pushing.session, ref.rsplit(":", 1)[1])
    assert FakeRegistry.current.proxies[-1][1] == ProxySettings("", "http://p:3128", "")


def test_the_smoke_test_polls_the_container_directly(listen, monkeypatch):
    shell = listen(403)
    shell_proxies(monkeypatch, f"http://127.0.0.1:{shell.server_address[1]}")
    container = listen(200)
    from ragbuild import sagemaker

    answer = sagemaker.http_request(container.server_address[1], "GET", "/ping", None, 2)
    assert (answer.status, answer.body) == (200, b"{}")
    assert shell.seen == [] and container.seen == [("GET", "/ping", None)]
