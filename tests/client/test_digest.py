"""DigestAuth (RFC 7616) against a Digest-protected scriptable origin, on every driver.

The server side (tests/client/digest_origin.py) computes the expected answer with
hashlib on its own; the RFC's example vectors are checked in tests/unit/test_digest.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import aioduct
from aioduct import uring
from aioduct.testing.server import Conn, ScriptServer, ServerRequest

from .digest_origin import DigestOrigin, parse_authorization

ALGORITHMS = ["MD5", "MD5-sess", "SHA-256", "SHA-256-sess", "SHA-512-256"]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("qop", ["auth", "auth-int", None])
async def test_challenge_answered(script_server: ScriptServer, algorithm: str, qop: str) -> None:
    origin = DigestOrigin(script_server, algorithm=algorithm, qop=qop)
    auth = aioduct.DigestAuth("Mufasa", "Circle of Life")
    async with aioduct.Client(auth=auth) as client:
        r = await client.post(script_server.url + "/protected?x=1", content=b"payload")
    assert (r.status, r.content) == (200, b"welcome")
    assert origin.log == ["none", "ok nc=1" if qop else "ok nc=0"]


async def test_nonce_counting_and_preemptive_credentials(script_server: ScriptServer) -> None:
    origin = DigestOrigin(script_server, algorithm="SHA-256")
    auth = aioduct.DigestAuth("Mufasa", "Circle of Life")
    async with aioduct.Client() as client:
        for path in ("/protected", "/protected/a", "/protected/b?q"):
            r = await client.get(script_server.url + path, auth=auth)  # per request
            assert r.status == 200
    # One challenge, then every request carries credentials from the start, nc counting up.
    assert origin.log == ["none", "ok nc=1", "ok nc=2", "ok nc=3"]
    ncs = [
        parse_authorization(req.header("authorization") or "Digest ")["nc"]
        for req in script_server.requests
        if req.header("authorization")
    ]
    assert ncs == ["00000001", "00000002", "00000003"]


async def test_stale_nonce_is_retried_once(script_server: ScriptServer) -> None:
    origin = DigestOrigin(script_server, stale_after=1)
    async with aioduct.Client(auth=aioduct.DigestAuth("Mufasa", "Circle of Life")) as client:
        assert (await client.get(script_server.url + "/protected")).status == 200
        # nc=2 on the cached nonce is "stale": a new nonce, answered once, works.
        assert (await client.get(script_server.url + "/protected")).status == 200
    assert origin.log == ["none", "ok nc=1", "stale", "ok nc=1"]


async def test_stale_forever_gives_up(script_server: ScriptServer) -> None:
    origin = DigestOrigin(script_server, stale_after=0)
    async with aioduct.Client(auth=aioduct.DigestAuth("Mufasa", "Circle of Life")) as client:
        r = await client.get(script_server.url + "/protected")
    assert r.status == 401
    assert origin.log == ["none", "stale", "stale"]  # challenge, answer, one stale retry


async def test_wrong_password_is_not_retried(script_server: ScriptServer) -> None:
    origin = DigestOrigin(script_server)
    async with aioduct.Client(auth=aioduct.DigestAuth("Mufasa", "wrong")) as client:
        r = await client.get(script_server.url + "/protected")
        assert r.status == 401 and r.content == b"who are you?"
        assert (await client.get(script_server.url + "/protected")).status == 401
    # the second request went out with the cached challenge, was refused, re-answered once
    assert origin.log == ["none", "bad-response", "bad-response", "bad-response"]


async def test_userhash_and_non_ascii_username(script_server: ScriptServer) -> None:
    hashed = DigestOrigin(
        script_server, "/hashed", username="J\u00e4s\u00f8n Doe", algorithm="SHA-512-256",
        userhash=True, password="Secret, or not?",
    )  # fmt: skip
    plain = DigestOrigin(
        script_server, "/plain", username="J\u00e4s\u00f8n Doe", password="Secret, or not?"
    )
    auth = aioduct.DigestAuth("J\u00e4s\u00f8n Doe", "Secret, or not?")
    async with aioduct.Client(auth=auth) as client:
        assert (await client.get(script_server.url + "/hashed")).status == 200
    async with aioduct.Client(auth=auth) as client:
        assert (await client.get(script_server.url + "/plain")).status == 200
    assert hashed.log[-1] == "ok nc=1" and plain.log[-1] == "ok nc=1"
    sent = [r.header("authorization") or "" for r in script_server.requests]
    assert any("userhash=true" in s for s in sent)
    assert any("username*=UTF-8''J%C3%A4s%C3%B8n%20Doe" in s for s in sent)
    assert not any("J\u00e4s" in s for s in sent)


async def test_strongest_challenge_is_answered(script_server: ScriptServer) -> None:
    origin = DigestOrigin(
        script_server,
        algorithm="SHA-256",
        extra_challenges=(
            'Basic realm="x"',
            'Digest realm="aioduct@example.org", nonce="weak", algorithm=MD5, qop="auth"',
            'Digest realm="r", nonce="n", algorithm=UNKNOWN-ALG, qop="auth"',
        ),
    )
    async with aioduct.Client(auth=aioduct.DigestAuth("Mufasa", "Circle of Life")) as client:
        assert (await client.get(script_server.url + "/protected")).status == 200
    assert origin.log == ["none", "ok nc=1"]


async def test_no_digest_challenge_returns_the_401(script_server: ScriptServer) -> None:
    script_server.route_respond("/basic", 401, [("WWW-Authenticate", 'Basic realm="x"')])
    async with aioduct.Client(auth=aioduct.DigestAuth("u", "p")) as client:
        r = await client.get(script_server.url + "/basic")
    assert r.status == 401 and len(script_server.requests) == 1
    assert script_server.requests[0].header("authorization") is None


async def test_streamed_body_cannot_be_replayed(script_server: ScriptServer) -> None:
    DigestOrigin(script_server)

    async def body() -> AsyncIterator[bytes]:
        yield b"one-"
        yield b"shot"

    async with aioduct.Client(auth=aioduct.DigestAuth("Mufasa", "Circle of Life")) as client:
        with pytest.raises(aioduct.AuthError, match=r"stream .* cannot be sent again"):
            await client.post(script_server.url + "/protected", content=body())
        # The pool is fine and, once the challenge is known, a stream goes with credentials.
        assert (await client.get(script_server.url + "/protected")).status == 200
        r = await client.post(script_server.url + "/protected", content=body())
        assert r.status == 200
    assert script_server.requests[-1].body == b"one-shot"


async def test_digest_streamed_response(script_server: ScriptServer) -> None:
    DigestOrigin(script_server)
    auth = aioduct.DigestAuth("Mufasa", "Circle of Life")
    async with (
        aioduct.Client(auth=auth) as client,
        client.stream("GET", script_server.url + "/protected") as r,
    ):
        assert r.status == 200 and await r.aread() == b"welcome"


# -- never to another origin (reliability.md 1.12, aiohttp CVE-2026-54276) ------------------


async def test_401_after_cross_origin_redirect_gets_no_credentials(
    script_server: ScriptServer,
) -> None:
    with ScriptServer() as other:
        target = DigestOrigin(other)
        script_server.route_respond("/go", 302, [("Location", other.url + "/protected")])
        DigestOrigin(script_server)  # the first origin is Digest-protected too
        auth = aioduct.DigestAuth("Mufasa", "Circle of Life")
        async with aioduct.Client(auth=auth) as client:
            assert (await client.get(script_server.url + "/protected")).status == 200
            r = await client.get(script_server.url + "/go")
            assert r.status == 401 and str(r.url) == other.url + "/protected"
        assert target.log == ["none"]
        assert all(req.header("authorization") is None for req in other.requests)


async def test_same_origin_redirect_keeps_digest(script_server: ScriptServer) -> None:
    origin = DigestOrigin(script_server)
    script_server.route_respond("/go", 302, [("Location", "/protected/next")])
    async with aioduct.Client() as client:
        r = await client.get(
            script_server.url + "/go", auth=aioduct.DigestAuth("Mufasa", "Circle of Life")
        )
    assert r.status == 200 and origin.log == ["none", "ok nc=1"]


async def test_other_port_is_another_origin(script_server: ScriptServer) -> None:
    """Cached challenges are per origin: a second server on another port gets no
    credentials until it challenges itself."""
    with ScriptServer() as other:
        first, second = DigestOrigin(script_server), DigestOrigin(other)
        async with aioduct.Client(auth=aioduct.DigestAuth("Mufasa", "Circle of Life")) as client:
            assert (await client.get(script_server.url + "/protected")).status == 200
            assert (await client.get(other.url + "/protected")).status == 200
        assert first.log == ["none", "ok nc=1"] and second.log == ["none", "ok nc=1"]


# -- other drivers --------------------------------------------------------------------------


def test_blocking_client(script_server: ScriptServer) -> None:
    origin = DigestOrigin(script_server, algorithm="SHA-256", qop="auth-int")
    with aioduct.BlockingClient(auth=aioduct.DigestAuth("Mufasa", "Circle of Life")) as client:
        assert client.put(script_server.url + "/protected", content=b"x").status == 200
        assert client.get(script_server.url + "/protected").status == 200
    assert origin.log == ["none", "ok nc=1", "ok nc=2"]


def local_available() -> None:
    if (reason := uring.unavailable_reason()) is not None:
        pytest.skip(reason)


async def test_local_engine_client(script_server: ScriptServer) -> None:
    local_available()
    origin = DigestOrigin(script_server, algorithm="SHA-256")
    other = ScriptServer().start()
    try:
        other_origin = DigestOrigin(other)
        script_server.route_respond("/go", 302, [("Location", other.url + "/protected")])
        auth = aioduct.DigestAuth("Mufasa", "Circle of Life")
        async with aioduct.Client(engine="local", workers=1, auth=auth) as client:
            assert (await client.get(script_server.url + "/protected")).status == 200
            assert (await client.post(script_server.url + "/protected", content=b"b")).status == 200
            r = await client.get(script_server.url + "/go")  # redirected in the worker
            assert r.status == 401
        assert origin.log == ["none", "ok nc=1", "ok nc=2"]
        assert other_origin.log == ["none"]
    finally:
        other.close()


def test_local_engine_blocking(script_server: ScriptServer) -> None:
    local_available()
    origin = DigestOrigin(script_server, algorithm="MD5-sess")
    with aioduct.BlockingClient(engine="local", workers=1) as client:
        r = client.get(
            script_server.url + "/protected", auth=aioduct.DigestAuth("Mufasa", "Circle of Life")
        )
        assert r.status == 200
    assert origin.log == ["none", "ok nc=1"]


def test_auth_argument_types() -> None:
    with pytest.raises(TypeError, match="DigestAuth or another auth layer"):
        aioduct.Client(auth=42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="CR, LF or NUL"):
        aioduct.DigestAuth("a\r\nX-Evil: 1", "p")
    assert "secret" not in repr(aioduct.DigestAuth("u", "secret"))


async def test_a_custom_auth_layer(script_server: ScriptServer) -> None:
    """auth= takes any layer, e.g. one that signs each hop itself."""

    async def sign(conn: Conn, req: ServerRequest) -> None:
        await conn.send_response(200, [], (req.header("x-signed") or "").encode())

    script_server.add_route("/signed", sign)

    async def signer(request: aioduct.Request, call_next):  # type: ignore[no-untyped-def]
        request.headers["X-Signed"] = request.url.path
        return await call_next(request)

    async with aioduct.Client() as client:
        r = await client.get(script_server.url + "/signed", auth=signer)
    assert r.content == b"/signed"
