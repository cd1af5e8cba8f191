"""URL: the parsed, validated form of a request URL.

Parsing happens once per distinct URL string (a bounded cache makes repeated requests to the
same URL free) and every field the pipeline needs later — origin, request-target, Host header
— is computed here, so the hot path only reads attributes.

A URL is always safe to send: whichever way one is made (parsed, ``copy_with``,
``with_params``), its scheme, host and request target hold no control character, space or
anything else that could split a request line or a pseudo-header (:mod:`aioduct.protocol.rules`);
otherwise making it raises :class:`InvalidURL`.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Final, NamedTuple
from urllib.parse import quote, unquote, urlencode, urljoin, urlsplit

import idna

from .errors import InvalidURL
from .protocol.rules import SCHEME, show

__all__ = ["URL", "Origin", "QueryParams"]

DEFAULT_PORTS: Final = {"http": 80, "https": 443, "ws": 80, "wss": 443}
SUPPORTED_SCHEMES: Final = frozenset(("http", "https"))

# Characters left alone when re-quoting a path or query: RFC 3986 pchar, '/', '?', and '%'
# so that existing escapes survive. Everything else (spaces, non-ASCII, quotes) is escaped.
_PATH_SAFE: Final = "/:@!$&'()*+,;=-._~%"
_QUERY_SAFE: Final = "/?:@!$&'()*+,;=-._~%"
#: C0 controls and DEL: refused anywhere in a URL (CR/LF would split the request).
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")

QueryParams = (
    Mapping[str, str | int | float | Sequence[str | int | float] | None]
    | Sequence[tuple[str, str | int | float | None]]
    | str
)


class Origin(NamedTuple):
    """Scheme, host and port: what RFC 6454 calls an origin, and the connection pool's key."""

    scheme: str
    host: str
    port: int


class URL:
    """An absolute http(s) URL, split into the parts a client uses.

    ``host`` is ASCII (IDNA-encoded, lower-case; IPv6 without brackets), ``port`` is always
    set (the scheme's default when absent), ``target`` is the origin-form request-target.
    """

    __slots__ = (
        "_str",
        "fragment",
        "host",
        "host_header",
        "origin",
        "password",
        "path",
        "port",
        "query",
        "scheme",
        "target",
        "username",
    )

    scheme: str
    host: str
    port: int
    path: str
    query: str
    fragment: str
    username: str
    password: str
    target: str
    host_header: str
    origin: Origin
    _str: str

    def __new__(cls, url: str | URL) -> URL:
        if isinstance(url, URL):
            return url
        return _parse(url)

    @classmethod
    def _build(
        cls,
        scheme: str,
        host: str,
        port: int | None,
        path: str,
        query: str,
        fragment: str,
        username: str,
        password: str,
    ) -> URL:
        self = object.__new__(cls)
        self.scheme = scheme
        self.host = host
        default = DEFAULT_PORTS.get(scheme)
        self.port = port if port is not None else (default or 0)
        self.path = path or "/"
        self.query = query
        self.fragment = fragment
        self.username = username
        self.password = password
        self.target = target = f"{self.path}?{query}" if query else self.path
        _check_sendable(scheme, host, target)
        bracketed = f"[{host}]" if ":" in host else host
        netloc_host = bracketed if port is None or port == default else f"{bracketed}:{port}"
        self.host_header = netloc_host
        self.origin = Origin(scheme, host, self.port)
        userinfo = ""
        if username or password:
            userinfo = quote(username, safe="") + (
                ":" + quote(password, safe="") if password else ""
            )
            userinfo += "@"
        frag = f"#{fragment}" if fragment else ""
        self._str = f"{scheme}://{userinfo}{netloc_host}{self.target}{frag}"
        return self

    # -- derived forms -------------------------------------------------------------------

    def __str__(self) -> str:
        return self._str

    def __repr__(self) -> str:
        return f"URL({self.redacted()!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, URL):
            return self._str == other._str
        if isinstance(other, str):
            return self._str == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._str)

    def redacted(self) -> str:
        """The URL with any password replaced, safe to log and put in error messages."""
        if not self.password:
            return self._str
        return self.copy_with(password="[secure]")._str

    @property
    def is_https(self) -> bool:
        return self.scheme == "https"

    @property
    def is_default_port(self) -> bool:
        return self.port == DEFAULT_PORTS.get(self.scheme)

    def copy_with(self, **changes: str | int | None) -> URL:
        """A copy with some parts replaced (``scheme``, ``host``, ``port``, ``path``, ...)."""
        parts: dict[str, object] = {
            "scheme": self.scheme,
            "host": self.host,
            "port": None if self.is_default_port else self.port,
            "path": self.path,
            "query": self.query,
            "fragment": self.fragment,
            "username": self.username,
            "password": self.password,
        }
        parts.update(changes)
        return URL._build(**parts)  # type: ignore[arg-type]

    def join(self, reference: str) -> URL:
        """Resolve ``reference`` (e.g. a Location header) against this URL (RFC 3986 §5)."""
        return URL(urljoin(self._str, reference.strip()))

    def with_params(self, params: QueryParams | None) -> URL:
        """This URL with ``params`` appended to its query string."""
        if not params:
            return self
        extra = encode_params(params)
        if not extra:
            return self
        query = f"{self.query}&{extra}" if self.query else extra
        return self.copy_with(query=query)

    def without_fragment(self) -> URL:
        return self.copy_with(fragment="") if self.fragment else self


