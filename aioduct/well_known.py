"""Well-known URIs (RFC 8615): ``https://host/.well-known/NAME``.

A well-known name is one path segment registered with IANA (``security.txt``,
``openid-configuration``, ``change-password``, ...). :func:`well_known_url` builds the
URL from any URL of the origin and refuses a name that would leave ``/.well-known/``
(a slash, ``.``/``..``, a backslash, a percent-encoding, a query or fragment), so a name
taken from elsewhere cannot point the request at another path.
"""

from __future__ import annotations

import re
from typing import Final

from .url import URL

__all__ = ["well_known_url"]

#: RFC 8615 §3: a segment-nz of RFC 3986, kept to unreserved characters (every
#: registered name fits) so nothing in it is decoded or re-interpreted by a server.
_NAME: Final = re.compile(r"[A-Za-z0-9._~-]+")


def well_known_url(origin: URL | str, name: str) -> URL:
    """``origin``'s ``/.well-known/<name>`` (its path, query and fragment replaced)."""
    if not isinstance(name, str):
        raise TypeError(f"a well-known name is a str, not {type(name).__name__}")
    if not _NAME.fullmatch(name) or name in (".", "..") or set(name) == {"."}:
        raise ValueError(
            f"invalid well-known name {name!r}: it must be one path segment of letters, "
            "digits and '-._~' (e.g. 'security.txt'), without '/', '..' or '%'"
        )
    base = URL(origin)
    return base.copy_with(path=f"/.well-known/{name}", query="", fragment="")
