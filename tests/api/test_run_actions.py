"""POST /api/runs/<id>/cancel/, retry/ and resolve/: roles and statuses."""

from typing import Any

import pytest
from rest_framework.test import APIClient

from sagas.models import RunStatus, SagaDefinition, SagaRun


@pytest.fixture
def run(order_saga: SagaDefinition, monkeypatch: pytest.MonkeyPatch) -> SagaRun:
    monkeypatch.setattr("sagas.actions.enqueue_compensation", lambda run_id: None)
    return SagaRun.objects.create(
        definition=order_saga, steps_snapshot=order_saga.steps
    )


def post(client: APIClient, run: SagaRun, action: str, data: Any = None) -> Any:
    return client.post(f"/api/runs/{run.pk}/{action}/", data, format="json")


def test_operator_cancels_pending_run(operator_client: APIClient, run: SagaRun) -> None:
    response = post(operator_client, run, "cancel")

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "compensating"
    assert response.json()["history"][-1]["reason"] == "cancelled by olivia"


def test_reader_cannot_cancel(reader_client: APIClient, run: SagaRun) -> None:
    response = post(reader_client, run, "cancel")

    assert response.status_code == 403
    run.refresh_from_db()
    assert run.status == RunStatus.PENDING


def test_retry_needs_compensation_failed(
    operator_client: APIClient, run: SagaRun
) -> None:
    response = post(operator_client, run, "retry")

    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "run_status_conflict"
    assert "this one is pending" in body["detail"]


def test_resolve_requires_note(operator_client: APIClient, run: SagaRun) -> None:
    SagaRun.objects.filter(pk=run.pk).update(
        status=RunStatus.COMPENSATION_FAILED, needs_attention=True
    )

    missing = post(operator_client, run, "resolve", {})
    resolved = post(operator_client, run, "resolve", {"note": "refunded by hand"})

    assert missing.status_code == 400
    assert missing.json()["errors"][0]["field"] == "note"
    assert resolved.status_code == 200
    assert resolved.json()["needs_attention"] is False


def test_resolve_rejects_number_note(operator_client: APIClient, run: SagaRun) -> None:
    SagaRun.objects.filter(pk=run.pk).update(
        status=RunStatus.COMPENSATION_FAILED, needs_attention=True
    )

    response = post(operator_client, run, "resolve", {"note": 5})

    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error == {
        "field": "note",
        "code": "not_a_string",
        "message": "Must be a string, not int.",
        "value": 5,
    }
    run.refresh_from_db()
    assert run.needs_attention is True


def test_unknown_run_is_404(operator_client: APIClient, order_saga: Any) -> None:
    response = operator_client.post(
        "/api/runs/00000000-0000-0000-0000-000000000000/cancel/"
    )

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("created_after=yesterday", "created_after"),
        ("needs_attention=maybe", "needs_attention"),
        ("q=not-hex!", "q"),
        ("status=exploded", "status"),
    ],
)
def test_run_filters_reject_bad_values(
    reader_client: APIClient, query: str, field: str
) -> None:
    response = reader_client.get(f"/api/runs/?{query}")

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == field


@pytest.mark.parametrize(
    ("path", "query", "field", "code"),
    [
        ("/api/runs/", "foo=bar", "foo", "unknown_field"),
        ("/api/runs/", "statuss=completed", "statuss", "unknown_field"),
        ("/api/runs/", "status=bogus&status=completed", "status", "multiple_values"),
        ("/api/sagas/", "foo=bar", "foo", "unknown_field"),
    ],
)
def test_unknown_or_repeated_query_parameter_rejected(
    reader_client: APIClient, path: str, query: str, field: str, code: str
) -> None:
    response = reader_client.get(f"{path}?{query}")

    assert response.status_code == 400, response.content
    error = response.json()["errors"][0]
    assert (error["field"], error["code"]) == (field, code)
