"""The outbox and inbox over REST: figures per service, events, redelivery.

``GET /api/outbox/`` returns pending, sent and failed events and the age of
the oldest unsent one per service, with each consumer's inbox figures.
``GET /api/outbox/events/`` lists events (filters ``service``, ``status``,
``correlation_id``) with the consumers that handled each, and
``POST /api/outbox/events/<event_id>/redeliver/`` publishes a sent event
again to all its subscribers, which their inboxes turn into a no-op.
"""

from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.exceptions import APIException
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from controlplane import outbox
from controlplane.api import RejectUnknownFieldsMixin
from controlplane.models import InboxEvent, OutboxEvent
from demo.events import subscribers_of


class OutboxServiceSerializer(serializers.Serializer):
    service = serializers.CharField()
    pending = serializers.IntegerField()
    sent = serializers.IntegerField()
    failed = serializers.IntegerField()
    oldest_unsent_age_seconds = serializers.FloatField(allow_null=True)
    consumed = serializers.IntegerField()
    duplicates_ignored = serializers.IntegerField()
    last_consumed_at = serializers.DateTimeField(allow_null=True)


class OutboxSummaryView(APIView):
    """Outbox and inbox figures of each service and of the run tracker."""

    @extend_schema(responses=OutboxServiceSerializer(many=True))
    def get(self, request: Request) -> Response:
        rows = outbox.summary()
        body = {
            "generated_at": timezone.now(),
            "services": OutboxServiceSerializer(rows, many=True).data,
        }
        return Response(body)


class OutboxEventSerializer(serializers.ModelSerializer):
    subscribers = serializers.SerializerMethodField()
    consumed_by = serializers.SerializerMethodField()

    class Meta:
        model = OutboxEvent
        fields = [
            "event_id",
            "service",
            "event_type",
            "correlation_id",
            "payload",
            "traceparent",
            "status",
            "publish_attempts",
            "last_error",
            "created_at",
            "sent_at",
            "redelivered_at",
            "subscribers",
            "consumed_by",
        ]
        read_only_fields = fields

    def get_subscribers(self, event: OutboxEvent) -> list[str]:
        return subscribers_of(event.event_type)

    def get_consumed_by(self, event: OutboxEvent) -> list[dict[str, Any]]:
        rows = InboxEvent.objects.filter(event_id=event.event_id).order_by("id")
        return [
            {
                "consumer": row.consumer,
                "received_at": row.received_at,
                "duplicates": row.duplicates,
            }
            for row in rows
        ]


class OutboxEventFilterSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    service = serializers.ChoiceField(choices=outbox.SERVICE_ORDER, required=False)
    status = serializers.ChoiceField(choices=OutboxEvent.Status.choices, required=False)
    correlation_id = serializers.CharField(max_length=64, required=False)
    # Pagination parameters, checked by the paginator.
    limit = serializers.CharField(required=False)
    offset = serializers.CharField(required=False)


@extend_schema(
    parameters=[
        OpenApiParameter("service", enum=list(outbox.SERVICE_ORDER)),
        OpenApiParameter("status", enum=OutboxEvent.Status.values),
        OpenApiParameter("correlation_id", str, description="A saga run id."),
    ]
)
class OutboxEventListView(generics.ListAPIView):
    """Outbox events, oldest first, with the consumers that handled each."""

    serializer_class = OutboxEventSerializer

    def get_queryset(self) -> QuerySet[OutboxEvent]:
        filters = OutboxEventFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        events = OutboxEvent.objects.order_by("id")
        for name in ("service", "status", "correlation_id"):
            if filters.validated_data.get(name):
                events = events.filter(**{name: filters.validated_data[name]})
        return events


class EventNotSent(APIException):
    status_code = 409
    default_detail = "The event has not been published yet."
    default_code = "event_not_sent"


class OutboxEventRedeliverView(APIView):
    """Publish a sent event again to every subscriber (operators only)."""

    @extend_schema(request=None, responses={202: OutboxEventSerializer, 409: None})
    def post(self, request: Request, event_id: Any) -> Response:
        event = get_object_or_404(OutboxEvent, event_id=event_id)
        if event.status != OutboxEvent.Status.SENT:
            raise EventNotSent(
                f"Event {event.event_id} is {event.status}; the relay publishes "
                "it on its next pass, so only a sent event can be redelivered."
            )
        outbox.redeliver(event, subscribers_of(event.event_type))
        body = OutboxEventSerializer(event).data
        return Response(body, status=status.HTTP_202_ACCEPTED)
