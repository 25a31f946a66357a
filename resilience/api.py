"""REST endpoints for targets, policies and live resilience state."""

import logging
from typing import Any

import redis
import yaml
from celery.exceptions import TimeoutError as CeleryTimeoutError
from django.db import IntegrityError, transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import (
    APIException,
    NotFound,
    ParseError,
    ValidationError,
)
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer
from rest_framework.views import APIView

from controlplane.api import MAX_JSON_DEPTH, BoundedJSONParser, check_empty_body
from controlplane.idempotency import IDEMPOTENCY_RESPONSES, idempotent
from resilience import policies, services, tasks
from resilience.models import BreakerTransition, Policy, PolicyVersion, Target
from resilience.serializers import (
    BreakerSerializer,
    BulkheadSerializer,
    CallRequestSerializer,
    CallResultSerializer,
    ImportDocumentSerializer,
    ImportResultSerializer,
    PolicySerializer,
    PolicyVersionSerializer,
    RateLimiterSerializer,
    TargetSerializer,
)

logger = logging.getLogger(__name__)


class StateStoreUnavailable(APIException):
    status_code = 503
    default_detail = "The resilience state store (Redis) is unreachable."
    default_code = "state_store_unavailable"


class PolicyConflict(APIException):
    status_code = 409
    default_detail = "The policy changed at the same moment; send the request again."
    default_code = "conflict"


class TargetViewSet(viewsets.ModelViewSet):
    """Downstream targets that protected calls and saga steps may reach.

    Writes need the operator role and are recorded in the audit log.
    Deleting a target deletes its policy, which is kept in the history.
    """

    queryset = Target.objects.all()
    serializer_class = TargetSerializer
    lookup_field = "name"

    @extend_schema(responses={201: TargetSerializer, **IDEMPOTENCY_RESPONSES})
    @idempotent()
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().create(request, *args, **kwargs)

    @extend_schema(responses={200: TargetSerializer, **IDEMPOTENCY_RESPONSES})
    @idempotent()
    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().update(request, *args, **kwargs)

    @extend_schema(responses={200: TargetSerializer, **IDEMPOTENCY_RESPONSES})
    @idempotent()
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().partial_update(request, *args, **kwargs)

    @extend_schema(responses={204: None, **IDEMPOTENCY_RESPONSES})
    @idempotent()
    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().destroy(request, *args, **kwargs)

    def perform_create(self, serializer: BaseSerializer[Any]) -> None:
        target, _ = policies.save_target(None, serializer.validated_data, self.user)
        serializer.instance = target

    def perform_update(self, serializer: BaseSerializer[Any]) -> None:
        policies.save_target(serializer.instance, serializer.validated_data, self.user)

    def perform_destroy(self, instance: Target) -> None:
        policies.delete_target(instance, self.user)

    @property
    def user(self) -> Any:
        return self.request.user


class YAMLRenderer(BaseRenderer):
    media_type = "application/yaml"
    format = "yaml"
    charset = "utf-8"

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Any = None,
    ) -> bytes:
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
        return text.encode("utf-8")


class YAMLParser(BaseParser):
    """Parse a YAML document with yaml.safe_load, rejecting aliases.

    Aliases are rejected before loading, because a small document of nested
    aliases expands to a huge one once it is walked for validation.
    """

    media_type = "application/yaml"

    def parse(
        self, stream: Any, media_type: str | None = None, parser_context: Any = None
    ) -> Any:
        text = stream.read().decode("utf-8", errors="replace")
        try:
            for token in yaml.scan(text):
                if isinstance(token, yaml.AliasToken):
                    raise ParseError("YAML parse error - aliases are not allowed.")
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ParseError(f"YAML parse error - {exc}") from None
        if _nesting(data) > MAX_JSON_DEPTH:
            raise ParseError(
                f"YAML parse error - nested deeper than {MAX_JSON_DEPTH} levels."
            )
        return data


def _nesting(value: Any, level: int = 0) -> int:
    if level > MAX_JSON_DEPTH or not isinstance(value, dict | list):
        return level
    children = value.values() if isinstance(value, dict) else value
    return max((_nesting(child, level + 1) for child in children), default=level + 1)


