"""OpenTelemetry set-up of each process, and the spans of saga runs.

``configure()`` runs once per process from ``ControlPlaneConfig.ready()``:

1. A ``TracerProvider`` whose resource names the process (service.name
   ``controlplane-web``, ``-worker`` or ``-beat``, unless OTEL_SERVICE_NAME
   is set).
2. A bounded, batching processor that stores spans in the database
   (``controlplane.spans``); spans that find its queue full are dropped,
   counted and logged. An OTLP/HTTP exporter is added only when
   ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set.
3. The W3C Trace Context propagator, with the stricter rules below.
4. Django, requests and Celery instrumentation. In a Celery worker, Celery
   is instrumented in each pool process by the ``worker_process_init``
   signal, because the pool processes are forked after ``ready()``.

A saga run is one trace. ``start_run`` opens the "saga.run" span as a child
of the API request and stores its ``traceparent`` on the run. The span ends
when ``start_run`` returns, because a span object cannot move to the worker
processes. Each step, compensation and attempt then opens its span under
that stored context, so they all sit in the run's tree although they start
after the run span ended.
"""

import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery import signals
from django.conf import settings
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators import textmap
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import (
    TraceContextTextMapPropagator,
)

from controlplane.logging import current_run_id

logger = logging.getLogger(__name__)

TRACER_NAME = "controlplane"
# URLs whose requests get no server span: probes and scrapes, not work.
EXCLUDED_URLS = "healthz,metrics,static/"
# Minimum seconds between two warnings about dropped spans.
DROP_WARNING_INTERVAL = 60.0

_lock = threading.Lock()
_configured_pid: int | None = None
_provider: TracerProvider | None = None
_processor: "CountingBatchSpanProcessor | None" = None


class W3CTraceContextPropagator(TraceContextTextMapPropagator):
    """The SDK's W3C Trace Context propagator, strict about duplicates.

    The W3C Trace Context recommendation (Level 1, section 3.2) allows one
    ``traceparent`` per request and says a receiver that cannot parse it
    must start a new trace and must not use ``tracestate``. The SDK's
    propagator (opentelemetry-api 1.45) reads only the first value that the
    getter returns, so two ``traceparent`` header lines would continue the
    first trace. WSGI servers such as gunicorn join repeated header lines
    with a comma, which this class also treats as a duplicate: the field's
    grammar has no comma, although a future version's extra fields are not
    specified. Every other rule (lengths, lowercase hex, all-zero ids,
    version ff, extra fields of version 00, tracestate keys, values, 32
    members, 512 characters per member and duplicate keys) is the SDK's.
    """

    def extract(
        self,
        carrier: textmap.CarrierT,
        context: Context | None = None,
        getter: textmap.Getter[textmap.CarrierT] = textmap.default_getter,
    ) -> Context:
        values = getter.get(carrier, self._TRACEPARENT_HEADER_NAME)
        if values and (len(values) > 1 or "," in values[0]):
            logger.debug("duplicate traceparent headers: starting a new trace")
            return context if context is not None else Context()
        return super().extract(carrier, context, getter)


