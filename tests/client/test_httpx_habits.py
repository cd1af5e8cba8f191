"""What people used to httpx reach for: one-shot calls, None params, build/send, Job bodies."""

from __future__ import annotations

from typing import Any

import pytest

import aioduct
from aioduct.testing.nginx import JSON_BODY, SMALL_BODY, Nginx, deterministic_bytes

pytestmark = pytest.mark.nginx


def echoed(response: aioduct.Response) -> dict[str, str]:
    """The request as nginx's /echo/headers saw it."""
    return dict(line.split(": ", 1) for line in response.text.splitlines())


def test_one_shot_functions(nginx: Nginx) -> None:
    base = nginx.http_url
    r = aioduct.get(base + "/echo/headers", params={"q": "1"}, headers={"X-Test": "t"})
    assert echoed(r)["uri"] == "/echo/headers?q=1" and echoed(r)["x-test"] == "t"
    assert aioduct.get(base + "/json").json() == {"message": "hello", "count": 42}
    assert aioduct.head(base + "/small").headers["content-length"] == str(len(SMALL_BODY))
    assert aioduct.post(base + "/post", json={"a": 1}).text == "POST 7"
    assert aioduct.put(base + "/post", content=b"abc").text == "PUT 3"
    assert aioduct.patch(base + "/post", data={"a": "1"}).text == "PATCH 3"
    assert aioduct.delete(base + "/post").text == "DELETE "
    assert aioduct.options(base + "/post").text == "OPTIONS "
    assert aioduct.request("GET", base + "/small").content == SMALL_BODY
    # Client options go to the private client: here, do not follow redirects.
    assert aioduct.get(base + "/redirect/302/small", follow_redirects=False).status == 302
    with pytest.raises(aioduct.TooManyRedirects, match="max_redirects=1"):
        aioduct.get(base + "/chain/2", max_redirects=1)
    with pytest.raises(TypeError, match=r"'verfy' \(did you mean 'verify'\?\)"):
        aioduct.get(base + "/small", verfy=False)


def test_a_none_param_sends_the_key_with_an_empty_value(nginx: Nginx) -> None:
    with aioduct.BlockingClient() as client:
        r = client.get(nginx.http_url + "/echo/headers", params={"q": None, "n": [1, None]})
    assert echoed(r)["uri"] == "/echo/headers?q=&n=1&n="


async def test_a_streamed_body_iterated_twice_says_so(nginx: Nginx) -> None:
    url = nginx.http_url + "/bytes/64k"
    async with aioduct.Client() as client:
        async with client.stream("GET", url) as r:
            assert b"".join([c async for c in r.aiter_bytes()]) == deterministic_bytes(65536)
            with pytest.raises(RuntimeError, match="already read by iterating over it"):
                [c async for c in r.aiter_bytes()]
            with pytest.raises(RuntimeError, match="cannot be read again"):
                r.content  # noqa: B018
            with pytest.raises(RuntimeError, match="call aread"):
                await r.aread()
        async with client.stream("GET", url) as r:
            await r.aread()  # kept: every iterator replays it
            assert [len(c) async for c in r.aiter_bytes()] == [65536]
            assert [len(c) async for c in r.aiter_bytes()] == [65536]
        async with client.stream("GET", url) as r:
            pass
        with pytest.raises(RuntimeError, match="closed before its body was read"):
            [c async for c in r.aiter_bytes()]


def test_a_blocking_streamed_body_iterated_twice_says_so(nginx: Nginx) -> None:
    with (
        aioduct.BlockingClient() as client,
        client.stream("GET", nginx.http_url + "/text") as r,
    ):
        assert list(r.iter_lines()) == ["héllo wörld ✓"]
        with pytest.raises(RuntimeError, match="already read by iterating over it"):
            list(r.iter_lines())


def test_blocking_build_request_and_send(nginx: Nginx) -> None:
    with aioduct.BlockingClient(base_url=nginx.http_url) as client:
        request = client.build_request("POST", "/post", content=b"12345")
        request.headers["X-Test"] = "added"
        assert isinstance(request, aioduct.Request)
        assert client.send(request).text == "POST 5"
        response = client.send(client.build_request("GET", "/bytes/64k"), stream=True)
        try:
            assert b"".join(response.iter_bytes()) == deterministic_bytes(65536)
        finally:
            response.close()


@pytest.mark.parametrize("engine", ["send", "local"])
def test_jobs_take_content_and_json_like_the_request_methods(nginx: Nginx, engine: str) -> None:
    from aioduct import uring

    options: dict[str, Any] = {"workers": 1} if engine == "local" else {}
    if engine == "local" and not uring.is_available():
        options["loop"] = "asyncio"
    kind = aioduct.LocalEngine if engine == "local" else aioduct.SendEngine
    post, echo = nginx.http_url + "/post", nginx.http_url + "/echo/headers"
    jobs = [
        aioduct.Job(url=post, method="POST", id="json", json={"a": [1, 2]}),
        aioduct.Job(url=post, method="POST", id="bytes", content=b"12345"),
        aioduct.Job(url=echo, method="POST", id="text", content="héllo"),
        aioduct.Job(url=echo, method="PUT", id="typed", json=[1], headers={"Content-Type": "x/y"}),
    ]
    with kind(**options) as bulk:
        results = {r.id: r for r in bulk.map(jobs)}
    assert results["json"].body == b"POST " + str(len(b'{"a":[1,2]}')).encode()
    assert results["bytes"].body == b"POST 5"
    text = echoed(aioduct.jobs.result_to_response(results["text"]))
    assert text["content-type"] == "text/plain; charset=utf-8"
    assert text["content-length"] == str(len("héllo".encode()))
    typed = echoed(aioduct.jobs.result_to_response(results["typed"]))
    assert typed["content-type"] == "x/y"
    with pytest.raises(TypeError, match="only one of body=, content= or json="):
        aioduct.Job(url=post, body=b"a", json=JSON_BODY)
