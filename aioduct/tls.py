"""TLS settings: building ``ssl.SSLContext`` objects and explaining handshake failures.

Loading a CA bundle costs milliseconds, so contexts are built once per distinct setting
and shared. Handshake errors are turned into :class:`~aioduct.TLSError` messages that say
what went wrong in words (expired, wrong host, unknown CA) and what to do about it.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import ssl
from typing import Final

import certifi

from .errors import TLSError

__all__ = ["ALPN_H2", "ALPN_HTTP11", "certificate_covers", "create_ssl_context", "tls_error"]

ALPN_HTTP11: Final = ("http/1.1",)
#: Offered when HTTP/2 is enabled: the server picks (h2 first in our preference).
ALPN_H2: Final = ("h2", "http/1.1")

CertSpec = str | tuple[str, str] | tuple[str, str, str] | None


@functools.lru_cache(maxsize=32)
def create_ssl_context(
    verify: bool | str = True,
    cert: CertSpec = None,
    alpn: tuple[str, ...] = ALPN_HTTP11,
) -> ssl.SSLContext:
    """An ``SSLContext`` for the given settings (cached: treat it as read-only).

    ``verify`` is ``True`` (certifi's Mozilla roots), ``False`` (no verification at all),
    or a path to a CA bundle file or a hashed CA directory.
    """
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif verify is True:
        context = ssl.create_default_context(cafile=certifi.where())
    else:
        path = os.fspath(verify)
        if os.path.isdir(path):
            context = ssl.create_default_context(capath=path)
        elif os.path.isfile(path):
            try:
                context = ssl.create_default_context(cafile=path)
            except ssl.SSLError as exc:
                raise TLSError(f"cannot load CA bundle {path!r}: {exc}") from None
        else:
            raise TLSError(f"verify={path!r} is neither a CA bundle file nor a directory")
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert is not None:
        certfile, keyfile, password = _cert_parts(cert)
        try:
            context.load_cert_chain(certfile, keyfile, password)
        except (OSError, ssl.SSLError) as exc:
            raise TLSError(f"cannot load client certificate {certfile!r}: {exc}") from None
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


def _cert_parts(cert: CertSpec) -> tuple[str, str | None, str | None]:
    if isinstance(cert, str):
        return cert, None, None
    if isinstance(cert, tuple) and len(cert) == 2:
        return cert[0], cert[1], None
    if isinstance(cert, tuple) and len(cert) == 3:
        return cert[0], cert[1], cert[2]
    raise TypeError(f"cert must be a path or (cert, key[, password]), not {cert!r}")


def tls_error(exc: BaseException, host: str, port: int) -> TLSError:
    """Translate an ``ssl`` exception from a handshake into a :class:`TLSError`."""
    where = f"{host}:{port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or exc.reason or str(exc)
        code = exc.verify_code
        if code == 10:  # X509_V_ERR_CERT_HAS_EXPIRED
            hint = "the server's certificate has expired"
        elif code == 9:  # X509_V_ERR_CERT_NOT_YET_VALID
            hint = "the server's certificate is not valid yet (check the clock)"
        elif code == 62 or "Hostname mismatch" in reason or "IP address mismatch" in reason:
            hint = f"the certificate is not valid for {host!r}"
        elif code in (18, 19, 20, 21):
            hint = (
                "the certificate is not signed by a trusted CA; "
                "pass verify='ca.pem' to trust a private CA"
            )
        else:
            hint = "the certificate failed verification"
        return TLSError(f"TLS handshake with {where} failed: {hint} ({reason})")
    if isinstance(exc, ssl.SSLEOFError):
        return TLSError(
            f"TLS handshake with {where} failed: the server closed the connection "
            f"in the middle of it ({exc.reason or exc})"
        )
    if isinstance(exc, ssl.SSLError):
        return TLSError(f"TLS handshake with {where} failed: {exc.reason or exc}")
    return TLSError(f"TLS handshake with {where} failed: {exc}")


def certificate_covers(ssl_object: ssl.SSLObject | ssl.SSLSocket | None, host: str) -> bool:
    """Whether the verified peer certificate of a connection is valid for ``host``.

    Used to decide connection coalescing. Only a certificate that was verified counts:
    with ``verify=False`` nothing is known about it, so nothing is coalesced.
    """
    if ssl_object is None:
        return False
    try:
        cert = ssl_object.getpeercert()
    except ValueError:
        return False
    if not cert:
        return False  # not verified (CERT_NONE): getpeercert() is empty
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    for entry in cert.get("subjectAltName", ()):
        kind, value = entry[0], str(entry[1])
        if ip is not None:
            if kind == "IP Address":
                try:
                    if ipaddress.ip_address(value.strip()) == ip:
                        return True
                except ValueError:
                    continue
        elif kind == "DNS" and _dns_name_matches(value, host):
            return True
    return False


def _dns_name_matches(pattern: str, host: str) -> bool:
    """RFC 6125 §6.4.3: exact match, or ``*.`` standing for exactly one left-most label."""
    pattern = pattern.lower().rstrip(".")
    host = host.lower().rstrip(".")
    if pattern == host:
        return True
    if pattern.startswith("*.") and "*" not in pattern[2:]:
        label, dot, rest = host.partition(".")
        return bool(label) and bool(dot) and rest == pattern[2:] and rest.count(".") >= 1
    return False
