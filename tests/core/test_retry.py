"""Retry and timeout stages: attempts, backoff, classification, deadlines."""

from __future__ import annotations

import random
from typing import Any

import pytest
from helpers import Boom, Response

from resilience.core import (
    CallNotPermitted,
    ManualClock,
    RetryConfig,
    RetryLater,
    current_attempt,
    parse_retry_after,
)
from resilience.core.retry import backoff_delay, base_delay


class Flaky:
    """Returns or raises the scripted results in order, recording attempts."""

    def __init__(self, *results: Any) -> None:
        self.results = list(results)
        self.attempts: list[Any] = []

    def __call__(self) -> Any:
        self.attempts.append(current_attempt())
        result = self.results.pop(0)
        if isinstance(result, BaseException):
            raise result
        return result


def retry_policy(**fields: Any) -> dict[str, Any]:
    config = {"max_attempts": 3, "initial_interval": 1.0, "jitter": "none"}
    config.update(fields)
    return {"retry": config}


def test_max_attempts_counts_first_call(make_pipeline: Any) -> None:
    pipeline = make_pipeline(retry_policy(max_attempts=3))
    fn = Flaky(TimeoutError("t"), TimeoutError("t"), TimeoutError("t"), "never")
    result = pipeline.execute(fn)
    assert result.outcome == "failed"
    assert result.attempts == 3
    assert len(fn.attempts) == 3
    assert isinstance(result.exception, TimeoutError)


def test_single_attempt_never_retries(make_pipeline: Any) -> None:
    pipeline = make_pipeline(retry_policy(max_attempts=1))
    fn = Flaky(ConnectionError("refused"), "ok")
    with pytest.raises(ConnectionError):
        pipeline.call(fn)
    assert len(fn.attempts) == 1


def test_retry_succeeds_and_sleeps(make_pipeline: Any, clock: ManualClock) -> None:
    pipeline = make_pipeline(retry_policy(initial_interval=1.0, multiplier=2.0))
    start = clock.now()
    fn = Flaky(ConnectionError("a"), Response(503), "done")
    assert pipeline.call(fn) == "done"
    # Waits of 1 s and 2 s went through the clock.
    assert clock.now() - start == pytest.approx(3.0)
    assert [a.number for a in fn.attempts] == [1, 2, 3]


def test_attempt_context(make_pipeline: Any) -> None:
    pipeline = make_pipeline({"timeout": {"timeout_duration": 2.5}}, target="ctx")
    fn = Flaky("ok")
    before = current_attempt()
    pipeline.call(fn)
    assert fn.attempts[0].timeout == 2.5
    assert fn.attempts[0].target == "ctx"
    assert current_attempt() is before


def test_attempt_timeout_shrinks_to_deadline(
    make_pipeline: Any, clock: ManualClock
) -> None:
    pipeline = make_pipeline(
        {
            **retry_policy(initial_interval=3.0, multiplier=1.0, max_attempts=5),
            "timeout": {"timeout_duration": 4.0, "overall_deadline": 10.0},
        }
    )

    def slow_timeout() -> None:
        Flaky.__call__(fn)
        clock.advance(1.0)
        raise TimeoutError("t")

    fn = Flaky(None, None, None, None, None)
    with pytest.raises(TimeoutError):
        pipeline.call(slow_timeout)
    # Attempts start at 0, 4 and 8 s; at 8 s only 2 s are left, and a third
    # retry would start after the deadline.
    assert [a.timeout for a in fn.attempts] == [4.0, 4.0, 2.0]


def test_client_errors_not_retried(make_pipeline: Any) -> None:
    pipeline = make_pipeline(retry_policy())
    fn = Flaky(Response(404), "never")
    result = pipeline.execute(fn)
    assert result.outcome == "succeeded"
    assert result.status_code == 404
    assert result.attempts == 1


def test_server_errors_retried_then_returned(make_pipeline: Any) -> None:
    pipeline = make_pipeline(retry_policy())
    fn = Flaky(Response(500), Response(502), Response(503))
    value = pipeline.call(fn)
    assert value.status_code == 503
    result = pipeline.execute(Flaky(Response(500), Response(502), Response(503)))
    assert result.outcome == "failed"
    assert result.error == "HTTP 503"
    assert result.attempts == 3


def test_non_transient_exception_not_retried(make_pipeline: Any) -> None:
    pipeline = make_pipeline(retry_policy())
    fn = Flaky(Boom("bad input"), "never")
    with pytest.raises(Boom):
        pipeline.call(fn)
    assert len(fn.attempts) == 1


def test_configured_retry_exception(make_pipeline: Any) -> None:
    pipeline = make_pipeline(retry_policy(retry_exceptions=["helpers.Boom"]))
    fn = Flaky(Boom("transient here"), "ok")
    assert pipeline.call(fn) == "ok"


def test_retry_after_seconds_honoured(make_pipeline: Any, clock: ManualClock) -> None:
    pipeline = make_pipeline(retry_policy(initial_interval=1.0))
    start = clock.now()
    fn = Flaky(Response(429, {"Retry-After": "7"}), "ok")
    assert pipeline.call(fn) == "ok"
    assert clock.now() - start == 7.0


def test_retry_after_date_parsed() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:40 GMT", now) == 20.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", now) == 0.0
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_no_retry_once_breaker_opens(make_pipeline: Any) -> None:
    pipeline = make_pipeline(
        {
            **retry_policy(max_attempts=5),
            "circuit_breaker": {"sliding_window_size": 2, "minimum_number_of_calls": 2},
        }
    )
    fn = Flaky(TimeoutError("t"), TimeoutError("t"), "never", "never", "never")
    result = pipeline.execute(fn)
    assert result.outcome == "rejected"
    assert result.rejected_by == "circuit_breaker"
    assert result.attempts == 2
    assert len(fn.attempts) == 2
    assert isinstance(result.exception.__cause__, TimeoutError)
    with pytest.raises(CallNotPermitted):
        pipeline.call(Flaky("never"))


