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
   token, a lease renewed while the call runs), sends its action through
   the resilience pipeline with a stable idempotency key and stores the
   result under that token. Success enqueues the next step, or completes
   the run after the last one.
3. A failed step moves the run to ``compensating``; ``compensate_next``
   then undoes the steps that took effect or may have, latest first, one
   task each, and ends the run ``compensated`` or ``compensation_failed``.

``sagas.sweeper`` resumes what a lost worker or a lost message left behind.
"""

import logging
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from controlplane import metrics, tracing
from resilience.core import RetryLater
from resilience.services import HttpOutcome
from sagas import leases, statements
from sagas.calls import Sent, perform, send, store_attempts
from sagas.definitions import validate_input
from sagas.models import (
    RunStatus,
    RunStatusChange,
    SagaDefinition,
    SagaRun,
    StepRun,
    StepStatus,
    StepStatusChange,
)

logger = logging.getLogger(__name__)


def start_run(definition: SagaDefinition, data: Any, user: Any = None) -> SagaRun:
    """Validate the input, store a pending run and enqueue its first step."""
    if definition.kind == SagaDefinition.Kind.TCC:
        from sagas import tcc

        return tcc.start_transaction(definition, data, user)
    cleaned = validate_input(definition.input_schema, data)
    if definition.kind == SagaDefinition.Kind.CHOREOGRAPHY:
        from sagas import choreography

        return choreography.start_run(definition, cleaned, user)

    # The run span ends when this function returns; steps in the workers
    # open their spans under the traceparent stored on the run.
    with tracing.run_span(definition.name) as trace_fields, transaction.atomic():
        run = create_run(definition, cleaned, user, trace_fields, "run created")
        statements.insert(
            [
                StepRun(run=run, index=index, name=step["name"], target=step["target"])
                for index, step in enumerate(definition.steps)
            ]
        )
        transaction.on_commit(lambda: enqueue_step(run.pk, 0))

    logger.info("run=%s saga=%s started", run.pk, definition.name)
    return run


def create_run(
    definition: SagaDefinition,
    cleaned: dict[str, Any],
    user: Any,
    trace_fields: dict[str, str],
    reason: str,
) -> SagaRun:
    """Store a pending run of a definition with its first history row.

    Call it inside the run's span and a transaction, which the caller
    completes with the run's steps or phases.
    """
    run = SagaRun(
        definition=definition,
        steps_snapshot=definition.steps,
        input=cleaned,
        created_by=user if user is not None and user.is_authenticated else None,
        **trace_fields,
    )
    statements.insert([run])
    tracing.set_span_run_id(run.pk)
    statements.insert(
        [
            RunStatusChange(
                run=run,
                from_status="",
                to_status=RunStatus.PENDING,
                at=timezone.now(),
                reason=reason,
            )
        ]
    )
    return run


def transition_run(
    run_id: Any, expected: list[str], new: str, reason: str, **fields: Any
) -> bool:
    """Move a run from one of the expected statuses to a new one, once."""
    now = timezone.now()
    with transaction.atomic(savepoint=False):
        current: str | None = expected[0]  # the UPDATE below checks it
        if len(expected) > 1:
            current = (
                SagaRun.objects.filter(pk=run_id)
                .values_list("status", flat=True)
                .first()
            )
        if current not in expected:
            return False
        changed = statements.update(
            SagaRun,
            {"pk": run_id, "status": current},
            {"status": new, "updated_at": now, **fields},
        )
        if changed != 1:
            return False
        statements.insert(
            [
                RunStatusChange(
                    run_id=run_id,
                    from_status=current,
                    to_status=new,
                    at=now,
                    reason=reason,
                )
            ]
        )

    def committed() -> None:
        logger.info("run=%s status %s -> %s (%s)", run_id, current, new, reason)
        metrics.record_run_transition(run_id, new)

    # Log and count the change once it is committed: inside a transaction
    # that is also after SQLite's write lock is released.
    transaction.on_commit(committed)
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
    filters: dict[str, Any] = {"pk": step.pk, "status": expected}
    if token is not None:
        filters["lease_token"] = token
    with transaction.atomic(savepoint=False):
        changed = statements.update(StepRun, filters, {"status": new, **fields})
        if changed != 1:
            return False
        statements.insert(
            [
                StepStatusChange(
                    step_id=step.pk,
                    from_status=expected,
                    to_status=new,
                    at=now,
                    reason=reason,
                )
            ]
        )
    step.status = new
    return True


def execute_step(run_id: Any, index: int) -> None:
    """Run a step's action, then the run's next steps while time allows.

    A worker that finished a step goes on with the run's next step itself
    for up to ``SAGA_INLINE_SECONDS`` from the start of the task, which
    saves a message, a task start and two reads per step. The step after
    that goes through the broker again, so one long run does not keep a
    worker from the others. Each step is still claimed with its own lease
    and fencing token, so a worker lost midway loses only the step it was
    running, which the sweeper resumes.

    A message for a step that already succeeded (redelivered after its
    worker was lost further on) moves on to the step after it. While time
    is left, the next step is claimed in the transaction that stores the
    previous step's result, which saves a transaction per step.
    """
    run = SagaRun.objects.filter(pk=run_id).first()
    if run is None:
        logger.warning("run=%s step=%s skipped: run not found", run_id, index)
        return
    # Loaded once; a claim checks each step's status and token anyway.
    steps = {step.index: step for step in run.steps.all()}
    deadline = time.monotonic() + settings.SAGA_INLINE_SECONDS
    token: int | None = None
    while index in steps:
        next_step = steps.get(index + 1) if time.monotonic() < deadline else None
        with tracing.saga_span(run, "saga.step", index):
            following = _execute_step(run, steps[index], token, next_step)
        if following is None:
            return
        index, token = following
        if token is None and time.monotonic() >= deadline:
            enqueue_step(run.pk, index)
            return


def _execute_step(
    run: SagaRun, step: StepRun, token: int | None, next_step: StepRun | None
) -> tuple[int, int | None] | None:
    """Run the step's action and return which step comes next, if any.

    ``token`` is the claim already taken on the step, if any. ``next_step``,
    when given, is claimed along with this step's result. Returns the next
    step's index and the token of its claim (None when it is not claimed
    yet), or None when the run does not go on in this task.
    """
    index = step.index
    if token is None:
        # One transaction starts a pending run and claims the step.
        with transaction.atomic():
            if not _ensure_running(run, index):
                return None
            if step.status == StepStatus.SUCCEEDED:
                return index + 1, None
            token = _claim_action(run, step)
        if token is None:
            return None
    elif not _ensure_running(run, index):
        return None

    spec = run.steps_snapshot[index]
    with leases.renewing(step, token):
        sent = send(run, step, spec, "action")
    if sent.outcome.retry_later is not None:
        _wait_for_retry(run, step, token, sent)
    elif sent.outcome.outcome == "succeeded":
        return _finish_step_succeeded(run, step, token, sent, next_step)
    else:
        _finish_step_failed(run, step, token, sent)
    return None


def _ensure_running(run: SagaRun, index: int) -> bool:
    """Start the run if it is pending, and return whether it is running."""
    if run.status == RunStatus.PENDING:
        started_at = timezone.now()
        started = transition_run(
            run.pk,
            [RunStatus.PENDING],
            RunStatus.RUNNING,
            "first step started",
            started_at=started_at,
        )
        if started:
            run.status, run.started_at = RunStatus.RUNNING, started_at
        else:
            run.refresh_from_db()
    if run.status != RunStatus.RUNNING:
        logger.info("run=%s step=%s skipped: run is %s", run.pk, index, run.status)
        return False
    return True


def _claim_action(run: SagaRun, step: StepRun) -> int | None:
    claimable = (
        Q(status=StepStatus.PENDING)
        | leases.expired(StepStatus.RUNNING)
        | leases.expired(StepStatus.WAITING)
    )
    token, previous = leases.claim(
        step,
        claimable,
        StepStatus.RUNNING,
        "action_claims",
        "claimed by a worker",
        ready=StepStatus.PENDING,
        # A step resumed after a retry wait keeps its first start.
        started_at=step.started_at or timezone.now(),
    )
    if token is not None:
        return token
    if previous is None:
        logger.info("run=%s step=%s not claimable", step.run_id, step.name)
        return None

    # Every earlier claim ended with its worker lost: give the step up as
    # of unknown outcome, which compensates it with the steps before it.
    reason = f"given up after {step.action_claims} claims whose workers were lost"
    stored = transition_step(
        step,
        previous,
        StepStatus.FAILED,
        reason,
        finished_at=timezone.now(),
        error=reason,
        outcome_unknown=True,
        lease_expires_at=None,
    )
    if stored:
        logger.warning("run=%s step=%s %s", run.pk, step.name, reason)
        _after_failure(run, step, f"step {step.name} failed: {reason}")
    return None


@transaction.atomic
def _wait_for_retry(run: SagaRun, step: StepRun, token: int, sent: Sent) -> None:
    """Park the step until its next retry is due, instead of sleeping.

    The step becomes ``waiting`` with its wake-up time as its lease end and
    the attempt to resume with, all in the database, so the wait survives
    the worker and any broker. The claim it ends is not counted against
    ``SAGA_MAX_CLAIMS``, since no worker was lost. A delayed message wakes
    it on time; the sweeper wakes it when that message is lost or the wait
    is longer than ``SAGA_COUNTDOWN_LIMIT``.
    """
    recorded = store_attempts(step, "action", sent)
    outcome = sent.outcome
    later = outcome.retry_later
    assert later is not None
    wake_at = timezone.now() + timedelta(seconds=later.delay)
    reason = f"{failure_reason(outcome)[:3800]}; next try at {wake_at.isoformat()}"
    unknown = {"outcome_unknown": True} if outcome.outcome_unknown else {}
    stored = transition_step(
        step,
        StepStatus.RUNNING,
        StepStatus.WAITING,
        reason,
        token=token,
        **recorded,
        error=reason,
        lease_expires_at=wake_at,
        resume_attempt=later.attempt,
        resume_delay=later.delay,
        action_claims=statements.Add(-1),
        **unknown,
    )
    if not stored:
        _reject_stale(run, step, token, recorded)
        return
    logger.info("run=%s step=%s waiting: %s", run.pk, step.name, reason)
    if later.delay <= settings.SAGA_COUNTDOWN_LIMIT:
        countdown = later.delay + WAKE_MARGIN
        transaction.on_commit(
            lambda: enqueue_step(run.pk, step.index, countdown=countdown)
        )


# Seconds added to a delayed wake-up message, so that it arrives after the
# lease it waits for has passed even with some clock skew between hosts.
WAKE_MARGIN = 0.2


@transaction.atomic
def _finish_step_succeeded(
    run: SagaRun, step: StepRun, token: int, sent: Sent, next_step: StepRun | None
) -> tuple[int, int | None] | None:
    """Store the step's result; return the next step's index, if one is due.

    With ``next_step`` given, the next step is claimed in this transaction
    too, and its token is returned with its index.

    One transaction contains the step's result and the run's completion, so a
    worker lost between the two cannot leave a finished run "running". A
    worker lost after it, before the next step starts, leaves a run the
    sweeper finds idle and moves on.
    """
    recorded = store_attempts(step, "action", sent)
    outcome = sent.outcome
    stored = transition_step(
        step,
        StepStatus.RUNNING,
        StepStatus.SUCCEEDED,
        "action succeeded",
        token=token,
        **recorded,
        finished_at=timezone.now(),
        output=outcome.body,
        error="",
        lease_expires_at=None,
        resume_attempt=None,
        resume_delay=None,
    )
    if not stored:
        _reject_stale(run, step, token, recorded)
        return None

    next_index = step.index + 1
    run.status = statements.select_value(SagaRun, run.pk, "status")
    if run.status == RunStatus.COMPENSATING:
        # Cancelled while this step ran: undo it with the others.
        transaction.on_commit(lambda: enqueue_compensation(run.pk))
    elif next_index < len(run.steps_snapshot):
        if next_step is None:
            return next_index, None
        return next_index, _claim_action(run, next_step)
    else:
        transition_run(
            run.pk,
            [RunStatus.RUNNING],
            RunStatus.COMPLETED,
            "all steps succeeded",
            finished_at=timezone.now(),
        )
    return None


@transaction.atomic
def _finish_step_failed(run: SagaRun, step: StepRun, token: int, sent: Sent) -> None:
    recorded = store_attempts(step, "action", sent)
    outcome = sent.outcome
    reason = failure_reason(outcome)
    stored = transition_step(
        step,
        StepStatus.RUNNING,
        StepStatus.FAILED,
        reason[:4000],
        token=token,
        **recorded,
        finished_at=timezone.now(),
        error=reason[:4000],
        # An earlier claim's worker may have sent the request before it was
        # lost, so a later claim that fails leaves that one's outcome unknown;
        # so may an attempt made before a retry wait.
        outcome_unknown=(
            outcome.outcome_unknown or step.outcome_unknown or step.action_claims > 1
        ),
        lease_expires_at=None,
        resume_attempt=None,
        resume_delay=None,
    )
    if not stored:
        _reject_stale(run, step, token, recorded)
        return
    logger.info("run=%s step=%s failed: %s", run.pk, step.name, reason)
    _after_failure(run, step, f"step {step.name} failed", error=reason[:4000])


def _reject_stale(
    run: SagaRun, step: StepRun, token: int, recorded: dict[str, Any]
) -> None:
    """Keep a superseded claim's exchange and attempt count, and log it."""
    if recorded:
        statements.update(StepRun, {"pk": step.pk}, recorded)
    _log_stale(run, step, token)


