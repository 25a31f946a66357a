"""Unknown fields, wrong types and a second policy for a target get 400."""

from typing import Any

import pytest
from rest_framework.test import APIClient

from resilience.models import Policy, Target
from tests.policies.conftest import VALID_POLICY, field_errors


@pytest.mark.parametrize(
    ("body", "path", "code"),
    [
        (
            {"circuit_breaker": {"failure_rate": 50}},
            "circuit_breaker.failure_rate",
            "unknown_field",
        ),
        ({"retry": {"attempts": 3}}, "retry.attempts", "unknown_field"),
        ({"fallback": {}}, "fallback", "unknown_field"),
        ({"retry": {"max_attempts": "3"}}, "retry.max_attempts", "invalid"),
        ({"retry": {"max_attempts": 2.5}}, "retry.max_attempts", "invalid"),
        ({"retry": {"max_attempts": True}}, "retry.max_attempts", "invalid"),
        (
            {"timeout": {"timeout_duration": "5s"}},
            "timeout.timeout_duration",
            "invalid",
        ),
        (
            {
                "circuit_breaker": {
                    "automatic_transition_from_open_to_half_open_enabled": 1
                }
            },
            "circuit_breaker.automatic_transition_from_open_to_half_open_enabled",
            "invalid",
        ),
        (
            {"circuit_breaker": {"sliding_window_type": "sliding"}},
            "circuit_breaker.sliding_window_type",
            "invalid_choice",
        ),
        ({"retry": {"jitter": "random"}}, "retry.jitter", "invalid_choice"),
        ({"on_state_store_error": "ignore"}, "on_state_store_error", "invalid_choice"),
        ({"bulkhead": [1, 2]}, "bulkhead", "invalid"),
        (
            {"rate_limiter": {"limit_for_period": 2**40}},
            "rate_limiter.limit_for_period",
            "max_value",
        ),
        (
            {"circuit_breaker": {"record_status_codes": ["5xx"]}},
            "circuit_breaker.record_status_codes",
            "invalid",
        ),
    ],
)
def test_bad_field_rejected(
    operator_client: APIClient,
    target: Target,
    body: dict[str, Any],
    path: str,
    code: str,
) -> None:
    response = operator_client.post(
        "/api/policies/", {"target": target.name, **body}, format="json"
    )

    assert response.status_code == 400, response.content
    errors = field_errors(response)
    assert path in errors, errors
    assert errors[path]["code"] == code
    assert not Policy.objects.exists()


def test_second_policy_for_target_rejected(
    operator_client: APIClient, target: Target
) -> None:
    first = operator_client.post(
        "/api/policies/", {"target": target.name, **VALID_POLICY}, format="json"
    )
    second = operator_client.post(
        "/api/policies/", {"target": target.name, **VALID_POLICY}, format="json"
    )

    assert first.status_code == 201
    assert second.status_code == 400
    error = field_errors(second)["target"]
    assert error["code"] == "unique"
    assert "/api/policies/payment/" in error["message"]
    assert Policy.objects.count() == 1


def test_policy_for_unknown_target_rejected(operator_client: APIClient) -> None:
    response = operator_client.post(
        "/api/policies/", {"target": "nowhere", **VALID_POLICY}, format="json"
    )

    assert response.status_code == 400
    assert field_errors(response)["target"]["code"] == "does_not_exist"


def test_target_of_policy_cannot_change(
    operator_client: APIClient, target: Target
) -> None:
    Target.objects.create(name="shipping", base_url="http://127.0.0.1:9/ship")
    operator_client.post("/api/policies/", {"target": target.name}, format="json")

    response = operator_client.put(
        "/api/policies/payment/", {"target": "shipping"}, format="json"
    )

    assert response.status_code == 400
    assert field_errors(response)["target"]["code"] == "immutable"


@pytest.mark.parametrize(
    "body",
    [
        {"retry": {"max_attempts": 0}, "bogus": {}},
        {"retry": {"max_attempts": 0, "bogus": 1}},
    ],
)
def test_unknown_field_reported_with_others(
    operator_client: APIClient, target: Target, body: dict[str, Any]
) -> None:
    operator_client.post(
        "/api/policies/", {"target": target.name, **VALID_POLICY}, format="json"
    )

    response = operator_client.patch(
        f"/api/policies/{target.name}/", body, format="json"
    )

    assert response.status_code == 400, response.content
    errors = field_errors(response)
    assert errors["retry.max_attempts"]["code"] == "min_value"
    unknown = [e for e in errors.values() if e["code"] == "unknown_field"]
    assert len(unknown) == 1
    assert Policy.objects.get().version == 1


def test_breaker_action_rejects_fields(
    operator_client: APIClient, target: Target
) -> None:
    response = operator_client.post(
        f"/api/breakers/{target.name}/reset/", {"bogus": 1}, format="json"
    )

    assert response.status_code == 400, response.content
    assert field_errors(response)["bogus"]["code"] == "unknown_field"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (
            "/api/targets/",
            {"name": 123, "base_url": "http://127.0.0.1:1/"},
            "name",
        ),
        (
            "/api/targets/",
            {"name": "t1", "base_url": "http://127.0.0.1:1/", "description": 5},
            "description",
        ),
        ("/api/calls/", {"target": 123, "path": "/"}, "target"),
    ],
)
def test_number_for_text_rejected(
    operator_client: APIClient, path: str, body: dict[str, Any], field: str
) -> None:
    response = operator_client.post(
        path, body, format="json", HTTP_IDEMPOTENCY_KEY=f"number-{field}"
    )

    assert response.status_code == 400, response.content
    error = field_errors(response)[field]
    assert error["code"] == "not_a_string"
    assert error["value"] == body[field]


def test_number_in_exception_list_rejected(
    operator_client: APIClient, target: Target
) -> None:
    body = {"target": target.name, "retry": {"retry_exceptions": [5]}}

    response = operator_client.post("/api/policies/", body, format="json")

    assert response.status_code == 400, response.content
    assert field_errors(response)["retry.retry_exceptions.0"]["code"] == (
        "not_a_string"
    )
    assert not Policy.objects.exists()
