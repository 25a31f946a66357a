"""Operator actions on a run: cancel, retry compensations, resolve by hand."""

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from sagas.models import RunStatus, RunStatusChange, SagaRun
from sagas.services import enqueue_compensation, transition_run

logger = logging.getLogger(__name__)


class ActionNotAllowed(Exception):
    """The run's status does not allow the action; the message gives the reason."""


def cancel(run: SagaRun, user: Any) -> None:
    """Stop a pending or running run and compensate what took effect.

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
    moved = transition_run(
        run.pk,
        [RunStatus.PENDING, RunStatus.RUNNING],
        RunStatus.COMPENSATING,
        f"cancelled by {user}",
        error="cancelled by an operator",
    )
    if not moved:
        raise ActionNotAllowed(
            f"Only a pending or running run can be cancelled; this one is "
            f"{_status(run)}."
        )
    transaction.on_commit(lambda: enqueue_compensation(run.pk))


def retry(run: SagaRun, user: Any) -> None:
    """Compensate again the steps whose compensation failed."""
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
            f"Only a compensation_failed run can be retried; this one is "
            f"{_status(run)}."
        )
    transaction.on_commit(lambda: enqueue_compensation(run.pk))


def resolve(run: SagaRun, user: Any, note: str) -> None:
    """Mark a compensation_failed run as resolved by hand, with a note."""
    note = note.strip()
    if not note:
        raise ActionNotAllowed("A note saying how the run was resolved is required.")
    now = timezone.now()
    with transaction.atomic():
        changed = SagaRun.objects.filter(
            pk=run.pk, status=RunStatus.COMPENSATION_FAILED, needs_attention=True
        ).update(
            needs_attention=False,
            resolved_at=now,
            resolved_by=user if getattr(user, "is_authenticated", False) else None,
            resolution_note=note,
            updated_at=now,
        )
        if changed != 1:
            raise ActionNotAllowed(
                "Only a compensation_failed run that needs attention can be "
                f"resolved; this one is {_status(run)}."
            )
        RunStatusChange.objects.create(
            run_id=run.pk,
            from_status=RunStatus.COMPENSATION_FAILED,
            to_status=RunStatus.COMPENSATION_FAILED,
            at=now,
            reason=f"resolved by {user}: {note}",
        )
    logger.info("run=%s resolved by %s", run.pk, user)


def _status(run: SagaRun) -> str:
    current = SagaRun.objects.filter(pk=run.pk).values_list("status", flat=True).first()
    return str(current)
