"""The sweeper: resumes runs that a lost worker or a lost message left behind.

Celery beat runs it every ``SAGA_SWEEP_INTERVAL`` seconds. Every task it
enqueues is safe to run twice, because the task claims its step by
compare-and-set with a new fencing token; so the sweeper may err towards
enqueueing.
"""

import logging
from datetime import timedelta

import redis
from django.conf import settings
from django.db.models import Max, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from resilience.services import redis_client
from sagas import leases
from sagas.models import RunStatus, SagaDefinition, SagaRun, StepRun, StepStatus
from sagas.services import enqueue_compensation, enqueue_step, settle_idle_run

logger = logging.getLogger(__name__)

# A pending run whose first step message was lost (the broker was down at
# commit time) is enqueued again once it is this old.
PENDING_RESUME_AFTER = timedelta(seconds=30)


# The sweeper resumes orchestrated runs only: a choreographed run has no
# steps, and its events and deadline (sagas.choreography) move it instead.
ORCHESTRATED = Q(definition__kind=SagaDefinition.Kind.ORCHESTRATED)

# A run that only looks idle (its next message may still wait in the
# queue) is resumed at most once per this many seconds.
AMBIGUOUS_RESUME_INTERVAL = 60


def _queue_backlog() -> int:
    """Return how many messages wait in the saga queue, or 0 if unknown."""
    from controlplane.celery import app

    try:
        with app.connection_for_write() as connection:
            channel = connection.default_channel
            queue = settings.CELERY_TASK_DEFAULT_QUEUE
            return int(channel.client.llen(queue))
    except Exception as exc:  # the broker's client type depends on the URL
        logger.debug("queue length unknown: %s", exc)
        return 0


def first_resume(run_id: object) -> bool:
    """Return True once per AMBIGUOUS_RESUME_INTERVAL for each run."""
    key = f"rcp:sweeper:resumed:{run_id}"
    try:
        return bool(redis_client().set(key, "1", nx=True, ex=AMBIGUOUS_RESUME_INTERVAL))
    except redis.RedisError as exc:
        logger.warning("run=%s resume throttle unavailable: %s", run_id, exc)
        return True


def resume_stalled_runs() -> int:
    """Enqueue the work of stalled runs again and return how many there were.

    1. A running step whose lease expired lost its worker, and a waiting
       step's retry is due: run it again.
    2. A running run with no step running whose last step finished a lease
       ago lost the message for its next step: enqueue that step.
    3. A compensating run with no step under a live lease lost its
       compensation message or worker: enqueue its compensation again.
    4. A run still pending after ``PENDING_RESUME_AFTER``: enqueue step 0.
    """
    resumed = _resume_expired_steps()
    resumed += _resume_tcc_runs()
    # Steps 2 to 4 cannot tell a lost message from one still waiting behind
    # a backlog, so they wait for an empty queue and resume each run at most
    # once a minute; otherwise a slow queue would fill with duplicates.
    if _queue_backlog() == 0:
        resumed += _resume_idle_running_runs()
        resumed += _resume_idle_compensations()
        resumed += _resume_lost_pending_runs()
    return resumed


def _resume_expired_steps() -> int:
    expired = StepRun.objects.filter(
        leases.expired(StepStatus.RUNNING) | leases.expired(StepStatus.WAITING),
        run__status=RunStatus.RUNNING,
    ).values_list("run_id", "index", "status")
    for run_id, index, status in expired:
        if status == StepStatus.WAITING:
            logger.info("run=%s step=%s retry due; resuming", run_id, index)
        else:
            logger.warning("run=%s step=%s lease expired; resuming", run_id, index)
        enqueue_step(run_id, index)
    return len(expired)


