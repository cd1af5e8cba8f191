"""Authentication helpers that set a header: HTTP Basic (RFC 7617) and Bearer (RFC 6750).

Credentials are attached to the request they were given for; the redirect rules strip
``Authorization`` when a hop leaves the origin, so they never leak to another host.
Challenge-response schemes (Digest) arrive with the middleware layer.
"""

from __future__ import annotations

import base64
from typing import Protocol, runtime_checkable

from .headers import Headers

__all__ = ["Auth", "AuthTypes", "BasicAuth", "BearerAuth", "resolve_auth"]


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


AuthTypes = tuple[str, str] | Auth


def resolve_auth(auth: AuthTypes | None) -> Auth | None:
    """Accept ``(user, password)`` as shorthand for :class:`BasicAuth`."""
    if auth is None or isinstance(auth, Auth):
        return auth
    if isinstance(auth, tuple) and len(auth) == 2:
        return BasicAuth(*auth)
    raise TypeError(f"auth must be (user, password), BasicAuth or BearerAuth, not {auth!r}")
