"""Middleware and event hooks on every driver; import strings in local-engine workers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import aioduct
from aioduct.layers import Next
from aioduct.models import Request, Response
from aioduct.testing.nginx import Nginx

from .drivers import Driver, skip_unless_local_usable

pytestmark = pytest.mark.nginx

MW = "tests.policies.middlewares"


class Record:
    """Notes each request it passes on and each status that comes back."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    async def __call__(self, request: Request, call_next: Next) -> Response:
        self.log.append(f"{self.name}> {request.url.path}")
        response = await call_next(request)
        self.log.append(f"{self.name}< {response.status}")
        return response


class Pause:
    """Async middleware that awaits the hop's runtime (fine on the blocking driver too)."""

    async def __call__(self, request: Request, call_next: Next) -> Response:
        await call_next.hop.runtime.sleep(0)  # type: ignore[attr-defined]
        return await call_next(request)


class Refuse(Exception):
    pass


@pytest.mark.parametrize("kind", ["async", "blocking"])
def test_order_redirects_and_retries_are_separate_sends(nginx: Nginx, kind: str) -> None:
    log: list[str] = []
    retry = aioduct.RetryConfig(max_retries=1, initial_backoff=0.001)
    middleware = [Record("outer", log), Pause(), Record("inner", log)]
    with Driver(kind, middleware=middleware, retry=retry) as client:
        r = client.get(nginx.http_url + "/redirect/302/status/503")
    assert (r.status, r.attempts) == (503, 2)
    assert log == [
        "outer> /redirect/302/status/503", "inner> /redirect/302/status/503",
        "inner< 302", "outer< 302",
        "outer> /status/503", "inner> /status/503", "inner< 503", "outer< 503",
        "outer> /status/503", "inner> /status/503", "inner< 503", "outer< 503",
    ]  # fmt: skip


@pytest.mark.parametrize("kind", ["async", "blocking"])
def test_event_hooks_sync_and_async(nginx: Nginx, kind: str) -> None:
    seen: list[str] = []

    def on_request(request: Request) -> None:
        seen.append(f"request {request.method} {request.url.path}")

    async def on_response(response: Response) -> None:
        await asyncio.sleep(0) if kind == "async" else None
        seen.append(f"response {response.status}")

    hooks = {"request": [on_request], "response": [on_response]}
    with Driver(kind, event_hooks=hooks) as client:
        assert client.get(nginx.http_url + "/redirect/301/small").content == b"Hello, World!"
    assert seen == [
        "request GET /redirect/301/small", "response 301",
        "request GET /small", "response 200",
    ]  # fmt: skip


@pytest.mark.parametrize("kind", ["async", "blocking"])
@pytest.mark.parametrize("event", ["request", "response"])
def test_a_hook_that_raises_aborts_the_request(nginx: Nginx, kind: str, event: str) -> None:
    def refuse(_: Any) -> None:
        raise Refuse(f"no {event}s today")

    with Driver(kind, event_hooks={event: [refuse]}) as client:
        with pytest.raises(Refuse, match=f"no {event}s today"):
            client.get(nginx.http_url + "/bytes/64k")
        with pytest.raises(Refuse):
            client.stream_bytes(nginx.http_url + "/bytes/1m")
        pool = client.pool()
        # nothing leaked: no connection is left checked out
        assert pool is None or pool.open_connections == pool.idle_connections()


@pytest.mark.parametrize("kind", ["async", "blocking", "local"])
def test_import_strings_on_every_driver(nginx: Nginx, kind: str) -> None:
    skip_unless_local_usable(kind)
    with Driver(kind, middleware=[f"{MW}:Tag", f"{MW}:stamp"]) as client:
        r = client.get(nginx.http_url + "/echo/headers")
        assert "x-test: tagged" in r.text.splitlines()
        assert r.headers["x-stamped"] == "yes"
    assert aioduct.ClientConfig(middleware=[f"{MW}:Tag"]).middleware == (f"{MW}:Tag",)


@pytest.mark.parametrize("engine", ["send", "local"])
def test_import_failures_name_the_string(engine: str) -> None:
    skip_unless_local_usable(engine)
    options: dict[str, Any] = {"engine": engine}
    if engine == "local":
        options["workers"] = 1
    cases = [
        (f"{MW}_missing:Tag", ImportError, rf"cannot import middleware '{MW}_missing:Tag'"),
        (f"{MW}:Nothing", ImportError, "has no 'Nothing'"),
        (f"{MW}:NeedsArguments", TypeError, "calling it without arguments failed"),
        (f"{MW}:not_a_layer", TypeError, "is a int, not a layer"),
        ("no_colon", TypeError, "'package.module:name' import strings"),
    ]
    for spec, error, message in cases:
        with pytest.raises(error, match=message):
            aioduct.Client(middleware=[spec], **options)


def test_local_engine_refuses_code_objects() -> None:
    with pytest.raises(TypeError, match=r"middleware objects are Python code.*import strings"):
        aioduct.Client(engine="local", middleware=[Pause()])
    with pytest.raises(TypeError, match="event_hooks are Python code"):
        aioduct.Client(engine="local", event_hooks={"request": [print]})


def test_bad_arguments_say_what_to_pass() -> None:
    with pytest.raises(ValueError, match="no 'requests' event"):
        aioduct.Client(event_hooks={"requests": [print]})
    with pytest.raises(TypeError, match="list of callables"):
        aioduct.Client(event_hooks={"request": print})
    with pytest.raises(TypeError, match="not a layer"):
        aioduct.Client(middleware=[42])
    with pytest.raises(TypeError, match="takes a list"):
        aioduct.Client(middleware=Pause())


async def test_a_plain_async_function_is_middleware(nginx: Nginx) -> None:
    async def add_header(request: Request, call_next: Next) -> Response:
        request.headers["X-Test"] = "fn"
        return await call_next(request)

    async with aioduct.Client(middleware=[add_header]) as client:
        r = await client.get(nginx.http_url + "/echo/headers")
    assert "x-test: fn" in r.text.splitlines()
    assert isinstance(Pause(), aioduct.Layer)
