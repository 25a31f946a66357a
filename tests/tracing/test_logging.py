"""Trace, span, run and request ids on log records, plain and JSON."""

import json
import logging

from opentelemetry import trace

from controlplane.logging import (
    JsonFormatter,
    PeriodicTaskFilter,
    TraceContextFilter,
    current_request_id,
    reset_run_id,
    set_run_id,
)

PLAIN = (
    "%(levelname)s [trace=%(trace_id)s span=%(span_id)s run=%(run_id)s "
    "request=%(request_id)s] %(message)s"
)


def record(message: str = "step %s done", *args: object) -> logging.LogRecord:
    return logging.LogRecord(
        "sagas.services", logging.INFO, __file__, 1, message, args or ("x",), None
    )


def test_filter_without_span_uses_dashes() -> None:
    entry = record()

    assert TraceContextFilter().filter(entry)
    assert logging.Formatter(PLAIN).format(entry) == (
        "INFO [trace=- span=- run=- request=-] step x done"
    )


def test_filter_adds_current_ids() -> None:
    tracer = trace.get_tracer(__name__)
    token = set_run_id("6f1c7a52-3a0e-4f4e-9d53-2b9f4f0d1c11")
    request_token = current_request_id.set("req-1")
    try:
        with tracer.start_as_current_span("test") as span:
            entry = record()
            TraceContextFilter().filter(entry)
            context = span.get_span_context()
    finally:
        current_request_id.reset(request_token)
        reset_run_id(token)

    assert entry.trace_id == trace.format_trace_id(context.trace_id)  # type: ignore[attr-defined]
    assert entry.span_id == trace.format_span_id(context.span_id)  # type: ignore[attr-defined]
    assert entry.run_id == "6f1c7a52-3a0e-4f4e-9d53-2b9f4f0d1c11"  # type: ignore[attr-defined]
    assert entry.request_id == "req-1"  # type: ignore[attr-defined]


def test_filter_keeps_explicit_extra() -> None:
    entry = record()
    entry.run_id = "given"

    TraceContextFilter().filter(entry)

    assert getattr(entry, "run_id", None) == "given"


def test_json_formatter_fields() -> None:
    tracer = trace.get_tracer(__name__)
    with tracer.start_as_current_span("test") as span:
        entry = record("run=%s failed", "r1")
        entry.target = "payment"
        TraceContextFilter().filter(entry)
        trace_id = trace.format_trace_id(span.get_span_context().trace_id)

    document = json.loads(JsonFormatter().format(entry))

    assert document["message"] == "run=r1 failed"
    assert document["level"] == "INFO"
    assert document["logger"] == "sagas.services"
    assert document["trace_id"] == trace_id
    assert len(document["span_id"]) == 16
    assert document["run_id"] is None
    assert document["request_id"] is None
    assert document["target"] == "payment"
    assert document["time"].endswith("+00:00")


def test_json_formatter_exception() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        entry = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info()
        )
    TraceContextFilter().filter(entry)

    document = json.loads(JsonFormatter().format(entry))

    assert "ValueError: boom" in document["exception"]


def test_settings_put_filter_on_console_handler() -> None:
    handler = next(
        h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)
    )

    assert any(isinstance(f, TraceContextFilter) for f in handler.filters)


def celery_record(
    logger: str, message: str, args: tuple[object, ...] | dict[str, object]
) -> logging.LogRecord:
    return logging.LogRecord(logger, logging.INFO, __file__, 1, message, args, None)


PERIODIC = ["controlplane.relay_outbox", "sagas.resume_stalled_runs"]


def test_periodic_task_lines_become_debug() -> None:
    periodic_filter = PeriodicTaskFilter(PERIODIC)
    records = [
        celery_record(
            "celery.beat",
            "Scheduler: Sending due task %s (%s)",
            ("relay-outbox", "controlplane.relay_outbox"),
        ),
        celery_record(
            "celery.worker.strategy",
            "Task %(name)s[%(id)s] received",
            {"name": "sagas.resume_stalled_runs", "id": "1"},
        ),
        celery_record(
            "celery.app.trace",
            "Task %(name)s[%(id)s] succeeded",
            {"name": "controlplane.relay_outbox", "id": "2"},
        ),
    ]

    for entry in records:
        assert periodic_filter.filter(entry) is False, entry.getMessage()
        assert entry.levelname == "DEBUG"


def test_periodic_task_lines_kept_at_debug_level() -> None:
    entry = celery_record(
        "celery.app.trace",
        "Task %(name)s[%(id)s] succeeded",
        {"name": "controlplane.relay_outbox", "id": "2"},
    )
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.DEBUG)
    try:
        kept = PeriodicTaskFilter(PERIODIC).filter(entry)
    finally:
        root.setLevel(level)

    assert kept is True
    assert entry.levelno == logging.DEBUG


def test_step_task_and_warning_lines_pass() -> None:
    periodic_filter = PeriodicTaskFilter(PERIODIC)
    step_task = celery_record(
        "celery.app.trace",
        "Task %(name)s[%(id)s] succeeded",
        {"name": "sagas.run_step", "id": "3"},
    )
    warning = celery_record(
        "celery.app.trace",
        "Task %(name)s[%(id)s] retry",
        {"name": "controlplane.relay_outbox", "id": "4"},
    )
    warning.levelno, warning.levelname = logging.WARNING, "WARNING"
    own = record("run=%s status running -> completed", "r1")

    assert periodic_filter.filter(step_task) is True
    assert step_task.levelname == "INFO"
    assert periodic_filter.filter(warning) is True
    assert warning.levelname == "WARNING"
    assert periodic_filter.filter(own) is True
    assert own.levelname == "INFO"
