"""Policy numbers, status codes and descriptions have upper bounds.

A value over its bound gets 400 naming the field, the rule and the value,
and nothing is saved. A value at the bound is accepted.
"""

from typing import Any

import pytest
from rest_framework.test import APIClient

from resilience.models import Policy, Target
from sagas.models import SagaDefinition


def field_errors(response: Any) -> dict[str, dict[str, Any]]:
    return {error["field"]: error for error in response.json().get("errors", [])}


@pytest.fixture
def target(db: Any) -> Target:
    return Target.objects.create(name="payment", base_url="http://127.0.0.1:9/pay")


OVER_LIMIT = [
    # (section, field, value, message words)
    ("retry", "max_attempts", 101, "at most 100"),
    ("retry", "max_attempts", 2**63, "at most 100"),
    ("retry", "initial_interval", 86400.5, "at most 86400"),
    ("retry", "max_interval", 10**6, "at most 86400"),
    ("retry", "max_inline_wait", 86401, "at most 86400"),
    ("retry", "multiplier", 101, "at most 100"),
    ("timeout", "timeout_duration", 86401, "at most 86400"),
    ("timeout", "overall_deadline", 1e9, "at most 86400"),
    ("circuit_breaker", "wait_duration_in_open_state", 90000, "at most 86400"),
    ("circuit_breaker", "slow_call_duration_threshold", 90000, "at most 86400"),
    ("circuit_breaker", "max_wait_duration_in_half_open_state", 90000, "86400"),
    ("circuit_breaker", "sliding_window_size", 100_001, "at most 100000"),
    ("circuit_breaker", "minimum_number_of_calls", 100_001, "at most 100000"),
    (
        "circuit_breaker",
        "permitted_number_of_calls_in_half_open_state",
        10_001,
        "at most 10000",
    ),
    ("circuit_breaker", "exponential_backoff_multiplier", 1000, "at most 100"),
    ("bulkhead", "max_concurrent_calls", 10_001, "at most 10000"),
    ("bulkhead", "max_wait_duration", 86401, "at most 86400"),
    ("bulkhead", "permit_lease_duration", 86401, "at most 86400"),
    ("rate_limiter", "limit_for_period", 100_001, "at most 100000"),
    ("rate_limiter", "limit_refresh_period", 86401, "at most 86400"),
    ("rate_limiter", "timeout_duration", 86401, "at most 86400"),
]


@pytest.mark.parametrize(("section", "field", "value", "words"), OVER_LIMIT)
def test_value_over_limit_rejected(
    operator_client: APIClient,
    target: Target,
    section: str,
    field: str,
    value: Any,
    words: str,
) -> None:
    response = operator_client.post(
        "/api/policies/",
        {"target": target.name, section: {field: value}},
        format="json",
    )

    assert response.status_code == 400, response.content
    error = field_errors(response)[f"{section}.{field}"]
    assert error["code"] == "max_value"
    assert words in error["message"]
    assert f"got {value!r}" in error["message"]
    assert error["value"] == value
    assert not Policy.objects.exists()


def test_time_window_over_an_hour_rejected(
    operator_client: APIClient, target: Target
) -> None:
    breaker = {"sliding_window_type": "time_based", "sliding_window_size": 3601}

    response = operator_client.post(
        "/api/policies/",
        {"target": target.name, "circuit_breaker": breaker},
        format="json",
    )

    assert response.status_code == 400, response.content
    error = field_errors(response)["circuit_breaker.sliding_window_size"]
    assert error["code"] == "max_value"
    assert error["message"] == "Must be at most 3600, got 3601."
    assert error["value"] == 3601


@pytest.mark.parametrize(
    ("section", "field", "entry"),
    [
        ("retry", "retry_status_codes", "99"),
        ("retry", "retry_status_codes", "600"),
        ("retry", "retry_status_codes", "500-600"),
        ("retry", "retry_status_codes", "0-599"),
        ("circuit_breaker", "record_status_codes", "1000"),
        ("circuit_breaker", "ignore_status_codes", "42"),
    ],
)
def test_status_code_outside_100_to_599_rejected(
    operator_client: APIClient, target: Target, section: str, field: str, entry: str
) -> None:
    response = operator_client.post(
        "/api/policies/",
        {"target": target.name, section: {field: ["503", entry]}},
        format="json",
    )

    assert response.status_code == 400, response.content
    error = field_errors(response)[f"{section}.{field}"]
    assert error["code"] == "out_of_range"
    assert "from 100 to 599" in error["message"]
    assert repr(entry) in error["message"]
    assert error["value"] == ["503", entry]
    assert not Policy.objects.exists()