def _merge_patch(current: Any, patch: Any) -> Any:
    """Apply a JSON merge patch (RFC 7396): objects merge, null removes."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(current) if isinstance(current, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = _merge_patch(merged.get(key), value)
    return merged


def _flag(request: Request, name: str) -> bool:
    raw = request.query_params.get(name, "false").strip().lower()
    if raw not in {"true", "false", "1", "0"}:
        raise ValidationError({name: [f"Must be true or false, got {raw!r}."]})
    return raw in {"true", "1"}


EXPORT_FORMATS = ("json", "yaml")


class PolicyViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Resilience policies, one per target, looked up by the target's name.

    Every change gets a new version, kept with its diff in the history, and
    reaches every worker process within a second. Writes need the operator
    role. PATCH is a JSON merge patch (RFC 7396): objects merge and null
    removes a field or switches a section off.
    """

    queryset = Policy.objects.select_related("target", "updated_by").order_by(
        "target__name"
    )
    serializer_class = PolicySerializer
    lookup_field = "target"
    lookup_value_regex = "[-a-zA-Z0-9_]+"

    def get_object(self) -> Policy:
        return get_object_or_404(
            self.get_queryset(), target__name=self.kwargs["target"]
        )

    @extend_schema(responses={201: PolicySerializer, **IDEMPOTENCY_RESPONSES})
    @idempotent()
    def create(self, request: Request) -> Response:
        serializer = PolicySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        target = Target.objects.get(name=serializer.validated_data["target"])
        policy = self._save(target, serializer.validated_data["config"], create=True)
        return Response(PolicySerializer(policy).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: PolicySerializer, **IDEMPOTENCY_RESPONSES})
    @idempotent()
    def update(self, request: Request, target: str | None = None) -> Response:
        return self._replace(request.data)

    @extend_schema(responses={200: PolicySerializer, **IDEMPOTENCY_RESPONSES})
    @idempotent()
    def partial_update(self, request: Request, target: str | None = None) -> Response:
        current = dict(PolicySerializer(self.get_object()).data)
        for name in ("version", "updated_at", "updated_by"):
            current.pop(name, None)
        return self._replace(_merge_patch(current, request.data))

    @extend_schema(responses={204: None, **IDEMPOTENCY_RESPONSES})
    @idempotent()
    def destroy(self, request: Request, target: str | None = None) -> Response:
        policies.delete_policy(self.get_object(), request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _replace(self, data: Any) -> Response:
        policy = self.get_object()
        serializer = PolicySerializer(policy, data=data)
        serializer.is_valid(raise_exception=True)
        policy = self._save(policy.target, serializer.validated_data["config"])
        return Response(PolicySerializer(policy).data)

    def _save(
        self, target: Target, config: dict[str, Any], create: bool = False
    ) -> Policy:
        try:
            with transaction.atomic():
                policy, _ = policies.save_policy(target, config, self.request.user)
        except IntegrityError as exc:
            # Two writers took the same version number, or two creates raced.
            if create:
                raise ValidationError(
                    {"target": [f"Target '{target.name}' already has a policy."]},
                    code="unique",
                ) from exc
            raise PolicyConflict() from exc
        return policy

    @extend_schema(responses=PolicyVersionSerializer(many=True))
    @action(detail=True, methods=["get"])
    def history(self, request: Request, target: str | None = None) -> Response:
        """Versions of the target's policy, newest first, with who, when and diff."""
        versions = PolicyVersion.objects.filter(target_name=target).select_related(
            "changed_by"
        )
        if not versions.exists() and not Target.objects.filter(name=target).exists():
            raise NotFound(f"Target '{target}' is not registered.")
        page = self.paginate_queryset(versions.order_by("-version"))
        data = PolicyVersionSerializer(page, many=True).data
        return self.get_paginated_response(data)

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        # DRF reads ?format= as a renderer's name and returns 404 for an
        # unknown one. The export returns 400 naming the accepted values.
        fmt = request.query_params.get("format")
        if self.action == "export" and not force and fmt not in (None, *EXPORT_FORMATS):
            raise ValidationError({"format": [f"Must be yaml or json, got {fmt!r}."]})
        return super().perform_content_negotiation(request, force)

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "format", OpenApiTypes.STR, enum=list(EXPORT_FORMATS), default="json"
            )
        ],
        responses={200: ImportDocumentSerializer},
    )
    @action(
        detail=False,
        methods=["get"],
        renderer_classes=[JSONRenderer, YAMLRenderer],
        pagination_class=None,
    )
    def export(self, request: Request) -> Response:
        """Return every target and policy as a document the import reads back."""
        return Response(policies.export_document())

    @extend_schema(
        request=ImportDocumentSerializer,
        parameters=[OpenApiParameter("dry_run", OpenApiTypes.BOOL, default=False)],
        responses={
            200: ImportResultSerializer,
            **IDEMPOTENCY_RESPONSES,
            400: OpenApiResponse(
                description="Invalid document; nothing was changed. Each error "
                "names its entry, e.g. policies.2.retry.multiplier."
            ),
        },
    )
    @idempotent()
    @action(
        detail=False,
        methods=["post"],
        url_path="import",
        parser_classes=[BoundedJSONParser, YAMLParser],
    )
    def import_(self, request: Request) -> Response:
        """Create or update the document's targets and policies, all or nothing.

        With dry_run=true the response shows the changes per target and
        nothing is saved. Targets and policies the document does not name
        are left as they are.
        """
        dry_run = _flag(request, "dry_run")
        known = set(Target.objects.values_list("name", flat=True))
        if isinstance(request.data, dict) and isinstance(
            request.data.get("targets"), list
        ):
            known |= {
                str(t.get("name"))
                for t in request.data["targets"]
                if isinstance(t, dict)
            }
        serializer = ImportDocumentSerializer(
            data=request.data, context={"known_targets": known}
        )
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        result = policies.import_document(
            list(data.get("targets", [])),
            [
                {"target": p["target"], "config": p["config"]}
                for p in data.get("policies", [])
            ],
            request.user,
            dry_run,
        )
        return Response(ImportResultSerializer(result).data)


