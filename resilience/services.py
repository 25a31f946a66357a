"""The Django side of the resilience core: policies, transitions, HTTP calls.

``resilience.core`` is plain Python; this module feeds it the policies
stored in the database, stores the breaker transitions it reports as rows,
and sends protected HTTP requests to registered targets.
"""

import json
import logging
import os
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

# Pub/sub channel on which every saved policy change is announced as
# {"target": name, "version": n}, once its transaction has committed.
POLICY_CHANNEL = "rcp:policy-changes"
# How long a process trusts its cached copy of a policy before it compares
# the cached version with the database. It bounds how late a change arrives
# when its pub/sub message was lost.
POLICY_VERSION_CHECK_SECONDS = 0.5
# Seconds between two connection attempts of a subscriber that lost Redis.
SUBSCRIBER_RETRY_SECONDS = 1.0

_redis_lock = threading.Lock()
_redis_client: redis.Redis | None = None
_cache_lock = threading.Lock()
_policy_cache: dict[str, tuple[float, core.PolicyConfig]] = {}
# Grows on every invalidation, so a load that raced with one is not cached.
_cache_generation = 0
_subscriber_lock = threading.Lock()
_subscriber_pid: int | None = None


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
    """Return the target's policy from the process cache or the database.

    The subscriber thread drops a cached copy as soon as a change message
    names its target. A cached copy is also compared with the stored
    version at most every POLICY_VERSION_CHECK_SECONDS, so a change applies
    in under a second even when its message is lost.
    """
    _ensure_subscriber()
    now = time.monotonic()
    with _cache_lock:
        cached = _policy_cache.get(target)
        generation = _cache_generation
    if cached is not None:
        checked_at, config = cached
        if now - checked_at < POLICY_VERSION_CHECK_SECONDS:
            return config
        stored_version = (
            Policy.objects.filter(target__name=target)
            .values_list("version", flat=True)
            .first()
        )
        if stored_version == config.version:
            _store_cached(target, (now, config), generation)
            return config

    stored = Policy.objects.filter(target__name=target).first()
    if stored is None:
        config = core.PolicyConfig.from_dict(DEFAULT_POLICY)
    else:
        config = replace(
            core.PolicyConfig.from_dict(stored.config), version=stored.version
        )
    _store_cached(target, (now, config), generation)
    return config


def _store_cached(
    target: str, entry: tuple[float, core.PolicyConfig], generation: int
) -> None:
    with _cache_lock:
        # An invalidation since the read means the copy may already be old.
        if generation == _cache_generation:
            _policy_cache[target] = entry


def invalidate_policy(target: str | None = None) -> None:
    """Drop this process's cached copy of a policy, or of all policies."""
    global _cache_generation
    with _cache_lock:
        _cache_generation += 1
        if target is None:
            _policy_cache.clear()
        else:
            _policy_cache.pop(target, None)


def _ensure_subscriber() -> None:
    """Start this process's policy subscriber thread if it has none.

    The pid check makes a forked child (a Celery prefork pool process, a
    gunicorn worker) start its own thread, because fork copies the parent's
    cache but not its threads.
    """
    global _subscriber_pid
    pid = os.getpid()
    if _subscriber_pid == pid:
        return
    with _subscriber_lock:
        if _subscriber_pid == pid:
            return
        _subscriber_pid = pid
        invalidate_policy()
        thread = threading.Thread(
            target=_listen_for_changes,
            args=(settings.REDIS_URL,),
            name="policy-subscriber",
            daemon=True,
        )
        thread.start()


def _reset_after_fork() -> None:
    global _subscriber_lock, _cache_lock, _subscriber_pid
    # A lock held by another thread at fork time stays locked in the child.
    _subscriber_lock = threading.Lock()
    _cache_lock = threading.Lock()
    _subscriber_pid = None


os.register_at_fork(after_in_child=_reset_after_fork)


def _listen_for_changes(redis_url: str) -> None:
    """Drop cached policies named on POLICY_CHANNEL, reconnecting on errors."""
    failures = 0
    while True:
        try:
            client = redis.Redis.from_url(
                redis_url,
                socket_timeout=5.0,
                socket_connect_timeout=2.0,
                # A PING now and then finds a connection that died silently.
                health_check_interval=30,
            )
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(POLICY_CHANNEL)
            # Changes published while this process was not subscribed are
            # lost, so every copy cached before now is suspect.
            invalidate_policy()
            if failures:
                logger.info("policy subscriber reconnected after %d errors", failures)
            failures = 0
            while True:
                message = pubsub.get_message(timeout=1.0)
                if message is not None:
                    _apply_change_message(message.get("data"))
        except redis.RedisError as exc:
            failures += 1
            if failures == 1 or failures % 60 == 0:
                logger.warning(
                    "policy subscriber lost Redis (%d errors), falling back to "
                    "version checks: %s",
                    failures,
                    exc,
                )
            time.sleep(SUBSCRIBER_RETRY_SECONDS)