def _log_stale(run: SagaRun, step: StepRun, token: int) -> None:
    logger.warning(
        "run=%s step=%s token=%s stale result rejected: lease was taken over",
        run.pk,
        step.name,
        token,
    )


def _after_failure(run: SagaRun, step: StepRun, reason: str, **fields: Any) -> None:
    """Compensate after a failed step, or pause if its definition asks for it.

    A paused run waits for an operator, who retries the step or cancels
    the run; a cancel that came first wins, and the run compensates.
    """
    if run.steps_snapshot[step.index].get("on_failure") == "pause":
        paused = transition_run(
            run.pk,
            [RunStatus.RUNNING],
            RunStatus.PAUSED,
            f"{reason}; paused for an operator",
            needs_attention=True,
            **fields,
        )
        if paused:
            return
    _start_compensation(run.pk, reason, **fields)


def _start_compensation(run_id: Any, reason: str, **fields: Any) -> None:
    moved = transition_run(
        run_id, [RunStatus.RUNNING], RunStatus.COMPENSATING, reason, **fields
    )
    status = SagaRun.objects.values_list("status", flat=True).get(pk=run_id)
    if moved or status == RunStatus.COMPENSATING:
        transaction.on_commit(lambda: enqueue_compensation(run_id))


def failure_reason(outcome: HttpOutcome) -> str:
    """Describe why a call failed, for the step's error and the history."""
    if outcome.rejected_by:
        return f"rejected by {outcome.rejected_by}: {outcome.error}"
    return outcome.error or f"failed with HTTP {outcome.status_code}"


