"""``aioduct.get(url)`` and friends: one blocking request on a client of its own.

The habit of ``httpx.get`` and ``requests.get``, for scripts and the REPL: each call
starts a :class:`~aioduct.BlockingClient`, sends one request, reads the whole body and
closes the client (no connection is reused between calls; keep a client for that).
Keywords are the request methods' (``params``, ``headers``, ``json``, ``timeout``, ...)
plus any client option (``verify``, ``http2``, ``max_redirects``, ...)::

    r = aioduct.get("https://example.org/", params={"q": "duct"}, timeout=10)
    r = aioduct.post("https://example.org/api", json={"a": 1}, verify="ca.pem")
"""

from __future__ import annotations

from typing import Any

from .client import REQUEST_OPTIONS, BlockingClient, check_request_options
from .config import OPTION_NAMES
from .models import Response
from .url import URL

__all__ = ["delete", "get", "head", "options", "patch", "post", "put", "request"]

_ACCEPTED = REQUEST_OPTIONS | OPTION_NAMES


def request(method: str, url: URL | str, **options: Any) -> Response:
    """Send one request on a client of its own and return the response, body read."""
    check_request_options(options, _ACCEPTED)
    client_options = {
        name: options.pop(name)
        for name in list(options)
        if name in OPTION_NAMES and name not in REQUEST_OPTIONS
    }
    with BlockingClient(**client_options) as client:
        return client.request(method, url, **options)


def get(url: URL | str, **options: Any) -> Response:
    """One GET request on a client of its own (see :func:`request`)."""
    return request("GET", url, **options)


def head(url: URL | str, **options: Any) -> Response:
    """One HEAD request on a client of its own (see :func:`request`)."""
    return request("HEAD", url, **options)


def options(url: URL | str, **kwargs: Any) -> Response:
    """One OPTIONS request on a client of its own (see :func:`request`)."""
    return request("OPTIONS", url, **kwargs)


def post(url: URL | str, **options: Any) -> Response:
    """One POST request on a client of its own (see :func:`request`)."""
    return request("POST", url, **options)


def put(url: URL | str, **options: Any) -> Response:
    """One PUT request on a client of its own (see :func:`request`)."""
    return request("PUT", url, **options)


def patch(url: URL | str, **options: Any) -> Response:
    """One PATCH request on a client of its own (see :func:`request`)."""
    return request("PATCH", url, **options)


def delete(url: URL | str, **options: Any) -> Response:
    """One DELETE request on a client of its own (see :func:`request`)."""
    return request("DELETE", url, **options)
