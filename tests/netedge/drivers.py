"""Run the same requests on every driver: Client (asyncio), BlockingClient, the local engine."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import aioduct
from aioduct import uring

DRIVERS = ["asyncio", "blocking", "local"]
#: With uvloop too, where the connect race's tasks run on libuv.
LOOP_DRIVERS = ["asyncio", "uvloop", "blocking", "local"]
Outcome = aioduct.Response | aioduct.AioductError


def fetch_all(driver: str, urls: list[str], **options: Any) -> list[Outcome]:
    """GET each URL in turn on one client of ``driver``: responses, or their errors."""
    if driver == "blocking":
        outcomes: list[Outcome] = []
        with aioduct.BlockingClient(**options) as blocking:
            for url in urls:
                try:
                    outcomes.append(blocking.get(url))
                except aioduct.AioductError as exc:
                    outcomes.append(exc)
        return outcomes
    if driver == "local":
        reason = uring.unavailable_reason()
        if reason is not None:
            pytest.skip(reason)
        options = {"engine": "local", "workers": 1, **options}

    async def main() -> list[Outcome]:
        outcomes: list[Outcome] = []
        async with aioduct.Client(**options) as client:
            for url in urls:
                try:
                    outcomes.append(await client.get(url))
                except aioduct.AioductError as exc:
                    outcomes.append(exc)
        return outcomes

    loop_factory = None
    if driver == "uvloop":
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main())


def fetch(driver: str, url: str, **options: Any) -> Outcome:
    return fetch_all(driver, [url], **options)[0]


def ok(outcome: Outcome) -> aioduct.Response:
    assert isinstance(outcome, aioduct.Response), outcome
    return outcome


def failed(outcome: Outcome, kind: type[aioduct.AioductError] = aioduct.ConnectError) -> str:
    assert isinstance(outcome, kind), outcome
    return str(outcome)
