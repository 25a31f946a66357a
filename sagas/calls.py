"""Sending a step's action or compensation: an HTTP request or a function.

Both kinds go through the resilience pipeline of the step's target and
carry the same stable idempotency key on every retry and redelivery. The
result is an ``HttpOutcome`` either way, so the orchestrator treats them
alike; a Python step's "status code" is None.
"""

import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from controlplane.idempotency import record_downstream_key
from resilience import services as resilience
from resilience.core import RetryLater, current_attempt
from resilience.models import Target
from resilience.services import AttemptRecord, HttpOutcome, http_call
from sagas import statements
from sagas.definitions import TemplateError, render
from sagas.models import SagaRun, StepAttempt, StepRun
from sagas.registry import StepRejected, lookup

logger = logging.getLogger(__name__)

# A compensation must not give up as easily as an action: it is retried
# with its own, larger budget before the run needs an operator.
DEFAULT_COMPENSATION_RETRY: dict[str, Any] = {
    "max_attempts": 5,
    "initial_interval": 0.5,
    "multiplier": 2.0,
    "max_interval": 4.0,
}


def idempotency_key(run_id: Any, step_name: str, part: str) -> str:
    """Return the stable key a step sends downstream for its action or undo.

    It derives from our own run and step ids only, so it is the same on
    every retry and redelivery of that step and never repeats across runs.
    """
    return f"{run_id}:{step_name}:{part}"


@dataclass
class Sent:
    """A call's outcome and the exchange to store with its attempts."""

    outcome: HttpOutcome
    exchange: dict[str, Any]


def perform(
    run: SagaRun, step: StepRun, spec: dict[str, Any], part: str
) -> HttpOutcome:
    """Send the step's action or compensation and store what went out."""
    sent = send(run, step, spec, part)
    record(step, part, sent)
    return sent.outcome


def send(run: SagaRun, step: StepRun, spec: dict[str, Any], part: str) -> Sent:
    """Send the step's action or compensation; ``record`` stores the result.

    The two are apart so that the orchestrator can store the attempts in
    the same transaction as the step's new status.
    """
    call = spec[part]
    exchange: dict[str, Any] = {}
    try:
        context = _context(run, call)
        if "function" in call:
            outcome = _call_function(run, step, spec, part, context, exchange)
        else:
            outcome = _call_http(run, step, spec, part, context, exchange)
    except TemplateError as exc:
        outcome = definition_error(str(exc))
    return Sent(outcome, exchange)


# A placeholder that names an earlier step's output, e.g. {{steps.a.output}}.
STEP_PLACEHOLDER = re.compile(r"\{\{\s*steps\.")


def _context(run: SagaRun, call: dict[str, Any]) -> dict[str, Any]:
    """Return the values a call's placeholders may name.

    The earlier steps' outputs are read only for a call that names one.
    """
    outputs: dict[str, Any] = {}
    if STEP_PLACEHOLDER.search(json.dumps(call, default=str)):
        outputs = {
            name: {"output": output}
            for name, output in run.steps.values_list("name", "output")
        }
    return {"run": {"id": str(run.pk)}, "input": run.input, "steps": outputs}


def _call_http(
    run: SagaRun,
    step: StepRun,
    spec: dict[str, Any],
    part: str,
    context: dict[str, Any],
    exchange: dict[str, Any],
) -> HttpOutcome:
    call = spec[part]
    target = Target.objects.filter(name=spec["target"]).first()
    if target is None:
        return definition_error(f"Target '{spec['target']}' is not registered.")
    path = render(call["path"], context)
    body = render(call.get("body"), context)
    try:
        resilience.check_path(path)
    except ValueError as exc:
        return definition_error(str(exc))

    key = idempotency_key(run.pk, step.name, part)
    headers = {"Idempotency-Key": key, "X-Saga-Run": str(run.pk)}
    sent_at = timezone.now()
    outcome = http_call(
        target,
        call["method"],
        path,
        body,
        headers,
        _overrides(spec, part),
        resume=_resume(step),
    )
    record_downstream_key(
        run.pk, step.name, part, target.name, key, outcome.status_code, sent_at
    )
    _store_exchange(
        exchange,
        part,
        {
            "method": call["method"],
            "url": target.base_url.rstrip("/") + path,
            "idempotency_key": key,
            "body": truncate(body),
        },
        {"status_code": outcome.status_code, "body": truncate(outcome.text)},
    )
    return outcome


def _call_function(
    run: SagaRun,
    step: StepRun,
    spec: dict[str, Any],
    part: str,
    context: dict[str, Any],
    exchange: dict[str, Any],
) -> HttpOutcome:
    call = spec[part]
    function = lookup(call["function"])
    if function is None:
        return definition_error(
            f"Function '{call['function']}' is not a registered saga step."
        )
    payload = render(call.get("payload"), context)
    key = idempotency_key(run.pk, step.name, part)
    attempts: list[AttemptRecord] = []

    def invoke() -> Any:
        attempt = current_attempt()
        number = attempt.number if attempt else len(attempts) + 1
        record = AttemptRecord(number=number, started_at=datetime.now(UTC))
        attempts.append(record)
        try:
            value = function(payload, idempotency_key=key, run_id=str(run.pk))
        except StepRejected as exc:
            record.error = f"rejected: {exc}"
            raise
        except Exception as exc:
            record.outcome = "unknown"
            record.error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            record.finished_at = datetime.now(UTC)
        record.outcome = "succeeded"
        return value

    pipeline = resilience.pipeline(
        spec.get("target") or "python", _overrides(spec, part)
    )
    resume = _resume(step)
    try:
        result = (
            pipeline.execute(invoke)
            if resume is None
            else pipeline.resume(resume, invoke)
        )
    except RetryLater as later:
        return resilience.postponed(later, attempts)
    _store_exchange(
        exchange,
        part,
        {
            "function": call["function"],
            "idempotency_key": key,
            "payload": truncate(payload),
        },
        {"output": truncate(result.value)},
    )
    return HttpOutcome(
        outcome=result.outcome,
        rejected_by=result.rejected_by,
        status_code=None,
        body=result.value if result.outcome == "succeeded" else None,
        text="",
        error=result.error or "",
        attempts=attempts,
        duration_ms=int(result.duration_ms),
        outcome_unknown=any(a.outcome == "unknown" for a in attempts),
    )


