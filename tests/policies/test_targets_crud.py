"""Targets are created, read, replaced, patched and deleted by name."""

from rest_framework.test import APIClient

from resilience.models import Target
from tests.policies.conftest import field_errors


def test_target_lifecycle(operator_client: APIClient) -> None:
    created = operator_client.post(
        "/api/targets/",
        {"name": "billing", "base_url": "http://127.0.0.1:9000/billing"},
        format="json",
    )
    replaced = operator_client.put(
        "/api/targets/billing/",
        {"name": "billing", "base_url": "http://127.0.0.1:9001/billing"},
        format="json",
    )
    patched = operator_client.patch(
        "/api/targets/billing/", {"description": "Invoices"}, format="json"
    )
    listed = operator_client.get("/api/targets/")
    fetched = operator_client.get("/api/targets/billing/")
    deleted = operator_client.delete("/api/targets/billing/")

    assert created.status_code == 201
    assert replaced.status_code == 200
    assert replaced.json()["base_url"] == "http://127.0.0.1:9001/billing"
    assert patched.status_code == 200
    assert patched.json()["description"] == "Invoices"
    assert [t["name"] for t in listed.json()["results"]] == ["billing"]
    assert fetched.json()["description"] == "Invoices"
    assert deleted.status_code == 204
    assert not Target.objects.exists()
    assert operator_client.get("/api/targets/billing/").status_code == 404


def test_target_name_cannot_change(operator_client: APIClient, target: Target) -> None:
    response = operator_client.patch(
        "/api/targets/payment/", {"name": "payments"}, format="json"
    )

    assert response.status_code == 400
    assert field_errors(response)["name"]["code"] == "immutable"


def test_duplicate_and_reserved_names_rejected(
    operator_client: APIClient, target: Target
) -> None:
    duplicate = operator_client.post(
        "/api/targets/",
        {"name": "payment", "base_url": "http://127.0.0.1:9/"},
        format="json",
    )
    reserved = operator_client.post(
        "/api/targets/",
        {"name": "export", "base_url": "http://127.0.0.1:9/"},
        format="json",
    )

    assert duplicate.status_code == 400
    assert field_errors(duplicate)["name"]["code"] == "unique"
    assert reserved.status_code == 400
    assert field_errors(reserved)["name"]["code"] == "reserved"


def test_unknown_target_field_rejected(operator_client: APIClient) -> None:
    response = operator_client.post(
        "/api/targets/",
        {"name": "billing", "base_url": "http://127.0.0.1:9/", "timeout": 3},
        format="json",
    )

    assert response.status_code == 400
    assert field_errors(response)["timeout"]["code"] == "unknown_field"
