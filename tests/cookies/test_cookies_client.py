"""Cookies end to end: nginx's /set-cookie, and the scriptable server for the hostile
cases (several Set-Cookie lines, bad dates, huge cookies, other domains, cookies on a
302), through every entry point: Client, BlockingClient, streams, prepared requests,
aioduct.get and the local engine.

The leak cases of reliability.md §1.1 that concern cookies are named after their
advisories: a cookie from the jar, from ``cookies=`` and from a ``Cookie`` header each
stay on their side of an origin (or host) boundary.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import aioduct
from aioduct.testing.nginx import Nginx
from aioduct.testing.server import Conn, ScriptServer, ServerRequest


def echo(text: str) -> dict[str, str]:
    return dict(line.partition(": ")[::2] for line in text.splitlines())


class Driver:
    """One client of a kind, used the same way: ``get(url, **options)`` -> Response."""

    def __init__(self, kind: str, **options: Any) -> None:
        self.kind = kind
        if kind == "blocking":
            self.blocking = aioduct.BlockingClient(**options)
            self.client = self.blocking._client
        else:
            self.runner = asyncio.Runner()
            if kind == "local":
                options.setdefault("workers", 2)
                options["engine"] = "local"
            self.client = self.runner.run(self._make(options))

    @staticmethod
    async def _make(options: dict[str, Any]) -> aioduct.Client:
        return aioduct.Client(**options)

    def get(self, url: str, **options: Any) -> aioduct.Response:
        if self.kind == "blocking":
            return self.blocking.get(url, **options)
        return self.runner.run(self.client.get(url, **options))

    def stream_text(self, url: str, **options: Any) -> str:
        if self.kind == "blocking":
            with self.blocking.stream("GET", url, **options) as r:
                return r.read().decode()

        async def go() -> str:
            async with self.client.stream("GET", url, **options) as r:
                return (await r.aread()).decode()

        return self.runner.run(go())

    def send_text(self, url: str, **options: Any) -> str:
        if self.kind == "blocking":
            return self.blocking.send(self.blocking.build_request("GET", url, **options)).text
        request = self.client.build_request("GET", url, **options)
        return self.runner.run(self.client.send(request)).text

    def close(self) -> None:
        if self.kind == "blocking":
            self.blocking.close()
        else:
            self.runner.run(self.client.aclose())
            self.runner.close()


KINDS = ["async", "blocking", "local"]


@pytest.fixture(params=KINDS)
def make(request: pytest.FixtureRequest) -> Iterator[Callable[..., Driver]]:
    drivers: list[Driver] = []

    def factory(**options: Any) -> Driver:
        driver = Driver(request.param, **options)
        drivers.append(driver)
        return driver

    yield factory
    for driver in drivers:
        driver.close()


@pytest.fixture(params=["async", "blocking"])
def make_send(request: pytest.FixtureRequest) -> Iterator[Callable[..., Driver]]:
    """The send engine's clients only (the tests read or share ``client.cookies``)."""
    drivers: list[Driver] = []

    def factory(**options: Any) -> Driver:
        driver = Driver(request.param, **options)
        drivers.append(driver)
        return driver

    yield factory
    for driver in drivers:
        driver.close()


# -- nginx ------------------------------------------------------------------------------------


@pytest.mark.nginx
def test_jar_is_on_by_default(nginx: Nginx, make: Callable[..., Driver]) -> None:
    d = make()
    r = d.get(nginx.http_url + "/set-cookie")
    assert r.headers.get_list("set-cookie") == ["a=1; Path=/"]
    assert echo(d.get(nginx.http_url + "/echo/headers").text)["cookie"] == "a=1"
    # cookies are per host, not per port (RFC 6265 §8.5): the alt origin gets it too
    assert echo(d.get(nginx.alt_http_url + "/echo/headers").text)["cookie"] == "a=1"
    if d.kind != "local":
        jar = d.client.cookies
        assert jar is not None and [(c.name, c.domain, c.host_only) for c in jar] == [
            ("a", "127.0.0.1", True)
        ]
    else:
        with pytest.raises(TypeError, match="cookies live in the worker processes"):
            d.client.cookies  # noqa: B018


@pytest.mark.nginx
def test_cookies_false_keeps_no_jar(nginx: Nginx, make: Callable[..., Driver]) -> None:
    d = make(cookies=False)
    d.get(nginx.http_url + "/set-cookie")
    assert echo(d.get(nginx.http_url + "/echo/headers").text)["cookie"] == ""
    assert d.client.cookies is None
    # per-request cookies still go
    seen = echo(d.get(nginx.http_url + "/echo/headers", cookies={"b": "2"}).text)
    assert seen["cookie"] == "b=2"


