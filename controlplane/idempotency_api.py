"""GET /api/idempotency-records/: search and inspect idempotency records."""

import uuid
from datetime import UTC, datetime
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, viewsets
from rest_framework.exceptions import ValidationError

from controlplane.models import IdempotencyRecord


class IdempotencyRecordSerializer(serializers.ModelSerializer):
    username = serializers.SerializerMethodField()
    endpoint = serializers.CharField(read_only=True)

    class Meta:
        model = IdempotencyRecord
        fields = [
            "id",
            "key",
            "principal",
            "username",
            "endpoint",
            "method",
            "route",
            "path",
            "fingerprint",
            "status",
            "response_status",
            "response_headers",
            "trace_id",
            "run_id",
            "created_at",
            "completed_at",
            "locked_until",
            "expires_at",
        ]
        read_only_fields = fields

    def get_username(self, record: IdempotencyRecord) -> str | None:
        return record.user.get_username() if record.user is not None else None


class IdempotencyRecordDetailSerializer(IdempotencyRecordSerializer):
    class Meta(IdempotencyRecordSerializer.Meta):
        fields = [*IdempotencyRecordSerializer.Meta.fields, "response_body"]
        read_only_fields = fields


def _moment(field: str, value: str) -> datetime:
    """Parse an ISO 8601 date or time; a naive one is taken as UTC."""
    try:
        moment = parse_datetime(value)
        if moment is None:
            day = parse_date(value)
            if day is not None:
                moment = datetime(day.year, day.month, day.day)
    except ValueError:
        moment = None
    if moment is None:
        raise ValidationError(
            {field: [f"Must be an ISO 8601 date or time, got {value!r}."]},
            code="invalid",
        )
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, UTC)
    return moment


def filter_records(
    records: QuerySet[IdempotencyRecord], params: Any
) -> QuerySet[IdempotencyRecord]:
    """Apply the list filters of the API and the dashboard.

    ``key`` matches exactly and ``key_contains`` a part of the key.
    ``route`` is a route pattern (``/api/runs/``) or an endpoint
    (``POST /api/runs/``), and ``run`` is a saga run id. An invalid value
    raises ValidationError naming the parameter.
    """
    if params.get("key"):
        records = records.filter(key=params["key"])
    if params.get("key_contains"):
        records = records.filter(key__contains=params["key_contains"])

    status = params.get("status")
    if status:
        choices = IdempotencyRecord.Status.values
        if status not in choices:
            raise ValidationError(
                {"status": [f"Must be one of {', '.join(choices)}, got {status!r}."]},
                code="invalid_choice",
            )
        records = records.filter(status=status)

    route = (params.get("route") or "").strip()
    if route:
        method, _, pattern = route.rpartition(" ")
        records = records.filter(route=pattern)
        if method:
            records = records.filter(method=method.strip().upper())

    if params.get("run"):
        try:
            run_id = uuid.UUID(params["run"])
        except ValueError:
            raise ValidationError(
                {"run": [f"Must be a run id (UUID), got {params['run']!r}."]},
                code="invalid",
            ) from None
        records = records.filter(run_id=run_id)

    if params.get("created_after"):
        after = _moment("created_after", params["created_after"])
        records = records.filter(created_at__gte=after)
    if params.get("created_before"):
        before = _moment("created_before", params["created_before"])
        records = records.filter(created_at__lt=before)
    return records


@extend_schema(
    parameters=[
        OpenApiParameter("key", str, description="Exact key."),
        OpenApiParameter("key_contains", str, description="Part of the key."),
        OpenApiParameter("status", enum=IdempotencyRecord.Status.values),
        OpenApiParameter(
            "route",
            str,
            description="Route pattern (/api/runs/) or endpoint (POST /api/runs/).",
        ),
        OpenApiParameter("run", str, description="Id of the saga run created."),
        OpenApiParameter(
            "created_after", str, description="ISO 8601; records created at or after."
        ),
        OpenApiParameter(
            "created_before", str, description="ISO 8601; records created before."
        ),
    ]
)
class IdempotencyRecordViewSet(viewsets.ReadOnlyModelViewSet):
    """Stored Idempotency-Key claims and responses, newest first.

    Any logged-in user reads them; the list leaves out response bodies,
    the detail includes them.
    """

    queryset = IdempotencyRecord.objects.select_related("user")

    def get_serializer_class(self) -> Any:
        if self.action == "retrieve":
            return IdempotencyRecordDetailSerializer
        return IdempotencyRecordSerializer

    def get_queryset(self) -> QuerySet[IdempotencyRecord]:
        queryset = super().get_queryset()
        if self.action == "list":
            queryset = filter_records(queryset, self.request.query_params)
        return queryset
