"""reliability.md 1.3 and 1.4, the proxy advisories: each case as the test that would
have caught it (credential leaks to origins and other proxies, user headers in clear on
CONNECT, an https proxy's certificate name, an origin's 407, NO_PROXY after a redirect,
pool keys). CONNECT smuggling and SOCKS5 field lengths are in test_hostile.py."""

from __future__ import annotations

import pytest

import aioduct
from aioduct.errors import ProxyError
from aioduct.testing.nginx import Nginx, TLSMaterial
from aioduct.testing.proxies import TinyProxy, TLSFront
from aioduct.testing.server import Conn, ScriptServer, ServerRequest

from .conftest import PASSWORD, USER
from .drivers import DRIVERS, echoed, fetch
from .scripted import connect_proxy, head_fields


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("first", ["https", "http"])
def test_requests_cve_2023_32681_no_proxy_authorization_inside_the_tunnel(
    driver: str,
    first: str,
    fresh_tinyproxy: TinyProxy,
    nginx: Nginx,
    tls_script_server: ScriptServer,
    script_server: ScriptServer,
    tls_ca: TLSMaterial,
) -> None:
    """Proxy with credentials; origin A answers 302 to https://B/; the CONNECT to B
    carries Proxy-Authorization (tinyproxy let it through), the request to B does not."""
    origin = tls_script_server if first == "https" else script_server
    origin.route_respond(
        "/start", status=302, headers=[("Location", nginx.https_url + "/echo/headers")]
    )
    response = fetch(
        driver, origin.url + "/start", proxy=fresh_tinyproxy.url, verify=tls_ca.ca_pem_path
    )
    assert response.status == 200
    assert echoed(response)["proxy-authorization"] == ""
    assert origin.requests[0].header("proxy-authorization") is None
    https_port = nginx.https_url.rsplit(":", 1)[1]
    assert f"localhost:{https_port}" in fresh_tinyproxy.connects()


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("second", ["direct", "other-proxy"])
def test_axios_curl_6253_first_proxys_credentials_stay_with_it(
    driver: str, second: str, nginx: Nginx, tls_ca: TLSMaterial
) -> None:
    """http via P1 (credentials), https direct or via P2 (none); P1's origin redirects
    to https: neither P2 nor the origin sees P1's Proxy-Authorization."""
    with ScriptServer() as p1, ScriptServer() as p2:

        @p1.route("*")
        async def forward(conn: Conn, req: ServerRequest) -> None:
            location = nginx.https_url + "/echo/headers"
            await conn.send_response(302, [("Location", location), ("Content-Length", "0")])

        heads: list[bytes] = []
        connect_proxy(p2, heads)
        proxies = {"http": f"http://{USER}:{PASSWORD}@127.0.0.1:{p1.port}"}
        if second == "other-proxy":
            proxies["https"] = f"http://127.0.0.1:{p2.port}"
        response = fetch(driver, "http://first.test/", proxies=proxies, verify=tls_ca.ca_pem_path)
        assert response.status == 200
        assert echoed(response)["proxy-authorization"] == ""
        assert p1.requests[0].header("proxy-authorization") is not None
        if second == "other-proxy":
            (head,) = heads
            assert "proxy-authorization" not in head_fields(head)


@pytest.mark.parametrize("driver", DRIVERS)
def test_curl_2015_3153_user_headers_only_inside_the_tunnel(
    driver: str, script_server: ScriptServer, nginx: Nginx, tls_ca: TLSMaterial
) -> None:
    heads: list[bytes] = []
    connect_proxy(script_server, heads)
    headers = {"Authorization": "Bearer secret-token", "Cookie": "session=1", "X-Test": "t"}
    if driver == "blocking":
        with aioduct.BlockingClient(
            proxy=f"http://u:p@127.0.0.1:{script_server.port}",
            verify=tls_ca.ca_pem_path,
            headers=headers,
        ) as client:
            response = client.get(nginx.https_url + "/echo/headers")
    else:
        response = fetch(
            driver,
            nginx.https_url + "/echo/headers",
            proxy=f"http://u:p@127.0.0.1:{script_server.port}",
            verify=tls_ca.ca_pem_path,
            headers=headers,
        )
    (head,) = heads
    https_port = nginx.https_url.rsplit(":", 1)[1]
    assert head.startswith(f"CONNECT localhost:{https_port} HTTP/1.1\r\n".encode())
    assert set(head_fields(head)) == {"host", "proxy-authorization", "user-agent"}
    inside = echoed(response)
    assert inside["authorization"] == "Bearer secret-token"
    assert inside["cookie"] == "session=1"
    assert inside["proxy-authorization"] == ""