def compensate_next(run_id: Any) -> None:
    """Undo the latest step that took effect, or finish the compensation.

    1. Wait while a step still runs under a live lease: its result decides
       whether it needs undoing, and its worker enqueues this task again.
    2. A step still ``running`` with an expired lease lost its worker: it
       becomes ``failed`` with an unknown outcome, so it is undone too.
    3. Claim the highest step that took effect (or may have) and has a
       compensation, send it with its own retry budget, store the result.
    4. With no such step left, end the run.
    """
    run = SagaRun.objects.filter(pk=run_id).first()
    if run is None or run.status != RunStatus.COMPENSATING:
        return
    busy = run.steps.filter(
        leases.live(StepStatus.RUNNING) | leases.live(StepStatus.COMPENSATING)
    )
    if busy.exists():
        return
    for lost in run.steps.filter(leases.expired(StepStatus.RUNNING)):
        transition_step(
            lost,
            StepStatus.RUNNING,
            StepStatus.FAILED,
            "worker lost while the action ran",
            token=lost.lease_token,
            finished_at=timezone.now(),
            outcome_unknown=True,
            lease_expires_at=None,
        )

    for waiting in run.steps.filter(status=StepStatus.WAITING):
        # Its earlier attempts decide: a possible effect is undone below.
        transition_step(
            waiting,
            StepStatus.WAITING,
            StepStatus.FAILED,
            "run compensating while the step waited to retry",
            finished_at=timezone.now(),
            lease_expires_at=None,
            resume_attempt=None,
            resume_delay=None,
        )

    step = _next_to_compensate(run)
    if step is None:
        _finish_compensation(run)
        return
    token = _claim_compensation(run, step)
    if token is not None:
        spec = run.steps_snapshot[step.index]
        with tracing.saga_span(run, "saga.compensation", step.index):
            with leases.renewing(step, token):
                outcome = perform(run, step, spec, "compensation")
            _finish_compensation_step(run, step, token, outcome)
        step.refresh_from_db()
        if step.status == StepStatus.COMPENSATING:
            return  # postponed: a delayed message or the sweeper wakes it up
    transaction.on_commit(lambda: enqueue_compensation(run.pk))