def _resume_idle_running_runs() -> int:
    idle_since = timezone.now() - timedelta(seconds=settings.SAGA_LEASE_SECONDS)
    runs = (
        SagaRun.objects.filter(ORCHESTRATED, status=RunStatus.RUNNING)
        .exclude(steps__status__in=[StepStatus.RUNNING, StepStatus.WAITING])
        # A run whose worker died before it claimed step 0 has no finished
        # step, so its start time is used as the last finish.
        .annotate(last_finished=Coalesce(Max("steps__finished_at"), "started_at"))
        .filter(last_finished__lt=idle_since)
    )
    resumed = 0
    for run in runs:
        if not first_resume(run.pk):
            continue
        outcome = settle_idle_run(run)
        if outcome is not None:
            logger.warning("run=%s idle while running; resumed: %s", run.pk, outcome)
            resumed += 1
    return resumed


def _resume_idle_compensations() -> int:
    busy = Q(
        steps__status__in=[StepStatus.RUNNING, StepStatus.COMPENSATING],
        steps__lease_expires_at__gte=timezone.now(),
    )
    idle_since = timezone.now() - timedelta(seconds=settings.SAGA_LEASE_SECONDS)
    runs = (
        SagaRun.objects.filter(
            ORCHESTRATED, status=RunStatus.COMPENSATING, updated_at__lt=idle_since
        )
        .exclude(busy)
        .values_list("pk", flat=True)
    )
    resumed = 0
    for run_id in runs:
        if not first_resume(run_id):
            continue
        logger.warning("run=%s compensation idle; resuming", run_id)
        enqueue_compensation(run_id)
        resumed += 1
    return resumed


def _resume_lost_pending_runs() -> int:
    lost = SagaRun.objects.filter(
        ORCHESTRATED,
        status=RunStatus.PENDING,
        created_at__lt=timezone.now() - PENDING_RESUME_AFTER,
    ).values_list("pk", flat=True)
    resumed = 0
    for run_id in lost:
        if not first_resume(run_id):
            continue
        logger.warning("run=%s still pending; enqueueing its first step", run_id)
        enqueue_step(run_id, 0)
        resumed += 1
    return resumed


def _resume_tcc_runs() -> int:
    """Enqueue the coordinator of TCC runs that no worker is driving.

    1. A run whose lease expired lost its worker: enqueued at once.
    2. A run past its try timeout in phase one must be aborted: at once.
    3. A run with no worker lease whose next phase-two round is due
       (``retry_at`` has passed) lost its delayed retry message, or that
       message waits behind others: enqueued at once, so the round starts
       within one sweep interval after it was due. A duplicate message
       only fails to claim the lease.
    4. A run with no lease and no round due that has not changed for a
       lease's length lost its first message: enqueued at most once per
       AMBIGUOUS_RESUME_INTERVAL.
    """
    from sagas.tcc import ACTIVE_STATUSES, enqueue_advance

    now = timezone.now()
    idle_since = now - timedelta(seconds=settings.SAGA_LEASE_SECONDS)
    active = SagaRun.objects.filter(status__in=ACTIVE_STATUSES, tcc__isnull=False)
    unheld = Q(tcc__lease_expires_at__isnull=True)
    urgent = active.filter(
        Q(tcc__lease_expires_at__lt=now)
        | (
            unheld
            & Q(tcc__try_deadline__lt=now)
            & Q(status__in=[RunStatus.PENDING, RunStatus.TRYING])
        )
    ).values_list("pk", flat=True)
    due = active.filter(unheld, tcc__retry_at__lte=now).values_list("pk", flat=True)
    idle = active.filter(
        unheld, tcc__retry_at__isnull=True, updated_at__lt=idle_since
    ).values_list("pk", flat=True)

    resumed = set(urgent)
    for run_id in resumed:
        logger.warning("run=%s tcc coordinator idle; resuming", run_id)
    for run_id in set(due) - resumed:
        logger.info("run=%s tcc phase two retry due; resuming", run_id)
        resumed.add(run_id)
    for run_id in set(idle) - resumed:
        if first_resume(run_id):
            logger.warning("run=%s tcc coordinator idle; resuming", run_id)
            resumed.add(run_id)
    for run_id in resumed:
        enqueue_advance(run_id)
    return len(resumed)
