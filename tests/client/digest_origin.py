"""The server side of RFC 7616, written for the tests apart from aioduct.digest.

:class:`DigestOrigin` makes a :class:`ScriptServer` path Digest-protected: it sends the
challenge, and checks each ``Authorization: Digest`` it gets by computing the expected
``response`` itself with ``hashlib`` (so a bug in the client's computation cannot hide
behind the same bug here), that ``nc`` grows per nonce and that ``uri`` is the target.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from urllib.parse import unquote

from aioduct.testing.server import Conn, ScriptServer, ServerRequest

_PARAM = re.compile(r'([A-Za-z0-9_*-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)')
_HASHES = {"MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512_256"}


def parse_authorization(value: str) -> dict[str, str]:
    assert value.startswith("Digest "), value
    out = {}
    for name, raw in _PARAM.findall(value[7:]):
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        assert name.lower() not in out, f"{name} twice in {value}"
        out[name.lower()] = raw
    return out


class DigestOrigin:
    """A Digest-protected ``path`` on ``srv``; ``log`` records each verdict."""

    def __init__(
        self,
        srv: ScriptServer,
        path: str = "/protected",
        *,
        username: str = "Mufasa",
        password: str = "Circle of Life",
        realm: str = "aioduct@example.org",
        algorithm: str = "MD5",
        qop: str | None = "auth",
        userhash: bool = False,
        stale_after: int | None = None,
        extra_challenges: tuple[str, ...] = (),
    ) -> None:
        self.username, self.password, self.realm = username, password, realm
        self.algorithm, self.qop, self.userhash = algorithm, qop, userhash
        self.stale_after = stale_after
        self.extra_challenges = extra_challenges
        self.nonces: dict[str, int] = {}  # nonce -> last nc seen
        self._counter = itertools.count(1)
        self.log: list[str] = []
        srv.add_route(path, self.handle)
        srv.add_route(path + "/*", self.handle)

    def _h(self, text: str | bytes) -> str:
        base = self.algorithm.upper().removesuffix("-SESS")
        data = text.encode() if isinstance(text, str) else text
        return hashlib.new(_HASHES[base], data).hexdigest()

    def challenge(self, *, stale: bool = False) -> str:
        nonce = f"n{next(self._counter)}x{'Q' * 8}"
        self.nonces[nonce] = 0
        parts = [
            f'realm="{self.realm}"',
            f'nonce="{nonce}"',
            'opaque="0paque"',
            f"algorithm={self.algorithm}",
        ]
        if self.qop is not None:
            parts.append(f'qop="{self.qop}"')
        if stale:
            parts.append("stale=true")
        if self.userhash:
            parts.append("userhash=true")
        return "Digest " + ", ".join(parts)

    def expected(self, fields: dict[str, str], method: str, body: bytes) -> str:
        h = self._h
        ha1 = h(f"{self.username}:{self.realm}:{self.password}")
        if self.algorithm.upper().endswith("-SESS"):
            ha1 = h(f"{ha1}:{fields['nonce']}:{fields['cnonce']}")
        a2 = f"{method}:{fields['uri']}"
        if fields.get("qop") == "auth-int":
            a2 += ":" + h(body)
        if "qop" not in fields:
            return h(f"{ha1}:{fields['nonce']}:{h(a2)}")
        return h(
            f"{ha1}:{fields['nonce']}:{fields['nc']}:{fields['cnonce']}:{fields['qop']}:{h(a2)}"
        )

    def verdict(self, req: ServerRequest) -> tuple[bool, bool]:
        """``(accepted, stale)`` for the request's credentials."""
        value = req.header("authorization")
        if value is None or not value.startswith("Digest "):
            self.log.append("none")
            return False, False
        f = parse_authorization(value)
        if self.userhash:
            user_ok = f.get("userhash") == "true" and f.get("username") == self._h(
                f"{self.username}:{self.realm}"
            )
        elif "username*" in f:
            user_ok = unquote(f["username*"].removeprefix("UTF-8''")) == self.username
        else:
            user_ok = f.get("username") == self.username
        if f.get("nonce") not in self.nonces or not user_ok or f.get("uri") != req.target:
            self.log.append("bad-fields")
            return False, False
        if f.get("realm") != self.realm or f.get("opaque") != "0paque":
            self.log.append("bad-fields")
            return False, False
        if f.get("algorithm", "MD5").upper() != self.algorithm.upper():
            self.log.append("bad-algorithm")
            return False, False
        if self.qop is not None:
            nc = int(f["nc"], 16)
            if nc <= self.nonces[f["nonce"]]:
                self.log.append("replayed-nc")
                return False, False
            self.nonces[f["nonce"]] = nc
        else:
            nc = 0
        if f.get("response") != self.expected(f, req.method, req.body):
            self.log.append("bad-response")
            return False, False
        if self.stale_after is not None and nc > self.stale_after:
            self.log.append("stale")
            return False, True
        self.log.append(f"ok nc={nc}")
        return True, False

    async def handle(self, conn: Conn, req: ServerRequest) -> None:
        ok, stale = self.verdict(req)
        if ok:
            await conn.send_response(200, [("Content-Type", "text/plain")], b"welcome")
            return
        headers = [(b"WWW-Authenticate", c.encode()) for c in self.extra_challenges]
        headers.append((b"WWW-Authenticate", self.challenge(stale=stale).encode()))
        await conn.send_response(401, headers, b"who are you?")