def _compensable(run: SagaRun) -> Q:
    took_effect = Q(status=StepStatus.SUCCEEDED) | Q(
        status=StepStatus.FAILED, outcome_unknown=True
    )
    candidates = took_effect | leases.expired(StepStatus.COMPENSATING)
    if run.compensation_retry_requested_at is not None:
        candidates |= Q(
            status=StepStatus.COMPENSATION_FAILED,
            compensation_finished_at__lt=run.compensation_retry_requested_at,
        )
    return candidates


def _next_to_compensate(run: SagaRun) -> StepRun | None:
    """Return the highest step that took effect or may have, with an undo."""
    for step in run.steps.filter(_compensable(run)).order_by("-index"):
        if run.steps_snapshot[step.index].get("compensation"):
            return step
    return None


def _claim_compensation(run: SagaRun, step: StepRun) -> int | None:
    token, previous = leases.claim(
        step,
        _compensable(run) & Q(pk=step.pk),
        StepStatus.COMPENSATING,
        "compensation_claims",
        "compensation started",
        compensation_started_at=timezone.now(),
    )
    if token is not None or previous is None:
        return token
    reason = (
        f"compensation given up after {step.compensation_claims} claims "
        "whose workers were lost"
    )
    transition_step(
        step,
        previous,
        StepStatus.COMPENSATION_FAILED,
        reason,
        compensation_finished_at=timezone.now(),
        compensation_error=reason,
        lease_expires_at=None,
    )
    logger.warning("run=%s step=%s %s", run.pk, step.name, reason)
    return None


