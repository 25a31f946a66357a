"""The Try-Confirm-Cancel coordinator.

A TCC run goes through two phases, driven by one Celery task
(``sagas.tcc_advance``) that a worker runs under a lease on the run's
``TccTransaction`` row:

1. Phase one sends every participant's ``try``, in order. The first try
   that fails, or whose outcome is unknown, ends phase one with an abort;
   so does the try timeout (``TCC_TRY_TIMEOUT_SECONDS``).
2. The decision, commit when every try succeeded and abort otherwise, is
   stored by compare-and-set on the empty decision, with the run's move to
   ``confirming`` or ``cancelling``, in one database transaction. No
   phase-two call is sent before it commits.
3. Phase two sends every participant's ``confirm`` (commit) or ``cancel``
   (abort), the cancel also to participants whose try failed, had an
   unknown outcome or was never sent, because a cancel before its try is
   harmless and makes a late try fail. Calls that fail are sent again,
   with the same Idempotency-Key, every ``TCC_RETRY_SECONDS`` until they
   succeed or the phase-two budget (``TCC_PHASE_TWO_BUDGET_SECONDS``) runs
   out, which ends the run ``needs_attention``.

Every result is stored only while the worker's fencing token is still the
row's ``lease_token``, so a stalled worker's late result is rejected. A
worker lost mid-run leaves a lease that expires. The sweeper then enqueues
the task again, and the next worker resumes from the stored phases and
decision. Between two rounds of phase two the run stores when the next is
due (``retry_at``), so the sweeper also resumes a run whose delayed retry
message was lost, within one sweep interval after it was due.
"""

import contextlib
import logging
import os
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from controlplane import tracing
from controlplane.idempotency import record_downstream_key
from resilience import services as resilience
from resilience.models import Target
from resilience.services import HttpOutcome, http_call
from sagas import leases
from sagas.calls import DEFAULT_COMPENSATION_RETRY, idempotency_key, truncate
from sagas.definitions import TemplateError, render, validate_input
from sagas.models import (
    RunStatus,
    SagaDefinition,
    SagaRun,
    TccPhase,
    TccTransaction,
)
from sagas.services import WAKE_MARGIN, create_run, failure_reason, transition_run

logger = logging.getLogger(__name__)

Phase = TccPhase.Phase
PhaseStatus = TccPhase.Status
Decision = TccTransaction.Decision

PHASE_TWO = {Decision.COMMIT: Phase.CONFIRM, Decision.ABORT: Phase.CANCEL}
PHASE_TWO_STATUS = {
    Decision.COMMIT: RunStatus.CONFIRMING,
    Decision.ABORT: RunStatus.CANCELLING,
}
FINAL_STATUS = {Decision.COMMIT: RunStatus.COMMITTED, Decision.ABORT: RunStatus.ABORTED}
ACTIVE_STATUSES = [
    RunStatus.PENDING,
    RunStatus.TRYING,
    RunStatus.CONFIRMING,
    RunStatus.CANCELLING,
]


def start_transaction(definition: SagaDefinition, data: Any, user: Any) -> SagaRun:
    """Validate the input, store a pending TCC run and enqueue its coordinator."""
    cleaned = validate_input(definition.input_schema, data)
    deadline = timezone.now() + timedelta(seconds=settings.TCC_TRY_TIMEOUT_SECONDS)

    with tracing.run_span(definition.name) as trace_fields, transaction.atomic():
        run = create_run(definition, cleaned, user, trace_fields, "transaction created")
        TccTransaction.objects.create(run=run, try_deadline=deadline)
        _create_phases(run, Phase.TRY)
        transaction.on_commit(lambda: enqueue_advance(run.pk))

    logger.info("run=%s tcc=%s started", run.pk, definition.name)
    return run


def _create_phases(run: SagaRun, phase: str) -> None:
    TccPhase.objects.bulk_create(
        TccPhase(
            run=run,
            index=index,
            participant=spec["name"],
            target=spec["target"],
            phase=phase,
            idempotency_key=idempotency_key(run.pk, spec["name"], phase),
        )
        for index, spec in enumerate(run.steps_snapshot)
    )


def advance(run_id: Any) -> None:
    """Claim the run's lease and drive it as far as it goes now."""
    run = SagaRun.objects.filter(pk=run_id).first()
    if run is None or run.is_terminal:
        return
    token = claim(run.pk)
    if token is None:
        logger.debug("run=%s tcc lease held or next round not yet due", run_id)
        return

    finished = False
    retry_at = None
    try:
        with renewing(run.pk, token):
            finished = _drive(run, token)
        if not finished:
            retry_at = timezone.now() + timedelta(seconds=settings.TCC_RETRY_SECONDS)
    finally:
        release(run.pk, token, retry_at)
    if retry_at is not None:
        # The margin lets the message arrive after retry_at despite some
        # clock skew between hosts, because claim() waits for retry_at.
        enqueue_advance(run.pk, countdown=settings.TCC_RETRY_SECONDS + WAKE_MARGIN)


