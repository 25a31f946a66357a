"""Classify a call's outcome for the breaker and the retry stage."""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .config import (
    CircuitBreakerConfig,
    RetryConfig,
    TimeoutConfig,
    status_code_matches,
)

# Breaker outcome codes understood by the Lua scripts.
SUCCESS = "S"
FAILURE = "F"
IGNORED = "I"


def class_names(exc: BaseException) -> set[str]:
    """Return the dotted and bare names of the exception's class and bases."""
    names: set[str] = set()
    for cls in type(exc).__mro__:
        names.add(cls.__qualname__)
        names.add(f"{cls.__module__}.{cls.__qualname__}")
    return names


def matches(exc: BaseException, configured: Iterable[str]) -> bool:
    """Return whether the exception is an instance of a configured class name."""
    configured = tuple(configured)
    return bool(configured) and not class_names(exc).isdisjoint(configured)


def is_timeout(exc: BaseException, config: TimeoutConfig) -> bool:
    """Return whether the exception means the attempt timed out.

    `TimeoutError` (which `socket.timeout` is an alias of), any class whose
    name contains "Timeout" (requests.Timeout, httpx.TimeoutException) and
    the configured `timeout_exceptions` count.
    """
    if isinstance(exc, TimeoutError) or matches(exc, config.timeout_exceptions):
        return True
    return any("Timeout" in cls.__name__ for cls in type(exc).__mro__)


def is_connection_error(exc: BaseException) -> bool:
    """Return whether the exception means the downstream was not reachable."""
    if isinstance(exc, ConnectionError):
        return True
    return any(cls.__name__.endswith("ConnectionError") for cls in type(exc).__mro__)


def status_code_of(value: object) -> int | None:
    """Return the value's int `status_code` attribute (a response), or None."""
    code = getattr(value, "status_code", None)
    if isinstance(code, int) and not isinstance(code, bool):
        return code
    return None


@dataclass(frozen=True)
class Outcome:
    """Classification of one attempt for the breaker and the retry stage."""

    breaker_code: str
    retryable: bool
    retry_after: float | None = None


def classify_exception(
    exc: BaseException,
    breaker: CircuitBreakerConfig | None,
    retry: RetryConfig | None,
    timeout: TimeoutConfig,
) -> Outcome:
    """Classify an exception raised by the protected function.

    Timeouts and connection errors are always failures and always
    transient. Otherwise an ignored class is not recorded. When
    `record_exceptions` is set, only those classes are failures and the rest
    count as successes, as in Resilience4j. Without it, every exception is a
    failure.
    """
    transient = is_timeout(exc, timeout) or is_connection_error(exc)
    if transient or breaker is None:
        code = FAILURE
    elif matches(exc, breaker.ignore_exceptions):
        code = IGNORED
    elif breaker.record_exceptions:
        code = FAILURE if matches(exc, breaker.record_exceptions) else SUCCESS
    else:
        code = FAILURE

    retryable = transient
    if retry is not None and not transient:
        retryable = matches(exc, retry.retry_exceptions)
    if retry is not None and matches(exc, retry.ignore_exceptions):
        retryable = False
    return Outcome(code, retryable)


def classify_value(
    value: object,
    breaker: CircuitBreakerConfig | None,
    retry: RetryConfig | None,
    now: float,
) -> Outcome:
    """Classify a returned value; only values with a `status_code` can fail.

    With the defaults 5xx is a failure and retried, 429 is retried after its
    `Retry-After` but not a failure, and other 4xx are neither.
    """
    code = status_code_of(value)
    if code is None:
        return Outcome(SUCCESS, False)
    breaker_code = SUCCESS
    if breaker is not None:
        if status_code_matches(code, breaker.ignore_status_codes):
            breaker_code = IGNORED
        elif status_code_matches(code, breaker.record_status_codes):
            breaker_code = FAILURE
    retryable = retry is not None and status_code_matches(
        code, retry.retry_status_codes
    )
    retry_after = None
    if retryable and code == 429:
        retry_after = parse_retry_after(_header(value, "Retry-After"), now)
    return Outcome(breaker_code, retryable, retry_after)


def _header(value: object, name: str) -> str | None:
    headers: Any = getattr(value, "headers", None)
    if headers is None:
        return None
    try:
        found = headers.get(name)
        if found is None and isinstance(headers, dict):
            lowered = {str(k).lower(): v for k, v in headers.items()}
            found = lowered.get(name.lower())
    except (AttributeError, TypeError):
        return None
    return None if found is None else str(found)


def parse_retry_after(header: str | None, now: float | None = None) -> float | None:
    """Return the seconds a `Retry-After` header requests as a wait, or None.

    The header is either delay-seconds or an HTTP-date (RFC 9110, 10.2.3);
    a date in the past means 0. `now` is epoch seconds for the date form.
    """
    if header is None:
        return None
    text = header.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    delay = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, delay) if math.isfinite(delay) else None