def _finish_compensation_step(
    run: SagaRun, step: StepRun, token: int, outcome: HttpOutcome
) -> None:
    if outcome.rejected_by and not outcome.attempts:
        _postpone_compensation(run, step, token, outcome)
        return
    if outcome.retry_later is not None:
        _postpone_compensation(run, step, token, outcome, outcome.retry_later)
        return
    if outcome.outcome == "succeeded":
        stored = transition_step(
            step,
            StepStatus.COMPENSATING,
            StepStatus.COMPENSATED,
            "compensation succeeded",
            token=token,
            compensation_finished_at=timezone.now(),
            compensation_error="",
            lease_expires_at=None,
            resume_attempt=None,
            resume_delay=None,
        )
    else:
        reason = failure_reason(outcome)
        logger.warning(
            "run=%s step=%s compensation failed: %s", run.pk, step.name, reason
        )
        stored = transition_step(
            step,
            StepStatus.COMPENSATING,
            StepStatus.COMPENSATION_FAILED,
            reason[:4000],
            token=token,
            compensation_finished_at=timezone.now(),
            compensation_error=reason[:4000],
            lease_expires_at=None,
            resume_attempt=None,
            resume_delay=None,
        )
    if not stored:
        _log_stale(run, step, token)


def _postpone_compensation(
    run: SagaRun,
    step: StepRun,
    token: int,
    outcome: HttpOutcome,
    later: RetryLater | None = None,
) -> None:
    """Try a compensation again later, without holding a worker meanwhile.

    Two cases wait this way. The pipeline rejected the compensation unsent:
    a breaker that is open, a full bulkhead or an exhausted rate limit is
    no failure of the compensation itself, so it does not use up its retry
    budget, and the next try comes after SAGA_REJECTED_RETRY_SECONDS. Or
    its next retry waits longer than SAGA_MAX_INLINE_WAIT (``later``): the
    retry budget carries on from the stored attempt.

    Either way the step keeps its status with a lease that ends at the next
    try, and the claim is not counted. A delayed message or the sweeper
    wakes the run up then. Until the target lets the compensation through
    (an operator may have forced the breaker open), the run stays
    compensating with that scheduled wake-up.
    """
    seconds = later.delay if later else settings.SAGA_REJECTED_RETRY_SECONDS
    wake_at = timezone.now() + timedelta(seconds=seconds)
    reason = failure_reason(outcome)
    resume = {}
    if later is not None:
        resume = {"resume_attempt": later.attempt, "resume_delay": later.delay}
    postponed = StepRun.objects.filter(
        pk=step.pk, status=StepStatus.COMPENSATING, lease_token=token
    ).update(
        lease_expires_at=wake_at,
        compensation_claims=F("compensation_claims") - 1,
        compensation_error=f"{reason[:3900]}; next try at {wake_at.isoformat()}",
        **resume,
    )
    if not postponed:
        _log_stale(run, step, token)
        return
    if seconds <= settings.SAGA_COUNTDOWN_LIMIT:
        enqueue_compensation(run.pk, countdown=seconds + WAKE_MARGIN)
    logger.info(
        "run=%s step=%s compensation postponed to %s: %s",
        run.pk,
        step.name,
        wake_at.isoformat(),
        reason,
    )


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
            "every step that took effect was compensated",
            finished_at=now,
            needs_attention=False,
        )


