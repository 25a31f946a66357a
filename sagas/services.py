"""The saga orchestrator: starting runs, executing steps, compensating.

Every status change is a compare-and-set: an UPDATE filtered on the
expected old status (and, for a step's result, on the fencing token of the
claim) that must change exactly one row. The change and its history row
commit in one transaction. A worker that loses such a race does nothing
more, so a run moves forward once and never backward.

The flow of a run, one Celery task per step execution:

1. ``start_run`` stores the run and its steps as ``pending`` and enqueues
   the first step after the commit.
2. ``execute_step`` claims the step (``pending`` to ``running``, new fencing
   token), sends its action through the resilience pipeline with a stable
   ``Idempotency-Key`` and stores the result under that token. Success
   enqueues the next step, or completes the run after the last one.
3. A failed step moves the run to ``compensating``; ``compensate_next``
   then undoes the steps that took effect, latest first, one task each,
   and ends the run ``compensated`` or ``compensation_failed``.
"""

import json
import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from controlplane.idempotency import record_downstream_key
from resilience.models import Target
from resilience.services import HttpOutcome, http_call
from sagas.definitions import TemplateError, render, validate_input
from sagas.models import (
    RunStatus,
    RunStatusChange,
    SagaDefinition,
    SagaRun,
    StepAttempt,
    StepRun,
    StepStatus,
    StepStatusChange,
)

logger = logging.getLogger(__name__)

# A compensation must not give up as easily as an action: it is retried
# with its own, larger budget before the run needs an operator.
DEFAULT_COMPENSATION_RETRY: dict[str, Any] = {
    "max_attempts": 5,
    "initial_interval": 0.5,
    "multiplier": 2.0,
    "max_interval": 4.0,
}

# Slack added to a step's worst-case duration to get its lease.
LEASE_MARGIN = timedelta(seconds=30)


class StartError(ValueError):
    """A run cannot be started: unknown saga or invalid input."""


def start_run(definition: SagaDefinition, data: Any, user: Any = None) -> SagaRun:
    """Validate the input, store a pending run and enqueue its first step."""
    cleaned = validate_input(definition.input_schema, data)
    now = timezone.now()

    with transaction.atomic():
        run = SagaRun.objects.create(
            definition=definition,
            steps_snapshot=definition.steps,
            input=cleaned,
            created_by=user if user is not None and user.is_authenticated else None,
        )
        StepRun.objects.bulk_create(
            StepRun(run=run, index=index, name=step["name"], target=step["target"])
            for index, step in enumerate(definition.steps)
        )
        RunStatusChange.objects.create(
            run=run,
            from_status="",
            to_status=RunStatus.PENDING,
            at=now,
            reason="run created",
        )
        transaction.on_commit(lambda: _enqueue_step(run.pk, 0))

    logger.info("run=%s saga=%s started", run.pk, definition.name)
    return run


def transition_run(
    run_id: Any, expected: list[str], new: str, reason: str, **fields: Any
) -> bool:
    """Move a run from one of the expected statuses to a new one, once."""
    now = timezone.now()
    with transaction.atomic():
        current = (
            SagaRun.objects.filter(pk=run_id).values_list("status", flat=True).first()
        )
        if current not in expected:
            return False
        changed = SagaRun.objects.filter(pk=run_id, status=current).update(
            status=new, updated_at=now, **fields
        )
        if changed != 1:
            return False
        RunStatusChange.objects.create(
            run_id=run_id, from_status=current, to_status=new, at=now, reason=reason
        )
    logger.info("run=%s status %s -> %s (%s)", run_id, current, new, reason)
    return True


def transition_step(
    step: StepRun,
    expected: str,
    new: str,
    reason: str,
    token: int | None = None,
    **fields: Any,
) -> bool:
    """Move a step from the expected status to a new one, once.

    With ``token``, the change also requires the step's fencing token to be
    unchanged, which rejects a result from a claim that was superseded.
    """
    now = timezone.now()
    filters = Q(pk=step.pk, status=expected)
    if token is not None:
        filters &= Q(lease_token=token)
    with transaction.atomic():
        changed = StepRun.objects.filter(filters).update(status=new, **fields)
        if changed != 1:
            return False
        StepStatusChange.objects.create(
            step=step, from_status=expected, to_status=new, at=now, reason=reason
        )
    step.status = new
    return True


