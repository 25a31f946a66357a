"""REST endpoints for saga definitions and runs."""

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException
from rest_framework.request import Request
from rest_framework.response import Response

from controlplane.api import check_empty_body, check_query_params
from controlplane.idempotency import IDEMPOTENCY_RESPONSES, idempotent
from sagas import actions, services
from sagas.models import RunStatus, SagaDefinition, SagaRun
from sagas.queries import filter_runs
from sagas.serializers import (
    ResolveSerializer,
    RunFilterSerializer,
    SagaDefinitionSerializer,
    SagaRunListSerializer,
    SagaRunSerializer,
    StartRunSerializer,
)

# The query parameters of the lists: pagination, and the runs' filters.
PAGE_PARAMS = {"limit", "offset"}
RUN_LIST_PARAMS = PAGE_PARAMS | set(RunFilterSerializer().fields)


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

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        check_query_params(request, PAGE_PARAMS)
        return super().list(request, *args, **kwargs)

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
            queryset = queryset.prefetch_related(
                "steps__tries", "steps__status_changes", "status_changes", "events"
            )
        if self.action == "list":
            check_query_params(self.request, RUN_LIST_PARAMS)
        filters = RunFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return filter_runs(queryset, filters.validated_data)

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

    def _act(self, request: Request, perform: Any, *args: Any) -> Response:
        run = self.get_object()
        try:
            perform(run, request.user, *args)
        except actions.ActionNotAllowed as exc:
            raise RunConflict(str(exc)) from exc
        run.refresh_from_db()
        return Response(SagaRunSerializer(run).data)

    @extend_schema(request=None, responses={200: SagaRunSerializer, 409: None})
    @action(detail=True, methods=["post"])
    @idempotent()
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        """Stop a pending or running run and compensate what took effect."""
        check_empty_body(request)
        return self._act(request, actions.cancel)

    @extend_schema(request=None, responses={200: SagaRunSerializer, 409: None})
    @action(detail=True, methods=["post"])
    @idempotent()
    def retry(self, request: Request, pk: str | None = None) -> Response:
        """Retry a paused step, failed compensations, or a TCC run's phase two.

        A paused run sends its failed step again, a compensation_failed run
        its failed compensations, and a TCC run in needs_attention the
        confirms or cancels its stored decision still lacks.
        """
        check_empty_body(request)
        return self._act(request, actions.retry)

    @extend_schema(request=ResolveSerializer, responses={200: SagaRunSerializer})
    @action(detail=True, methods=["post"])
    @idempotent()
    def resolve(self, request: Request, pk: str | None = None) -> Response:
        """Mark a run needing attention resolved by hand; a note is required.

        It applies to a compensation_failed run and to a TCC run in
        needs_attention; the status stays and the note is kept.
        """
        serializer = ResolveSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return self._act(request, actions.resolve, serializer.validated_data["note"])


class RunConflict(APIException):
    status_code = 409
    default_detail = "The run's status does not allow this action."
    default_code = "run_status_conflict"
