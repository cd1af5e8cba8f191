"""HTTP Digest authentication (RFC 7616), as a layer that answers the server's challenge.

``DigestAuth(user, password)`` goes where any ``auth=`` goes (the client, or one
request). A request to an origin it has no challenge for goes out without credentials;
a ``401`` with ``WWW-Authenticate: Digest ...`` is answered by sending the request again
with ``Authorization: Digest ...``. The challenge is then kept per origin, so later
requests there carry credentials from the start, counting ``nc`` up per nonce.

* Algorithms: ``MD5``, ``MD5-sess``, ``SHA-256``, ``SHA-256-sess``, ``SHA-512-256``,
  ``SHA-512-256-sess``; of several challenges the strongest is answered.
* ``qop``: ``auth`` (preferred) and ``auth-int`` (hashes the body); a challenge without
  ``qop`` gets the RFC 2069 answer. ``userhash=true`` sends ``H(user:realm)`` as the
  user name; a non-ASCII name is sent as ``username*`` (RFC 8187) otherwise.
* A rejected answer is not retried, except once for ``stale=true`` (the nonce expired,
  the credentials were right).
* Credentials never leave their origin: the layer runs only on the hops of the origin
  the request was made for (a redirect to another origin drops it, as it drops
  ``Authorization``), so a ``401`` from elsewhere is returned as it is.
* A streamed request body has been consumed by the time the ``401`` arrives and cannot
  be sent again: that raises :class:`~aioduct.AuthError` (send bytes instead, or make
  one request first so later ones carry credentials pre-emptively).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Final
from urllib.parse import quote

from .errors import AuthError
from .headers import Headers

if TYPE_CHECKING:
    from .layers import Next
    from .models import Request, Response
    from .url import Origin

__all__ = ["Challenge", "DigestAuth", "digest_response", "parse_challenges"]


def _hasher(name: str) -> Callable[[bytes], str] | None:
    try:
        hashlib.new(name, b"")
    except ValueError:
        return None
    return lambda data: hashlib.new(name, data).hexdigest()


#: Supported algorithms (upper case, without ``-sess``): hash function, preference.
_ALGORITHMS: Final[dict[str, tuple[Callable[[bytes], str], int]]] = {
    name: (fn, rank)
    for name, hash_name, rank in (
        ("MD5", "md5", 1),
        ("SHA-256", "sha256", 2),
        ("SHA-512-256", "sha512_256", 3),
    )
    if (fn := _hasher(hash_name)) is not None
}
_TCHAR: Final = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def parse_challenges(values: list[str]) -> list[tuple[str, dict[str, str]]]:
    """The challenges of ``WWW-Authenticate`` values: ``[(scheme, {param: value})]``
    with lower-case scheme and parameter names. A challenge naming a parameter twice
    is dropped (it is ambiguous)."""
    out: list[tuple[str, dict[str, str]]] = []
    for value in values:
        current: dict[str, str] | None = None
        broken = False
        i, n = 0, len(value)
        while i < n:
            c = value[i]
            if c in " \t,":
                i += 1
                continue
            start = i
            while i < n and value[i] in _TCHAR:
                i += 1
            if i == start:
                i += 1  # not a token: skip the character
                continue
            token = value[start:i]
            j = i
            while j < n and value[j] in " \t":
                j += 1
            if j < n and value[j] == "=" and current is not None:
                i = j + 1
                while i < n and value[i] in " \t":
                    i += 1
                if i < n and value[i] == '"':
                    i += 1
                    chars = []
                    while i < n and value[i] != '"':
                        if value[i] == "\\" and i + 1 < n:
                            i += 1
                        chars.append(value[i])
                        i += 1
                    i += 1
                    param = "".join(chars)
                else:
                    start = i
                    while i < n and value[i] not in " \t,":
                        i += 1
                    param = value[start:i]
                name = token.lower()
                if name in current:
                    broken = True
                current[name] = param
            else:
                if current is not None and broken:
                    out.pop()
                current, broken = {}, False
                out.append((token.lower(), current))
                i = j
        if current is not None and broken:
            out.pop()
    return out


class Challenge:
    """A Digest challenge of one origin, and the nonce count of its nonce."""

    __slots__ = ("algorithm", "nc", "nonce", "opaque", "qop", "realm", "sess", "stale", "userhash")

    def __init__(self, params: dict[str, str]) -> None:
        algorithm = params.get("algorithm", "MD5").upper()
        self.sess = algorithm.endswith("-SESS")
        self.algorithm = algorithm[:-5] if self.sess else algorithm
        if self.algorithm not in _ALGORITHMS:
            raise ValueError(f"unsupported Digest algorithm {params.get('algorithm')!r}")
        if "nonce" not in params or "realm" not in params:
            raise ValueError("a Digest challenge needs realm and nonce")
        self.realm = params["realm"]
        self.nonce = params["nonce"]
        self.opaque = params.get("opaque")
        qops = {q.strip().lower() for q in params["qop"].split(",")} if "qop" in params else None
        if qops is None:
            self.qop: str | None = None
        elif "auth" in qops:
            self.qop = "auth"
        elif "auth-int" in qops:
            self.qop = "auth-int"
        else:
            raise ValueError(f"unsupported Digest qop {params['qop']!r}")
        self.stale = params.get("stale", "").lower() == "true"
        self.userhash = params.get("userhash", "").lower() == "true"
        self.nc = 0

    @property
    def rank(self) -> int:
        return _ALGORITHMS[self.algorithm][1]


def digest_response(
    *,
    algorithm: str,
    username: str,
    password: str,
    realm: str,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None,
    nc: str,
    cnonce: str,
    body: bytes = b"",
) -> str:
    """The ``response`` value of RFC 7616 §3.4.1 (the RFC 2069 form when ``qop`` is
    ``None``). ``algorithm`` may end in ``-sess``."""
    name = algorithm.upper()
    sess = name.endswith("-SESS")
    H = _ALGORITHMS[name[:-5] if sess else name][0]

    def h(text: str) -> str:
        return H(text.encode("utf-8"))

    ha1 = h(f"{username}:{realm}:{password}")
    if sess:
        ha1 = h(f"{ha1}:{nonce}:{cnonce}")
    a2 = f"{method}:{uri}"
    if qop == "auth-int":
        a2 = f"{a2}:{H(body)}"
    ha2 = h(a2)
    if qop is None:
        return h(f"{ha1}:{nonce}:{ha2}")
    return h(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class DigestAuth:
    """HTTP Digest credentials (RFC 7616); see the module docstring.

    Thread-safe and shareable: the per-origin challenges and nonce counts are guarded
    by a lock, so one instance serves a client's concurrent requests and threads.
    """

    def __init__(self, username: str, password: str) -> None:
        for name, value in (("username", username), ("password", password)):
            if not isinstance(value, str):
                raise TypeError(f"DigestAuth {name} must be a str, not {type(value).__name__}")
            if any(c in value for c in "\r\n\x00"):
                raise ValueError(f"a DigestAuth {name} cannot contain CR, LF or NUL")
        self.username = username
        self._password = password
        self._challenges: dict[Origin, Challenge] = {}
        self._lock = threading.Lock()
        #: Makes client nonces; tests may replace it to reproduce a known exchange.
        self.cnonce: Callable[[], str] = lambda: secrets.token_hex(16)

    def __repr__(self) -> str:
        return f"DigestAuth({self.username!r}, '[secure]')"

    async def __call__(self, request: Request, call_next: Next) -> Response:
        origin = request.url.origin
        with self._lock:
            challenge = self._challenges.get(origin)
        sent = request
        if challenge is not None:
            authorized = self._authorize(request, challenge)
            if authorized is not None:
                sent = authorized
        response = await call_next(sent)
        answered = stale_used = False
        while response.status == 401:
            if response.url is not None and response.url != sent.url:
                return response  # redirected elsewhere first: not this origin's challenge
            challenge = self._pick(response)
            if challenge is None:
                return response
            if challenge.stale:
                if stale_used:
                    return response
                stale_used = True
            elif answered:
                return response  # the credentials were rejected
            answered = True
            if request.stream is not None:
                await response.aclose()
                raise AuthError(
                    f"{request.url.host_header} asked for Digest credentials (401), but "
                    "this request's body is a stream that has been sent and cannot be "
                    "sent again: pass the body as bytes, or make a request to this "
                    "origin first so later ones carry credentials from the start"
                )
            authorized = self._authorize(request, challenge)
            if authorized is None:
                return response
            with self._lock:
                self._challenges[origin] = challenge
            if not response.is_read:
                await response.aclose()
            sent = authorized
            response = await call_next(authorized)
        return response

    def _pick(self, response: Response) -> Challenge | None:
        """The strongest Digest challenge of a 401 this client can answer."""
        best: Challenge | None = None
        for scheme, params in parse_challenges(response.headers.get_list("www-authenticate")):
            if scheme != "digest":
                continue
            try:
                challenge = Challenge(params)
            except ValueError:
                continue
            if best is None or challenge.rank > best.rank:
                best = challenge
        return best

    def _authorize(self, request: Request, challenge: Challenge) -> Request | None:
        """A copy of ``request`` with ``Authorization: Digest ...`` answering
        ``challenge``; ``None`` when it cannot be answered (auth-int over a stream)."""

        if challenge.qop == "auth-int" and request.stream is not None:
            return None
        with self._lock:
            challenge.nc += 1
            nc = f"{challenge.nc:08x}"
        cnonce = self.cnonce()
        uri = request.url.target
        algorithm = challenge.algorithm + ("-sess" if challenge.sess else "")
        response = digest_response(
            algorithm=algorithm,
            username=self.username,
            password=self._password,
            realm=challenge.realm,
            nonce=challenge.nonce,
            method=request.method,
            uri=uri,
            qop=challenge.qop,
            nc=nc,
            cnonce=cnonce,
            body=request.content or b"",
        )
        if challenge.userhash:
            H = _ALGORITHMS[challenge.algorithm][0]
            user = "username=" + _quoted(H(f"{self.username}:{challenge.realm}".encode()))
        elif self.username.isascii():
            user = "username=" + _quoted(self.username)
        else:
            user = "username*=UTF-8''" + quote(self.username, safe="")
        parts = [
            user,
            "realm=" + _quoted(challenge.realm),
            "uri=" + _quoted(uri),
            "algorithm=" + (algorithm.upper()[:-5] + "-sess" if challenge.sess else algorithm),
            "nonce=" + _quoted(challenge.nonce),
        ]
        if challenge.qop is not None:
            parts += [f"nc={nc}", "cnonce=" + _quoted(cnonce), f"qop={challenge.qop}"]
        elif challenge.sess:
            parts.append("cnonce=" + _quoted(cnonce))  # -sess hashes it into HA1
        parts.append("response=" + _quoted(response))
        if challenge.opaque is not None:
            parts.append("opaque=" + _quoted(challenge.opaque))
        if challenge.userhash:
            parts.append("userhash=true")
        headers = Headers(request.headers)
        headers["Authorization"] = "Digest " + ", ".join(parts)
        return request.copy_with(headers=headers)