def test_every_attempt_recorded(make_pipeline: Any) -> None:
    pipeline = make_pipeline({**retry_policy(max_attempts=3), "circuit_breaker": {}})
    pipeline.execute(Flaky(TimeoutError("t"), TimeoutError("t"), "ok"))
    snapshot = pipeline.breaker.snapshot()
    assert snapshot["buffered_calls"] == 3
    assert snapshot["failed_calls"] == 2


def test_retry_later_above_inline_wait(
    make_pipeline: Any, recorder: Any, clock: ManualClock
) -> None:
    pipeline = make_pipeline(
        {
            **retry_policy(initial_interval=1.0, max_inline_wait=1.5),
            "bulkhead": {"max_concurrent_calls": 1},
        }
    )
    fn = Flaky(ConnectionError("a"), ConnectionError("b"), "ok")
    with pytest.raises(RetryLater) as raised:
        pipeline.call(fn)
    assert raised.value.delay == 2.0
    assert raised.value.attempt == 3
    assert isinstance(raised.value.last_error, ConnectionError)
    assert len(fn.attempts) == 2
    # The call ended here, so its bulkhead permit was released.
    assert pipeline.bulkhead.snapshot()["in_use"] == 0
    assert ("retry.scheduled", {"attempt": 2, "delay": 1.0}) in recorder.events


def test_resume_carries_on_the_retry_budget(make_pipeline: Any) -> None:
    pipeline = make_pipeline(
        {
            **retry_policy(max_attempts=4, initial_interval=1.0, max_inline_wait=1.5),
            "bulkhead": {"max_concurrent_calls": 1},
        }
    )
    first = Flaky(ConnectionError("a"), ConnectionError("b"))
    with pytest.raises(RetryLater) as raised:
        pipeline.call(first)

    second = Flaky(ConnectionError("c"), "never")
    with pytest.raises(RetryLater) as again:
        pipeline.resume(raised.value, second)
    assert again.value.attempt == 4
    assert again.value.delay == 4.0  # attempt 3 failed: 1.0 * 2 ** 2

    last = Flaky(ConnectionError("d"), "never")
    result = pipeline.resume(again.value, last)
    assert result.outcome == "failed"
    assert result.attempts == 4
    assert len(last.attempts) == 1  # the budget of four ended here
    assert pipeline.bulkhead.snapshot()["in_use"] == 0


def test_resume_admits_the_call_again(make_pipeline: Any) -> None:
    pipeline = make_pipeline(
        {
            **retry_policy(initial_interval=1.0, max_inline_wait=0.5),
            "circuit_breaker": {},
        }
    )
    with pytest.raises(RetryLater) as raised:
        pipeline.call(Flaky(ConnectionError("a"), "never"))
    pipeline.breaker.force_open()

    fn = Flaky("never")
    result = pipeline.resume(raised.value, fn)
    assert result.outcome == "rejected"
    assert result.rejected_by == "circuit_breaker"
    assert fn.attempts == []


def test_base_delay_formula_and_cap() -> None:
    config = RetryConfig(initial_interval=0.5, multiplier=2.0, max_interval=3.0)
    delays = [base_delay(config, n) for n in range(1, 7)]
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert base_delay(config, 5000) == 3.0


@pytest.mark.parametrize("jitter", ["none", "full", "equal", "decorrelated"])
def test_jitter_bounds_and_variation(jitter: str) -> None:
    config = RetryConfig.from_dict(
        {
            "initial_interval": 0.5,
            "multiplier": 2.0,
            "max_interval": 4.0,
            "jitter": jitter,
        }
    )
    rng = random.Random(42)
    at_cap = []
    previous = None
    for n in range(1, 40):
        delay = backoff_delay(config, n, previous, rng)
        base = base_delay(config, n)
        assert 0 <= delay <= 4.0
        if jitter == "none":
            assert delay == base
        elif jitter == "full":
            assert delay <= base
        elif jitter == "equal":
            assert base / 2 <= delay <= base
        else:
            assert delay >= 0.5
        if n >= 10:
            at_cap.append(delay)
        previous = delay
    distinct = len(set(at_cap))
    assert distinct == 1 if jitter == "none" else distinct > 20


def test_jitter_seeded_values() -> None:
    config = RetryConfig(initial_interval=1.0, multiplier=2.0, max_interval=30.0)
    first = [backoff_delay(config, n, None, random.Random(7)) for n in (1, 2, 3)]
    second = [backoff_delay(config, n, None, random.Random(7)) for n in (1, 2, 3)]
    assert first == second
    expected = random.Random(7).uniform(0.0, 4.0)
    assert first[2] == expected


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"initial_interval": 0},
            "retry.initial_interval must be greater than 0, got 0",
        ),
        (
            {"initial_interval": -1.0},
            "retry.initial_interval must be greater than 0, got -1.0",
        ),
        ({"multiplier": 0.5}, "retry.multiplier must be 1 or greater, got 0.5"),
        ({"max_attempts": 0}, "retry.max_attempts must be 1 or greater, got 0"),
        ({"jitter": "random"}, "retry.jitter must be one of"),
        ({"max_interval": 0.1}, "retry.max_interval must be at least initial_interval"),
    ],
)
def test_retry_config_validation(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        RetryConfig.from_dict(fields)
