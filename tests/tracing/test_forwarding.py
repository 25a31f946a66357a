"""POST /demo/tracecontext/: forwards with this service's trace headers."""

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.test import Client
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, format_span_id

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


class Capture(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        Capture.received.append(
            {
                "path": self.path,
                "traceparent": self.headers.get_all("traceparent") or [],
                "tracestate": self.headers.get("tracestate"),
                "body": json.loads(self.rfile.read(length) or b"null"),
            }
        )
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def callback_url() -> Iterator[str]:
    Capture.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Capture)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def post(body: Any, **headers: str) -> Any:
    return Client().post(
        "/demo/tracecontext/",
        data=json.dumps(body),
        content_type="application/json",
        headers=headers,
    )


def test_forward_continues_trace(
    finished_spans: InMemorySpanExporter, callback_url: str
) -> None:
    instructions = [
        {"url": f"{callback_url}/a", "arguments": [{"url": "x", "arguments": []}]},
        {"url": f"{callback_url}/b", "arguments": []},
    ]

    response = post(
        instructions,
        traceparent=f"00-{TRACE_ID}-{PARENT_ID}-01",
        tracestate="foo=1,bar=2",
    )

    assert response.status_code == 200
    assert [r["path"] for r in Capture.received] == ["/a", "/b"]
    assert Capture.received[0]["body"] == [{"url": "x", "arguments": []}]
    client_ids = {
        format_span_id(s.context.span_id)
        for s in finished_spans.get_finished_spans()
        if s.kind == SpanKind.CLIENT
    }
    for request in Capture.received:
        assert len(request["traceparent"]) == 1
        version, trace_id, parent_id, flags = request["traceparent"][0].split("-")
        assert (version, trace_id, flags) == ("00", TRACE_ID, "01")
        assert parent_id != PARENT_ID
        assert parent_id in client_ids
        assert request["tracestate"] == "foo=1,bar=2"


def test_forward_unsampled_keeps_flag(callback_url: str) -> None:
    response = post(
        [{"url": callback_url, "arguments": []}],
        traceparent=f"00-{TRACE_ID}-{PARENT_ID}-00",
    )

    assert response.status_code == 200
    traceparent = Capture.received[0]["traceparent"][0]
    _version, trace_id, parent_id, flags = traceparent.split("-")
    assert trace_id == TRACE_ID
    assert flags == "00"
    assert parent_id != PARENT_ID


def test_forward_invalid_traceparent_new_trace(callback_url: str) -> None:
    response = post(
        [{"url": callback_url, "arguments": []}],
        traceparent=f"00-{TRACE_ID.upper()}-{PARENT_ID}-01",
        tracestate="foo=1",
    )

    assert response.status_code == 200
    traceparent = Capture.received[0]["traceparent"][0]
    assert traceparent.split("-")[1] != TRACE_ID.lower()
    assert Capture.received[0]["tracestate"] is None


@pytest.mark.parametrize(
    "url",
    [
        "http://192.0.2.10/callback",
        "http://example.com/callback",
        "http://169.254.169.254/latest/",
        "http://[2001:db8::1]/x",
    ],
)
def test_forward_rejects_other_hosts(url: str) -> None:
    response = post([{"url": url, "arguments": []}])

    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert "not a loopback URL" in response.json()["detail"]


def test_forward_allows_any_host_when_set(settings: Any) -> None:
    from controlplane.traceforward import parse_instructions

    settings.TRACECONTEXT_ALLOW_ANY_HOST = True
    body = json.dumps([{"url": "http://192.0.2.10/x", "arguments": []}])

    assert parse_instructions(body.encode())[0]["url"] == "http://192.0.2.10/x"


@pytest.mark.parametrize(
    "body",
    [b"{", b'{"url": "http://127.0.0.1/"}', b'[{"arguments": []}]', b'["x"]'],
    ids=["not-json", "not-a-list", "missing-url", "item-not-object"],
)
def test_forward_rejects_bad_body(body: bytes) -> None:
    response = Client().post(
        "/demo/tracecontext/", data=body, content_type="application/json"
    )

    assert response.status_code == 400


def test_forward_accepts_localhost_and_ipv6(callback_url: str) -> None:
    from controlplane.traceforward import is_loopback

    assert is_loopback("http://localhost:7777/callback")
    assert is_loopback("http://[::1]:7777/callback")
    assert is_loopback("http://127.0.0.2/x")
    assert not is_loopback("http://127.0.0.1.example.com/x")