def breaker_view(target: Target) -> dict[str, Any]:
    """Combine a target's live breaker state with its stored transitions."""
    try:
        snapshot = services.breaker_state(target.name)
    except redis.RedisError as exc:
        logger.warning("target=%s breaker state unavailable: %s", target.name, exc)
        raise StateStoreUnavailable() from exc
    transitions = BreakerTransition.objects.filter(target=target)[:20]
    return {
        **snapshot,
        "target": target.name,
        "transitions": [
            {
                "at": t.at,
                "from_state": t.from_state,
                "to_state": t.to_state,
                "reason": t.reason,
                "failure_rate": t.failure_rate,
                "slow_call_rate": t.slow_call_rate,
            }
            for t in transitions
        ],
    }


def _target_or_404(name: str | None) -> Target:
    row = Target.objects.filter(name=name).first()
    if row is None:
        raise NotFound(f"Target '{name}' is not registered.")
    return row


class BreakerViewSet(viewsets.ViewSet):
    """Live circuit breaker state per target, read from Redis.

    The actions ``force-open``, ``disable``, ``metrics-only`` and ``reset``
    (back to closed with empty metrics) need the operator role.
    """

    lookup_field = "target"
    serializer_class = BreakerSerializer

    def _act(self, target: str | None, action: str) -> Response:
        row = _target_or_404(target)
        try:
            breaker = services.pipeline(row.name).breaker
            getattr(breaker, action)()
        except redis.RedisError as exc:
            logger.warning("target=%s breaker %s failed: %s", row.name, action, exc)
            raise StateStoreUnavailable() from exc
        logger.info("target=%s breaker %s by %s", row.name, action, self.request.user)
        return Response(BreakerSerializer(breaker_view(row)).data)

    @extend_schema(
        request=None, responses={200: BreakerSerializer, **IDEMPOTENCY_RESPONSES}
    )
    # Breaker state lives in Redis, outside the database transaction, so
    # the actions are not atomic with their idempotency record.
    @idempotent(atomic=False)
    @action(detail=True, methods=["post"], url_path="force-open")
    def force_open(self, request: Request, target: str | None = None) -> Response:
        """Reject every call until an operator resets or disables the breaker."""
        check_empty_body(request)
        return self._act(target, "force_open")

    @extend_schema(
        request=None, responses={200: BreakerSerializer, **IDEMPOTENCY_RESPONSES}
    )
    @idempotent(atomic=False)
    @action(detail=True, methods=["post"])
    def disable(self, request: Request, target: str | None = None) -> Response:
        """Let every call pass and record nothing."""
        check_empty_body(request)
        return self._act(target, "disable")

    @extend_schema(
        request=None, responses={200: BreakerSerializer, **IDEMPOTENCY_RESPONSES}
    )
    @idempotent(atomic=False)
    @action(detail=True, methods=["post"], url_path="metrics-only")
    def metrics_only(self, request: Request, target: str | None = None) -> Response:
        """Record calls but never trip."""
        check_empty_body(request)
        return self._act(target, "metrics_only")

    @extend_schema(
        request=None, responses={200: BreakerSerializer, **IDEMPOTENCY_RESPONSES}
    )
    @idempotent(atomic=False)
    @action(detail=True, methods=["post"])
    def reset(self, request: Request, target: str | None = None) -> Response:
        """Return to closed with empty metrics."""
        check_empty_body(request)
        return self._act(target, "reset")

    @extend_schema(responses=BreakerSerializer(many=True))
    def list(self, request: Request) -> Response:
        data = [breaker_view(target) for target in Target.objects.all()]
        return Response(BreakerSerializer(data, many=True).data)

    @extend_schema(responses=BreakerSerializer)
    def retrieve(self, request: Request, target: str | None = None) -> Response:
        row = _target_or_404(target)
        return Response(BreakerSerializer(breaker_view(row)).data)


