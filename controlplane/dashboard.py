"""Dashboard pages of the project: idempotency records, traces, the outbox."""

from datetime import datetime
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from rest_framework.exceptions import ValidationError

from controlplane import outbox
from controlplane.idempotency_api import filter_records
from controlplane.models import DownstreamKey, IdempotencyRecord, OutboxEvent
from controlplane.traces_api import parse_trace_id, trace_document

RECORDS_PER_PAGE = 25
# Narrowest timeline bar on the trace page, in percent of the trace's length.
MIN_BAR_PERCENT = 0.4
# Keys sent downstream shown without a run filter: the latest ones.
RECENT_DOWNSTREAM_KEYS = 20
FILTERS = (
    "key",
    "key_contains",
    "status",
    "route",
    "run",
    "created_after",
    "created_before",
)


@login_required
def idempotency_records(request: HttpRequest) -> HttpResponse:
    """List idempotency records with the API's filters, kept in the URL.

    With a ``run`` filter, the page also lists every key that the run's
    steps sent downstream and to which service.
    """
    filters = {name: request.GET.get(name, "").strip() for name in FILTERS}
    records = IdempotencyRecord.objects.select_related("user")
    errors: list[str] = []
    try:
        records = filter_records(records, filters)
    except ValidationError as exc:
        errors = _messages(exc.detail)
        records = records.none()

    downstream = DownstreamKey.objects.all()
    if filters["run"] and not errors:
        downstream = downstream.filter(run_id=filters["run"])
    else:
        downstream = downstream[:RECENT_DOWNSTREAM_KEYS]

    page = Paginator(records, RECORDS_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "filters": filters,
        "statuses": IdempotencyRecord.Status.values,
        "errors": errors,
        "downstream": downstream,
    }
    return render(
        request,
        "controlplane/idempotency.html",
        context,
        status=400 if errors else 200,
    )


def _messages(detail: object) -> list[str]:
    if not isinstance(detail, dict):
        return [str(detail)]
    return [
        f"{field}: {message}"
        for field, messages in detail.items()
        for message in (messages if isinstance(messages, list) else [messages])
    ]


@login_required
def trace_detail(request: HttpRequest, trace_id: str) -> HttpResponse:
    """Show a trace's span tree on a timeline, with each span's details."""
    parsed = parse_trace_id(trace_id)
    document = trace_document(parsed) if parsed else None
    context = {
        "trace_id": parsed or trace_id,
        "invalid": parsed is None,
        "rows": trace_rows(document["spans"]) if document else [],
        "document": document,
    }
    status = 200 if document else (400 if parsed is None else 404)
    return render(request, "controlplane/trace.html", context, status=status)


def trace_rows(roots: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flatten a span tree depth first, with each bar's offset and width in %.

    Offsets are relative to the earliest start in the trace and widths to
    the whole trace's length; a bar is never narrower than MIN_BAR_PERCENT
    so that instant spans stay visible.
    """
    flat: list[tuple[int, dict[str, Any]]] = []

    def visit(node: dict[str, Any], depth: int) -> None:
        flat.append((depth, node))
        for child in node["children"]:
            visit(child, depth + 1)

    for root in roots:
        visit(root, 0)
    starts = [datetime.fromisoformat(node["start"]) for _, node in flat]
    begin = min(starts)
    ends = [
        (start - begin).total_seconds() * 1000 + node["duration_ms"]
        for start, (_, node) in zip(starts, flat, strict=True)
    ]
    total_ms = max(max(ends), 0.001)
    rows = []
    for start, (depth, node) in zip(starts, flat, strict=True):
        offset_ms = (start - begin).total_seconds() * 1000
        rows.append(
            {
                "span": node,
                "depth": depth,
                "indent": depth * 1.2,
                "offset_ms": round(offset_ms, 1),
                "left": round(offset_ms / total_ms * 100, 3),
                "width": round(
                    max(node["duration_ms"] / total_ms * 100, MIN_BAR_PERCENT), 3
                ),
                "error": node["status"] == "error",
            }
        )
    return rows


# Unsent events shown on the outbox page: the oldest ones.
OLDEST_UNSENT_SHOWN = 20


@login_required
def outbox_page(request: HttpRequest) -> HttpResponse:
    """Show each service's outbox and inbox figures and the oldest unsent events."""
    unsent = OutboxEvent.objects.exclude(status=OutboxEvent.Status.SENT).order_by("id")
    context = {
        "services": outbox.summary(),
        "unsent": unsent[:OLDEST_UNSENT_SHOWN],
    }
    return render(request, "controlplane/outbox.html", context)
