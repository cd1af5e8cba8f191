"""The token bucket behind RateLimit and max_download_speed: pure, with a fake clock."""

from __future__ import annotations

import pytest

import aioduct
from aioduct.limits import BandwidthLayer, RateLimit, TokenBucket


def test_burst_goes_at_once_then_the_rate_holds() -> None:
    bucket = TokenBucket(interval=0.5, capacity=3)  # 2/s, bursts of 3
    assert [bucket.take(1, 0.0) for _ in range(5)] == [0.0, 0.0, 0.0, 0.5, 1.0]
    # after a quiet spell the bucket is full again, never fuller
    assert [bucket.take(1, 10.0) for _ in range(4)] == [10.0, 10.0, 10.0, 10.5]


def test_keys_have_their_own_buckets_and_idle_ones_are_forgotten() -> None:
    bucket = TokenBucket(interval=1.0)
    assert bucket.take(1, 0.0, "a") == 0.0
    assert bucket.take(1, 0.0, "b") == 0.0
    assert bucket.take(1, 0.0, "a") == 1.0
    bucket.forget_idle(1.5)
    assert len(bucket) == 1  # "a" still owes until 2.0
    bucket.forget_idle(2.0)
    assert len(bucket) == 0


def test_a_cost_above_capacity_waits_for_a_full_bucket_then_overdraws() -> None:
    bucket = TokenBucket(interval=0.001, capacity=100)  # 1000 units/s
    assert bucket.take(250, 0.0) == 0.0
    assert bucket.take(100, 0.0) == pytest.approx(0.25)
    assert bucket.take(50, 0.0) == pytest.approx(0.30)


def test_bandwidth_pacing_of_a_megabyte_is_smooth() -> None:
    layer = BandwidthLayer(1_000_000)
    now, waits = 0.0, []
    for _ in range(0, 1 << 20, layer._piece):
        start = layer.reserve(layer._piece, now)
        waits.append(start - now)
        now = start
    # the whole megabyte takes its 1.05 s within 10%, in equal steps of 1/20 s
    assert now == pytest.approx((1 << 20) / 1_000_000, rel=0.1)
    assert max(waits) == pytest.approx(0.05) and waits[0] == 0.0


def test_rate_limit_values() -> None:
    limit = aioduct.RateLimit(10, per=60)
    assert limit.interval == 6.0 and limit.per_host and limit.burst is None
    assert aioduct.ClientConfig(rate_limit=5).rate_limit == RateLimit(5.0)
    bad_values: list[dict[str, float]] = [
        {"rate": 0},
        {"rate": float("inf")},
        {"rate": 1, "per": -1},
        {"rate": 1, "burst": 0},
    ]
    for bad in bad_values:
        with pytest.raises(ValueError):
            RateLimit(**bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="whole number"):
        RateLimit(1, burst=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="rate_limit must be"):
        aioduct.ClientConfig(rate_limit="fast")
    with pytest.raises(ValueError, match="max_download_speed"):
        aioduct.ClientConfig(max_download_speed=0)
