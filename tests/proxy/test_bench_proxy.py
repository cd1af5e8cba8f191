"""The proxy benchmark scenarios run end to end: aioduct, aiohttp and pycurl through a
local tinyproxy (CONNECT) and microsocks (SOCKS5), every response checked."""

from __future__ import annotations

import io

import pytest

from benches.runner import Options, run

SCENARIOS = ["https_proxy_connect_50", "https_proxy_socks5_50"]
CLIENTS = ("aioduct-asyncio", "aioduct-blocking", "aiohttp", "pycurl")


@pytest.mark.timeout(180)
@pytest.mark.usefixtures("nginx", "tinyproxy")  # skips (and so fails) without the binaries
def test_proxy_scenarios_run_for_aioduct_aiohttp_and_pycurl() -> None:
    out = io.StringIO()
    report = run(
        Options(
            scenarios=SCENARIOS,
            clients=CLIENTS,
            duration=0.5,
            warmup=1.0,  # 50 tunnels (CONNECT + TLS each) open before the window
            pin=False,
            json_path=None,
            out=out,
        )
    )
    results = {(r.scenario, r.client): r for r in report.results}
    assert set(results) == {(s, c) for s in SCENARIOS for c in CLIENTS}
    for (scenario, client), r in results.items():
        if (scenario, client) == ("https_proxy_socks5_50", "aiohttp"):
            assert r.status == "n/a" and "no SOCKS in aiohttp" in (r.reason or "")
            continue
        assert r.status == "ok", (scenario, client, r.reason)
        assert r.errors == 0 and r.requests > 0, (scenario, client, r.first_error)
    assert "through tinyproxy (CONNECT)" in out.getvalue()