def execute_step(run_id: Any, index: int) -> None:
    """Run one step's action and move the saga on by its result."""
    run = SagaRun.objects.select_related("definition").filter(pk=run_id).first()
    if run is None:
        logger.warning("run=%s step=%s skipped: run not found", run_id, index)
        return
    if run.status == RunStatus.PENDING:
        transition_run(
            run.pk,
            [RunStatus.PENDING],
            RunStatus.RUNNING,
            "first step started",
            started_at=timezone.now(),
        )
        run.refresh_from_db()
    if run.status != RunStatus.RUNNING:
        logger.info("run=%s step=%s skipped: run is %s", run_id, index, run.status)
        return

    step = run.steps.get(index=index)
    spec = run.steps_snapshot[index]
    token = _claim(step, spec)
    if token is None:
        return

    outcome = _send(run, step, spec, "action")
    _record_attempts(step, StepAttempt.Kind.ACTION, outcome)
    if outcome.outcome == "succeeded":
        _finish_step_succeeded(run, step, token, outcome)
    else:
        _finish_step_failed(run, step, token, outcome)


def _claim(step: StepRun, spec: dict[str, Any]) -> int | None:
    """Take the step's lease and return its new fencing token, or None."""
    now = timezone.now()
    expires = now + _lease_duration(spec)
    claimable = Q(status=StepStatus.PENDING) | Q(
        status=StepStatus.RUNNING, lease_expires_at__lt=now
    )
    with transaction.atomic():
        row = StepRun.objects.filter(claimable, pk=step.pk).values("status").first()
        if row is None:
            logger.info("run=%s step=%s not claimable", step.run_id, step.name)
            return None
        changed = StepRun.objects.filter(claimable, pk=step.pk).update(
            status=StepStatus.RUNNING,
            lease_token=F("lease_token") + 1,
            lease_expires_at=expires,
            started_at=now,
        )
        if changed != 1:
            return None
        StepStatusChange.objects.create(
            step=step,
            from_status=row["status"],
            to_status=StepStatus.RUNNING,
            at=now,
            reason="claimed by a worker",
        )
    step.refresh_from_db()
    return step.lease_token


def _lease_duration(spec: dict[str, Any]) -> timedelta:
    retry = spec.get("retry") or {}
    attempts = int(retry.get("max_attempts", 3))
    timeout = float((spec.get("timeout") or {}).get("timeout_duration", 10.0))
    max_interval = float(retry.get("max_interval", 30.0))
    worst = attempts * timeout + (attempts - 1) * max_interval
    return timedelta(seconds=worst) + LEASE_MARGIN


def idempotency_key(run_id: Any, step_name: str, part: str) -> str:
    """Return the stable key a step sends downstream for its action or undo.

    It derives from our own run and step ids only, so it is the same on
    every retry and redelivery of that step and never repeats across runs.
    """
    return f"{run_id}:{step_name}:{part}"


def _context(run: SagaRun) -> dict[str, Any]:
    outputs = {
        name: {"output": output}
        for name, output in run.steps.values_list("name", "output")
    }
    return {"run": {"id": str(run.pk)}, "input": run.input, "steps": outputs}


def _send(run: SagaRun, step: StepRun, spec: dict[str, Any], part: str) -> HttpOutcome:
    call = spec[part]
    target = Target.objects.filter(name=spec["target"]).first()
    if target is None:
        return _definition_error(f"Target '{spec['target']}' is not registered.")
    try:
        context = _context(run)
        path = render(call["path"], context)
        body = render(call.get("body"), context)
    except TemplateError as exc:
        return _definition_error(str(exc))

    key = idempotency_key(run.pk, step.name, part)
    headers = {"Idempotency-Key": key, "X-Saga-Run": str(run.pk)}
    overrides = _overrides(spec, part)
    request_record = {
        "method": call["method"],
        "url": target.base_url.rstrip("/") + path,
        "idempotency_key": key,
        "body": _truncate(body),
    }
    sent_at = timezone.now()
    outcome = http_call(target, call["method"], path, body, headers, overrides)
    record_downstream_key(
        run.pk, step.name, part, target.name, key, outcome.status_code, sent_at
    )
    response_record = {
        "status_code": outcome.status_code,
        "body": _truncate(outcome.text),
    }
    prefix = "" if part == "action" else "compensation_"
    StepRun.objects.filter(pk=step.pk).update(
        **{f"{prefix}request": request_record, f"{prefix}response": response_record}
    )
    return outcome


