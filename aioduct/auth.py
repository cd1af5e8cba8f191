"""Authentication: credentials that set a header, and credentials that talk.

Two kinds of object go where ``auth=`` goes (a client, or one request):

* header auth -- anything with ``apply(headers)``: :class:`BasicAuth` (RFC 7617),
  :class:`BearerAuth` (RFC 6750), ``(user, password)``. It is applied when the request
  is built; the redirect rules strip ``Authorization`` when a hop leaves the origin.
* challenge auth -- a layer, ``async (request, call_next) -> Response``, such as
  :class:`~aioduct.DigestAuth`: it rides on the request (``Request.auth``) and
  :class:`AuthLayer` runs it around each hop on the request's origin (a redirect to
  another origin drops it, as it drops the header).

:class:`AuthLayer` also fills in ``.netrc`` credentials (:mod:`aioduct.netrc`) for hops
that carry none.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Final, Protocol, Union, runtime_checkable

from .headers import Headers

if TYPE_CHECKING:
    from .layers import Layer, Next
    from .models import Request, Response
    from .netrc import Netrc

__all__ = [
    "Auth",
    "AuthLayer",
    "AuthTypes",
    "BasicAuth",
    "BearerAuth",
    "resolve_auth",
    "with_request_auth",
]


@runtime_checkable
class Auth(Protocol):
    """Anything that can add credentials to a request's headers."""

    def apply(self, headers: Headers) -> None: ...


class BasicAuth:
    """``Authorization: Basic base64(user:password)``; UTF-8 per RFC 7617 §2.1."""

    __slots__ = ("_value", "username")

    def __init__(self, username: str, password: str = "") -> None:
        if ":" in username:
            raise ValueError("a Basic auth username cannot contain ':' (RFC 7617 §2)")
        self.username = username
        token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        self._value = f"Basic {token}"

    def apply(self, headers: Headers) -> None:
        headers["Authorization"] = self._value

    def __repr__(self) -> str:
        return f"BasicAuth({self.username!r}, '[secure]')"


class BearerAuth:
    """``Authorization: Bearer <token>`` (RFC 6750 §2.1)."""

    __slots__ = ("_value",)

    def __init__(self, token: str) -> None:
        if not token or any(c in token for c in "\r\n\x00 "):
            raise ValueError("a bearer token must be non-empty and contain no spaces or CR/LF")
        self._value = f"Bearer {token}"

    def apply(self, headers: Headers) -> None:
        headers["Authorization"] = self._value

    def __repr__(self) -> str:
        return "BearerAuth('[secure]')"


AuthTypes = Union[tuple[str, str], Auth, "Layer"]


def resolve_auth(auth: Any) -> Auth | Layer | None:
    """Accept ``(user, password)`` as shorthand for :class:`BasicAuth`; header auth and
    challenge auth (a layer, e.g. DigestAuth) pass through."""
    if auth is None or hasattr(auth, "apply"):
        return auth  # type: ignore[no-any-return]
    if isinstance(auth, tuple) and len(auth) == 2:
        return BasicAuth(*auth)
    if callable(auth):
        return auth  # type: ignore[no-any-return]
    raise TypeError(
        f"auth must be (user, password), BasicAuth, BearerAuth, DigestAuth or another "
        f"auth layer, not {auth!r}"
    )


class AuthLayer:
    """The innermost layer: runs a request's challenge auth (Digest) around its hop, or
    gives a hop without credentials those of its host in ``.netrc``."""

    __slots__ = ("netrc",)

    def __init__(self, netrc: Netrc | None = None) -> None:
        self.netrc = netrc

    def __call__(self, request: Request, call_next: Next) -> Awaitable[Response]:
        # Not a coroutine: it only picks what to await, so it adds no frame to the chain.
        flow = request.auth
        if flow is not None:
            return flow(request, call_next)
        return call_next(self.prepare(request))

    def prepare(self, request: Request) -> Request:
        """The inline form (:class:`~aioduct.layers.HopHooks`): ``request`` with the
        netrc credentials of its host, if it carries none of its own."""
        netrc = self.netrc
        if netrc is not None and request.auth is None and "authorization" not in request.headers:
            credentials = netrc.lookup(request.url.host)
            if credentials is not None:
                return _with_header_auth(request, credentials)
        return request

    def observe(self, sent: Request, response: Response) -> None:
        """Nothing to learn from a response (challenges are the Digest layer's)."""


#: Runs requests' own challenge auth, for clients without a netrc AuthLayer.
REQUEST_AUTH: Final = AuthLayer()


def with_request_auth(layers: tuple[Layer, ...]) -> tuple[Layer, ...]:
    """``layers`` with an :class:`AuthLayer` in its place (after middleware, before rate
    limits; last in a plain tuple), for a request that carries challenge auth: it runs
    it on each hop that still carries it, those of its origin."""
    for layer in layers:
        if type(layer) is AuthLayer:
            return layers
    index = getattr(layers, "auth_index", len(layers))
    return (*layers[:index], REQUEST_AUTH, *layers[index:])


def _with_header_auth(request: Request, auth: Auth) -> Request:
    """A copy of ``request`` with ``auth`` applied (the caller's request stays as is)."""

    headers = Headers(request.headers)
    auth.apply(headers)
    return request.copy_with(headers=headers)
