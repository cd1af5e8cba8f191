"""Requests through real proxies (tinyproxy, microsocks, dante, a SOCKS4a relay, an
https:// proxy) to a real nginx, on every driver: http and https targets, with and
without credentials, wrong credentials, IPv4 and IPv6."""

from __future__ import annotations

import asyncio

import pytest

import aioduct
from aioduct.errors import ProxyError
from aioduct.testing.nginx import SMALL_BODY, Nginx, TLSMaterial
from aioduct.testing.proxies import Dante, MicroSocks, Socks4Server, TinyProxy, TLSFront

from .conftest import USER
from .drivers import DRIVERS, echoed, fetch, fetch_all


def _proxy_url(kind: str, request: pytest.FixtureRequest) -> str:
    if kind == "http":
        return str(request.getfixturevalue("tinyproxy").url)
    if kind == "http-auth":
        return str(request.getfixturevalue("tinyproxy_auth").url)
    if kind == "https-auth":
        return str(request.getfixturevalue("https_proxy").url)
    if kind in ("socks5", "socks5h"):
        ms: MicroSocks = request.getfixturevalue("microsocks")
        return f"{kind}://127.0.0.1:{ms.port}"
    if kind == "socks5h-auth":
        return str(request.getfixturevalue("microsocks_auth").url)
    if kind in ("socks4", "dante-socks5"):
        dante: Dante = request.getfixturevalue("dante")
        scheme = "socks4" if kind == "socks4" else "socks5h"
        return f"{scheme}://127.0.0.1:{dante.port}"
    if kind == "socks4a":
        return str(request.getfixturevalue("socks4_server").url)
    raise AssertionError(kind)


KINDS = (
    "http",
    "http-auth",
    "https-auth",
    "socks5",
    "socks5h",
    "socks5h-auth",
    "socks4",
    "dante-socks5",
    "socks4a",
)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("driver", DRIVERS)
def test_http_and_https_targets_through_each_proxy(
    kind: str,
    driver: str,
    request: pytest.FixtureRequest,
    nginx: Nginx,
    tls_ca: TLSMaterial,
) -> None:
    proxy = _proxy_url(kind, request)
    pos = nginx.log_position()
    tag = f"?through={kind}-{driver}"  # isolates this test's lines in the shared log
    responses = fetch_all(
        driver,
        [
            nginx.http_url + "/small" + tag,
            nginx.https_url + "/small" + tag,
            nginx.https_url + "/echo/headers" + tag,
        ],
        proxy=proxy,
        verify=tls_ca.ca_pem_path,
    )
    assert [r.status for r in responses] == [200, 200, 200]
    assert responses[0].content == SMALL_BODY == responses[1].content
    # Through a tunnel the origin never sees Proxy-Authorization.
    assert echoed(responses[2])["proxy-authorization"] == ""
    assert len(nginx.requests_log(since=pos, uri_contains=tag, min_entries=3)) == 3


@pytest.mark.parametrize("driver", DRIVERS)
def test_forwarded_plain_http_carries_credentials_to_the_proxy_only(
    driver: str, fresh_tinyproxy: TinyProxy, nginx: Nginx
) -> None:
    response = fetch(driver, nginx.http_url + "/echo/headers", proxy=fresh_tinyproxy.url)
    assert response.status == 200
    # tinyproxy took the request in absolute form and removed the hop-by-hop field.
    assert echoed(response)["proxy-authorization"] == ""
    (line,) = fresh_tinyproxy.requests()
    assert line.startswith(f"GET {nginx.http_url}/echo/headers HTTP/1.1")


def test_https_target_negotiates_http2_inside_the_tunnel(
    tinyproxy_auth: TinyProxy, nginx: Nginx, tls_ca: TLSMaterial
) -> None:
    async def run() -> list[str]:
        async with aioduct.Client(proxy=tinyproxy_auth.url, verify=tls_ca.ca_pem_path) as c:
            rs = await asyncio.gather(*(c.get(nginx.https_url + "/small") for _ in range(5)))
            return [r.http_version for r in rs]

    assert asyncio.run(run()) == ["HTTP/2"] * 5
    with aioduct.BlockingClient(proxy=tinyproxy_auth.url, verify=tls_ca.ca_pem_path) as client:
        assert client.get(nginx.https_url + "/small").http_version == "HTTP/2"


