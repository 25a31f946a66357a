"""X-Request-ID: accepted when valid, generated otherwise, always echoed."""

import re

import pytest
from django.test import Client
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind


def post(request_id: str | None = None) -> str:
    headers = {} if request_id is None else {"X-Request-ID": request_id}
    response = Client().post(
        "/demo/tracecontext/",
        data=b"[]",
        content_type="application/json",
        headers=headers,
    )
    assert response.status_code == 200
    return str(response["X-Request-ID"])


@pytest.mark.parametrize("value", ["abc", "A.b_c-1", "x" * 200, "0"])
def test_valid_request_id_is_echoed(value: str) -> None:
    echoed = post(value)

    assert echoed == value


@pytest.mark.parametrize(
    "value", ["", "x" * 201, "has space", "semi;colon", "caf\u00e9", "a/b"]
)
def test_invalid_request_id_is_replaced(value: str) -> None:
    echoed = post(value)

    assert echoed != value
    assert re.fullmatch(r"[0-9a-f]{32}", echoed)


def test_missing_request_id_is_generated() -> None:
    first = post()
    second = post()

    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert first != second


def test_request_id_on_server_span(finished_spans: InMemorySpanExporter) -> None:
    post("req-42")

    server = next(
        s for s in finished_spans.get_finished_spans() if s.kind == SpanKind.SERVER
    )
    assert server.attributes is not None
    assert server.attributes["http.request.header.x_request_id"] == "req-42"
