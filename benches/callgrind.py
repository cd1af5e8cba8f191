"""Deterministic cost per request: user-space instructions counted by valgrind's callgrind.

Wall-clock numbers on a shared machine move by 10-30 % from run to run; instruction
counts move by well under 1 %. For each (scenario, client) pair this runs the client under
``valgrind --tool=callgrind`` twice against the same nginx on loopback, once with
``--base`` requests and once with ``--base + --requests``, after the same warm-up. The
difference divided by ``--requests`` is the cost of one request with interpreter start-up,
imports, client setup and warm-up cancelled out. Only the client process is instrumented,
and callgrind counts user-space instructions only (syscalls are one instruction each).

    python -m benches.callgrind [--scenarios get_small,post_4k] [--clients aioduct-uvloop]
                                [--requests 2000] [--base 200] [--keep DIR] [--loop uring]

``--keep DIR`` keeps the callgrind output files (``callgrind_annotate`` reads them).
Async clients only: their requests run on the loop the client registry names, or on the
``--loop`` given (``asyncio``, ``uvloop`` or ``uring``, the local engine's io_uring loop:
how aioduct's send engine costs on each loop, with the same client code).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benches.clients import CLIENTS
from benches.scenarios import SCENARIOS, Target

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CLIENTS = ("aioduct-uvloop", "aioduct-asyncio", "aiohttp")
DEFAULT_SCENARIOS = tuple(SCENARIOS)
WARMUP = 200


async def _drive(client: str, target: Target, requests: int) -> None:
    """Warm up, then send ``requests`` requests spread over ``target.concurrency`` tasks."""
    module = importlib.import_module(CLIENTS[client].module)
    async with module.open_async(target) as fetch:
        for _ in range(WARMUP):
            await fetch()
        lanes = target.concurrency
        share, extra = divmod(requests, lanes)

        async def lane(count: int) -> None:
            for _ in range(count):
                status, _payload = await fetch()
                if status != target.status:
                    raise RuntimeError(f"status {status}, expected {target.status}")

        await asyncio.gather(*(lane(share + (i < extra)) for i in range(lanes)))


def child(spec: dict[str, Any]) -> None:
    """The instrumented process: one client, ``spec['requests']`` requests after a warm-up."""
    target = Target.from_json(spec["target"])
    coro = _drive(spec["client"], target, int(spec["requests"]))
    loop = spec.get("loop") or CLIENTS[spec["client"]].loop
    if loop == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(coro)
    elif loop == "uring":
        from aioduct.uring.loop import new_event_loop

        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            runner.run(coro)
    else:
        asyncio.run(coro)


def client_options(parser: argparse.ArgumentParser, items: list[str]) -> dict[str, Any]:
    """``--option NAME=VALUE`` arguments (values are JSON) as ClientConfig options."""
    options: dict[str, Any] = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not eq:
            parser.error(f"--option takes NAME=VALUE, not {item!r}")
        options[name] = json.loads(value)
    return options


def instructions(args: list[str], out: Path, *, worker: bool = False) -> int:
    """Total instructions (Ir) of ``python args...`` run under callgrind, from the repo.

    ``worker=True`` instruments the local-engine worker that command starts instead of
    the command itself (through ``AIODUCT_WORKER_PREFIX``; one worker, or the counts
    of several would overwrite each other). PYTHONHASHSEED is fixed so dict and set
    layouts, and with them the counts, repeat.
    """
    env = dict(os.environ, PYTHONHASHSEED="0")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    if worker:
        env["AIODUCT_WORKER_PREFIX"] = shlex.join(valgrind)
        valgrind = []
    proc = subprocess.run(
        [*valgrind, sys.executable, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{out.name}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
    for line in out.read_text().splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {out}")


def _instructions(spec: dict[str, Any], out_dir: Path, tag: str) -> int:
    """Total instructions (Ir) of one instrumented child run."""
    args = ["-m", "benches.callgrind", "--child", json.dumps(spec)]
    return instructions(args, out_dir / f"callgrind.{tag}.out")


def measure(
    client: str, target: Target, base: int, requests: int, out_dir: Path, loop: str | None = None
) -> float:
    """Instructions per request for one pair (difference of two runs, see module doc)."""
    spec = {"client": client, "target": target.to_json(), "loop": loop}
    tag = f"{target.scenario}.{client}" + (f".{loop}" if loop else "")
    low = _instructions({**spec, "requests": base}, out_dir, f"{tag}.{base}")
    high = _instructions({**spec, "requests": base + requests}, out_dir, f"{tag}.{base + requests}")
    return (high - low) / requests


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benches.callgrind", description=__doc__)
    parser.add_argument("--scenarios", default=",".join(DEFAULT_SCENARIOS), metavar="A,B")
    parser.add_argument("--clients", default=",".join(DEFAULT_CLIENTS), metavar="X,Y")
    parser.add_argument("--requests", type=int, default=2000, help="measured requests")
    parser.add_argument("--base", type=int, default=200, help="requests of the baseline run")
    parser.add_argument("--keep", type=Path, default=None, help="keep callgrind files here")
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop", "uring"),
        default=None,
        help="run the (async) clients on this loop instead of their own",
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        child(json.loads(args.child))
        return 0
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed (apt-get install valgrind)")
    from benches.runner import bench_nginx
    from benches.scenarios import reference_target

    scenarios = [s for s in args.scenarios.split(",") if s]
    clients = [c for c in args.clients.split(",") if c]
    out_dir = args.keep or Path(tempfile.mkdtemp(prefix="aioduct-callgrind-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"{'scenario':16} {'client':16} {'instructions/request':>22}")
    with bench_nginx(None) as (origins, _meter):  # every transport: h2c and TLS too
        for name in scenarios:
            target = reference_target(SCENARIOS[name], origins)
            for client in clients:
                per = measure(client, target, args.base, args.requests, out_dir, args.loop)
                label = f"{client}@{args.loop}" if args.loop else client
                print(f"{name:16} {label:16} {per / 1000:21.1f}k", flush=True)
    if args.keep is None:
        shutil.rmtree(out_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
