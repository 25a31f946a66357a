"""Export, wipe and import give back the same targets and policies."""

import json
from typing import Any

import pytest
import yaml
from rest_framework.test import APIClient

from resilience.models import Policy, PolicyVersion, Target
from tests.policies.conftest import VALID_POLICY


@pytest.fixture
def populated(operator_client: APIClient) -> None:
    for name, port in (("payment", 9001), ("shipping", 9002)):
        operator_client.post(
            "/api/targets/",
            {"name": name, "base_url": f"http://127.0.0.1:{port}/{name}"},
            format="json",
        )
    operator_client.post(
        "/api/policies/", {"target": "payment", **VALID_POLICY}, format="json"
    )
    operator_client.post(
        "/api/policies/",
        {"target": "shipping", "bulkhead": {"max_concurrent_calls": 5}},
        format="json",
    )


def export(client: APIClient, fmt: str) -> Any:
    response = client.get(f"/api/policies/export/?format={fmt}")
    assert response.status_code == 200, response.content
    if fmt == "yaml":
        assert response["Content-Type"].startswith("application/yaml")
        return yaml.safe_load(response.content)
    return json.loads(response.content)


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_round_trip(operator_client: APIClient, populated: None, fmt: str) -> None:
    before = export(operator_client, fmt)
    Target.objects.all().delete()
    body = before if fmt == "json" else yaml.safe_dump(before)
    content_type = "application/json" if fmt == "json" else "application/yaml"

    response = operator_client.post(
        "/api/policies/import/",
        json.dumps(body) if fmt == "json" else body,
        content_type=content_type,
    )

    assert response.status_code == 200, response.content
    assert [p["action"] for p in response.json()["policies"]] == ["create", "create"]
    assert export(operator_client, fmt) == before
    assert Policy.objects.count() == 2
    assert PolicyVersion.objects.filter(action="import").count() == 2


def test_export_contents(operator_client: APIClient, populated: None) -> None:
    document = export(operator_client, "json")

    assert [t["name"] for t in document["targets"]] == ["payment", "shipping"]
    payment = document["policies"][0]
    assert payment["target"] == "payment"
    assert payment["circuit_breaker"]["sliding_window_size"] == 20
    assert payment["bulkhead"] is None
    assert "version" not in payment


def test_unknown_export_format_rejected(operator_client: APIClient) -> None:
    response = operator_client.get("/api/policies/export/?format=xml")

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "format"


def test_yaml_aliases_rejected(operator_client: APIClient) -> None:
    document = "targets: &t []\npolicies: *t\n"

    response = operator_client.post(
        "/api/policies/import/", document, content_type="application/yaml"
    )

    assert response.status_code == 400
    assert "aliases" in response.json()["detail"]
