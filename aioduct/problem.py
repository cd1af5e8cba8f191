"""RFC 9457 Problem Details: the ``application/problem+json`` body of an API error."""

from __future__ import annotations

from typing import Any, Final

import msgspec

__all__ = ["Problem", "is_problem", "parse_problem"]

_MEMBERS: Final = {"type": str, "title": str, "status": int, "detail": str, "instance": str}


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    """A problem details object. ``type`` is ``"about:blank"`` when the server gave none
    (RFC 9457 §4.2.1); members beyond the five standard ones are in ``extensions``."""

    type: str = "about:blank"
    title: str | None = None
    status: int | None = None
    detail: str | None = None
    instance: str | None = None
    extensions: dict[str, Any] = {}


def is_problem(content_type: str | None) -> bool:
    mime = (content_type or "").partition(";")[0].strip().lower()
    return mime == "application/problem+json"


def parse_problem(body: bytes) -> Problem:
    """The Problem in ``body``; a standard member of the wrong JSON type is ignored, as
    RFC 9457 §3.1 says. Raises ``msgspec.DecodeError`` if the body is not JSON, and
    ``ValueError`` if it is not a JSON object."""
    data = msgspec.json.decode(body)
    if not isinstance(data, dict):
        raise ValueError(f"a problem details body must be a JSON object, not {type(data).__name__}")
    members: dict[str, Any] = {}
    extensions: dict[str, Any] = {}
    for key, value in data.items():
        kind = _MEMBERS.get(key)
        if kind is None:
            extensions[key] = value
        elif isinstance(value, kind) and not isinstance(value, bool):
            members[key] = value
    return Problem(**members, extensions=extensions)