def _overrides(spec: dict[str, Any], part: str) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if part == "action":
        if spec.get("retry"):
            overrides["retry"] = spec["retry"]
    else:
        overrides["retry"] = (
            spec.get("compensation_retry") or DEFAULT_COMPENSATION_RETRY
        )
    if spec.get("timeout"):
        overrides["timeout"] = spec["timeout"]
    return overrides


def _definition_error(message: str) -> HttpOutcome:
    return HttpOutcome(
        outcome="failed",
        rejected_by=None,
        status_code=None,
        body=None,
        text="",
        error=message,
    )


def _truncate(value: Any) -> Any:
    """Cut a body to SAGA_BODY_LIMIT characters, keeping small JSON as is."""
    limit = settings.SAGA_BODY_LIMIT
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if len(text) <= limit:
        return value
    return text[:limit] + f"... [cut at {limit} of {len(text)} characters]"


def _record_attempts(step: StepRun, kind: str, outcome: HttpOutcome) -> None:
    rows = [
        StepAttempt(
            step=step,
            kind=kind,
            number=record.number,
            started_at=record.started_at,
            finished_at=record.finished_at or record.started_at,
            status_code=record.status_code,
            outcome=record.outcome,
            error=record.error[:2000],
        )
        for record in outcome.attempts
    ]
    StepAttempt.objects.bulk_create(rows)
    field = "attempts" if kind == StepAttempt.Kind.ACTION else "compensation_attempts"
    StepRun.objects.filter(pk=step.pk).update(**{field: F(field) + len(rows)})


def _finish_step_succeeded(
    run: SagaRun, step: StepRun, token: int, outcome: HttpOutcome
) -> None:
    stored = transition_step(
        step,
        StepStatus.RUNNING,
        StepStatus.SUCCEEDED,
        "action succeeded",
        token=token,
        finished_at=timezone.now(),
        output=outcome.body,
        error="",
        lease_expires_at=None,
    )
    if not stored:
        logger.warning(
            "run=%s step=%s token=%s stale result rejected: lease was taken over",
            run.pk,
            step.name,
            token,
        )
        return
    next_index = step.index + 1
    if next_index < len(run.steps_snapshot):
        transaction.on_commit(lambda: _enqueue_step(run.pk, next_index))
        return
    transition_run(
        run.pk,
        [RunStatus.RUNNING],
        RunStatus.COMPLETED,
        "all steps succeeded",
        finished_at=timezone.now(),
    )


def _finish_step_failed(
    run: SagaRun, step: StepRun, token: int, outcome: HttpOutcome
) -> None:
    reason = _failure_reason(outcome)
    stored = transition_step(
        step,
        StepStatus.RUNNING,
        StepStatus.FAILED,
        reason,
        token=token,
        finished_at=timezone.now(),
        error=reason[:4000],
        outcome_unknown=outcome.outcome_unknown,
        lease_expires_at=None,
    )
    if not stored:
        logger.warning(
            "run=%s step=%s token=%s stale result rejected: lease was taken over",
            run.pk,
            step.name,
            token,
        )
        return
    logger.info("run=%s step=%s failed: %s", run.pk, step.name, reason)
    moved = transition_run(
        run.pk,
        [RunStatus.RUNNING],
        RunStatus.COMPENSATING,
        f"step {step.name} failed",
        error=reason[:4000],
    )
    if moved:
        transaction.on_commit(lambda: _enqueue_compensation(run.pk))


def _failure_reason(outcome: HttpOutcome) -> str:
    if outcome.rejected_by:
        return f"rejected by {outcome.rejected_by}: {outcome.error}"
    return outcome.error or f"failed with HTTP {outcome.status_code}"


