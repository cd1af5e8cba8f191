"""``Expect: 100-continue`` over HTTP/3, against aioquic's server (aioduct.testing.h3server):
the body waits for the ``100 Continue`` as on HTTP/1.1 and HTTP/2 (RFC 9110 §10.1.1), a
final answer first means the body is never sent, and a server that ignores the
expectation gets the body after ``expect_continue_timeout``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

import aioduct
from aioduct.testing.h3server import H3Request, H3Server
from aioduct.testing.nginx import TLSMaterial


@pytest.fixture
def h3(tls_ca: TLSMaterial) -> Iterator[H3Server]:
    with H3Server(tls_ca.files) as srv:

        @srv.route("/continue")
        async def go_on(req: H3Request) -> None:
            assert req.header("expect") == "100-continue"
            await asyncio.sleep(0.05)  # room for a body that did not wait (it must not come)
            early = req._chunks.qsize()
            req.send_headers(100)
            body = await req.body()
            req.respond(200, b"%d %s" % (early, body))

        @srv.route("/refuse")
        async def refuse(req: H3Request) -> None:
            req.respond(417, b"no")

        @srv.route("/ignore")
        async def ignore(req: H3Request) -> None:  # never sends 100: reads the body anyway
            req.respond(200, await req.body())

        yield srv


def options(tls_ca: TLSMaterial, **more: object) -> dict[str, object]:
    return {
        "http3_prior_knowledge": True,
        "verify": tls_ca.ca_pem_path,
        "expect_continue": True,
        "expect_continue_timeout": 60,
        **more,
    }


async def test_body_waits_for_100_continue(h3: H3Server, tls_ca: TLSMaterial) -> None:
    async with aioduct.Client(**options(tls_ca)) as client:  # type: ignore[arg-type]
        r = await client.post(h3.url + "/continue", content=b"x" * 100_000)
    assert (r.status, r.http_version) == (200, "HTTP/3")
    assert r.content == b"0 " + b"x" * 100_000  # nothing had arrived before the 100


async def test_final_answer_first_never_sends_the_body(h3: H3Server, tls_ca: TLSMaterial) -> None:
    """A 417 (or any final status) before ``100 Continue``: the answer is returned, the
    one-shot body is never read, and the connection goes on serving requests."""
    sent: list[int] = []

    def one_shot() -> Iterator[bytes]:
        sent.append(1)
        yield b"never"

    async with aioduct.Client(**options(tls_ca)) as client:  # type: ignore[arg-type]
        r = await client.post(h3.url + "/refuse", content=one_shot())
        assert (r.status, r.content, sent) == (417, b"no", [])
        again = await client.get(h3.url + "/small")
    assert again.content == b"Hello, World!"
    assert h3.connections_accepted == 1


async def test_server_ignoring_the_expectation_gets_the_body_after_the_timeout(
    h3: H3Server, tls_ca: TLSMaterial
) -> None:
    opts = options(tls_ca, expect_continue_timeout=0.05)
    async with aioduct.Client(**opts) as client:  # type: ignore[arg-type]
        r = await client.post(h3.url + "/ignore", content=b"late")
    assert (r.status, r.content) == (200, b"late")


def test_blocking_client_waits_too(h3: H3Server, tls_ca: TLSMaterial) -> None:
    """The loop-less driver reads the 100 inline while it waits."""
    sent: list[int] = []

    def one_shot() -> Iterator[bytes]:
        sent.append(1)
        yield b"never"

    with aioduct.BlockingClient(**options(tls_ca)) as client:  # type: ignore[arg-type]
        r = client.post(h3.url + "/continue", content=iter([b"ab", b"c"]))
        refused = client.post(h3.url + "/refuse", content=one_shot())
    assert (r.status, r.content) == (200, b"0 abc")
    assert (refused.status, sent) == (417, [])
