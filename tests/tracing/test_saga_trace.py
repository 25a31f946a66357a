"""A saga run is one trace, across the web server, a Celery worker and HTTP.

The stack is the whole control plane started by the launcher; spans reach
the database about a second after they end, so each test polls the trace
until the spans it expects are stored.
"""

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from opentelemetry.instrumentation.utils import suppress_http_instrumentation

from tests.stack import Stack

pytestmark = pytest.mark.stack

ORDER_INPUT = {
    "customer_id": "customer-tracing",
    "product_id": "sku-1",
    "quantity": 1,
    "amount": "10.00",
}
STEP_COUNT = 5


def start_run(stack: Stack, traceparent: str) -> dict[str, Any]:
    # This process instruments requests too, which would replace the
    # traceparent header with one of its own client span.
    with suppress_http_instrumentation():
        response = stack.post(
            "/api/runs/",
            json={"saga": "order", "input": ORDER_INPUT},
            headers={"Idempotency-Key": str(uuid.uuid4()), "traceparent": traceparent},
        )
    assert response.status_code == 201, response.text
    return dict(response.json())


def walk(nodes: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for node in nodes:
        yield node
        yield from walk(node["children"])


def wait_for_trace(
    stack: Stack,
    trace_id: str,
    ready: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 30.0,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = stack.get(f"/api/traces/{trace_id}/")
        if response.status_code == 200:
            body = response.json()
            if ready(list(walk(body["spans"]))):
                return body
        time.sleep(0.5)
    raise AssertionError(f"trace {trace_id} incomplete after {timeout}s: {body}")


def names(spans: list[dict[str, Any]], prefix: str) -> list[str]:
    return [s["name"] for s in spans if s["name"].startswith(prefix)]


def test_run_is_one_trace(stack: Stack) -> None:
    trace_id = uuid.uuid4().hex
    caller_span = "a1b2c3d4e5f60718"
    started = start_run(stack, f"00-{trace_id}-{caller_span}-01")
    run = stack.wait_for_run(started["id"])
    assert run["status"] == "completed", run
    assert started["trace_id"] == trace_id
    assert run["trace_id"] == trace_id

    def complete(spans: list[dict[str, Any]]) -> bool:
        return (
            len(names(spans, "saga.step ")) == STEP_COUNT
            and len(names(spans, "saga.attempt")) >= STEP_COUNT
            and sum(s["kind"] == "client" for s in spans) >= STEP_COUNT
            # The API's, the run's and the demo services' spans come from
            # the web server's processes, each exporting on its own schedule.
            and any(s["service"].startswith("demo-") for s in spans)
            and any(s["name"] == "saga.run order" for s in spans)
            and any(s["parent"] == caller_span for s in spans)
        )

    body = wait_for_trace(stack, trace_id, complete)
    spans = list(walk(body["spans"]))

    # One tree: a single root, the API request span, child of the caller.
    assert len(body["spans"]) == 1, [s["name"] for s in body["spans"]]
    root = body["spans"][0]
    assert root["parent"] == caller_span
    assert root["kind"] == "server"
    assert root["attributes"].get("http.method") == "POST"
    assert started["id"] in body["run_ids"]
    by_id = {s["id"]: s for s in spans}
    assert len(by_id) == len(spans)
    for span in spans:
        if span is not root:
            assert span["parent"] in by_id, span

    [run_span] = [s for s in spans if s["name"] == "saga.run order"]
    assert run_span["parent"] == root["id"]
    for step in (s for s in spans if s["name"].startswith("saga.step ")):
        assert step["parent"] == run_span["id"]
        assert step["attributes"]["saga.run_id"] == started["id"]
        assert "saga.step" in step["attributes"]
    for attempt in (s for s in spans if s["name"] == "saga.attempt"):
        assert by_id[attempt["parent"]]["name"].startswith("saga.")
        children = [c["kind"] for c in attempt["children"]]
        assert "client" in children
    services = {s["service"] for s in spans}
    assert "controlplane-worker" in services
    assert "controlplane-web" in services
    assert any(name.startswith("demo-") for name in services)


def test_compensation_sits_under_run(stack: Stack) -> None:
    trace_id = uuid.uuid4().hex
    stack.set_fault("payment", error_rate=1.0, latency_ms=0)
    try:
        started = start_run(stack, f"00-{trace_id}-{'b' * 16}-01")
        run = stack.wait_for_run(started["id"])
    finally:
        stack.set_fault("payment", error_rate=0.0, latency_ms=0)
    assert run["status"] == "compensated", run
    assert run["trace_id"] == trace_id

    def compensated(spans: list[dict[str, Any]]) -> bool:
        # Each process exports on its own schedule, so the run's span (from
        # the web server) and the failed step's span may be stored after
        # the compensations.
        failed = [s for s in spans if s["name"] == "saga.step charge_payment"]
        return (
            len(names(spans, "saga.compensation ")) >= 2
            and any(s["name"] == "saga.run order" for s in spans)
            and any(c["name"] == "saga.attempt" for s in failed for c in s["children"])
        )

    body = wait_for_trace(stack, trace_id, compensated)
    spans = list(walk(body["spans"]))
    [run_span] = [s for s in spans if s["name"] == "saga.run order"]
    compensations = [s for s in spans if s["name"].startswith("saga.compensation ")]

    for compensation in compensations:
        assert compensation["parent"] == run_span["id"]
        assert compensation["attributes"]["saga.run_id"] == started["id"]
    failed_step = next(s for s in spans if s["name"] == "saga.step charge_payment")
    attempts = [c for c in failed_step["children"] if c["name"] == "saga.attempt"]
    assert attempts
    assert all(a["status"] == "error" for a in attempts)
    events = [e["name"] for e in failed_step["events"]]
    assert "resilience.retry.scheduled" in events


def test_malformed_traceparent_starts_new_trace(stack: Stack) -> None:
    given = uuid.uuid4().hex
    started = start_run(stack, f"00-{given.upper()}-{'c' * 16}-01")

    assert started["trace_id"]
    assert started["trace_id"] != given
    assert started["trace_id"] != given.upper()
    run = stack.wait_for_run(started["id"])
    assert run["trace_id"] == started["trace_id"]


def test_metrics_and_request_id(stack: Stack) -> None:
    response = requests.get(
        stack.url("/metrics"), headers={"X-Request-ID": "e2e-1"}, timeout=10
    )

    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "e2e-1"
    for series in (
        "controlplane_calls_total",
        "controlplane_saga_runs_total",
        "controlplane_saga_step_duration_seconds_bucket",
        "controlplane_breaker_state",
        "controlplane_bulkhead_in_use",
    ):
        assert series in response.text, series
