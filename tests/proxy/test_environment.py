"""Which proxy a request takes: proxy=, proxies=, and the environment (trust_env)."""

from __future__ import annotations

import pytest

import aioduct
from aioduct.config import ClientConfig
from aioduct.proxy import ProxiedOrigin, Proxy, proxy_router
from aioduct.url import URL, Origin

CFG = ClientConfig()


def route(env: dict[str, str], url: str, config: ClientConfig = CFG) -> Proxy | None:
    router = proxy_router(config, env)
    return None if router is None else router.proxy_for(URL(url))


def p(url: str) -> Proxy:
    return Proxy.parse(url)


@pytest.mark.parametrize(
    ("env", "url", "expected"),
    [
        ({}, "http://a.test/", None),
        ({"HTTP_PROXY": "http://up:1"}, "http://a.test/", "http://up:1"),
        ({"HTTP_PROXY": "http://up:1"}, "https://a.test/", None),
        ({"HTTPS_PROXY": "http://sp:2"}, "https://a.test/", "http://sp:2"),
        (
            {"http_proxy": "http://low:1", "HTTP_PROXY": "http://up:1"},
            "http://a.test/",
            "http://low:1",
        ),
        (
            {"https_proxy": "http://low:2", "HTTPS_PROXY": "http://up:2"},
            "https://a.test/",
            "http://low:2",
        ),
        ({"http_proxy": "", "HTTP_PROXY": "http://up:1"}, "http://a.test/", "http://up:1"),
        # httpoxy: under CGI, HTTP_PROXY may come from a request's Proxy header
        ({"HTTP_PROXY": "http://evil:1", "REQUEST_METHOD": "GET"}, "http://a.test/", None),
        ({"http_proxy": "http://ok:1", "REQUEST_METHOD": "GET"}, "http://a.test/", "http://ok:1"),
        ({"HTTPS_PROXY": "http://sp:2", "REQUEST_METHOD": "GET"}, "https://a.test/", "http://sp:2"),
        # ALL_PROXY is the fallback of both
        ({"ALL_PROXY": "socks5h://all:3"}, "http://a.test/", "socks5h://all:3"),
        ({"all_proxy": "socks5h://all:3"}, "https://a.test/", "socks5h://all:3"),
        (
            {"ALL_PROXY": "socks5://all:3", "HTTPS_PROXY": "http://sp:2"},
            "https://a.test/",
            "http://sp:2",
        ),
        # NO_PROXY (lower case wins too)
        ({"ALL_PROXY": "http://all:3", "NO_PROXY": "a.test"}, "http://www.a.test/", None),
        (
            {"ALL_PROXY": "http://all:3", "no_proxy": "b.test", "NO_PROXY": "a.test"},
            "http://a.test/",
            "http://all:3",
        ),
        ({"ALL_PROXY": "http://all:3", "NO_PROXY": "*"}, "https://a.test/", None),
        ({"ALL_PROXY": "http://all:3", "NO_PROXY": "10.0.0.0/8"}, "http://10.2.3.4:8080/", None),
        ({"ALL_PROXY": "http://all:3", "NO_PROXY": "a.test:8080"}, "http://a.test:8080/", None),
        (
            {"ALL_PROXY": "http://all:3", "NO_PROXY": "a.test:8080"},
            "http://a.test/",
            "http://all:3",
        ),
        # a value without a scheme is an HTTP proxy
        ({"HTTP_PROXY": "proxy.corp:3128"}, "http://a.test/", "http://proxy.corp:3128"),
    ],
)
def test_environment(env: dict[str, str], url: str, expected: str | None) -> None:
    proxy = route(env, url)
    assert proxy == (None if expected is None else p(expected))


def test_trust_env_false_ignores_it_all() -> None:
    env = {"HTTP_PROXY": "http://up:1", "ALL_PROXY": "socks5://x:1", "HTTPS_PROXY": "http://s:1"}
    assert proxy_router(ClientConfig(trust_env=False), env) is None


def test_explicit_settings_win_and_the_environment_is_not_read() -> None:
    env = {"HTTP_PROXY": "bad url with spaces", "NO_PROXY": "*"}
    cfg = ClientConfig(proxy="http://mine:8080")
    assert route(env, "http://a.test/", cfg) == p("http://mine:8080")
    assert route(env, "https://a.test/", cfg) == p("http://mine:8080")
    cfg = ClientConfig(
        proxies={"https": "socks5h://s:1080", "all": "http://all:1", "no_proxy": "b.test"}
    )
    assert route(env, "https://a.test/", cfg) == p("socks5h://s:1080")
    assert route(env, "http://a.test/", cfg) == p("http://all:1")
    assert route(env, "http://x.b.test/", cfg) is None
    cfg = ClientConfig(proxy="http://mine:8080", proxies={"https": None})
    assert route(env, "https://a.test/", cfg) is None  # None: direct for that scheme
    assert route(env, "http://a.test/", cfg) == p("http://mine:8080")


