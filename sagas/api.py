"""REST endpoints for saga definitions and runs."""

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from controlplane.idempotency import IDEMPOTENCY_RESPONSES, idempotent
from sagas import services
from sagas.models import RunStatus, SagaDefinition, SagaRun
from sagas.serializers import (
    SagaDefinitionSerializer,
    SagaRunListSerializer,
    SagaRunSerializer,
    StartRunSerializer,
)


class SagaDefinitionViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Saga definitions: list, get, create and update (operators write)."""

    queryset = SagaDefinition.objects.all()
    serializer_class = SagaDefinitionSerializer
    lookup_field = "name"

    @extend_schema(responses={201: SagaDefinitionSerializer, **IDEMPOTENCY_RESPONSES})
    @idempotent()
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().create(request, *args, **kwargs)

    @extend_schema(responses={200: SagaDefinitionSerializer, **IDEMPOTENCY_RESPONSES})
    @idempotent()
    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().update(request, *args, **kwargs)

    @extend_schema(responses={200: SagaDefinitionSerializer, **IDEMPOTENCY_RESPONSES})
    @idempotent()
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().partial_update(request, *args, **kwargs)


@extend_schema(
    parameters=[
        OpenApiParameter("status", enum=[s.value for s in RunStatus]),
        OpenApiParameter("saga", str, description="Saga definition name."),
        OpenApiParameter("needs_attention", bool),
    ]
)
class SagaRunViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Saga runs: start one, list them with filters, get one with its steps."""

    queryset = SagaRun.objects.select_related("definition")

    def get_serializer_class(self) -> Any:
        if self.action == "list":
            return SagaRunListSerializer
        if self.action == "create":
            return StartRunSerializer
        return SagaRunSerializer

    def get_queryset(self) -> QuerySet[SagaRun]:
        queryset = super().get_queryset()
        if self.action == "retrieve":
            queryset = queryset.prefetch_related("steps__tries", "status_changes")
        params = self.request.query_params
        if params.get("status") and params["status"] not in RunStatus.values:
            raise ValidationError(
                {"status": [f"Must be one of {', '.join(RunStatus.values)}."]},
                code="invalid_choice",
            )
        if params.get("status"):
            queryset = queryset.filter(status=params["status"])
        if params.get("saga"):
            queryset = queryset.filter(definition__name=params["saga"])
        if params.get("needs_attention") in {"true", "1"}:
            queryset = queryset.filter(needs_attention=True)
        return queryset

    @extend_schema(
        request=StartRunSerializer,
        responses={201: SagaRunSerializer, **IDEMPOTENCY_RESPONSES},
    )
    @idempotent(required=True, run_id_field="id")
    def create(self, request: Request) -> Response:
        """Start a run of a saga with its input; 400 names each bad field."""
        serializer = StartRunSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        run = services.start_run(
            serializer.validated_data["saga"],
            serializer.validated_data["input"],
            request.user,
        )
        body = SagaRunSerializer(run).data
        return Response(body, status=status.HTTP_201_CREATED)
