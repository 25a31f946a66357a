"""API shapes of saga definitions and runs."""

import re
from datetime import datetime
from typing import Any

from django.db.models import F
from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail

from controlplane.api import RejectUnknownFieldsMixin, StrictCharField
from resilience.serializers import DESCRIPTION_TOO_LONG, MAX_DESCRIPTION_LENGTH
from sagas.actions import MAX_NOTE_LENGTH
from sagas.checks import (
    Problem,
    choreography_problems,
    input_schema_problems,
    step_problems,
)
from sagas.models import (
    RunEvent,
    RunStatus,
    RunStatusChange,
    SagaDefinition,
    SagaRun,
    StepAttempt,
    StepRun,
    StepStatus,
    StepStatusChange,
    TccPhase,
    TccTransaction,
)
from sagas.tcc_definitions import participant_problems


class SagaDefinitionSerializer(RejectUnknownFieldsMixin, serializers.ModelSerializer):
    class Meta:
        model = SagaDefinition
        fields = [
            "name",
            "kind",
            "description",
            "input_schema",
            "steps",
            "version",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["version", "created_at", "updated_at"]
        extra_kwargs = {
            "description": {
                "max_length": MAX_DESCRIPTION_LENGTH,
                "help_text": f"Free text, at most {MAX_DESCRIPTION_LENGTH} characters.",
                "error_messages": {"max_length": DESCRIPTION_TOO_LONG},
            },
        }

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """Check the input fields and steps together, and what may change.

        Steps are checked against the input fields, because their
        placeholders may only name fields that a run will have.
        """
        instance: SagaDefinition | None = self.instance
        kind = attrs.get("kind") or getattr(
            instance, "kind", SagaDefinition.Kind.ORCHESTRATED
        )
        if instance is not None and instance.runs.exists():
            _refuse_changes_with_runs(instance, attrs)
        schema = attrs.get("input_schema", getattr(instance, "input_schema", []))
        errors: dict[str, Any] = {}
        _nest(errors, "input_schema", input_schema_problems(schema))
        kind_changes = instance is not None and kind != instance.kind
        if kind == SagaDefinition.Kind.CHOREOGRAPHY and not errors:
            _nest(errors, "input_schema", choreography_problems(schema))
        if "steps" in attrs or instance is None or kind_changes:
            steps = attrs.get("steps", getattr(instance, "steps", []))
            names = {str(spec.get("name")) for spec in schema if isinstance(spec, dict)}
            if kind == SagaDefinition.Kind.CHOREOGRAPHY:
                if steps != []:
                    _nest(errors, "steps", [_CHOREOGRAPHY_STEPS])
            elif kind == SagaDefinition.Kind.TCC:
                _nest(errors, "steps", participant_problems(steps, names))
            else:
                _nest(errors, "steps", step_problems(steps, names))
        if errors:
            raise serializers.ValidationError(errors)
        return attrs

    def update(self, instance: SagaDefinition, validated: dict[str, Any]) -> Any:
        # Raised in SQL, so concurrent replacements each count once.
        validated["version"] = F("version") + 1
        updated = super().update(instance, validated)
        updated.refresh_from_db(fields=["version"])
        return updated


_CHOREOGRAPHY_STEPS = Problem(
    "",
    "steps_not_allowed",
    "A choreography saga has no steps: its services react to each other's "
    "events. Must be [].",
)


def _refuse_changes_with_runs(instance: SagaDefinition, attrs: dict[str, Any]) -> None:
    """Keep the name and kind that existing runs were started under."""
    for field in ("name", "kind"):
        if field in attrs and attrs[field] != getattr(instance, field):
            raise serializers.ValidationError(
                {
                    field: ErrorDetail(
                        f"Cannot change from {getattr(instance, field)!r} while "
                        f"the saga has runs; create a new saga instead, got "
                        f"{attrs[field]!r}.",
                        code="immutable",
                    )
                }
            )


def _nest(errors: dict[str, Any], field: str, problems: list[Problem]) -> None:
    """Put each problem under its dotted path below ``field``."""
    for problem in problems:
        node = errors
        parts = [field, *filter(None, problem.path.split("."))]
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node.setdefault(parts[-1], []).append(
            ErrorDetail(problem.message, code=problem.code)
        )


class StepAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = StepAttempt
        fields = [
            "kind",
            "number",
            "started_at",
            "finished_at",
            "status_code",
            "outcome",
            "error",
        ]


class StepStatusChangeSerializer(serializers.ModelSerializer):
    class Meta:
        model = StepStatusChange
        fields = ["from_status", "to_status", "at", "reason"]


class StepRunSerializer(serializers.ModelSerializer):
    duration_ms = serializers.IntegerField(read_only=True, allow_null=True)
    attempt_log = StepAttemptSerializer(source="tries", many=True, read_only=True)
    history = StepStatusChangeSerializer(
        source="status_changes", many=True, read_only=True
    )
    retry_at = serializers.SerializerMethodField(
        help_text="When a waiting step's next attempt is due, else null."
    )

    class Meta:
        model = StepRun
        fields = [
            "index",
            "name",
            "target",
            "status",
            "attempts",
            "compensation_attempts",
            "outcome_unknown",
            "started_at",
            "finished_at",
            "duration_ms",
            "request",
            "response",
            "output",
            "error",
            "compensation_started_at",
            "compensation_finished_at",
            "compensation_request",
            "compensation_response",
            "compensation_error",
            "action_claims",
            "compensation_claims",
            "lease_token",
            "resume_attempt",
            "retry_at",
            "attempt_log",
            "history",
        ]

    def get_retry_at(self, step: StepRun) -> datetime | None:
        if step.status != StepStatus.WAITING:
            return None
        return step.lease_expires_at


class RunEventSerializer(serializers.ModelSerializer):
    span_id = serializers.CharField(read_only=True)

    class Meta:
        model = RunEvent
        fields = [
            "event_id",
            "event_type",
            "service",
            "occurred_at",
            "received_at",
            "payload",
            "traceparent",
            "span_id",
        ]


class RunStatusChangeSerializer(serializers.ModelSerializer):
    class Meta:
        model = RunStatusChange
        fields = ["from_status", "to_status", "at", "reason"]


class TccPhaseSerializer(serializers.ModelSerializer):
    class Meta:
        model = TccPhase
        fields = [
            "phase",
            "status",
            "attempts",
            "status_code",
            "idempotency_key",
            "started_at",
            "finished_at",
            "request",
            "response",
            "error",
        ]


class TccDecisionSerializer(serializers.ModelSerializer):
    class Meta:
        model = TccTransaction
        fields = [
            "decision",
            "decision_reason",
            "decided_at",
            "try_deadline",
            "phase_two_deadline",
            "lease_token",
            "claims",
        ]


def tcc_participants(run: SagaRun) -> list[dict[str, Any]]:
    """Return each participant of a TCC run with its phases, in order."""
    phases = list(run.phases.all())
    return [
        {
            "index": index,
            "name": spec.get("name"),
            "target": spec.get("target"),
            "phases": {
                phase.phase: TccPhaseSerializer(phase).data
                for phase in phases
                if phase.index == index
            },
        }
        for index, spec in enumerate(run.steps_snapshot)
    ]


class SagaRunSerializer(serializers.ModelSerializer):
    saga = serializers.CharField(source="definition.name", read_only=True)
    kind = serializers.CharField(source="definition.kind", read_only=True)
    steps = StepRunSerializer(many=True, read_only=True)
    history = RunStatusChangeSerializer(
        source="status_changes", many=True, read_only=True
    )
    kind = serializers.CharField(source="definition.kind", read_only=True)
    events = RunEventSerializer(many=True, read_only=True)

    decision = serializers.SerializerMethodField(
        help_text="Try-Confirm-Cancel runs only: the coordinator's decision."
    )
    participants = serializers.SerializerMethodField(
        help_text="Try-Confirm-Cancel runs only: each participant's phases."
    )

    def get_decision(self, run: SagaRun) -> dict[str, Any] | None:
        record = TccTransaction.objects.filter(pk=run.pk).first()
        return None if record is None else dict(TccDecisionSerializer(record).data)

    def get_participants(self, run: SagaRun) -> list[dict[str, Any]] | None:
        if run.definition.kind != SagaDefinition.Kind.TCC:
            return None
        return tcc_participants(run)

    class Meta:
        model = SagaRun
        fields = [
            "id",
            "saga",
            "status",
            "input",
            "error",
            "needs_attention",
            "created_at",
            "started_at",
            "finished_at",
            "trace_id",
            "kind",
            "steps",
            "history",
            "kind",
            "events",
            "decision",
            "participants",
        ]


class SagaRunListSerializer(serializers.ModelSerializer):
    saga = serializers.CharField(source="definition.name", read_only=True)

    class Meta:
        model = SagaRun
        fields = [
            "id",
            "saga",
            "status",
            "input",
            "error",
            "needs_attention",
            "created_at",
            "started_at",
            "finished_at",
            "trace_id",
        ]


class SagaNameField(serializers.SlugRelatedField):
    """A saga definition by name; a name that is not a string is rejected.

    SlugRelatedField would look up any JSON value and echo it back in
    Python's notation.
    """

    default_error_messages = {
        **serializers.SlugRelatedField.default_error_messages,
        "not_a_string": "Must be a saga name (a string), not {kind}.",
    }

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str):
            self.fail("not_a_string", kind=type(data).__name__)
        return super().to_internal_value(data)


class StartRunSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    saga = SagaNameField(
        slug_field="name",
        queryset=SagaDefinition.objects.all(),
        help_text="Name of the saga definition to run.",
    )
    input = serializers.JSONField(
        help_text="The saga's input, an object with the definition's fields."
    )


class RunFilterSerializer(serializers.Serializer):
    """Query parameters of the runs list, shared by the API and the dashboard."""

    status = serializers.ChoiceField(choices=RunStatus.choices, required=False)
    saga = serializers.CharField(required=False, max_length=64)
    needs_attention = serializers.BooleanField(
        required=False, default=None, allow_null=True
    )
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)
    q = serializers.CharField(
        required=False,
        max_length=36,
        help_text="Start of a run id (hexadecimal digits and dashes).",
    )

    def validate_q(self, value: str) -> str:
        if not re.fullmatch(r"[0-9a-fA-F-]{1,36}", value):
            raise serializers.ValidationError(
                "Must be the start of a run id: hexadecimal digits and dashes.",
                code="invalid",
            )
        return value.lower()


class ResolveSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    note = StrictCharField(
        max_length=MAX_NOTE_LENGTH,
        help_text="How the run was resolved; kept in its history.",
    )
