"""Machine header, per-scenario tables and the summary matrices, as plain text."""

from __future__ import annotations

import math
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import TYPE_CHECKING, Any, TextIO

from aioduct.testing.nginx import nginx_binary
from benches.clients import CLIENTS
from benches.scenarios import SCENARIOS, Scenario

if TYPE_CHECKING:
    from benches.runner import PairResult, Report

BASELINE = "aiohttp"
OURS = "aioduct-uvloop"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _nginx_version() -> str:
    binary = nginx_binary()
    if binary is None:
        return "not found"
    try:
        proc = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=5)
    except OSError:
        return "not found"
    return proc.stderr.strip().rpartition("/")[2] or "unknown"


def machine_info(clients: Sequence[str]) -> dict[str, Any]:
    """Everything needed to tell two runs apart: hardware, kernel, interpreter, versions."""
    dists = sorted({CLIENTS[c].dist for c in clients} | {"uvloop"})
    versions: dict[str, str] = {}
    for dist in dists:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return {
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "nginx": _nginx_version(),
        "versions": versions,
    }


def print_header(meta: dict[str, Any], out: TextIO) -> None:
    lines = [
        f"CPU      {meta['cpu']} ({meta['cpus']} CPUs)",
        f"kernel   {meta['kernel']}",
        f"python   {meta['python']}   nginx {meta['nginx']} (1 worker, no access log)",
        "versions " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        f"pinning  {meta['pinning']}",
        f"timing   {meta['warmup_s']} s warm-up, then {meta['duration_s']} s measured per pair"
        + (f", median of {meta['repeat']} interleaved runs" if meta["repeat"] > 1 else ""),
        "columns  CPU µs/req = user+sys of the whole client process (all its threads) in the"
        " measured window / requests (a local engine's workers included); of it sys = the"
        " kernel's part (sockets, TCP on loopback); other = CPUs busy with other processes"
        " meanwhile (noise)",
        "clients",
        *(f"  {name:16} {config}" for name, config in meta["clients"].items()),
    ]
    print("\n".join(lines) + "\n", file=out)
    out.flush()


def _load(load: float | None) -> str:
    return "?" if load is None else f"{load:.2f}"


def _spread(samples: list[float]) -> str:
    """(max - min) / median of the repeated runs: how far apart the runs of one pair were."""
    if len(samples) < 2:
        return ""
    ordered = sorted(samples)
    return f"±{(ordered[-1] - ordered[0]) / 2 / ordered[len(ordered) // 2] * 100:.0f}%"


def _ratio(value: float, base: PairResult | None) -> str:
    if base is None or not base.valid:
        return "—"
    return f"{value / base.rps:.2f}x"


def print_scenario(
    rep: Report, scenario: Scenario, clients: Sequence[str], duration: float, out: TextIO
) -> None:
    base, ours = rep.get(scenario.name, BASELINE), rep.get(scenario.name, OURS)
    # One request at a time: the wall time per request is each request's latency.
    sequential = scenario.concurrency == 1
    rows = [
        (
            "client",
            "req/s",
            "latency µs" if sequential else "",
            "CPU µs/req",
            "of it sys",
            f"vs {BASELINE}",
            f"vs {OURS}",
            "errors",
            "other",
            "",
        )
    ]
    if rep.meta.get("repeat", 1) > 1:
        rows[0] = (*rows[0][:-1], "spread")
    notes: list[str] = []
    for client in clients:
        r = rep.get(scenario.name, client)
        if r is None:
            continue
        if r.valid:
            rows.append(
                (
                    client,
                    f"{r.rps:,.0f}",
                    f"{1e6 / r.rps:,.0f}" if sequential else "",
                    f"{r.cpu_us:.1f}",
                    f"{r.sys_cpu_us:.1f}",
                    _ratio(r.rps, base),
                    _ratio(r.rps, ours),
                    str(r.errors),
                    _load(r.other_load),
                    _spread(r.samples_rps),
                )
            )
            continue
        label = "n/a" if r.status == "n/a" else "error"
        errors = str(r.errors) if r.errors else "—"
        rows.append((client, label, "", "—", "—", "—", "—", errors, _load(r.other_load), ""))
        notes.append(f"  {client}: {r.reason or r.first_error or 'no requests completed'}")
    if not sequential:
        rows = [row[:2] + row[3:] for row in rows]
    print(f"{scenario.name}  ({scenario.title}, {duration:g} s)", file=out)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        print("   ".join(cells).rstrip(), file=out)
    for note in notes:
        print(note, file=out)
    print(file=out)
    out.flush()


