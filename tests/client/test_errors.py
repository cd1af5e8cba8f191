"""Errors say the right thing: which request, which option, what to do instead.

The guide promises that every exception carries ``method`` and ``url``; these requests
fail in every way a user meets first, against nginx, and each error is checked for both.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

import aioduct
from aioduct.testing.nginx import Nginx
from aioduct.testing.server import ScriptServer

pytestmark = pytest.mark.nginx


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Shape(msgspec.Struct):
    message: str
    count: str


CASES: list[tuple[str, str, Callable[[aioduct.BlockingClient, str], Any], type]] = [
    ("GET", "example.com/x", lambda c, u: c.get(u), aioduct.InvalidURL),
    ("GET", "/redirect-scheme", lambda c, u: c.get(u), aioduct.RedirectError),
    ("GET", "/redirect-empty", lambda c, u: c.get(u), aioduct.RedirectError),
    ("GET", "/loop", lambda c, u: c.get(u), aioduct.TooManyRedirects),
    ("GET", "/small", lambda c, u: c.get(u).json(), aioduct.DecodeError),
    ("GET", "/json", lambda c, u: c.get(u).json(type=Shape), aioduct.DecodeError),
    ("DELETE", "/status/404", lambda c, u: c.delete(u).raise_for_status(), aioduct.StatusError),
    ("GET", "/headers/many", lambda c, u: c.get(u), aioduct.RemoteProtocolError),
    ("GET", "/slow", lambda c, u: c.get(u, timeout=0.2), aioduct.TotalTimeout),
    ("GET", "closed-port", lambda c, u: c.get(u), aioduct.ConnectError),
]


@pytest.mark.parametrize(("method", "path", "call", "kind"), CASES, ids=[c[1] for c in CASES])
def test_every_error_names_its_request(
    nginx: Nginx, method: str, path: str, call: Any, kind: type
) -> None:
    if path == "closed-port":
        url = f"http://127.0.0.1:{_closed_port()}/"
    elif path.startswith("/"):
        url = nginx.http_url + path
    else:
        url = path
    with (
        aioduct.BlockingClient(max_redirects=3, max_response_headers=20) as client,
        pytest.raises(kind) as caught,
    ):
        call(client, url)
    error = caught.value
    assert (error.method, error.url) == (method, url)
    assert "None" not in str(error)
    assert url in str(error) or url.rstrip("/") in str(error)


def test_a_body_too_large_and_a_closed_client_name_their_request(nginx: Nginx) -> None:
    url = nginx.http_url + "/bytes/64k"
    with aioduct.BlockingClient(max_body_size=1000) as client:
        with pytest.raises(aioduct.BodyTooLarge) as caught:
            client.get(url)
        assert (caught.value.method, caught.value.url) == ("GET", url)
    with pytest.raises(aioduct.ClientClosed) as closed:
        client.get(url)
    assert (closed.value.method, closed.value.url) == ("GET", url)


def test_json_that_does_not_fit_the_struct_says_which_field(nginx: Nginx) -> None:
    with aioduct.BlockingClient() as client:
        r = client.get(nginx.http_url + "/json")
        with pytest.raises(aioduct.DecodeError) as caught:
            r.json(type=Shape)
    message = str(caught.value)
    assert "not valid JSON" not in message
    assert "does not fit Shape: Expected `str`, got `int` - at `$.count`" in message


def test_the_header_limit_error_names_the_option_to_raise(nginx: Nginx) -> None:
    with aioduct.BlockingClient(max_response_headers=20) as client:
        with pytest.raises(aioduct.RemoteProtocolError, match="max_response_headers=20"):
            client.get(nginx.http_url + "/headers/many")
        with pytest.raises(aioduct.RemoteProtocolError, match="max_response_headers=20"):
            client.get(nginx.h2c_url + "/headers/many", version="2")


def test_local_engine_refusals_suggest_what_works_there() -> None:
    with pytest.raises(TypeError) as policy:
        aioduct.Client(engine="local", redirect_policy=aioduct.same_origin_only)
    assert "verify" not in str(policy.value) and "max_redirects=" in str(policy.value)
    with pytest.raises(TypeError, match=r"verify='path/to/ca.pem'"):
        aioduct.Client(engine="local", verify=ssl.create_default_context())


def test_timeout_takes_seconds_or_a_timeout_and_explains_a_tuple(
    nginx: Nginx, script_server: ScriptServer
) -> None:
    url = nginx.http_url + "/slow"  # 64 KiB at 16 KiB/s

    @script_server.route("/silent")
    async def silent(conn: Any, req: Any) -> None:
        await asyncio.sleep(30)  # never answers

    with aioduct.BlockingClient() as client:
        with pytest.raises(TypeError, match=r"not the tuple \(3, 10\).*Timeout\(connect="):
            client.get(url, timeout=(3, 10))  # type: ignore[arg-type]
        with pytest.raises(aioduct.TotalTimeout, match=r"timeout=0.2s"):
            client.get(url, timeout=aioduct.Timeout(total=0.2))
        with pytest.raises(aioduct.ReadTimeout, match=r"read_timeout=0.2s"):
            client.get(script_server.url + "/silent", timeout=aioduct.Timeout(read=0.2))
        assert client.get(nginx.http_url + "/small", timeout=aioduct.Timeout(connect=5)).is_success
    with pytest.raises(TypeError, match=r"not the tuple"):
        aioduct.BlockingClient(timeout=(3, 10))
    with aioduct.BlockingClient(timeout=aioduct.Timeout(total=0.2, connect=5)) as client:
        assert (client.config.timeout, client.config.connect_timeout) == (0.2, 5.0)
        with pytest.raises(aioduct.TotalTimeout):
            client.get(url)


def test_a_per_request_pool_timeout(nginx: Nginx) -> None:
    with (
        aioduct.BlockingClient(max_connections=1) as client,
        client.stream("GET", nginx.http_url + "/bytes/1m"),  # holds the one connection
        pytest.raises(aioduct.PoolTimeout),
    ):
        client.get(nginx.http_url + "/small", timeout=aioduct.Timeout(pool=0.05))


def test_jobs_take_a_total_timeout_only(nginx: Nginx) -> None:
    assert aioduct.Job(url=nginx.http_url, timeout=aioduct.Timeout(total=3)).timeout == 3.0
    with pytest.raises(TypeError, match="total deadline only"):
        aioduct.Job(url=nginx.http_url, timeout=aioduct.Timeout(connect=3))
    with pytest.raises(TypeError, match="not the tuple"):
        aioduct.Job(url=nginx.http_url, timeout=(3, 10))  # type: ignore[arg-type]


def test_data_takes_a_form_and_points_bytes_to_content(nginx: Nginx) -> None:
    with aioduct.BlockingClient() as client:
        for raw in (b"a=1", "a=1"):
            with pytest.raises(TypeError, match=r"data= takes form fields.*content="):
                client.post(nginx.http_url + "/post", data=raw)  # type: ignore[arg-type]
        assert client.post(nginx.http_url + "/post", content=b"a=1").text == "POST 3"
