"""The ``aioduct`` command.

Subcommands: ``crawl`` (fetch a URL list into JSON lines, resumable), ``download`` (one
file by parallel ranges, resumable) and ``demo`` (crawl an embedded loopback origin with
both engines and compare). More tools (``curl``,
``aria``, ``bench``) arrive with their issues.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import NoReturn

__all__ = ["main"]

#: Exit status of a command given bad arguments (argparse's own default is 2).
EXIT_USAGE = 1
#: Exit status after an error aioduct did not foresee (reported in one line, no traceback).
EXIT_INTERNAL = 3
#: Set to 1 to see the traceback of such an error.
TRACEBACK_SWITCH = "AIODUCT_TRACEBACK"


class _Parser(argparse.ArgumentParser):
    """argparse, but bad usage exits 1 like every other error of the commands."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def main(argv: list[str] | None = None) -> int:
    from .. import __version__

    parser = _Parser(prog="aioduct", description="aioduct HTTP client tools")
    parser.add_argument("--version", action="version", version=f"aioduct {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    from . import crawl, demo, download

    subparsers = {
        "crawl": crawl.add_parser(commands),
        "demo": demo.add_parser(commands),
        "download": download.add_parser(commands),
    }
    args, unknown = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if unknown:  # the command's own usage, not the top level's
        subparsers[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        result: int = args.run(args)
    except Exception as exc:
        # Commands report the errors they expect in words; anything else still gets one
        # line, not a traceback (unless asked for).
        if os.environ.get(TRACEBACK_SWITCH, "") not in ("", "0"):
            traceback.print_exc()
        else:
            print(
                f"aioduct {args.command}: internal error: {type(exc).__name__}: {exc} "
                f"(please report it; {TRACEBACK_SWITCH}=1 shows the traceback)",
                file=sys.stderr,
            )
        return EXIT_INTERNAL
    return result


if __name__ == "__main__":
    sys.exit(main())
