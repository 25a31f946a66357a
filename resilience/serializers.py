"""API shapes of targets, policies and live resilience state.

Policy sections have one serializer each, so the OpenAPI schema shows every
field with its unit and default. The serializers check types strictly (no
"5" for 5) and leave the value rules to the resilience core, whose errors
``resilience.policies`` turns into field errors.
"""

import math
from typing import Any

from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail, ValidationError

from controlplane.api import (
    RejectUnknownFieldsMixin,
    StrictCharField,
    StrictRegexField,
    StrictSlugField,
    StrictSlugRelatedField,
)
from resilience import policies, services
from resilience.core import config as limits
from resilience.models import BreakerTransition, Policy, PolicyVersion, Target


class BreakerTransitionSerializer(serializers.ModelSerializer):
    class Meta:
        model = BreakerTransition
        fields = [
            "at",
            "from_state",
            "to_state",
            "reason",
            "failure_rate",
            "slow_call_rate",
        ]


class BreakerSerializer(serializers.Serializer):
    target = serializers.CharField()
    state = serializers.ChoiceField(
        choices=[
            "closed",
            "open",
            "half_open",
            "disabled",
            "forced_open",
            "metrics_only",
        ]
    )
    failure_rate = serializers.FloatField(
        allow_null=True, help_text="Percent; null below minimum_number_of_calls."
    )
    slow_call_rate = serializers.FloatField(
        allow_null=True, help_text="Percent; null below minimum_number_of_calls."
    )
    buffered_calls = serializers.IntegerField()
    failed_calls = serializers.IntegerField()
    slow_calls = serializers.IntegerField()
    not_permitted_calls = serializers.IntegerField()
    state_changed_at = serializers.DateTimeField(allow_null=True)
    transitions = BreakerTransitionSerializer(many=True)


class BulkheadSerializer(serializers.Serializer):
    target = serializers.CharField()
    in_use = serializers.IntegerField()
    max_concurrent_calls = serializers.IntegerField()
    waiting = serializers.IntegerField()
    rejected = serializers.IntegerField()


class RateLimiterSerializer(serializers.Serializer):
    target = serializers.CharField()
    available_permits = serializers.IntegerField()
    limit_for_period = serializers.IntegerField()
    limit_refresh_period = serializers.FloatField(help_text="Seconds.")
    waiting = serializers.IntegerField()
    rejected = serializers.IntegerField()


class CallRequestSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    target = StrictSlugRelatedField(
        slug_field="name",
        queryset=Target.objects.all(),
        help_text="Name of a registered target.",
    )
    method = serializers.ChoiceField(
        choices=["GET", "POST", "PUT", "PATCH", "DELETE"], default="GET"
    )
    path = StrictRegexField(
        r"^/[^\s]*$",
        max_length=2000,
        help_text="Path appended to the target's base URL; starts with '/'.",
        error_messages={"invalid": "Must start with '/' and contain no spaces."},
    )
    json = serializers.JSONField(required=False, allow_null=True)

    def validate_path(self, value: str) -> str:
        try:
            services.check_path(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc), code="invalid") from exc
        return value


class CallResultSerializer(serializers.Serializer):
    outcome = serializers.ChoiceField(choices=["succeeded", "failed", "rejected"])
    rejected_by = serializers.ChoiceField(
        choices=["circuit_breaker", "bulkhead", "rate_limiter"], allow_null=True
    )
    status_code = serializers.IntegerField(allow_null=True)
    attempts = serializers.IntegerField()
    duration_ms = serializers.IntegerField()
    error = serializers.CharField(allow_null=True)
    body = serializers.JSONField(allow_null=True, required=False)


# --- strict scalar fields ------------------------------------------------------

# Every policy number has the resilience core's upper bound (the MAX_*
# constants of resilience.core.config), repeated here as the schema's
# "maximum" and checked first so the error names the bound and the value.
# Durations of any kind are at most one day.
MAX_SECONDS = limits.MAX_DURATION
# Status code lists: entries from 100 to 599, at most 100 of them.
CODES_RULE = (
    f"entries from {limits.MIN_STATUS_CODE} to {limits.MAX_STATUS_CODE}, "
    f"at most {limits.MAX_LIST_ENTRIES}"
)
# Target descriptions are shown on the dashboard and in exports.
MAX_DESCRIPTION_LENGTH = 1000
DESCRIPTION_TOO_LONG = "Must be at most {max_length} characters."


