"""Trace ids on every log record, and a JSON formatter for LOG_FORMAT=json.

``TraceContextFilter`` sits on the console handler (see ``LOGGING`` in the
settings), so records of every logger that propagates to the root get
``trace_id``, ``span_id``, ``run_id`` and ``request_id``, as "-" when
there is none. This module imports no Django model: the logging
configuration loads it before the apps are ready.
"""

import json
import logging
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

# Set by the saga orchestrator around a step or a compensation.
current_run_id: ContextVar[str | None] = ContextVar("current_run_id", default=None)
# Set by controlplane.middleware.RequestIdMiddleware for the request.
current_request_id: ContextVar[str | None] = ContextVar(
    "current_request_id", default=None
)

EMPTY = "-"

# LogRecord attributes that the JSON formatter does not copy as extras.
_STANDARD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
) | {"message", "asctime", "trace_id", "span_id", "run_id", "request_id"}


def set_run_id(run_id: Any) -> Token[str | None]:
    """Make ``run_id`` the run of this context's log records until reset."""
    return current_run_id.set(None if run_id is None else str(run_id))


def reset_run_id(token: Token[str | None]) -> None:
    current_run_id.reset(token)


class TraceContextFilter(logging.Filter):
    """Add trace_id, span_id, run_id and request_id to each record.

    The ids come from the current OpenTelemetry span and the context
    variables above; a record that already carries one (passed with
    ``extra``) keeps it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            trace_id = trace.format_trace_id(context.trace_id)
            span_id = trace.format_span_id(context.span_id)
        else:
            trace_id = span_id = EMPTY
        _set_default(record, "trace_id", trace_id)
        _set_default(record, "span_id", span_id)
        _set_default(record, "run_id", current_run_id.get() or EMPTY)
        _set_default(record, "request_id", current_request_id.get() or EMPTY)
        return True


def _set_default(record: logging.LogRecord, name: str, value: str) -> None:
    if not getattr(record, name, None):
        setattr(record, name, value)


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object per line.

    Keys: time (ISO 8601, UTC), level, logger, message, the four ids (null
    when absent), ``exception`` when the record has one, and any ``extra``
    values, rendered with ``str`` when they are not JSON types.
    """

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in ("trace_id", "span_id", "run_id", "request_id"):
            value = getattr(record, name, None)
            document[name] = None if value in (None, EMPTY) else value
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        for name, value in vars(record).items():
            if name not in _STANDARD_ATTRIBUTES and not name.startswith("_"):
                document[name] = value
        return json.dumps(document, default=str)


# Celery's own INFO lines for each run of a task: beat's "Sending due
# task", and the worker's "received" and "succeeded".
_CELERY_TASK_LOGGERS = frozenset(
    {"celery.beat", "celery.worker.strategy", "celery.app.trace"}
)


class PeriodicTaskFilter(logging.Filter):
    """Lower Celery's INFO lines about periodic tasks to DEBUG.

    Beat sends the sweeper, the outbox relay and the breaker sampler every
    few seconds, and Celery logs each send, receipt and success at INFO, so
    an idle control plane printed several lines a second. Those records
    become DEBUG and are dropped unless the root logger is at DEBUG
    (``LOG_LEVEL=DEBUG``). The same lines about saga step tasks, and every
    warning or error, pass unchanged.
    """

    def __init__(self, periodic_tasks: list[str] | None = None) -> None:
        super().__init__()
        self.periodic_tasks = frozenset(periodic_tasks or ())

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or record.name not in _CELERY_TASK_LOGGERS:
            return True
        if _task_name(record) not in self.periodic_tasks:
            return True
        record.levelno = logging.DEBUG
        record.levelname = logging.getLevelName(logging.DEBUG)
        return logging.getLogger().isEnabledFor(logging.DEBUG)


def _task_name(record: logging.LogRecord) -> str | None:
    """Return the task name of one of Celery's per-task log records."""
    args = record.args
    if isinstance(args, dict):
        name = args.get("name")
        return name if isinstance(name, str) else None
    if record.name == "celery.beat" and isinstance(args, tuple) and len(args) == 2:
        # "Scheduler: Sending due task %s (%s)" % (entry name, task name)
        return str(args[1])
    return None
