"""Middleware importable by name ("tests.policies.middlewares:..."), for the local
engine's workers, which import middleware given as strings."""

from __future__ import annotations

from aioduct.headers import Headers
from aioduct.layers import Next
from aioduct.models import Request, Response


class Tag:
    """Adds ``X-Test: <name>`` to each request (a class: the worker makes one)."""

    name = "tagged"

    async def __call__(self, request: Request, call_next: Next) -> Response:
        headers = Headers(request.headers)
        headers["X-Test"] = self.name
        request = Request(request.method, request.url, headers=headers, content=request.content)
        return await call_next(request)


async def stamp(request: Request, call_next: Next) -> Response:
    """A plain async function is a middleware too: marks the response it passes on."""
    response = await call_next(request)
    response.headers["X-Stamped"] = "yes"
    return response


class NeedsArguments:
    def __init__(self, required: str) -> None:
        self.required = required

    async def __call__(self, request: Request, call_next: Next) -> Response:
        return await call_next(request)


not_a_layer = 42
