"""aioduct-aioquic: the aioduct-uvloop adapter with HTTP/3 on aioquic (pure Python QUIC)
instead of the default (``Http3Config(backend="auto")``: qh3 when installed), to measure
what the QUIC library costs. Off HTTP/3 it would equal aioduct-uvloop, so it runs the
h3_* scenarios only."""

from __future__ import annotations

import os

from benches.clients import aioduct_client
from benches.scenarios import Target

# Read when the client is created ("auto" follows it); this subprocess runs only us.
os.environ["AIODUCT_HTTP3_BACKEND"] = "aioquic"

HTTP3 = True
open_async = aioduct_client.open_async


def unsupported(target: Target) -> str | None:
    if not target.h3:
        return "HTTP/3 scenarios only (elsewhere the same as aioduct-uvloop)"
    return aioduct_client.unsupported(target)


def describe() -> str:
    return aioduct_client.describe()
