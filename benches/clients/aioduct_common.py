"""What both aioduct adapters (send engine and local engine) do for TLS and gzip scenarios.

The gzip scenario needs the client to decode the body: both adapters pass
``decompress=True`` when ``aioduct.ClientConfig`` has the option (an older aioduct without
it reports the scenario as not supported).
"""

from __future__ import annotations

from typing import Any

import aioduct
from benches.scenarios import Target


def can_decompress() -> bool:
    return "decompress" in aioduct.ClientConfig.__struct_fields__


def unsupported_reason(target: Target) -> str | None:
    if target.gzip and not can_decompress():
        return "no decompression yet (issue 10: ClientConfig has no decompress option)"
    return None


def tls_gzip_options(target: Target) -> dict[str, Any]:
    """Client options for the TLS and gzip scenarios (nothing for the others)."""
    options: dict[str, Any] = {}
    if target.tls:
        options["verify"] = target.ca_file  # the run's CA: verification stays on
        options["http2"] = target.http2  # ALPN offers h2 in the h2 scenario only
    if target.h3:
        options["http3_prior_knowledge"] = True
    if target.gzip:
        options["headers"] = target.headers
        options["decompress"] = True
    if target.proxy_url:
        options["proxy"] = target.proxy_url
    return options


def client_options(target: Target) -> dict[str, Any]:
    """``aioduct.Client``/``BlockingClient`` options for ``target`` (pool, h2c, TLS, gzip)."""
    options: dict[str, Any] = {}
    if not target.keepalive:
        # no_pool: the client is reused but keeps no idle connection, like the peers' switches.
        options["pool_max_idle_per_host"] = 0
    if target.h2c:
        options["http2_prior_knowledge"] = True
    options.update(tls_gzip_options(target))
    return options