@pytest.mark.nginx
def test_one_jar_shared_by_two_clients(nginx: Nginx, make_send: Callable[..., Driver]) -> None:
    jar = aioduct.CookieJar()
    first, second = make_send(cookies=jar), make_send(cookies=jar)
    first.get(nginx.http_url + "/set-cookie")
    assert echo(second.get(nginx.http_url + "/echo/headers").text)["cookie"] == "a=1"
    assert first.client.cookies is jar and second.client.cookies is jar
    jar.set("b", "2", domain="127.0.0.1", host_only=True)
    assert echo(first.get(nginx.http_url + "/echo/headers").text)["cookie"] == "a=1; b=2"


def test_a_jar_cannot_go_to_the_local_engine() -> None:
    with pytest.raises(TypeError, match="a CookieJar is a Python object"):
        aioduct.Client(engine="local", cookies=aioduct.CookieJar())
    with pytest.raises(TypeError, match=r"cookies= takes True, False or an aioduct\.CookieJar"):
        aioduct.Client(cookies={"a": "1"})


@pytest.mark.nginx
def test_per_request_cookies_join_the_jar_and_win_on_names(
    nginx: Nginx, make: Callable[..., Driver]
) -> None:
    d = make()
    d.get(nginx.http_url + "/set-cookie")
    url = nginx.http_url + "/echo/headers"
    assert echo(d.get(url, cookies={"b": "2"}).text)["cookie"] == "b=2; a=1"
    assert echo(d.get(url, cookies={"a": "mine"}).text)["cookie"] == "a=mine"
    assert (
        echo(d.get(url, cookies=[("c", "3")], headers={"Cookie": "h=1"}).text)["cookie"]
        == "h=1; c=3; a=1"
    )
    with pytest.raises(TypeError, match="to turn the jar off pass cookies=False"):
        d.get(url, cookies=False)
    with pytest.raises(ValueError, match="may not contain"):
        d.get(url, cookies={"a": "x;y"})


@pytest.mark.nginx
def test_a_same_origin_redirect_keeps_request_cookies_and_asks_the_jar_again(
    nginx: Nginx, make: Callable[..., Driver]
) -> None:
    d = make()
    d.get(nginx.http_url + "/set-cookie")
    r = d.get(nginx.http_url + "/redirect/302/echo/headers", cookies={"b": "2"})
    assert [h.status for h in r.history] == ([] if d.kind == "local" else [302])
    assert echo(r.text)["cookie"] == "b=2; a=1"  # the jar's not twice


@pytest.mark.nginx
def test_blocking_threads_share_the_jar(nginx: Nginx) -> None:
    with aioduct.BlockingClient() as client:
        seen: list[str] = []

        def work() -> None:
            for _ in range(20):
                client.get(nginx.http_url + "/set-cookie")
                seen.append(echo(client.get(nginx.http_url + "/echo/headers").text)["cookie"])

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert seen == ["a=1"] * 80
        assert client.cookies is not None and len(client.cookies) == 1


# -- the scriptable server -------------------------------------------------------------------


def cookie_of(req: ServerRequest) -> str | None:
    values = req.header_list("cookie")
    assert len(values) <= 1, f"more than one Cookie field: {values}"
    return values[0] if values else None


def test_several_set_cookie_lines_bad_dates_and_huge_cookies(
    script_server: ScriptServer, make_send: Callable[..., Driver]
) -> None:
    script_server.route_respond(
        "/set",
        headers=[
            ("Set-Cookie", "a=1"),
            ("Set-Cookie", "b=2; Expires=Blursday, 99 Smarch 20x6 25:61:61 GMT"),
            ("Set-Cookie", "c=3; Expires=Thu, 01 Jan 1970 00:00:01 GMT"),  # gone at once
            ("Set-Cookie", "d=4; Max-Age=18446744073709551616"),
            ("Set-Cookie", "big=" + "x" * 5000),  # over 4096: dropped
            ("Set-Cookie", "fits=" + "y" * 4091),  # exactly 4096
            ("Set-Cookie", "e=5; Path=/only-here"),
            ("Set-Cookie", "=nameless"),
            ("Set-Cookie", "; ; ;"),
        ],
    )
    script_server.route_respond("/echo")
    d = make_send()
    assert d.get(script_server.url + "/set").status == 200
    d.get(script_server.url + "/echo")
    sent = cookie_of(script_server.requests[-1])
    assert sent == "a=1; b=2; d=4; fits=" + "y" * 4091 + "; nameless"
    jar = d.client.cookies
    assert jar is not None and sorted(c.name for c in jar) == ["", "a", "b", "d", "e", "fits"]


