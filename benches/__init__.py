"""Throughput and CPU-cost benchmarks of aioduct beside its peers, against nginx on loopback.

Run ``python -m benches --help`` (or ``scripts/bench``). Not a test suite: nothing here is
timed under pytest except a smoke test of the runner itself.
"""
