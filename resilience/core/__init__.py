"""The resilience core: circuit breaker, bulkhead, rate limiter, retry and
timeout, composed per downstream target, with their state shared in Redis.

Plain Python with no Django import, so it can be used, tested and
benchmarked on its own.
"""

from .classify import parse_retry_after
from .clock import Clock, ManualClock, SystemClock
from .config import (
    BulkheadConfig,
    CircuitBreakerConfig,
    PolicyConfig,
    RateLimiterConfig,
    RetryConfig,
    TimeoutConfig,
)
from .context import Attempt, current_attempt
from .errors import CallNotPermitted, RetryLater
from .pipeline import CallResult, Guard, Pipeline
from .registry import call, configure, get_pipeline, protect, protected

__all__ = [
    "Attempt",
    "BulkheadConfig",
    "CallNotPermitted",
    "CallResult",
    "CircuitBreakerConfig",
    "Clock",
    "Guard",
    "ManualClock",
    "Pipeline",
    "PolicyConfig",
    "RateLimiterConfig",
    "RetryConfig",
    "RetryLater",
    "SystemClock",
    "TimeoutConfig",
    "call",
    "configure",
    "current_attempt",
    "get_pipeline",
    "parse_retry_after",
    "protect",
    "protected",
]
