"""Multipart and streamed uploads against real loopback servers (HTTP/1.1 and h2c)."""

from __future__ import annotations

import email.parser
import email.policy
import io
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import aioduct
from aioduct.bodies import CHUNK_SIZE
from aioduct.testing.h2server import H2Request, H2Server
from aioduct.testing.server import Conn, ScriptServer, ServerRequest


def parse_form(content_type: str, body: bytes) -> list[tuple[str | None, str | None, str, bytes]]:
    """(name, filename, content type, content) of each part, by the stdlib's MIME parser."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    assert message.is_multipart(), body[:200]
    return [
        (
            part.get_param("name", header="content-disposition"),
            part.get_filename(),
            part.get_content_type(),
            part.get_payload(decode=True),
        )
        for part in message.iter_parts()
    ]


def echo(srv: ScriptServer) -> list[ServerRequest]:
    srv.route_respond("/upload", body=b"ok")
    return srv.requests


@pytest.fixture(params=["async", "blocking"])
def post(request: pytest.FixtureRequest) -> Iterator[object]:
    """``post(url, **options) -> Response`` on Client or BlockingClient."""
    if request.param == "blocking":
        with aioduct.BlockingClient() as client:
            yield client.post
    else:
        import asyncio

        def run(url: str, **options: object) -> aioduct.Response:
            async def go() -> aioduct.Response:
                async with aioduct.Client() as client:
                    return await client.post(url, **options)  # type: ignore[arg-type]

            return asyncio.run(go())

        yield run


def test_files_and_fields(script_server: ScriptServer, tmp_path: Path, post) -> None:  # type: ignore[no-untyped-def]
    reqs = echo(script_server)
    path = tmp_path / "report.csv"
    path.write_bytes(b"a,b\n1,2\n")
    r = post(
        script_server.url + "/upload",
        data={"title": "hello", "tags": ["x", "y"], "n": 3},
        files={
            "path": path,
            "bytes": ("notes.txt", b"some notes", "text/plain"),
            "fileobj": ("data.bin", io.BytesIO(b"\0\1\2")),
            "two": ("raw.json", "{}"),
        },
    )
    assert r.status == 200
    req = reqs[0]
    assert req.header("transfer-encoding") is None
    assert int(req.header("content-length")) == len(req.body)
    parts = parse_form(req.header("content-type"), req.body)
    assert parts == [
        ("title", None, "text/plain", b"hello"),
        ("tags", None, "text/plain", b"x"),
        ("tags", None, "text/plain", b"y"),
        ("n", None, "text/plain", b"3"),
        ("path", "report.csv", "text/csv", b"a,b\n1,2\n"),
        ("bytes", "notes.txt", "text/plain", b"some notes"),
        ("fileobj", "data.bin", "application/octet-stream", b"\0\1\2"),
        ("two", "raw.json", "application/json", b"{}"),
    ]


def test_large_in_memory_parts_arrive_whole(script_server: ScriptServer, post) -> None:  # type: ignore[no-untyped-def]
    """Parts above the join limit are sent as they are, beside smaller ones joined with
    their heads: the form is the same, byte for byte, with its exact Content-Length."""
    reqs = echo(script_server)
    big, edge = bytes(range(256)) * 4096, b"e" * (64 * 1024)  # 1 MiB; exactly the limit
    post(
        script_server.url + "/upload",
        data={"note": "x"},
        files={"big": ("big.bin", big), "edge": ("edge.bin", edge), "small": ("s", b"s")},
    )
    req = reqs[0]
    assert int(req.header("content-length")) == len(req.body)
    parts = parse_form(req.header("content-type"), req.body)
    assert [(p[0], p[3]) for p in parts] == [
        ("note", b"x"),
        ("big", big),
        ("edge", edge),
        ("small", b"s"),
    ]


def test_unknown_size_goes_chunked(script_server: ScriptServer, post) -> None:  # type: ignore[no-untyped-def]
    reqs = echo(script_server)
    post(script_server.url + "/upload", files={"gen": ("g.txt", iter([b"ab", b"cd"]))})
    assert reqs[0].header("transfer-encoding") == "chunked"
    assert parse_form(reqs[0].header("content-type"), reqs[0].body)[0][3] == b"abcd"


@pytest.mark.parametrize(
    "filename",
    ['evil"; name="admin', "a\r\nX-Injected: 1", "nul\0byte", "caf\u00e9 \u2603.txt"],
)
def test_filename_cannot_inject_headers(script_server: ScriptServer, filename: str) -> None:
    """aiohttp CVE-2026-34514 class: the filename is escaped, the body parses back to
    the same parts, and no extra header or field appears."""
    reqs = echo(script_server)
    with aioduct.BlockingClient() as client:
        client.post(
            script_server.url + "/upload",
            data={"field": "v"},
            files={"f": (filename, b"content", "text/plain")},
        )
    body = reqs[0].body
    assert b"X-Injected" not in body.split(b"\r\n\r\n")[0]
    assert b"\r\nX-Injected" not in body
    parts = parse_form(reqs[0].header("content-type"), body)
    assert [(p[0], p[3]) for p in parts] == [("field", b"v"), ("f", b"content")]
    escaped = filename.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
    assert parts[1][1] == escaped.replace("\0", "%00")


def test_header_injection_in_content_type_is_refused() -> None:
    with pytest.raises(ValueError, match="control characters"):
        aioduct.Multipart(files={"f": ("a.txt", b"x", "text/plain\r\nX-Evil: 1")})
    with pytest.raises(ValueError, match="control characters"):
        aioduct.Multipart(files={"f": ("a.txt", b"x", "text/plain", {"X-A": "1\r\n2"})})


def test_boundary_never_collides_with_content() -> None:
    first = aioduct.Multipart(boundary="fixed-boundary")
    with pytest.raises(ValueError, match="occurs in a part"):
        first.add_field("x", b"--fixed-boundary")
    form = aioduct.Multipart()
    taken = form.boundary
    form.add_field("evil", b"prefix --" + taken.encode() + b" suffix")
    assert form.boundary != taken
    with pytest.raises(ValueError, match="boundary"):
        aioduct.Multipart(boundary="bad\r\nboundary")


async def test_multipart_by_hand_and_size(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_bytes(b"x" * 1000)
    form = aioduct.Multipart({"a": "1"}, {"f": path})
    body = await form.aread()
    assert form.size == len(body)
    assert parse_form(form.content_type, body)[1][3] == b"x" * 1000
    assert await form.aread() == body  # replayable: the path is reopened


def test_large_file_streams_in_chunks(script_server: ScriptServer, tmp_path: Path) -> None:
    """A file is read in CHUNK_SIZE pieces as it is sent, never whole: the server reads
    the body in pieces too and checks it, and the client's reads are counted."""
    size = 8 * 1024 * 1024 + 17
    path = tmp_path / "big.bin"
    with path.open("wb") as f:
        f.write(bytes(range(256)) * (size // 256) + b"\x01" * (size % 256))

    reads: list[int] = []

    class Counting(io.FileIO):
        def read(self, n: int = -1) -> bytes:  # type: ignore[override]
            data = super().read(n)
            reads.append(len(data))
            return data

    @script_server.route("/upload", read_body=False)
    async def upload(conn: Conn, req: ServerRequest) -> None:
        body = await conn.read_body()
        assert len(body) == int(req.header("content-length"))
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    with aioduct.BlockingClient() as client, Counting(path, "rb") as f:
        r = client.post(script_server.url + "/upload", files={"f": ("big.bin", f)})
    assert r.content == b"ok"
    assert max(reads) <= CHUNK_SIZE
    assert sum(reads) == size and len(reads) > size // (64 * 1024)


@pytest.mark.parametrize("kind", ["bytes", "str", "sync", "async", "file", "path"])
def test_content_kinds(script_server: ScriptServer, tmp_path: Path, kind: str) -> None:
    reqs = echo(script_server)
    path = tmp_path / "c.bin"
    path.write_bytes(b"hello world")

    async def agen() -> AsyncIterator[bytes]:
        yield b"hello "
        yield b"world"

    content: object = {
        "bytes": b"hello world",
        "str": "hello world",
        "sync": iter([b"hello ", b"world"]),
        "async": agen(),
        "path": path,
    }.get(kind)
    with aioduct.BlockingClient() as client:
        if kind == "file":
            with path.open("rb") as f:
                client.post(script_server.url + "/upload", content=f)
        else:
            client.post(script_server.url + "/upload", content=content)  # type: ignore[arg-type]
    req = reqs[0]
    assert req.body == b"hello world"
    if kind in ("sync", "async"):
        assert req.header("transfer-encoding") == "chunked"
    else:
        assert req.header("content-length") == "11"


def test_text_mode_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("x")
    with (
        path.open() as f,
        aioduct.BlockingClient() as client,
        pytest.raises(TypeError, match="'rb'"),
    ):
        client.post("http://127.0.0.1:9/", content=f)  # type: ignore[arg-type]


def redirect_307(srv: ScriptServer) -> list[ServerRequest]:
    srv.route_respond("/307", status=307, headers=[("Location", "/upload")])
    return echo(srv)


def test_307_replays_a_path_and_a_seekable_file(
    script_server: ScriptServer, tmp_path: Path
) -> None:
    reqs = redirect_307(script_server)
    path = tmp_path / "p.bin"
    path.write_bytes(b"payload")
    with aioduct.BlockingClient() as client:
        client.post(script_server.url + "/307", files={"f": path})
        with path.open("rb") as f:
            client.post(script_server.url + "/307", content=f)
    bodies = [r.body for r in reqs]
    assert bodies[0] == bodies[1] and b"payload" in bodies[0]
    assert bodies[2] == bodies[3] == b"payload"


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_307_of_a_one_shot_stream_raises(script_server: ScriptServer, kind: str) -> None:
    reqs = redirect_307(script_server)

    async def agen() -> AsyncIterator[bytes]:
        yield b"once"

    content = iter([b"once"]) if kind == "sync" else agen()
    with aioduct.BlockingClient() as client, pytest.raises(aioduct.RedirectError, match="one-shot"):
        client.post(script_server.url + "/307", content=content)
    assert [r.path for r in reqs] == ["/307"]  # never sent with an empty body


def test_h2_upload_with_and_without_length(tmp_path: Path) -> None:
    path = tmp_path / "h2.bin"
    path.write_bytes(b"y" * 200_000)
    seen: list[tuple[str | None, int]] = []
    with H2Server() as srv:

        @srv.route("/up")
        async def up(req: H2Request) -> None:
            body = await req.body()
            seen.append((req.header("content-length"), len(body)))
            await req.respond(200, b"ok")

        with aioduct.BlockingClient(http2_prior_knowledge=True) as client:
            assert client.post(srv.url + "/up", files={"f": path}).http_version == "HTTP/2"
            client.post(srv.url + "/up", content=iter([b"a" * 70_000, b"b" * 70_000]))
    assert seen[0][0] == str(seen[0][1]) and seen[0][1] > 200_000
    assert seen[1] == (None, 140_000)


# -- Expect: 100-continue ------------------------------------------------------------------


def test_expect_continue_sends_body_after_100(script_server: ScriptServer) -> None:
    @script_server.route("/up", read_body=False)
    async def up(conn: Conn, req: ServerRequest) -> None:
        assert conn.client_waiting_for_continue
        body = await conn.read_body()  # sends 100 Continue first
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    with aioduct.BlockingClient(expect_continue=True) as client:
        r = client.post(script_server.url + "/up", content=b"data" * 1000)
        assert r.content == b"data" * 1000
        r = client.post(script_server.url + "/up", content=iter([b"a", b"b"]))
        assert r.content == b"ab"
    assert script_server.requests[0].header("expect") == "100-continue"
    assert script_server.connections_accepted == 1  # reused after a normal exchange


async def test_expect_continue_final_answer_skips_the_body(script_server: ScriptServer) -> None:
    @script_server.route("/up", read_body=False)
    async def up(conn: Conn, req: ServerRequest) -> None:
        await conn.send(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 3\r\n\r\nbig")

    script_server.route_respond("/next", body=b"next")
    sent: list[bytes] = []

    async def body() -> AsyncIterator[bytes]:
        sent.append(b"x")
        yield b"x" * 100

    async with aioduct.Client() as client:
        r = await client.post(script_server.url + "/up", content=body(), expect_continue=True)
        assert (r.status, r.content) == (413, b"big")
        assert sent == []  # never read, never sent
        assert (await client.get(script_server.url + "/next")).content == b"next"
    assert script_server.connections_accepted == 2  # the refused one was not reused


def test_expect_continue_timeout_sends_the_body_anyway(script_server: ScriptServer) -> None:
    @script_server.route("/up", read_body=False)
    async def up(conn: Conn, req: ServerRequest) -> None:
        body = await conn.read_body(send_continue=False)  # a server that ignores Expect
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    with aioduct.BlockingClient(expect_continue=True, expect_continue_timeout=0.05) as client:
        assert client.post(script_server.url + "/up", content=b"late").content == b"late"


def test_expect_continue_417_is_sent_again_without_it(script_server: ScriptServer) -> None:
    """RFC 9110 §10.1.1: a 417 to the expectation means "send it without"; the body was
    not sent, so even a one-shot iterator can go on the second try."""

    @script_server.route("/up", read_body=False)
    async def up(conn: Conn, req: ServerRequest) -> None:
        if req.header("expect") is not None:
            await conn.send(b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n")
            return
        body = await conn.read_body()
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    with aioduct.BlockingClient(expect_continue=True) as client:
        r = client.post(script_server.url + "/up", content=iter([b"one", b"-shot"]))
    assert (r.status, r.content) == (200, b"one-shot")
    assert [req.header("expect") for req in script_server.requests] == ["100-continue", None]


def test_expect_continue_on_h2() -> None:
    seen: list[bytes] = []
    with H2Server() as srv:

        @srv.route("/continue")
        async def go_on(req: H2Request) -> None:
            assert req.header("expect") == "100-continue"
            req.send_headers(100)
            seen.append(await req.body())
            await req.respond(200, b"ok")

        @srv.route("/refuse")
        async def refuse(req: H2Request) -> None:
            await req.respond(413, b"no")

        sent: list[int] = []

        def one_shot() -> Iterator[bytes]:
            sent.append(1)
            yield b"never"

        with aioduct.BlockingClient(
            http2_prior_knowledge=True, expect_continue=True, expect_continue_timeout=60
        ) as client:
            assert client.post(srv.url + "/continue", content=b"x" * 100_000).content == b"ok"
            r = client.post(srv.url + "/refuse", content=one_shot())
            assert (r.status, r.content, sent) == (413, b"no", [])
            assert client.get(srv.url + "/small").content == b"Hello, World!"
    assert seen == [b"x" * 100_000]


async def test_expect_continue_on_h2_async() -> None:
    with H2Server() as srv:

        @srv.route("/continue")
        async def go_on(req: H2Request) -> None:
            req.send_headers(100)
            await req.respond(200, await req.body())

        async with aioduct.Client(
            http2_prior_knowledge=True, expect_continue=True, expect_continue_timeout=60
        ) as client:
            r = await client.post(srv.url + "/continue", content=b"abc")
            assert (r.http_version, r.content) == ("HTTP/2", b"abc")


async def test_local_engine_uploads(script_server: ScriptServer, tmp_path: Path) -> None:
    """The local engine gathers a streamed body in the parent and ships it to a worker:
    a form and a file body arrive intact, with their Content-Length."""
    reqs = echo(script_server)
    path = tmp_path / "l.txt"
    path.write_bytes(b"local")
    async with aioduct.Client(engine="local", workers=1) as client:
        await client.post(script_server.url + "/upload", data={"a": "1"}, files={"f": path})
        await client.post(script_server.url + "/upload", content=path)
    parts = parse_form(reqs[0].header("content-type"), reqs[0].body)
    assert [(p[0], p[3]) for p in parts] == [("a", b"1"), ("f", b"local")]
    assert reqs[1].body == b"local" and reqs[1].header("content-length") == "5"


def test_retry_resends_a_replayable_file_body(script_server: ScriptServer, tmp_path: Path) -> None:
    """The retry layer sends a path or seekable file again (a one-shot iterator it does
    not: tests/policies/test_retries.py)."""
    bodies: list[bytes] = []

    @script_server.route("/flaky")
    async def flaky(conn: Conn, req: ServerRequest) -> None:
        bodies.append(req.body)
        status = 503 if len(bodies) == 1 else 200
        await conn.send_response(status, [], b"busy" if status == 503 else b"fine")

    path = tmp_path / "r.bin"
    path.write_bytes(b"retry me")
    retry = aioduct.RetryConfig(jitter=0.0, initial_backoff=0.01)
    with aioduct.BlockingClient(retry=retry) as client:
        r = client.put(script_server.url + "/flaky", files={"f": path})
    assert (r.status, r.attempts) == (200, 2)
    assert bodies[0] == bodies[1] and b"retry me" in bodies[0]


def test_expect_header_set_by_hand_is_honoured(script_server: ScriptServer) -> None:
    @script_server.route("/up", read_body=False)
    async def up(conn: Conn, req: ServerRequest) -> None:
        await conn.send(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")

    sent: list[int] = []

    def body() -> Iterator[bytes]:
        sent.append(1)
        yield b"secret upload"

    with aioduct.BlockingClient() as client:
        r = client.post(
            script_server.url + "/up", content=body(), headers={"Expect": "100-continue"}
        )
    assert (r.status, sent) == (401, [])


def test_expect_continue_through_a_forwarding_proxy(script_server: ScriptServer) -> None:
    """The expecting path sends the absolute-form target a forwarding proxy needs."""

    @script_server.route("http://origin.test/up", read_body=False)
    async def up(conn: Conn, req: ServerRequest) -> None:
        body = await conn.read_body()
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    with aioduct.BlockingClient(proxy=script_server.url, expect_continue=True) as client:
        r = client.post("http://origin.test/up", content=b"via proxy")
    assert r.content == b"via proxy"
    assert script_server.requests[0].target == "http://origin.test/up"
