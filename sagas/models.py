"""Saga definitions, runs, steps, attempts and their status history.

A run and each of its steps move through their statuses only forward: every
change is a compare-and-set on the expected old status (see
``sagas.services``) and is kept as a row of its own for the timeline.
"""

import uuid

from django.conf import settings
from django.db import models


class RunStatus(models.TextChoices):
    """The statuses of every kind of run.

    Sagas (orchestrated and choreographed) go pending, running, then
    completed, or compensating and then compensated or compensation_failed.
    A saga whose failed step says ``"on_failure": "pause"`` stops at paused
    instead of compensating, until an operator retries the step (back to
    running) or cancels the run (compensating). Try-Confirm-Cancel
    transactions go pending, trying, then confirming and committed, or
    cancelling and aborted. One whose phase two cannot finish within its
    budget stops at needs_attention.
    """

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    COMPENSATING = "compensating"
    COMPENSATED = "compensated"
    COMPENSATION_FAILED = "compensation_failed"
    PAUSED = "paused"
    TRYING = "trying"
    CONFIRMING = "confirming"
    CANCELLING = "cancelling"
    COMMITTED = "committed"
    ABORTED = "aborted"
    NEEDS_ATTENTION = "needs_attention"


TERMINAL_RUN_STATUSES = frozenset(
    {
        RunStatus.COMPLETED,
        RunStatus.COMPENSATED,
        RunStatus.COMPENSATION_FAILED,
        RunStatus.COMMITTED,
        RunStatus.ABORTED,
        RunStatus.NEEDS_ATTENTION,
    }
)


class StepStatus(models.TextChoices):
    """A step's statuses; ``waiting`` is a pause inside ``running``.

    A running step whose next retry must wait longer than a few seconds
    becomes waiting until its wake-up time (its ``lease_expires_at``). It
    is running again when a worker claims the retry. Every other change
    only moves forward.
    """

    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    COMPENSATING = "compensating"
    COMPENSATED = "compensated"
    COMPENSATION_FAILED = "compensation_failed"


class SagaDefinition(models.Model):
    """A saga as data: its input fields and its ordered steps.

    ``input_schema`` is a list of ``{"name", "type", ...rules}`` entries (see
    ``sagas.definitions``); ``steps`` is a list of step dicts, each with an
    ``action`` and an optional ``compensation`` against a registered target.
    """

    class Kind(models.TextChoices):
        ORCHESTRATED = "orchestrated"
        CHOREOGRAPHY = "choreography"
        TCC = "tcc"

    name = models.SlugField(max_length=64, unique=True)
    kind = models.CharField(
        max_length=20, choices=Kind.choices, default=Kind.ORCHESTRATED
    )
    description = models.TextField(blank=True)
    input_schema = models.JSONField(default=list)
    steps = models.JSONField(default=list)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class SagaRun(models.Model):
    """One execution of a saga definition with its input."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    definition = models.ForeignKey(
        SagaDefinition, on_delete=models.PROTECT, related_name="runs"
    )
    # The steps as they were when the run started, so editing a definition
    # never changes a run that is already under way.
    steps_snapshot = models.JSONField(default=list)
    status = models.CharField(
        max_length=24, choices=RunStatus.choices, default=RunStatus.PENDING
    )
    input = models.JSONField(default=dict)
    error = models.TextField(blank=True)
    # The W3C trace context of the run's "saga.run" span: every step,
    # attempt and compensation span of the run is its descendant.
    trace_id = models.CharField(max_length=32, blank=True, db_index=True)
    traceparent = models.CharField(max_length=55, blank=True)
    needs_attention = models.BooleanField(default=False)
    # Set by the operator's retry action: compensation_failed steps whose
    # compensation finished before this moment are compensated again.
    compensation_retry_requested_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    resolution_note = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["-created_at"]),
            models.Index(fields=["status", "-created_at"]),
            models.Index(fields=["definition", "-created_at"]),
            models.Index(fields=["definition", "status", "-created_at"]),
            models.Index(
                fields=["-created_at"],
                condition=models.Q(needs_attention=True),
                name="run_needs_attention_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.definition.name} {self.id}"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_RUN_STATUSES


class StepRun(models.Model):
    """One step of a run: its action, its compensation and their outcome.

    ``lease_token`` is a fencing token: it grows by one each time a worker
    claims the step, and a result is stored only with the token of the
    current claim, so a stale worker's late result is rejected.
    """

    run = models.ForeignKey(SagaRun, on_delete=models.CASCADE, related_name="steps")
    index = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=64)
    target = models.CharField(max_length=64, blank=True)
    status = models.CharField(
        max_length=24, choices=StepStatus.choices, default=StepStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    compensation_attempts = models.PositiveIntegerField(default=0)
    # True when the action may have taken effect although it did not
    # succeed (a timeout or an ambiguous 5xx), so it is compensated too.
    outcome_unknown = models.BooleanField(default=False)
    request = models.JSONField(null=True, blank=True)
    response = models.JSONField(null=True, blank=True)
    output = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    compensation_request = models.JSONField(null=True, blank=True)
    compensation_response = models.JSONField(null=True, blank=True)
    compensation_error = models.TextField(blank=True)
    # The postponed retry of the current part (action or compensation):
    # the attempt number that runs next and the backoff it waited, so the
    # retry budget and the backoff carry on where they stopped.
    resume_attempt = models.PositiveSmallIntegerField(null=True, blank=True)
    resume_delay = models.FloatField(null=True, blank=True)
    lease_token = models.PositiveIntegerField(default=0)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # How many times a worker claimed the action or the compensation; a
    # step whose worker keeps dying is given up after SAGA_MAX_CLAIMS.
    action_claims = models.PositiveSmallIntegerField(default=0)
    compensation_claims = models.PositiveSmallIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    compensation_started_at = models.DateTimeField(null=True, blank=True)
    compensation_finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "index"]
        constraints = [
            models.UniqueConstraint(fields=["run", "index"], name="unique_step_index")
        ]
        indexes = [models.Index(fields=["status", "lease_expires_at"])]

    def __str__(self) -> str:
        return f"{self.run_id}#{self.index} {self.name}"

    @property
    def duration_ms(self) -> int | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return int((self.finished_at - self.started_at).total_seconds() * 1000)


class StepAttempt(models.Model):
    """One execution of a step's action or compensation."""

    class Kind(models.TextChoices):
        ACTION = "action"
        COMPENSATION = "compensation"

    step = models.ForeignKey(StepRun, on_delete=models.CASCADE, related_name="tries")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=16)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["started_at", "id"]

    def __str__(self) -> str:
        return f"{self.step_id} {self.kind} #{self.number}: {self.outcome}"

    @property
    def duration_ms(self) -> int:
        return int((self.finished_at - self.started_at).total_seconds() * 1000)