def test_urllib3_cve_2021_28363_https_proxy_certificate_name_is_verified(
    tinyproxy: TinyProxy, tls_ca: TLSMaterial, nginx: Nginx
) -> None:
    other = tls_ca.ca.issue_cert("proxy.other.test")
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    other.configure_cert(context)
    with TLSFront(("127.0.0.1", tinyproxy.port), context) as front:
        for driver in DRIVERS:
            with pytest.raises(
                ProxyError, match=r"TLS to the proxy failed.*not valid for 'localhost'"
            ):
                fetch(
                    driver, nginx.https_url + "/small", proxy=front.url, verify=tls_ca.ca_pem_path
                )
    # With a certificate for its name, the same proxy works.
    good = tls_ca.server_ssl_context()
    with TLSFront(("127.0.0.1", tinyproxy.port), good) as front:
        assert (
            fetch(
                "async", nginx.https_url + "/small", proxy=front.url, verify=tls_ca.ca_pem_path
            ).status
            == 200
        )


@pytest.mark.parametrize("driver", DRIVERS)
def test_an_origins_407_through_a_tunnel_is_just_a_response(
    driver: str, tinyproxy_auth: TinyProxy, tls_script_server: ScriptServer, tls_ca: TLSMaterial
) -> None:
    tls_script_server.route_respond(
        "/407",
        status=407,
        headers=[("Proxy-Authenticate", 'Basic realm="origin"')],
        body=b"the origin says 407",
    )
    response = fetch(
        driver, tls_script_server.url + "/407", proxy=tinyproxy_auth.url, verify=tls_ca.ca_pem_path
    )
    assert (response.status, response.content) == (407, b"the origin says 407")


@pytest.mark.parametrize("driver", DRIVERS)
def test_no_proxy_target_of_a_redirect_gets_no_proxy_credentials(
    driver: str, script_server: ScriptServer
) -> None:
    """A proxied origin redirects to a host NO_PROXY sends direct: the direct origin
    sees no Proxy-Authorization, and the proxy is not asked for it."""
    with ScriptServer() as proxy:

        @proxy.route("*")
        async def forward(conn: Conn, req: ServerRequest) -> None:
            location = f"http://127.0.0.1:{script_server.port}/landed"
            await conn.send_response(302, [("Location", location), ("Content-Length", "0")])

        script_server.route_respond("/landed", body=b"direct")
        proxies = {
            "all": f"http://{USER}:{PASSWORD}@127.0.0.1:{proxy.port}",
            "no_proxy": "127.0.0.1",
        }
        assert fetch(driver, "http://proxied.test/", proxies=proxies).content == b"direct"
        assert len(proxy.requests) == 1
        assert proxy.requests[0].target == "http://proxied.test/"
        assert script_server.requests[0].header("proxy-authorization") is None


def test_pool_never_reuses_a_direct_connection_for_a_proxied_request(
    script_server: ScriptServer, tinyproxy: TinyProxy
) -> None:
    """Same origin, one client direct and one through a proxy sharing nothing; and in
    one client, a proxied origin's connection is never another's (CVE-2026-3784 class:
    pool keys carry the proxy and its credentials -- see test_environment.py)."""
    script_server.route_respond("/x", body=b"x")
    with aioduct.BlockingClient(proxies={"all": tinyproxy.url, "no_proxy": "localhost"}) as client:
        # 127.0.0.1 goes through the proxy; localhost (same server) goes direct.
        assert client.get(f"http://127.0.0.1:{script_server.port}/x").content == b"x"
        assert client.get(f"http://localhost:{script_server.port}/x").content == b"x"
        assert client.get(f"http://127.0.0.1:{script_server.port}/x").content == b"x"
    targets = [r.target for r in script_server.requests]
    assert targets == ["/x", "/x", "/x"]  # the proxy passed origin-form on
    assert len(tinyproxy.requests()) >= 2
