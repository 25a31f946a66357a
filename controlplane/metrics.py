"""Prometheus metrics of the control plane, and the /metrics view.

Counters and histograms are updated where things happen, in web and worker
processes alike. When PROMETHEUS_MULTIPROC_DIR is set (the launcher sets it
to an empty folder under the data folder before it starts any process),
prometheus-client keeps them in per-process files there, and the view adds
up every process's files. Without it the view reports this process only.

Breaker state and bulkhead permits are not counted anywhere: the view
reads them from Redis when it is scraped, one snapshot per target.
"""

import logging
import os
from collections.abc import Iterator
from typing import Any

from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

# States of resilience.core's circuit breaker, one gauge series each.
BREAKER_STATES = (
    "closed",
    "open",
    "half_open",
    "disabled",
    "forced_open",
    "metrics_only",
)
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

CALLS = Counter(
    "controlplane_calls",
    "Protected HTTP calls to targets, by how they ended.",
    ["target", "outcome"],
)
REJECTIONS = Counter(
    "controlplane_rejections",
    "Protected calls rejected before they were sent, by the stage that did it.",
    ["target", "stage"],
)
SAGA_RUNS = Counter(
    "controlplane_saga_runs",
    "Saga run status changes, by the status the run moved to.",
    ["status"],
)
RUN_DURATION = Histogram(
    "controlplane_saga_run_duration_seconds",
    "Seconds from a run's first step to its terminal status.",
    ["status"],
    buckets=DURATION_BUCKETS,
)
STEP_DURATION = Histogram(
    "controlplane_saga_step_duration_seconds",
    "Seconds a worker spent on one step action (saga.step) or undo "
    "(saga.compensation), retries included.",
    ["kind"],
    buckets=DURATION_BUCKETS,
)
SPANS_DROPPED = Counter(
    "controlplane_spans_dropped",
    "Finished spans dropped because the export queue was full.",
)


def record_call(target: str, outcome: str, rejected_by: str | None) -> None:
    """Count one protected call, and its rejection if a stage rejected it."""
    CALLS.labels(target, outcome).inc()
    if rejected_by:
        REJECTIONS.labels(target, rejected_by).inc()


def record_run_transition(run_id: Any, status: str) -> None:
    """Count a run's status change; observe its duration when it ended."""
    from sagas.models import TERMINAL_RUN_STATUSES, SagaRun

    SAGA_RUNS.labels(status).inc()
    if status not in TERMINAL_RUN_STATUSES:
        return
    times = (
        SagaRun.objects.filter(pk=run_id)
        .values_list("started_at", "finished_at")
        .first()
    )
    if times and times[0] is not None and times[1] is not None:
        RUN_DURATION.labels(status).observe((times[1] - times[0]).total_seconds())


class ResilienceStateCollector(Collector):
    """Breaker state and bulkhead permits in use, read from Redis per scrape."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from resilience import services
        from resilience.models import Target

        state = GaugeMetricFamily(
            "controlplane_breaker_state",
            "1 for the circuit breaker's current state, 0 for the others.",
            labels=["target", "state"],
        )
        in_use = GaugeMetricFamily(
            "controlplane_bulkhead_in_use",
            "Bulkhead permits held by calls in flight.",
            labels=["target"],
        )
        for name in Target.objects.values_list("name", flat=True):
            try:
                document, _ = services.pipeline(name).read_snapshot()
            except Exception as exc:
                # One unreachable state store must not fail the scrape.
                logger.warning("target=%s state not readable: %s", name, exc)
                continue
            breaker = document.get("breaker") or {"state": "disabled"}
            current = str(breaker.get("state", "disabled")).lower()
            for candidate in BREAKER_STATES:
                state.add_metric(
                    [name, candidate], 1.0 if candidate == current else 0.0
                )
            bulkhead = document.get("bulkhead") or {}
            in_use.add_metric([name], float(bulkhead.get("in_use", 0)))
        yield state
        yield in_use


def registry() -> CollectorRegistry:
    """Return the registry a scrape reads: every process, plus Redis state."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        scraped = CollectorRegistry()
        multiprocess.MultiProcessCollector(scraped)
    else:
        scraped = CollectorRegistry()
        scraped.register(_DefaultRegistry())
    scraped.register(ResilienceStateCollector())
    return scraped


class _DefaultRegistry(Collector):
    def collect(self) -> Iterator[Any]:
        yield from REGISTRY.collect()


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Serve the metrics in the Prometheus text format.

    No login: like /healthz/, it is meant for a scraper on the same
    network, and it reports counts and states, never request data.
    """
    body = generate_latest(registry())
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
