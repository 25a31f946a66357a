"""Each policy rule rejects a bad value with 400 naming the field and rule.

The rules are the resilience core's; the API reports them in its one error
shape, with the field as a dotted path, a stable code, a sentence that
names the rule and the value, and the rejected value itself.
"""

from typing import Any

import pytest
from rest_framework.test import APIClient

from resilience.models import Policy, Target
from tests.policies.conftest import field_errors

CASES = [
    # (section, field, value, code, words in the message)
    ("circuit_breaker", "failure_rate_threshold", 0, "out_of_range", "(0, 100]"),
    ("circuit_breaker", "failure_rate_threshold", 100.5, "out_of_range", "(0, 100]"),
    ("circuit_breaker", "slow_call_rate_threshold", -1, "out_of_range", "(0, 100]"),
    ("circuit_breaker", "wait_duration_in_open_state", 0, "not_positive", "than 0"),
    ("circuit_breaker", "slow_call_duration_threshold", -2.5, "not_positive", "0"),
    ("circuit_breaker", "sliding_window_size", 0, "min_value", "1 or greater"),
    ("circuit_breaker", "minimum_number_of_calls", 0, "min_value", "1 or greater"),
    (
        "circuit_breaker",
        "permitted_number_of_calls_in_half_open_state",
        0,
        "min_value",
        "1 or greater",
    ),
    ("circuit_breaker", "exponential_backoff_multiplier", 0.5, "min_value", "1"),
    (
        "circuit_breaker",
        "max_wait_duration_in_half_open_state",
        -1,
        "min_value",
        "0 or greater",
    ),
    ("retry", "max_attempts", 0, "min_value", "1 or greater"),
    ("retry", "initial_interval", 0, "not_positive", "greater than 0"),
    ("retry", "initial_interval", -0.1, "not_positive", "greater than 0"),
    ("retry", "multiplier", 0.9, "min_value", "1 or greater"),
    ("rate_limiter", "limit_for_period", 0, "min_value", "1 or greater"),
    ("rate_limiter", "limit_refresh_period", 0, "not_positive", "greater than 0"),
    ("rate_limiter", "timeout_duration", -1, "min_value", "0 or greater"),
    ("bulkhead", "max_concurrent_calls", 0, "min_value", "1 or greater"),
    ("bulkhead", "max_wait_duration", -0.5, "min_value", "0 or greater"),
    ("timeout", "timeout_duration", 0, "not_positive", "greater than 0"),
    ("timeout", "overall_deadline", -3, "not_positive", "greater than 0"),
]


@pytest.mark.parametrize(("section", "field", "value", "code", "words"), CASES)
def test_rule_violation_names_field_rule_and_value(
    operator_client: APIClient,
    target: Target,
    section: str,
    field: str,
    value: Any,
    code: str,
    words: str,
) -> None:
    response = operator_client.post(
        "/api/policies/",
        {"target": target.name, section: {field: value}},
        format="json",
    )

    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"
    errors = field_errors(response)
    path = f"{section}.{field}"
    assert path in errors, errors
    assert errors[path]["code"] == code
    assert words in errors[path]["message"]
    assert f"got {float(value)!r}" in errors[path]["message"] or (
        f"got {value!r}" in errors[path]["message"]
    )
    assert errors[path]["value"] == value
    assert path in response.json()["detail"]
    assert not Policy.objects.exists()


def test_max_interval_below_initial_interval(
    operator_client: APIClient, target: Target
) -> None:
    response = operator_client.post(
        "/api/policies/",
        {"target": target.name, "retry": {"initial_interval": 2, "max_interval": 1}},
        format="json",
    )

    assert response.status_code == 400
    error = field_errors(response)["retry.max_interval"]
    assert error["code"] == "min_value"
    assert "at least initial_interval" in error["message"]


def test_errors_of_several_sections_reported_together(
    operator_client: APIClient, target: Target
) -> None:
    response = operator_client.post(
        "/api/policies/",
        {
            "target": target.name,
            "retry": {"multiplier": 0.5},
            "rate_limiter": {"limit_for_period": 0},
        },
        format="json",
    )

    assert response.status_code == 400
    errors = field_errors(response)
    assert "retry.multiplier" in errors
    assert "rate_limiter.limit_for_period" in errors


def test_time_based_window_of_one_second_accepted(
    operator_client: APIClient, target: Target
) -> None:
    response = operator_client.post(
        "/api/policies/",
        {
            "target": target.name,
            "circuit_breaker": {
                "sliding_window_type": "time_based",
                "sliding_window_size": 1,
                "minimum_number_of_calls": 1,
            },
        },
        format="json",
    )

    assert response.status_code == 201, response.content


def test_minimum_calls_above_count_window_accepted(
    operator_client: APIClient, target: Target
) -> None:
    # As in Resilience4j, a count-based window caps the minimum at its size
    # instead of rejecting the policy.
    response = operator_client.post(
        "/api/policies/",
        {
            "target": target.name,
            "circuit_breaker": {
                "sliding_window_size": 10,
                "minimum_number_of_calls": 50,
            },
        },
        format="json",
    )

    assert response.status_code == 201, response.content
    breaker = response.json()["circuit_breaker"]
    assert breaker["minimum_number_of_calls"] == 50
    assert breaker["sliding_window_size"] == 10