def _check_maximum(field: serializers.Field, value: float) -> None:
    maximum = getattr(field, "max_value", None)
    if maximum is not None and value > maximum:
        raise ValidationError(
            f"Must be at most {maximum:g}, got {value!r}.", code="max_value"
        )


class StrictIntegerField(serializers.IntegerField):
    """An integer that rejects strings, floats and booleans."""

    default_error_messages = {"invalid": "Must be an integer."}

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        _check_maximum(self, data)
        return data


class StrictFloatField(serializers.FloatField):
    """A finite number that rejects strings and booleans."""

    default_error_messages = {"invalid": "Must be a finite number."}

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        try:
            value = float(data)
        except OverflowError:
            self.fail("invalid")
        if not math.isfinite(value):
            self.fail("invalid")
        _check_maximum(self, value)
        return value


def seconds_field(help_text: str, **kwargs: Any) -> StrictFloatField:
    """A duration in seconds, at most one day (the core's MAX_DURATION)."""
    return StrictFloatField(
        max_value=MAX_SECONDS,
        help_text=f"{help_text} At most {MAX_SECONDS:g} (one day).",
        **kwargs,
    )


class StrictBooleanField(serializers.BooleanField):
    default_error_messages = {"invalid": "Must be true or false."}

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


def codes_field(help_text: str) -> serializers.ListField:
    return serializers.ListField(
        child=StrictCharField(max_length=16),
        max_length=limits.MAX_LIST_ENTRIES,
        required=False,
        help_text=f"{help_text} Codes are {CODES_RULE}.",
    )


def names_field(help_text: str) -> serializers.ListField:
    return serializers.ListField(
        child=StrictCharField(max_length=200),
        max_length=limits.MAX_LIST_ENTRIES,
        required=False,
        help_text=help_text,
    )


# --- policy sections --------------------------------------------------------------


class SectionSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    """A policy section: only the fields sent are kept; the core fills defaults."""


class CircuitBreakerConfigSerializer(SectionSerializer):
    sliding_window_type = serializers.ChoiceField(
        choices=["count_based", "time_based"],
        required=False,
        help_text="count_based (last N calls) or time_based (last N seconds), "
        "default count_based.",
    )
    sliding_window_size = StrictIntegerField(
        required=False,
        max_value=limits.MAX_COUNT_WINDOW_CALLS,
        help_text="Calls (count_based) or seconds (time_based), default 100; "
        f"must be >= 1 and at most {limits.MAX_COUNT_WINDOW_CALLS} calls or "
        f"{limits.MAX_TIME_WINDOW_SECONDS} seconds. A change of size or type "
        "empties the window.",
    )
    minimum_number_of_calls = StrictIntegerField(
        required=False,
        max_value=limits.MAX_COUNT_WINDOW_CALLS,
        help_text="Calls, default 100; must be >= 1 and at most "
        f"{limits.MAX_COUNT_WINDOW_CALLS}. Below it no rate is computed; a "
        "count_based window caps it at sliding_window_size.",
    )
    failure_rate_threshold = StrictFloatField(
        required=False,
        help_text="Percent, default 50.0; must be in (0, 100]. Trips when the "
        "failure rate is greater than or equal.",
    )
    slow_call_duration_threshold = seconds_field(
        "Seconds, default 60.0; must be > 0. A call is slow when strictly longer.",
        required=False,
    )
    slow_call_rate_threshold = StrictFloatField(
        required=False,
        help_text="Percent, default 100.0; must be in (0, 100].",
    )
    wait_duration_in_open_state = seconds_field(
        "Seconds, default 60.0; must be > 0.", required=False
    )
    exponential_backoff_multiplier = StrictFloatField(
        required=False,
        max_value=limits.MAX_MULTIPLIER,
        help_text="Factor applied to the open wait per re-open, default 1.0 "
        f"(constant); must be >= 1 and at most {limits.MAX_MULTIPLIER:g}.",
    )
    max_wait_duration_in_open_state = seconds_field(
        "Seconds, default null (no cap); must be >= wait_duration_in_open_state.",
        required=False,
        allow_null=True,
    )
    permitted_number_of_calls_in_half_open_state = StrictIntegerField(
        required=False,
        max_value=limits.MAX_HALF_OPEN_CALLS,
        help_text="Calls admitted cluster-wide in half-open, default 10; must be "
        f">= 1 and at most {limits.MAX_HALF_OPEN_CALLS}.",
    )
    max_wait_duration_in_half_open_state = seconds_field(
        "Seconds, default 0.0 (off); must be >= 0.", required=False
    )
    automatic_transition_from_open_to_half_open_enabled = StrictBooleanField(
        required=False, help_text="Default false."
    )
    record_status_codes = codes_field(
        'HTTP status codes or "low-high" ranges recorded as failures, '
        'default ["500-599"].'
    )
    ignore_status_codes = codes_field(
        "Status codes or ranges that are neither success nor failure, default []."
    )
    record_exceptions = names_field(
        "Dotted exception class names recorded as failures, default []."
    )
    ignore_exceptions = names_field(
        "Dotted exception class names that are not recorded, default []."
    )


