"""POST /api/runs/<id>/cancel/, retry/ and resolve/: roles and statuses."""

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from sagas.models import RunStatus, SagaDefinition, SagaRun, TccTransaction
from sagas.tcc_definitions import ORDER_TCC


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


@pytest.mark.parametrize(
    ("action", "body"),
    [("cancel", {"force": True}), ("resolve", {"note": "done", "extra": 1})],
)
def test_action_rejects_unknown_field(
    operator_client: APIClient, run: SagaRun, action: str, body: dict[str, Any]
) -> None:
    SagaRun.objects.filter(pk=run.pk).update(
        status=RunStatus.COMPENSATION_FAILED
        if action == "resolve"
        else RunStatus.PENDING,
        needs_attention=action == "resolve",
    )

    response = post(operator_client, run, action, body)

    assert response.status_code == 400, response.content
    [error] = response.json()["errors"]
    assert error["code"] == "unknown_field"
    assert error["field"] in body
    before = run.status_changes.count()
    run.refresh_from_db()
    assert run.status_changes.count() == before
    assert run.resolved_at is None


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


# --- TCC runs that need attention --------------------------------------------


@pytest.fixture
def advanced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Collect the run ids whose TCC coordinator is enqueued."""
    enqueued: list[str] = []
    monkeypatch.setattr(
        "sagas.tcc.enqueue_advance", lambda run_id: enqueued.append(str(run_id))
    )
    return enqueued


@pytest.fixture
def stuck_tcc(db: Any, advanced: list[str]) -> SagaRun:
    """A TCC run whose phase two gave up after a commit decision."""
    fields = {k: ORDER_TCC[k] for k in ("name", "kind", "input_schema", "steps")}
    definition = SagaDefinition.objects.create(**fields)
    run = SagaRun.objects.create(
        definition=definition,
        steps_snapshot=definition.steps,
        status=RunStatus.NEEDS_ATTENTION,
        needs_attention=True,
        error="phase two (confirm) did not finish within 3600 s",
        finished_at=timezone.now(),
    )
    TccTransaction.objects.create(
        run=run,
        try_deadline=timezone.now(),
        decision=TccTransaction.Decision.COMMIT,
        decided_at=timezone.now() - timedelta(hours=2),
        phase_two_deadline=timezone.now() - timedelta(hours=1),
    )
    return run


def test_tcc_retry_resumes_phase_two(
    operator_client: APIClient,
    stuck_tcc: SagaRun,
    advanced: list[str],
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = post(operator_client, stuck_tcc, "retry")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "confirming"
    assert body["needs_attention"] is False
    assert body["error"] == ""
    assert body["decision"]["decision"] == "commit"
    assert body["history"][-1]["reason"] == "phase two (confirm) retried by olivia"
    record = TccTransaction.objects.get(pk=stuck_tcc.pk)
    assert record.decision == "commit"
    assert record.phase_two_deadline is not None
    assert record.phase_two_deadline > timezone.now()
    assert advanced == [str(stuck_tcc.pk)]


def test_tcc_retry_twice_conflicts(
    operator_client: APIClient, stuck_tcc: SagaRun
) -> None:
    first = post(operator_client, stuck_tcc, "retry")
    second = post(operator_client, stuck_tcc, "retry")

    assert first.status_code == 200, first.content
    assert second.status_code == 409
    assert second.json()["code"] == "run_status_conflict"
    assert "this one is confirming" in second.json()["detail"]


def test_tcc_retry_without_decision_conflicts(
    operator_client: APIClient, stuck_tcc: SagaRun
) -> None:
    TccTransaction.objects.filter(pk=stuck_tcc.pk).update(decision="")

    response = post(operator_client, stuck_tcc, "retry")

    assert response.status_code == 409
    assert "after its decision" in response.json()["detail"]
    stuck_tcc.refresh_from_db()
    assert stuck_tcc.status == RunStatus.NEEDS_ATTENTION


def test_tcc_resolve_needs_note_and_blocks_retry(
    operator_client: APIClient, stuck_tcc: SagaRun
) -> None:
    missing = post(operator_client, stuck_tcc, "resolve", {"note": "  "})
    resolved = post(
        operator_client, stuck_tcc, "resolve", {"note": "confirmed by hand"}
    )
    retried = post(operator_client, stuck_tcc, "retry")

    assert missing.status_code == 400
    assert missing.json()["errors"][0]["field"] == "note"
    assert resolved.status_code == 200, resolved.content
    assert resolved.json()["status"] == "needs_attention"
    assert resolved.json()["needs_attention"] is False
    assert resolved.json()["history"][-1]["reason"] == (
        "resolved by olivia: confirmed by hand"
    )
    assert retried.status_code == 409
    assert "already resolved" in retried.json()["detail"]
    stuck_tcc.refresh_from_db()
    assert stuck_tcc.resolution_note == "confirmed by hand"
    assert stuck_tcc.resolved_by is not None


@pytest.mark.parametrize("action", ["retry", "resolve"])
def test_reader_cannot_act_on_tcc_run(
    reader_client: APIClient, stuck_tcc: SagaRun, action: str
) -> None:
    response = post(reader_client, stuck_tcc, action, {"note": "done"})

    assert response.status_code == 403
    stuck_tcc.refresh_from_db()
    assert stuck_tcc.status == RunStatus.NEEDS_ATTENTION
    assert stuck_tcc.needs_attention is True
