"""TLS settings: ``ssl.SSLContext`` objects, saved sessions, and handshake failures explained.

Loading a CA bundle costs milliseconds, so contexts are built once per distinct setting
and shared. Sessions are kept per client (:class:`SessionCache`) so that the next
connection to a server resumes instead of running a full handshake. Handshake errors
are turned into :class:`~aioduct.TLSError` messages that say what went wrong in words
(expired, wrong host, unknown CA) and what to do about it.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import ipaddress
import os
import ssl
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final, NamedTuple

import certifi

from .errors import TLSError

__all__ = [
    "ALPN_H2",
    "ALPN_HTTP11",
    "ALPN_NONE",
    "CA_BUNDLE_VARIABLES",
    "TLS_VERSIONS",
    "SessionCache",
    "SessionKey",
    "certificate_covers",
    "check_pins",
    "check_pins_der",
    "create_ssl_context",
    "keylog_file",
    "spki_sha256",
    "system_ca_file",
    "tls_error",
    "verify_setting",
]

#: Environment variables naming CA roots, honoured in this order when ``trust_env`` is
#: on and ``verify=True``: OpenSSL's own, then those of requests and of curl.
CA_BUNDLE_VARIABLES: Final = (
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
)

ALPN_NONE: Final[tuple[str, ...]] = ()
ALPN_HTTP11: Final = ("http/1.1",)
#: Offered when HTTP/2 is enabled: the server picks (h2 first in our preference).
ALPN_H2: Final = ("h2", "http/1.1")

CertSpec = str | tuple[str, str] | tuple[str, str, str] | None

#: ``min_tls_version`` / ``max_tls_version`` values. Nothing older than TLS 1.2 is spoken.
TLS_VERSIONS: Final = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


@functools.lru_cache(maxsize=32)
def create_ssl_context(
    verify: bool | str = True,
    cert: CertSpec = None,
    alpn: tuple[str, ...] = ALPN_HTTP11,
    min_version: str | None = None,
    max_version: str | None = None,
    keylog: str | None = None,
) -> ssl.SSLContext:
    """An ``SSLContext`` for the given settings (cached: treat it as read-only).

    ``verify`` is ``True`` (certifi's Mozilla roots), ``False`` (no verification at all),
    ``"system"`` (the operating system's trust store, through ``truststore``), or a path
    to a CA bundle file or a hashed CA directory. ``min_version``/``max_version`` are
    keys of :data:`TLS_VERSIONS`; ``keylog`` a file to append session secrets to (for
    Wireshark: see :func:`keylog_file`).
    """
    if verify is False:
        context = _new_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif verify == "system":
        import truststore

        context = truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    elif verify is True:
        context = _new_context(cafile=certifi.where())
    else:
        path = os.fspath(verify)
        if os.path.isdir(path):
            context = _new_context(capath=path)
        elif os.path.isfile(path):
            try:
                context = _new_context(cafile=path)
            except ssl.SSLError as exc:
                raise TLSError(f"cannot load CA bundle {path!r}: {exc}") from None
        else:
            raise TLSError(f"verify={path!r} is neither a CA bundle file nor a directory")
    context.minimum_version = TLS_VERSIONS[min_version or "1.2"]
    if max_version is not None:
        context.maximum_version = TLS_VERSIONS[max_version]
    if keylog is not None:
        try:
            context.keylog_filename = keylog
        except OSError as exc:
            raise TLSError(
                f"SSLKEYLOGFILE={keylog!r} cannot be opened for appending ({exc.strerror}); "
                "fix or unset it, or pass trust_env=False to ignore it"
            ) from None
    if cert is not None:
        certfile, keyfile, password = _cert_parts(cert)
        try:
            context.load_cert_chain(certfile, keyfile, password)
        except (OSError, ssl.SSLError) as exc:
            raise TLSError(f"cannot load client certificate {certfile!r}: {exc}") from None
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


def _new_context(cafile: str | None = None, capath: str | None = None) -> ssl.SSLContext:
    """``ssl.create_default_context`` without its environment lookup: it would log
    TLS secrets to ``SSLKEYLOGFILE`` even with ``trust_env=False`` (and fail on a bad
    path before we could say what is wrong); :func:`keylog_file` decides instead."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies, checks host names
    if sys.version_info >= (3, 13):  # what create_default_context adds there
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN | ssl.VERIFY_X509_STRICT
    if cafile is None and capath is None:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        context.load_verify_locations(cafile, capath)
    return context


def verify_setting(verify: bool | str, *, trust_env: bool) -> bool | str:
    """What to verify against: ``verify`` itself, or with ``verify=True`` and
    ``trust_env``, the CA file or directory the environment names (see
    :data:`CA_BUNDLE_VARIABLES`; the first one set and not empty wins)."""
    if verify is not True or not trust_env:
        return verify
    for name in CA_BUNDLE_VARIABLES:
        path = os.environ.get(name)
        if path:
            if not os.path.exists(path):
                raise TLSError(
                    f"{name}={path!r} (from the environment) names no CA bundle file or "
                    "directory; fix or unset it, or pass trust_env=False to ignore it"
                )
            return path
    return True


def system_ca_file() -> str | None:
    """The operating system's CA bundle as one file, for TLS stacks that take only files
    (aioquic, for HTTP/3 with ``verify="system"``): OpenSSL's default (which honours
    ``SSL_CERT_FILE``), else the usual Linux and BSD locations. Unlike ``truststore``,
    this does not reach the macOS or Windows native stores."""
    default = ssl.get_default_verify_paths().cafile
    if default:
        return default
    for path in (
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/cert.pem",
        "/etc/ssl/ca-bundle.pem",
    ):
        if os.path.isfile(path):
            return path
    return None


def keylog_file(trust_env: bool) -> str | None:
    """The ``SSLKEYLOGFILE`` to log TLS secrets to, as curl and browsers honour it
    (only with ``trust_env``; an empty value is unset)."""
    if not trust_env:
        return None
    return os.environ.get("SSLKEYLOGFILE") or None


def spki_sha256(der: bytes) -> str:
    """The base64 SHA-256 of a DER certificate's SubjectPublicKeyInfo: the form of
    curl's ``--pinnedpubkey sha256//...`` and of HPKP pins.

    ``openssl x509 -in cert.pem -pubkey -noout | openssl pkey -pubin -outform der |
    openssl dgst -sha256 -binary | base64`` prints the same. The DER walk reads only
    the outer lengths (Certificate, TBSCertificate, its fields) and takes the seventh
    field (sixth without the optional version): the whole SPKI element.
    """
    try:
        _tag, start, _end = _der_element(der, 0)  # Certificate
        _tag, pos, end = _der_element(der, start)  # TBSCertificate
        tag, _s, after = _der_element(der, pos)
        if tag == 0xA0:  # [0] version
            pos = after
        for _ in range(5):  # serial, signature, issuer, validity, subject
            _tag, _s, pos = _der_element(der, pos)
        tag, _spki_start, spki_end = _der_element(der, pos)
        if tag != 0x30 or spki_end > end:
            raise ValueError("no SubjectPublicKeyInfo")
    except (IndexError, ValueError) as exc:
        raise TLSError(f"cannot read the server certificate's public key: {exc}") from None
    return base64.b64encode(hashlib.sha256(der[pos:spki_end]).digest()).decode()


def _der_element(der: bytes, pos: int) -> tuple[int, int, int]:
    """``(tag, content start, element end)`` of the DER element at ``pos``."""
    tag = der[pos]
    length = der[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if not 0 < count <= 4:
            raise ValueError("bad DER length")
        length = int.from_bytes(der[pos : pos + count], "big")
        pos += count
    end = pos + length
    if end > len(der):
        raise ValueError("truncated DER")
    return tag, pos, end


def check_pins(
    ssl_object: ssl.SSLObject | ssl.SSLSocket | None,
    pins: tuple[str, ...],
    host: str,
    port: int,
) -> None:
    """Raise :class:`TLSError` unless the peer certificate's SPKI hash is one of ``pins``.

    Run on every new connection, resumed ones included (a resumed session carries the
    certificate of the handshake it came from); no certificate at all is a failure.
    """
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    check_pins_der(der, pins, host, port)


def check_pins_der(der: bytes | None, pins: tuple[str, ...], host: str, port: int) -> None:
    """:func:`check_pins` for a certificate in hand (HTTP/3: aioquic's own TLS)."""
    if not der:
        raise TLSError(
            f"TLS connection to {host}:{port} refused: pinned_sha256 is set but the "
            "server presented no certificate to check"
        )
    seen = spki_sha256(der)
    if seen not in pins:
        raise TLSError(
            f"TLS connection to {host}:{port} refused: its certificate's public key "
            f"(SPKI sha256 {seen}) matches none of pinned_sha256; if the server changed "
            "its key on purpose, add the new pin"
        )


def _cert_parts(cert: CertSpec) -> tuple[str, str | None, str | None]:
    if isinstance(cert, str):
        return cert, None, None
    if isinstance(cert, tuple) and len(cert) == 2:
        return cert[0], cert[1], None
    if isinstance(cert, tuple) and len(cert) == 3:
        return cert[0], cert[1], cert[2]
    raise TypeError(f"cert must be a path or (cert, key[, password]), not {cert!r}")


class SessionKey(NamedTuple):
    """What a saved session may be resumed for.

    The context stands for everything that must match: the verification settings that
    accepted the server's certificate (a resumed handshake does not check it again),
    the client certificate, and the ALPN offer. OpenSSL refuses a session from another
    context anyway; keying by it also means a session is never even tried there.
    """

    context: ssl.SSLContext
    server_hostname: str
    port: int


class SessionCache:
    """The latest resumable TLS session per :class:`SessionKey`, offered to new connections.

    A session is offered to every new connection to its server until the server
    declines it (:meth:`discard`) or it is past half its lifetime (:meth:`wants` a fresh
    one), at most ``max_keys`` servers (the least recently used are forgotten).

    Why offer one ticket many times, where RFC 8446 §C.4 says clients SHOULD NOT (a
    passive observer can link connections that present the same ticket -- connections
    from one client address to one server address, for an HTTP client)? Because every
    session handed across CPython's ``ssl`` API is copied by an ASN.1 round trip that
    decodes the server's certificate again (``_ssl_session_dup``): with OpenSSL 3.0 a
    fetch and an offer cost about as much as the handshake work resumption saves, so
    a fresh ticket per connection would make resumption free of gain. Taking a new one
    only when needed keeps one copy per connection (the offer), and servers that
    enforce single use simply decline, which makes us fetch their next ticket.
    """

    __slots__ = ("_clock", "_max_keys", "_sessions")

    def __init__(self, *, max_keys: int = 256, clock: Callable[[], float] = time.time) -> None:
        self._max_keys = max_keys
        #: Wall-clock seconds, the clock of ``SSLSession.time`` (a parameter for tests).
        self._clock = clock
        self._sessions: OrderedDict[SessionKey, ssl.SSLSession] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, key: SessionKey) -> ssl.SSLSession | None:
        """The session to offer for ``key`` (still in the cache), or ``None``."""
        session = self._sessions.get(key)
        if session is None:
            return None
        if session.time + session.timeout <= self._clock():
            del self._sessions[key]  # expired: the server would refuse it
            return None
        self._sessions.move_to_end(key)
        return session

    def wants(self, key: SessionKey) -> bool:
        """Whether a connection to ``key`` should hand over its session (:meth:`save`):
        there is none, or the one kept is past half its lifetime."""
        session = self._sessions.get(key)
        return session is None or session.time + session.timeout / 2 <= self._clock()

    def save(self, key: SessionKey, session: ssl.SSLSession | None) -> None:
        """Keep ``session`` for ``key`` if it can be resumed at all.

        A TLS 1.3 connection has a resumable session only once the server's ticket
        arrived (after the handshake); before that its session has neither a ticket
        nor an id, and is not kept.
        """
        if session is None or not (session.has_ticket or session.id):
            return
        sessions = self._sessions
        if key in sessions:
            sessions.move_to_end(key)
        elif len(sessions) >= self._max_keys:
            sessions.popitem(last=False)
        sessions[key] = session

    def discard(self, key: SessionKey, session: ssl.SSLSession) -> None:
        """The server did not resume ``session``: stop offering it."""
        if self._sessions.get(key) is session:
            del self._sessions[key]

    def clear(self) -> None:
        self._sessions.clear()


def tls_error(
    exc: BaseException,
    host: str,
    port: int,
    versions: tuple[str | None, str | None] = (None, None),
) -> TLSError:
    """Translate an ``ssl`` exception from a handshake into a :class:`TLSError`.

    ``versions`` are the client's ``min_tls_version``/``max_tls_version``: when one is
    set, a failure that is not about the certificate says it may be the cause.
    """
    error = _tls_error(exc, host, port)
    low, high = versions
    if (low or high) and not isinstance(exc, ssl.SSLCertVerificationError):
        bounds = " and ".join(
            f"{name}={value!r}"
            for name, value in (("min_tls_version", low), ("max_tls_version", high))
            if value
        )
        return TLSError(
            f"{error}; {bounds} is set: the server may not speak a TLS version in that range"
        )
    return error


def _tls_error(exc: BaseException, host: str, port: int) -> TLSError:
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
                "the certificate is not signed by a trusted CA; to trust a private "
                "CA pass verify='ca.pem' (aioduct crawl: --cacert ca.pem)"
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