class BulkheadConfigSerializer(SectionSerializer):
    max_concurrent_calls = StrictIntegerField(
        required=False,
        max_value=limits.MAX_CONCURRENT_CALLS,
        help_text="Concurrent calls cluster-wide, default 25; must be >= 1 and "
        f"at most {limits.MAX_CONCURRENT_CALLS}.",
    )
    max_wait_duration = seconds_field(
        "Seconds to wait for a permit, default 0.0 (reject at once); must be >= 0.",
        required=False,
    )
    permit_lease_duration = seconds_field(
        "Seconds a permit lives if never released, default null (derived from "
        "the timeout and retry settings); must be > 0.",
        required=False,
        allow_null=True,
    )


class RateLimiterConfigSerializer(SectionSerializer):
    limit_for_period = StrictIntegerField(
        required=False,
        max_value=limits.MAX_LIMIT_FOR_PERIOD,
        help_text="Permits per limit_refresh_period cluster-wide, default 50; "
        f"must be >= 1 and at most {limits.MAX_LIMIT_FOR_PERIOD}.",
    )
    limit_refresh_period = seconds_field(
        "Seconds of the sliding period, default 1.0; must be > 0.", required=False
    )
    timeout_duration = seconds_field(
        "Seconds to wait for a permit, default 0.0 (reject at once); must be >= 0.",
        required=False,
    )


class RetryConfigSerializer(SectionSerializer):
    max_attempts = StrictIntegerField(
        required=False,
        max_value=limits.MAX_ATTEMPTS,
        help_text="Executions including the first call, default 3; must be >= 1 "
        f"and at most {limits.MAX_ATTEMPTS}.",
    )
    initial_interval = seconds_field(
        "Seconds before the first retry, default 0.5; must be > 0.", required=False
    )
    multiplier = StrictFloatField(
        required=False,
        max_value=limits.MAX_MULTIPLIER,
        help_text="Backoff growth per retry, default 2.0; must be >= 1 and at "
        f"most {limits.MAX_MULTIPLIER:g}.",
    )
    max_interval = seconds_field(
        "Seconds, cap of one backoff, default 30.0; must be >= initial_interval.",
        required=False,
    )
    jitter = serializers.ChoiceField(
        choices=["none", "full", "equal", "decorrelated"],
        required=False,
        help_text="Backoff jitter, default full.",
    )
    max_inline_wait = seconds_field(
        "Seconds, longest backoff slept in place; longer ones reschedule the "
        "task. Default null (always sleep); must be >= 0.",
        required=False,
        allow_null=True,
    )
    retry_status_codes = codes_field(
        'Status codes or "low-high" ranges that are retried, '
        'default ["429", "500-599"].'
    )
    retry_exceptions = names_field(
        "Dotted exception class names retried besides timeouts and connection "
        "errors, default []."
    )
    ignore_exceptions = names_field(
        "Dotted exception class names never retried, default []."
    )


