"""aioduct.BlockingClient: one client shared by the runner's threads.

The blocking client runs the pipeline in the calling thread on plain sockets (no event
loop, no thread hop) with a connection pool per thread, so N threads behave like N
sessions of a sync library. Options as for the async client (aioduct_common).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import aioduct
from benches.clients.aioduct_common import client_options, unsupported_reason
from benches.harness import Fetched, SyncFetch
from benches.scenarios import Target

#: Runs the proxy scenarios (target.proxy_url).
PROXIES = True
#: The h3_* scenarios run with this adapter (HTTP/3 with prior knowledge).
HTTP3 = True


def unsupported(target: Target) -> str | None:
    return unsupported_reason(target)


@contextmanager
def open_sync(target: Target) -> Iterator[SyncFetch]:
    with aioduct.BlockingClient(**client_options(target)) as client:
        url, body = target.url, target.body

        if target.method == "POST":

            def fetch() -> Fetched:
                r = client.post(url, content=body)
                return r.status, r.content

        elif target.decode == "json":

            def fetch() -> Fetched:
                r = client.get(url)
                return r.status, r.json()

        elif target.decode == "text":

            def fetch() -> Fetched:
                r = client.get(url)
                return r.status, r.text

        else:

            def fetch() -> Fetched:
                r = client.get(url)
                return r.status, r.content

        yield fetch