class CountingBatchSpanProcessor(BatchSpanProcessor):
    """A ``BatchSpanProcessor`` that counts the spans its full queue drops.

    The SDK drops a span when the queue holds ``max_queue_size`` spans and
    only logs it. This subclass looks at the queue length before handing a
    span over, so it can count the drop in ``dropped`` and in the
    ``controlplane_spans_dropped_total`` metric and log a rate-limited
    warning.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dropped = 0
        self._last_warning = 0.0

    def on_end(self, span: ReadableSpan) -> None:
        sampled = span.context is not None and span.context.trace_flags.sampled
        if sampled and self._queue_is_full():
            self._count_drop()
        super().on_end(span)

    def _queue_is_full(self) -> bool:
        # NOTE: reads the SDK's private queue (opentelemetry-sdk 1.45); when
        # that attribute is missing no drop is counted, nothing else breaks.
        batch = getattr(self, "_batch_processor", None)
        queue = getattr(batch, "_queue", None)
        limit = getattr(batch, "_max_queue_size", None)
        return queue is not None and limit is not None and len(queue) >= limit

    def _count_drop(self) -> None:
        from controlplane import metrics

        self.dropped += 1
        metrics.SPANS_DROPPED.inc()
        now = time.monotonic()
        if now - self._last_warning >= DROP_WARNING_INTERVAL:
            self._last_warning = now
            logger.warning(
                "span export queue full: %s spans dropped in this process so far",
                self.dropped,
            )


def process_role() -> str:
    """Return "worker", "beat" or "web" for the running command line."""
    program = os.path.basename(sys.argv[0]) if sys.argv else ""
    if program == "celery" or "celery" in sys.argv[:2]:
        if "beat" in sys.argv:
            return "beat"
        if "worker" in sys.argv:
            return "worker"
    return "web"


def configure(role: str | None = None) -> None:
    """Set up tracing for this process; later calls in it do nothing."""
    global _configured_pid
    role = role or process_role()
    with _lock:
        if _configured_pid == os.getpid():
            return
        if _provider is None:
            _install_provider(role)
        _instrument(celery=role != "worker")
        _configured_pid = os.getpid()


def _install_provider(role: str) -> None:
    global _provider, _processor
    from controlplane.spans import DatabaseSpanExporter

    attributes: dict[str, Any] = {"process.role": role}
    if not os.environ.get("OTEL_SERVICE_NAME"):
        attributes["service.name"] = f"controlplane-{role}"
    provider = TracerProvider(resource=Resource.create(attributes))
    processor = CountingBatchSpanProcessor(
        DatabaseSpanExporter(),
        max_queue_size=settings.TRACING_MAX_QUEUE_SIZE,
        schedule_delay_millis=settings.TRACING_EXPORT_DELAY_MS,
        max_export_batch_size=settings.TRACING_EXPORT_BATCH_SIZE,
    )
    provider.add_span_processor(processor)
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        _add_otlp_exporter(provider)
    trace.set_tracer_provider(provider)
    propagate.set_global_textmap(W3CTraceContextPropagator())
    _provider, _processor = provider, processor


def _add_otlp_exporter(provider: TracerProvider) -> None:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter,
        )
    except ImportError:
        logger.error(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but "
            "opentelemetry-exporter-otlp-proto-http is not installed; "
            "spans go to the database only"
        )
        return
    # The exporter reads the endpoint, headers and timeout from the
    # standard OTEL_EXPORTER_OTLP_* variables.
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    logger.info("exporting spans over OTLP/HTTP as well")


def _instrument(celery: bool) -> None:
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    django_instrumentor = DjangoInstrumentor()
    if not django_instrumentor.is_instrumented_by_opentelemetry:
        django_instrumentor.instrument(excluded_urls=EXCLUDED_URLS)
    requests_instrumentor = RequestsInstrumentor()
    if not requests_instrumentor.is_instrumented_by_opentelemetry:
        requests_instrumentor.instrument()
    if celery:
        instrument_celery()


def instrument_celery() -> None:
    from opentelemetry.instrumentation.celery import CeleryInstrumentor

    instrumentor = CeleryInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument()


def connect_worker_signals() -> None:
    """Instrument each Celery pool process, and flush its spans at exit."""
    signals.worker_process_init.connect(_on_worker_process_init, weak=False)
    signals.worker_process_shutdown.connect(_on_worker_process_shutdown, weak=False)


def _on_worker_process_init(**kwargs: Any) -> None:
    if settings.TRACING_ENABLED:
        configure("worker")
        instrument_celery()


def _on_worker_process_shutdown(**kwargs: Any) -> None:
    # Pool processes may end without running atexit hooks, which is where
    # the provider would flush its queue.
    if _provider is not None:
        _provider.force_flush(timeout_millis=5000)


def dropped_spans() -> int:
    """Return how many spans this process dropped because the queue was full."""
    return _processor.dropped if _processor is not None else 0


def force_flush(timeout_millis: int = 5000) -> bool:
    """Export every queued span now; return False when that timed out."""
    if _provider is None:
        return True
    return _provider.force_flush(timeout_millis)


# -- saga spans -------------------------------------------------------------


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


def traceparent_of(span: trace.Span) -> str:
    """Return the W3C ``traceparent`` value of a span, or "" if invalid."""
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(
        carrier, trace.set_span_in_context(span, Context())
    )
    return carrier.get("traceparent", "")


@contextmanager
def run_span(saga_name: str) -> Iterator[dict[str, str]]:
    """Open the "saga.run" span; yield the run's trace fields to store.

    The dict holds ``trace_id`` and ``traceparent``, ready to pass to
    ``SagaRun.objects.create``.
    """
    name = f"saga.run {saga_name}"
    with tracer().start_as_current_span(name, attributes={"saga.name": saga_name}):
        span = trace.get_current_span()
        span_context = span.get_span_context()
        if not span_context.is_valid:
            yield {}
            return
        yield {
            "trace_id": trace.format_trace_id(span_context.trace_id),
            "traceparent": traceparent_of(span),
        }


def set_span_run_id(run_id: Any) -> None:
    trace.get_current_span().set_attribute("saga.run_id", str(run_id))


def run_context(traceparent: str) -> Context | None:
    """Return the context of a run's stored ``traceparent``, or None."""
    if not traceparent:
        return None
    extracted = TraceContextTextMapPropagator().extract({"traceparent": traceparent})
    span = trace.get_current_span(extracted)
    return extracted if span.get_span_context().is_valid else None


