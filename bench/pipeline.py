"""Overhead of one protected no-op call through the full resilience pipeline.

Run with `python -m bench.pipeline`; REDIS_URL selects the server (default
redis://127.0.0.1:6379/15). It prints `name: value` lines with the median
latency in microseconds of three cases and two ratios between them. The
cases are a bare PING, a no-op through the pipeline (rate limiter, bulkhead
and breaker enforced, state in Redis, Redis TIME as the clock), and the same
no-op through pybreaker with CircuitRedisStorage. The three are measured in
interleaved rounds on one client, so a slow phase of the machine affects them alike.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import uuid
from collections.abc import Callable

import pybreaker
import redis

from resilience.core import Pipeline, PolicyConfig

POLICY = {
    # Limits far above what one client reaches, so every stage runs its full
    # admission path without rejecting.
    "rate_limiter": {"limit_for_period": 100_000, "limit_refresh_period": 1.0},
    "bulkhead": {"max_concurrent_calls": 1000},
    "circuit_breaker": {},
}


def noop() -> None:
    return None


def sample(fn: Callable[[], object], count: int) -> list[int]:
    """Return the duration of each of `count` calls in nanoseconds."""
    durations = []
    clock = time.perf_counter_ns
    for _ in range(count):
        start = clock()
        fn()
        durations.append(clock() - start)
    return durations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="interleaved rounds")
    parser.add_argument("--calls", type=int, default=500, help="calls per round")
    options = parser.parse_args()

    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
    client = redis.Redis.from_url(url)
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    pipeline = Pipeline(
        "bench", PolicyConfig.from_dict(POLICY), client, key_prefix=prefix
    )
    storage = pybreaker.CircuitRedisStorage(
        pybreaker.STATE_CLOSED, client, namespace=f"{prefix}-pybreaker"
    )
    breaker = pybreaker.CircuitBreaker(state_storage=storage)

    cases: dict[str, Callable[[], object]] = {
        "ping": client.ping,
        "pipeline": lambda: pipeline.call(noop),
        "pybreaker_redis": lambda: breaker.call(noop),
    }
    samples: dict[str, list[int]] = {name: [] for name in cases}
    try:
        for fn in cases.values():
            sample(fn, options.calls)
        for _ in range(options.rounds):
            for name, fn in cases.items():
                samples[name] += sample(fn, options.calls)
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)

    medians = {
        name: statistics.median(values) / 1000 for name, values in samples.items()
    }
    print(f"python: {platform.python_version()}")
    print(f"redis_version: {client.info('server')['redis_version']}")
    print(f"calls_per_case: {options.rounds * options.calls}")
    for name, median in medians.items():
        print(f"{name}_median_us: {median:.1f}")
    print(f"pipeline_overhead_vs_ping: {medians['pipeline'] / medians['ping']:.2f}")
    ratio = medians["pipeline"] / medians["pybreaker_redis"]
    print(f"pipeline_overhead_vs_pybreaker_redis: {ratio:.2f}")


if __name__ == "__main__":
    main()