def _geomean(values: list[float]) -> float | None:
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def _matrix(
    rep: Report,
    scenarios: Sequence[str],
    clients: Sequence[str],
    title: str,
    cell: str,
    out: TextIO,
) -> None:
    widths = [max(len(c), 8) for c in clients]
    first = max([len(s) for s in scenarios] + [len(title), len(f"geomean vs {OURS}")])
    print(
        title.ljust(first) + "".join(f"  {c:>{w}}" for c, w in zip(clients, widths, strict=True)),
        file=out,
    )
    for s in scenarios:
        cells = []
        for c, w in zip(clients, widths, strict=True):
            r = rep.get(s, c)
            if r is None:
                text = ""
            elif not r.valid:
                text = "n/a" if r.status == "n/a" else "error"
            elif cell == "rps":
                text = f"{r.rps:,.0f}"
            else:
                text = f"{r.cpu_us:.1f}"
            cells.append(f"  {text:>{w}}")
        print(s.ljust(first) + "".join(cells), file=out)
    for base_name in (BASELINE, OURS):
        cells = []
        for c, w in zip(clients, widths, strict=True):
            ratios = []
            for s in scenarios:
                r, b = rep.get(s, c), rep.get(s, base_name)
                if r is not None and b is not None and r.valid and b.valid:
                    ratios.append(r.rps / b.rps if cell == "rps" else r.cpu_us / b.cpu_us)
            g = _geomean(ratios)
            cells.append(f"  {'' if g is None else f'{g:.2f}x':>{w}}")
        print(f"geomean vs {base_name}".ljust(first) + "".join(cells), file=out)
    print(file=out)


def _groups(scenarios: Sequence[str]) -> dict[str, list[str]]:
    """Scenarios by `Scenario.group`, in first-seen order: one pair of matrices each."""
    groups: dict[str, list[str]] = {}
    for name in scenarios:
        groups.setdefault(SCENARIOS[name].group, []).append(name)
    return groups


def _not_run(rep: Report, scenarios: Sequence[str], clients: Sequence[str]) -> list[str]:
    """One line per client and reason it did not run a scenario (n/a, not errors)."""
    reasons: dict[tuple[str, str], list[str]] = {}
    for s in scenarios:
        for c in clients:
            r = rep.get(s, c)
            if r is not None and r.status == "n/a":
                reasons.setdefault((c, r.reason), []).append(s)
    return [f"  n/a  {c} ({', '.join(ss)}): {reason}" for (c, reason), ss in reasons.items()]


def print_summary(
    rep: Report, scenarios: Sequence[str], clients: Sequence[str], out: TextIO
) -> None:
    print("=" * 30 + " summary " + "=" * 30, file=out)
    groups = _groups(scenarios)
    for group, names in groups.items():
        if len(groups) > 1:
            print(f"--- {group} ---", file=out)
        _matrix(rep, names, clients, "req/s", "rps", out)
        _matrix(rep, names, clients, "CPU µs/req", "cpu", out)
        notes = _not_run(rep, names, clients)
        if notes:
            print("\n".join(notes) + "\n", file=out)
    loads = [r.other_load for r in rep.results if r.other_load is not None]
    if loads:
        mean, worst = sum(loads) / len(loads), max(loads)
        print(
            f"other processes used {mean:.2f} CPUs on average during the runs "
            f"(worst pair {worst:.2f})"
            + ("  <- shared/busy machine: expect noise, use --repeat" if worst > 0.1 else ""),
            file=out,
        )
    print(f"total run time {rep.meta.get('total_s', 0):.0f} s", file=out)
    out.flush()