@contextmanager
def saga_span(run: Any, kind: str, index: int) -> Iterator[trace.Span]:
    """Open "saga.step <name>" or "saga.compensation <name>" under the run.

    The span's parent is the run's stored context, not the Celery task's,
    so every step of a run hangs off the same "saga.run" span. The run id
    is set for log records while the block runs, and the block's wall
    time goes to the step duration histogram.
    """
    from controlplane import metrics

    step_name = str(run.steps_snapshot[index].get("name", index))
    attributes: dict[str, str | int] = {
        "saga.run_id": str(run.pk),
        "saga.step": step_name,
        "saga.step_index": index,
    }
    parent = run_context(getattr(run, "traceparent", ""))
    run_token = current_run_id.set(str(run.pk))
    started = time.monotonic()
    try:
        with tracer().start_as_current_span(
            f"{kind} {step_name}", context=parent, attributes=attributes
        ) as span:
            yield span
    finally:
        metrics.STEP_DURATION.labels(kind).observe(time.monotonic() - started)
        current_run_id.reset(run_token)


@contextmanager
def run_logging_context(run_id: Any) -> Iterator[None]:
    """Put ``run_id`` on every log record written inside the block."""
    token = current_run_id.set(str(run_id))
    try:
        yield
    finally:
        current_run_id.reset(token)


@contextmanager
def attempt_span(target: str, number: int) -> Iterator[trace.Span]:
    """Open the "saga.attempt" span of one attempt of a protected call."""
    attributes: dict[str, Any] = {"resilience.target": target, "attempt": number}
    run_id = current_run_id.get()
    if run_id:
        attributes["saga.run_id"] = run_id
    with tracer().start_as_current_span("saga.attempt", attributes=attributes) as span:
        yield span


def end_attempt(span: trace.Span, outcome: str, status_code: int | None) -> None:
    """Describe how an attempt ended on its span."""
    span.set_attribute("resilience.attempt.outcome", outcome)
    if status_code is not None:
        span.set_attribute("http.response.status_code", status_code)
    if outcome != "succeeded":
        span.set_status(Status(StatusCode.ERROR, outcome))


def record_pipeline_event(target: str, name: str, attributes: dict[str, Any]) -> None:
    """Add a resilience decision (rejected, waited, retry) to the current span.

    This is the ``on_event`` hook of ``resilience.core.Pipeline``; event
    names are prefixed with "resilience.".
    """
    span = trace.get_current_span()
    if not span.is_recording():
        return
    values: dict[str, Any] = {"resilience.target": target}
    for key, value in attributes.items():
        if isinstance(value, str | bool | int | float):
            values[key] = value
        else:
            values[key] = str(value)
    span.add_event(f"resilience.{name}", values)