class TimeoutConfigSerializer(SectionSerializer):
    timeout_duration = seconds_field(
        "Seconds per attempt, default 10.0; must be > 0.", required=False
    )
    overall_deadline = seconds_field(
        "Seconds across all attempts, default null (none); must be > 0.",
        required=False,
        allow_null=True,
    )
    timeout_exceptions = names_field(
        "Dotted exception class names that count as timeouts, default []."
    )


# --- targets and policies --------------------------------------------------------


def validate_target_name(value: str) -> str:
    if value in policies.RESERVED_TARGET_NAMES:
        raise ValidationError(
            f"'{value}' is reserved by the policy API; choose another name.",
            code="reserved",
        )
    return value


def validate_base_url(value: str) -> str:
    try:
        policies.check_base_url(value)
    except policies.UnsafeTarget as exc:
        raise ValidationError(str(exc), code="unsafe_url") from None
    return value


class TargetSerializer(RejectUnknownFieldsMixin, serializers.ModelSerializer):
    class Meta:
        model = Target
        fields = ["name", "base_url", "description", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]
        extra_kwargs = {
            "name": {"help_text": "Slug that names the target; cannot change."},
            "description": {
                "max_length": MAX_DESCRIPTION_LENGTH,
                "help_text": f"Free text, at most {MAX_DESCRIPTION_LENGTH} characters.",
                "error_messages": {"max_length": DESCRIPTION_TOO_LONG},
            },
            "base_url": {
                "help_text": "http or https URL that call paths are appended to. "
                "Link-local, metadata and private addresses are rejected unless "
                "RESILIENCE_ALLOW_PRIVATE_TARGETS is set; loopback is allowed."
            },
        }

    def validate_name(self, value: str) -> str:
        if self.instance is not None and value != self.instance.name:
            raise ValidationError(
                "The name of a target cannot change; create a new target.",
                code="immutable",
            )
        return validate_target_name(value)

    def validate_base_url(self, value: str) -> str:
        return validate_base_url(value)


class PolicySerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    """A target's policy: each section null or absent is off, except timeout."""

    target = StrictSlugField(
        max_length=64,
        required=False,
        help_text="Name of a registered target; required on create, cannot change.",
    )
    version = serializers.IntegerField(
        read_only=True, help_text="Grows by one on every change of the policy."
    )
    circuit_breaker = CircuitBreakerConfigSerializer(
        required=False, allow_null=True, help_text="null or absent: no breaker."
    )
    bulkhead = BulkheadConfigSerializer(
        required=False, allow_null=True, help_text="null or absent: no bulkhead."
    )
    rate_limiter = RateLimiterConfigSerializer(
        required=False, allow_null=True, help_text="null or absent: no rate limiter."
    )
    retry = RetryConfigSerializer(
        required=False, allow_null=True, help_text="null or absent: one attempt only."
    )
    timeout = TimeoutConfigSerializer(
        required=False,
        allow_null=True,
        help_text="Always applies; null or absent uses the defaults.",
    )
    on_state_store_error = serializers.ChoiceField(
        choices=["allow", "reject"],
        required=False,
        help_text="What calls do while Redis is unreachable, default allow.",
    )
    updated_at = serializers.DateTimeField(read_only=True)
    updated_by = serializers.CharField(read_only=True, allow_null=True)

    def to_representation(self, instance: Any) -> Any:
        if isinstance(instance, Policy):
            user = instance.updated_by
            instance = {
                "target": instance.target.name,
                "version": instance.version,
                **policies.effective(instance.config),
                "updated_at": instance.updated_at,
                "updated_by": user.get_username() if user is not None else None,
            }
        return super().to_representation(instance)

    def validate_target(self, value: str) -> str:
        if self.instance is not None:
            if value != self.instance.target.name:
                raise ValidationError(
                    "The target of a policy cannot change.", code="immutable"
                )
            return value
        known = self.context.get("known_targets")
        exists = (
            value in known
            if known is not None
            else Target.objects.filter(name=value).exists()
        )
        if not exists:
            raise ValidationError(
                f"Target '{value}' is not registered.", code="does_not_exist"
            )
        if known is None and Policy.objects.filter(target__name=value).exists():
            raise ValidationError(
                f"Target '{value}' already has a policy; change it with PUT or "
                f"PATCH /api/policies/{value}/.",
                code="unique",
            )
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if self.instance is None and "target" not in attrs:
            raise ValidationError(
                {"target": [ErrorDetail("This field is required.", "required")]}
            )
        config: dict[str, Any] = {name: attrs.get(name) for name in policies.SECTIONS}
        config["on_state_store_error"] = attrs.get("on_state_store_error", "allow")
        errors = policies.check_config(config)
        if errors:
            raise ValidationError(nest_errors(errors))
        attrs["config"] = policies.normalize(config)
        return attrs