def compensate_next(run_id: Any) -> None:
    """Undo the latest step that took effect, or finish the compensation."""
    run = SagaRun.objects.filter(pk=run_id).first()
    if run is None or run.status != RunStatus.COMPENSATING:
        return
    step = _next_to_compensate(run)
    if step is None:
        _finish_compensation(run)
        return

    spec = run.steps_snapshot[step.index]
    expected = step.status
    claimed = transition_step(
        step,
        expected,
        StepStatus.COMPENSATING,
        "compensation started",
        compensation_started_at=timezone.now(),
    )
    if not claimed:
        return
    outcome = _send(run, step, spec, "compensation")
    _record_attempts(step, StepAttempt.Kind.COMPENSATION, outcome)
    if outcome.outcome == "succeeded":
        transition_step(
            step,
            StepStatus.COMPENSATING,
            StepStatus.COMPENSATED,
            "compensation succeeded",
            compensation_finished_at=timezone.now(),
        )
    else:
        reason = _failure_reason(outcome)
        logger.warning(
            "run=%s step=%s compensation failed: %s", run.pk, step.name, reason
        )
        transition_step(
            step,
            StepStatus.COMPENSATING,
            StepStatus.COMPENSATION_FAILED,
            reason[:4000],
            compensation_finished_at=timezone.now(),
            compensation_error=reason[:4000],
        )
    transaction.on_commit(lambda: _enqueue_compensation(run.pk))


def _next_to_compensate(run: SagaRun) -> StepRun | None:
    """Return the highest step that took effect or may have, with an undo."""
    candidates = run.steps.filter(
        Q(status=StepStatus.SUCCEEDED)
        | Q(status=StepStatus.FAILED, outcome_unknown=True)
    ).order_by("-index")
    for step in candidates:
        if run.steps_snapshot[step.index].get("compensation"):
            return step
    return None


def _finish_compensation(run: SagaRun) -> None:
    failed = run.steps.filter(status=StepStatus.COMPENSATION_FAILED).count()
    now = timezone.now()
    if failed:
        transition_run(
            run.pk,
            [RunStatus.COMPENSATING],
            RunStatus.COMPENSATION_FAILED,
            f"{failed} compensation(s) failed after their retries",
            finished_at=now,
            needs_attention=True,
        )
    else:
        transition_run(
            run.pk,
            [RunStatus.COMPENSATING],
            RunStatus.COMPENSATED,
            "every completed step was compensated",
            finished_at=now,
        )


def _enqueue_step(run_id: Any, index: int) -> None:
    from sagas import tasks

    tasks.execute_step.delay(str(run_id), index)


def _enqueue_compensation(run_id: Any) -> None:
    from sagas import tasks

    tasks.compensate_next.delay(str(run_id))


def run_age(run: SagaRun) -> timedelta | None:
    """Return how long the run took, or has taken so far."""
    if run.started_at is None:
        return None
    end: datetime = run.finished_at or timezone.now()
    return end - run.started_at


# A pending run whose first step message was lost (the broker was down at
# commit time) is enqueued again once it is this old.
PENDING_RESUME_AFTER = timedelta(seconds=30)


def resume_stalled_runs() -> int:
    """Enqueue again the steps whose lease expired and lost pending runs.

    Returns how many runs were resumed. The re-enqueued task claims the step
    with a new fencing token, so a stale worker that wakes up later cannot
    store its result.
    """
    now = timezone.now()
    resumed = 0
    expired = StepRun.objects.filter(
        status=StepStatus.RUNNING,
        lease_expires_at__lt=now,
        run__status=RunStatus.RUNNING,
    ).values_list("run_id", "index")
    for run_id, index in expired:
        logger.warning("run=%s step=%s lease expired; resuming", run_id, index)
        _enqueue_step(run_id, index)
        resumed += 1

    lost = SagaRun.objects.filter(
        status=RunStatus.PENDING, created_at__lt=now - PENDING_RESUME_AFTER
    ).values_list("pk", flat=True)
    for run_id in lost:
        logger.warning("run=%s still pending; enqueueing its first step", run_id)
        _enqueue_step(run_id, 0)
        resumed += 1
    return resumed
