"""Dashboard pages for saga runs: overview, list, detail and start form."""

import json
import logging
from datetime import datetime, timedelta
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST
from rest_framework.exceptions import ValidationError

from controlplane.permissions import is_operator
from resilience.models import Target
from resilience.views import attention_summary
from sagas import actions, services
from sagas.models import RunStatus, SagaDefinition, SagaRun, TccPhase, TccTransaction
from sagas.queries import filter_runs
from sagas.serializers import RunFilterSerializer, tcc_participants

logger = logging.getLogger(__name__)

RUNS_PER_PAGE = 25


@login_required
def overview(request: HttpRequest) -> HttpResponse:
    since = timezone.now() - timedelta(hours=1)
    counts = dict(
        SagaRun.objects.filter(created_at__gte=since)
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    # A run's needs_attention flag is separate from its status. Paused and
    # compensation_failed runs carry it until an operator acts, however old
    # they are. The needs_attention status is a Try-Confirm-Cancel outcome,
    # which keeps its own tile among the last hour's statuses.
    flagged = SagaRun.objects.filter(needs_attention=True)
    context = {
        "counts": [(status, counts.get(status, 0)) for status in RunStatus.values],
        "attention_count": flagged.count(),
        "attention": flagged.select_related("definition")[:10],
        "recent": SagaRun.objects.select_related("definition")[:10],
        "targets": Target.objects.count(),
        **attention_summary(),
    }
    return render(request, "sagas/overview.html", context)


@login_required
def run_list(request: HttpRequest) -> HttpResponse:
    filters = RunFilterSerializer(
        data={k: v for k, v in request.GET.items() if v and k != "page"}
    )
    filter_errors: dict[str, Any] = {}
    runs = SagaRun.objects.select_related("definition")
    if filters.is_valid():
        runs = filter_runs(runs, filters.validated_data)
    else:
        filter_errors = {k: [str(e) for e in v] for k, v in filters.errors.items()}
        runs = runs.none()
    page = Paginator(runs, RUNS_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "statuses": RunStatus.values,
        "sagas": SagaDefinition.objects.values_list("name", flat=True),
        "filters": request.GET,
        "filter_errors": filter_errors,
    }
    status = 400 if filter_errors else 200
    return render(request, "sagas/run_list.html", context, status=status)


@login_required
def run_detail(request: HttpRequest, run_id: Any) -> HttpResponse:
    run = get_object_or_404(SagaRun.objects.select_related("definition"), pk=run_id)
    steps = run.steps.prefetch_related("tries")
    context = {
        "run": run,
        "steps": steps,
        "history": run.status_changes.all(),
        "duration_ms": _milliseconds(services.run_age(run)),
        "input_json": json.dumps(run.input, indent=2, sort_keys=True),
        "is_operator": is_operator(request.user),
        "can_resolve": run.needs_attention
        and run.status in actions.RESOLVABLE[run.definition.kind],
        "timeline": timeline(list(steps)),
        "lanes": EVENT_LANES,
        "event_rows": event_rows(run),
    }
    if run.definition.kind == SagaDefinition.Kind.TCC:
        context.update(tcc_context(run))
    return render(request, "sagas/run_detail.html", context)


# Columns of a choreographed run's sequence of events, one per service.
EVENT_LANES = ("order", "inventory", "payment", "shipping")


def event_rows(run: SagaRun) -> list[dict[str, Any]]:
    """Return the run's events in order, each with its lane's column index."""
    rows = []
    for event in run.events.all():
        lane = EVENT_LANES.index(event.service) if event.service in EVENT_LANES else 0
        rows.append(
            {
                "event": event,
                "cells": [index == lane for index in range(len(EVENT_LANES))],
                "failure": event.event_type.endswith(("Failed", "Cancelled")),
            }
        )
    return rows


def tcc_context(run: SagaRun) -> dict[str, Any]:
    """Return the decision, participants and phase timeline of a TCC run."""
    phases = list(run.phases.all())
    participants = tcc_participants(run)
    return {
        "decision": TccTransaction.objects.filter(pk=run.pk).first(),
        "participants": participants,
        "timeline": tcc_timeline(participants, phases),
    }


def _milliseconds(duration: timedelta | None) -> int | None:
    return None if duration is None else int(duration.total_seconds() * 1000)


TIMELINE_ROW_HEIGHT = 22
TIMELINE_LABEL_WIDTH = 150
TIMELINE_WIDTH = 900


def timeline(steps: list[Any]) -> dict[str, Any] | None:
    """Lay out one bar per attempt on a shared time axis, a row per step."""
    attempts = [a for step in steps for a in step.tries.all()]
    if not attempts:
        return None
    start = min(a.started_at for a in attempts)
    end = max(a.finished_at for a in attempts)
    span = max((end - start).total_seconds(), 0.001)
    scale = (TIMELINE_WIDTH - TIMELINE_LABEL_WIDTH - 10) / span
    rows = []
    for row, step in enumerate(steps):
        bars = [
            _bar(
                attempt.started_at,
                attempt.finished_at,
                start,
                scale,
                kind=attempt.kind,
                outcome=attempt.outcome,
                title=f"{step.name} {attempt.kind} #{attempt.number}: "
                f"{attempt.outcome} in {attempt.duration_ms} ms"
                + (f" (HTTP {attempt.status_code})" if attempt.status_code else ""),
            )
            for attempt in step.tries.all()
        ]
        rows.append({"y": row * TIMELINE_ROW_HEIGHT, "name": step.name, "bars": bars})
    return _axis(rows, span)


def _bar(
    started_at: datetime,
    finished_at: datetime,
    start: datetime,
    scale: float,
    **fields: str,
) -> dict[str, Any]:
    offset = (started_at - start).total_seconds()
    length = (finished_at - started_at).total_seconds()
    return {
        "x": TIMELINE_LABEL_WIDTH + offset * scale,
        "width": max(length * scale, 2.0),
        **fields,
    }


def _axis(rows: list[dict[str, Any]], span: float) -> dict[str, Any]:
    return {
        "rows": rows,
        "width": TIMELINE_WIDTH,
        "height": len(rows) * TIMELINE_ROW_HEIGHT + 20,
        "axis_y": len(rows) * TIMELINE_ROW_HEIGHT + 14,
        "span_ms": int(span * 1000),
        "label_width": TIMELINE_LABEL_WIDTH,
    }


def tcc_timeline(
    participants: list[dict[str, Any]], phases: list[TccPhase]
) -> dict[str, Any] | None:
    """Lay out one bar per phase call on a shared time axis, a row each."""
    sent = [
        (p, p.started_at, p.finished_at)
        for p in phases
        if p.started_at is not None and p.finished_at is not None
    ]
    if not sent:
        return None
    start = min(started for _, started, _ in sent)
    end = max(finished for _, _, finished in sent)
    span = max((end - start).total_seconds(), 0.001)
    scale = (TIMELINE_WIDTH - TIMELINE_LABEL_WIDTH - 10) / span
    rows = []
    for row, participant in enumerate(participants):
        bars = [
            _bar(
                started,
                finished,
                start,
                scale,
                kind=phase.phase,
                outcome=phase.status,
                title=f"{phase.participant} {phase.phase}: {phase.status} "
                f"after {phase.attempts} attempt(s)"
                + (f" (HTTP {phase.status_code})" if phase.status_code else ""),
            )
            for phase, started, finished in sent
            if phase.index == participant["index"]
        ]
        rows.append(
            {"y": row * TIMELINE_ROW_HEIGHT, "name": participant["name"], "bars": bars}
        )
    return _axis(rows, span)


@login_required
@require_POST
def run_action(request: HttpRequest, run_id: Any, name: str) -> HttpResponse:
    """Cancel, retry or resolve a run from its page (operators only)."""
    run = get_object_or_404(SagaRun, pk=run_id)
    if not is_operator(request.user):
        messages.error(request, "Changing a run needs the operator role.")
        return redirect("run-detail", run_id=run.pk)
    try:
        if name == "cancel":
            actions.cancel(run, request.user)
        elif name == "retry":
            actions.retry(run, request.user)
        elif name == "resolve":
            actions.resolve(run, request.user, request.POST.get("note", ""))
        else:
            raise Http404(f"Unknown action '{name}'.")
    except actions.ActionNotAllowed as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Run {run.pk}: {name} accepted.")
    return redirect("run-detail", run_id=run.pk)


@login_required
def start_run(request: HttpRequest) -> HttpResponse:
    """Show the start form of a saga, and start a run from it (operators)."""
    name = request.POST.get("saga") or request.GET.get("saga") or "order"
    definition = get_object_or_404(SagaDefinition, name=name)
    values = {spec["name"]: "" for spec in definition.input_schema}
    errors: dict[str, list[str]] = {}

    if request.method == "POST":
        values = {key: request.POST.get(key, "").strip() for key in values}
        if not is_operator(request.user):
            messages.error(request, "Starting a saga needs the operator role.")
            return redirect("runs")
        try:
            run = services.start_run(definition, values, request.user)
        except ValidationError as exc:
            errors = _field_errors(exc.detail)
        else:
            messages.success(request, f"Run {run.pk} of {definition.name} started.")
            return redirect("run-detail", run_id=run.pk)

    fields = [
        {
            **spec,
            "value": values.get(spec["name"], ""),
            "errors": errors.get(spec["name"], []),
        }
        for spec in definition.input_schema
    ]
    context = {
        "definition": definition,
        "fields": fields,
        "errors": errors,
        "form_errors": errors.get("__all__", []),
        "definitions": SagaDefinition.objects.all(),
    }
    return render(
        request, "sagas/start_run.html", context, status=400 if errors else 200
    )


def _field_errors(detail: Any) -> dict[str, list[str]]:
    inner = detail.get("input", detail) if isinstance(detail, dict) else detail
    if not isinstance(inner, dict):
        return {"__all__": [str(item) for item in inner]}
    return {key: [str(item) for item in value] for key, value in inner.items()}
