"""Cluster-wide limits, checked with 8 worker processes against one Redis."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from typing import Any

import redis
from conftest import REDIS_URL

from resilience.core import (
    CallNotPermitted,
    ManualClock,
    Pipeline,
    PolicyConfig,
)

PROCESSES = 8
CONTEXT = multiprocessing.get_context("fork")


def _pipeline(
    prefix: str, policy: dict[str, Any], clock: ManualClock | None
) -> Pipeline:
    client = redis.Redis.from_url(REDIS_URL)
    return Pipeline(
        "shared", PolicyConfig.from_dict(policy), client, clock=clock, key_prefix=prefix
    )


def _run_workers(target: Any, args: tuple[Any, ...]) -> None:
    workers = [CONTEXT.Process(target=target, args=args) for _ in range(PROCESSES)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0


def _count_admissions(
    prefix: str, policy: dict[str, Any], now: float, calls: int
) -> None:
    pipeline = _pipeline(prefix, policy, ManualClock(now))
    counter = f"{prefix}:admitted"
    for _ in range(calls):
        result = pipeline.execute(lambda: pipeline.redis.incr(counter))
        assert result.outcome in ("succeeded", "rejected")


def test_half_open_budget_cluster_wide(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    policy = {
        "circuit_breaker": {
            "sliding_window_size": 1,
            "minimum_number_of_calls": 1,
            "permitted_number_of_calls_in_half_open_state": 5,
            "wait_duration_in_open_state": 10.0,
        }
    }
    setup = _pipeline(key_prefix, policy, ManualClock(1000.0))
    setup.breaker.transition_to_open()
    # Every worker arrives after the wait; the probes never return, so
    # admissions are limited by the half-open budget alone.
    _run_workers(_probe_without_result, (key_prefix, policy, 1011.0, 20))
    assert int(redis_client.get(f"{key_prefix}:admitted") or 0) == 5
    snapshot = setup.breaker.snapshot()
    assert snapshot["state"] == "half_open"
    assert snapshot["not_permitted_calls"] == PROCESSES * 20 - 5


def _probe_without_result(
    prefix: str, policy: dict[str, Any], now: float, calls: int
) -> None:
    pipeline = _pipeline(prefix, policy, ManualClock(now))
    for _ in range(calls):
        guard = pipeline.guard()
        try:
            guard.__enter__()
        except CallNotPermitted:
            continue
        pipeline.redis.incr(f"{prefix}:admitted")


def test_rate_limit_exact_in_one_period(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    policy = {"rate_limiter": {"limit_for_period": 37, "limit_refresh_period": 1.0}}
    # The clock is frozen, so the period never rolls over during the test.
    _run_workers(_count_admissions, (key_prefix, policy, 5000.0, 25))
    assert int(redis_client.get(f"{key_prefix}:admitted") or 0) == 37
    snapshot = _pipeline(
        key_prefix, policy, ManualClock(5000.0)
    ).rate_limiter.snapshot()
    assert snapshot["rejected"] == PROCESSES * 25 - 37


def _hold_bulkhead(prefix: str, policy: dict[str, Any], calls: int) -> None:
    pipeline = _pipeline(prefix, policy, None)
    inside, peak = f"{prefix}:inside", f"{prefix}:peak"

    def work() -> None:
        now_inside = pipeline.redis.incr(inside)
        # Record the peak with a Lua max so concurrent updates cannot lose it.
        pipeline.redis.eval(
            "if tonumber(redis.call('GET', KEYS[1]) or 0) < tonumber(ARGV[1]) then "
            "redis.call('SET', KEYS[1], ARGV[1]) end",
            1,
            peak,
            now_inside,
        )
        time.sleep(0.005)
        pipeline.redis.decr(inside)

    for _ in range(calls):
        pipeline.execute(work)


def test_bulkhead_limit_cluster_wide(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    policy = {"bulkhead": {"max_concurrent_calls": 3, "max_wait_duration": 2.0}}
    _run_workers(_hold_bulkhead, (key_prefix, policy, 15))
    peak = int(redis_client.get(f"{key_prefix}:peak") or 0)
    assert peak <= 3
    assert peak == 3
    assert int(redis_client.get(f"{key_prefix}:inside") or 0) == 0


def _hold_forever(prefix: str, policy: dict[str, Any]) -> None:
    pipeline = _pipeline(prefix, policy, None)
    with pipeline.guard():
        pipeline.redis.set(f"{prefix}:holding", os.getpid())
        time.sleep(60)


def test_killed_holder_frees_permit(redis_client: redis.Redis, key_prefix: str) -> None:
    policy = {"bulkhead": {"max_concurrent_calls": 1, "permit_lease_duration": 1.0}}
    holder = CONTEXT.Process(target=_hold_forever, args=(key_prefix, policy))
    holder.start()
    deadline = time.monotonic() + 10
    while not redis_client.get(f"{key_prefix}:holding"):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(holder.pid or 0, signal.SIGKILL)
    holder.join()
    killed_at = time.monotonic()
    pipeline = _pipeline(key_prefix, policy, None)
    assert pipeline.execute(lambda: "x").rejected_by == "bulkhead"
    while pipeline.execute(lambda: "x").outcome != "succeeded":
        assert time.monotonic() - killed_at < 1.5
        time.sleep(0.02)
    assert pipeline.bulkhead.snapshot()["in_use"] == 0