def test_a_control_character_in_set_cookie_loses_nothing(
    script_server: ScriptServer, make_send: Callable[..., Driver]
) -> None:
    # curl CVE-2022-35252: such a cookie would make every later request a 400.
    script_server.route_raw(
        "/set",
        b"HTTP/1.1 200 OK\r\nSet-Cookie: a=b\x07c\r\nSet-Cookie: ok=1\r\n"
        b"Content-Length: 2\r\n\r\nhi",
    )
    script_server.route_respond("/echo")
    d = make_send()
    assert d.get(script_server.url + "/set").text == "hi"
    d.get(script_server.url + "/echo")
    assert cookie_of(script_server.requests[-1]) == "ok=1"


def test_domain_attributes_that_do_not_cover_the_host_are_refused(
    script_server: ScriptServer, make_send: Callable[..., Driver]
) -> None:
    # reliability §1.8: curl CVE-2014-3613 (IP hosts), CVE-2014-3620 (TLDs),
    # CVE-2013-1944 (tail match): from http://127.0.0.1 only host-only cookies stick.
    script_server.route_respond(
        "/set",
        headers=[
            ("Set-Cookie", "tld=1; Domain=com"),
            ("Set-Cookie", "psl=1; Domain=co.uk"),
            ("Set-Cookie", "other=1; Domain=example.com"),
            ("Set-Cookie", "partial=1; Domain=0.0.1"),
            ("Set-Cookie", "local=1; Domain=localhost"),
            ("Set-Cookie", "self=1; Domain=127.0.0.1"),
            ("Set-Cookie", "plain=1"),
        ],
    )
    script_server.route_respond("/echo")
    d = make_send()
    d.get(script_server.url + "/set")
    jar = d.client.cookies
    assert jar is not None
    assert sorted((c.name, c.domain, c.host_only) for c in jar) == [
        ("plain", "127.0.0.1", True),
        ("self", "127.0.0.1", True),
    ]
    d.get(f"http://localhost:{script_server.port}/echo")  # same server, other host name
    assert cookie_of(script_server.requests[-1]) is None


def test_localhost_may_not_set_cookies_for_other_hosts(
    script_server: ScriptServer, make_send: Callable[..., Driver]
) -> None:
    script_server.route_respond(
        "/set",
        headers=[("Set-Cookie", "l=1; Domain=localhost"), ("Set-Cookie", "ip=1; Domain=127.0.0.1")],
    )
    script_server.route_respond("/echo")
    d = make_send()
    d.get(f"http://localhost:{script_server.port}/set")
    jar = d.client.cookies
    assert jar is not None
    # "localhost" is a public suffix (the PSL's "*" rule) and the host itself: host-only
    assert [(c.name, c.domain, c.host_only) for c in jar] == [("l", "localhost", True)]
    d.get(script_server.url + "/echo")
    assert cookie_of(script_server.requests[-1]) is None


def test_cookies_set_on_a_redirect_stay_with_the_host_that_set_them_requests_cve_2015_2296(
    script_server: ScriptServer, make_send: Callable[..., Driver]
) -> None:
    other = f"http://localhost:{script_server.port}"

    @script_server.route("/fixate")
    async def fixate(conn: Conn, req: ServerRequest) -> None:
        await conn.send_response(
            302, [("Location", other + "/landing"), ("Set-Cookie", "sid=evil")]
        )

    @script_server.route("/here")
    async def here(conn: Conn, req: ServerRequest) -> None:
        await conn.send_response(302, [("Location", "/landing"), ("Set-Cookie", "step=1")])

    script_server.route_respond("/landing", body=b"landed")
    d = make_send()
    r = d.get(script_server.url + "/fixate")
    assert r.text == "landed" and str(r.url) == other + "/landing"
    assert cookie_of(script_server.requests[-1]) is None  # localhost never got sid
    jar = d.client.cookies
    assert jar is not None and [(c.name, c.domain) for c in jar] == [("sid", "127.0.0.1")]
    # a cookie set on a same-host 302 goes with the very next hop
    d.get(script_server.url + "/here")
    assert cookie_of(script_server.requests[-1]) == "sid=evil; step=1"