def _apply_change_message(data: Any) -> None:
    try:
        change = json.loads(data)
        target = str(change["target"])
    except (TypeError, ValueError, KeyError) as exc:
        logger.warning("ignored malformed policy change message %r: %s", data, exc)
        return
    logger.debug("target=%s policy v%s changed", target, change.get("version"))
    invalidate_policy(target)


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


# Built pipelines by target and step overrides, with the policy each was
# built from. A pipeline encodes its policy once for the Lua calls, so
# building one per saga step or dashboard tile would redo that work.
_pipelines: dict[tuple[str, str], tuple[core.PolicyConfig, core.Pipeline]] = {}
_pipelines_lock = threading.Lock()
MAX_CACHED_PIPELINES = 4096


def pipeline(target: str, overrides: dict[str, Any] | None = None) -> core.Pipeline:
    """Return the pipeline of a target, with step-level retry or timeout.

    Breaker, bulkhead and rate limiter state is keyed by the target's name
    in Redis, so a pipeline built with overrides shares it with every other
    pipeline of the same target. A cached pipeline is reused only while the
    target's policy equals the one it was built from.
    """
    base = load_policy(target)
    key = (target, json.dumps(overrides or {}, sort_keys=True))
    with _pipelines_lock:
        cached = _pipelines.get(key)
    if cached is not None and cached[0] == base:
        return cached[1]

    if overrides:
        config = core.PolicyConfig.from_dict({**base.to_dict(), **overrides})
    else:
        config = base
    built = core.Pipeline(
        target,
        config,
        redis_client(),
        on_transition=record_transition,
        on_event=tracing.record_pipeline_event,
    )
    with _pipelines_lock:
        if len(_pipelines) >= MAX_CACHED_PIPELINES:
            _pipelines.clear()
        _pipelines[key] = (base, built)
    return built


def check_path(path: str) -> None:
    """Raise ValueError unless the path stays under the target's base URL."""
    segments = path.split("?", 1)[0].split("/")
    if not path.startswith("/") or any(seg in {"..", "."} for seg in segments):
        raise ValueError(
            f"Path {path!r} must start with '/' and contain no '.' or '..' "
            "segments, so it stays under the target's base URL."
        )
    if "%2e" in path.lower() or "\\" in path:
        raise ValueError(f"Path {path!r} must not contain encoded dots or backslashes.")


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
    # Set when the next retry had to wait longer than the retry policy's
    # max_inline_wait: the caller stores it and resumes the call later.
    retry_later: core.RetryLater | None = None


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
    resume: core.RetryLater | None = None,
) -> HttpOutcome:
    """Send one protected HTTP request to a target through the pipeline.

    ``resume`` continues a call whose retry was postponed (see
    ``HttpOutcome.retry_later``) at the attempt it names.
    """
    check_path(path)
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
                    # A redirect could lead outside the registered target,
                    # past the address checks made when it was saved.
                    allow_redirects=False,
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

    calls = pipeline(target.name, overrides)
    try:
        result = calls.execute(send) if resume is None else calls.resume(resume, send)
    except core.RetryLater as later:
        outcome = postponed(later, attempts)
    else:
        outcome = _outcome(result, attempts)
    metrics.record_call(target.name, outcome.outcome, outcome.rejected_by)
    return outcome


def postponed(later: core.RetryLater, attempts: list[AttemptRecord]) -> HttpOutcome:
    """Describe a call that stopped because its next retry waits too long."""
    last = later.last_error
    response = last if isinstance(last, requests.Response) else None
    if response is not None:
        reason = f"HTTP {response.status_code}"
    else:
        reason = f"{type(last).__name__}: {last}" if last is not None else "failed"
    return HttpOutcome(
        outcome="failed",
        rejected_by=None,
        status_code=response.status_code if response is not None else None,
        body=None,
        text=response.text if response is not None else "",
        error=f"{reason}; attempt {later.attempt} postponed by {later.delay:.1f} s",
        attempts=attempts,
        outcome_unknown=any(a.outcome == "unknown" for a in attempts),
        retry_later=later,
    )


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
