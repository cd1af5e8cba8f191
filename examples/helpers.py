"""Link pagination, Problem Details, trailers and Forwarded, against a local server.

Run: python examples/helpers.py
"""

from __future__ import annotations

import aioduct
from aioduct.testing.server import Conn, ScriptServer, ServerRequest


def serve(srv: ScriptServer) -> None:
    @srv.route("/items")
    async def items(conn: Conn, req: ServerRequest) -> None:
        page = int(req.query.partition("=")[2] or 1)
        link = b'</items?page=%d>; rel="next"' % (page + 1) if page < 3 else b""
        body = b"page %d" % page
        await conn.send(
            b"HTTP/1.1 200 OK\r\nLink: %s\r\nContent-Length: %d\r\n\r\n%s" % (link, len(body), body)
        )

    srv.route_respond(
        "/broke",
        status=403,
        headers=[("Content-Type", "application/problem+json")],
        body=b'{"type": "https://example.com/probs/out-of-credit", "title": "No credit",'
        b' "status": 403, "balance": 30}',
    )
    srv.route_raw(
        "/trailers",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: Checksum\r\n\r\n"
        b"5\r\nhello\r\n0\r\nChecksum: 5d41402a\r\n\r\n",
    )


def main(base: str) -> None:
    with aioduct.BlockingClient() as client:
        url: str | None = base + "/items"
        while url:  # follow rel="next" until there is none
            r = client.get(url)
            print(r.http_version, r.status, r.text, "elapsed", r.elapsed)
            url = r.links.get("next", {}).get("url")

        problem = client.get(base + "/broke").problem()
        assert problem is not None
        print("problem:", problem.title, problem.status, problem.extensions)

        r = client.get(base + "/trailers")
        print("trailers:", r.content, dict(r.trailers.items()))

    value = aioduct.format_forwarded(for_="2001:db8::1", proto="https", host="example.org")
    print("Forwarded:", value, "->", aioduct.parse_forwarded(value))


if __name__ == "__main__":
    with ScriptServer() as srv:
        serve(srv)
        main(srv.url)
