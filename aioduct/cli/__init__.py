"""The ``aioduct`` command.

Subcommands: ``crawl`` (fetch a URL list into JSON lines, resumable) and ``demo`` (crawl
an embedded loopback origin with both engines and compare). More tools (``curl``,
``aria``, ``bench``) arrive with their issues.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

__all__ = ["main"]

#: Exit status of a command given bad arguments (argparse's own default is 2).
EXIT_USAGE = 1


class _Parser(argparse.ArgumentParser):
    """argparse, but bad usage exits 1 like every other error of the commands."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="aioduct", description="aioduct HTTP client tools")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    from . import crawl, demo

    crawl.add_parser(commands)
    demo.add_parser(commands)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
