"""Run the scenario × client matrix against one nginx, one fresh subprocess per pair.

One server for the whole run keeps its state identical for every client; a fresh interpreter
per pair keeps clients from sharing imports, pools, threads or a warmed allocator. With two or
more CPUs, nginx is pinned to one CPU and every client subprocess to another, so the client's
CPU time is its own and the server never competes with it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gzip
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from aioduct.testing.caddy import CADDY_MISSING_REASON, Caddy, caddy_binary
from aioduct.testing.nginx import ExtraServer, Nginx, TLSMaterial, locations_config
from aioduct.testing.proxies import ProxyProcess
from benches import report
from benches.clients import CLIENTS, DEFAULT_CLIENTS
from benches.scenarios import (
    BIG_FILE_PATH,
    BIG_FILE_SIZE,
    GZIP_STATIC_PATH,
    SCENARIOS,
    Origins,
    Scenario,
    Target,
    Transport,
    reference_target,
)
from benches.streams import sse_location, upload_locations, write_pattern
from benches.worker import RESULT_PREFIX

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: Extra nginx origins per transport serving the standard locations, for clients that
#: shard by origin.
MIRRORS = 16
#: Protocols of the TLS origins: 1.3 only, the version a current client negotiates.
TLS_PROTOCOLS = "TLSv1.3"
#: The vocabulary of the gzip scenario's JSON.
_WORDS = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
    "november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee "
    "zulu crawler index fetch parse queue robots sitemap canonical archive mirror"
)
#: The scenario of the scaling run.
SCALING_SCENARIO = "concurrent_50"


@dataclass
class Options:
    scenarios: Sequence[str] = tuple(SCENARIOS)
    clients: Sequence[str] = DEFAULT_CLIENTS
    duration: float = 2.0
    warmup: float = 0.3
    repeat: int = 1  # runs per pair, interleaved across clients; the median run is reported
    pin: bool = True
    json_path: Path | None = None  # None: do not write JSON (programmatic use)
    out: TextIO | None = None  # where tables go; None: sys.stdout


@dataclass
class PairResult:
    """One (scenario, client) measurement as the report and the JSON see it."""

    scenario: str
    client: str
    status: str  # "ok" | "n/a" | "error"
    reason: str = ""
    requests: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    errors: int = 0
    first_error: str | None = None
    detail: str = ""
    process_s: float = 0.0  # whole subprocess, imports and setup included
    samples_rps: list[float] = field(default_factory=list)  # every run when --repeat > 1
    other_load: float | None = None  # CPUs used by other processes meanwhile (LoadMeter)
    extra_cpu_s: float = 0.0  # of cpu_s, the client's own child processes (local workers)
    sys_cpu_s: float = 0.0  # of cpu_s, the kernel's part (system time)

    @property
    def valid(self) -> bool:
        """Only error-free measurements count: a fast wrong answer is not a result."""
        return self.status == "ok" and self.errors == 0 and self.requests > 0

    @property
    def rps(self) -> float:
        return self.requests / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def cpu_us(self) -> float:
        return self.cpu_s / self.requests * 1e6 if self.requests else 0.0

    @property
    def sys_cpu_us(self) -> float:
        """Kernel (system) CPU µs per request, of :attr:`cpu_us`."""
        return self.sys_cpu_s / self.requests * 1e6 if self.requests else 0.0

    @property
    def extra_cpu_us(self) -> float:
        """CPU µs per request of the client's child processes (a local engine's workers)."""
        return self.extra_cpu_s / self.requests * 1e6 if self.requests else 0.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["rps"] = round(self.rps, 1)
        data["cpu_us_per_req"] = round(self.cpu_us, 2)
        data["valid"] = self.valid
        return data


@dataclass
class Report:
    meta: dict[str, Any]
    results: list[PairResult] = field(default_factory=list)

    def get(self, scenario: str, client: str) -> PairResult | None:
        for r in self.results:
            if r.scenario == scenario and r.client == client:
                return r
        return None

    def to_json(self) -> dict[str, Any]:
        return {"meta": self.meta, "results": [r.to_json() for r in self.results]}


def _process_tree(root: int) -> list[int]:
    """The pid and its descendants (nginx master + workers), read from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    tree, frontier = [root], [root]
    while frontier:
        children = [pid for pid, ppid in parents.items() if ppid in frontier]
        tree += children
        frontier = children
    return tree