def test_http2_inside_a_tunnel_through_an_https_proxy(
    https_proxy: TLSFront, nginx: Nginx, tls_ca: TLSMaterial
) -> None:
    for driver in DRIVERS:
        response = fetch(
            driver, nginx.https_url + "/small", proxy=https_proxy.url, verify=tls_ca.ca_pem_path
        )
        assert (response.status, response.http_version) == (200, "HTTP/2")


@pytest.mark.parametrize("driver", DRIVERS)
def test_wrong_credentials_on_connect_name_the_realm(
    driver: str, tinyproxy_auth: TinyProxy, nginx: Nginx, tls_ca: TLSMaterial
) -> None:
    proxy = tinyproxy_auth.url_with(USER, "wrong")
    with pytest.raises(ProxyError, match="requires authentication for realm 'Tinyproxy'") as info:
        fetch(driver, nginx.https_url + "/small", proxy=proxy, verify=tls_ca.ca_pem_path)
    assert "wrong" not in str(info.value)
    with pytest.raises(ProxyError, match="requires authentication"):
        no_credentials = f"http://127.0.0.1:{tinyproxy_auth.port}"
        fetch(driver, nginx.https_url + "/small", proxy=no_credentials, verify=tls_ca.ca_pem_path)


@pytest.mark.parametrize("driver", DRIVERS)
def test_wrong_socks5_credentials(driver: str, microsocks_auth: MicroSocks, nginx: Nginx) -> None:
    with pytest.raises(ProxyError, match="rejected the username/password"):
        fetch(driver, nginx.http_url + "/small", proxy=microsocks_auth.url_with(USER, "nope"))
    with pytest.raises(ProxyError, match="accepts none of the offered authentication methods"):
        fetch(
            driver, nginx.http_url + "/small", proxy=f"socks5h://127.0.0.1:{microsocks_auth.port}"
        )


@pytest.mark.parametrize("driver", DRIVERS)
def test_unreachable_proxy_is_a_proxy_error(driver: str, nginx: Nginx) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ProxyError, match=f"cannot connect to the proxy http://127.0.0.1:{port}"):
        fetch(driver, nginx.http_url + "/small", proxy=f"http://u:pw@127.0.0.1:{port}")


def test_socks_failure_reply_in_words(dante: Dante, nginx: Nginx) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there
    with pytest.raises(ProxyError, match=r"connection refused|rejected or failed"):
        fetch("blocking", f"http://127.0.0.1:{port}/", proxy=f"socks5h://127.0.0.1:{dante.port}")
    with pytest.raises(ProxyError, match="rejected or failed"):
        fetch("blocking", f"http://127.0.0.1:{port}/", proxy=f"socks4://127.0.0.1:{dante.port}")


def test_socks4a_sends_the_name_and_user_id(socks4_server: Socks4Server, nginx: Nginx) -> None:
    port = int(nginx.http_url.rsplit(":", 1)[1])
    url = f"socks4a://someone@127.0.0.1:{socks4_server.port}"
    assert fetch("blocking", f"http://localhost:{port}/small", proxy=url).content == SMALL_BODY
    url4 = f"socks4://127.0.0.1:{socks4_server.port}"
    assert fetch("async", f"http://localhost:{port}/small", proxy=url4).content == SMALL_BODY
    assert socks4_server.requests == [("someone", "localhost", port), ("", "127.0.0.1", port)]


def test_ipv6_proxy_and_ipv6_target(microsocks6: MicroSocks, tls_ca: TLSMaterial) -> None:
    from aioduct.testing.server import ScriptServer

    with ScriptServer(host="::1") as origin:
        origin.route_respond("/v6", body=b"over v6")
        for scheme in ("socks5", "socks5h"):
            proxy = f"{scheme}://[::1]:{microsocks6.port}"
            for driver in DRIVERS:
                response = fetch(driver, f"http://[::1]:{origin.port}/v6", proxy=proxy)
                assert response.content == b"over v6"