def test_values_at_limits_accepted(operator_client: APIClient, target: Target) -> None:
    policy = {
        "target": target.name,
        "circuit_breaker": {
            "sliding_window_size": 100_000,
            "minimum_number_of_calls": 100_000,
            "wait_duration_in_open_state": 86400,
            "exponential_backoff_multiplier": 100,
            "permitted_number_of_calls_in_half_open_state": 10_000,
            "record_status_codes": ["100-599"],
        },
        "bulkhead": {"max_concurrent_calls": 10_000, "max_wait_duration": 86400},
        "rate_limiter": {"limit_for_period": 100_000, "limit_refresh_period": 86400},
        "retry": {
            "max_attempts": 100,
            "max_interval": 86400,
            "multiplier": 100,
            "retry_status_codes": ["100", "599"],
        },
        "timeout": {"timeout_duration": 86400, "overall_deadline": 86400},
    }

    response = operator_client.post("/api/policies/", policy, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["retry"]["max_attempts"] == 100


def test_step_retry_over_limit_rejected(
    operator_client: APIClient, order_saga: SagaDefinition
) -> None:
    steps = [dict(step) for step in order_saga.steps]
    steps[0]["retry"] = {"max_attempts": 500}

    response = operator_client.patch(
        f"/api/sagas/{order_saga.name}/", {"steps": steps}, format="json"
    )

    assert response.status_code == 400, response.content
    error = field_errors(response)["steps.0.retry.max_attempts"]
    assert error["code"] == "max_value"
    assert error["message"] == "Must be at most 100, got 500."
    order_saga.refresh_from_db()
    assert "retry" not in order_saga.steps[0] or (
        order_saga.steps[0]["retry"] != {"max_attempts": 500}
    )


def test_target_description_over_1000_characters_rejected(
    operator_client: APIClient,
) -> None:
    body = {"name": "ledger", "base_url": "http://127.0.0.1:9/ledger"}

    response = operator_client.post(
        "/api/targets/", {**body, "description": "x" * 1001}, format="json"
    )

    assert response.status_code == 400, response.content
    error = field_errors(response)["description"]
    assert error["code"] == "max_length"
    assert error["message"] == "Must be at most 1000 characters."
    assert error["value"].startswith("xxx")
    assert not Target.objects.filter(name="ledger").exists()

    accepted = operator_client.post(
        "/api/targets/", {**body, "description": "x" * 1000}, format="json"
    )
    assert accepted.status_code == 201, accepted.content


def test_imported_description_over_limit_rejected(
    operator_client: APIClient,
) -> None:
    target = {
        "name": "ledger",
        "base_url": "http://127.0.0.1:9/ledger",
        "description": "y" * 1001,
    }

    response = operator_client.post(
        "/api/policies/import/", {"targets": [target]}, format="json"
    )

    assert response.status_code == 400, response.content
    error = field_errors(response)["targets.0.description"]
    assert error["code"] == "max_length"
    assert not Target.objects.filter(name="ledger").exists()


def test_saga_description_over_limit_rejected(
    operator_client: APIClient, order_saga: SagaDefinition
) -> None:
    response = operator_client.patch(
        f"/api/sagas/{order_saga.name}/",
        {"description": "z" * 1001},
        format="json",
    )

    assert response.status_code == 400, response.content
    error = field_errors(response)["description"]
    assert error["code"] == "max_length"
    assert error["message"] == "Must be at most 1000 characters."


def test_schema_documents_limits(operator_client: APIClient) -> None:
    schema = operator_client.get("/api/schema/?format=json").json()
    components = schema["components"]["schemas"]

    max_attempts = components["RetryConfig"]["properties"]["max_attempts"]
    assert max_attempts["maximum"] == 100
    assert "at most 100" in max_attempts["description"]
    timeout = components["TimeoutConfig"]["properties"]["timeout_duration"]
    assert timeout["maximum"] == 86400
    assert "At most 86400 (one day)" in timeout["description"]
    codes = components["RetryConfig"]["properties"]["retry_status_codes"]
    assert "from 100 to 599" in codes["description"]
    description = components["Target"]["properties"]["description"]
    assert description["maxLength"] == 1000
