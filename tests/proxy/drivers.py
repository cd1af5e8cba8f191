"""Run the same requests on each driver: Client, BlockingClient, Client(engine="local")."""

from __future__ import annotations

import asyncio
from typing import Any

import aioduct

DRIVERS = ("async", "blocking", "local")


def fetch_all(driver: str, urls: list[str], **options: Any) -> list[aioduct.Response]:
    """GET each URL in order with one client of ``driver`` kind; errors propagate."""
    if driver == "blocking":
        with aioduct.BlockingClient(**options) as client:
            return [client.get(url) for url in urls]

    async def run() -> list[aioduct.Response]:
        extra: dict[str, Any] = {"engine": "local", "workers": 1} if driver == "local" else {}
        async with aioduct.Client(**options, **extra) as client:
            return [await client.get(url) for url in urls]

    return asyncio.run(run())


def fetch(driver: str, url: str, **options: Any) -> aioduct.Response:
    return fetch_all(driver, [url], **options)[0]


def echoed(response: aioduct.Response) -> dict[str, str]:
    """The header lines of nginx's ``/echo/headers``."""
    out = {}
    for line in response.text.splitlines():
        name, _, value = line.partition(": ")
        out[name.rstrip(":")] = value
    return out
