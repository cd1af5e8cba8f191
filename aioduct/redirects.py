"""Redirect decisions, free of I/O: given a request and its 3xx response, the next request.

Rules (RFC 9110 §15.4, as browsers and the Rust aioduct apply them):

* 301, 302, 303 become ``GET`` (``HEAD`` stays ``HEAD``) without a body and without the
  headers that described it; 307 and 308 repeat the method and body.
* ``Authorization``, ``Cookie`` and ``Proxy-Authorization`` never cross to another origin.
* Only ``http``/``https`` targets are followed, and never ``https`` → ``http`` under
  ``https_only``.
* A fragment on the original URL carries over when the Location has none (§10.2.2).

A *redirect policy* is a callable ``(current_url, next_url, status, method) -> bool``
deciding per hop whether to follow; it runs after these rules have built the next request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from .bodies import is_replayable
from .errors import InvalidURL, RedirectError
from .headers import Headers
from .models import Request, Response
from .url import URL

__all__ = ["REDIRECT_STATUSES", "RedirectPolicy", "next_request", "same_origin_only"]

REDIRECT_STATUSES: Final = frozenset((301, 302, 303, 307, 308))

RedirectPolicy = Callable[[URL, URL, int, str], bool]
"""Decides whether to follow one hop: ``(current_url, next_url, status, method) -> bool``."""

_BODY_HEADERS: Final = ("content-type", "content-length", "content-encoding", "transfer-encoding")
_CREDENTIAL_HEADERS: Final = ("authorization", "cookie", "proxy-authorization")


def same_origin_only(current: URL, target: URL, status: int, method: str) -> bool:
    """A ready-made policy: follow only redirects that stay on the same origin."""
    return current.origin == target.origin


def next_request(
    request: Request, response: Response, *, https_only: bool = False, referer: bool = False
) -> Request:
    """The request that follows ``response`` (a 301/302/303/307/308 to ``request``).

    Raises :class:`RedirectError` naming ``request`` when it cannot be followed.
    """

    def refuse(message: str) -> RedirectError:
        return RedirectError(message, method=request.method, url=request.url.redacted())

    status = response.status
    location = response.headers.get("location")
    if location is None:
        raise refuse(f"{status} redirect without a Location header")
    if not location.strip():
        raise refuse(f"{status} redirect with an empty Location header")
    try:
        target = request.url.join(location)
    except InvalidURL as exc:
        raise refuse(f"refusing to follow {status} redirect to {location!r}: {exc}") from None
    if https_only and target.scheme != "https":
        raise refuse(
            f"refusing to follow {status} redirect to {target.redacted()!r}: https_only is set"
        )
    if not target.fragment and request.url.fragment:
        target = target.copy_with(fragment=request.url.fragment)

    method = request.method
    content = request.content
    stream = request.stream
    headers = Headers(request.headers)
    if status in (301, 302, 303) and method != "HEAD":
        if status == 303 or method != "GET":
            method = "GET"
        content = None
        stream = None
        for name in _BODY_HEADERS:
            headers.pop(name, None)
    elif not is_replayable(stream):
        raise refuse(
            f"cannot repeat a one-shot streamed request body (an iterator) for a {status} "
            "redirect: send bytes, a path or a seekable file to allow it, or "
            "follow_redirects=False to handle the redirect yourself"
        )

    auth = request.auth  # a challenge-answering auth (Digest) stays on its origin too
    if target.origin != request.url.origin:
        auth = None
        for name in _CREDENTIAL_HEADERS:
            headers.pop(name, None)
    headers["Host"] = target.host_header
    if referer:
        if request.url.scheme == "https" and target.scheme == "http":
            headers.pop("referer", None)
        else:
            headers["Referer"] = str(request.url.copy_with(username="", password="", fragment=""))
    expect = request.expect_continue if (content or stream is not None) else None
    if not expect:
        headers.pop("expect", None)
    return Request(
        method,
        target,
        headers=headers,
        content=content,
        stream=stream,
        auth=auth,
        expect_continue=expect,
    )
