"""Circuit breaker state machine, on a manual clock against real Redis."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import Boom, Response, boom, harmless, ok, run_calls, taking

from resilience.core import CallNotPermitted, ManualClock, Pipeline


def breaker(**fields: Any) -> dict[str, Any]:
    config = {
        "sliding_window_size": 10,
        "minimum_number_of_calls": 10,
        "wait_duration_in_open_state": 30.0,
        "permitted_number_of_calls_in_half_open_state": 3,
    }
    config.update(fields)
    return {"circuit_breaker": config}


def state(pipeline: Pipeline) -> str:
    return str(pipeline.breaker.snapshot()["state"])


def trip(pipeline: Pipeline, calls: int = 10) -> None:
    run_calls(pipeline, [boom] * calls)
    assert state(pipeline) == "open"


def test_failure_rate_at_threshold_trips(make_pipeline: Any) -> None:
    pipeline = make_pipeline(breaker(failure_rate_threshold=50))
    run_calls(pipeline, [ok] * 5 + [boom] * 4)
    assert state(pipeline) == "closed"
    run_calls(pipeline, [boom])
    snapshot = pipeline.breaker.snapshot()
    assert snapshot["state"] == "open"
    assert snapshot["failure_rate"] == 50.0


def test_failure_rate_under_threshold_stays_closed(make_pipeline: Any) -> None:
    pipeline = make_pipeline(breaker(failure_rate_threshold=50))
    run_calls(pipeline, [ok] * 6 + [boom] * 4)
    snapshot = pipeline.breaker.snapshot()
    assert snapshot["state"] == "closed"
    assert snapshot["failure_rate"] == 40.0


def test_fractional_threshold_boundary(make_pipeline: Any) -> None:
    # 1 failure in 3 calls is 33.33...%, just under 33.34 and over 33.33.
    under = make_pipeline(
        breaker(
            sliding_window_size=3,
            minimum_number_of_calls=3,
            failure_rate_threshold=33.34,
        ),
        target="under",
    )
    run_calls(under, [ok, ok, boom])
    assert state(under) == "closed"
    over = make_pipeline(
        breaker(
            sliding_window_size=3,
            minimum_number_of_calls=3,
            failure_rate_threshold=33.33,
        ),
        target="over",
    )
    run_calls(over, [ok, ok, boom])
    assert state(over) == "open"


def test_below_minimum_calls_nothing_trips(make_pipeline: Any) -> None:
    pipeline = make_pipeline(breaker(sliding_window_size=20, minimum_number_of_calls=5))
    run_calls(pipeline, [boom] * 4)
    snapshot = pipeline.breaker.snapshot()
    assert snapshot["state"] == "closed"
    assert snapshot["failure_rate"] is None
    assert snapshot["slow_call_rate"] is None
    assert snapshot["buffered_calls"] == 4
    run_calls(pipeline, [boom])
    assert state(pipeline) == "open"


def test_minimum_capped_at_count_window_size(make_pipeline: Any) -> None:
    pipeline = make_pipeline(
        breaker(sliding_window_size=4, minimum_number_of_calls=100)
    )
    run_calls(pipeline, [boom] * 4)
    assert state(pipeline) == "open"


def test_count_window_forgets_oldest_call(make_pipeline: Any) -> None:
    pipeline = make_pipeline(breaker(sliding_window_size=4, minimum_number_of_calls=4))
    run_calls(pipeline, [boom, ok, ok, ok, ok])
    snapshot = pipeline.breaker.snapshot()
    assert snapshot["buffered_calls"] == 4
    assert snapshot["failed_calls"] == 0


def test_slow_call_boundary(make_pipeline: Any, clock: ManualClock) -> None:
    pipeline = make_pipeline(
        breaker(
            sliding_window_size=1,
            minimum_number_of_calls=1,
            slow_call_duration_threshold=2.0,
            slow_call_rate_threshold=100,
        )
    )
    pipeline.execute(taking(clock, 2.0))
    snapshot = pipeline.breaker.snapshot()
    assert snapshot["slow_calls"] == 0
    assert snapshot["state"] == "closed"
    pipeline.execute(taking(clock, 2.000001))
    snapshot = pipeline.breaker.snapshot()
    assert snapshot["slow_calls"] == 1
    assert snapshot["state"] == "open"
    assert snapshot["transitions"][0]["reason"] == "slow_call_rate_exceeded"


def test_slow_rate_at_threshold_trips(make_pipeline: Any, clock: ManualClock) -> None:
    pipeline = make_pipeline(
        breaker(
            sliding_window_size=4,
            minimum_number_of_calls=4,
            slow_call_duration_threshold=1.0,
            slow_call_rate_threshold=50,
        )
    )
    run_calls(pipeline, [ok, ok, taking(clock, 1.5)])
    assert state(pipeline) == "closed"
    pipeline.execute(taking(clock, 1.5))
    snapshot = pipeline.breaker.snapshot()
    assert snapshot["state"] == "open"
    assert snapshot["slow_call_rate"] == 50.0


def test_open_rejects_and_counts_not_permitted(make_pipeline: Any) -> None:
    pipeline = make_pipeline(breaker())
    trip(pipeline)
    with pytest.raises(CallNotPermitted) as raised:
        pipeline.call(ok)
    assert raised.value.stage == "circuit_breaker"
    assert raised.value.state == "open"
    assert raised.value.target == "svc"
    snapshot = pipeline.breaker.snapshot()
    assert snapshot["not_permitted_calls"] == 1
    assert snapshot["failed_calls"] == 10


def test_half_open_only_strictly_after_wait(
    make_pipeline: Any, clock: ManualClock
) -> None:
    pipeline = make_pipeline(breaker(wait_duration_in_open_state=30.0))
    trip(pipeline)
    clock.advance(30.0)
    assert pipeline.execute(ok).outcome == "rejected"
    clock.advance(0.000001)
    assert pipeline.execute(ok).outcome == "succeeded"
    assert state(pipeline) == "half_open"


def test_open_state_waits_without_calls(make_pipeline: Any, clock: ManualClock) -> None:
    pipeline = make_pipeline(breaker())
    trip(pipeline)
    clock.advance(1000)
    # Without automatic transition, only a call moves open to half-open.
    assert state(pipeline) == "open"


def test_automatic_transition_on_snapshot(
    make_pipeline: Any, clock: ManualClock, recorder: Any
) -> None:
    pipeline = make_pipeline(
        breaker(automatic_transition_from_open_to_half_open_enabled=True)
    )
    trip(pipeline)
    clock.advance(30.0)
    assert state(pipeline) == "open"
    clock.advance(0.5)
    assert state(pipeline) == "half_open"
    assert recorder.transitions[-1]["to_state"] == "half_open"
    assert recorder.transitions[-1]["reason"] == "wait_duration_elapsed"


def test_half_open_admits_permitted_calls(
    make_pipeline: Any, clock: ManualClock
) -> None:
    pipeline = make_pipeline(breaker(permitted_number_of_calls_in_half_open_state=3))
    trip(pipeline)
    clock.advance(31)
    guards = [pipeline.guard() for _ in range(3)]
    for guard in guards:
        guard.__enter__()
    with pytest.raises(CallNotPermitted), pipeline.guard():
        pass
    for guard in reversed(guards):
        guard.__exit__(None, None, None)
    assert state(pipeline) == "closed"


def test_half_open_decides_after_minimum(
    make_pipeline: Any, clock: ManualClock
) -> None:
    # min(minimum_number_of_calls=2, permitted=3) = 2 probes decide.
    pipeline = make_pipeline(
        breaker(
            sliding_window_size=2,
            minimum_number_of_calls=2,
            permitted_number_of_calls_in_half_open_state=3,
        )
    )
    run_calls(pipeline, [boom, boom])
    clock.advance(31)
    run_calls(pipeline, [boom])
    # One failure is not enough: no "first failure re-opens" shortcut.
    assert state(pipeline) == "half_open"
    run_calls(pipeline, [ok])
    # 1 of 2 failed = 50 %, at the threshold: re-open.
    assert state(pipeline) == "open"


def test_half_open_closes_below_threshold(
    make_pipeline: Any, clock: ManualClock, recorder: Any
) -> None:
    pipeline = make_pipeline(breaker(permitted_number_of_calls_in_half_open_state=3))
    trip(pipeline)
    clock.advance(31)
    run_calls(pipeline, [ok, boom, ok])
    snapshot = pipeline.breaker.snapshot()
    assert snapshot["state"] == "closed"
    assert snapshot["buffered_calls"] == 0
    assert recorder.transitions[-1]["reason"] == "half_open_rates_below_threshold"
    assert recorder.transitions[-1]["failure_rate"] == pytest.approx(100 / 3)


def test_ignored_exception_releases_permit(
    make_pipeline: Any, clock: ManualClock
) -> None:
    pipeline = make_pipeline(
        breaker(
            permitted_number_of_calls_in_half_open_state=1,
            ignore_exceptions=["helpers.Harmless"],
        )
    )
    trip(pipeline)
    clock.advance(31)
    assert pipeline.execute(harmless).outcome == "failed"
    snapshot = pipeline.breaker.snapshot()
    assert snapshot["state"] == "half_open"
    assert snapshot["buffered_calls"] == 0
    # The permit came back, so one more probe is admitted and decides.
    assert pipeline.execute(ok).outcome == "succeeded"
    assert state(pipeline) == "closed"


def test_ignored_status_not_recorded(make_pipeline: Any) -> None:
    pipeline = make_pipeline(breaker(ignore_status_codes=[503]))
    pipeline.execute(lambda: Response(503))
    pipeline.execute(lambda: Response(500))
    pipeline.execute(lambda: Response(404))
    snapshot = pipeline.breaker.snapshot()
    assert snapshot["buffered_calls"] == 2
    assert snapshot["failed_calls"] == 1


def test_record_exceptions_limit_failures(make_pipeline: Any) -> None:
    pipeline = make_pipeline(breaker(record_exceptions=["helpers.Boom"]))
    pipeline.execute(boom)
    pipeline.execute(lambda: int("x"))
    snapshot = pipeline.breaker.snapshot()
    assert snapshot["buffered_calls"] == 2
    assert snapshot["failed_calls"] == 1


def test_timeout_always_failure(make_pipeline: Any) -> None:
    pipeline = make_pipeline(breaker(ignore_exceptions=["TimeoutError"]))

    def times_out() -> None:
        raise TimeoutError("read timed out")

    pipeline.execute(times_out)
    assert pipeline.breaker.snapshot()["failed_calls"] == 1


def test_late_result_cannot_transition(make_pipeline: Any, clock: ManualClock) -> None:
    pipeline = make_pipeline(breaker(sliding_window_size=2, minimum_number_of_calls=2))
    late = pipeline.guard()
    late.__enter__()
    run_calls(pipeline, [boom, boom])
    clock.advance(31)
    run_calls(pipeline, [ok, ok])
    assert state(pipeline) == "closed"
    run_calls(pipeline, [ok])
    # This failure was admitted two generations ago: it is recorded in the
    # closed window (1 of 2 failed = 50 %) but may not trip the breaker.
    late.__exit__(Boom, Boom("late"), None)
    snapshot = pipeline.breaker.snapshot()
    assert snapshot["failed_calls"] == 1
    assert snapshot["state"] == "closed"


def test_late_result_in_half_open_ignored(
    make_pipeline: Any, clock: ManualClock
) -> None:
    pipeline = make_pipeline(breaker(sliding_window_size=2, minimum_number_of_calls=2))
    late = pipeline.guard()
    late.__enter__()
    run_calls(pipeline, [boom, boom])
    clock.advance(31)
    run_calls(pipeline, [ok])
    late.__exit__(Boom, Boom("late"), None)
    snapshot = pipeline.breaker.snapshot()
    assert snapshot["state"] == "half_open"
    assert snapshot["buffered_calls"] == 1


def test_forced_open_rejects_forever(make_pipeline: Any, clock: ManualClock) -> None:
    pipeline = make_pipeline(breaker())
    events = pipeline.breaker.force_open()
    assert events[0]["to_state"] == "forced_open"
    clock.advance(10_000)
    result = pipeline.execute(ok)
    assert result.outcome == "rejected"
    assert result.rejected_by == "circuit_breaker"
    assert state(pipeline) == "forced_open"


def test_disabled_passes_and_records_nothing(make_pipeline: Any) -> None:
    pipeline = make_pipeline(breaker())
    pipeline.breaker.disable()
    assert run_calls(pipeline, [boom] * 20) == ["failed"] * 20
    snapshot = pipeline.breaker.snapshot()
    assert snapshot["state"] == "disabled"
    assert snapshot["buffered_calls"] == 0


def test_metrics_only_never_trips(make_pipeline: Any) -> None:
    pipeline = make_pipeline(breaker())
    pipeline.breaker.metrics_only()
    run_calls(pipeline, [boom] * 20)
    snapshot = pipeline.breaker.snapshot()
    assert snapshot["state"] == "metrics_only"
    assert snapshot["failure_rate"] == 100.0
    assert snapshot["buffered_calls"] == 10


def test_reset_empties_metrics(make_pipeline: Any) -> None:
    pipeline = make_pipeline(breaker())
    trip(pipeline)
    pipeline.execute(ok)
    pipeline.breaker.reset()
    snapshot = pipeline.breaker.snapshot()
    assert snapshot["state"] == "closed"
    assert snapshot["buffered_calls"] == 0
    assert snapshot["not_permitted_calls"] == 0
    assert snapshot["transitions"][0]["reason"] == "reset"


def test_exponential_open_wait(make_pipeline: Any, clock: ManualClock) -> None:
    pipeline = make_pipeline(
        breaker(
            sliding_window_size=1,
            minimum_number_of_calls=1,
            permitted_number_of_calls_in_half_open_state=1,
            wait_duration_in_open_state=10.0,
            exponential_backoff_multiplier=2.0,
            max_wait_duration_in_open_state=25.0,
        )
    )
    run_calls(pipeline, [boom])
    # Each re-open from half-open waits 10, then 20, then 25 (the cap).
    for wait in (10.0, 20.0, 25.0, 25.0):
        clock.advance(wait)
        assert pipeline.execute(ok).outcome == "rejected"
        clock.advance(0.001)
        assert pipeline.execute(boom).outcome == "failed"
        assert state(pipeline) == "open"
    clock.advance(25.001)
    run_calls(pipeline, [ok])
    assert state(pipeline) == "closed"
    run_calls(pipeline, [boom])
    # Closing forgot the re-opens, so the wait is back to 10 s.
    clock.advance(10.001)
    assert pipeline.execute(ok).outcome == "succeeded"


def test_max_wait_in_half_open(make_pipeline: Any, clock: ManualClock) -> None:
    pipeline = make_pipeline(breaker(max_wait_duration_in_half_open_state=5.0))
    trip(pipeline)
    clock.advance(31)
    stuck = pipeline.guard()
    stuck.__enter__()
    assert state(pipeline) == "half_open"
    clock.advance(5.0)
    assert state(pipeline) == "half_open"
    clock.advance(0.001)
    snapshot = pipeline.breaker.snapshot()
    assert snapshot["state"] == "open"
    assert snapshot["transitions"][0]["reason"] == "max_wait_in_half_open_elapsed"
    stuck.__exit__(None, None, None)
    assert state(pipeline) == "open"


def test_time_based_buckets_expire(make_pipeline: Any, clock: ManualClock) -> None:
    pipeline = make_pipeline(
        breaker(
            sliding_window_type="time_based",
            sliding_window_size=3,
            minimum_number_of_calls=4,
            failure_rate_threshold=100,
        )
    )
    clock.set(2_000_000.5)
    run_calls(pipeline, [boom, boom, boom])
    clock.advance(2.0)
    # Seconds 2_000_000..2_000_002 are in the window: all three still count.
    assert pipeline.breaker.snapshot()["buffered_calls"] == 3
    clock.advance(1.0)
    # Second 2_000_003: the first second's bucket has left the window.
    assert pipeline.breaker.snapshot()["buffered_calls"] == 0
    run_calls(pipeline, [boom, boom, boom])
    assert state(pipeline) == "closed"
    run_calls(pipeline, [boom])
    assert state(pipeline) == "open"


def test_time_based_partial_expiry(make_pipeline: Any, clock: ManualClock) -> None:
    pipeline = make_pipeline(
        breaker(
            sliding_window_type="time_based",
            sliding_window_size=3,
            minimum_number_of_calls=100,
        )
    )
    clock.set(3_000_000.0)
    run_calls(pipeline, [boom])
    clock.advance(1)
    run_calls(pipeline, [ok, ok])
    clock.advance(2)
    snapshot = pipeline.breaker.snapshot()
    assert snapshot["buffered_calls"] == 2
    assert snapshot["failed_calls"] == 0
    clock.advance(100)
    assert pipeline.breaker.snapshot()["buffered_calls"] == 0


def test_transition_event_shape(make_pipeline: Any, recorder: Any) -> None:
    pipeline = make_pipeline(breaker())
    trip(pipeline)
    event = recorder.transitions[-1]
    assert event["from_state"] == "closed"
    assert event["to_state"] == "open"
    assert event["reason"] == "failure_rate_exceeded"
    assert event["failure_rate"] == 100.0
    assert event["slow_call_rate"] == 0.0
    assert event["at"] == "1970-01-12T13:46:40+00:00"


def test_transition_list_bounded(make_pipeline: Any) -> None:
    pipeline = make_pipeline(breaker())
    for _ in range(30):
        pipeline.breaker.force_open()
        pipeline.breaker.reset()
    assert len(pipeline.breaker.snapshot()["transitions"]) == 50


def test_window_reconfigured_resets(
    make_pipeline: Any, redis_client: Any, recorder: Any
) -> None:
    first = make_pipeline(breaker(minimum_number_of_calls=100))
    run_calls(first, [boom] * 5)
    same_window = make_pipeline(breaker(minimum_number_of_calls=50))
    assert same_window.breaker.snapshot()["buffered_calls"] == 5
    resized = make_pipeline(breaker(sliding_window_size=20))
    snapshot = resized.breaker.snapshot()
    assert snapshot["buffered_calls"] == 0
    assert snapshot["transitions"][0]["reason"] == "window_reconfigured"
    assert snapshot["state"] == "closed"