def test_a_cookie_deleted_on_a_redirect_is_not_sent_on_the_next_hop(
    script_server: ScriptServer, make_send: Callable[..., Driver]
) -> None:
    @script_server.route("/logout")
    async def logout(conn: Conn, req: ServerRequest) -> None:
        await conn.send_response(302, [("Location", "/echo"), ("Set-Cookie", "sid=; Max-Age=0")])

    script_server.route_respond("/login", headers=[("Set-Cookie", "sid=s3cret")])
    script_server.route_respond("/echo")
    d = make_send()
    d.get(script_server.url + "/login")
    d.get(script_server.url + "/logout")
    assert cookie_of(script_server.requests[-2]) == "sid=s3cret"  # /logout itself
    assert cookie_of(script_server.requests[-1]) is None


def test_secure_cookies_need_https(
    script_server: ScriptServer,
    tls_script_server: ScriptServer,
    tls_ca: Any,
    make_send: Callable[..., Driver],
) -> None:
    lines = [
        ("Set-Cookie", "s=1; Secure"),
        ("Set-Cookie", "__Secure-p=2; Secure"),
        ("Set-Cookie", "__Host-h=3; Secure; Path=/"),
        ("Set-Cookie", "plain=4"),
    ]
    for server in (script_server, tls_script_server):
        server.route_respond("/set", headers=lines)
        server.route_respond("/echo")
    d = make_send(verify=tls_ca.ca_pem_path)
    d.get(f"http://localhost:{script_server.port}/set")
    jar = d.client.cookies
    assert jar is not None and [c.name for c in jar] == ["plain"]  # none of the secure ones
    jar.clear()
    d.get(tls_script_server.url + "/set")
    assert sorted(c.name for c in jar) == ["__Host-h", "__Secure-p", "plain", "s"]
    d.get(tls_script_server.url + "/echo")
    assert cookie_of(tls_script_server.requests[-1]) == "s=1; __Secure-p=2; __Host-h=3; plain=4"
    d.get(f"http://localhost:{script_server.port}/echo")  # same host, plain http
    assert cookie_of(script_server.requests[-1]) == "plain=4"


def test_a_cookie_bomb_stays_bounded_curl_cve_2022_32205(
    script_server: ScriptServer, make_send: Callable[..., Driver]
) -> None:
    @script_server.route("/bomb")
    async def bomb(conn: Conn, req: ServerRequest) -> None:
        n = int(req.query)
        lines = [("Set-Cookie", f"c{n}_{i}={'z' * 4000}") for i in range(60)]
        await conn.send_response(200, lines)

    script_server.route_respond("/echo")
    d = make_send(max_response_head_bytes=1 << 20, max_response_headers=100)
    for n in range(20):  # 1200 cookies of 4 KB offered
        d.get(f"{script_server.url}/bomb?{n}")
    jar = d.client.cookies
    assert jar is not None and len(jar) == jar.max_cookies_per_site == 180
    d.get(script_server.url + "/echo")
    sent = cookie_of(script_server.requests[-1])
    assert sent is not None and len(sent) <= jar.max_header_size


# -- leaks across origins (reliability §1.1) --------------------------------------------------


def leak_servers(script_server: ScriptServer) -> tuple[str, str]:
    """A (127.0.0.1) that redirects ``/go?TARGET`` to TARGET, and B: the same server
    as ``localhost``, another host (and site) by name."""

    @script_server.route("/go")
    async def go(conn: Conn, req: ServerRequest) -> None:
        await conn.send_response(307, [("Location", req.query)])

    script_server.route_respond("/echo")
    return script_server.url, f"http://localhost:{script_server.port}"


@pytest.mark.parametrize("entry", ["get", "stream", "send", "oneshot"])
def test_no_cookie_source_crosses_to_another_host_aiohttp_cve_2026_47265_34518(
    script_server: ScriptServer, make_send: Callable[..., Driver], entry: str
) -> None:
    """The jar's, ``cookies=``'s and a Cookie header's cookies (with Authorization and
    Proxy-Authorization: aiohttp CVE-2026-34518) all stay behind on a redirect to another
    host, through every entry point (urllib3 CVE-2026-44431)."""
    a, b = leak_servers(script_server)
    d = make_send()
    jar = d.client.cookies
    assert jar is not None
    jar.set("jar", "1", domain="127.0.0.1")
    url = f"{a}/go?{b}/echo"
    options: dict[str, Any] = {
        "cookies": {"param": "2"},
        "headers": {
            "Cookie": "header=3",
            "Authorization": "Bearer s",
            "Proxy-Authorization": "Basic dXNlcjpwYXNz",
        },
    }
    if entry == "get":
        d.get(url, **options)
    elif entry == "stream":
        d.stream_text(url, **options)
    elif entry == "send":
        d.send_text(url, **options)
    else:
        aioduct.get(url, **options)
    first, last = script_server.requests[-2:]
    if entry != "oneshot":  # aioduct.get has a jar of its own, empty
        assert cookie_of(first) == "header=3; param=2; jar=1"
    assert last.path == "/echo" and last.header("host") == b.removeprefix("http://")
    assert cookie_of(last) is None
    assert last.header("authorization") is None and last.header("proxy-authorization") is None


