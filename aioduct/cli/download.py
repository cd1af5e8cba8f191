"""``aioduct download URL -o FILE --chunks 8``: a parallel range download with a progress bar.

Interrupted (Ctrl-C, a dropped connection), it leaves ``FILE.part`` and
``FILE.part.json``; the same command resumes from there (see :mod:`aioduct.download`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ._progress import StatusLine, human_bytes

__all__ = ["add_parser"]

EXIT_FAILED = 2


def add_parser(commands: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        "download", help="download a URL into a file with parallel ranges (resumable)"
    )
    parser.add_argument("url")
    parser.add_argument("-o", "--output", help="file to write (default: the URL's last segment)")
    parser.add_argument("--chunks", type=int, default=8, help="ranges fetched at once (8)")
    parser.add_argument(
        "--no-resume", action="store_true", help="start over even if FILE.part exists"
    )
    parser.set_defaults(run=_run)
    return parser


def _bar(done: int, total: int | None, width: int = 30) -> str:
    if not total:
        return f"{human_bytes(done)}"
    filled = int(width * done / total)
    bar = "#" * filled + "." * (width - filled)
    return f"[{bar}] {100 * done / total:5.1f}% of {human_bytes(total)}"


def _run(args: argparse.Namespace) -> int:
    import aioduct

    output = args.output or Path(urlsplit(args.url).path).name
    if output in ("", ".", ".."):
        output = "index.html"
    if args.chunks < 1:
        print("aioduct download: --chunks must be at least 1", file=sys.stderr)
        return 1
    seen = [0, None]

    def progress(done: int, total: int | None) -> None:
        seen[0], seen[1] = done, total

    async def main() -> aioduct.Download:
        line = StatusLine(lambda: _bar(seen[0], seen[1]))  # type: ignore[arg-type]
        line.start()
        try:
            async with aioduct.Client() as client:
                return await client.download(
                    args.url, output, chunks=args.chunks, progress=progress,
                    resume=not args.no_resume,
                )  # fmt: skip
        finally:
            line.stop()

    try:
        result = aioduct.run(main())
    except aioduct.AioductError as exc:
        print(f"aioduct download: {exc}", file=sys.stderr)
        if Path(output + ".part.json").exists():
            print("aioduct download: run the same command again to resume", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("\naioduct download: interrupted; run it again to resume", file=sys.stderr)
        return 130
    rate = result.size / result.elapsed if result.elapsed > 0 else 0.0
    resumed = f", {human_bytes(result.resumed)} resumed" if result.resumed else ""
    print(
        f"{result.path}: {human_bytes(result.size)} in {result.elapsed:.2f}s "
        f"({human_bytes(rate)}/s, {result.chunks} chunk{'s' if result.chunks != 1 else ''}"
        f"{resumed})",
        file=sys.stderr,
    )
    return 0
