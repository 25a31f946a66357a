"""API shapes of targets and live breaker state."""

from rest_framework import serializers

from controlplane.api import RejectUnknownFieldsMixin
from resilience.models import BreakerTransition, Target


class TargetSerializer(serializers.ModelSerializer):
    class Meta:
        model = Target
        fields = ["name", "base_url", "description", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]


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
    target = serializers.SlugRelatedField(
        slug_field="name",
        queryset=Target.objects.all(),
        help_text="Name of a registered target.",
    )
    method = serializers.ChoiceField(
        choices=["GET", "POST", "PUT", "PATCH", "DELETE"], default="GET"
    )
    path = serializers.RegexField(
        r"^/[^\s]*$",
        max_length=2000,
        help_text="Path appended to the target's base URL; starts with '/'.",
        error_messages={"invalid": "Must start with '/' and contain no spaces."},
    )
    json = serializers.JSONField(required=False, allow_null=True)


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
