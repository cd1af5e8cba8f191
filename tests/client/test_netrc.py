"""``.netrc`` credentials (trust_env) against real servers: reliability.md 1.1 and 1.2.

Two hosts on loopback: ``127.0.0.1`` (the scriptable server, and nginx) and
``localhost`` (a second scriptable server reached by that name), so a redirect from one
to the other changes the host, which is what netrc entries are keyed by.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

import aioduct
from aioduct import uring
from aioduct.testing.nginx import Nginx
from aioduct.testing.server import Conn, ScriptServer, ServerRequest


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def tell(conn: Conn, req: ServerRequest) -> None:
    """Answers with the Authorization it received (or "-")."""
    await conn.send_response(200, [], (req.header("authorization") or "-").encode())


@pytest.fixture
def other() -> Iterator[ScriptServer]:
    srv = ScriptServer().start()
    srv.add_route("/who", tell)
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture
def first(script_server: ScriptServer, other: ScriptServer) -> ScriptServer:
    """127.0.0.1: /who tells, /go redirects to ``http://localhost:OTHER/who``."""
    script_server.add_route("/who", tell)
    for status in (302, 307):
        script_server.route_respond(
            f"/go{status}", status, [("Location", f"http://localhost:{other.port}/who")]
        )
    return script_server


class NetrcFile:
    """The file ``$NETRC`` names for this test."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write_text(self, text: str) -> None:
        self.path.write_text(text)

    def __str__(self) -> str:
        return str(self.path)


@pytest.fixture
def netrc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> NetrcFile:
    path = tmp_path / "netrc"
    monkeypatch.setenv("NETRC", str(path))
    return NetrcFile(path)


async def get_text(url: str, **options: object) -> str:
    async with aioduct.Client(**options) as client:  # type: ignore[arg-type]
        return (await client.get(url)).text


async def test_basic_from_netrc_port_ignored(nginx: Nginx, netrc: NetrcFile) -> None:
    """httpx #1298: ``http://h:PORT/`` matches ``machine h``."""
    netrc.write_text("machine 127.0.0.1\n  login user\n  password pass\n")
    async with aioduct.Client() as client:
        r = await client.get(nginx.http_url + "/auth/basic")
        assert (r.status, r.text) == (200, "authorized")
    async with aioduct.Client(trust_env=False) as client:
        assert (await client.get(nginx.http_url + "/auth/basic")).status == 401


async def test_explicit_auth_wins(first: ScriptServer, netrc: NetrcFile) -> None:
    netrc.write_text("machine 127.0.0.1 login user password pass\n")
    async with aioduct.Client() as client:
        r = await client.get(first.url + "/who", auth=("me", "mine"))
        assert r.text == basic("me", "mine")
        r = await client.get(first.url + "/who", headers={"Authorization": "Bearer x"})
        assert r.text == "Bearer x"
        assert (await client.get(first.url + "/who")).text == basic("user", "pass")


async def test_lookup_key_is_the_parsed_host(first: ScriptServer, netrc: NetrcFile) -> None:
    """requests CVE-2024-47081: ``http://example.com:@HOST/`` must not use
    example.com's entry (the userinfo is the URL's own, explicit credentials)."""
    netrc.write_text(
        "machine example.com login wronguser password wrongpass\n"
        "machine 127.0.0.1 login user password pass\n"
    )
    tricky = await get_text(f"http://example.com:@127.0.0.1:{first.port}/who")
    plain = await get_text(f"http://127.0.0.1:{first.port}/who")
    assert "wrong" not in base64.b64decode(tricky.split()[1]).decode()
    assert plain == basic("user", "pass")


async def test_url_user_never_gets_another_users_password(
    first: ScriptServer, netrc: NetrcFile
) -> None:
    """curl CVE-2026-8926: ``http://bob@h/`` never sends alice's netrc password."""
    netrc.write_text("machine 127.0.0.1 login alice password a\n")
    sent = await get_text(f"http://bob@127.0.0.1:{first.port}/who")
    assert sent == basic("bob", "")


