"""Run a real nginx on loopback with a generated configuration.

Why nginx: a client library must be proven against a production HTTP server, not only
against servers written by the same people who wrote the client.  nginx is strict,
fast and everywhere, so the client tests, the demo and the benchmark harness all talk
to the same fixed set of *locations* (listed in :func:`locations_config`) on an nginx
started here.

Each :class:`Nginx` is private to one process: it picks free loopback ports, writes its
config, pid file, logs and temp directories into its own work directory and runs nginx
in the foreground (``daemon off;``) as a child in its own process group, so stopping it
-- on ``stop()``, on garbage paths through ``atexit``, or when the parent dies (Linux
``PR_SET_PDEATHSIG`` through ``setpriv``) -- never leaves workers behind.  That is what
makes it safe under pytest-xdist, where every worker starts its own nginx.

Example::

    with Nginx(tls=tls_files) as ngx:
        urllib.request.urlopen(ngx.http_url + "/small").read()  # b"Hello, World!"
        ngx.requests_log()  # [LogEntry(connection=1, method="GET", uri="/small", status=200)]
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import errno
import functools
import gzip
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import ssl

    import trustme

__all__ = [
    "BASIC_AUTHORIZATION",
    "BEARER_AUTHORIZATION",
    "BYTES_SIZES",
    "CHAIN_MAX",
    "ECHO_HEADER_NAMES",
    "GZIP_BODY",
    "JSON_BODY",
    "LATIN1_BODY",
    "MANY_HEADERS",
    "NGINX_MISSING_REASON",
    "REDIRECT_CODES",
    "SMALL_BODY",
    "STATUS_CODES",
    "TEXT_BODY",
    "TLS_IDENTITIES",
    "ExtraServer",
    "LogEntry",
    "Nginx",
    "NginxError",
    "TLSFiles",
    "TLSMaterial",
    "deterministic_bytes",
    "locations_config",
    "make_tls",
    "nginx_binary",
    "nginx_version",
]

# --------------------------------------------------------------------------- contents
# The bodies the locations serve, exported so tests compare against the source of truth
# instead of copying literals.

SMALL_BODY = b"Hello, World!"
TEXT_BODY = "héllo wörld ✓"
LATIN1_BODY = "café"
JSON_BODY = b'{"message":"hello","count":42}'
BYTES_SIZES: Mapping[str, int] = {"64k": 65536, "1m": 1048576, "10m": 10485760}
STATUS_CODES = (
    200, 201, 202, 204, 301, 302, 303, 304, 307, 308,
    400, 401, 403, 404, 405, 409, 410, 418, 429, 500, 502, 503, 504,
)  # fmt: skip
REDIRECT_CODES = (301, 302, 303, 307, 308)
CHAIN_MAX = 20
MANY_HEADERS = 50
BASIC_AUTHORIZATION = "Basic dXNlcjpwYXNz"  # user:pass
BEARER_AUTHORIZATION = "Bearer t0ken"
#: Lines of ``/echo/headers``: ``name: value``; an absent header renders as an empty value.
ECHO_HEADER_NAMES = (
    "method", "uri", "host", "user-agent", "authorization", "cookie",
    "proxy-authorization", "referer", "content-type", "content-length",
    "transfer-encoding", "accept", "accept-encoding", "x-test", "connection",
)  # fmt: skip
#: ``/gzip`` and ``/etag`` serve this (about 10 KB of compressible ASCII text).
GZIP_BODY = b"".join(
    b"line %04d: the quick brown fox jumps over the lazy dog\n" % i for i in range(190)
)
#: Names the issued server certificate is valid for (``alt.localhost`` does not resolve
#: without a resolver override; it is there for tests that pin the address).
TLS_IDENTITIES = ("localhost", "127.0.0.1", "alt.localhost")

NGINX_MISSING_REASON = (
    "nginx not found: apt-get install nginx-light (or point AIODUCT_NGINX at a binary)"
)

_NGINX_CANDIDATES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")


def nginx_binary() -> str | None:
    """Path of the nginx executable, or None so callers can skip instead of failing.

    ``$AIODUCT_NGINX`` wins; then ``nginx`` on ``$PATH``; then the usual sbin locations,
    because Debian installs to ``/usr/sbin`` which is not on a non-root ``$PATH``.
    """
    override = os.environ.get("AIODUCT_NGINX")
    if override:
        return override if os.access(override, os.X_OK) else None
    found = shutil.which("nginx")
    if found:
        return found
    for candidate in _NGINX_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return None


@functools.lru_cache(maxsize=8)
def nginx_version(binary: str) -> tuple[int, ...] | None:
    """``(1, 22, 1)`` from ``nginx -v`` (printed on stderr), or None if unknown."""
    try:
        out = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", out.stderr + out.stdout)
    return tuple(int(x) for x in match.groups()) if match else None


def deterministic_bytes(size: int) -> bytes:
    """``size`` bytes of repeating ``0x00..0xff``: position-checkable, incompressible enough."""
    block = bytes(range(256))
    return (block * (size // 256 + 1))[:size]


# --------------------------------------------------------------------------- TLS


@dataclasses.dataclass(frozen=True)
class TLSFiles:
    """PEM files an nginx ``server`` needs: the leaf + chain, and its private key."""

    cert_chain_pem: Path
    key_pem: Path


def make_tls(tmpdir: Path) -> tuple[trustme.CA, TLSFiles]:
    """Make a throwaway CA and a server certificate for :data:`TLS_IDENTITIES`.

    The files are written into ``tmpdir`` (nginx reads them from disk).  trustme is a
    test-only dependency, hence the import here rather than at module level.
    """
    import trustme

    tmpdir.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    leaf = ca.issue_cert(*TLS_IDENTITIES)
    chain = tmpdir / "server-chain.pem"
    key = tmpdir / "server-key.pem"
    chain.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    return ca, TLSFiles(cert_chain_pem=chain, key_pem=key)


def _tls_directives(files: TLSFiles, protocols: str = "TLSv1.2 TLSv1.3") -> str:
    """The ``ssl_*`` directives of a TLS server: its certificate, key and protocols.

    Nothing else is set, so session tickets and the session cache stay nginx's defaults.
    """
    return (
        f"ssl_certificate {_q(str(files.cert_chain_pem))}; "
        f"ssl_certificate_key {_q(str(files.key_pem))}; "
        f"ssl_protocols {protocols};"
    )


@dataclasses.dataclass(frozen=True)
class TLSMaterial:
    """A test CA plus the server certificate files it issued, and the contexts tests need.

    ``ca_pem_path`` is what a client takes as ``verify=``; ``client_ssl_context()`` trusts
    only this CA, so a test passing proves the client really verified the chain.
    """

    ca: trustme.CA
    files: TLSFiles
    ca_pem_path: str

    @classmethod
    def create(cls, tmpdir: Path) -> TLSMaterial:
        ca, files = make_tls(tmpdir)
        ca_pem = tmpdir / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_pem))
        return cls(ca=ca, files=files, ca_pem_path=str(ca_pem))

    def client_ssl_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts only the test CA."""
        import ssl

        return ssl.create_default_context(cafile=self.ca_pem_path)

    def server_ssl_context(self) -> ssl.SSLContext:
        """A server context presenting the issued certificate (for a ScriptServer)."""
        import ssl

        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self.files.cert_chain_pem), str(self.files.key_pem))
        return ctx


