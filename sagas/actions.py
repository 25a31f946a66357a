"""Operator actions on a run: cancel, retry, resolve by hand.

Orchestrated runs retry a paused run's failed step or the failed
compensations of a compensation_failed run. A Try-Confirm-Cancel run that
ended needs_attention retries its phase two under the stored decision.
Either kind is resolved by hand with a note.
"""

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from controlplane import metrics
from sagas.models import (
    RunStatus,
    RunStatusChange,
    SagaDefinition,
    SagaRun,
    StepStatus,
    TccTransaction,
)
from sagas.services import (
    enqueue_compensation,
    enqueue_step,
    transition_run,
    transition_step,
)

logger = logging.getLogger(__name__)


class ActionNotAllowed(Exception):
    """The run's status does not allow the action; the message gives the reason."""


def cancel(run: SagaRun, user: Any) -> None:
    """Stop a pending, running or paused run and compensate what took effect.

    A step that is running when the cancel arrives finishes first; its
    worker sees the run compensating and undoes it with the others.
    """
    if run.definition.kind == run.definition.Kind.TCC:
        # NOTE: a TCC run is aborted only by a failed try or its try timeout;
        # an operator's cancel is rejected until the coordinator takes one.
        raise ActionNotAllowed(
            "A Try-Confirm-Cancel run cannot be cancelled by hand; it aborts "
            "by itself when a try fails or its try timeout passes."
        )
    _require_orchestrated(run, "cancelled")
    moved = transition_run(
        run.pk,
        [RunStatus.PENDING, RunStatus.RUNNING, RunStatus.PAUSED],
        RunStatus.COMPENSATING,
        f"cancelled by {user}",
        error="cancelled by an operator",
        needs_attention=False,
    )
    if not moved:
        raise ActionNotAllowed(
            f"Only a pending, running or paused run can be cancelled; this one "
            f"is {_status(run)}."
        )
    transaction.on_commit(lambda: enqueue_compensation(run.pk))


def retry(run: SagaRun, user: Any) -> None:
    """Retry what the run's status allows: a paused run's failed step,
    failed compensations, or the phase two of a TCC run needing attention.
    """
    if run.definition.kind == SagaDefinition.Kind.TCC:
        _retry_phase_two(run, user)
        return
    _require_orchestrated(run, "retried")
    if _status(run) == RunStatus.PAUSED:
        _retry_failed_step(run, user)
        return
    moved = transition_run(
        run.pk,
        [RunStatus.COMPENSATION_FAILED],
        RunStatus.COMPENSATING,
        f"compensations retried by {user}",
        compensation_retry_requested_at=timezone.now(),
        finished_at=None,
    )
    if not moved:
        raise ActionNotAllowed(
            f"Only a paused or compensation_failed run can be retried; this "
            f"one is {_status(run)}."
        )
    transaction.on_commit(lambda: enqueue_compensation(run.pk))


@transaction.atomic
def _retry_failed_step(run: SagaRun, user: Any) -> None:
    """Send a paused run's failed step again, with a fresh claim budget.

    This is the one change that moves a step back, from failed to pending,
    and only by an operator's hand; its history row names the operator. The
    step sends the same idempotency key as before, so a service that did
    apply an earlier attempt answers with that result instead of applying
    it twice. Its attempts are stored numbered after the earlier ones (see
    ``sagas.calls.record``).
    """
    moved = transition_run(
        run.pk,
        [RunStatus.PAUSED],
        RunStatus.RUNNING,
        f"failed step retried by {user}",
        needs_attention=False,
        error="",
    )
    if not moved:
        raise ActionNotAllowed(
            f"Only a paused run can retry its step; this one is {_status(run)}."
        )
    step = run.steps.filter(status=StepStatus.FAILED).order_by("index").first()
    if step is None:
        raise ActionNotAllowed("This paused run has no failed step to retry.")
    transition_step(
        step,
        StepStatus.FAILED,
        StepStatus.PENDING,
        f"retried by {user}",
        action_claims=0,
        error="",
        finished_at=None,
    )
    transaction.on_commit(lambda: enqueue_step(run.pk, step.index))