@pytest.mark.parametrize("status", [302, 307])
async def test_redirect_to_another_host_without_entry(
    first: ScriptServer, other: ScriptServer, netrc: NetrcFile, status: int
) -> None:
    """requests CVE-2014-1829: A's netrc credentials do not follow a redirect to B."""
    netrc.write_text("machine 127.0.0.1 login user password pass\n")
    assert await get_text(f"{first.url}/go{status}") == "-"
    assert other.requests[-1].header("authorization") is None
    assert first.requests[-1].header("authorization") == basic("user", "pass")


async def test_redirect_to_another_host_gets_its_own_entry(
    first: ScriptServer, netrc: NetrcFile
) -> None:
    netrc.write_text(
        "machine 127.0.0.1 login user password pass\nmachine localhost login b password bee\n"
    )
    assert await get_text(f"{first.url}/go302") == basic("b", "bee")


async def test_entry_without_password_sends_nothing(first: ScriptServer, netrc: NetrcFile) -> None:
    """curl CVE-2024-11053: B's entry has a login only -> A's password is not reused."""
    netrc.write_text("machine 127.0.0.1 login u password p\nmachine localhost login u\n")
    assert await get_text(f"{first.url}/go302") == "-"


async def test_default_without_credentials_sends_nothing(
    first: ScriptServer, netrc: NetrcFile
) -> None:
    """curl CVE-2025-0167: a ``default`` entry without login and password."""
    netrc.write_text("machine 127.0.0.1 login u password p\ndefault\n")
    assert await get_text(f"{first.url}/go302") == "-"
    netrc.write_text("machine 127.0.0.1 login u password p\ndefault login d password dd\n")
    assert await get_text(f"{first.url}/go302") == basic("d", "dd")


async def test_bearer_for_a_never_reaches_b(first: ScriptServer, netrc: NetrcFile) -> None:
    """curl CVE-2026-3783: B matches a netrc entry -> B gets B's Basic, not A's token."""
    netrc.write_text("machine localhost login b password bee\n")
    async with aioduct.Client(auth=aioduct.BearerAuth("tok-for-a")) as client:
        r = await client.get(f"{first.url}/go307")
    assert r.text == basic("b", "bee")
    assert first.requests[-1].header("authorization") == "Bearer tok-for-a"


async def test_malformed_netrc_is_ignored_with_a_warning(
    first: ScriptServer, netrc: NetrcFile, caplog: pytest.LogCaptureFixture
) -> None:
    netrc.write_text('machine 127.0.0.1 login user password "unterminated\n')
    with caplog.at_level(logging.WARNING, logger="aioduct"):
        assert await get_text(first.url + "/who") == "-"
    assert "malformed netrc" in caplog.text and "unterminated quote" in caplog.text
    assert str(netrc) in caplog.text and "line 1" in caplog.text


def test_blocking_client(first: ScriptServer, netrc: NetrcFile) -> None:
    netrc.write_text("machine 127.0.0.1 login user password pass\n")
    with aioduct.BlockingClient() as client:
        assert client.get(first.url + "/who").text == basic("user", "pass")
        assert client.get(first.url + "/go302").text == "-"


def test_local_engine(first: ScriptServer, netrc: NetrcFile) -> None:
    """The workers read the same file and look it up per hop there."""
    if (reason := uring.unavailable_reason()) is not None:
        pytest.skip(reason)
    netrc.write_text("machine 127.0.0.1 login user password pass\n")
    with aioduct.BlockingClient(engine="local", workers=1) as client:
        assert client.get(first.url + "/who").text == basic("user", "pass")
        assert client.get(first.url + "/go307").text == "-"
    with aioduct.LocalEngine(workers=1) as engine:
        results = sorted(engine.map([first.url + "/who", first.url + "/go302"]), key=str)
        bodies = sorted((r.body or b"").decode() for r in results)
        assert bodies == ["-", basic("user", "pass")]
