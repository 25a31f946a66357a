"""Celery task that delivers an event to a demo service's consumer."""

from typing import Any

from celery import Task, shared_task

from demo import consumers


@shared_task(
    name="demo.consume_event",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    # The consumer counts its own attempts (FORWARD_ATTEMPTS, RETRY_ATTEMPTS)
    # and stops raising RetryLater when they run out, so Celery must not cap
    # them. Passing max_retries=None to retry() would not do it: Celery 5.7
    # reads that as "the task's default", 3 retries.
    max_retries=None,
)
def consume_event(self: Task, consumer: str, message: dict[str, Any]) -> None:
    attempt = self.request.retries + 1
    try:
        consumers.consume(consumer, message, attempt)
    except consumers.RetryLater as exc:
        raise self.retry(exc=exc, countdown=exc.countdown) from exc
