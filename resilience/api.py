"""REST endpoints for targets and live breaker state."""

import logging
from typing import Any

import redis
from celery.exceptions import TimeoutError as CeleryTimeoutError
from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from controlplane.idempotency import IDEMPOTENCY_RESPONSES, idempotent
from resilience import services, tasks
from resilience.models import BreakerTransition, Target
from resilience.serializers import (
    BreakerSerializer,
    BulkheadSerializer,
    CallRequestSerializer,
    CallResultSerializer,
    RateLimiterSerializer,
    TargetSerializer,
)

logger = logging.getLogger(__name__)


class StateStoreUnavailable(APIException):
    status_code = 503
    default_detail = "The resilience state store (Redis) is unreachable."
    default_code = "state_store_unavailable"


class TargetViewSet(viewsets.ReadOnlyModelViewSet):
    """Downstream targets that protected calls and saga steps may reach."""

    queryset = Target.objects.all()
    serializer_class = TargetSerializer
    lookup_field = "name"


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
        return self._act(target, "force_open")

    @extend_schema(
        request=None, responses={200: BreakerSerializer, **IDEMPOTENCY_RESPONSES}
    )
    @idempotent(atomic=False)
    @action(detail=True, methods=["post"])
    def disable(self, request: Request, target: str | None = None) -> Response:
        """Let every call pass and record nothing."""
        return self._act(target, "disable")

    @extend_schema(
        request=None, responses={200: BreakerSerializer, **IDEMPOTENCY_RESPONSES}
    )
    @idempotent(atomic=False)
    @action(detail=True, methods=["post"], url_path="metrics-only")
    def metrics_only(self, request: Request, target: str | None = None) -> Response:
        """Record calls but never trip."""
        return self._act(target, "metrics_only")

    @extend_schema(
        request=None, responses={200: BreakerSerializer, **IDEMPOTENCY_RESPONSES}
    )
    @idempotent(atomic=False)
    @action(detail=True, methods=["post"])
    def reset(self, request: Request, target: str | None = None) -> Response:
        """Return to closed with empty metrics."""
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
