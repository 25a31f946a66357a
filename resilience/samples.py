"""Failure-rate samples per target, for the breakers page's sparklines.

A Celery beat task samples every breaker each ``BREAKER_SAMPLE_SECONDS`` and
keeps the last hour of samples in a capped Redis list per target, so the
sparkline costs one LRANGE and no table grows with time.
"""

import json
import logging
import time
from typing import Any

import redis

from resilience import services
from resilience.models import Target

logger = logging.getLogger(__name__)

BREAKER_SAMPLE_SECONDS = 5
SAMPLES_KEPT = 3600 // BREAKER_SAMPLE_SECONDS
BULKHEAD_USAGE_KEY = "rcp:dashboard:bulkhead-usage"
SPARKLINE_WIDTH = 120
SPARKLINE_HEIGHT = 24


def _key(target: str) -> str:
    return f"rcp:dashboard:samples:{target}"


def sample_breakers() -> int:
    """Store one failure-rate sample and the bulkhead usage per target.

    Returns how many targets were sampled.
    """
    client = services.redis_client()
    now = time.time()
    usage: dict[Any, Any] = {}
    pipe = client.pipeline(transaction=False)
    sampled = 0
    for name in Target.objects.values_list("name", flat=True):
        try:
            pipeline = services.pipeline(name)
            breaker = pipeline.breaker.snapshot()
            bulkhead = pipeline.bulkhead.snapshot()
        except redis.RedisError as exc:
            logger.warning("target=%s breaker sample failed: %s", name, exc)
            continue
        sampled += 1
        if breaker.get("configured", True):
            sample = {
                "at": now,
                "rate": breaker.get("failure_rate"),
                "state": breaker.get("state"),
            }
            pipe.lpush(_key(name), json.dumps(sample))
            pipe.ltrim(_key(name), 0, SAMPLES_KEPT - 1)
            pipe.expire(_key(name), 2 * 3600)
        if bulkhead.get("configured") and bulkhead["max_concurrent_calls"]:
            share = bulkhead["in_use"] / bulkhead["max_concurrent_calls"]
            usage[name] = json.dumps(
                {"share": share, "percent": round(share * 100), "at": now}
            )
    pipe.delete(BULKHEAD_USAGE_KEY)
    if usage:
        pipe.hset(BULKHEAD_USAGE_KEY, mapping=usage)
    pipe.execute()
    return sampled


def latest_bulkhead_usage() -> dict[str, dict[str, Any]]:
    """Return the sampler's latest bulkhead usage per target."""
    raw: Any = services.redis_client().hgetall(BULKHEAD_USAGE_KEY)
    return {key.decode(): json.loads(value) for key, value in raw.items()}


def sparkline(target: str) -> dict[str, Any] | None:
    """Return SVG polyline points of the last hour's failure rate, or None."""
    raw = services.redis_client().lrange(_key(target), 0, SAMPLES_KEPT - 1)
    samples = [json.loads(item) for item in reversed(raw)]
    if len(samples) < 2:
        return None
    now = time.time()
    points = []
    for sample in samples:
        age = min(now - float(sample["at"]), 3600.0)
        x = SPARKLINE_WIDTH * (1 - age / 3600.0)
        rate = sample["rate"] or 0.0
        y = SPARKLINE_HEIGHT * (1 - float(rate) / 100.0)
        points.append(f"{x:.1f},{y:.1f}")
    latest = samples[-1]["rate"]
    return {
        "points": " ".join(points),
        "width": SPARKLINE_WIDTH,
        "height": SPARKLINE_HEIGHT,
        "latest": latest,
    }
