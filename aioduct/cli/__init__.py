"""The ``aioduct`` command.

Subcommands: ``demo`` (crawl an embedded loopback origin and report). More tools
(``crawl``, ``curl``, ``aria``, ``bench``) arrive with their issues.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aioduct", description="aioduct HTTP client tools")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    from . import demo

    demo.add_parser(commands)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
