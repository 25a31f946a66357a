"""The Django side of the resilience core: policies, transitions, HTTP calls.

``resilience.core`` is plain Python; this module feeds it the policies
stored in the database, stores the breaker transitions it reports as rows,
and sends protected HTTP requests to registered targets.
"""

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import redis
import requests
from django.conf import settings
from urllib3.exceptions import NewConnectionError

from controlplane import metrics, tracing
from resilience import core
from resilience.models import BreakerTransition, Policy, Target

logger = logging.getLogger(__name__)

# Policy used for a target that has none stored: the core's defaults for
# retry and timeout, and no breaker, bulkhead or rate limiter.
DEFAULT_POLICY: dict[str, Any] = {"retry": {}, "timeout": {}}

# How long a worker trusts its cached copy of a policy before it reads the
# version again from the database.
POLICY_CACHE_SECONDS = 1.0

_redis_lock = threading.Lock()
_redis_client: redis.Redis | None = None
_cache_lock = threading.Lock()
_policy_cache: dict[str, tuple[float, core.PolicyConfig]] = {}


def redis_client() -> redis.Redis:
    """Return the process's Redis client for the resilience state."""
    global _redis_client
    with _redis_lock:
        if _redis_client is None:
            _redis_client = redis.Redis.from_url(
                settings.REDIS_URL, socket_timeout=2.0, socket_connect_timeout=2.0
            )
        return _redis_client


def load_policy(target: str) -> core.PolicyConfig:
    """Return the target's policy, cached per process for about a second."""
    now = time.monotonic()
    with _cache_lock:
        cached = _policy_cache.get(target)
        if cached is not None and now - cached[0] < POLICY_CACHE_SECONDS:
            return cached[1]

    stored = Policy.objects.filter(target__name=target).first()
    if stored is None:
        config = core.PolicyConfig.from_dict(DEFAULT_POLICY)
    else:
        config = replace(
            core.PolicyConfig.from_dict(stored.config), version=stored.version
        )

    with _cache_lock:
        _policy_cache[target] = (now, config)
    return config


def record_transition(target: str, event: dict[str, Any]) -> None:
    """Store a breaker transition reported by the core as a row."""
    target_row = Target.objects.filter(name=target).first()
    if target_row is None:
        logger.warning("target=%s breaker transition for unknown target", target)
        return
    at = event.get("at")
    BreakerTransition.objects.create(
        target=target_row,
        at=datetime.fromisoformat(at) if isinstance(at, str) else datetime.now(UTC),
        from_state=event["from_state"],
        to_state=event["to_state"],
        reason=str(event.get("reason", ""))[:200],
        failure_rate=event.get("failure_rate"),
        slow_call_rate=event.get("slow_call_rate"),
    )
    logger.info(
        "target=%s breaker %s -> %s (%s)",
        target,
        event["from_state"],
        event["to_state"],
        event.get("reason", ""),
    )


def configure_core() -> None:
    """Point the core's process-wide registry at Redis and the database."""
    core.configure(
        redis=redis_client(),
        policy_provider=load_policy,
        on_transition=record_transition,
    )


def pipeline(target: str, overrides: dict[str, Any] | None = None) -> core.Pipeline:
    """Build a pipeline for a target, with step-level retry or timeout.

    Breaker, bulkhead and rate limiter state is keyed by the target's name
    in Redis, so a pipeline built with overrides shares it with every other
    pipeline of the same target.
    """
    base = load_policy(target)
    if overrides:
        merged = {**base.to_dict(), **overrides}
        config = core.PolicyConfig.from_dict(merged)
    else:
        config = base
    return core.Pipeline(
        target,
        config,
        redis_client(),
        on_transition=record_transition,
        on_event=tracing.record_pipeline_event,
    )


@dataclass
class AttemptRecord:
    """What one attempt of an HTTP call did, for the step's timeline."""

    number: int
    started_at: datetime
    finished_at: datetime | None = None
    status_code: int | None = None
    outcome: str = "failed"
    error: str = ""


@dataclass
class HttpOutcome:
    """The result of a protected HTTP call to a target."""

    outcome: str
    rejected_by: str | None
    status_code: int | None
    body: Any
    text: str
    error: str
    attempts: list[AttemptRecord] = field(default_factory=list)
    duration_ms: int = 0
    # True when some attempt may have taken effect downstream although the
    # call did not succeed: a timeout after sending, or an ambiguous 5xx.
    outcome_unknown: bool = False


