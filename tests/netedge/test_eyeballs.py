"""Happy eyeballs (RFC 8305) against a blackholed address beside a working one."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

import aioduct
from aioduct import uring
from aioduct.eyeballs import _race_tasks, interleave, race_sockets
from aioduct.testing.dnsserver import blackhole
from aioduct.testing.server import ScriptServer

from .drivers import DRIVERS, LOOP_DRIVERS, fetch, ok

V4, V6 = int(socket.AF_INET), int(socket.AF_INET6)


@pytest.fixture
def v6_server() -> Iterator[ScriptServer]:
    srv = ScriptServer(host="::1").start()
    srv.route_respond("/", body=b"six")
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture
def v4_server(script_server: ScriptServer) -> ScriptServer:
    script_server.route_respond("/", body=b"four")
    return script_server


def test_loopback_ipv6_works() -> None:
    """The tests below need ::1; fail loudly rather than pass vacuously without it."""
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))


def test_order_is_ipv6_first_and_interleaved() -> None:
    targets = [(V4, "10.0.0.1", 1), (V4, "10.0.0.2", 1), (V6, "::1", 1), (V6, "::2", 1)]
    assert interleave(targets) == [
        (V6, "::1", 1),
        (V4, "10.0.0.1", 1),
        (V6, "::2", 1),
        (V4, "10.0.0.2", 1),
    ]
    only4 = [(V4, "10.0.0.1", 1), (V4, "10.0.0.2", 1)]
    assert interleave(only4) == only4


@pytest.mark.parametrize("driver", LOOP_DRIVERS)
def test_a_blackholed_ipv6_address_loses_to_ipv4(driver: str, v4_server: ScriptServer) -> None:
    """IPv6 is tried first and never answers; IPv4 starts after the delay and wins. One
    address at a time, the shared connect deadline would expire on the blackhole."""
    with blackhole("::1") as dead:
        resolve = {"dual.test": f"[::1]:{dead},127.0.0.1:{v4_server.port}"}
        r = ok(
            fetch(
                driver,
                "http://dual.test/",
                resolve=resolve,
                happy_eyeballs_delay=0.05,
                connect_timeout=5,
            )
        )
        assert r.content == b"four"
        assert r.timings.address == f"127.0.0.1:{v4_server.port}"


@pytest.mark.parametrize("driver", LOOP_DRIVERS)
def test_a_blackholed_ipv4_address_loses_to_ipv6(driver: str, v6_server: ScriptServer) -> None:
    with blackhole("127.0.0.1") as dead:
        # Listed IPv4 first: IPv6 is still tried first, and wins.
        resolve = {"dual.test": f"127.0.0.1:{dead},[::1]:{v6_server.port}"}
        r = ok(fetch(driver, "http://dual.test/", resolve=resolve, happy_eyeballs_delay=0.05))
        assert r.content == b"six"
        assert r.timings.address == f"[::1]:{v6_server.port}"


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_refused_address_starts_the_next_at_once(driver: str, v4_server: ScriptServer) -> None:
    """A refusal does not wait for the delay (an hour here) before the next address."""
    with socket.socket(socket.AF_INET6) as closed:
        closed.bind(("::1", 0))
        port = closed.getsockname()[1]  # bound, not listening: connects are refused
        resolve = {"dual.test": f"[::1]:{port},127.0.0.1:{v4_server.port}"}
        r = ok(fetch(driver, "http://dual.test/", resolve=resolve, happy_eyeballs_delay=3600))
        assert r.content == b"four"


@pytest.mark.parametrize("driver", ["asyncio", "blocking"])
def test_without_racing_the_blackhole_takes_the_whole_deadline(
    driver: str, v4_server: ScriptServer
) -> None:
    with blackhole("::1") as dead:
        resolve = {"dual.test": f"[::1]:{dead},127.0.0.1:{v4_server.port}"}
        outcome = fetch(
            driver,
            "http://dual.test/",
            resolve=resolve,
            happy_eyeballs_delay=None,
            connect_timeout=0.3,
        )
        assert isinstance(outcome, aioduct.ConnectTimeout)


@pytest.mark.parametrize("driver", DRIVERS)
def test_every_address_failing_names_each(driver: str) -> None:
    ports = []
    socks = []
    for host, family in (("::1", socket.AF_INET6), ("127.0.0.1", socket.AF_INET)):
        s = socket.socket(family)
        s.bind((host, 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    try:
        resolve = {"dual.test": f"[::1]:{ports[0]},127.0.0.1:{ports[1]}"}
        outcome = fetch(driver, "http://dual.test/", resolve=resolve)
        assert isinstance(outcome, aioduct.ConnectError)
        assert f"[::1]:{ports[0]}" in str(outcome) and f"127.0.0.1:{ports[1]}" in str(outcome)
    finally:
        for s in socks:
            s.close()


@pytest.mark.parametrize("kind", ["send", "local"])
def test_timings_address_survives_result_encoding(kind: str, v4_server: ScriptServer) -> None:
    """Results of both engines report the address; the local engine's came over the
    worker pipe, and any Result survives msgpack."""
    if kind == "local" and (reason := uring.unavailable_reason()) is not None:
        pytest.skip(reason)
    engine_class = aioduct.SendEngine if kind == "send" else aioduct.LocalEngine
    options = {"resolve": {"v4.test": f"127.0.0.1:{v4_server.port}"}}
    engine = engine_class(**options) if kind == "send" else engine_class(workers=1, **options)
    with engine:
        [result] = list(engine.map(["http://v4.test/"]))
    assert result.timings is not None, result
    assert result.timings.address == f"127.0.0.1:{v4_server.port}"
    import msgspec

    again = msgspec.msgpack.decode(msgspec.msgpack.encode(result), type=aioduct.Result)
    assert again.timings is not None and again.timings.address == result.timings.address


# -- the race itself: the losers are cancelled and closed ---------------------------------------


class FakeStream:
    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = False

    def close(self) -> None:
        self.closed = True


async def test_losing_tasks_are_cancelled_and_late_winners_closed() -> None:
    started: list[str] = []
    cancelled: list[str] = []
    made: dict[str, FakeStream] = {}
    gate = asyncio.Event()
    c_started = asyncio.Event()

    async def open_one(target: tuple[int, str, int]) -> FakeStream:
        name = target[1]
        started.append(name)
        try:
            if name == "a":
                await asyncio.sleep(3600)  # a blackhole
            if name == "b":
                await c_started.wait()  # b wins once c is under way
            if name == "c":
                c_started.set()
                await gate.wait()  # connects just as b wins
            made[name] = FakeStream(name)
            if name == "b":
                gate.set()
            return made[name]
        except asyncio.CancelledError:
            cancelled.append(name)
            raise

    targets = [(V6, "a", 1), (V4, "b", 1), (V6, "c", 1)]
    errors: list[str] = []
    won = await _race_tasks(targets, 0.01, open_one, errors)  # type: ignore[arg-type]
    assert won is not None and won[1][1] in ("b", "c")  # both connect in one loop pass
    assert started == ["a", "b", "c"]
    assert "a" in cancelled
    winner, loser = won[1][1], "c" if won[1][1] == "b" else "b"
    assert won[0] is made[winner] and not made[winner].closed
    assert loser in cancelled or made[loser].closed


def test_socket_race_closes_the_loser() -> None:
    listeners = []
    for host, family in (("::1", socket.AF_INET6), ("127.0.0.1", socket.AF_INET)):
        s = socket.socket(family)
        s.bind((host, 0))
        s.listen(8)
        listeners.append(s)
    try:
        targets = [
            (V6, "::1", listeners[0].getsockname()[1]),
            (V4, "127.0.0.1", listeners[1].getsockname()[1]),
        ]
        sock, target, errors = race_sockets(targets, delay=0.0, deadline=None)
        assert sock is not None and target is not None and errors == []
        try:
            winner_index = targets.index(target)
            loser = listeners[1 - winner_index]
            loser.settimeout(5)
            accepted, _ = loser.accept()  # the loser connected too, then was closed
            with accepted:
                accepted.settimeout(5)
                assert accepted.recv(1) == b""
        finally:
            sock.close()
    finally:
        for s in listeners:
            s.close()


def test_without_tasks_or_sockets_each_address_gets_the_delay(v4_server: ScriptServer) -> None:
    """A runtime with neither background tasks nor adopt_socket falls back to one address
    at a time, each but the last bounded by happy_eyeballs_delay."""
    import time

    from aioduct.eyeballs import connect
    from aioduct.runtimes.blocking import BlockingRuntime, run_sync

    class Plain:
        background = False
        name = "plain"

        def __init__(self) -> None:
            self._inner = BlockingRuntime()

        def now(self) -> float:
            return time.monotonic()

        async def open_tcp(self, ip: str, port: int, **kw: object) -> object:
            return await self._inner.open_tcp(ip, port, **kw)  # type: ignore[arg-type]

    with blackhole("::1") as dead:
        targets = [(V6, "::1", dead), (V4, "127.0.0.1", v4_server.port)]
        stream, target = run_sync(
            connect(Plain(), targets, delay=0.2, deadline=time.monotonic() + 10)  # type: ignore[arg-type]
        )
        stream.close()
        assert target == (V4, "127.0.0.1", v4_server.port)
