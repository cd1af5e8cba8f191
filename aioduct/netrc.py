"""``.netrc`` credentials (the file curl, wget and ftp read), as HTTP Basic auth.

With ``trust_env=True`` (the default) a client reads the file named by ``$NETRC``, or
``~/.netrc``, once when it is created. Each hop of a request that carries no
credentials of its own (no ``Authorization`` header, no ``auth=``, no user in the URL)
gets the Basic credentials of the ``machine`` entry for *that hop's* host, or of the
``default`` entry. So a redirect to another host never carries the first host's netrc
credentials (requests CVE-2014-1829): the redirect drops ``Authorization`` when it
leaves the origin, and the new host gets its own entry, or nothing.

Rules (each from an advisory, see docs/authentication.md):

* The key is the parsed host name, never a prefix of the authority text
  (``http://example.com:@evil.test/`` looks up ``evil.test``; requests CVE-2024-47081),
  and the port is ignored (``http://h:8080/`` matches ``machine h``).
* An entry needs both ``login`` and ``password`` to give credentials: an entry with
  only a login sends nothing, it never borrows another entry's password (curl
  CVE-2024-11053, CVE-2025-0167).
* The first ``machine`` entry for a host wins; ``default`` applies to hosts with none.

A malformed file (an unterminated quote, a NUL byte, a keyword without its value, an
unknown keyword, a token longer than 4 KiB) is not used at all, and the ``aioduct``
logger says why and where, once per client: failing every request, including those to
hosts the file does not mention, would punish a mistake that has nothing to do with
them, while guessing at half a file could send the wrong credentials.
"""

from __future__ import annotations

import logging
import os
from typing import Final

from .auth import BasicAuth

__all__ = ["Netrc", "NetrcParseError", "load_netrc", "netrc_path"]

log = logging.getLogger("aioduct")

_MAX_TOKEN: Final = 4096
_MAX_FILE: Final = 1 << 20


class NetrcParseError(ValueError):
    """The netrc file is malformed; the message names the line."""


class Netrc:
    """The entries of a netrc file: ``machine -> (login, password)`` and ``default``."""

    def __init__(self, text: str, *, path: str = "<netrc>") -> None:
        self.path = path
        self.machines: dict[str, tuple[str | None, str | None]] = {}
        self.default: tuple[str | None, str | None] | None = None
        self._auth: dict[str, BasicAuth | None] = {}
        self._parse(text)

    def _parse(self, text: str) -> None:
        if "\x00" in text:
            line = text.count("\n", 0, text.index("\x00")) + 1
            raise NetrcParseError(f"{self.path}, line {line}: NUL byte")
        tokens = _tokens(text, self.path)
        entry: dict[str, str] | None = None
        name: str | None = None  # None for default
        entries: list[tuple[str | None, dict[str, str]]] = []
        i = 0
        while i < len(tokens):
            line, token = tokens[i]
            i += 1
            if token == "macdef":
                # A macro runs to the next empty line (its lines are not tokens).
                i = _skip_macro(tokens, i, text)
                continue
            if token in ("machine", "default"):
                if token == "machine":
                    if i >= len(tokens):
                        raise NetrcParseError(f"{self.path}, line {line}: 'machine' without a name")
                    name = tokens[i][1].rstrip(".").lower()
                    i += 1
                else:
                    name = None
                entry = {}
                entries.append((name, entry))
                continue
            if token in ("login", "password", "passwd", "account"):
                if entry is None:
                    raise NetrcParseError(
                        f"{self.path}, line {line}: {token!r} before any 'machine' or 'default'"
                    )
                if i >= len(tokens):
                    raise NetrcParseError(f"{self.path}, line {line}: {token!r} without a value")
                entry["password" if token == "passwd" else token] = tokens[i][1]
                i += 1
                continue
            raise NetrcParseError(f"{self.path}, line {line}: unknown keyword {token[:40]!r}")
        for host, fields in entries:
            pair = (fields.get("login"), fields.get("password"))
            if host is None:
                if self.default is None:
                    self.default = pair
            elif host not in self.machines:
                self.machines[host] = pair

    def lookup(self, host: str) -> BasicAuth | None:
        """Basic credentials for ``host``, or ``None`` when its entry (or the default)
        lacks a login or a password."""
        try:
            return self._auth[host]
        except KeyError:
            pass
        key = host.rstrip(".").lower()
        pair = self.machines.get(key, self.default)
        auth = None
        if pair is not None:
            login, password = pair
            if login is not None and password is not None and ":" not in login:
                auth = BasicAuth(login, password)
        if len(self._auth) < 4096:
            self._auth[host] = auth
        return auth


def _tokens(text: str, path: str) -> list[tuple[int, str]]:
    """``(line, token)`` pairs: whitespace-separated, ``"quoted"`` with ``\\`` escapes."""
    out: list[tuple[int, str]] = []
    i, n, line = 0, len(text), 1
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
            continue
        if c.isspace():
            i += 1
            continue
        if c == "#" and (i == 0 or text[i - 1] in "\n"):
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        start_line = line
        chars: list[str] = []
        if c == '"':
            i += 1
            while True:
                if i >= n:
                    raise NetrcParseError(f"{path}, line {start_line}: unterminated quote")
                c = text[i]
                if c == '"':
                    i += 1
                    break
                if c == "\\" and i + 1 < n:
                    i += 1
                    c = text[i]
                if c == "\n":
                    line += 1
                chars.append(c)
                i += 1
                if len(chars) > _MAX_TOKEN:
                    raise NetrcParseError(f"{path}, line {start_line}: token longer than 4 KiB")
        else:
            start = i
            while i < n and not text[i].isspace():
                i += 1
            if i - start > _MAX_TOKEN:
                raise NetrcParseError(f"{path}, line {start_line}: token longer than 4 KiB")
            chars.append(text[start:i])
        out.append((start_line, "".join(chars)))
    return out


def _skip_macro(tokens: list[tuple[int, str]], i: int, text: str) -> int:
    """The index of the first token after a ``macdef`` body (which ends at an empty
    line, or at the end of the file)."""
    if i >= len(tokens):
        return i
    name_line = tokens[i][0]
    lines = text.split("\n")
    end_line = len(lines) + 1
    for number in range(name_line + 1, len(lines) + 1):
        if not lines[number - 1].strip():
            end_line = number
            break
    while i < len(tokens) and tokens[i][0] < end_line:
        i += 1
    return i


def netrc_path() -> str | None:
    """``$NETRC`` if set, else ``~/.netrc`` -- when that file exists."""
    path = os.environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    return path if os.path.isfile(path) else None


def load_netrc(path: str | None = None) -> Netrc | None:
    """The netrc file at ``path`` (default: :func:`netrc_path`), or ``None`` when there is
    none or it is malformed (then a warning on the ``aioduct`` logger says why)."""
    if path is None:
        path = netrc_path()
        if path is None:
            return None
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_FILE + 1)
    except OSError as exc:
        log.warning("aioduct: cannot read the netrc file %s (%s); not using it", path, exc)
        return None
    if len(data) > _MAX_FILE:
        log.warning("aioduct: the netrc file %s is larger than 1 MiB; not using it", path)
        return None
    try:
        return Netrc(data.decode("utf-8", errors="replace"), path=path)
    except NetrcParseError as exc:
        log.warning("aioduct: not using the malformed netrc file: %s", exc)
        return None