class LoadMeter:
    """CPU time used by *other* processes while one pair ran, in CPUs (0.5 = half a core).

    Machine-wide busy time (/proc/stat, steal included) minus the client subprocess
    (RUSAGE_CHILDREN), nginx and this runner. On a shared machine or a noisy VM host this
    is the noise in the numbers, so it is printed beside them instead of being guessed at.
    """

    def __init__(self, nginx_pids: list[int]) -> None:
        self._nginx = nginx_pids
        self._tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._mark: tuple[float, float, float, float] | None = None

    def _machine_busy(self) -> float:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
        return (user + nice + system + irq + softirq + steal) / self._tick

    def _nginx_busy(self) -> float:
        ticks = 0
        for pid in self._nginx:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            ticks += int(stat[11]) + int(stat[12])  # utime, stime
        return ticks / self._tick

    @staticmethod
    def _ours() -> float:
        me = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

    def start(self) -> None:
        try:
            self._mark = (
                time.perf_counter(),
                self._machine_busy(),
                self._nginx_busy(),
                self._ours(),
            )
        except OSError:  # no /proc: not Linux
            self._mark = None

    def stop(self) -> float | None:
        if self._mark is None:
            return None
        wall, machine, nginx, ours = self._mark
        try:
            other = (self._machine_busy() - machine) - (self._nginx_busy() - nginx)
        except OSError:
            return None
        other -= self._ours() - ours
        return max(0.0, other / max(time.perf_counter() - wall, 1e-9))


def choose_cpus(pin: bool) -> tuple[int | None, int | None, str]:
    """(client CPU, server CPU, description); no pinning below two usable CPUs."""
    if not pin:
        return None, None, "off (--no-pin)"
    if not hasattr(os, "sched_setaffinity"):
        return None, None, "off (no sched_setaffinity on this OS)"
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None, "off (fewer than two usable CPUs)"
    client, server = cpus[0], cpus[1]
    return (
        client,
        server,
        f"client subprocess on CPU {client} (all its threads, e.g. pyreqwest's tokio runtime), "
        f"nginx (master + 1 worker) on CPU {server}",
    )


def free_cpus(server_cpu: int | None) -> list[int]:
    """Every CPU this process may use except nginx's."""
    if not hasattr(os, "sched_getaffinity"):
        return []
    return [c for c in sorted(os.sched_getaffinity(0)) if c != server_cpu]


def client_cpus(client: str, client_cpu: int | None, server_cpu: int | None) -> list[int] | None:
    """The CPUs a client subprocess is pinned to (None: not pinned)."""
    if client_cpu is None:
        return None
    if CLIENTS[client].cpus == "free":
        return free_cpus(server_cpu) or [client_cpu]
    return [client_cpu]


def run_pair(
    target: Target,
    client: str,
    opts: Options,
    cpus: list[int] | None,
    meter: LoadMeter,
    *,
    workers: int | None = None,
) -> PairResult:
    spec = {
        "client": client,
        "target": target.to_json(),
        "warmup": opts.warmup,
        "duration": opts.duration,
        "cpus": cpus,
        "workers": workers,
    }
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    started = time.perf_counter()
    meter.start()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "benches.worker", json.dumps(spec)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=opts.warmup + opts.duration + target.min_warmup + target.min_duration + 60,
        )
    except subprocess.TimeoutExpired:
        return PairResult(target.scenario, client, "error", reason="worker timed out")
    elapsed = time.perf_counter() - started
    other_load = meter.stop()
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    if not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return PairResult(
            target.scenario, client, "error", reason=f"worker exit {proc.returncode}: {tail}"
        )
    data = json.loads(lines[-1][len(RESULT_PREFIX) :])
    known = {k: v for k, v in data.items() if k in PairResult.__dataclass_fields__}
    return PairResult(
        scenario=target.scenario,
        client=client,
        process_s=elapsed,
        other_load=other_load,
        **known,
    )


