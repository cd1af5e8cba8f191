"""RFC 8288 ``Link`` headers: ``<url>; rel="next"; title="..."``, comma-separated.

Parsed by hand rather than by splitting on commas and semicolons, because both may sit
inside a quoted parameter value (``title="a, b; c"``) or a URL.
"""

from __future__ import annotations

from collections.abc import Iterable

from .errors import InvalidURL
from .url import URL

__all__ = ["links_by_rel", "parse_link_header"]

_SPACE = " \t"


def _quoted(value: str, i: int) -> tuple[str, int]:
    """The quoted-string starting at ``value[i] == '"'``, unescaped, and where it ends."""
    out: list[str] = []
    i += 1
    n = len(value)
    while i < n:
        c = value[i]
        if c == "\\" and i + 1 < n:
            out.append(value[i + 1])
            i += 2
        elif c == '"':
            return "".join(out), i + 1
        else:
            out.append(c)
            i += 1
    return "".join(out), n  # unterminated: take the rest, as browsers do


def parse_link_header(value: str) -> list[dict[str, str]]:
    """Each link of a ``Link`` field value as ``{"url": ..., param: value, ...}``.

    Parameter names are lower-cased; the first occurrence of a parameter wins (RFC 8288
    §3.3 for ``rel``). Malformed pieces are skipped, never raised: a server's bad
    header should not break a response.
    """
    links: list[dict[str, str]] = []
    i, n = 0, len(value)
    while i < n:
        while i < n and value[i] in _SPACE + ",":
            i += 1
        if i >= n:
            break
        if value[i] != "<":
            while i < n and value[i] != ",":  # not a link: skip to the next one
                i = _quoted(value, i)[1] if value[i] == '"' else i + 1
            continue
        end = value.find(">", i)
        if end < 0:
            break
        link = {"url": value[i + 1 : end].strip()}
        i = end + 1
        while i < n:
            while i < n and value[i] in _SPACE:
                i += 1
            if i >= n or value[i] == ",":
                break
            if value[i] != ";":
                i += 1
                continue
            i += 1
            start = i
            while i < n and value[i] not in "=;,":
                i += 1
            name = value[start:i].strip().lower()
            param = ""
            if i < n and value[i] == "=":
                i += 1
                while i < n and value[i] in _SPACE:
                    i += 1
                if i < n and value[i] == '"':
                    param, i = _quoted(value, i)
                else:
                    start = i
                    while i < n and value[i] not in ";,":
                        i += 1
                    param = value[start:i].strip()
            if name and name != "url" and name not in link:
                link[name] = param
        links.append(link)
    return links


def links_by_rel(values: Iterable[str], base: URL | None) -> dict[str, dict[str, str]]:
    """``Response.links``: every link keyed by each of its relation types (lower-cased;
    the URL itself when it has no ``rel``), its ``url`` resolved against ``base``.
    The first link of a relation wins."""
    found: dict[str, dict[str, str]] = {}
    for value in values:
        for link in parse_link_header(value):
            if base is not None:
                try:
                    link["url"] = str(base.join(link["url"]))
                except (InvalidURL, ValueError):
                    pass  # keep it as sent
            rels = link.get("rel", "").lower().split()
            for key in rels or [link["url"]]:
                found.setdefault(key, link)
    return found
