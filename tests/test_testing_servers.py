"""The test servers themselves, checked with raw sockets, http.client and ssl only.

Every client test trusts these servers to do what they promise; these tests are what
makes that trust deserved.  Nothing here uses the aioduct client.
"""

from __future__ import annotations

import asyncio
import gzip
import http.client
import os
import signal
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from aioduct.testing.nginx import (
    BASIC_AUTHORIZATION,
    BEARER_AUTHORIZATION,
    BYTES_SIZES,
    CHAIN_MAX,
    ECHO_HEADER_NAMES,
    GZIP_BODY,
    JSON_BODY,
    LATIN1_BODY,
    MANY_HEADERS,
    NGINX_MISSING_REASON,
    REDIRECT_CODES,
    SMALL_BODY,
    STATUS_CODES,
    TEXT_BODY,
    ExtraServer,
    Nginx,
    NginxError,
    TLSMaterial,
    deterministic_bytes,
    nginx_binary,
)
from aioduct.testing.server import (
    BadTLSServers,
    Conn,
    ScriptServer,
    ScriptServerError,
    ServerRequest,
    build_response,
)

# --------------------------------------------------------------------------- helpers


def _conn(url: str, tls: TLSMaterial | None = None) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    if parts.scheme == "https":
        assert tls is not None
        return http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=10, context=tls.client_ssl_context()
        )
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)


def fetch(
    url: str,
    path: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    tls: TLSMaterial | None = None,
) -> tuple[http.client.HTTPResponse, bytes]:
    conn = _conn(url, tls)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp, resp.read()
    finally:
        conn.close()