@transaction.atomic
def _retry_phase_two(run: SagaRun, user: Any) -> None:
    """Send again the confirms or cancels that a needs_attention TCC run lacks.

    The stored decision is kept. The run goes back to ``confirming`` after
    a commit or to ``cancelling`` after an abort, with a new phase-two
    budget. The coordinator then sends every phase-two call that has not
    succeeded yet, with the same Idempotency-Key as before. Only a run still
    needing attention (not resolved by hand) can be retried.
    """
    from sagas.tcc import PHASE_TWO, PHASE_TWO_STATUS, enqueue_advance

    decision = (
        TccTransaction.objects.filter(pk=run.pk)
        .values_list("decision", flat=True)
        .first()
    )
    if not decision:
        raise ActionNotAllowed(
            "Only a TCC run that needs attention after its decision can retry "
            f"phase two; this one is {_status(run)}."
        )
    decided = TccTransaction.Decision(decision)
    now = timezone.now()
    new_status = PHASE_TWO_STATUS[decided]
    changed = SagaRun.objects.filter(
        pk=run.pk, status=RunStatus.NEEDS_ATTENTION, needs_attention=True
    ).update(
        status=new_status,
        needs_attention=False,
        finished_at=None,
        error="",
        updated_at=now,
    )
    if changed != 1:
        raise ActionNotAllowed(
            "Only a TCC run that needs attention can retry phase two; this one "
            f"is {_status(run)}{_resolved(run)}."
        )
    budget = timedelta(seconds=settings.TCC_PHASE_TWO_BUDGET_SECONDS)
    TccTransaction.objects.filter(pk=run.pk).update(phase_two_deadline=now + budget)
    RunStatusChange.objects.create(
        run_id=run.pk,
        from_status=RunStatus.NEEDS_ATTENTION,
        to_status=new_status,
        at=now,
        reason=f"phase two ({PHASE_TWO[decided]}) retried by {user}",
    )
    transaction.on_commit(lambda: enqueue_advance(run.pk))
    metrics.record_run_transition(run.pk, new_status)
    logger.info(
        "run=%s status %s -> %s (phase two retried by %s)",
        run.pk,
        RunStatus.NEEDS_ATTENTION,
        new_status,
        user,
    )


# Maximum length of a resolution note, checked here because the dashboard's
# form does not go through the API's serializer.
MAX_NOTE_LENGTH = 2000

# The statuses in which a run flagged as needing attention can be resolved,
# by kind. A paused orchestrated run is flagged too, but waits for retry or
# cancel instead.
RESOLVABLE: dict[str, list[str]] = {
    SagaDefinition.Kind.ORCHESTRATED: [RunStatus.COMPENSATION_FAILED],
    SagaDefinition.Kind.CHOREOGRAPHY: [
        RunStatus.COMPENSATION_FAILED,
        RunStatus.COMPLETED,
        RunStatus.COMPENSATED,
    ],
    SagaDefinition.Kind.TCC: [RunStatus.NEEDS_ATTENTION],
}


def resolve(run: SagaRun, user: Any, note: str) -> None:
    """Mark a run that needs attention as resolved by hand, with a note.

    That is a compensation_failed orchestrated or choreographed run, a
    finished choreographed run that a later event contradicted, or a TCC
    run that ended needs_attention. The status stays as it is, because
    the control plane did not finish the run; the note records who did what.
    """
    note = note.strip()
    if not note:
        raise ActionNotAllowed("A note saying how the run was resolved is required.")
    if len(note) > MAX_NOTE_LENGTH:
        raise ActionNotAllowed(
            f"The note must be at most {MAX_NOTE_LENGTH} characters, got {len(note)}."
        )
    statuses = RESOLVABLE[run.definition.kind]
    now = timezone.now()
    with transaction.atomic():
        current = (
            SagaRun.objects.select_for_update()
            .filter(pk=run.pk, status__in=statuses, needs_attention=True)
            .values_list("status", flat=True)
            .first()
        )
        changed = SagaRun.objects.filter(
            pk=run.pk, status=current, needs_attention=True
        ).update(
            needs_attention=False,
            resolved_at=now,
            resolved_by=user if getattr(user, "is_authenticated", False) else None,
            resolution_note=note,
            updated_at=now,
        )
        if current is None or changed != 1:
            raise ActionNotAllowed(
                f"Only a flagged {' or '.join(statuses)} run can be resolved; "
                f"this one is {_status(run)}{_resolved(run)}."
            )
        RunStatusChange.objects.create(
            run_id=run.pk,
            from_status=current,
            to_status=current,
            at=now,
            reason=f"resolved by {user}: {note}",
        )
    logger.info("run=%s resolved by %s", run.pk, user)


def _require_orchestrated(run: SagaRun, verb: str) -> None:
    # A choreographed run has no steps for the orchestrator to undo: its
    # services compensate by their events, and an operator resolves it.
    if run.definition.kind != SagaDefinition.Kind.ORCHESTRATED:
        raise ActionNotAllowed(
            f"Only an orchestrated run can be {verb}; this one is a "
            f"{run.definition.kind} run, whose services act on their events."
        )


def _resolved(run: SagaRun) -> str:
    resolved = SagaRun.objects.filter(pk=run.pk, resolved_at__isnull=False).exists()
    return " and already resolved" if resolved else ""


def _status(run: SagaRun) -> str:
    current = SagaRun.objects.filter(pk=run.pk).values_list("status", flat=True).first()
    return str(current)