# --------------------------------------------------------------------------- config


@dataclasses.dataclass(frozen=True)
class ExtraServer:
    """An ``extra_servers`` entry with more than a plain HTTP/1.1 port.

    ``body`` is the raw inside of its ``server { }`` block (``listen`` is added).  With
    ``tls`` it is served over TLS (``tls_protocols`` only) and its URL is
    ``https://127.0.0.1:PORT`` (the test certificate covers the address); ``http2``
    turns HTTP/2 on: offered by ALPN over TLS, h2c with prior knowledge without.
    """

    body: str
    tls: TLSFiles | None = None
    tls_protocols: str = "TLSv1.2 TLSv1.3"
    http2: bool = False


def _q(text: str) -> str:
    """Quote ``text`` as an nginx string literal (double quotes, escaped)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def locations_config(files: Path, cross_origin: str) -> str:
    """The ``location`` blocks every server block carries.

    ``files`` is the directory holding the generated static files; ``cross_origin`` is
    the absolute origin (may contain nginx variables) ``/cross/CODE/REST`` points to.
    Client tests and the benchmarks depend on these exact paths:

    ==========================  ========================================================
    ``/``                       200 ``ok``
    ``/small``                  200 text/plain :data:`SMALL_BODY` (13 bytes)
    ``/text``                   200 ``text/plain; charset=utf-8`` :data:`TEXT_BODY`
    ``/latin1``                 200 ``text/plain; charset=iso-8859-1`` :data:`LATIN1_BODY`
    ``/json``                   200 application/json :data:`JSON_BODY`
    ``/post``                   any method, body <= 64m read and discarded; 200
                                ``METHOD CONTENT_LENGTH`` (chunked: ``0`` or empty)
    ``/bytes/{64k,1m,10m}``     :func:`deterministic_bytes` of :data:`BYTES_SIZES`
    ``/status/NNN``             NNN from :data:`STATUS_CODES`; body ``status NNN``, none
                                for 204/304; 3xx carry ``Location: /`` and nginx's HTML
    ``/redirect/CODE/REST``     CODE with relative ``Location: /REST?QUERY``; REST is
                                nginx's decoded, slash-merged path: keep it plain
    ``/cross/CODE/REST``        CODE to ``cross_origin/REST?QUERY`` (another origin)
    ``/chain/N``, ``/loop``     302 to ``/chain/N-1`` (N <= 20); ``/chain/0`` 200
                                ``done``; ``/loop`` 302 to itself
    ``/redirect-scheme``        302 to ``ftp://127.0.0.1/x``
    ``/redirect-empty``         302 with an empty ``Location:`` header
    ``/redirect-missing``       302 with no Location header at all
    ``/echo/headers``           200 lines ``name: value`` for :data:`ECHO_HEADER_NAMES`
                                (absent: empty value; repeated: nginx's first one,
                                cookies joined with ``; ``)
    ``/close``                  200 ``closing`` with ``Connection: close``
    ``/slow``                   the 64k file at 16 KiB/s (about 4 s)
    ``/gzip``                   :data:`GZIP_BODY`, gzip-encoded if accepted
    ``/gzip-static``            :data:`GZIP_BODY`; to a client accepting gzip, its
                                pre-compressed ``.gz`` as stored (``gzip_static``, with
                                ``Content-Length``)
    ``/etag``                   :data:`GZIP_BODY` as a static file: ETag, Last-Modified,
                                conditional requests
    ``/set-cookie``             200 with ``Set-Cookie: a=1; Path=/``
    ``/alt-svc/PORT``           200 ``ok`` with ``Alt-Svc: h3=":PORT"; ma=60``: HTTP/3
                                at PORT of the same host (an H3Server)
    ``/headers/many``           200 with ``X-Many-1`` .. ``X-Many-50``
    ``/auth/basic``             401 + ``WWW-Authenticate: Basic realm="aioduct"`` unless
                                ``Authorization`` is :data:`BASIC_AUTHORIZATION`, then
                                200 ``authorized``; ``/auth/bearer`` likewise (Bearer)
    anything else               404 ``no such location: PATH``
    ==========================  ========================================================
    """
    f = files
    out: list[str] = [
        # Anything not listed is a 404 that names the path: easier to debug than a
        # silent static-file miss.
        "location / { default_type text/plain; return 404 'no such location: $uri\\n'; }",
        "location = / { default_type text/plain; return 200 ok; }",
        f"location = /small {{ default_type text/plain; return 200 {_q(SMALL_BODY.decode())}; }}",
        "location = /text { default_type text/plain; charset utf-8; "
        f"return 200 {_q(TEXT_BODY)}; }}",
        # latin-1 bytes cannot live in a UTF-8 config file: serve them from a file.
        "location = /latin1 { default_type text/plain; charset iso-8859-1; "
        f"alias {_q(str(f / 'latin1.txt'))}; }}",
        f"location = /json {{ default_type application/json; return 200 '{JSON_BODY.decode()}'; }}",
        # `return` makes nginx discard (read and drop) the request body, keeping the
        # connection reusable; the body reports what nginx saw.
        "location = /post { default_type text/plain; "
        "return 200 '$request_method $content_length'; }",
        "location /bytes/ { default_type application/octet-stream; types { } "
        f"alias {_q(str(f / 'bytes') + '/')}; }}",
        "location = /close { keepalive_timeout 0; default_type text/plain; return 200 closing; }",
        "location = /slow { default_type application/octet-stream; types { } limit_rate 16k; "
        f"alias {_q(str(f / 'bytes' / '64k'))}; }}",
        "location = /gzip { default_type text/plain; types { } gzip on; gzip_types text/plain; "
        f"gzip_min_length 0; gzip_vary on; alias {_q(str(f / 'gzip.txt'))}; }}",
        "location = /gzip-static { default_type text/plain; types { } gzip_static on; "
        f"gzip off; gzip_vary on; alias {_q(str(f / 'gzip-static.txt'))}; }}",
        "location = /etag { default_type text/plain; types { } "
        f"alias {_q(str(f / 'etag.txt'))}; }}",
        "location = /set-cookie { default_type text/plain; "
        "add_header Set-Cookie 'a=1; Path=/'; return 200 'cookie set'; }",
        "location = /headers/many { default_type text/plain; "
        + " ".join(f"add_header X-Many-{i} {i};" for i in range(1, MANY_HEADERS + 1))
        + " return 200 many; }",
        # The challenge is cleared (an empty add_header value is not sent) on success,
        # so a 200 does not carry a WWW-Authenticate.
        "location = /auth/basic { default_type text/plain; "
        "set $aioduct_challenge 'Basic realm=\"aioduct\"'; "
        f"if ($http_authorization = {_q(BASIC_AUTHORIZATION)}) "
        "{ set $aioduct_challenge ''; return 200 authorized; } "
        "add_header WWW-Authenticate $aioduct_challenge always; return 401 unauthorized; }",
        "location = /auth/bearer { default_type text/plain; "
        "set $aioduct_challenge 'Bearer realm=\"aioduct\"'; "
        f"if ($http_authorization = {_q(BEARER_AUTHORIZATION)}) "
        "{ set $aioduct_challenge ''; return 200 authorized; } "
        "add_header WWW-Authenticate $aioduct_challenge always; return 401 unauthorized; }",
        "location = /chain/0 { default_type text/plain; return 200 done; }",
        "location = /loop { return 302 /loop; }",
        "location ~ ^/alt-svc/(\\d+)$ { default_type text/plain; "
        "add_header Alt-Svc 'h3=\":$1\"; ma=60'; return 200 ok; }",
        "location = /redirect-scheme { return 302 ftp://127.0.0.1/x; }",
        # nginx's `return 302;` (no URL) sends an *empty* `Location:` header.
        "location = /redirect-empty { return 302; }",
        # A 3xx with no Location header at all: error_page rewrites the status of an
        # internal redirect's 200, and nothing adds a Location.
        "location = /redirect-missing { error_page 418 =302 /_aioduct_no_location; return 418; }",
        "location = /_aioduct_no_location { internal; default_type text/plain; "
        "return 200 'no location'; }",
    ]
    echo = "".join(
        f"{name}: {var}\\n"
        for name, var in zip(
            ECHO_HEADER_NAMES,
            ["$request_method", "$request_uri"]
            + ["$http_" + n.replace("-", "_") for n in ECHO_HEADER_NAMES[2:]],
            strict=True,
        )
    )
    out.append(f'location = /echo/headers {{ default_type text/plain; return 200 "{echo}"; }}')
    for code in STATUS_CODES:
        if code in REDIRECT_CODES:
            # nginx turns `return 3xx TEXT` into a Location; point it somewhere real.
            out.append(f"location = /status/{code} {{ return {code} /; }}")
        elif code in (204, 304):
            out.append(f"location = /status/{code} {{ return {code}; }}")
        else:
            out.append(
                f"location = /status/{code} {{ default_type text/plain; "
                f"return {code} 'status {code}'; }}"
            )
    for code in REDIRECT_CODES:
        out.append(f"location ~ ^/redirect/{code}/(.*)$ {{ return {code} /$1$is_args$args; }}")
        out.append(
            f"location ~ ^/cross/{code}/(.*)$ {{ return {code} {cross_origin}/$1$is_args$args; }}"
        )
    out.extend(
        f"location = /chain/{n} {{ return 302 /chain/{n - 1}; }}" for n in range(1, CHAIN_MAX + 1)
    )
    return "\n".join("        " + line for line in out)


def _write_files(files: Path) -> None:
    """Create the static files once; a reused work directory keeps existing ones."""
    (files / "bytes").mkdir(parents=True, exist_ok=True)
    wanted: dict[Path, bytes | int] = {
        files / "latin1.txt": LATIN1_BODY.encode("latin-1"),
        files / "gzip.txt": GZIP_BODY,
        files / "etag.txt": GZIP_BODY,
        files / "gzip-static.txt": GZIP_BODY,
        files / "gzip-static.txt.gz": gzip.compress(GZIP_BODY, mtime=0),
    }
    for name, size in BYTES_SIZES.items():
        wanted[files / "bytes" / name] = size
    for path, spec in wanted.items():
        data = deterministic_bytes(spec) if isinstance(spec, int) else spec
        if path.exists() and path.stat().st_size == len(data) and path.read_bytes() == data:
            continue
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)


# --------------------------------------------------------------------------- process


class NginxError(RuntimeError):
    """nginx could not be started (the message carries its error log)."""


class LogEntry(NamedTuple):
    """One access-log line: which TCP connection (nginx's ``$connection`` serial) served
    which request.  Counting distinct ``connection`` values tells how many connections a
    client opened; ``tls_resumed`` (nginx's ``$ssl_session_reused``) whether a TLS
    connection resumed a session (``None`` on plain HTTP)."""

    connection: int
    method: str
    uri: str
    status: int
    tls_resumed: bool | None = None


_LOG_FORMAT = "$server_port $connection $request_method $request_uri $status $ssl_session_reused"
#: ``$ssl_session_reused`` is ``r`` or ``.`` on TLS, empty (logged as ``-``) otherwise.
_LOG_LINE = re.compile(r"^(\d+) (\d+) (\S*) (.*) (\d{3}) ([r.-])$")
_RESUMED = {"r": True, ".": False, "-": None}

_live: weakref.WeakSet[Nginx] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    """Last line of defence: a test run that crashes past its finalizers still stops nginx."""
    for ngx in list(_live):
        ngx.stop()


def _free_ports(count: int) -> list[int]:
    """Ask the kernel for ``count`` distinct free loopback ports.

    The sockets are held open together so the ports differ, then closed for nginx to
    bind.  Another process can grab one in between; :meth:`Nginx.start` retries on that.
    """
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Nginx:
    """A private nginx serving the standard locations on four loopback origins.

    * ``http_url`` -- the main plain origin.
    * ``alt_http_url`` -- a second plain origin (another port: a different origin for
      cross-origin redirect tests); its ``/cross/...`` points back at ``http_url``.
    * ``https_url`` -- ``https://localhost:PORT`` (needs ``tls``), offering h2 and
      http/1.1 through ALPN; ``alt_https_url`` is the same server as
      ``https://127.0.0.1:PORT`` -- a different origin by host -- and ``/cross/...`` on
      one points at the other.
    * ``h2c_url`` -- HTTP/2 with prior knowledge over cleartext (``listen ... http2``,
      or ``http2 on;`` from nginx 1.25.1); before 1.25.1 an HTTP/1.1 request there gets
      an HTTP/2 GOAWAY, later nginx detects the preface and answers HTTP/1.1 too.
    * ``extra_urls[name]`` -- one origin per ``extra_servers`` entry, whose value is the
      raw body of its ``server { }`` block (``listen`` is added here), or an
      :class:`ExtraServer` for a TLS and/or HTTP/2 one.

    ``extra_locations`` is raw config appended to every standard server block.
    ``workdir`` (relative to the current directory, or absolute) defaults to a fresh
    temporary directory, removed on ``stop()``.
    """

    def __init__(
        self,
        workdir: Path | str | None = None,
        *,
        tls: TLSFiles | None = None,
        access_log: bool = True,
        worker_processes: int = 1,
        extra_servers: Mapping[str, str | ExtraServer] | None = None,
        extra_locations: str = "",
        binary: str | None = None,
        startup_timeout: float = 15.0,
    ) -> None:
        self.binary = binary or nginx_binary()
        if self.binary is None:
            raise NginxError(NGINX_MISSING_REASON)
        self._own_workdir = workdir is None
        # Absolute: nginx resolves the config's paths against its -p prefix, so a relative
        # work directory would be taken twice (dir/dir/...).
        self.workdir = (
            Path(tempfile.mkdtemp(prefix="aioduct-nginx-"))
            if workdir is None
            else Path(workdir).absolute()
        )
        self.tls = tls
        self.access_log = access_log
        self.worker_processes = worker_processes
        self.extra_servers: Mapping[str, ExtraServer] = {
            name: server if isinstance(server, ExtraServer) else ExtraServer(server)
            for name, server in (extra_servers or {}).items()
        }
        self.extra_locations = extra_locations
        self.startup_timeout = startup_timeout
        self.config_path = self.workdir / "nginx.conf"
        self.error_log_path = self.workdir / "error.log"
        self.access_log_path = self.workdir / "access.log"
        self.stderr_path = self.workdir / "stderr.log"
        self.files_dir = self.workdir / "files"
        self.ports: dict[str, int] = {}
        self.extra_urls: dict[str, str] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._startup_log_end = 0
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- origins

    def _port(self, name: str) -> int:
        if name not in self.ports:
            raise RuntimeError(f"nginx is not running (no {name!r} port): call start() first")
        return self.ports[name]

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self._port('http')}"

    @property
    def alt_http_url(self) -> str:
        return f"http://127.0.0.1:{self._port('alt')}"

    @property
    def https_url(self) -> str:
        if self.tls is None:
            raise RuntimeError("this Nginx has no TLS origin: pass tls=make_tls(dir)[1]")
        return f"https://localhost:{self._port('https')}"

    @property
    def alt_https_url(self) -> str:
        if self.tls is None:
            raise RuntimeError("this Nginx has no TLS origin: pass tls=make_tls(dir)[1]")
        return f"https://127.0.0.1:{self._port('https')}"

    @property
    def h2c_url(self) -> str:
        return f"http://127.0.0.1:{self._port('h2c')}"

    @property
    def pid(self) -> int:
        """PID of the nginx master process."""
        if self._proc is None:
            raise RuntimeError("nginx is not running: call start() first")
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # ----------------------------------------------------------------- config

    @property
    def _h2_listen(self) -> str:
        """How a server block turns HTTP/2 on: nginx 1.25.1 replaced the ``listen``
        parameter (deprecated, with a warning) by the ``http2 on;`` directive."""
        version = nginx_version(self.binary) if self.binary else None
        if version is not None and version >= (1, 25, 1):
            return "; http2 on;"
        return " http2;"

    def _config(self) -> str:
        wd = self.workdir
        p = self.ports
        # workers drop privileges to `user`; as root, stay root so they can read a
        # 0700 pytest tmp directory.  (Unprivileged, nginx cannot switch and warns.)
        user = "user root;" if os.geteuid() == 0 else ""
        soft_nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft_nofile == resource.RLIM_INFINITY:
            soft_nofile = 65536
        worker_connections = max(256, min(4096, soft_nofile // 2))
        access = (
            f"access_log {_q(str(self.access_log_path))} aioduct;"
            if self.access_log
            else "access_log off;"
        )
        temp = "\n".join(
            f"    {kind}_temp_path {_q(str(wd / 'tmp' / kind))};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        main, alt = self.http_url, self.alt_http_url
        servers = [
            (f"listen 127.0.0.1:{p['http']};", alt),
            (f"listen 127.0.0.1:{p['alt']};", main),
            (f"listen 127.0.0.1:{p['h2c']}{self._h2_listen}", alt),
        ]
        tls_lines = ""
        if self.tls is not None:
            servers.append(
                (
                    f"listen 127.0.0.1:{p['https']} ssl{self._h2_listen}",
                    f"https://$aioduct_tls_other_host:{p['https']}",
                )
            )
            tls_lines = f"    {_tls_directives(self.tls)}\n"
        blocks = []
        for listen, cross in servers:
            blocks.append(
                "    server {\n"
                f"        {listen}\n"
                "        server_name localhost;\n"
                f"{locations_config(self.files_dir, cross)}\n"
                f"{self.extra_locations}\n"
                "    }"
            )
        for name, server in self.extra_servers.items():
            listen = f"listen 127.0.0.1:{p['extra:' + name]}" + (" ssl" if server.tls else "")
            listen += self._h2_listen if server.http2 else ";"
            if server.tls is not None:
                listen += "\n        " + _tls_directives(server.tls, server.tls_protocols)
            blocks.append(f"    server {{\n        {listen}\n{server.body}\n    }}")
        blocks_text = "\n".join(blocks)
        return f"""# generated by aioduct.testing.nginx -- do not edit, it is rewritten on start
daemon off;
master_process on;
{user}
worker_processes {self.worker_processes};
pid {_q(str(wd / "nginx.pid"))};
error_log {_q(str(self.error_log_path))} info;

events {{
    worker_connections {worker_connections};
}}

http {{
{temp}
    log_format aioduct '{_LOG_FORMAT}';
    {access}
    types {{ }}
    default_type application/octet-stream;
    server_tokens off;
    absolute_redirect off;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    client_max_body_size 64m;
    tcp_nodelay on;
    sendfile on;
    map $host $aioduct_tls_other_host {{ default localhost; localhost 127.0.0.1; }}
{tls_lines}
{blocks_text}
}}
"""

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> Nginx:
        """Start nginx and return once every port accepts connections.

        Ports are picked just before starting; if another process took one meanwhile
        (``Address already in use``) a fresh set is tried, up to five times.
        """
        with self._lock:
            if self.running:
                return self
            self.workdir.mkdir(parents=True, exist_ok=True)
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
                (self.workdir / "tmp" / kind).mkdir(parents=True, exist_ok=True)
            _write_files(self.files_dir)
            last: NginxError | None = None
            for _attempt in range(5):
                try:
                    self._start_once()
                    _live.add(self)
                    return self
                except NginxError as exc:
                    self._kill()
                    last = exc
                    if "Address already in use" not in str(exc):
                        break
            assert last is not None
            raise last

    def _start_once(self) -> None:
        names = ["http", "alt", "h2c"]
        if self.tls is not None:
            names.append("https")
        names += ["extra:" + n for n in self.extra_servers]
        self.ports = dict(zip(names, _free_ports(len(names)), strict=True))
        self.extra_urls = {
            n: f"{'https' if server.tls else 'http'}://127.0.0.1:{self.ports['extra:' + n]}"
            for n, server in self.extra_servers.items()
        }
        self.config_path.write_text(self._config(), encoding="utf-8")
        for path in (self.error_log_path, self.stderr_path):
            path.write_bytes(b"")
        argv = [
            str(self.binary),
            "-p", str(self.workdir),
            "-c", str(self.config_path),
            "-e", str(self.error_log_path),
        ]  # fmt: skip
        setpriv = shutil.which("setpriv")
        if setpriv and threading.current_thread() is threading.main_thread():
            # If this process dies without running atexit (SIGKILL, a crashed xdist
            # worker), the kernel sends nginx SIGTERM, which stops it and its workers.
            # Only from the main thread: the signal fires when the *thread* exits.
            argv = [setpriv, "--pdeathsig", "TERM", *argv]
        with open(self.stderr_path, "wb") as stderr:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                start_new_session=True,  # own process group: killpg reaches the workers
                close_fds=True,
            )
        deadline = time.monotonic() + self.startup_timeout
        for port in self.ports.values():
            self._wait_port(port, deadline)
        self._wait_http(self.ports["http"], deadline)

    def _failure(self, what: str) -> NginxError:
        log = self.error_log()
        try:
            stderr = self.stderr_path.read_text(errors="replace").strip()
        except OSError:
            stderr = ""
        code = self._proc.poll() if self._proc else None
        return NginxError(
            f"{what} (nginx {self.binary}, exit status {code}, config {self.config_path}).\n"
            f"--- error log ---\n{log.strip() or '(empty)'}"
            + (f"\n--- stderr ---\n{stderr}" if stderr else "")
        )

    def _wait_port(self, port: int, deadline: float) -> None:
        while True:
            if self._proc is None or self._proc.poll() is not None:
                raise self._failure("nginx exited during startup")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise self._failure(f"nginx did not listen on 127.0.0.1:{port} in time")
            time.sleep(0.01)

    def _wait_http(self, port: int, deadline: float) -> None:
        """Listening sockets exist before workers do; one real request proves a worker
        is serving, so the first test does not pay for (or time out on) worker start."""
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                    s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                    # Read to EOF: nginx writes the access-log line before it closes,
                    # so the probe's line is in the log once EOF arrives.
                    response = b""
                    while chunk := s.recv(4096):
                        response += chunk
                    if response.startswith(b"HTTP/1.1 200"):
                        self._startup_log_end = self.log_position()
                        return
            except OSError:
                pass
            if self._proc is None or self._proc.poll() is not None:
                raise self._failure("nginx exited during startup")
            if time.monotonic() > deadline:
                raise self._failure("nginx did not answer GET / in time")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop nginx and every worker; idempotent, safe from atexit."""
        with self._lock:
            self._kill()
            _live.discard(self)
            if self._own_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        pgid = proc.pid  # start_new_session: the master leads its own group
        if proc.poll() is None:
            # SIGTERM to the whole group = nginx's fast shutdown, workers included.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
                proc.wait(timeout=5)
        # A worker that outlived its master would keep the group alive: finish it.
        for _ in range(50):
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                break
            except PermissionError:  # pgid reused by someone else's process
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            time.sleep(0.01)

    def __enter__(self) -> Nginx:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self._proc.pid}" if self._proc else "stopped"
        return f"<Nginx {state} ports={self.ports} workdir={self.workdir}>"

    # ----------------------------------------------------------------- logs

    def error_log(self) -> str:
        try:
            return self.error_log_path.read_text(errors="replace")
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return ""
            raise

    def log_position(self) -> int:
        """Current size of the access log; pass to ``requests_log(since=...)`` to see only
        requests made after this point (the nginx fixture is shared by many tests)."""
        try:
            return self.access_log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def requests_log(
        self,
        *,
        since: int | None = None,
        origin: str | None = None,
        uri_contains: str | None = None,
        min_entries: int = 0,
        timeout: float = 2.0,
    ) -> list[LogEntry]:
        """Parsed access-log lines, oldest first.

        nginx writes a line *after* sending the response, so a client can finish before
        its request is logged: ``min_entries`` waits (up to ``timeout``) until that many
        matching lines exist.  Filters: ``origin`` (e.g. ``ngx.alt_http_url``) keeps only
        requests to that server block, ``uri_contains`` only URIs containing that text (a
        per-test tag in the query string isolates a test's requests on the shared
        nginx); ``since`` is a :meth:`log_position` bookmark (default: the end of
        startup, which leaves out nginx's readiness probe).
        """
        if since is None:
            since = self._startup_log_end
        if not self.access_log:
            raise RuntimeError("access log is off: create Nginx(access_log=True)")
        port = None if origin is None else urlsplit(origin).port
        deadline = time.monotonic() + timeout
        while True:
            entries = self._read_log(since, port)
            if uri_contains is not None:
                entries = [e for e in entries if uri_contains in e.uri]
            if len(entries) >= min_entries or time.monotonic() > deadline:
                return entries
            time.sleep(0.01)

    def _read_log(self, since: int, port: int | None) -> list[LogEntry]:
        try:
            with open(self.access_log_path, "rb") as fh:
                fh.seek(since)
                data = fh.read()
        except FileNotFoundError:
            return []
        # nginx writes each line with one write(); still, never parse a torn last line.
        data = data[: data.rfind(b"\n") + 1]
        entries = []
        for raw in data.decode("utf-8", "replace").splitlines():
            m = _LOG_LINE.match(raw)
            if m is None:
                continue  # a line being written right now, or a format we do not know
            if port is not None and int(m[1]) != port:
                continue
            entries.append(LogEntry(int(m[2]), m[3], m[4], int(m[5]), _RESUMED[m[6]]))
        return entries