def _usage(stage: str) -> list[dict[str, Any]]:
    rows = []
    for target in Target.objects.all():
        try:
            component = getattr(services.pipeline(target.name), stage)
            snapshot = component.snapshot() if component is not None else None
        except redis.RedisError as exc:
            logger.warning(
                "target=%s %s state unavailable: %s", target.name, stage, exc
            )
            raise StateStoreUnavailable() from exc
        if snapshot is not None:
            rows.append({"target": target.name, **snapshot})
    return rows


class BulkheadViewSet(viewsets.ViewSet):
    """Live bulkhead usage per target: in use, maximum, waiting, rejected."""

    serializer_class = BulkheadSerializer

    @extend_schema(responses=BulkheadSerializer(many=True))
    def list(self, request: Request) -> Response:
        return Response(BulkheadSerializer(_usage("bulkhead"), many=True).data)


class RateLimiterViewSet(viewsets.ViewSet):
    """Live rate limiter usage per target: available permits, waiting, rejected."""

    serializer_class = RateLimiterSerializer

    @extend_schema(responses=RateLimiterSerializer(many=True))
    def list(self, request: Request) -> Response:
        return Response(RateLimiterSerializer(_usage("rate_limiter"), many=True).data)


# How long POST /api/calls/ waits for a worker to report the outcome.
CALL_RESULT_TIMEOUT = 120.0


class WorkerTimeout(APIException):
    status_code = 504
    default_detail = "No worker reported the call's outcome in time."
    default_code = "worker_timeout"


class CallView(APIView):
    """Run one protected call through a worker and return its outcome."""

    @extend_schema(
        request=CallRequestSerializer,
        responses={200: CallResultSerializer, **IDEMPOTENCY_RESPONSES},
    )
    # The call runs in a worker, outside the database transaction, and the
    # claim must outlast the longest wait for its outcome.
    @idempotent(required=True, atomic=False, lease_seconds=CALL_RESULT_TIMEOUT + 30)
    def post(self, request: Request) -> Response:
        serializer = CallRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        result = tasks.protected_call.delay(
            data["target"].name, data["method"], data["path"], data.get("json")
        )
        try:
            outcome = result.get(timeout=CALL_RESULT_TIMEOUT)
        except CeleryTimeoutError as exc:
            logger.warning("call to %s timed out waiting for a worker", data["target"])
            raise WorkerTimeout() from exc
        return Response(CallResultSerializer(outcome).data)