def test_bad_environment_value_says_how_to_get_out() -> None:
    with pytest.raises(
        ValueError,
        match=r"HTTPS_PROXY 'ftp://u:\*\*\*@x:1' has the unsupported scheme 'ftp'.*"
        r"trust_env=False",
    ):
        proxy_router(CFG, {"HTTPS_PROXY": "ftp://u:secret@x:1"})


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"proxy": "ftp://x:1"}, ValueError, "unsupported scheme 'ftp'"),
        ({"proxy": "http://"}, ValueError, "names no host"),
        ({"proxy": "http://x:99999"}, ValueError, "not a valid proxy URL"),
        ({"proxy": "http://x:1/path"}, ValueError, "has a path"),
        ({"proxies": {"ftp": "http://x:1"}}, ValueError, "keys are 'http', 'https', 'all'"),
        ({"proxies": {"http": 3}}, TypeError, "must be a proxy URL string"),
        ({"proxies": "http://x:1"}, TypeError, "must be a dict"),
        ({"proxies": {"https": "socks9://x"}}, ValueError, "proxies\\['https'\\]"),
    ],
)
def test_bad_options(options: dict[str, object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        aioduct.Client(**options)


def test_proxy_url_parsing_and_redaction() -> None:
    proxy = Proxy.parse("SOCKS5H://us%40er:p%3Ass@Proxy.Example:1081")
    assert proxy == Proxy("socks5h", "proxy.example", 1081, "us@er", "p:ss")
    assert str(proxy) == "socks5h://proxy.example:1081"
    assert "p:ss" not in repr(proxy)
    assert Proxy.parse("http://[::1]").port == 80
    assert str(Proxy.parse("https://[::1]")) == "https://[::1]:443"
    assert Proxy.parse("socks4a://h").port == 1080
    assert Proxy.parse("http://u:pw@h:1").authorization == "Basic dTpwdw=="
    assert Proxy.parse("http://u@h:1").authorization == "Basic dTo="
    with pytest.raises(ValueError) as info:
        Proxy.parse("gopher://user:hunter2@h:1")
    assert "hunter2" not in str(info.value)


def test_config_with_proxies_round_trips() -> None:
    cfg = ClientConfig(proxy="http://u:p@h:1", proxies={"https": "socks5h://s:2", "no_proxy": "x"})
    assert cfg.proxies == (("https", "socks5h://s:2"), ("no_proxy", "x"))
    assert ClientConfig.decode(cfg.encode()) == cfg


def test_pool_keys() -> None:
    router = proxy_router(
        ClientConfig(proxies={"all": "http://u:p@px:3128", "no_proxy": "direct.test"})
    )
    assert router is not None
    forward = router.key(URL("http://a.test/"), None)
    assert forward == router.key(URL("http://b.test:8080/x"), None)  # one forward connection
    assert isinstance(forward, ProxiedOrigin) and not forward.tunnel
    assert (forward.host, forward.port) == ("px", 3128)
    tunnel_a = router.key(URL("https://a.test/"), None)
    tunnel_b = router.key(URL("https://b.test/"), None)
    assert tunnel_a != tunnel_b and isinstance(tunnel_a, ProxiedOrigin) and tunnel_a.tunnel
    # a request for h2c needs its own tunnel
    h2c = router.key(URL("http://a.test/"), "2")
    assert isinstance(h2c, ProxiedOrigin) and h2c.tunnel
    assert router.key(URL("https://direct.test/"), None) == Origin("https", "direct.test", 443)
    # other credentials, other connections (curl CVE-2026-3784)
    other = proxy_router(ClientConfig(proxy="http://u:other@px:3128"))
    assert other is not None
    assert other.key(URL("https://a.test/"), None) != tunnel_a
    assert other.key(URL("http://a.test/"), None) != forward
    assert router.key(URL("https://a.test/"), None) != Origin("https", "a.test", 443)


def test_environment_is_read_when_the_client_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("http_proxy", raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://first:1")
    client = aioduct.BlockingClient()
    monkeypatch.setenv("HTTP_PROXY", "http://second:2")
    try:
        assert client._engine().proxies is not None
        assert client._engine().proxies.http == p("http://first:1")  # type: ignore[union-attr]
    finally:
        client.close()
    monkeypatch.delenv("HTTP_PROXY")
    with aioduct.BlockingClient() as direct:
        assert direct._engine().proxies is None
