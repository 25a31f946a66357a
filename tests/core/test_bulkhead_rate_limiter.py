"""Bulkhead and rate limiter stages on a manual clock."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import ok

from resilience.core import CallNotPermitted, ManualClock


def test_bulkhead_rejects_when_full(make_pipeline: Any, recorder: Any) -> None:
    pipeline = make_pipeline({"bulkhead": {"max_concurrent_calls": 2}})
    first, second = pipeline.guard(), pipeline.guard()
    first.__enter__()
    second.__enter__()
    reached = []
    result = pipeline.execute(lambda: reached.append(1))
    assert result.outcome == "rejected"
    assert result.rejected_by == "bulkhead"
    assert reached == []
    snapshot = pipeline.bulkhead.snapshot()
    assert snapshot["in_use"] == 2
    assert snapshot["rejected"] == 1
    assert snapshot["max_concurrent_calls"] == 2
    assert "bulkhead.rejected" in recorder.event_names()
    second.__exit__(None, None, None)
    first.__exit__(None, None, None)
    assert pipeline.bulkhead.snapshot()["in_use"] == 0
    assert pipeline.execute(ok).outcome == "succeeded"


def test_bulkhead_waits_for_lease_expiry(
    make_pipeline: Any, clock: ManualClock, recorder: Any
) -> None:
    pipeline = make_pipeline(
        {
            "bulkhead": {
                "max_concurrent_calls": 1,
                "max_wait_duration": 2.0,
                "permit_lease_duration": 1.5,
            }
        }
    )
    holder = pipeline.guard()
    holder.__enter__()
    start = clock.now()
    # The holder never returns; its lease expires 1.5 s later, within the
    # 2 s wait, and the waiting call gets the permit.
    assert pipeline.call(ok) == "ok"
    assert 1.5 <= clock.now() - start <= 1.52
    assert "bulkhead.waited" in recorder.event_names()


def test_bulkhead_wait_gives_up(make_pipeline: Any, clock: ManualClock) -> None:
    pipeline = make_pipeline(
        {"bulkhead": {"max_concurrent_calls": 1, "max_wait_duration": 0.5}}
    )
    holder = pipeline.guard()
    holder.__enter__()
    start = clock.now()
    with pytest.raises(CallNotPermitted) as raised:
        pipeline.call(ok)
    assert raised.value.stage == "bulkhead"
    assert clock.now() - start == pytest.approx(0.5)
    snapshot = pipeline.bulkhead.snapshot()
    assert snapshot["waiting"] == 0
    assert snapshot["rejected"] == 1
    holder.__exit__(None, None, None)


def test_breaker_rejection_frees_bulkhead(make_pipeline: Any) -> None:
    pipeline = make_pipeline(
        {"bulkhead": {"max_concurrent_calls": 1}, "circuit_breaker": {}}
    )
    pipeline.breaker.force_open()
    assert pipeline.execute(ok).rejected_by == "circuit_breaker"
    assert pipeline.bulkhead.snapshot()["in_use"] == 0


def test_rejected_calls_consume_no_rate_permit(make_pipeline: Any) -> None:
    pipeline = make_pipeline(
        {"rate_limiter": {"limit_for_period": 3}, "circuit_breaker": {}}
    )
    pipeline.breaker.force_open()
    pipeline.execute(ok)
    assert pipeline.rate_limiter.snapshot()["available_permits"] == 3


def test_rate_limit_per_period(make_pipeline: Any, clock: ManualClock) -> None:
    pipeline = make_pipeline(
        {"rate_limiter": {"limit_for_period": 3, "limit_refresh_period": 1.0}}
    )
    outcomes = [pipeline.execute(ok).outcome for _ in range(4)]
    assert outcomes == ["succeeded"] * 3 + ["rejected"]
    snapshot = pipeline.rate_limiter.snapshot()
    assert snapshot["available_permits"] == 0
    assert snapshot["rejected"] == 1
    clock.advance(0.999999)
    assert pipeline.execute(ok).outcome == "rejected"
    clock.advance(0.000001)
    assert pipeline.execute(ok).outcome == "succeeded"


def test_no_double_burst_across_edge(make_pipeline: Any, clock: ManualClock) -> None:
    pipeline = make_pipeline(
        {"rate_limiter": {"limit_for_period": 10, "limit_refresh_period": 1.0}}
    )
    clock.set(5_000_000.9)
    first = [pipeline.execute(ok).outcome for _ in range(10)]
    assert first == ["succeeded"] * 10
    # A fixed window would reset at 5_000_001.0 and admit 10 more here.
    clock.set(5_000_001.1)
    assert pipeline.execute(ok).outcome == "rejected"
    clock.set(5_000_001.9)
    admitted = [pipeline.execute(ok).outcome for _ in range(11)]
    assert admitted.count("succeeded") == 10


def test_cost_above_limit_consumes_nothing(make_pipeline: Any) -> None:
    pipeline = make_pipeline({"rate_limiter": {"limit_for_period": 5}})
    with pytest.raises(CallNotPermitted) as raised, pipeline.guard(cost=6):
        pass
    assert raised.value.stage == "rate_limiter"
    assert pipeline.rate_limiter.snapshot()["available_permits"] == 5
    with pipeline.guard(cost=5):
        pass
    assert pipeline.rate_limiter.snapshot()["available_permits"] == 0


def test_rate_limiter_waits_exact_time(
    make_pipeline: Any, clock: ManualClock, recorder: Any
) -> None:
    pipeline = make_pipeline(
        {
            "rate_limiter": {
                "limit_for_period": 2,
                "limit_refresh_period": 1.0,
                "timeout_duration": 1.0,
            }
        }
    )
    pipeline.call(ok)
    clock.advance(0.25)
    pipeline.call(ok)
    start = clock.now()
    assert pipeline.call(ok) == "ok"
    # The first permit leaves the window 0.75 s later.
    assert clock.now() - start == pytest.approx(0.75)
    assert "rate_limiter.waited" in recorder.event_names()


def test_rate_limiter_rejects_long_wait(make_pipeline: Any, clock: ManualClock) -> None:
    pipeline = make_pipeline(
        {"rate_limiter": {"limit_for_period": 1, "timeout_duration": 0.5}}
    )
    pipeline.call(ok)
    start = clock.now()
    with pytest.raises(CallNotPermitted):
        pipeline.call(ok)
    # A wait longer than the timeout is rejected at once, without sleeping.
    assert clock.now() == start
