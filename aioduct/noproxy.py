"""NO_PROXY: which hosts go direct, as a pure matcher (no DNS, no environment).

The value is a list separated by commas (and/or whitespace), as curl reads it:

* ``*`` alone: every host goes direct.
* ``example.org``, ``.example.org``, ``*.example.org``: that domain and every name under
  it, matched on label boundaries -- ``example.org`` never matches ``badexample.org``.
  Case and a trailing dot are ignored on both sides.
* ``127.0.0.1``, ``::1``, ``[::1]``: that address, compared as an address (``::1`` and
  ``0:0::1`` are the same, as are ``127.0.0.1``, ``2130706433`` and ``127.1``, and an
  IPv4-mapped IPv6 address and its IPv4 one), only when the URL's host *is* an address;
  names are not resolved (as curl and requests: resolving would leak DNS lookups for
  proxied hosts).
* ``10.0.0.0/8``, ``::1/128``: every address in the network.
* any of the above with ``:port`` (``example.org:8080``, ``[::1]:8443``): only that port.

Entries that are none of these are ignored rather than matched loosely.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Final, NamedTuple

__all__ = ["NoProxy"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class _Rule(NamedTuple):
    domain: str | None
    network: IPNetwork | None
    port: int | None


_ANY: Final = "*"


def _parse_entry(entry: str) -> _Rule | None:
    port: int | None = None
    host = entry
    if host.startswith("["):  # [v6] or [v6]:port
        end = host.find("]")
        if end < 0:
            return None
        rest = host[end + 1 :]
        host = host[1:end]
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                return None
            port = int(rest[1:])
    elif host.count(":") == 1:  # name:port or v4:port (a bare v6 has two or more)
        host, _, port_text = host.partition(":")
        if not port_text.isdigit():
            return None
        port = int(port_text)
    if port is not None and not 0 < port < 65536:
        return None
    if "/" in host:
        try:
            return _Rule(None, ipaddress.ip_network(host, strict=False), port)
        except ValueError:
            return None
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    else:
        return _Rule(None, ipaddress.ip_network(address), port)
    domain = host.lower().rstrip(".")
    if domain.startswith("*."):
        domain = domain[2:]
    domain = domain.lstrip(".")
    if not domain or "*" in domain or "/" in domain:
        return None
    return _Rule(domain, None, port)


_NUMERIC: Final = frozenset("0123456789abcdefx.")


def _numeric_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The address of an IPv4 literal in another spelling (``2130706433``, ``0x7f.1``,
    ``127.1``), which getaddrinfo would connect to: it must match ``127.0.0.1``."""
    if not host or not set(host) <= _NUMERIC or not host[0].isdigit():
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


class NoProxy:
    """A parsed NO_PROXY value: ``NoProxy("localhost,.corp,10.0.0.0/8").matches(host, port)``."""

    __slots__ = ("_all", "_rules", "value")

    def __init__(self, value: str | None) -> None:
        self.value = value or ""
        self._all = False
        rules = []
        for entry in self.value.replace(",", " ").split():
            if entry == _ANY:
                self._all = True
                continue
            rule = _parse_entry(entry)
            if rule is not None:
                rules.append(rule)
        self._rules = tuple(rules)

    def __bool__(self) -> bool:
        return self._all or bool(self._rules)

    def __repr__(self) -> str:
        return f"NoProxy({self.value!r})"

    def matches(self, host: str, port: int) -> bool:
        """Whether a request to ``host:port`` goes direct (``host`` as in a URL: an IDNA
        name, or an IP address with IPv6 unbracketed)."""
        if self._all:
            return True
        if not self._rules:
            return False
        name = host.lower()
        if name.startswith("[") and name.endswith("]"):
            name = name[1:-1]
        address: IPAddress | None
        try:
            address = ipaddress.ip_address(name.split("%", 1)[0])
        except ValueError:
            address = _numeric_ipv4(name)
            name = name.rstrip(".")
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            mapped: IPAddress | None = address.ipv4_mapped
        else:
            mapped = None
        for rule in self._rules:
            if rule.port is not None and rule.port != port:
                continue
            network = rule.network
            if network is not None:
                if address is not None and (
                    address in network or (mapped is not None and mapped in network)
                ):
                    return True
            elif address is None:
                domain = rule.domain
                assert domain is not None
                if name == domain or (name.endswith(domain) and name[-len(domain) - 1] == "."):
                    return True
        return False
