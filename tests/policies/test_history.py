"""Every create, update and delete of a policy is a version with its diff."""

from typing import Any

from rest_framework.test import APIClient

from resilience.models import AuditEntry, Policy, PolicyVersion, Target
from tests.policies.conftest import VALID_POLICY


def history(client: APIClient, name: str) -> list[dict[str, Any]]:
    response = client.get(f"/api/policies/{name}/history/")
    assert response.status_code == 200, response.content
    return list(response.json()["results"])


def test_history_after_create_update_delete(
    operator_client: APIClient, reader_client: APIClient, target: Target
) -> None:
    created = operator_client.post(
        "/api/policies/", {"target": target.name, **VALID_POLICY}, format="json"
    )
    updated = operator_client.patch(
        "/api/policies/payment/",
        {"circuit_breaker": {"failure_rate_threshold": 25}, "bulkhead": {}},
        format="json",
    )
    deleted = operator_client.delete("/api/policies/payment/")

    assert created.status_code == 201
    assert created.json()["version"] == 1
    assert updated.status_code == 200
    assert updated.json()["version"] == 2
    assert deleted.status_code == 204
    assert not Policy.objects.exists()

    versions = history(reader_client, "payment")
    assert [v["version"] for v in versions] == [3, 2, 1]
    assert [v["action"] for v in versions] == ["delete", "update", "create"]
    assert all(v["changed_by"] == "olivia" for v in versions)
    assert all(v["changed_at"] for v in versions)
    assert versions[2]["config"]["circuit_breaker"]["failure_rate_threshold"] == 50.0
    assert versions[0]["config"] is None

    update_diff = {d["path"]: d for d in versions[1]["diff"]}
    assert update_diff["circuit_breaker.failure_rate_threshold"]["old"] == 50.0
    assert update_diff["circuit_breaker.failure_rate_threshold"]["new"] == 25.0
    assert update_diff["bulkhead"]["old"] is None
    assert update_diff["bulkhead"]["new"]["max_concurrent_calls"] == 25
    assert len(update_diff) == 2

    actions = list(
        AuditEntry.objects.filter(object_type="policy")
        .order_by("at", "id")
        .values_list("action", flat=True)
    )
    assert actions == ["create", "update", "delete"]


def test_unchanged_save_keeps_version(
    operator_client: APIClient, target: Target
) -> None:
    operator_client.post(
        "/api/policies/", {"target": target.name, **VALID_POLICY}, format="json"
    )

    response = operator_client.put(
        "/api/policies/payment/", VALID_POLICY, format="json"
    )

    assert response.status_code == 200
    assert response.json()["version"] == 1
    assert PolicyVersion.objects.count() == 1


def test_version_grows_after_delete_and_create(
    operator_client: APIClient, target: Target
) -> None:
    operator_client.post("/api/policies/", {"target": target.name}, format="json")
    operator_client.delete("/api/policies/payment/")

    again = operator_client.post(
        "/api/policies/", {"target": target.name}, format="json"
    )

    assert again.json()["version"] == 3


def test_deleting_target_records_policy_deletion(
    operator_client: APIClient, target: Target
) -> None:
    operator_client.post("/api/policies/", {"target": target.name}, format="json")

    response = operator_client.delete("/api/targets/payment/")

    assert response.status_code == 204
    last = PolicyVersion.objects.filter(target_name="payment").first()
    assert last is not None
    assert last.action == "delete"
    assert history(operator_client, "payment")[0]["action"] == "delete"


def test_history_of_unknown_target_is_404(operator_client: APIClient) -> None:
    assert operator_client.get("/api/policies/ghost/history/").status_code == 404