def _median(runs: list[PairResult]) -> PairResult:
    """The median run by req/s; any failed run wins, so an error is never averaged away."""
    bad = [r for r in runs if not r.valid]
    chosen = bad[0] if bad else sorted(runs, key=lambda r: r.rps)[len(runs) // 2]
    chosen.samples_rps = [round(r.rps, 1) for r in runs]
    return chosen


def run(opts: Options) -> Report:
    """Run the whole matrix; print tables as scenarios complete; return (and save) the report."""
    out = opts.out or sys.stdout
    unknown = _unknown(opts.scenarios, opts.clients)
    if unknown:
        raise ValueError(unknown)
    client_cpu, server_cpu, pinning = choose_cpus(opts.pin)
    meta = report.machine_info(opts.clients)
    meta.update(
        pinning=pinning,
        duration_s=opts.duration,
        warmup_s=opts.warmup,
        repeat=opts.repeat,
        clients={c: CLIENTS[c].config for c in opts.clients},
        started=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    rep = Report(meta)
    report.print_header(rep.meta, out)
    started = time.perf_counter()
    big_file = any(SCENARIOS[name].path == BIG_FILE_PATH for name in opts.scenarios)
    with bench_nginx(server_cpu, big_file=big_file) as (origins, meter):
        for name in opts.scenarios:
            scenario: Scenario = SCENARIOS[name]
            if scenario.transport not in origins.urls:
                print(f"{name}: skipped, {CADDY_MISSING_REASON}\n", file=out)
                continue
            target = reference_target(scenario, origins)
            runs: dict[str, list[PairResult]] = {c: [] for c in opts.clients}
            for _ in range(opts.repeat):  # interleaved, so slow drift hits every client alike
                for client in opts.clients:
                    cpus = client_cpus(client, client_cpu, server_cpu)
                    runs[client].append(run_pair(target, client, opts, cpus, meter))
            rep.results += [_median(runs[c]) for c in opts.clients]
            window = max(opts.duration, scenario.min_duration)
            report.print_scenario(rep, scenario, opts.clients, window, out)
    rep.meta["total_s"] = round(time.perf_counter() - started, 1)
    report.print_summary(rep, opts.scenarios, opts.clients, out)
    if opts.json_path is not None:
        opts.json_path.parent.mkdir(parents=True, exist_ok=True)
        opts.json_path.write_text(json.dumps(rep.to_json(), indent=1) + "\n")
        print(f"\nJSON: {opts.json_path}", file=out)
    return rep


def static_json() -> bytes:
    """About 64 KiB of API-like JSON for the gzip scenario (deterministic).

    Records with repeated keys, ids, names, dates, tags and short sentences: it compresses
    about as well as real JSON does, unlike the repetitive or random test bodies.
    """
    rng = random.Random(2026)
    words = _WORDS.split()
    items: list[dict[str, object]] = []
    size = 0
    while size < 64 * 1024:
        n = len(items)
        item = {
            "id": 100000 + n * 7 + rng.randrange(7),
            "name": " ".join(rng.choices(words, k=2)).title(),
            "email": f"{rng.choice(words)}.{rng.choice(words)}{rng.randrange(100)}@example.com",
            "created": f"2026-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}T"
            f"{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}Z",
            "active": rng.random() < 0.8,
            "score": round(rng.uniform(0, 100), 2),
            "tags": rng.sample(words, k=rng.randrange(1, 5)),
            "summary": " ".join(rng.choices(words, k=rng.randrange(6, 18))).capitalize() + ".",
        }
        items.append(item)
        size += len(json.dumps(item)) + 2
    return json.dumps({"items": items, "count": len(items)}).encode()


def _write_static(static: Path) -> str:
    """The gzip scenario's file and its ``.gz``; returns the nginx location serving them.

    ``gzip_static on`` sends the ``.gz`` file as is to clients that accept gzip (and the
    plain file to the others); ``gzip off`` makes sure nginx never compresses per request.
    """
    static.mkdir(parents=True, exist_ok=True)
    data = static_json()
    plain = static / "data.json"
    plain.write_bytes(data)
    (static / "data.json.gz").write_bytes(gzip.compress(data, compresslevel=6, mtime=0))
    return (
        f"location = {GZIP_STATIC_PATH} {{ gzip_static on; gzip off; types {{ }} "
        f'default_type application/json; alias "{plain}"; }}'
    )


@contextlib.contextmanager
def bench_nginx(
    server_cpu: int | None, *, big_file: bool = False
) -> Iterator[tuple[Origins, LoadMeter]]:
    """nginx (1 worker, no access log, pinned to ``server_cpu``) with every bench origin.

    One origin per transport serves the standard locations plus the gzip scenario's file:
    plain HTTP/1.1 and h2c (nginx's own), https with HTTP/1.1 only and https with ALPN h2
    (TLS 1.3 only, certificate from a throwaway CA, session tickets and cache as nginx's
    defaults; the h2 one answers 505 to anything but HTTP/2, so a client that fell back
    to HTTP/1.1 shows as errors). Each transport has MIRRORS more origins on other ports,
    so a client that shards by origin can use its workers; the others use the first one.
    With ``big_file`` the download scenarios' 100 MB file is written into the temporary
    directory first (made at bench time, removed with it).
    """
    workdir = Path(tempfile.mkdtemp(prefix="aioduct-bench-nginx-"))
    files = workdir / "files"  # where Nginx writes the standard locations' files
    tls = TLSMaterial.create(workdir / "tls")
    static = _write_static(workdir / "static")
    static += f"\n        {sse_location(workdir / 'static')}"  # the sse_100 event stream
    static += f"\n        {upload_locations()}"  # the multipart and upload scenarios
    if big_file:
        (files / "bytes").mkdir(parents=True, exist_ok=True)
        write_pattern(files / "bytes" / BIG_FILE_PATH.rpartition("/")[2], BIG_FILE_SIZE)
    body = (
        "server_name localhost;\n"
        + locations_config(files, "http://127.0.0.1:9")
        + f"\n        {static}"
    )
    h2_only = 'if ($server_protocol != "HTTP/2.0") { return 505; }\n' + body
    kinds: dict[Transport, ExtraServer] = {
        "http": ExtraServer(body),
        "h2c": ExtraServer(body, http2=True),
        "https": ExtraServer(body, tls=tls.files, tls_protocols=TLS_PROTOCOLS),
        "https_h2": ExtraServer(h2_only, tls=tls.files, tls_protocols=TLS_PROTOCOLS, http2=True),
    }
    servers = {
        f"{kind}-mirror{i}": server for kind, server in kinds.items() for i in range(MIRRORS)
    }
    servers["https"], servers["https_h2"] = kinds["https"], kinds["https_h2"]
    try:
        with (
            Nginx(
                workdir,
                access_log=False,
                worker_processes=1,
                extra_servers=servers,
                extra_locations=f"        {static}",
            ) as nginx,
            contextlib.ExitStack() as stack,
        ):
            nginx_pids = _process_tree(nginx.pid)
            urls: dict[Transport, str] = {
                "http": nginx.http_url,
                "h2c": nginx.h2c_url,
                "https": nginx.extra_urls["https"],
                "https_h2": nginx.extra_urls["https_h2"],
            }
            if caddy_binary() is not None:
                # The HTTP/3 scenarios (and their h2 baseline) need a native QUIC server.
                caddy = stack.enter_context(Caddy(workdir / "caddy", tls.files))
                nginx_pids += _process_tree(caddy.pid)
                urls["h3"] = urls["caddy_h2"] = caddy.url
            proxies = stack.enter_context(_bench_proxies())
            for proxy in proxies.values():
                nginx_pids += _process_tree(proxy.pid)  # server side: pinned and metered
            if server_cpu is not None:
                for pid in nginx_pids:
                    os.sched_setaffinity(pid, {server_cpu})
            origins = Origins(
                urls=urls,
                mirrors={
                    kind: tuple(nginx.extra_urls[f"{kind}-mirror{i}"] for i in range(MIRRORS))
                    for kind in kinds
                },
                ca_file=tls.ca_pem_path,
                proxies={kind: proxy.url for kind, proxy in proxies.items()},
            )
            yield origins, LoadMeter(nginx_pids)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def _bench_proxies() -> Iterator[dict[str, ProxyProcess]]:
    """tinyproxy and microsocks for the proxy scenarios, where installed (else those
    scenarios say what to install)."""
    from aioduct.testing.proxies import MicroSocks, TinyProxy, missing_proxy_binaries

    missing = missing_proxy_binaries()
    with contextlib.ExitStack() as stack:
        proxies: dict[str, ProxyProcess] = {}
        if "tinyproxy" not in missing:
            proxies["http"] = stack.enter_context(TinyProxy())
        if "microsocks" not in missing:
            proxies["socks5"] = stack.enter_context(MicroSocks())
        yield proxies


def run_scaling(opts: Options, workers: Sequence[int]) -> list[PairResult]:
    """The local engine with 1, 2, ... N workers on the 50-concurrent small GET.

    Efficiency is req/s over ``k x`` the 1-worker req/s: 1.0 is perfect scaling. nginx
    stays on its own CPU; the client may use every CPU (each worker pins itself to one),
    so beyond the CPUs free of nginx the workers share a core with it.
    """
    out = opts.out or sys.stdout
    _, server_cpu, _ = choose_cpus(opts.pin)
    free = free_cpus(server_cpu)
    scenario = SCENARIOS[SCALING_SCENARIO]
    where = f"nginx on CPU {server_cpu}" if server_cpu is not None else "nginx not pinned"
    print(
        f"scaling  aioduct-local with {', '.join(map(str, workers))} workers on "
        f"{scenario.name} ({scenario.title}), {opts.duration:g} s each\n"
        f"pinning  {where}; each engine worker pins itself to one CPU; "
        f"CPUs free of nginx: {len(free) or '?'}\n",
        file=out,
    )
    results: list[PairResult] = []
    with bench_nginx(server_cpu) as (origins, meter):
        target = reference_target(scenario, origins)
        for count in workers:
            runs = [
                run_pair(target, "aioduct-local-1", opts, None, meter, workers=count)
                for _ in range(opts.repeat)
            ]
            results.append(_median(runs))
        from benches.clients.aioduct_local_client import own_cost

        own = own_cost(target) or 0.0
    base = results[0].rps / workers[0] if results and results[0].valid else 0.0
    print(
        f"{'workers':>7}  {'req/s':>9}  {'CPU µs/req':>10}  {'worker µs':>9}  "
        f"{'parent µs':>9}  {'engine µs':>9}  {'ceiling':>7}  {'efficiency':>10}  other",
        file=out,
    )
    for count, r in zip(workers, results, strict=True):
        if not r.valid:
            print(f"{count:>7}  {'error':>9}  {r.reason or r.first_error}", file=out)
            continue
        eff = r.rps / (count * base) if base else 0.0
        note = "" if not free or count <= len(free) else "  (shares a CPU with nginx)"
        worker_us = r.extra_cpu_us  # all the workers' CPU, per request
        parent_us = r.cpu_us - r.extra_cpu_us
        engine_us = parent_us - own
        ceiling = worker_us / engine_us if engine_us > 0 else float("inf")
        print(
            f"{count:>7}  {r.rps:>9,.0f}  {r.cpu_us:>10.1f}  {worker_us:>9.1f}  "
            f"{parent_us:>9.2f}  {engine_us:>9.2f}  {ceiling:>7.1f}  {eff:>10.2f}  "
            f"{_load_text(r.other_load)}{note}",
            file=out,
        )
    print(
        "\nworker µs: the workers' CPU per request; parent µs: the parent's CPU per result, "
        "map()'s caller\nincluded (the bench's job generator and per-result check: "
        f"{own:.2f} µs, measured on a canned\nResult with warm caches); engine µs: parent "
        "µs without it; ceiling: worker µs / engine µs,\nthe workers one parent can keep "
        "busy.",
        file=out,
    )
    return results


def _load_text(load: float | None) -> str:
    return "?" if load is None else f"{load:.2f}"


def _unknown(scenarios: Sequence[str], clients: Sequence[str]) -> str:
    names = [s for s in scenarios if s not in SCENARIOS]
    names += [c for c in clients if c not in CLIENTS]
    return f"unknown scenario/client: {', '.join(names)} (see --list)" if names else ""


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benches",
        description="aioduct vs peer HTTP clients against nginx on loopback.",
    )
    parser.add_argument("--scenarios", type=_csv, default=list(SCENARIOS), metavar="A,B")
    parser.add_argument("--clients", type=_csv, default=list(DEFAULT_CLIENTS), metavar="X,Y")
    parser.add_argument("--duration", type=float, default=None, help="timed seconds (2.0)")
    parser.add_argument("--warmup", type=float, default=None, help="warm-up seconds (0.3)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per pair; median shown")
    parser.add_argument("--quick", action="store_true", help="0.5 s timed, 0.2 s warm-up")
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="no CPU pinning")
    parser.add_argument("--json", type=Path, default=None, help="output (benches/results/…)")
    parser.add_argument("--list", action="store_true", help="list scenarios and clients")
    parser.add_argument(
        "--scaling",
        nargs="?",
        const="",
        metavar="1,2,4",
        help=f"local engine scaling run on {SCALING_SCENARIO}: these worker counts "
        "(default 1..CPUs)",
    )
    args = parser.parse_args(argv)
    if args.list:
        for s in SCENARIOS.values():
            print(f"scenario  {s.name:16} {s.title}")
        for c in CLIENTS.values():
            star = "*" if c.name in DEFAULT_CLIENTS else " "
            print(f"client {star} {c.name:16} {c.config}")
        return 0
    duration = args.duration if args.duration is not None else (0.5 if args.quick else 2.0)
    warmup = args.warmup if args.warmup is not None else (0.2 if args.quick else 0.3)
    if args.scaling is not None:
        try:
            counts = [int(n) for n in _csv(args.scaling)] or list(range(1, _cpu_count() + 1))
        except ValueError:
            parser.error(f"--scaling takes worker counts like 1,2,4, not {args.scaling!r}")
        if min(counts) < 1:
            parser.error("--scaling worker counts must be at least 1")
        opts = Options(duration=duration, warmup=warmup, repeat=max(1, args.repeat), pin=args.pin)
        results = run_scaling(opts, counts)
        return 0 if all(r.valid for r in results) else 1
    unknown = _unknown(args.scenarios, args.clients)
    if unknown:
        parser.error(unknown)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run(
        Options(
            scenarios=args.scenarios,
            clients=args.clients,
            duration=duration,
            warmup=warmup,
            repeat=max(1, args.repeat),
            pin=args.pin,
            json_path=args.json or RESULTS_DIR / f"{stamp}.json",
        )
    )
    return 0