def test_request_cookies_do_not_cross_to_another_port_curl_cve_2022_27776(
    script_server: ScriptServer, make_send: Callable[..., Driver]
) -> None:
    with ScriptServer() as other:
        other.route_respond("/echo")
        a, _ = leak_servers(script_server)
        d = make_send()
        jar = d.client.cookies
        assert jar is not None
        jar.set("jar", "1", domain="127.0.0.1", host_only=True)
        d.get(f"{a}/go?{other.url}/echo", cookies={"param": "2"}, headers={"Cookie": "h=3"})
        # the caller's cookies were for that origin; the jar's are the host's (RFC 6265 §8.5)
        assert cookie_of(other.requests[-1]) == "jar=1"


def test_request_cookies_do_not_cross_on_the_local_engine(script_server: ScriptServer) -> None:
    a, b = leak_servers(script_server)
    d = Driver("local")
    try:
        d.get(f"{a}/go?{b}/echo", cookies={"param": "2"}, headers={"Cookie": "h=3"})
    finally:
        d.close()
    first, last = script_server.requests[-2:]
    assert cookie_of(first) == "h=3; param=2" and cookie_of(last) is None


def test_a_host_header_does_not_choose_the_cookies_curl_cve_2026_6276(
    script_server: ScriptServer, make_send: Callable[..., Driver]
) -> None:
    script_server.route_respond("/set", headers=[("Set-Cookie", "mine=1")])
    script_server.route_respond("/echo")
    d = make_send()
    jar = d.client.cookies
    assert jar is not None
    jar.set("victim", "secret", domain="victim.test")
    d.get(script_server.url + "/set", headers={"Host": "victim.test"})
    d.get(script_server.url + "/echo", headers={"Host": "victim.test"})
    assert cookie_of(script_server.requests[-1]) == "mine=1"  # chosen by the URL's host
    assert jar.get("mine", domain="127.0.0.1") == "1" and jar.get("mine", "victim.test") is None
    d.get(script_server.url + "/echo")
    assert cookie_of(script_server.requests[-1]) == "mine=1"


class Record:
    """A layer without inline hooks: the client then runs the whole chain."""

    def __init__(self) -> None:
        self.cookies: list[str | None] = []

    async def __call__(self, request: aioduct.Request, call_next: Any) -> aioduct.Response:
        self.cookies.append(request.headers.get("cookie"))
        return await call_next(request)


@pytest.mark.nginx
def test_the_cookie_layer_in_a_chain_of_layers(
    nginx: Nginx, make_send: Callable[..., Driver]
) -> None:
    """Beside a layer of the user's (outer), the jar runs as a chained layer (its
    ``__call__``) and behaves as it does inline."""
    d = make_send()
    engine = d.client._engine
    record = Record()
    engine.layers = (record, *engine.layers)  # type: ignore[union-attr]
    assert engine._hooks is None  # type: ignore[union-attr]
    d.get(nginx.http_url + "/set-cookie")
    r = d.get(nginx.http_url + "/redirect/302/echo/headers", cookies={"b": "2"})
    assert echo(r.text)["cookie"] == "b=2; a=1"
    assert r.request is not None and r.request.headers.get("cookie") == "b=2"
    # the outer layer sees each hop before the jar adds its cookies
    assert record.cookies == [None, "b=2", "b=2"]
    r = d.get(nginx.http_url + "/cross/302/echo/headers", cookies={"b": "2"})
    assert echo(r.text)["cookie"] == "a=1"  # same host, other port: the jar's only


@pytest.mark.nginx
def test_cookies_over_http2(nginx: Nginx, tls_ca: Any, make_send: Callable[..., Driver]) -> None:
    d = make_send(verify=tls_ca.ca_pem_path)
    r = d.get(nginx.https_url + "/set-cookie")
    assert r.http_version == "HTTP/2"
    assert echo(d.get(nginx.https_url + "/echo/headers").text)["cookie"] == "a=1"
    # https://localhost and https://127.0.0.1 are other hosts
    assert echo(d.get(nginx.alt_https_url + "/echo/headers").text)["cookie"] == ""