def encode_params(params: QueryParams) -> str:
    """Encode query parameters: a mapping (list values repeat the key), pairs, or a string.

    ``None`` is an empty value (``{"q": None}`` is ``q=``), as in httpx: the key is sent.
    A string is taken as an encoded query, re-quoted as a URL's query is (spaces and
    non-ASCII percent-encoded); a control character in it raises :class:`InvalidURL`.
    """
    if isinstance(params, str):
        if _CONTROL.search(params) is not None:
            raise InvalidURL(f"control character in query parameters {show(params)}")
        return _requote_query(params.lstrip("?"))
    pairs: list[tuple[str, str]] = []
    items: Iterable[tuple[str, object]] = params.items() if isinstance(params, Mapping) else params
    for key, value in items:
        if isinstance(value, list | tuple):
            pairs.extend((key, _param_str(v)) for v in value)
        else:
            pairs.append((key, _param_str(value)))
    return urlencode(pairs, quote_via=quote)


def _param_str(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _requote_query(query: str) -> str:
    if query and (not query.isascii() or " " in query or '"' in query):
        return quote(query, safe=_QUERY_SAFE)
    return query


def _check_sendable(scheme: str, host: str, target: str) -> None:
    """Refuse parts that cannot go on the wire as they are (see the module docstring)."""
    if scheme not in DEFAULT_PORTS and SCHEME.fullmatch(scheme) is None:
        raise InvalidURL(f"invalid scheme {show(scheme)}")
    if not host or not host.isascii() or not host.isprintable() or " " in host:
        raise InvalidURL(f"invalid host {show(host)}: must be visible ASCII without spaces")
    if not target.isascii() or not target.isprintable() or " " in target:
        raise InvalidURL(
            f"invalid request target {show(target)}: must be visible ASCII without spaces "
            "(percent-encode everything else)"
        )


def _idna_host(host: str, url: str) -> str:
    if host.startswith("["):
        if not host.endswith("]"):
            raise InvalidURL(f"invalid IPv6 host in {url!r}")
        literal = host[1:-1]
        try:
            return str(ipaddress.IPv6Address(literal.split("%", 1)[0])) + (
                "%" + literal.split("%", 1)[1] if "%" in literal else ""
            )
        except ValueError:
            raise InvalidURL(f"invalid IPv6 address {literal!r} in {url!r}") from None
    if host.isascii():
        lowered = host.lower()
        if not lowered or any(c in lowered for c in ' <>\\^`{|}"%/?#@'):
            raise InvalidURL(f"invalid host {host!r} in {url!r}")
        return lowered
    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise InvalidURL(f"invalid international host {host!r} in {url!r}: {exc}") from None


@functools.lru_cache(maxsize=2048)
def _parse(url: str) -> URL:
    if not isinstance(url, str):
        raise InvalidURL(f"URL must be a str or aioduct.URL, not {type(url).__name__}")
    text = url.strip()
    if _CONTROL.search(text) is not None:
        raise InvalidURL(f"control character in URL {url!r}")
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise InvalidURL(f"cannot parse URL {url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if not scheme or not parts.netloc:
        if "://" not in text:
            raise InvalidURL(f"missing scheme in {url!r} (did you mean 'http://{text}'?)")
        raise InvalidURL(f"missing host in {url!r}")
    if scheme not in SUPPORTED_SCHEMES:
        raise InvalidURL(f"unsupported scheme {scheme!r} in {url!r}: aioduct speaks http and https")
    netloc = parts.netloc
    userinfo, _, hostport = netloc.rpartition("@")
    if hostport.startswith("["):
        end = hostport.find("]")
        raw_host, rest = hostport[: end + 1], hostport[end + 1 :]
        if rest and not rest.startswith(":"):
            raise InvalidURL(f"invalid host in {url!r}")
        raw_port = rest[1:]
    else:
        raw_host, _, raw_port = hostport.partition(":")
    if not raw_host:
        raise InvalidURL(f"missing host in {url!r}")
    port: int | None = None
    if raw_port:
        if not raw_port.isdigit() or not 0 < int(raw_port) < 65536:
            raise InvalidURL(f"invalid port {raw_port!r} in {url!r}")
        port = int(raw_port)
    username, _, password = userinfo.partition(":")
    path = parts.path
    if not path.isascii() or " " in path or '"' in path:
        path = quote(path, safe=_PATH_SAFE)
    query = _requote_query(parts.query)
    return URL._build(
        scheme,
        _idna_host(raw_host, url),
        port,
        path,
        query,
        parts.fragment,
        unquote(username),
        unquote(password),
    )
