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

BREAKER_SAMPLE_SECONDS = 30
SAMPLES_KEPT = 3600 // BREAKER_SAMPLE_SECONDS
SPARKLINE_WIDTH = 120
SPARKLINE_HEIGHT = 24


def _key(target: str) -> str:
    return f"rcp:dashboard:samples:{target}"


def sample_breakers() -> int:
    """Store one failure-rate sample per target and return how many."""
    client = services.redis_client()
    now = time.time()
    stored = 0
    for name in Target.objects.values_list("name", flat=True):
        try:
            snapshot = services.pipeline(name).breaker.snapshot()
        except redis.RedisError as exc:
            logger.warning("target=%s breaker sample failed: %s", name, exc)
            continue
        if not snapshot.get("configured", True):
            continue
        sample = {
            "at": now,
            "rate": snapshot.get("failure_rate"),
            "state": snapshot.get("state"),
        }
        pipe = client.pipeline(transaction=False)
        pipe.lpush(_key(name), json.dumps(sample))
        pipe.ltrim(_key(name), 0, SAMPLES_KEPT - 1)
        pipe.expire(_key(name), 2 * 3600)
        pipe.execute()
        stored += 1
    return stored


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