def recv_until_eof(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def recv_response(sock: socket.socket) -> tuple[bytes, bytes]:
    """(head, body) of one Content-Length-framed response read from a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"EOF inside response head: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "EOF inside response body"
        rest += chunk
    assert len(rest) == length, "bytes after the body: pipelining is not expected here"
    return head, rest


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (nginx workers of a master), from /proc."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


# --------------------------------------------------------------------------- nginx: content

SIMPLE = [
    # path, status, content-type, body
    ("/", 200, "text/plain", b"ok"),
    ("/small", 200, "text/plain", SMALL_BODY),
    ("/text", 200, "text/plain; charset=utf-8", TEXT_BODY.encode()),
    ("/latin1", 200, "text/plain; charset=iso-8859-1", LATIN1_BODY.encode("latin-1")),
    ("/json", 200, "application/json", JSON_BODY),
    ("/post", 200, "text/plain", b"GET "),
    ("/close", 200, "text/plain", b"closing"),
    ("/chain/0", 200, "text/plain", b"done"),
    ("/set-cookie", 200, "text/plain", b"cookie set"),
    ("/etag", 200, "text/plain", GZIP_BODY),
    ("/gzip", 200, "text/plain", GZIP_BODY),  # no Accept-Encoding: identity
    ("/nowhere", 404, "text/plain", b"no such location: /nowhere\n"),
]


@pytest.mark.parametrize(("path", "status", "ctype", "body"), SIMPLE, ids=[s[0] for s in SIMPLE])
def test_nginx_simple_locations(
    nginx: Nginx, path: str, status: int, ctype: str, body: bytes
) -> None:
    resp, got = fetch(nginx.http_url, path)
    assert (resp.status, resp.getheader("Content-Type"), got) == (status, ctype, body)


@pytest.mark.nginx
@pytest.mark.skipif(nginx_binary() is None, reason=NGINX_MISSING_REASON)
def test_nginx_takes_a_relative_work_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with Nginx("ngx") as ngx:
        assert ngx.workdir == tmp_path / "ngx"
        assert fetch(ngx.http_url, "/small")[1] == SMALL_BODY
        assert (tmp_path / "ngx" / "nginx.conf").is_file()
    assert not (tmp_path / "ngx" / "ngx").exists()


def test_nginx_locations_identical_on_every_origin(nginx: Nginx, tls_ca: TLSMaterial) -> None:
    for origin in (nginx.alt_http_url, nginx.https_url, nginx.alt_https_url):
        resp, got = fetch(origin, "/small", tls=tls_ca)
        assert (resp.status, got) == (200, SMALL_BODY), origin


@pytest.mark.parametrize("name", sorted(BYTES_SIZES))
def test_nginx_bytes(nginx: Nginx, name: str) -> None:
    resp, got = fetch(nginx.http_url, f"/bytes/{name}")
    assert resp.status == 200
    assert resp.getheader("Content-Type") == "application/octet-stream"
    assert resp.getheader("Content-Length") == str(BYTES_SIZES[name])
    assert got == deterministic_bytes(BYTES_SIZES[name])


def test_nginx_head_has_length_but_no_body(nginx: Nginx) -> None:
    resp, got = fetch(nginx.http_url, "/bytes/1m", method="HEAD")
    assert (resp.status, resp.getheader("Content-Length"), got) == (200, "1048576", b"")


@pytest.mark.parametrize("code", STATUS_CODES)
def test_nginx_status(nginx: Nginx, code: int) -> None:
    resp, got = fetch(nginx.http_url, f"/status/{code}")
    assert resp.status == code
    if code in REDIRECT_CODES:
        assert resp.getheader("Location") == "/"
    elif code in (204, 304):
        assert got == b""
    else:
        assert got == f"status {code}".encode()


@pytest.mark.parametrize("code", REDIRECT_CODES)
def test_nginx_relative_redirect(nginx: Nginx, code: int) -> None:
    resp, _ = fetch(nginx.http_url, f"/redirect/{code}/echo/headers?a=1&b=2")
    assert (resp.status, resp.getheader("Location")) == (code, "/echo/headers?a=1&b=2")


@pytest.mark.parametrize("code", REDIRECT_CODES)
def test_nginx_cross_origin_redirect(nginx: Nginx, tls_ca: TLSMaterial, code: int) -> None:
    pairs = [
        (nginx.http_url, nginx.alt_http_url),
        (nginx.alt_http_url, nginx.http_url),
        (nginx.https_url, nginx.alt_https_url),
        (nginx.alt_https_url, nginx.https_url),
    ]
    for origin, other in pairs:
        resp, _ = fetch(origin, f"/cross/{code}/echo/headers?q=1", tls=tls_ca)
        assert resp.status == code
        assert resp.getheader("Location") == f"{other}/echo/headers?q=1", origin


def test_nginx_chain_and_loop(nginx: Nginx) -> None:
    for n in range(1, CHAIN_MAX + 1):
        resp, _ = fetch(nginx.http_url, f"/chain/{n}")
        assert (resp.status, resp.getheader("Location")) == (302, f"/chain/{n - 1}")
    resp, _ = fetch(nginx.http_url, f"/chain/{CHAIN_MAX + 1}")
    assert resp.status == 404
    resp, _ = fetch(nginx.http_url, "/loop")
    assert (resp.status, resp.getheader("Location")) == (302, "/loop")


def test_nginx_unusable_redirects(nginx: Nginx) -> None:
    resp, _ = fetch(nginx.http_url, "/redirect-scheme")
    assert (resp.status, resp.getheader("Location")) == (302, "ftp://127.0.0.1/x")
    resp, _ = fetch(nginx.http_url, "/redirect-empty")
    assert (resp.status, resp.getheader("Location")) == (302, "")  # present but empty
    resp, got = fetch(nginx.http_url, "/redirect-missing")
    assert (resp.status, resp.getheader("Location"), got) == (302, None, b"no location")


def test_nginx_echo_headers(nginx: Nginx) -> None:
    sent = {
        "User-Agent": "ua/1",
        "Authorization": "Basic abc",
        "Cookie": "a=1; b=2",
        "Proxy-Authorization": "Basic xyz",
        "Referer": "http://r/",
        "Content-Type": "text/plain",
        "Accept": "*/*",
        "Accept-Encoding": "identity",
        "X-Test": "héllo".encode().decode("latin-1"),
    }
    _, got = fetch(nginx.http_url, "/echo/headers?x=1", method="POST", headers=sent, body=b"hi")
    lines = got.decode("utf-8").splitlines()
    assert [line.partition(": ")[0] for line in lines] == list(ECHO_HEADER_NAMES)
    echoed = {name: value for name, _, value in (line.partition(": ") for line in lines)}
    assert echoed["method"] == "POST"
    assert echoed["uri"] == "/echo/headers?x=1"
    assert echoed["host"] == urlsplit(nginx.http_url).netloc
    assert echoed["content-length"] == "2"
    assert echoed["transfer-encoding"] == ""  # absent headers echo as empty
    assert echoed["x-test"] == "héllo"
    for name, value in sent.items():
        if name != "X-Test":
            assert echoed[name.lower()] == value


def test_nginx_close_location_closes(nginx: Nginx) -> None:
    with socket.create_connection(("127.0.0.1", nginx.ports["http"]), timeout=5) as s:
        s.sendall(b"GET /close HTTP/1.1\r\nHost: x\r\n\r\n")
        data = recv_until_eof(s)  # returns only because nginx closes
    assert data.startswith(b"HTTP/1.1 200") and b"\r\nConnection: close\r\n" in data
    assert data.endswith(b"closing")


def test_nginx_slow_is_rate_limited(nginx: Nginx) -> None:
    with socket.create_connection(("127.0.0.1", nginx.ports["http"]), timeout=5) as s:
        s.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(0.05)
        got = 0
        deadline = time.monotonic() + 0.6
        while time.monotonic() < deadline:
            try:
                got += len(s.recv(65536))
            except TimeoutError:
                pass
    assert 0 < got < 40000, f"{got} bytes in 0.6 s: /slow is not rate limited to 16 KiB/s"


def test_nginx_gzip(nginx: Nginx) -> None:
    resp, got = fetch(nginx.http_url, "/gzip", headers={"Accept-Encoding": "gzip"})
    assert resp.getheader("Content-Encoding") == "gzip"
    assert len(got) < len(GZIP_BODY) // 4
    assert gzip.decompress(got) == GZIP_BODY


def test_nginx_etag_and_conditional(nginx: Nginx) -> None:
    resp, _ = fetch(nginx.http_url, "/etag")
    etag, modified = resp.getheader("ETag"), resp.getheader("Last-Modified")
    assert etag and modified
    resp, got = fetch(nginx.http_url, "/etag", headers={"If-None-Match": etag})
    assert (resp.status, got) == (304, b"")


def test_nginx_set_cookie_and_many_headers(nginx: Nginx) -> None:
    resp, _ = fetch(nginx.http_url, "/set-cookie")
    assert resp.getheader("Set-Cookie") == "a=1; Path=/"
    resp, _ = fetch(nginx.http_url, "/headers/many")
    many = [(k, v) for k, v in resp.getheaders() if k.startswith("X-Many-")]
    assert many == [(f"X-Many-{i}", str(i)) for i in range(1, MANY_HEADERS + 1)]


@pytest.mark.parametrize(("path", "good"), [("/auth/basic", BASIC_AUTHORIZATION),
                                            ("/auth/bearer", BEARER_AUTHORIZATION)])  # fmt: skip
def test_nginx_auth(nginx: Nginx, path: str, good: str) -> None:
    scheme = good.split()[0]
    for headers in ({}, {"Authorization": good + "x"}, {"Authorization": good.lower()}):
        resp, got = fetch(nginx.http_url, path, headers=headers)
        assert (resp.status, got) == (401, b"unauthorized"), headers
        assert resp.getheader("WWW-Authenticate") == f'{scheme} realm="aioduct"'
    resp, got = fetch(nginx.http_url, path, headers={"Authorization": good})
    assert (resp.status, got, resp.getheader("WWW-Authenticate")) == (200, b"authorized", None)


# --------------------------------------------------------------------------- nginx: connections


def test_nginx_post_keepalive_and_log(nginx: Nginx) -> None:
    """nginx must really discard each body: otherwise request 2 would be parsed out of
    request 1's body, or the connection would close."""
    pos = nginx.log_position()
    body = b"x" * 4096
    with socket.create_connection(("127.0.0.1", nginx.ports["http"]), timeout=5) as s:
        for i in range(3):
            s.sendall(
                b"POST /post?i=%d HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\n\r\n" % i + body
            )
            head, got = recv_response(s)
            assert head.startswith(b"HTTP/1.1 200"), head
            assert got == b"POST 4096"
        # A chunked body is discarded too.  $content_length then says "0" (the body was
        # already discarded) or "" (not yet): only the method is meaningful.
        s.sendall(
            b"POST /post HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n"
        )
        assert recv_response(s)[1] in (b"POST 0", b"POST ")
    # nginx logs a request after answering it: the previous test's last line can land
    # after our bookmark, so only our own requests are compared.
    log = nginx.requests_log(since=pos, min_entries=4, uri_contains="/post")
    assert [(e.method, e.uri, e.status) for e in log] == [
        ("POST", "/post?i=0", 200),
        ("POST", "/post?i=1", 200),
        ("POST", "/post?i=2", 200),
        ("POST", "/post", 200),
    ]
    assert len({e.connection for e in log}) == 1


def test_nginx_log_counts_connections(nginx: Nginx) -> None:
    pos = nginx.log_position()
    for _ in range(2):
        conn = _conn(nginx.alt_http_url)
        for _ in range(3):
            conn.request("GET", "/small?log-count")
            conn.getresponse().read()
        conn.close()
    fetch(nginx.http_url, "/small?log-count")  # another origin: filtered out below
    fetch(nginx.alt_http_url, "/small?other")  # another tag: filtered out below
    log = nginx.requests_log(
        since=pos, origin=nginx.alt_http_url, uri_contains="log-count", min_entries=6
    )
    assert [e.uri for e in log] == ["/small?log-count"] * 6
    by_conn = [e.connection for e in log]
    assert len(set(by_conn)) == 2 and by_conn[0] == by_conn[2] != by_conn[3] == by_conn[5]


def test_nginx_h2c_answers_preface(nginx: Nginx) -> None:
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    with socket.create_connection(("127.0.0.1", nginx.ports["h2c"]), timeout=5) as s:
        s.sendall(preface)
        frame = s.recv(9)
    assert frame[3] == 0x04 and frame[4] == 0x00, f"expected a SETTINGS frame, got {frame!r}"


def test_nginx_tls_offers_h2_and_http11(nginx: Nginx, tls_ca: TLSMaterial) -> None:
    for offered, expected in ((["h2", "http/1.1"], "h2"), (["http/1.1"], "http/1.1")):
        ctx = tls_ca.client_ssl_context()
        ctx.set_alpn_protocols(offered)
        with (
            socket.create_connection(("127.0.0.1", nginx.ports["https"]), timeout=5) as raw,
            ctx.wrap_socket(raw, server_hostname="localhost") as s,
        ):
            assert s.selected_alpn_protocol() == expected


def test_nginx_tls_rejected_without_ca(nginx: Nginx) -> None:
    """The test CA is not in the system store: verification really happens."""
    conn = http.client.HTTPSConnection(
        "localhost", nginx.ports["https"], timeout=5, context=ssl.create_default_context()
    )
    with pytest.raises(ssl.SSLCertVerificationError):
        conn.request("GET", "/")
    conn.close()


# --------------------------------------------------------------------------- nginx: lifecycle


needs_nginx = pytest.mark.skipif(nginx_binary() is None, reason="nginx not installed")


@needs_nginx
@pytest.mark.nginx
def test_nginx_stop_leaves_no_processes(tmp_path: Path) -> None:
    ngx = Nginx(tmp_path / "n", access_log=False, worker_processes=2)
    with ngx:
        master = ngx.pid
        workers = _children(master)
        assert len(workers) == 2, workers
        assert fetch(ngx.http_url, "/small")[1] == SMALL_BODY
        with pytest.raises(RuntimeError, match="no TLS origin"):
            _ = ngx.https_url
        with pytest.raises(RuntimeError, match="access log is off"):
            ngx.requests_log()
    assert not ngx.running
    for pid in [master, *workers]:
        assert not _alive(pid), f"nginx process {pid} survived stop()"
    ngx.stop()  # idempotent


@needs_nginx
@pytest.mark.nginx
def test_nginx_orphaned_worker_is_killed(tmp_path: Path) -> None:
    """Even if the master dies first, stop() reaps its process group."""
    ngx = Nginx(tmp_path / "n", access_log=False).start()
    workers = _children(ngx.pid)
    os.kill(ngx.pid, signal.SIGKILL)
    ngx.stop()
    for pid in workers:
        assert not _alive(pid), f"worker {pid} survived its master"


@needs_nginx
@pytest.mark.nginx
def test_nginx_startup_failure_shows_error_log(tmp_path: Path) -> None:
    ngx = Nginx(tmp_path / "bad", extra_locations="no_such_directive on;")
    with pytest.raises(NginxError, match='unknown directive "no_such_directive"'):
        ngx.start()
    assert not ngx.running


@needs_nginx
@pytest.mark.nginx
def test_nginx_extra_servers(tmp_path: Path) -> None:
    extra = {"teapot": "location / { return 418 'short and stout'; }"}
    with Nginx(tmp_path / "x", extra_servers=extra, access_log=False) as ngx:
        resp, got = fetch(ngx.extra_urls["teapot"], "/")
        assert (resp.status, got) == (418, b"short and stout")


@needs_nginx
@pytest.mark.nginx
def test_nginx_extra_tls_servers(tmp_path: Path, tls_ca: TLSMaterial) -> None:
    """TLS extra servers: TLS 1.3 only when asked, ALPN h2 only where http2 is on."""
    body = "location / { default_type text/plain; return 200 $server_protocol; }"
    extra = {
        "h1": ExtraServer(body, tls=tls_ca.files, tls_protocols="TLSv1.3"),
        "h2": ExtraServer(body, tls=tls_ca.files, tls_protocols="TLSv1.3", http2=True),
    }
    with Nginx(tmp_path / "x", extra_servers=extra, access_log=False) as ngx:
        for name, alpn in (("h1", "http/1.1"), ("h2", "h2")):
            url = ngx.extra_urls[name]
            assert url.startswith("https://127.0.0.1:")
            parts = urlsplit(url)
            ctx = tls_ca.client_ssl_context()
            ctx.set_alpn_protocols(["h2", "http/1.1"])
            with (
                socket.create_connection((parts.hostname, parts.port), timeout=10) as raw,
                ctx.wrap_socket(raw, server_hostname=parts.hostname) as tls,
            ):
                assert (tls.version(), tls.selected_alpn_protocol()) == ("TLSv1.3", alpn)
        tls12 = tls_ca.client_ssl_context()
        tls12.maximum_version = ssl.TLSVersion.TLSv1_2
        port = urlsplit(ngx.extra_urls["h1"]).port
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            pytest.raises(ssl.SSLError),
        ):
            tls12.wrap_socket(raw, server_hostname="127.0.0.1")
        resp, got = fetch(ngx.extra_urls["h1"], "/", tls=tls_ca)
        assert (resp.status, got) == (200, b"HTTP/1.1")


