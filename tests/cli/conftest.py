"""Fixtures for the command-line tests: the loopback origin on several ports, and a runner
for ``python -m aioduct.cli`` in a subprocess (signals and stdin need a real process)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aioduct.testing.origin import OriginProcess

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def origin() -> Iterator[OriginProcess]:
    """The demo origin listening on four ports: four distinct origins."""
    with OriginProcess(ports=4) as server:
        yield server


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str


def env(**extra: str) -> dict[str, str]:
    environ = dict(os.environ)
    environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), environ.get("PYTHONPATH")) if p)
    environ.update(extra)
    return environ


def aioduct(*args: str, stdin: str | None = None, cwd: Path | None = None, **extra: str) -> Ran:
    """Run ``python -m aioduct.cli ARGS`` to completion.

    A run that outlives 50 s is sent SIGABRT, which ``-X faulthandler`` turns into every
    thread's stack on stderr: a hang fails with where it hung, not just "timeout".
    """
    proc = subprocess.Popen(
        [sys.executable, "-X", "faulthandler", "-m", "aioduct.cli", *args],
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(**extra),
        cwd=cwd,
    )
    try:
        out, err = proc.communicate(stdin, timeout=50)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        out, err = proc.communicate(timeout=10)
        raise AssertionError(
            f"aioduct {' '.join(args)} hung for 50 s; its stacks:\n{err[-6000:]}\n{out[-2000:]}"
        ) from None
    return Ran(proc.returncode, out, err)


def start(*args: str, cwd: Path | None = None, **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "aioduct.cli", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(**extra),
        cwd=cwd,
    )


def results(path: Path) -> list[dict[str, Any]]:
    """Every line of a crawl output, decoded (a partial line fails the test)."""
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def write_urls(path: Path, urls: list[str]) -> Path:
    path.write_text("".join(url + "\n" for url in urls))
    return path
