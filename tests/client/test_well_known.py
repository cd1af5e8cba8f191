"""``client.well_known(origin, name)`` (RFC 8615) on every driver."""

from __future__ import annotations

import pytest

import aioduct
from aioduct import uring
from aioduct.testing.server import ScriptServer

SECURITY_TXT = b"Contact: mailto:security@example.org\nExpires: 2030-01-01T00:00:00Z\n"


@pytest.fixture
def origin(script_server: ScriptServer) -> ScriptServer:
    script_server.route_respond(
        "/.well-known/security.txt", headers=[("Content-Type", "text/plain")], body=SECURITY_TXT
    )
    return script_server


async def test_client(origin: ScriptServer) -> None:
    async with aioduct.Client() as client:
        r = await client.well_known(origin.url + "/some/page?q=1", "security.txt")
        assert (r.status, r.content) == (200, SECURITY_TXT)
        assert str(r.url) == origin.url + "/.well-known/security.txt"
        missing = await client.well_known(origin.url, "change-password", headers={"X-A": "1"})
        assert missing.status == 404
        with pytest.raises(ValueError, match="invalid well-known name"):
            await client.well_known(origin.url, "../admin")
    assert [r.target for r in origin.requests] == [
        "/.well-known/security.txt", "/.well-known/change-password",
    ]  # fmt: skip
    assert origin.requests[1].header("x-a") == "1"


def test_blocking_client(origin: ScriptServer) -> None:
    with aioduct.BlockingClient() as client:
        assert client.well_known(origin.url, "security.txt").content == SECURITY_TXT
        with pytest.raises(ValueError, match="invalid well-known name"):
            client.well_known(origin.url, "a/b")


def test_local_engine(origin: ScriptServer) -> None:
    if (reason := uring.unavailable_reason()) is not None:
        pytest.skip(reason)
    with aioduct.BlockingClient(engine="local", workers=1) as client:
        assert client.well_known(origin.url, "security.txt").content == SECURITY_TXT