def test_ipv6_target_through_http_proxy(tinyproxy: TinyProxy) -> None:
    from aioduct.testing.server import ScriptServer

    with ScriptServer(host="::1") as origin:
        origin.route_respond("/v6", body=b"over v6")
        for driver in ("async", "blocking"):
            response = fetch(driver, f"http://[::1]:{origin.port}/v6", proxy=tinyproxy.url)
            assert response.content == b"over v6"


def test_tunnels_are_pooled_per_origin(
    fresh_tinyproxy: TinyProxy, nginx: Nginx, tls_ca: TLSMaterial
) -> None:
    urls = [nginx.https_url + "/small", nginx.alt_https_url + "/small"] * 3
    with aioduct.BlockingClient(
        proxy=fresh_tinyproxy.url, verify=tls_ca.ca_pem_path, http2=False
    ) as client:
        for url in urls:
            assert client.get(url).status == 200
    # One tunnel per origin, each reused: never one origin's tunnel for the other.
    https_port = nginx.https_url.rsplit(":", 1)[1]
    assert sorted(fresh_tinyproxy.connects()) == sorted(
        [f"localhost:{https_port}", f"127.0.0.1:{https_port}"]
    )


def test_per_scheme_proxies(
    tinyproxy: TinyProxy, microsocks: MicroSocks, nginx: Nginx, tls_ca: TLSMaterial
) -> None:
    proxies = {"http": tinyproxy.url, "https": microsocks.url}
    for driver in DRIVERS:
        responses = fetch_all(
            driver,
            [nginx.http_url + "/small", nginx.https_url + "/small"],
            proxies=proxies,
            verify=tls_ca.ca_pem_path,
        )
        assert [r.status for r in responses] == [200, 200]


def test_environment_proxy_on_every_driver(
    monkeypatch: pytest.MonkeyPatch, fresh_tinyproxy: TinyProxy, nginx: Nginx
) -> None:
    monkeypatch.setenv("http_proxy", fresh_tinyproxy.url)
    monkeypatch.setenv("NO_PROXY", "")
    for driver in DRIVERS:
        assert fetch(driver, nginx.http_url + "/small").status == 200
    assert len(fresh_tinyproxy.requests()) == 3
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    for driver in DRIVERS:
        assert fetch(driver, nginx.http_url + "/small").status == 200
    assert fetch("async", nginx.http_url + "/small", trust_env=False).status == 200
    assert len(fresh_tinyproxy.requests()) == 3  # all direct


def test_http_proxy_on_ipv6(nginx: Nginx, tls_ca: TLSMaterial) -> None:
    with TinyProxy(host="::1", auth=(USER, "pw6")) as proxy:
        assert proxy.url.startswith("http://proxyuser:pw6@[::1]:")
        for driver in DRIVERS:
            responses = fetch_all(
                driver,
                [nginx.http_url + "/small", nginx.https_url + "/small"],
                proxy=proxy.url,
                verify=tls_ca.ca_pem_path,
            )
            assert [r.content for r in responses] == [SMALL_BODY, SMALL_BODY]


def test_http3_is_never_tried_through_a_proxy(
    fresh_tinyproxy: TinyProxy, nginx: Nginx, tls_ca: TLSMaterial
) -> None:
    """QUIC is UDP, which these proxies do not relay: with HTTP/3 prior knowledge the
    request still takes the proxy (over TCP); version='3' says why it cannot."""
    options = {"proxy": fresh_tinyproxy.url, "verify": tls_ca.ca_pem_path}
    with aioduct.BlockingClient(http3_prior_knowledge=True, **options) as client:
        response = client.get(nginx.https_url + "/small")
        assert (response.status, response.http_version) == (200, "HTTP/2")
        with pytest.raises(ProxyError, match="version='3' cannot go through the proxy"):
            client.get(nginx.https_url + "/small", version="3")
    assert len(fresh_tinyproxy.connects()) == 1
