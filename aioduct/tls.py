"""TLS settings: building ``ssl.SSLContext`` objects and explaining handshake failures.

Loading a CA bundle costs milliseconds, so contexts are built once per distinct setting
and shared. Handshake errors are turned into :class:`~aioduct.TLSError` messages that say
what went wrong in words (expired, wrong host, unknown CA) and what to do about it.
"""

from __future__ import annotations

import functools
import os
import ssl
from typing import Final

import certifi

from .errors import TLSError

__all__ = ["ALPN_HTTP11", "create_ssl_context", "tls_error"]

ALPN_HTTP11: Final = ("http/1.1",)

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
    if isinstance(exc, ssl.SSLError):
        return TLSError(f"TLS handshake with {where} failed: {exc.reason or exc}")
    return TLSError(f"TLS handshake with {where} failed: {exc}")
