"""One invalid policy rejects the whole import; a dry run saves nothing."""

from typing import Any

from rest_framework.test import APIClient

from resilience.models import AuditEntry, Policy, PolicyVersion, Target
from tests.policies.conftest import VALID_POLICY, field_errors


def document(**changes: Any) -> dict[str, Any]:
    return {
        "targets": [
            {"name": "payment", "base_url": "http://127.0.0.1:9/pay"},
            {"name": "billing", "base_url": "http://127.0.0.1:9/bill"},
        ],
        "policies": [
            {"target": "payment", **VALID_POLICY, **changes},
            {"target": "billing", "retry": {"max_attempts": 2}},
        ],
    }


def snapshot() -> tuple[Any, ...]:
    return (
        list(Target.objects.values_list("name", "base_url")),
        list(Policy.objects.values_list("target__name", "version", "config")),
        PolicyVersion.objects.count(),
        AuditEntry.objects.count(),
    )


def test_one_bad_policy_changes_nothing(
    operator_client: APIClient, target: Target
) -> None:
    operator_client.post("/api/policies/", {"target": "payment"}, format="json")
    doc = document()
    doc["policies"].append({"target": "billing-2", "retry": {"multiplier": 0.5}})
    doc["targets"].append({"name": "billing-2", "base_url": "http://127.0.0.1:9/"})
    before = snapshot()

    response = operator_client.post("/api/policies/import/", doc, format="json")

    assert response.status_code == 400
    errors = field_errors(response)
    assert "policies.2.retry.multiplier" in errors
    assert errors["policies.2.retry.multiplier"]["value"] == 0.5
    assert snapshot() == before


def test_bad_target_and_unknown_reference_named_by_index(
    operator_client: APIClient,
) -> None:
    doc = document()
    doc["targets"][1]["base_url"] = "http://169.254.169.254/"
    doc["policies"].append({"target": "ghost"})

    response = operator_client.post("/api/policies/import/", doc, format="json")

    assert response.status_code == 400
    errors = field_errors(response)
    assert "targets.1.base_url" in errors
    assert errors["policies.2.target"]["code"] == "does_not_exist"
    assert not Target.objects.exists()


def test_duplicate_entries_rejected(operator_client: APIClient) -> None:
    doc = document()
    doc["policies"].append({"target": "payment"})

    response = operator_client.post("/api/policies/import/", doc, format="json")

    assert response.status_code == 400
    assert field_errors(response)["policies.2.target"]["code"] == "duplicate"


def test_dry_run_reports_diff_and_saves_nothing(
    operator_client: APIClient, target: Target
) -> None:
    operator_client.post(
        "/api/policies/", {"target": "payment", **VALID_POLICY}, format="json"
    )
    doc = document(rate_limiter={"limit_for_period": 1, "limit_refresh_period": 60})
    before = snapshot()

    response = operator_client.post(
        "/api/policies/import/?dry_run=true", doc, format="json"
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["dry_run"] is True
    targets = {t["name"]: t for t in body["targets"]}
    assert targets["payment"]["action"] == "unchanged"
    assert targets["payment"]["diff"] == []
    assert targets["billing"]["action"] == "create"
    policies = {p["target"]: p for p in body["policies"]}
    changed = {d["path"]: d for d in policies["payment"]["diff"]}
    assert changed["rate_limiter.limit_for_period"] == {
        "path": "rate_limiter.limit_for_period",
        "old": 100,
        "new": 1,
    }
    assert policies["payment"]["version"] == 2
    assert policies["billing"]["action"] == "create"
    assert snapshot() == before


def test_bad_dry_run_flag_rejected(operator_client: APIClient) -> None:
    response = operator_client.post(
        "/api/policies/import/?dry_run=maybe", document(), format="json"
    )

    assert response.status_code == 400
    assert field_errors(response)["dry_run"]["code"] == "invalid"