def enqueue_step(run_id: Any, index: int, countdown: float | None = None) -> None:
    from sagas import tasks

    tasks.execute_step.apply_async((str(run_id), index), countdown=countdown)


def enqueue_compensation(run_id: Any, countdown: float | None = None) -> None:
    from sagas import tasks

    tasks.compensate_next.apply_async((str(run_id),), countdown=countdown)


def run_age(run: SagaRun) -> timedelta | None:
    """Return how long the run took, or has taken so far."""
    if run.started_at is None:
        return None
    return (run.finished_at or timezone.now()) - run.started_at


def settle_idle_run(run: SagaRun) -> str | None:
    """Move on a running run that no worker is moving, and say how.

    Returns "step" when its next step was enqueued, "compensation" when a
    failed step started its compensation, "completed" when every step had
    succeeded, or None when there is nothing to do.
    """
    statuses = dict(run.steps.values_list("index", "status"))
    if StepStatus.FAILED in statuses.values():
        _start_compensation(run.pk, "a step had failed; resumed by the sweeper")
        return "compensation"
    pending = sorted(
        i for i, status in statuses.items() if status == StepStatus.PENDING
    )
    if pending:
        enqueue_step(run.pk, pending[0])
        return "step"
    if all(status == StepStatus.SUCCEEDED for status in statuses.values()):
        transition_run(
            run.pk,
            [RunStatus.RUNNING],
            RunStatus.COMPLETED,
            "all steps succeeded; completed by the sweeper",
            finished_at=timezone.now(),
        )
        return "completed"
    return None
