"""Spans in the database: the exporter, the trace tree and the purge.

``DatabaseSpanExporter`` runs on the batch processor's thread, never on a
request or task thread, so a slow INSERT delays only the export. It never
raises into the SDK: a failed batch is logged (at most once a minute) and
reported as a failure, and its spans are lost.
"""

import logging
import re
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connections
from django.utils import timezone
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import format_span_id, format_trace_id

from controlplane.models import Span

logger = logging.getLogger(__name__)

TRACE_ID_PATTERN = re.compile(r"[0-9a-f]{32}")
# Server spans of the demo services, which share the web process, are
# stored under the service's own name.
_DEMO_PATH = re.compile(r"^/?demo/(?P<service>[a-z0-9_-]+)/")
# Minimum seconds between two warnings about failed exports.
EXPORT_WARNING_INTERVAL = 60.0


class DatabaseSpanExporter(SpanExporter):
    """Store finished spans as ``Span`` rows, one bulk INSERT per batch.

    The INSERT runs on this thread's own Django connection, which is
    checked (and replaced if broken or past CONN_MAX_AGE) before and after
    each batch. On SQLite every write takes the database lock up front
    (IMMEDIATE transactions), so a batch is one short INSERT with nothing
    else in its transaction.
    """

    def __init__(self, database: str = "default") -> None:
        self.database = database
        self.failed_batches = 0
        self._last_warning = 0.0
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not settings.TRACING_DATABASE_EXPORT or not spans:
            return SpanExportResult.SUCCESS
        try:
            rows = [span_row(span) for span in spans]
            connection = connections[self.database]
            # Inside a caller's transaction (a test calling export() directly)
            # the connection is the caller's to keep, not this thread's.
            owned = not connection.in_atomic_block
            if owned:
                connection.close_if_unusable_or_obsolete()
            try:
                Span.objects.using(self.database).bulk_create(rows)
            finally:
                if owned:
                    connection.close_if_unusable_or_obsolete()
        except Exception as exc:
            # Any error, not only DatabaseError: an exception here would
            # reach the SDK's worker thread, which only logs it.
            self._warn(len(spans), exc)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def _warn(self, count: int, exc: Exception) -> None:
        with self._lock:
            self.failed_batches += 1
            now = time.monotonic()
            if now - self._last_warning < EXPORT_WARNING_INTERVAL:
                return
            self._last_warning = now
            failed = self.failed_batches
        logger.warning(
            "span export to the database failed, %s spans lost "
            "(%s failed batches in this process): %s",
            count,
            failed,
            exc,
        )

    def shutdown(self) -> None:
        connections[self.database].close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def span_row(span: ReadableSpan) -> Span:
    """Convert a finished SDK span to an unsaved ``Span`` row."""
    context = span.get_span_context()
    if context is None:
        raise ValueError(f"span {span.name!r} has no span context")
    start_ns = span.start_time or 0
    end_ns = span.end_time or start_ns
    attributes = _json_attributes(span.attributes or {})
    parent = span.parent
    return Span(
        trace_id=format_trace_id(context.trace_id),
        span_id=format_span_id(context.span_id),
        parent_span_id=format_span_id(parent.span_id) if parent else "",
        name=span.name[:255],
        service=_service(span, attributes)[:64],
        kind=span.kind.name.lower(),
        start=_datetime(start_ns),
        end=_datetime(end_ns),
        duration_ms=(end_ns - start_ns) / 1e6,
        status=span.status.status_code.name.lower(),
        status_message=span.status.description or "",
        attributes=attributes,
        events=[
            {
                "name": event.name,
                "time": _datetime(event.timestamp).isoformat(),
                "attributes": _json_attributes(event.attributes or {}),
            }
            for event in span.events
        ],
        run_id=_run_id(attributes.get("saga.run_id")),
    )


def _datetime(nanoseconds: int) -> datetime:
    return datetime.fromtimestamp(nanoseconds / 1e9, UTC)


def _json_attributes(attributes: Any) -> dict[str, Any]:
    return {
        str(key): list(value) if isinstance(value, tuple) else value
        for key, value in dict(attributes).items()
    }


def _service(span: ReadableSpan, attributes: dict[str, Any]) -> str:
    if span.kind.name == "SERVER":
        for key in ("http.route", "http.target", "url.path"):
            match = _DEMO_PATH.match(str(attributes.get(key, "")))
            if match:
                return f"demo-{match['service']}"
    return str(span.resource.attributes.get("service.name", "unknown"))


def _run_id(value: Any) -> uuid.UUID | None:
    if not value:
        return None
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def span_tree(spans: Iterable[Span]) -> list[dict[str, Any]]:
    """Nest spans under their parents; return the roots, earliest first.

    A span whose parent is not stored (not exported yet, dropped, or in
    another service) becomes a root of its own.
    """
    nodes: dict[str, dict[str, Any]] = {}
    ordered = sorted(spans, key=lambda span: (span.start, span.pk or 0))
    for span in ordered:
        nodes[span.span_id] = {
            "id": span.span_id,
            "parent": span.parent_span_id or None,
            "service": span.service,
            "name": span.name,
            "kind": span.kind,
            "start": span.start.isoformat(),
            "duration_ms": round(span.duration_ms, 3),
            "status": span.status,
            "status_message": span.status_message,
            "attributes": span.attributes,
            "events": span.events,
            "run_id": str(span.run_id) if span.run_id else None,
            "children": [],
        }
    roots: list[dict[str, Any]] = []
    for node in nodes.values():
        parent = nodes.get(node["parent"] or "")
        if parent is None or parent is node:
            roots.append(node)
        else:
            parent["children"].append(node)
    return roots


def purge_old_spans(now: datetime | None = None) -> int:
    """Delete spans that started more than SPAN_RETENTION_SECONDS ago.

    Each DELETE removes at most SPAN_PURGE_BATCH_SIZE rows, so the purge
    never holds the write lock for long. Returns how many were deleted.
    """
    cutoff = (now or timezone.now()) - timedelta(
        seconds=settings.SPAN_RETENTION_SECONDS
    )
    batch_size = int(settings.SPAN_PURGE_BATCH_SIZE)
    purged = 0
    while True:
        batch = list(
            Span.objects.filter(start__lt=cutoff)
            .order_by("start")
            .values_list("pk", flat=True)[:batch_size]
        )
        if not batch:
            return purged
        deleted, _ = Span.objects.filter(pk__in=batch).delete()
        purged += deleted
