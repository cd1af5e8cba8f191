"""reliability.md 1.1: no credential crosses to another origin on a redirect.

A matrix over where the credential came from (auth=, Bearer, a raw header in any case,
URL user info, Digest, netrc), how the origin changes (another port, another host, https
-> http on the same host), the redirect status, and the public entry point (request,
stream, send of a built request, the blocking client, the one-shot helper) -- urllib3
CVE-2026-44431 was one entry point that skipped the stripping.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import aioduct
from aioduct.testing.nginx import TLSMaterial
from aioduct.testing.server import Conn, ScriptServer, ServerRequest

from .digest_origin import DigestOrigin

SENSITIVE = ("authorization", "cookie", "proxy-authorization")


async def tell(conn: Conn, req: ServerRequest) -> None:
    await conn.send_response(200, [], b"reached")


@pytest.fixture
def target() -> Iterator[ScriptServer]:
    """Origin B: records what reaches it."""
    srv = ScriptServer().start()
    srv.add_route("/who", tell)
    try:
        yield srv
    finally:
        srv.close()


def leaked(srv: ScriptServer) -> list[tuple[str, str]]:
    return [(n, v) for r in srv.requests for n in SENSITIVE if (v := r.header(n)) is not None]


def add_redirects(srv: ScriptServer, location: str) -> None:
    for status in (301, 302, 303, 307, 308):
        srv.route_respond(f"/r{status}", status, [("Location", location)])


@pytest.fixture(params=["other-port", "other-host"])
def source(
    request: pytest.FixtureRequest, script_server: ScriptServer, target: ScriptServer
) -> ScriptServer:
    """Origin A (http://127.0.0.1:P), redirecting to B on another port of the same host
    or on another host name (localhost)."""
    host = "127.0.0.1" if request.param == "other-port" else "localhost"
    add_redirects(script_server, f"http://{host}:{target.port}/who")
    script_server.add_route("/who", tell)
    return script_server


CREDENTIALS: dict[str, dict[str, object]] = {
    "auth-tuple": {"auth": ("user", "pass")},
    "bearer": {"auth": aioduct.BearerAuth("tok")},
    "header": {"headers": {"Authorization": "Bearer raw"}},
    "header-lower": {"headers": {"authorization": "Bearer raw"}},
    "header-mixed": {"headers": {"aUtHoRiZaTiOn": "Bearer raw"}},
    "cookie-and-proxy": {"headers": {"Cookie": "s=1", "Proxy-Authorization": "Basic eA=="}},
    "digest": {"auth": aioduct.DigestAuth("Mufasa", "Circle of Life")},
}


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("kind", list(CREDENTIALS))
async def test_matrix_on_client_request(
    source: ScriptServer, target: ScriptServer, status: int, kind: str
) -> None:
    async with aioduct.Client() as client:
        r = await client.post(f"{source.url}/r{status}", content=b"x", **CREDENTIALS[kind])  # type: ignore[arg-type]
    assert r.content == b"reached"
    assert leaked(target) == []


@pytest.mark.parametrize("entry", ["stream", "send", "blocking", "blocking-stream", "oneshot"])
def test_every_entry_point(source: ScriptServer, target: ScriptServer, entry: str) -> None:
    url = f"{source.url}/r307"
    headers = {"Authorization": "Bearer raw", "Cookie": "s=1", "Proxy-Authorization": "x"}

    def blocking() -> bytes:
        with aioduct.BlockingClient() as client:
            return client.get(url, headers=headers).content

    def blocking_stream() -> bytes:
        with aioduct.BlockingClient() as client, client.stream("GET", url, headers=headers) as r:
            return r.read()

    def oneshot() -> bytes:
        return aioduct.get(url, headers=headers).content

    async def stream() -> bytes:
        async with aioduct.Client() as client, client.stream("GET", url, headers=headers) as r:
            return await r.aread()

    async def send() -> bytes:
        async with aioduct.Client() as client:
            return (await client.send(client.build_request("GET", url, headers=headers))).content

    runs: dict[str, Callable[[], bytes]] = {
        "blocking": blocking,
        "blocking-stream": blocking_stream,
        "oneshot": oneshot,
    }
    if entry in runs:
        body = runs[entry]()
    else:
        body = aioduct.run(stream() if entry == "stream" else send())
    assert body == b"reached" and leaked(target) == []


async def test_url_userinfo_and_referer(source: ScriptServer, target: ScriptServer) -> None:
    """curl CVE-2022-27774 (credentials from the URL) and CVE-2021-22876 (Referer)."""
    url = f"http://user:p%40ss@127.0.0.1:{source.port}/r302#frag"
    async with aioduct.Client(referer=True) as client:
        assert (await client.get(url)).content == b"reached"
    assert leaked(target) == []
    referer = target.requests[0].header("referer") or ""
    assert "user" not in referer and "ss@" not in referer and "frag" not in referer


async def test_relative_redirect_keeps_the_host(script_server: ScriptServer) -> None:
    """curl CVE-2020-8169: a password with '@' must not leak into the next hop's host."""
    script_server.route_respond("/start", 302, [("Location", "/next")])
    script_server.route_respond("/next", body=b"here")
    url = f"http://u:p%40evil.test@127.0.0.1:{script_server.port}/start"
    async with aioduct.Client() as client:
        r = await client.get(url)
    assert r.content == b"here" and str(r.url) == f"http://127.0.0.1:{script_server.port}/next"
    assert script_server.requests[1].header("host") == f"127.0.0.1:{script_server.port}"


async def test_https_to_http_on_the_same_host(
    tls_script_server: ScriptServer, tls_ca: TLSMaterial, target: ScriptServer
) -> None:
    """requests CVE-2018-18074: same host, https -> http: no Authorization (HSTS has
    nothing to say here: the https origin sent no Strict-Transport-Security)."""
    add_redirects(tls_script_server, f"http://localhost:{target.port}/who")
    for kind in ("auth-tuple", "header", "digest"):
        async with aioduct.Client(verify=tls_ca.ca_pem_path) as client:
            r = await client.get(tls_script_server.url + "/r302", **CREDENTIALS[kind])  # type: ignore[arg-type]
            assert r.content == b"reached"
    assert leaked(target) == []


async def test_bearer_and_a_non_http_location(script_server: ScriptServer) -> None:
    """curl CVE-2025-14524: a redirect to another scheme is refused, the token goes nowhere."""
    script_server.route_respond("/ftp", 302, [("Location", "ftp://127.0.0.1/x")])
    async with aioduct.Client(auth=aioduct.BearerAuth("tok")) as client:
        with pytest.raises(aioduct.RedirectError, match="ftp://"):
            await client.get(script_server.url + "/ftp")
    assert len(script_server.requests) == 1


async def test_digest_protected_target_after_redirect(
    source: ScriptServer, target: ScriptServer
) -> None:
    """aiohttp CVE-2026-54276: B's own Digest challenge is not answered with A's auth."""
    protected = DigestOrigin(target, "/who-digest")
    add_redirects(source, f"http://127.0.0.1:{target.port}/who-digest")
    async with aioduct.Client(auth=aioduct.DigestAuth("Mufasa", "Circle of Life")) as client:
        r = await client.get(source.url + "/r307")
    assert r.status == 401 and protected.log == ["none"] and leaked(target) == []


def test_netrc_of_a_is_not_sent_to_b(
    source: ScriptServer, target: ScriptServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login a password a-secret\n")
    monkeypatch.setenv("NETRC", str(netrc))
    with aioduct.BlockingClient() as client:
        r = client.get(source.url + "/r302")
    assert r.content == b"reached"
    secret = "Basic " + base64.b64encode(b"a:a-secret").decode()
    # B on the same host (another port) has the same netrc entry, which is B's own;
    # B on another host name has none: nothing at all.
    host_of_b = (target.requests[0].header("host") or "").split(":")[0]
    expected = [] if host_of_b == "localhost" else [("authorization", secret)]
    assert leaked(target) == expected


async def test_a_custom_host_header_does_not_cross(
    source: ScriptServer, target: ScriptServer
) -> None:
    """curl CVE-2026-6276: a user-set ``Host`` is not carried to another origin."""
    async with aioduct.Client() as client:
        r = await client.get(f"{source.url}/r302", headers={"Host": "victim.test"})
    assert r.content == b"reached"
    assert target.requests[0].header("host") == r.url.host_header
