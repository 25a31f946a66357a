"""Read and administer the shared state of one target's stages."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .pipeline import Pipeline


def iso_time(epoch: float) -> str:
    """Format epoch seconds as ISO 8601 in UTC."""
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def decode(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def parse_event(raw: Any) -> dict[str, Any]:
    """Turn a transition event stored by the scripts into its public dict."""
    event: dict[str, Any] = json.loads(decode(raw))
    event["at"] = iso_time(float(event["at"]))
    for name in ("failure_rate", "slow_call_rate"):
        event[name] = _rate(event[name])
    return event


def _rate(value: Any) -> float | None:
    # Lua hands whole-number rates over as integers.
    return None if value is None else float(value)


class CircuitBreaker:
    """The circuit breaker of one target, shared by every worker."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

    @property
    def configured(self) -> bool:
        return self._pipeline.policy.circuit_breaker is not None

    def snapshot(self) -> dict[str, Any]:
        """Return the live state, window metrics and recent transitions.

        Rates are percentages, None while fewer than the minimum number of
        calls are buffered (in half-open: min(minimum, permitted) probes).
        A target without a breaker reports state "disabled" and
        `configured` False.
        """
        document, events = self._pipeline.read_snapshot()
        transitions = [parse_event(raw) for raw in events]
        breaker = document.get("breaker")
        if breaker is None:
            return {
                "configured": False,
                "state": "disabled",
                "failure_rate": None,
                "slow_call_rate": None,
                "buffered_calls": 0,
                "failed_calls": 0,
                "slow_calls": 0,
                "not_permitted_calls": 0,
                "state_changed_at": None,
                "transitions": transitions,
            }
        open_until = breaker["open_until"]
        return {
            "configured": True,
            "state": breaker["state"],
            "failure_rate": _rate(breaker["failure_rate"]),
            "slow_call_rate": _rate(breaker["slow_call_rate"]),
            "buffered_calls": breaker["buffered_calls"],
            "failed_calls": breaker["failed_calls"],
            "slow_calls": breaker["slow_calls"],
            "not_permitted_calls": breaker["not_permitted_calls"],
            "state_changed_at": iso_time(float(breaker["changed_at"])),
            "open_until": None if open_until is None else iso_time(float(open_until)),
            "half_open_permits_taken": breaker["half_open_permits_taken"],
            "generation": breaker["generation"],
            "transitions": transitions,
        }

    def force_open(self) -> list[dict[str, Any]]:
        """Reject every call until another action changes the state."""
        return self._pipeline.breaker_action("force_open")

    def disable(self) -> list[dict[str, Any]]:
        """Admit every call and record nothing."""
        return self._pipeline.breaker_action("disable")

    def metrics_only(self) -> list[dict[str, Any]]:
        """Record outcomes but never trip."""
        return self._pipeline.breaker_action("metrics_only")

    def reset(self) -> list[dict[str, Any]]:
        """Return to closed with an empty window and no re-open count."""
        return self._pipeline.breaker_action("reset")

    def transition_to_closed(self) -> list[dict[str, Any]]:
        return self._pipeline.breaker_action("close")

    def transition_to_open(self) -> list[dict[str, Any]]:
        return self._pipeline.breaker_action("open")

    def transition_to_half_open(self) -> list[dict[str, Any]]:
        return self._pipeline.breaker_action("half_open")


class Bulkhead:
    """The cluster-wide semaphore of one target."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

    def snapshot(self) -> dict[str, Any]:
        """Return permits in use (unexpired leases), waiting callers, rejections."""
        document, _ = self._pipeline.read_snapshot()
        config = self._pipeline.policy.bulkhead
        stats = document["bulkhead"]
        return {
            "configured": config is not None,
            "in_use": stats["in_use"],
            "max_concurrent_calls": None
            if config is None
            else config.max_concurrent_calls,
            "waiting": stats["waiting"],
            "rejected": stats["rejected"],
        }


class RateLimiter:
    """The cluster-wide rate limiter of one target."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

    def snapshot(self) -> dict[str, Any]:
        """Return permits left in the current sliding period and the counters."""
        document, _ = self._pipeline.read_snapshot()
        config = self._pipeline.policy.rate_limiter
        stats = document["rate_limiter"]
        if config is None:
            available = None
        else:
            available = max(0, config.limit_for_period - stats["used"])
        return {
            "configured": config is not None,
            "available_permits": available,
            "limit_for_period": None if config is None else config.limit_for_period,
            "limit_refresh_period": None
            if config is None
            else config.limit_refresh_period,
            "waiting": stats["waiting"],
            "rejected": stats["rejected"],
        }
