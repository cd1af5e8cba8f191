"""``python -m benches.download``: client.download() against a single pycurl stream.

The seed's "chunk download" rows: a 1 MB and a 100 MB file from a local nginx, fetched
to disk by ``Client.download`` with 1, 4 and 8 chunks, and by pycurl as one stream
written to a file (what a curl user does). Loopback has no latency to hide, so
parallel ranges cost their extra requests here and gain on real networks; the point of
the table is the overhead, not a speedup.

Each figure is the median of ``--repeat`` runs (wall clock: noisy on a shared machine;
read the relative sizes).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import aioduct
from aioduct.testing.nginx import Nginx, deterministic_bytes

SIZES = {"1m": 1024 * 1024, "100m": 100 * 1024 * 1024}


def _pycurl(url: str, path: Path) -> None:
    import pycurl  # type: ignore[import-untyped]

    with open(path, "wb") as out:
        curl = pycurl.Curl()
        curl.setopt(pycurl.URL, url)
        curl.setopt(pycurl.WRITEDATA, out)
        curl.setopt(pycurl.BUFFERSIZE, 256 * 1024)
        curl.perform()
        status = curl.getinfo(pycurl.RESPONSE_CODE)
        curl.close()
    assert status == 200


def _median(fn: Callable[[], None], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _measure(name: str, size: int, url: str, target: Path, repeat: int) -> None:
    def curl() -> None:
        _pycurl(url, target)

    def with_chunks(chunks: int) -> Callable[[], None]:
        async def go() -> None:
            async with aioduct.Client() as c:
                await c.download(url, target, chunks=chunks, resume=False)

        return lambda: aioduct.run(go())

    rows: list[tuple[str, Callable[[], None]]] = [("pycurl (one stream)", curl)]
    rows += [(f"aioduct download chunks={n}", with_chunks(n)) for n in (1, 4, 8)]
    with aioduct.BlockingClient() as bc:

        def blocking() -> None:
            bc.download(url, target, resume=False)

        rows.append(("aioduct BlockingClient.download", blocking))
        for label, fn in rows:
            fn()  # warm up, and check the size once
            assert target.stat().st_size == size
            seconds = _median(fn, repeat)
            rate = size / seconds / 1e6
            print(f"{name:>6} {label:<32} {seconds * 1e3:9.2f}ms {rate:8.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benches.download")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, Nginx() as ngx:
        work = Path(tmp)
        # nginx serves /bytes/NAME from its files directory: add the 100 MB file there.
        big = ngx.files_dir / "bytes" / "100m"
        if not big.exists():
            big.write_bytes(deterministic_bytes(SIZES["100m"]))
        print(f"{'file':>6} {'client':<32} {'median':>11} {'MB/s':>8}")
        for name, size in SIZES.items():
            _measure(name, size, f"{ngx.http_url}/bytes/{name}", work / name, args.repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