def _drive(run: SagaRun, token: int) -> bool:
    """Run the phases that are due.

    Returns False when phase two must go on in a later round, and True when
    the run ended or another worker took it over.
    """
    if run.status == RunStatus.PENDING:
        transition_run(
            run.pk,
            [RunStatus.PENDING],
            RunStatus.TRYING,
            "phase one started",
            started_at=timezone.now(),
        )
    record = TccTransaction.objects.get(pk=run.pk)
    if not record.decision:
        verdict = _phase_one(run, record, token)
        if verdict is None:
            return True  # the lease was lost: the new holder goes on
        if not decide(run, token, *verdict):
            return True
        crash_point()
        record.refresh_from_db()
    return _phase_two(run, record, token)


def _phase_one(
    run: SagaRun, record: TccTransaction, token: int
) -> tuple[str, str] | None:
    """Send the tries still pending; return the decision and its reason."""
    for phase in run.phases.filter(phase=Phase.TRY).order_by("index"):
        if phase.status in (PhaseStatus.FAILED, PhaseStatus.UNKNOWN):
            return Decision.ABORT, f"try of {phase.participant} {phase.status}"
        if phase.status == PhaseStatus.SUCCEEDED:
            continue
        if timezone.now() > record.try_deadline:
            return Decision.ABORT, "phase one timed out before every try succeeded"
        if not send(run, phase, token):
            return None
        phase.refresh_from_db()
        if phase.status != PhaseStatus.SUCCEEDED:
            reason = f"try of {phase.participant} {phase.status}: {phase.error}"
            return Decision.ABORT, reason[:2000]
    return Decision.COMMIT, "every try succeeded"


def decide(run: SagaRun, token: int, decision: str, reason: str) -> bool:
    """Store the decision once, with the run's move to phase two.

    Returns False when the decision was not stored by this worker: its
    lease was taken over, or another worker decided first.
    """
    now = timezone.now()
    budget = timedelta(seconds=settings.TCC_PHASE_TWO_BUDGET_SECONDS)
    with transaction.atomic():
        stored = TccTransaction.objects.filter(
            pk=run.pk, decision="", lease_token=token
        ).update(
            decision=decision,
            decision_reason=reason,
            decided_at=now,
            phase_two_deadline=now + budget,
        )
        if stored != 1:
            return False
        _create_phases(run, PHASE_TWO[Decision(decision)])
        transition_run(
            run.pk,
            [RunStatus.PENDING, RunStatus.TRYING],
            PHASE_TWO_STATUS[Decision(decision)],
            f"decided {decision}: {reason}",
            **({"error": reason} if decision == Decision.ABORT else {}),
        )
    logger.info("run=%s tcc decided %s: %s", run.pk, decision, reason)
    return True


def crash_point() -> None:
    """End the worker right after a decision when the crash point is set.

    ``TCC_CRASH_AFTER_DECISION`` is set only in the environment of a test's
    stack, to prove that phase two resumes after such a crash.
    """
    if settings.TCC_CRASH_AFTER_DECISION:
        logger.warning("TCC_CRASH_AFTER_DECISION is set: the worker exits now")
        logging.shutdown()
        os._exit(1)


def _phase_two(run: SagaRun, record: TccTransaction, token: int) -> bool:
    """Send the confirms or cancels still due; end the run when all succeeded."""
    decision = Decision(record.decision)
    due = run.phases.filter(phase=PHASE_TWO[decision]).exclude(
        status=PhaseStatus.SUCCEEDED
    )
    for phase in due.order_by("index"):
        if not send(run, phase, token):
            return True
    if due.exists():
        return _out_of_budget(run, record)

    transition_run(
        run.pk,
        [PHASE_TWO_STATUS[decision]],
        FINAL_STATUS[decision],
        f"every participant's {PHASE_TWO[decision]} succeeded",
        finished_at=timezone.now(),
        needs_attention=False,
    )
    return True


def _out_of_budget(run: SagaRun, record: TccTransaction) -> bool:
    """Give phase two up when its budget is spent; return True if so.

    An operator then retries phase two or resolves the run by hand
    (``sagas.actions``).
    """
    assert record.phase_two_deadline is not None
    if timezone.now() <= record.phase_two_deadline:
        return False
    decision = Decision(record.decision)
    reason = (
        f"phase two ({PHASE_TWO[decision]}) did not finish within "
        f"{settings.TCC_PHASE_TWO_BUDGET_SECONDS:g} s"
    )
    transition_run(
        run.pk,
        [PHASE_TWO_STATUS[decision]],
        RunStatus.NEEDS_ATTENTION,
        reason,
        finished_at=timezone.now(),
        needs_attention=True,
        error=reason,
    )
    return True