def nest_errors(errors: list[policies.FieldError]) -> dict[str, Any]:
    """Turn dotted field errors into DRF's nested error dict."""
    nested: dict[str, Any] = {}
    for error in errors:
        *parents, leaf = error.path.split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node.setdefault(leaf, []).append(ErrorDetail(error.message, error.code))
    return nested


class DiffEntrySerializer(serializers.Serializer):
    path = serializers.CharField(help_text="Dotted path of the changed field.")
    old = serializers.JSONField(allow_null=True)
    new = serializers.JSONField(allow_null=True)


class PolicyVersionSerializer(serializers.ModelSerializer):
    target = serializers.CharField(source="target_name")
    changed_by = serializers.SerializerMethodField()
    diff = DiffEntrySerializer(many=True)

    class Meta:
        model = PolicyVersion
        fields = [
            "target",
            "version",
            "action",
            "config",
            "diff",
            "changed_by",
            "changed_at",
        ]

    def get_changed_by(self, row: PolicyVersion) -> str | None:
        user = row.changed_by
        return user.get_username() if user is not None else None


class ImportTargetSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    name = StrictSlugField(max_length=64)
    base_url = serializers.URLField(max_length=500)
    description = StrictCharField(
        allow_blank=True,
        required=False,
        default="",
        max_length=MAX_DESCRIPTION_LENGTH,
        error_messages={"max_length": DESCRIPTION_TOO_LONG},
        help_text=f"Free text, at most {MAX_DESCRIPTION_LENGTH} characters.",
    )

    def validate_name(self, value: str) -> str:
        return validate_target_name(value)

    def validate_base_url(self, value: str) -> str:
        return validate_base_url(value)


class ImportDocumentSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    """Targets and policies as exported; both lists are optional."""

    targets = ImportTargetSerializer(many=True, required=False)
    policies = PolicySerializer(many=True, required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        errors: dict[str, dict[str, Any]] = {}
        for field, key in (("targets", "name"), ("policies", "target")):
            seen: set[str] = set()
            for index, entry in enumerate(attrs.get(field, [])):
                if entry[key] in seen:
                    message = f"'{entry[key]}' appears more than once."
                    errors.setdefault(field, {})[str(index)] = {
                        key: [ErrorDetail(message, "duplicate")]
                    }
                seen.add(entry[key])
        if errors:
            raise ValidationError(errors)
        return attrs


class TargetChangeSerializer(serializers.Serializer):
    name = serializers.CharField()
    action = serializers.ChoiceField(choices=["create", "update", "unchanged"])
    diff = DiffEntrySerializer(many=True)


class PolicyChangeSerializer(serializers.Serializer):
    target = serializers.CharField()
    action = serializers.ChoiceField(choices=["create", "update", "unchanged"])
    version = serializers.IntegerField()
    diff = DiffEntrySerializer(many=True)


class ImportResultSerializer(serializers.Serializer):
    dry_run = serializers.BooleanField()
    targets = TargetChangeSerializer(many=True)
    policies = PolicyChangeSerializer(many=True)
