"""The OpenAPI schema describes every policy field with unit and default."""

from typing import Any

import pytest
from rest_framework.test import APIClient


@pytest.fixture
def components(reader_client: APIClient) -> dict[str, Any]:
    response = reader_client.get("/api/schema/?format=json")
    assert response.status_code == 200
    return dict(response.json()["components"]["schemas"])


@pytest.mark.parametrize(
    "component",
    [
        "CircuitBreakerConfig",
        "BulkheadConfig",
        "RateLimiterConfig",
        "RetryConfig",
        "TimeoutConfig",
    ],
)
def test_every_section_field_documented(
    components: dict[str, Any], component: str
) -> None:
    fields = components[component]["properties"]

    assert fields
    for name, spec in fields.items():
        assert "default" in spec.get("description", "").lower(), name


def test_duration_names_unit_default_and_rule(components: dict[str, Any]) -> None:
    field = components["CircuitBreakerConfig"]["properties"][
        "wait_duration_in_open_state"
    ]

    assert field["description"] == (
        "Seconds, default 60.0; must be > 0. At most 86400 (one day)."
    )
    assert field["maximum"] == 86400


def test_policy_paths_listed(reader_client: APIClient) -> None:
    paths = reader_client.get("/api/schema/?format=json").json()["paths"]

    for path in (
        "/api/policies/",
        "/api/policies/{target}/",
        "/api/policies/{target}/history/",
        "/api/policies/export/",
        "/api/policies/import/",
        "/api/targets/{name}/",
    ):
        assert path in paths