# Statuses that say the request was not processed, so it had no effect:
# 503 Service Unavailable and 429 Too Many Requests. Any other 5xx may come
# from a handler that failed half-way.
NOT_PROCESSED_STATUSES = frozenset({429, 503})


def http_call(
    target: Target,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> HttpOutcome:
    """Send one protected HTTP request to a target through the pipeline."""
    url = target.base_url.rstrip("/") + path
    attempts: list[AttemptRecord] = []
    session = requests.Session()

    def send() -> requests.Response:
        attempt = core.current_attempt()
        record = AttemptRecord(
            number=attempt.number if attempt else len(attempts) + 1,
            started_at=datetime.now(UTC),
        )
        attempts.append(record)
        with tracing.attempt_span(target.name, record.number) as span:
            try:
                response = session.request(
                    method,
                    url,
                    json=body,
                    headers=headers,
                    timeout=attempt.timeout if attempt else 10.0,
                )
            except requests.RequestException as exc:
                record.finished_at = datetime.now(UTC)
                record.error = f"{type(exc).__name__}: {exc}"
                record.outcome = "unknown" if _maybe_sent(exc) else "failed"
                tracing.end_attempt(span, record.outcome, None)
                raise
            record.finished_at = datetime.now(UTC)
            record.status_code = response.status_code
            record.outcome = _classify(response.status_code)
            if response.status_code >= 400:
                record.error = f"HTTP {response.status_code}: {response.text[:200]}"
            tracing.end_attempt(span, record.outcome, response.status_code)
        return response

    result = pipeline(target.name, overrides).execute(send)
    outcome = _outcome(result, attempts)
    metrics.record_call(target.name, outcome.outcome, outcome.rejected_by)
    return outcome


def _maybe_sent(exc: requests.RequestException) -> bool:
    # A connect timeout or a refused connection fails before any byte of
    # the request left, so the service cannot have applied it. A read
    # timeout or a connection reset mid-response may come after it did.
    if isinstance(exc, requests.ConnectTimeout):
        return False
    if isinstance(exc, requests.ConnectionError):
        reason = exc.args[0] if exc.args else None
        reason = getattr(reason, "reason", reason)
        if isinstance(reason, NewConnectionError):
            return False
    return True


def _classify(status_code: int) -> str:
    if status_code < 400:
        return "succeeded"
    if status_code >= 500 and status_code not in NOT_PROCESSED_STATUSES:
        return "unknown"
    return "failed"


def _outcome(result: Any, attempts: list[AttemptRecord]) -> HttpOutcome:
    response = result.value if isinstance(result.value, requests.Response) else None
    status_code = response.status_code if response is not None else None
    body: Any = None
    text = ""
    if response is not None:
        text = response.text
        try:
            body = response.json()
        except ValueError:
            body = None
    outcome = result.outcome
    if outcome == "succeeded" and status_code is not None and status_code >= 400:
        outcome = "failed"
    error = result.error or ""
    if not error and outcome == "failed" and status_code is not None:
        error = f"HTTP {status_code}: {text[:500]}"
    return HttpOutcome(
        outcome=outcome,
        rejected_by=result.rejected_by,
        status_code=status_code,
        body=body,
        text=text,
        error=error,
        attempts=attempts,
        duration_ms=int(result.duration_ms),
        outcome_unknown=any(a.outcome == "unknown" for a in attempts),
    )


def breaker_state(target: str) -> dict[str, Any]:
    """Return the live breaker snapshot of a target."""
    return pipeline(target).breaker.snapshot()


def protected_call(target: str, method: str, path: str, body: Any) -> dict[str, Any]:
    """Run one HTTP call to a target through its pipeline and describe it."""
    target_row = Target.objects.filter(name=target).first()
    if target_row is None:
        return {
            "outcome": "failed",
            "rejected_by": None,
            "status_code": None,
            "attempts": 0,
            "duration_ms": 0,
            "error": f"Target '{target}' is not registered.",
        }
    outcome = http_call(target_row, method, path, body)
    return {
        "outcome": outcome.outcome,
        "rejected_by": outcome.rejected_by,
        "status_code": outcome.status_code,
        "attempts": len(outcome.attempts),
        "duration_ms": outcome.duration_ms,
        "error": outcome.error or None,
        "body": outcome.body,
    }