def _resume(step: StepRun) -> RetryLater | None:
    """Return the postponed retry the step continues with, if any."""
    if step.resume_attempt is None:
        return None
    return RetryLater(step.resume_delay or 0.0, step.resume_attempt)


def _overrides(spec: dict[str, Any], part: str) -> dict[str, Any]:
    """Return the step's retry and timeout, over its target's policy.

    Every retry section gets a ``max_inline_wait`` of at most
    ``SAGA_MAX_INLINE_WAIT``: a longer backoff is not slept in the worker
    but stored on the step, which a worker picks up again when it is due.
    """
    overrides: dict[str, Any] = {}
    if part == "action":
        retry = spec.get("retry") or _policy_retry(spec)
    else:
        retry = spec.get("compensation_retry") or DEFAULT_COMPENSATION_RETRY
    if retry:
        limit = settings.SAGA_MAX_INLINE_WAIT
        own = retry.get("max_inline_wait")
        overrides["retry"] = {
            **retry,
            "max_inline_wait": limit if own is None else min(own, limit),
        }
    if spec.get("timeout"):
        overrides["timeout"] = spec["timeout"]
    return overrides


def _policy_retry(spec: dict[str, Any]) -> dict[str, Any] | None:
    retry: dict[str, Any] | None = (
        resilience.load_policy(spec.get("target") or "python").to_dict().get("retry")
    )
    return retry


def definition_error(message: str) -> HttpOutcome:
    """Return the outcome of a step that cannot be sent as defined."""
    return HttpOutcome(
        outcome="failed",
        rejected_by=None,
        status_code=None,
        body=None,
        text="",
        error=message,
    )


def truncate(value: Any) -> Any:
    """Cut a body to SAGA_BODY_LIMIT characters, keeping small JSON as is."""
    limit = settings.SAGA_BODY_LIMIT
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if len(text) <= limit:
        return value
    return text[:limit] + f"... [cut at {limit} of {len(text)} characters]"


def _store_exchange(
    exchange: dict[str, Any],
    part: str,
    request: dict[str, Any],
    response: dict[str, Any],
) -> None:
    prefix = "" if part == "action" else "compensation_"
    exchange[f"{prefix}request"] = request
    exchange[f"{prefix}response"] = response


def _number_offset(step: StepRun, kind: str, attempts: list[AttemptRecord]) -> int:
    """Return what to add to the pipeline's attempt numbers before storing them.

    The pipeline numbers the attempts of each execution from 1, and a
    resume after a retry wait carries its count on. An operator's retry of
    the step, or a second claim after a lost worker, starts a new execution
    at 1, so its numbers are shifted to follow the attempts already stored:
    no step shows the same attempt number twice.
    """
    counted = (
        step.attempts if kind == StepAttempt.Kind.ACTION else step.compensation_attempts
    )
    # The step is loaded by the task that runs it, so a count of 0 means no
    # attempt is stored yet and the query can be skipped.
    if not attempts or not counted:
        return 0
    stored = StepAttempt.objects.filter(step=step, kind=kind).aggregate(
        highest=Max("number")
    )["highest"]
    first = min(attempt.number for attempt in attempts)
    return max(0, (stored or 0) - first + 1)


def record(step: StepRun, part: str, sent: Sent) -> None:
    """Store the attempts and what went out and came back."""
    with transaction.atomic(savepoint=False):
        changes = store_attempts(step, part, sent)
        if changes:
            statements.update(StepRun, {"pk": step.pk}, changes)


def store_attempts(step: StepRun, part: str, sent: Sent) -> dict[str, Any]:
    """Insert the attempt rows and return the step's fields that go with them.

    The fields are what went out and came back and the raised attempt
    count, for the caller to write with the step's new status in one UPDATE.
    """
    outcome, exchange = sent.outcome, sent.exchange
    kind = (
        StepAttempt.Kind.ACTION if part == "action" else StepAttempt.Kind.COMPENSATION
    )
    offset = _number_offset(step, kind, outcome.attempts)
    rows = [
        StepAttempt(
            step=step,
            kind=kind,
            number=record.number + offset,
            started_at=record.started_at,
            finished_at=record.finished_at or record.started_at,
            status_code=record.status_code,
            outcome=record.outcome,
            error=record.error[:2000],
        )
        for record in outcome.attempts
    ]
    statements.insert(rows)
    field = "attempts" if part == "action" else "compensation_attempts"
    changes: dict[str, Any] = {**exchange}
    if rows:
        changes[field] = statements.Add(len(rows))
    return changes