def send(run: SagaRun, phase: TccPhase, token: int) -> bool:
    """Send one phase call and store its result under the fencing token.

    Returns False when the result was rejected because the lease was lost.
    """
    spec = run.steps_snapshot[phase.index]
    started_at = phase.started_at or timezone.now()
    with tracing.saga_span(run, f"tcc.{phase.phase}", phase.index):
        request, outcome = _call(run, spec, phase)
    status = _phase_status(outcome)
    stored = TccPhase.objects.filter(pk=phase.pk, run__tcc__lease_token=token).update(
        status=status,
        attempts=F("attempts") + max(len(outcome.attempts), 1),
        status_code=outcome.status_code,
        request=request,
        response={"status_code": outcome.status_code, "body": truncate(outcome.text)},
        error="" if status == PhaseStatus.SUCCEEDED else failure_reason(outcome)[:4000],
        started_at=started_at,
        finished_at=timezone.now(),
    )
    if not stored:
        logger.warning(
            "run=%s participant=%s %s token=%s stale result rejected",
            run.pk,
            phase.participant,
            phase.phase,
            token,
        )
        return False
    logger.info(
        "run=%s participant=%s %s %s", run.pk, phase.participant, phase.phase, status
    )
    return True


def _phase_status(outcome: HttpOutcome) -> str:
    if outcome.outcome == "succeeded":
        return PhaseStatus.SUCCEEDED
    if outcome.outcome_unknown:
        return PhaseStatus.UNKNOWN
    return PhaseStatus.FAILED


def _call(
    run: SagaRun, spec: dict[str, Any], phase: TccPhase
) -> tuple[dict[str, Any] | None, HttpOutcome]:
    """Render the phase's call from the run and send it through the pipeline."""
    from sagas.calls import definition_error

    call = spec[phase.phase]
    target = Target.objects.filter(name=spec["target"]).first()
    if target is None:
        return None, definition_error(f"Target '{spec['target']}' is not registered.")
    context = {"run": {"id": str(run.pk)}, "input": run.input}
    try:
        path = render(call["path"], context)
        body = render(call.get("body"), context)
        resilience.check_path(path)
    except (TemplateError, ValueError) as exc:
        return None, definition_error(str(exc))

    headers = {"Idempotency-Key": phase.idempotency_key, "X-Saga-Run": str(run.pk)}
    sent_at = timezone.now()
    outcome = http_call(
        target, call["method"], path, body, headers, _overrides(spec, phase)
    )
    record_downstream_key(
        run.pk,
        phase.participant,
        phase.phase,
        target.name,
        phase.idempotency_key,
        outcome.status_code,
        sent_at,
    )
    request = {
        "method": call["method"],
        "url": target.base_url.rstrip("/") + path,
        "idempotency_key": phase.idempotency_key,
        "body": truncate(body),
    }
    return request, outcome


def _overrides(spec: dict[str, Any], phase: TccPhase) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if phase.phase == Phase.TRY:
        if spec.get("retry"):
            overrides["retry"] = spec["retry"]
    else:
        # Phase two must finish: a larger budget per round, and more rounds.
        overrides["retry"] = DEFAULT_COMPENSATION_RETRY
    if spec.get("timeout"):
        overrides["timeout"] = spec["timeout"]
    return overrides


# --- the coordinator's lease -------------------------------------------------


def claim(run_id: Any) -> int | None:
    """Take the run's lease by compare-and-set and return its fencing token.

    A run whose next phase-two round is not yet due is not claimed, so a
    duplicate message cannot start that round early.
    """
    now = timezone.now()
    with transaction.atomic():
        row = (
            TccTransaction.objects.filter(pk=run_id)
            .values("lease_token", "lease_expires_at", "retry_at")
            .first()
        )
        if row is None:
            return None
        if row["lease_expires_at"] is not None and row["lease_expires_at"] >= now:
            return None
        if row["retry_at"] is not None and row["retry_at"] > now:
            return None
        changed = TccTransaction.objects.filter(
            pk=run_id, lease_token=row["lease_token"]
        ).update(
            lease_token=F("lease_token") + 1,
            lease_expires_at=now + leases.lease_duration(),
            claims=F("claims") + 1,
            retry_at=None,
        )
    if changed != 1:
        return None
    return int(row["lease_token"]) + 1


def release(run_id: Any, token: int, retry_at: datetime | None = None) -> None:
    """Give the run's lease up, storing when its next round is due if any."""
    TccTransaction.objects.filter(pk=run_id, lease_token=token).update(
        lease_expires_at=None, retry_at=retry_at
    )


def renewing(run_id: Any, token: int) -> contextlib.AbstractContextManager[None]:
    """Extend the run's lease in the background while the block runs."""
    rows = TccTransaction.objects.filter(pk=run_id, lease_token=token)
    return leases.keep_alive(rows, f"run={run_id} tcc token={token}")


def enqueue_advance(run_id: Any, countdown: float = 0) -> None:
    from sagas import tasks

    tasks.tcc_advance.apply_async((str(run_id),), countdown=countdown or None)
