"""Subprocess entry point: measure one (scenario, client) pair and print one JSON line.

Run as ``python -m benches.worker '<spec json>'``. The CPU pin is applied before the client
library is imported, so every thread it later starts (tokio, libcurl) inherits it.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any

RESULT_PREFIX = "BENCH-RESULT "


def _run(spec: dict[str, Any]) -> dict[str, Any]:
    import asyncio
    import dataclasses
    import importlib

    from benches.clients import CLIENTS
    from benches.harness import measure_async, measure_threads, sync_loop
    from benches.scenarios import Target

    info = CLIENTS[spec["client"]]
    target = Target.from_json(spec["target"])
    warmup, duration = float(spec["warmup"]), float(spec["duration"])
    warmup = max(warmup, target.min_warmup)  # a 100 MB first check ends before the window
    duration = max(duration, target.min_duration)  # a dozen 100 MB downloads, not three
    try:
        module = importlib.import_module(info.module)
    except ImportError as exc:
        return {"status": "n/a", "reason": f"cannot import: {exc}"}
    unsupported = getattr(module, "unsupported", None)
    reason = unsupported(target) if unsupported else None
    if target.h3 and not getattr(module, "HTTP3", False):
        reason = "no HTTP/3 in this client (or adapter)"
    if not reason and target.proxy_url and not getattr(module, "PROXIES", False):
        reason = "proxy scenarios are wired for aioduct, aiohttp and pycurl"
    if reason:
        return {"status": "n/a", "reason": reason}
    describe = getattr(module, "describe", None)
    detail = describe() if describe else ""

    if hasattr(module, "bulk_loop"):
        workers = spec.get("workers") or info.workers
        m = measure_threads([module.bulk_loop(target, workers)], warmup, duration)
    elif hasattr(module, "open_async"):
        coro = measure_async(module.open_async, target, warmup, duration)
        if info.loop == "uvloop":
            import uvloop

            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                m = runner.run(coro)
        else:
            m = asyncio.run(coro)
    elif target.concurrency > 1 and hasattr(module, "multi_loop"):
        m = measure_threads([module.multi_loop(target)], warmup, duration)
    else:
        loop = sync_loop(module.open_sync, target)
        m = measure_threads([loop] * target.concurrency, warmup, duration)
    return {"status": "ok", "detail": detail, **dataclasses.asdict(m)}


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    cpus = spec.get("cpus")
    if cpus is None and spec.get("cpu") is not None:
        cpus = [spec["cpu"]]
    if cpus:
        os.sched_setaffinity(0, {int(c) for c in cpus})
    try:
        result = _run(spec)
    except Exception as exc:
        traceback.print_exc()
        result = {"status": "error", "reason": f"{type(exc).__name__}: {exc}"[:500]}
    sys.stdout.flush()
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
