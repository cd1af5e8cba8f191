"""Smoke test of ``benches.callgrind_parent``'s stand-in workers, without valgrind: they
speak the current wire, so the parent measurement cannot silently measure a broken run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_parent_maps_every_job_through_stand_in_workers() -> None:
    for workers in ("1", "2"):
        child = ["-m", "benches.callgrind_parent", "--child", "3000", "--workers", workers]
        ran = subprocess.run(
            [sys.executable, *child],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert ran.returncode == 0, ran.stderr  # the child asserts one Result per job
