"""GET /api/traces/<trace_id>/: the stored spans of one trace as a tree."""

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from controlplane.errors import problem
from controlplane.models import Span
from controlplane.spans import TRACE_ID_PATTERN, span_tree

INVALID_TRACE_ID = "0" * 32


def parse_trace_id(value: str) -> str | None:
    """Return the trace id in lowercase, or None unless it is 32 hex digits.

    The all-zero id is invalid in W3C Trace Context, so it never names a
    stored trace.
    """
    trace_id = value.lower()
    if not TRACE_ID_PATTERN.fullmatch(trace_id) or trace_id == INVALID_TRACE_ID:
        return None
    return trace_id


def trace_document(trace_id: str) -> dict[str, Any] | None:
    """Return the trace's spans as a tree, or None when none is stored."""
    spans = list(Span.objects.filter(trace_id=trace_id))
    if not spans:
        return None
    run_ids = sorted({str(span.run_id) for span in spans if span.run_id})
    return {
        "trace_id": trace_id,
        "span_count": len(spans),
        "run_ids": run_ids,
        "spans": span_tree(spans),
    }


class TraceView(APIView):
    """The spans of one trace, each with its children, earliest first."""

    @extend_schema(
        summary="Get a trace as a span tree",
        description=(
            "Each span has id, parent, service, name, kind, start (ISO 8601), "
            "duration_ms, status (unset, ok or error), attributes, events and "
            "children. A span whose parent is not stored is a root. Spans are "
            "stored about a second after they end, so a trace that is still "
            "running grows between two requests."
        ),
        responses={200: dict, 400: dict, 404: dict},
    )
    def get(self, request: Request, trace_id: str) -> Response:
        parsed = parse_trace_id(trace_id)
        if parsed is None:
            return problem(
                status.HTTP_400_BAD_REQUEST,
                "Invalid trace id.",
                f"'{trace_id[:64]}' is not a trace id: expected 32 hexadecimal "
                "digits, not all zero.",
                "invalid_trace_id",
            )
        document = trace_document(parsed)
        if document is None:
            return problem(
                status.HTTP_404_NOT_FOUND,
                "Not found.",
                f"No spans are stored for trace {parsed}; they may not be "
                "exported yet or may have been purged.",
                "not_found",
            )
        return Response(document)
