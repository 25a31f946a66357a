"""GET /metrics: Prometheus series of calls, sagas, breakers and bulkheads."""

import pytest
from django.test import Client
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from controlplane import metrics
from controlplane.tracing import CountingBatchSpanProcessor
from resilience.models import Policy, Target

SERIES = [
    "controlplane_calls_total",
    "controlplane_rejections_total",
    "controlplane_saga_runs_total",
    "controlplane_saga_run_duration_seconds_bucket",
    "controlplane_saga_step_duration_seconds_bucket",
    "controlplane_breaker_state",
    "controlplane_bulkhead_in_use",
]


@pytest.mark.django_db
def test_metrics_lists_every_series() -> None:
    target = Target.objects.create(name="payment", base_url="http://127.0.0.1:9/")
    Policy.objects.create(
        target=target,
        config={
            "circuit_breaker": {},
            "bulkhead": {"max_concurrent_calls": 3},
            "retry": {},
            "timeout": {},
        },
    )
    metrics.record_call("payment", "succeeded", None)
    metrics.record_call("payment", "rejected", "circuit_breaker")
    metrics.SAGA_RUNS.labels("running").inc()
    metrics.RUN_DURATION.labels("completed").observe(1.5)
    metrics.STEP_DURATION.labels("saga.step").observe(0.2)

    response = Client().get("/metrics")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    for series in SERIES:
        assert series in text, series
    assert 'controlplane_breaker_state{state="closed",target="payment"} 1.0' in text
    assert 'controlplane_breaker_state{state="open",target="payment"} 0.0' in text
    assert 'controlplane_bulkhead_in_use{target="payment"} 0.0' in text
    assert (
        'controlplane_rejections_total{stage="circuit_breaker",target="payment"}'
        in text
    )


class IdleExporter(SpanExporter):
    def export(self, spans: object) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def test_full_queue_counts_dropped_spans() -> None:
    from opentelemetry.sdk.trace import TracerProvider

    processor = CountingBatchSpanProcessor(
        IdleExporter(),
        max_queue_size=2,
        max_export_batch_size=2,
        schedule_delay_millis=60_000,
    )
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer(__name__)
    before = metrics.SPANS_DROPPED._value.get()

    # Holding the export lock keeps the worker thread from draining the
    # queue, so the burst overflows it deterministically.
    with processor._batch_processor._export_lock:
        for _ in range(5):
            with tracer.start_as_current_span("burst"):
                pass

    assert processor.dropped == 3
    assert metrics.SPANS_DROPPED._value.get() - before == 3
    processor.shutdown()
