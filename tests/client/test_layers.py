"""The layer chain (aioduct.layers) around each hop, against nginx, on every driver."""

from __future__ import annotations

import pytest

import aioduct
from aioduct.headers import Headers
from aioduct.layers import Link, Next
from aioduct.models import Request, Response
from aioduct.testing.nginx import Nginx

pytestmark = pytest.mark.nginx


class Record:
    """Notes every request it passes on and every status that comes back."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    async def __call__(self, request: Request, call_next: Next) -> Response:
        self.log.append(f"{self.name}> {request.url.path}")
        response = await call_next(request)
        self.log.append(f"{self.name}< {response.status}")
        return response


class Answer:
    """Answers requests for one path itself, without the network."""

    def __init__(self, path: str) -> None:
        self.path = path

    async def __call__(self, request: Request, call_next: Next) -> Response:
        if request.url.path != self.path:
            return await call_next(request)
        return Response(200, content=b"from the layer", request=request)


class Rewrite:
    """Sends every request for ``/old`` to ``/small`` instead (as HSTS rewrites a URL)."""

    async def __call__(self, request: Request, call_next: Next) -> Response:
        if request.url.path == "/old":
            request = Request(
                request.method,
                request.url.copy_with(path="/small"),
                headers=Headers(request.headers),
            )
        return await call_next(request)


class SleepThenSend:
    """Uses the hop's runtime (as a retry layer would) before sending."""

    def __init__(self) -> None:
        self.seen: list[bool] = []

    async def __call__(self, request: Request, call_next: Next) -> Response:
        assert isinstance(call_next, Link)
        await call_next.hop.runtime.sleep(0.001)
        self.seen.append(call_next.hop.stream)
        return await call_next(request)


async def test_every_hop_passes_every_layer_in_order(nginx: Nginx) -> None:
    log: list[str] = []
    async with aioduct.Client() as client:
        client._engine.layers = (Record("a", log), Record("b", log))  # type: ignore[union-attr]
        r = await client.get(nginx.http_url + "/redirect/302/small")
    assert r.content == b"Hello, World!" and [h.status for h in r.history] == [302]
    assert log == [
        "a> /redirect/302/small", "b> /redirect/302/small", "b< 302", "a< 302",
        "a> /small", "b> /small", "b< 200", "a< 200",
    ]  # fmt: skip


async def test_a_layer_can_answer_and_rewrite(nginx: Nginx) -> None:
    async with aioduct.Client() as client:
        client._engine.layers = (Rewrite(), Answer("/answered"))  # type: ignore[union-attr]
        answered = await client.get(nginx.http_url + "/answered")
        rewritten = await client.get(nginx.http_url + "/old")
        via_redirect = await client.get(nginx.http_url + "/redirect/302/old")
    assert answered.content == b"from the layer"
    assert rewritten.content == b"Hello, World!" and rewritten.url.path == "/small"
    assert via_redirect.content == b"Hello, World!" and via_redirect.url.path == "/small"
    assert client._engine.pool is None or client._engine.pool.open_connections <= 1  # type: ignore[union-attr]


async def test_hop_runtime_and_stream_flag(nginx: Nginx) -> None:
    layer = SleepThenSend()
    async with aioduct.Client() as client:
        client._engine.layers = (layer,)  # type: ignore[union-attr]
        await client.get(nginx.http_url + "/small")
        async with client.stream("GET", nginx.http_url + "/small") as r:
            assert await r.aread() == b"Hello, World!"
    assert layer.seen == [False, True]


def test_blocking_client_threads_share_the_layers(nginx: Nginx) -> None:
    log: list[str] = []
    with aioduct.BlockingClient() as client:
        client._client._engine.layers = (Record("x", log), SleepThenSend())  # type: ignore[union-attr]
        assert client.get(nginx.http_url + "/redirect/301/small").text == "Hello, World!"
    assert log == ["x> /redirect/301/small", "x< 301", "x> /small", "x< 200"]