class RunStatusChange(models.Model):
    """A row per status change of a run, for its history."""

    run = models.ForeignKey(
        SagaRun, on_delete=models.CASCADE, related_name="status_changes"
    )
    from_status = models.CharField(max_length=24, blank=True)
    to_status = models.CharField(max_length=24)
    at = models.DateTimeField()
    reason = models.TextField(blank=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.from_status or '-'} -> {self.to_status}"


class StepStatusChange(models.Model):
    """A row per status change of a step, for the run's timeline."""

    step = models.ForeignKey(
        StepRun, on_delete=models.CASCADE, related_name="status_changes"
    )
    from_status = models.CharField(max_length=24, blank=True)
    to_status = models.CharField(max_length=24)
    at = models.DateTimeField()
    reason = models.TextField(blank=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.from_status or '-'} -> {self.to_status}"


class RunEvent(models.Model):
    """A domain event of a choreographed run, as its tracker received it."""

    run = models.ForeignKey(SagaRun, on_delete=models.CASCADE, related_name="events")
    event_id = models.UUIDField(unique=True)
    event_type = models.CharField(max_length=64)
    service = models.CharField(max_length=32)
    payload = models.JSONField(default=dict)
    traceparent = models.CharField(max_length=55, blank=True)
    # When the service wrote the event into its outbox.
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["occurred_at", "id"]

    def __str__(self) -> str:
        return f"{self.run_id} {self.service} {self.event_type}"

    @property
    def span_id(self) -> str:
        """Return the id of the span that wrote the event, or ""."""
        parts = self.traceparent.split("-")
        return parts[2] if len(parts) == 4 else ""


class TccTransaction(models.Model):
    """The coordinator's record of a Try-Confirm-Cancel run.

    ``decision`` is written once, by compare-and-set from empty, before any
    phase-two call is sent, so a coordinator that crashes after it resumes
    with the same outcome. ``lease_token`` fences the worker that drives
    the run: a result is stored only under the token of the current claim.
    """

    class Decision(models.TextChoices):
        NONE = ""
        COMMIT = "commit"
        ABORT = "abort"

    run = models.OneToOneField(
        SagaRun, on_delete=models.CASCADE, primary_key=True, related_name="tcc"
    )
    decision = models.CharField(
        max_length=8, choices=Decision.choices, default="", blank=True
    )
    decision_reason = models.TextField(blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    # Phase one is aborted when it has not finished by this time; phase two
    # ends needs_attention when it has not finished by its deadline.
    try_deadline = models.DateTimeField()
    phase_two_deadline = models.DateTimeField(null=True, blank=True)
    lease_token = models.PositiveIntegerField(default=0)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    claims = models.PositiveIntegerField(default=0)
    # When the next round of phase two is due, while no worker holds the
    # run. A delayed message wakes the run then; the sweeper wakes it once
    # this has passed, should that message be lost.
    retry_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.run_id} {self.decision or 'undecided'}"


class TccPhase(models.Model):
    """One participant's try, confirm or cancel call and its outcome."""

    class Phase(models.TextChoices):
        TRY = "try"
        CONFIRM = "confirm"
        CANCEL = "cancel"

    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        # The call may have taken effect: a timeout or an ambiguous 5xx.
        UNKNOWN = "unknown"

    run = models.ForeignKey(SagaRun, on_delete=models.CASCADE, related_name="phases")
    index = models.PositiveSmallIntegerField()
    participant = models.CharField(max_length=64)
    target = models.CharField(max_length=64)
    phase = models.CharField(max_length=8, choices=Phase.choices)
    status = models.CharField(
        max_length=12, choices=Status.choices, default=Status.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=255, blank=True)
    request = models.JSONField(null=True, blank=True)
    response = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "index", "started_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "index", "phase"], name="unique_tcc_phase"
            )
        ]

    def __str__(self) -> str:
        return f"{self.run_id} {self.participant} {self.phase}: {self.status}"


class ParticipantBranch(models.Model):
    """A participant service's memory of one transaction (see participant.py).

    ``cancelled_before_try`` marks a cancel that arrived first: the branch
    is stored cancelled so that the late try is rejected.
    """

    class State(models.TextChoices):
        TRIED = "tried"
        CONFIRMED = "confirmed"
        CANCELLED = "cancelled"

    service = models.CharField(max_length=64)
    transaction_id = models.CharField(max_length=64)
    state = models.CharField(max_length=12, choices=State.choices)
    payload = models.JSONField(default=dict)
    cancelled_before_try = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["service", "transaction_id"], name="unique_participant_branch"
            )
        ]

    def __str__(self) -> str:
        return f"{self.service} {self.transaction_id} ({self.state})"
