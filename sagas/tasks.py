"""Celery tasks of the orchestrator: thin wrappers that load by id.

The tasks are acknowledged late and rejected on worker loss (see the
Celery settings), so a worker that dies mid-step puts the message back.
They are safe to run twice: every state change in ``sagas.services`` is a
compare-and-set, and each downstream request carries a stable
``Idempotency-Key``.
"""

from typing import Any

from celery import Task, shared_task

from controlplane import outbox, tracing
from sagas import choreography, services, sweeper


@shared_task(name="sagas.execute_step", acks_late=True, reject_on_worker_lost=True)
def execute_step(run_id: str, index: int) -> None:
    with tracing.run_logging_context(run_id):
        services.execute_step(run_id, index)


@shared_task(name="sagas.compensate_next", acks_late=True, reject_on_worker_lost=True)
def compensate_next(run_id: str) -> None:
    with tracing.run_logging_context(run_id):
        services.compensate_next(run_id)


@shared_task(name="sagas.resume_stalled_runs")
def resume_stalled_runs() -> int:
    return sweeper.resume_stalled_runs()


# max_retries=None on the task, not on retry(): Celery 5.7's retry() reads
# None there as "the task's default" (3 retries). place_order returns once
# the run has left pending, so the run's deadline ends the retries.
@shared_task(
    name="sagas.start_choreographed_run",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,
)
def start_choreographed_run(self: Task, run_id: str) -> None:
    with tracing.run_logging_context(run_id):
        try:
            choreography.place_order(run_id)
        except choreography.StartPending as exc:
            raise self.retry(
                exc=exc, countdown=choreography.START_RETRY_SECONDS
            ) from exc


@shared_task(name="sagas.record_event", acks_late=True, reject_on_worker_lost=True)
def record_event(subscriber: str, message: dict[str, Any]) -> None:
    with outbox.consume_span(subscriber, message):
        choreography.record_event(message)


@shared_task(name="sagas.sweep_choreographed_runs")
def sweep_choreographed_runs() -> int:
    """Resume lost starts and end overdue runs; return how many runs ended."""
    choreography.resume_pending_runs()
    return choreography.expire_overdue_runs()


@shared_task(name="sagas.tcc_advance", acks_late=True, reject_on_worker_lost=True)
def tcc_advance(run_id: str) -> None:
    from sagas import tcc

    with tracing.run_logging_context(run_id):
        tcc.advance(run_id)
