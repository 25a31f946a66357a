"""The database exporter, GET /api/traces/<id>/, the trace page and the purge."""

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import Status, StatusCode
from rest_framework.test import APIClient

from controlplane.models import Span
from controlplane.spans import DatabaseSpanExporter, purge_old_spans

pytestmark = pytest.mark.django_db

RUN_ID = "3d8e5c1e-8f2f-4a59-9d0a-52c5e9b6f0aa"


def make_trace(spans: InMemorySpanExporter) -> str:
    """End a small trace: a root, a step with an error event, an attempt."""
    tracer = trace.get_tracer(__name__)
    with tracer.start_as_current_span("saga.run order") as root:
        root.set_attribute("saga.run_id", RUN_ID)
        with tracer.start_as_current_span("saga.step charge") as step:
            step.add_event("resilience.breaker.rejected", {"state": "open"})
            step.set_status(Status(StatusCode.ERROR, "rejected by circuit_breaker"))
            with tracer.start_as_current_span("saga.attempt"):
                pass
    return trace.format_trace_id(root.get_span_context().trace_id)


@pytest.fixture
def stored_trace(finished_spans: InMemorySpanExporter, settings: Any) -> str:
    settings.TRACING_DATABASE_EXPORT = True
    trace_id = make_trace(finished_spans)
    result = DatabaseSpanExporter().export(finished_spans.get_finished_spans())
    assert result == SpanExportResult.SUCCESS
    return trace_id


@pytest.fixture
def api() -> APIClient:
    client = APIClient()
    client.force_authenticate(User.objects.create_user("tracy"))
    return client


def test_exporter_stores_rows(stored_trace: str) -> None:
    rows = {row.name: row for row in Span.objects.filter(trace_id=stored_trace)}

    assert set(rows) == {"saga.run order", "saga.step charge", "saga.attempt"}
    root, step = rows["saga.run order"], rows["saga.step charge"]
    assert root.parent_span_id == ""
    assert step.parent_span_id == root.span_id
    assert rows["saga.attempt"].parent_span_id == step.span_id
    assert str(root.run_id) == RUN_ID
    assert step.run_id is None
    assert step.status == "error"
    assert step.status_message == "rejected by circuit_breaker"
    assert step.events[0]["name"] == "resilience.breaker.rejected"
    assert step.events[0]["attributes"] == {"state": "open"}
    assert root.kind == "internal"
    assert root.service.startswith("controlplane")
    assert root.duration_ms >= 0
    assert root.end >= root.start


def test_exporter_off_stores_nothing(
    finished_spans: InMemorySpanExporter, settings: Any
) -> None:
    settings.TRACING_DATABASE_EXPORT = False
    make_trace(finished_spans)

    result = DatabaseSpanExporter().export(finished_spans.get_finished_spans())

    assert result == SpanExportResult.SUCCESS
    assert not Span.objects.exists()


def test_exporter_failure_is_reported_not_raised(
    finished_spans: InMemorySpanExporter, settings: Any
) -> None:
    settings.TRACING_DATABASE_EXPORT = True
    make_trace(finished_spans)
    exporter = DatabaseSpanExporter(database="missing")

    result = exporter.export(finished_spans.get_finished_spans())

    assert result == SpanExportResult.FAILURE
    assert exporter.failed_batches == 1


def test_trace_api_returns_tree(stored_trace: str, api: APIClient) -> None:
    response = api.get(f"/api/traces/{stored_trace}/")

    assert response.status_code == 200
    body = response.json()
    assert body["trace_id"] == stored_trace
    assert body["span_count"] == 3
    assert body["run_ids"] == [RUN_ID]
    [root] = body["spans"]
    assert root["name"] == "saga.run order"
    assert root["parent"] is None
    [step] = root["children"]
    assert step["parent"] == root["id"]
    assert step["status"] == "error"
    assert step["events"][0]["name"] == "resilience.breaker.rejected"
    assert [c["name"] for c in step["children"]] == ["saga.attempt"]
    for key in ("service", "start", "duration_ms", "attributes", "kind"):
        assert key in step


def test_trace_api_unknown_is_404(api: APIClient) -> None:
    response = api.get(f"/api/traces/{uuid.uuid4().hex}/")

    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "not_found"


@pytest.mark.parametrize(
    "trace_id", ["xyz", "0" * 32, "a" * 31, "a" * 33, "g" * 32, "-" * 32]
)
def test_trace_api_malformed_is_400(api: APIClient, trace_id: str) -> None:
    response = api.get(f"/api/traces/{trace_id}/")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_trace_id"


def test_trace_api_needs_login(stored_trace: str) -> None:
    assert APIClient().get(f"/api/traces/{stored_trace}/").status_code == 401


def test_trace_page_renders(stored_trace: str) -> None:
    client = Client()
    client.force_login(User.objects.create_user("paige"))
    spans = {s.name: s for s in Span.objects.filter(trace_id=stored_trace)}

    response = client.get(f"/traces/{stored_trace}/")

    assert response.status_code == 200
    html = response.content.decode()
    for span in spans.values():
        assert f'<details id="span-{span.span_id}">' in html
    assert "status-error" in html
    assert "resilience.breaker.rejected" in html
    assert f"/runs/{RUN_ID}/" in html


def test_trace_page_unknown_and_malformed() -> None:
    client = Client()
    client.force_login(User.objects.create_user("paige"))

    assert client.get(f"/traces/{'a' * 32}/").status_code == 404
    assert client.get("/traces/nope/").status_code == 400


def test_purge_deletes_only_old_spans(stored_trace: str, settings: Any) -> None:
    settings.SPAN_RETENTION_SECONDS = 3600
    old = Span.objects.filter(trace_id=stored_trace).first()
    assert old is not None
    Span.objects.filter(pk=old.pk).update(start=timezone.now() - timedelta(hours=2))

    purged = purge_old_spans()

    assert purged == 1
    assert Span.objects.filter(trace_id=stored_trace).count() == 2


def test_purge_task_is_scheduled(settings: Any) -> None:
    schedule = settings.CELERY_BEAT_SCHEDULE["purge-spans"]

    assert schedule["task"] == "controlplane.purge_spans"
