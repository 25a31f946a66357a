"""API shapes of saga definitions and runs."""

import re
from typing import Any

from rest_framework import serializers

from controlplane.api import RejectUnknownFieldsMixin
from sagas.definitions import FIELD_TYPES, validate_steps
from sagas.models import (
    RunStatus,
    RunStatusChange,
    SagaDefinition,
    SagaRun,
    StepAttempt,
    StepRun,
    TccPhase,
    TccTransaction,
)
from sagas.tcc_definitions import validate_participants


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

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # The steps' shape depends on the kind, so both are checked together.
        kind = attrs.get(
            "kind", getattr(self.instance, "kind", SagaDefinition.Kind.ORCHESTRATED)
        )
        steps = attrs.get("steps", getattr(self.instance, "steps", None))
        if kind == SagaDefinition.Kind.TCC:
            problems = validate_participants(steps)
            code = "invalid_participant"
        else:
            problems = validate_steps(steps)
            code = "invalid_step"
        if problems:
            raise serializers.ValidationError({"steps": problems}, code=code)
        return attrs

    def validate_input_schema(self, value: Any) -> Any:
        if not isinstance(value, list):
            raise serializers.ValidationError("Must be a list of field objects.")
        for index, spec in enumerate(value):
            if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
                raise serializers.ValidationError(
                    f"Entry {index} must be an object with a string name."
                )
            if spec.get("type") not in FIELD_TYPES:
                raise serializers.ValidationError(
                    f"Entry {index} ({spec['name']}): type must be one of "
                    f"{sorted(FIELD_TYPES)}, got {spec.get('type')!r}.",
                    code="invalid_type",
                )
        return value

    def update(self, instance: SagaDefinition, validated: dict[str, Any]) -> Any:
        validated["version"] = instance.version + 1
        return super().update(instance, validated)


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


class StepRunSerializer(serializers.ModelSerializer):
    duration_ms = serializers.IntegerField(read_only=True, allow_null=True)
    attempt_log = StepAttemptSerializer(source="tries", many=True, read_only=True)

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
            "attempt_log",
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


class StartRunSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    saga = serializers.SlugRelatedField(
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


class ResolveSerializer(serializers.Serializer):
    note = serializers.CharField(
        max_length=2000, help_text="How the run was resolved; kept in its history."
    )
