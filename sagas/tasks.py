"""Celery tasks of the orchestrator: thin wrappers that load by id.

The tasks are acknowledged late and rejected on worker loss (see the
Celery settings), so a worker that dies mid-step puts the message back.
They are safe to run twice: every state change in ``sagas.services`` is a
compare-and-set, and each downstream request carries a stable
``Idempotency-Key``.
"""

from celery import shared_task

from controlplane import tracing
from sagas import services, sweeper


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


@shared_task(name="sagas.tcc_advance", acks_late=True, reject_on_worker_lost=True)
def tcc_advance(run_id: str) -> None:
    from sagas import tcc

    with tracing.run_logging_context(run_id):
        tcc.advance(run_id)
