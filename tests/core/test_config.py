"""Policy parsing, defaults and validation."""

from __future__ import annotations

import pytest

from resilience.core import CircuitBreakerConfig, PolicyConfig


def test_empty_policy_defaults() -> None:
    policy = PolicyConfig.from_dict({})
    data = policy.to_dict()
    assert data["circuit_breaker"] is None
    assert data["bulkhead"] is None
    assert data["rate_limiter"] is None
    assert data["retry"] is None
    assert data["timeout"] == {
        "timeout_duration": 10.0,
        "overall_deadline": None,
        "timeout_exceptions": [],
    }
    assert data["on_state_store_error"] == "allow"


def test_sections_filled_with_defaults() -> None:
    policy = PolicyConfig.from_dict(
        {
            "circuit_breaker": {"wait_duration_in_open_state": 5},
            "bulkhead": {},
            "rate_limiter": {},
            "retry": {},
            "version": 3,
        }
    )
    data = policy.to_dict()
    breaker = data["circuit_breaker"]
    assert breaker["wait_duration_in_open_state"] == 5.0
    assert isinstance(breaker["wait_duration_in_open_state"], float)
    assert breaker["sliding_window_size"] == 100
    assert breaker["minimum_number_of_calls"] == 100
    assert breaker["failure_rate_threshold"] == 50.0
    assert breaker["record_status_codes"] == ["500-599"]
    assert data["bulkhead"]["max_concurrent_calls"] == 25
    assert data["rate_limiter"]["limit_for_period"] == 50
    assert data["rate_limiter"]["limit_refresh_period"] == 1.0
    assert data["retry"]["max_attempts"] == 3
    assert data["retry"]["jitter"] == "full"
    assert data["version"] == 3
    assert PolicyConfig.from_dict(data) == policy


def test_unknown_fields_rejected() -> None:
    with pytest.raises(ValueError, match=r"circuit_breaker\.failure_threshold is not"):
        PolicyConfig.from_dict({"circuit_breaker": {"failure_threshold": 10}})
    with pytest.raises(ValueError, match="breaker is not a known policy field"):
        PolicyConfig.from_dict({"breaker": {}})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"failure_rate_threshold": 0}, "failure_rate_threshold must be a percentage"),
        (
            {"failure_rate_threshold": 101},
            "failure_rate_threshold must be a percentage",
        ),
        ({"sliding_window_size": 0}, "sliding_window_size must be 1 or greater"),
        ({"sliding_window_type": "fixed"}, "sliding_window_type must be"),
        ({"wait_duration_in_open_state": 0}, "wait_duration_in_open_state must be"),
        ({"exponential_backoff_multiplier": 0.5}, "must be 1 or greater"),
        ({"record_status_codes": ["5xx"]}, "entries must be codes"),
        ({"minimum_number_of_calls": 1.5}, "must be an integer"),
    ],
)
def test_breaker_validation(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CircuitBreakerConfig.from_dict(fields)


def test_state_store_policy_validated() -> None:
    with pytest.raises(
        ValueError, match="on_state_store_error must be allow or reject"
    ):
        PolicyConfig.from_dict({"on_state_store_error": "ignore"})
