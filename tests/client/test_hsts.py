"""HSTS (RFC 6797) end to end: learnt from a real https origin, applied to http requests.

The https origin is the TLS scriptable server (``https://localhost:PORT``, the test CA's
certificate names ``localhost`` and ``127.0.0.1``). Its http counterpart is the same
host name: ``http://localhost:PORT`` -- RFC 6797 §8.3 keeps an explicit port, so an
upgraded request lands on the TLS server itself, where a plain-http request would fail.
Host names that do not resolve here (subdomains, ``localhost.``) are checked with a layer
placed after HSTS that answers without the network and records the URL it was given.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import aioduct
from aioduct import uring
from aioduct.hsts import HSTSLayer
from aioduct.layers import Next
from aioduct.models import Request, Response
from aioduct.testing.nginx import TLSMaterial
from aioduct.testing.server import ScriptServer

YEAR = "max-age=31536000"


@pytest.fixture
def tls(tls_script_server: ScriptServer) -> ScriptServer:
    srv = tls_script_server
    srv.route_respond("/sts", headers=[("Strict-Transport-Security", YEAR)], body=b"learnt")
    srv.route_respond(
        "/sts-sub",
        headers=[("Strict-Transport-Security", YEAR + "; includeSubDomains")],
        body=b"learnt",
    )
    srv.route_respond("/zero", headers=[("Strict-Transport-Security", "max-age=0")])
    srv.route_respond(
        "/bad", headers=[("Strict-Transport-Security", "max-age=5; max-age=6")], body=b"b"
    )
    srv.route_respond("/plain", body=b"secure")
    port = srv.port
    srv.route_respond(
        "/sts-then-http",
        302,
        [("Strict-Transport-Security", YEAR), ("Location", f"http://localhost:{port}/plain")],
    )
    srv.route_respond("/to-http", 302, [("Location", f"http://localhost:{port}/plain")])
    return srv


def read(path: str) -> str:
    return Path(path).read_text()


def http_of(srv: ScriptServer, path: str) -> str:
    return f"http://localhost:{srv.port}{path}"


class Answer:
    """After HSTS: records the URL of each hop and answers 200 itself (no network)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def __call__(self, request: Request, call_next: Next) -> Response:
        self.seen.append(str(request.url))
        return Response(200, content=b"layer", request=request)


def add_answer(client: aioduct.Client) -> Answer:
    answer = Answer()
    engine = client._engine
    assert isinstance(engine, aioduct.client.Engine)
    engine.layers = (engine.layers[0], answer)
    return answer


async def test_learn_then_upgrade(tls: ScriptServer, tls_ca: TLSMaterial) -> None:
    async with aioduct.Client(verify=tls_ca.ca_pem_path) as client:
        # Before: plain http to the TLS port fails -- nothing upgrades it yet.
        with pytest.raises(aioduct.TransportError):
            await client.get(http_of(tls, "/plain"))
        assert (await client.get(tls.url + "/sts")).content == b"learnt"
        assert client.hsts_store is not None and "localhost" in client.hsts_store
        r = await client.get(http_of(tls, "/plain"))
        assert (r.status, r.content) == (200, b"secure")
        assert str(r.url) == tls.url + "/plain"
        assert r.request is not None and r.request.headers["host"] == f"localhost:{tls.port}"


async def test_no_plain_byte_reaches_the_http_origin(
    tls: ScriptServer, tls_ca: TLSMaterial, script_server: ScriptServer
) -> None:
    script_server.route_respond("/x", body=b"plaintext")
    async with aioduct.Client(verify=tls_ca.ca_pem_path) as client:
        await client.get(tls.url + "/sts")
        with pytest.raises(aioduct.ConnectError):
            await client.get(http_of(script_server, "/x"))  # upgraded: a TLS handshake
    assert script_server.requests == []  # no HTTP request was ever sent in clear


async def test_redirect_hop_to_http_is_upgraded(tls: ScriptServer, tls_ca: TLSMaterial) -> None:
    async with aioduct.Client(verify=tls_ca.ca_pem_path) as client:
        r = await client.get(tls.url + "/sts-then-http")  # learns on the 302 itself
        assert (r.status, r.content, str(r.url)) == (200, b"secure", tls.url + "/plain")
        r = await client.get(tls.url + "/to-http")
        assert str(r.url) == tls.url + "/plain" and [h.status for h in r.history] == [302]


async def test_max_age_zero_forgets(tls: ScriptServer, tls_ca: TLSMaterial) -> None:
    async with aioduct.Client(verify=tls_ca.ca_pem_path) as client:
        await client.get(tls.url + "/sts")
        await client.get(tls.url + "/zero")
        assert client.hsts_store is not None and len(client.hsts_store) == 0
        with pytest.raises(aioduct.TransportError):
            await client.get(http_of(tls, "/plain"))


async def test_ignored_headers(
    tls: ScriptServer, tls_ca: TLSMaterial, script_server: ScriptServer
) -> None:
    script_server.route_respond("/sts", headers=[("Strict-Transport-Security", YEAR)])
    async with aioduct.Client(verify=tls_ca.ca_pem_path) as client:
        await client.get(tls.url + "/bad")  # duplicate directive: the whole header
        await client.get(f"https://127.0.0.1:{tls.port}/sts")  # an IP-literal host
        await client.get(http_of(script_server, "/sts"))  # over plain http
        assert client.hsts_store is not None and len(client.hsts_store) == 0
    async with aioduct.Client(verify=False) as client:  # unverified TLS teaches nothing
        await client.get(tls.url + "/sts")
        assert client.hsts_store is not None and len(client.hsts_store) == 0


