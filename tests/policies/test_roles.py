"""Anyone logged in reads policies and targets; only operators write them."""

import pytest
from rest_framework.test import APIClient

from resilience.models import AuditEntry, Target

WRITES: list[tuple[str, str, dict[str, object] | None]] = [
    ("post", "/api/targets/", {"name": "billing", "base_url": "http://127.0.0.1:9/"}),
    ("patch", "/api/targets/payment/", {"description": "card payments"}),
    ("delete", "/api/targets/payment/", None),
    ("post", "/api/policies/", {"target": "payment"}),
    ("post", "/api/policies/import/", {"targets": [], "policies": []}),
]
READS = [
    "/api/targets/",
    "/api/targets/payment/",
    "/api/policies/",
    "/api/policies/export/",
]


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
def test_anonymous_write_gets_401(
    anonymous_client: APIClient, target: Target, method: str, path: str, body: object
) -> None:
    response = getattr(anonymous_client, method)(path, body, format="json")

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert not AuditEntry.objects.exists()


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
def test_reader_write_gets_403(
    reader_client: APIClient, target: Target, method: str, path: str, body: object
) -> None:
    response = getattr(reader_client, method)(path, body, format="json")

    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert not AuditEntry.objects.exists()


@pytest.mark.parametrize("path", READS)
def test_reader_reads(reader_client: APIClient, target: Target, path: str) -> None:
    assert reader_client.get(path).status_code == 200


@pytest.mark.parametrize("path", READS)
def test_anonymous_read_gets_401(
    anonymous_client: APIClient, target: Target, path: str
) -> None:
    assert anonymous_client.get(path).status_code == 401


def test_operator_write_is_audited(operator_client: APIClient, target: Target) -> None:
    response = operator_client.patch(
        "/api/targets/payment/", {"description": "card payments"}, format="json"
    )

    assert response.status_code == 200
    entry = AuditEntry.objects.get()
    assert entry.username == "olivia"
    assert entry.action == "update"
    assert entry.object_type == "target"
    assert entry.object_name == "payment"
    assert "description" in entry.summary