def test_nginx_binary_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIODUCT_NGINX", "/nonexistent/nginx")
    assert nginx_binary() is None
    with pytest.raises(NginxError, match="apt-get install nginx-light"):
        Nginx()


# --------------------------------------------------------------------------- TLS helpers


def test_tls_script_server_verifies(tls_script_server: ScriptServer, tls_ca: TLSMaterial) -> None:
    tls_script_server.route_respond("/hi", body=b"hello")
    assert tls_script_server.url.startswith("https://localhost:")
    resp, got = fetch(tls_script_server.url, "/hi", tls=tls_ca)
    assert (resp.status, got) == (200, b"hello")

    @tls_script_server.route("/rst")
    async def rst(conn: Conn, req: ServerRequest) -> None:
        await conn.drip(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\nab", chunk_size=8)
        conn.reset()

    # The server sends a TCP RST; Python's ssl layer may report it as an early EOF.
    with pytest.raises((ConnectionResetError, http.client.IncompleteRead)):
        fetch(tls_script_server.url, "/rst", tls=tls_ca)
    assert tls_script_server.connections_accepted == 2


@pytest.mark.parametrize(
    ("which", "code", "reason"),
    [
        ("expired", 10, "certificate has expired"),
        ("wrong_host", 62, "Hostname mismatch"),
        ("unknown_ca", 20, "unable to get local issuer certificate"),
    ],
)
def test_bad_tls_servers_fail_verification(
    bad_tls_servers: BadTLSServers, tls_ca: TLSMaterial, which: str, code: int, reason: str
) -> None:
    url = getattr(bad_tls_servers, which)
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        fetch(url, "/", tls=tls_ca)
    assert info.value.verify_code == code
    assert reason in str(info.value)
    # ... and it is only the certificate: without verification the server answers.
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    parts = urlsplit(url)
    conn = http.client.HTTPSConnection("localhost", parts.port, timeout=5, context=insecure)
    conn.request("GET", "/")
    assert conn.getresponse().read() == b"ok"
    conn.close()


# --------------------------------------------------------------------------- ScriptServer


@pytest.fixture
def sock(script_server: ScriptServer) -> Iterator[socket.socket]:
    with socket.create_connection(script_server.address, timeout=5) as s:
        yield s


def test_script_route_keepalive_and_records(
    script_server: ScriptServer, sock: socket.socket
) -> None:
    @script_server.route("/hello")
    async def hello(conn: Conn, req: ServerRequest) -> None:
        await conn.send(build_response(200, [("X-Conn", str(conn.id))], req.body or b"empty"))

    sock.sendall(b"GET /hello?x=1 HTTP/1.1\r\nHost: a\r\nX-Dup: 1\r\nX-Dup: 2\r\n\r\n")
    assert recv_response(sock)[1] == b"empty"
    sock.sendall(b"POST /hello HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody")
    assert recv_response(sock)[1] == b"body"
    sock.sendall(b"GET /missing HTTP/1.1\r\nHost: a\r\n\r\n")
    head, body = recv_response(sock)
    assert head.startswith(b"HTTP/1.1 404") and body == b"no route for /missing\n"
    assert script_server.connections_accepted == 1
    reqs = script_server.requests
    assert [(r.method, r.target, r.body, r.conn_id) for r in reqs] == [
        ("GET", "/hello?x=1", b"", 1),
        ("POST", "/hello", b"body", 1),
        ("GET", "/missing", b"", 1),
    ]
    assert reqs[0].header_list("x-dup") == ["1", "2"] and reqs[0].query == "x=1"
    assert (b"host", b"a") in reqs[0].headers


def test_script_counts_connections_and_closes_on_request(script_server: ScriptServer) -> None:
    script_server.route_respond("/ok", body=b"ok")
    for _ in range(3):
        with socket.create_connection(script_server.address, timeout=5) as s:
            s.sendall(b"GET /ok HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            assert recv_until_eof(s).endswith(b"\r\n\r\nok")  # EOF: the server closed
    assert script_server.connections_accepted == 3
    assert [r.conn_id for r in script_server.requests] == [1, 2, 3]


def test_script_raw_and_head(script_server: ScriptServer, sock: socket.socket) -> None:
    script_server.route_respond("/r", 201, [("X-A", "b")], b"body")
    sock.sendall(b"HEAD /r HTTP/1.1\r\nHost: a\r\n\r\n")
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += sock.recv(4096)  # a body byte here would break the loop's invariant
    assert head.startswith(b"HTTP/1.1 201 Created\r\n") and b"Content-Length: 4" in head
    script_server.route_raw("/raw", b"HTTP/1.1 200 OK\r\n\r\nuntil EOF", close=True)
    sock.sendall(b"GET /raw HTTP/1.1\r\nHost: a\r\n\r\n")
    assert recv_until_eof(sock) == b"HTTP/1.1 200 OK\r\n\r\nuntil EOF"


def test_script_reset(script_server: ScriptServer, sock: socket.socket) -> None:
    @script_server.route("/rst")
    async def rst(conn: Conn, req: ServerRequest) -> None:
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await conn.sleep(0.05)
        conn.reset()

    sock.sendall(b"GET /rst HTTP/1.1\r\nHost: a\r\n\r\n")
    with pytest.raises(ConnectionResetError):
        while sock.recv(65536):
            pass


def test_script_drip(script_server: ScriptServer, sock: socket.socket) -> None:
    payload = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"

    @script_server.route("/drip")
    async def drip(conn: Conn, req: ServerRequest) -> None:
        await conn.send(payload, delay_between_bytes=0.005)

    started = time.monotonic()
    sock.sendall(b"GET /drip HTTP/1.1\r\nHost: a\r\n\r\n")
    reads: list[bytes] = []
    while sum(len(r) for r in reads) < len(payload):
        reads.append(sock.recv(65536))
    assert b"".join(reads) == payload
    assert time.monotonic() - started >= 0.005 * (len(payload) - 1) * 0.8
    assert len(reads) > 5, "bytes arrived coalesced: not dripped"


def test_script_respond_before_body_then_keepalive(
    script_server: ScriptServer, sock: socket.socket
) -> None:
    seen: list[bool] = []

    @script_server.route("/early", read_body=False)
    async def early(conn: Conn, req: ServerRequest) -> None:
        seen.append(req.body_complete)
        await conn.send_response(200, body=b"early")

    script_server.route_respond("/next", body=b"next")
    sock.sendall(b"POST /early HTTP/1.1\r\nHost: a\r\nContent-Length: 10000\r\n\r\n")
    assert recv_response(sock)[1] == b"early"  # answered with no body byte sent
    sock.sendall(b"z" * 10000 + b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
    assert recv_response(sock)[1] == b"next"  # the unread body was drained
    assert seen == [False]
    assert script_server.requests[0].body == b"z" * 10000


def test_script_expect_continue_and_chunked(
    script_server: ScriptServer, sock: socket.socket
) -> None:
    script_server.route_respond("/up", body=b"got it")
    sock.sendall(
        b"PUT /up HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    assert sock.recv(4096) == b"HTTP/1.1 100 Continue\r\n\r\n"
    sock.sendall(b"3\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n")
    assert recv_response(sock)[1] == b"got it"
    req = script_server.requests[0]
    assert (req.body, req.trailers) == (b"abcde", [(b"x-trailer", b"t")])


def test_script_on_connect_close_and_reset(script_server: ScriptServer) -> None:
    @script_server.on_connect
    async def hook(conn: Conn) -> None:
        if conn.id == 1:
            conn.close()  # FIN right after accept, nothing read
        elif conn.id == 2:
            conn.reset()
        # later connections fall through to normal routing

    script_server.route_respond("/", body=b"normal")
    with socket.create_connection(script_server.address, timeout=5) as s:
        assert s.recv(100) == b""
    # The RST can race the client's connect() completion (a socket with a timeout polls
    # for writability, then reads SO_ERROR), so it may surface there or at recv().
    with (
        pytest.raises(ConnectionResetError),
        socket.create_connection(script_server.address, timeout=5) as s,
    ):
        s.recv(100)
    with socket.create_connection(script_server.address, timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert recv_response(s)[1] == b"normal"
    assert script_server.connections_accepted == 3
    assert script_server.requests[0].conn_id == 3


def test_script_bad_request_gets_400(script_server: ScriptServer, sock: socket.socket) -> None:
    sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n")
    assert recv_until_eof(sock).startswith(b"HTTP/1.1 400 Bad Request")
    script_server.wait_for(lambda: len(script_server.bad_requests) == 1)
    assert script_server.errors == []


def test_script_handler_error_is_reported() -> None:
    srv = ScriptServer().start()

    @srv.route("/boom")
    async def boom(conn: Conn, req: ServerRequest) -> None:
        raise ValueError("script bug")

    with socket.create_connection(srv.address, timeout=5) as s:
        s.sendall(b"GET /boom HTTP/1.1\r\nHost: a\r\n\r\n")
        try:
            assert s.recv(100) == b""
        except ConnectionResetError:
            pass  # the server resets the connection of a failed handler
    srv.wait_for(lambda: len(srv.errors) == 1)
    with pytest.raises(ScriptServerError, match="ValueError: script bug"):
        srv.close()
    srv.close()  # reported once; closing again is a no-op


def test_script_close_cancels_sleeping_handlers() -> None:
    srv = ScriptServer().start()
    entered: list[int] = []

    @srv.route("/forever")
    async def forever(conn: Conn, req: ServerRequest) -> None:
        entered.append(conn.id)
        await conn.sleep(3600)

    s = socket.create_connection(srv.address, timeout=5)
    s.sendall(b"GET /forever HTTP/1.1\r\nHost: a\r\n\r\n")
    srv.wait_for(lambda: entered == [1])
    started = time.monotonic()
    srv.close()
    assert time.monotonic() - started < 2
    with pytest.raises(ConnectionResetError):
        s.recv(100)
    s.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(srv.address, timeout=1)


def test_script_peer_gone_is_not_an_error(script_server: ScriptServer) -> None:
    done: list[bool] = []

    @script_server.route("/slow")
    async def slow(conn: Conn, req: ServerRequest) -> None:
        try:
            await conn.drip(b"x" * 1000, chunk_size=10, delay=0.01)
        finally:
            done.append(True)

    with socket.create_connection(script_server.address, timeout=5) as s:
        s.sendall(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
        s.recv(10)
    script_server.wait_for(lambda: done == [True])
    assert script_server.errors == []
    assert script_server.conns[0].peer_closed


async def test_async_tests_run_and_reach_script_server(script_server: ScriptServer) -> None:
    script_server.route_respond("/a", body=b"async")
    reader, writer = await asyncio.open_connection(*script_server.address)
    writer.write(b"GET /a HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    assert data.endswith(b"async")


@pytest.mark.uvloop
async def test_async_tests_can_run_on_uvloop() -> None:
    loop = asyncio.get_running_loop()
    assert type(loop).__module__.startswith("uvloop")