async def test_hsts_false(tls: ScriptServer, tls_ca: TLSMaterial) -> None:
    async with aioduct.Client(verify=tls_ca.ca_pem_path, hsts=False) as client:
        await client.get(tls.url + "/sts")
        assert client.hsts_store is None
        with pytest.raises(aioduct.TransportError):
            await client.get(http_of(tls, "/plain"))


async def test_subdomains_and_host_spellings(tls: ScriptServer, tls_ca: TLSMaterial) -> None:
    """reliability.md 1.9: trailing dot (curl CVE-2022-30115), subdomains with
    includeSubDomains, and a subdomain's own entry not replacing its parent's."""
    async with aioduct.Client(verify=tls_ca.ca_pem_path) as client:
        await client.get(tls.url + "/sts")
        answer = add_answer(client)
        await client.get("http://localhost./a")
        await client.get("http://LOCALHOST:8080/b")
        await client.get("http://sub.localhost/c")  # not without includeSubDomains
        assert answer.seen == [
            "https://localhost./a", "https://localhost:8080/b", "http://sub.localhost/c",
        ]  # fmt: skip
    async with aioduct.Client(verify=tls_ca.ca_pem_path) as client:
        await client.get(tls.url + "/sts-sub")
        store = client.hsts_store
        assert store is not None
        store.add("deep.sub.localhost", 60)  # a subdomain's own, shorter entry
        answer = add_answer(client)
        await client.get("http://deep.sub.localhost/")
        await client.get("http://a.b.localhost:80/")
        await client.get("http://notlocalhost/")
        assert answer.seen == [
            "https://deep.sub.localhost/", "https://a.b.localhost/", "http://notlocalhost/",
        ]  # fmt: skip
        assert store.hosts()["localhost"][1] is True  # the parent kept includeSubDomains


async def test_preload(tls: ScriptServer, tls_ca: TLSMaterial) -> None:
    async with aioduct.Client(verify=tls_ca.ca_pem_path, hsts_preload=["localhost"]) as client:
        r = await client.get(http_of(tls, "/plain"))
        assert r.content == b"secure"
    with pytest.raises(ValueError, match="host names"):
        aioduct.Client(hsts_preload=["127.0.0.1"])


async def test_hsts_file_persists(tls: ScriptServer, tls_ca: TLSMaterial, tmp_path: Path) -> None:
    path = str(tmp_path / "hsts.txt")
    async with aioduct.Client(verify=tls_ca.ca_pem_path, hsts_file=path) as client:
        await client.get(tls.url + "/sts-sub")
    lines = [line for line in read(path).splitlines() if not line.startswith("#")]
    assert len(lines) == 1 and lines[0].startswith('.localhost "')
    async with aioduct.Client(verify=tls_ca.ca_pem_path, hsts_file=path) as client:
        assert (await client.get(http_of(tls, "/plain"))).content == b"secure"
        await client.get(tls.url + "/zero")  # forgets, and the file follows
    assert "localhost" not in read(path)


def test_blocking_client(tls: ScriptServer, tls_ca: TLSMaterial) -> None:
    with aioduct.BlockingClient(verify=tls_ca.ca_pem_path) as client:
        client.get(tls.url + "/sts")
        r = client.get(http_of(tls, "/plain"))
        assert (r.content, str(r.url)) == (b"secure", tls.url + "/plain")
        assert client.hsts_store is not None and "localhost" in client.hsts_store


def local_available() -> None:
    if (reason := uring.unavailable_reason()) is not None:
        pytest.skip(reason)


async def test_local_engine_client(tls: ScriptServer, tls_ca: TLSMaterial) -> None:
    local_available()
    async with aioduct.Client(engine="local", workers=2, verify=tls_ca.ca_pem_path) as client:
        await client.get(tls.url + "/sts")
        r = await client.get(http_of(tls, "/plain"))  # upgraded before it is sharded
        assert (r.content, str(r.url)) == (b"secure", tls.url + "/plain")
        r = await client.get(tls.url + "/to-http")  # a hop inside the worker
        assert str(r.url) == tls.url + "/plain"


def test_local_engine_jobs_and_file(tls: ScriptServer, tls_ca: TLSMaterial, tmp_path: Path) -> None:
    local_available()
    path = str(tmp_path / "hsts.txt")
    config = aioduct.ClientConfig(verify=tls_ca.ca_pem_path, hsts_file=path)
    with aioduct.LocalEngine(workers=1, config=config) as engine:
        [learnt] = engine.map([tls.url + "/sts-then-http"])
        assert (learnt.status, learnt.final_url) == (200, tls.url + "/plain")
    assert 'localhost "' in Path(path).read_text()  # saved by the worker
    with aioduct.LocalEngine(workers=1, config=config) as engine:  # loaded by the worker
        [r] = engine.map([http_of(tls, "/plain")])
        assert (r.status, r.final_url) == (200, tls.url + "/plain")


def test_file_merges_writers(tmp_path: Path) -> None:
    """curl CVE-2023-23915: clients saving one file add up, none erases another's hosts."""
    from aioduct.hsts import HSTSStore

    path = str(tmp_path / "hsts")
    stores = [HSTSStore(path=path) for _ in range(4)]
    for i, store in enumerate(stores):
        store.add(f"h{i}.example", 3600)
    for store in reversed(stores):
        store.close()
    again = HSTSStore(path=path)
    assert sorted(again.hosts()) == [f"h{i}.example" for i in range(4)]
    stores[0].add("h0.example", 0)  # a removal travels too
    stores[0].close()
    assert sorted(HSTSStore(path=path).hosts()) == [f"h{i}.example" for i in range(1, 4)]
    assert not any(name.startswith(".hsts-") for name in os.listdir(tmp_path))


def test_layer_is_outermost() -> None:
    layers = aioduct.Client()._layers
    assert isinstance(layers[0], HSTSLayer)
