"""Process-wide registry, decorator, context manager and state-store errors."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import redis
from helpers import Boom, Response, boom

import resilience.core as core
from resilience.core import CallNotPermitted, ManualClock, PolicyConfig


@pytest.fixture
def policies(redis_client: redis.Redis, key_prefix: str, clock: ManualClock) -> Any:
    store: dict[str, PolicyConfig] = {}
    core.configure(
        redis=redis_client,
        policy_provider=store.get,
        clock=clock,
        key_prefix=key_prefix,
    )
    return store


def test_call_and_decorator(policies: Any) -> None:
    policies["pay"] = PolicyConfig.from_dict({"circuit_breaker": {}})

    @core.protect("pay")
    def charge(amount: int) -> int:
        return amount * 2

    assert charge(21) == 42
    assert core.call("pay", lambda: "direct") == "direct"
    snapshot = core.get_pipeline("pay").breaker.snapshot()
    assert snapshot["buffered_calls"] == 2


def test_protected_block_records(policies: Any) -> None:
    policies["pay"] = PolicyConfig.from_dict(
        {"circuit_breaker": {"sliding_window_size": 2, "minimum_number_of_calls": 2}}
    )
    with core.protected("pay") as guard:
        assert core.current_attempt() is not None
        guard.set_result(Response(503))
    with pytest.raises(Boom), core.protected("pay"):
        boom()
    with pytest.raises(CallNotPermitted), core.protected("pay"):
        pass


def test_rebuild_on_version_change(policies: Any) -> None:
    policies["pay"] = PolicyConfig.from_dict({"circuit_breaker": {}, "version": 1})
    first = core.get_pipeline("pay")
    assert core.get_pipeline("pay") is first
    policies["pay"] = PolicyConfig.from_dict(
        {"circuit_breaker": {"failure_rate_threshold": 10}, "version": 2}
    )
    second = core.get_pipeline("pay")
    assert second is not first
    assert second.policy.circuit_breaker is not None
    assert second.policy.circuit_breaker.failure_rate_threshold == 10.0


def test_unconfigured_target_passes(policies: Any) -> None:
    assert core.call("unknown", lambda: 7) == 7


class Unreachable(redis.Redis):
    """A client whose every command fails as if the server were down."""

    def execute_command(self, *args: Any, **options: Any) -> Any:
        raise redis.ConnectionError("connection refused")


def test_state_store_error_allows(
    make_pipeline: Any, caplog: pytest.LogCaptureFixture, recorder: Any
) -> None:
    pipeline = make_pipeline(
        {"circuit_breaker": {}, "bulkhead": {}}, target="down-allow"
    )
    pipeline = type(pipeline)(
        "down-allow",
        pipeline.policy,
        Unreachable(),
        clock=pipeline.clock,
        on_event=recorder.on_event,
    )
    with caplog.at_level(logging.WARNING):
        assert pipeline.call(lambda: "ran") == "ran"
        assert pipeline.call(lambda: "ran") == "ran"
    warnings = [r for r in caplog.records if "state store unreachable" in r.message]
    assert len(warnings) == 1
    assert pipeline.state_store_errors == 4
    assert "state_store.error" in recorder.event_names()


def test_state_store_error_rejects(make_pipeline: Any) -> None:
    policy = PolicyConfig.from_dict(
        {"circuit_breaker": {}, "on_state_store_error": "reject"}
    )
    pipeline = core.Pipeline("down-reject", policy, Unreachable())
    result = pipeline.execute(lambda: "never")
    assert result.outcome == "rejected"
    assert result.rejected_by == "state_store"
