"""Policy configuration: one dataclass per stage and the policy that contains them.

Durations are seconds as floats, rates are percentages from 0 to 100. Every
check runs when a config is built, so an invalid policy is rejected when it is
saved rather than at the first call that needs the value.

Every number also has an upper bound (the MAX_* constants below). The bounds
keep the Redis state a policy creates small and every admission script short,
and they turn a typing slip (a timeout of 30000 seconds meant as
milliseconds) into an error rather than a stuck call.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

WindowType = Literal["count_based", "time_based"]
Jitter = Literal["none", "full", "equal", "decorrelated"]
StateStorePolicy = Literal["allow", "reject"]

WINDOW_TYPES = ("count_based", "time_based")
JITTER_MODES = ("none", "full", "equal", "decorrelated")
STATE_STORE_POLICIES = ("allow", "reject")

# Maximum duration of any kind: waits, timeouts, intervals, periods and
# leases. A call or a permit held for more than a day is a mistake.
MAX_DURATION = 24 * 3600.0
# A time-based window walks up to one bucket per elapsed second in a single
# Redis script, so its length bounds that script's run time.
MAX_TIME_WINDOW_SECONDS = 3600
# A count-based window is one byte per call in Redis.
MAX_COUNT_WINDOW_CALLS = 100_000
MAX_HALF_OPEN_CALLS = 10_000
MAX_CONCURRENT_CALLS = 10_000
# The rate limiter's sliding log keeps one sorted-set entry per permit.
MAX_LIMIT_FOR_PERIOD = 100_000
MAX_ATTEMPTS = 100
MAX_MULTIPLIER = 100.0
# HTTP status codes, as RFC 9110 defines them, are three digits from 100.
MIN_STATUS_CODE = 100
MAX_STATUS_CODE = 599
# Entries in one list of status codes or exception class names.
MAX_LIST_ENTRIES = 100


def _fail(section: str, name: str, rule: str, value: object) -> ValueError:
    return ValueError(f"{section}.{name} {rule}, got {value!r}")


def _positive(section: str, name: str, value: float) -> None:
    if not value > 0:
        raise _fail(section, name, "must be greater than 0", value)


def _non_negative(section: str, name: str, value: float) -> None:
    if not value >= 0:
        raise _fail(section, name, "must be 0 or greater", value)


def _at_most(section: str, name: str, value: float, limit: float) -> None:
    if value > limit:
        raise _fail(section, name, f"must be at most {limit:g}", value)


def _duration(section: str, name: str, value: object, allow_zero: bool) -> float:
    """Check a duration in seconds, at most MAX_DURATION.

    `allow_zero` accepts 0 where it means off or do not wait; negative
    values are always rejected.
    """
    seconds = _number(section, name, value)
    # The messages show the value as sent, not as converted to a float.
    if allow_zero and not seconds >= 0:
        raise _fail(section, name, "must be 0 or greater", value)
    if not allow_zero and not seconds > 0:
        raise _fail(section, name, "must be greater than 0", value)
    if seconds > MAX_DURATION:
        raise _fail(section, name, f"must be at most {MAX_DURATION:g}", value)
    return seconds


def _count(section: str, name: str, value: object, limit: int) -> int:
    """Check a count: an integer from 1 to `limit`."""
    count = _integer(section, name, value)
    if count < 1:
        raise _fail(section, name, "must be 1 or greater", value)
    _at_most(section, name, count, limit)
    return count


def _percentage(section: str, name: str, value: float) -> None:
    if not 0 < value <= 100:
        raise _fail(section, name, "must be a percentage in (0, 100]", value)


def _number(section: str, name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(section, name, "must be a number", value)
    if not math.isfinite(value):
        raise _fail(section, name, "must be a finite number", value)
    return float(value)


def _integer(section: str, name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(section, name, "must be an integer", value)
    return value


def _status_codes(section: str, name: str, value: object) -> tuple[str, ...]:
    """Normalise a list of status codes and "low-high" ranges to strings."""
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise _fail(section, name, "must be a list of status codes or ranges", value)
    entries = []
    for entry in value:
        text = str(entry).strip()
        low, _, high = text.partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            raise _fail(
                section, name, 'entries must be codes or "low-high" ranges', entry
            )
        for code in (low, high or low):
            if not MIN_STATUS_CODE <= int(code) <= MAX_STATUS_CODE:
                raise _fail(
                    section,
                    name,
                    f"entries must be status codes from {MIN_STATUS_CODE} "
                    f"to {MAX_STATUS_CODE}",
                    entry,
                )
        if high and int(high) < int(low):
            raise _fail(section, name, "ranges must not be empty", entry)
        entries.append(text)
    _list_length(section, name, entries)
    return tuple(entries)


def _list_length(section: str, name: str, entries: list[Any]) -> None:
    if len(entries) > MAX_LIST_ENTRIES:
        raise _fail(
            section,
            name,
            f"must have at most {MAX_LIST_ENTRIES} entries",
            len(entries),
        )


def _names(section: str, name: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise _fail(section, name, "must be a list of exception class names", value)
    names = tuple(str(entry) for entry in value)
    for entry in names:
        if not entry:
            raise _fail(section, name, "must not contain an empty name", value)
    _list_length(section, name, list(names))
    return names


def status_code_matches(code: int, entries: Iterable[str]) -> bool:
    """Return whether `code` is one of `entries` (codes or "low-high" ranges)."""
    for entry in entries:
        low, _, high = entry.partition("-")
        if int(low) <= code <= int(high or low):
            return True
    return False


_Config = TypeVar("_Config", bound="_Section")


@dataclass(frozen=True)
class _Section:
    """Shared `from_dict` and `to_dict` for the stage configs."""

    section: ClassVar[str] = ""

    def __post_init__(self) -> None:
        # Store whole-number durations and rates as floats, so `to_dict`
        # always returns seconds and percentages as floats.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            is_int = isinstance(value, int) and not isinstance(value, bool)
            if is_int and "float" in str(f.type):
                object.__setattr__(self, f.name, float(value))

    @classmethod
    def from_dict(cls: type[_Config], data: Mapping[str, Any]) -> _Config:
        if not isinstance(data, Mapping):
            raise ValueError(f"{cls.section} must be an object, got {data!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        for key in data:
            if key not in known:
                raise ValueError(
                    f"{cls.section}.{key} is not a known field; "
                    f"expected one of {', '.join(sorted(known))}"
                )
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            result[f.name] = list(value) if isinstance(value, tuple) else value
        return result


@dataclass(frozen=True)
class CircuitBreakerConfig(_Section):
    """Circuit breaker settings, named and defaulted as in Resilience4j."""

    section: ClassVar[str] = "circuit_breaker"

    sliding_window_type: WindowType = "count_based"
    sliding_window_size: int = 100
    minimum_number_of_calls: int = 100
    failure_rate_threshold: float = 50.0
    slow_call_duration_threshold: float = 60.0
    slow_call_rate_threshold: float = 100.0
    wait_duration_in_open_state: float = 60.0
    exponential_backoff_multiplier: float = 1.0
    max_wait_duration_in_open_state: float | None = None
    permitted_number_of_calls_in_half_open_state: int = 10
    max_wait_duration_in_half_open_state: float = 0.0
    automatic_transition_from_open_to_half_open_enabled: bool = False
    record_status_codes: tuple[str, ...] = ("500-599",)
    ignore_status_codes: tuple[str, ...] = ()
    record_exceptions: tuple[str, ...] = ()
    ignore_exceptions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        s = self.section
        super().__post_init__()
        if self.sliding_window_type not in WINDOW_TYPES:
            raise _fail(
                s,
                "sliding_window_type",
                "must be count_based or time_based",
                self.sliding_window_type,
            )
        window_limit = (
            MAX_COUNT_WINDOW_CALLS
            if self.sliding_window_type == "count_based"
            else MAX_TIME_WINDOW_SECONDS
        )
        _count(s, "sliding_window_size", self.sliding_window_size, window_limit)
        _count(
            s,
            "minimum_number_of_calls",
            self.minimum_number_of_calls,
            MAX_COUNT_WINDOW_CALLS,
        )
        _count(
            s,
            "permitted_number_of_calls_in_half_open_state",
            self.permitted_number_of_calls_in_half_open_state,
            MAX_HALF_OPEN_CALLS,
        )
        for name in ("failure_rate_threshold", "slow_call_rate_threshold"):
            _percentage(s, name, _number(s, name, getattr(self, name)))
        for name in ("slow_call_duration_threshold", "wait_duration_in_open_state"):
            _duration(s, name, getattr(self, name), allow_zero=False)
        multiplier = _number(
            s, "exponential_backoff_multiplier", self.exponential_backoff_multiplier
        )
        if multiplier < 1:
            raise _fail(
                s, "exponential_backoff_multiplier", "must be 1 or greater", multiplier
            )
        _at_most(s, "exponential_backoff_multiplier", multiplier, MAX_MULTIPLIER)
        if self.max_wait_duration_in_open_state is not None:
            cap = _duration(
                s,
                "max_wait_duration_in_open_state",
                self.max_wait_duration_in_open_state,
                allow_zero=False,
            )
            if cap < self.wait_duration_in_open_state:
                raise _fail(
                    s,
                    "max_wait_duration_in_open_state",
                    "must be at least wait_duration_in_open_state",
                    cap,
                )
        _duration(
            s,
            "max_wait_duration_in_half_open_state",
            self.max_wait_duration_in_half_open_state,
            allow_zero=True,
        )
        if not isinstance(
            self.automatic_transition_from_open_to_half_open_enabled, bool
        ):
            raise _fail(
                s,
                "automatic_transition_from_open_to_half_open_enabled",
                "must be true or false",
                self.automatic_transition_from_open_to_half_open_enabled,
            )
        for name in ("record_status_codes", "ignore_status_codes"):
            object.__setattr__(self, name, _status_codes(s, name, getattr(self, name)))
        for name in ("record_exceptions", "ignore_exceptions"):
            object.__setattr__(self, name, _names(s, name, getattr(self, name)))

    @property
    def effective_minimum_number_of_calls(self) -> int:
        """Minimum calls before a rate counts.

        A count-based window can never hold more calls than its size, so, as
        in Resilience4j, the minimum is capped at the window size there.
        """
        if self.sliding_window_type == "count_based":
            return min(self.minimum_number_of_calls, self.sliding_window_size)
        return self.minimum_number_of_calls


@dataclass(frozen=True)
class BulkheadConfig(_Section):
    """Cluster-wide semaphore settings.

    `permit_lease_duration` is how long a permit stays valid if its holder
    never releases it (for example a worker killed with SIGKILL). None derives
    it from the timeout settings, see `Pipeline`.
    """

    section: ClassVar[str] = "bulkhead"

    max_concurrent_calls: int = 25
    max_wait_duration: float = 0.0
    permit_lease_duration: float | None = None

    def __post_init__(self) -> None:
        s = self.section
        super().__post_init__()
        _count(
            s, "max_concurrent_calls", self.max_concurrent_calls, MAX_CONCURRENT_CALLS
        )
        _duration(s, "max_wait_duration", self.max_wait_duration, allow_zero=True)
        if self.permit_lease_duration is not None:
            _duration(
                s,
                "permit_lease_duration",
                self.permit_lease_duration,
                allow_zero=False,
            )


@dataclass(frozen=True)
class RateLimiterConfig(_Section):
    """Cluster-wide limit of `limit_for_period` permits per sliding period."""

    section: ClassVar[str] = "rate_limiter"

    limit_for_period: int = 50
    limit_refresh_period: float = 1.0
    timeout_duration: float = 0.0

    def __post_init__(self) -> None:
        s = self.section
        super().__post_init__()
        _count(s, "limit_for_period", self.limit_for_period, MAX_LIMIT_FOR_PERIOD)
        _duration(
            s, "limit_refresh_period", self.limit_refresh_period, allow_zero=False
        )
        _duration(s, "timeout_duration", self.timeout_duration, allow_zero=True)


@dataclass(frozen=True)
class RetryConfig(_Section):
    """Retry settings. `max_attempts` counts the first call.

    `max_inline_wait` is the longest backoff slept in place; a longer one
    raises `RetryLater` so a Celery task can reschedule itself. None always
    sleeps. `retry_exceptions` adds exception classes (dotted names) to the
    transient ones that are always retried (timeouts, connection errors);
    `ignore_exceptions` are never retried.
    """

    section: ClassVar[str] = "retry"

    max_attempts: int = 3
    initial_interval: float = 0.5
    multiplier: float = 2.0
    max_interval: float = 30.0
    jitter: Jitter = "full"
    max_inline_wait: float | None = None
    retry_status_codes: tuple[str, ...] = ("429", "500-599")
    retry_exceptions: tuple[str, ...] = ()
    ignore_exceptions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        s = self.section
        super().__post_init__()
        _count(s, "max_attempts", self.max_attempts, MAX_ATTEMPTS)
        _duration(s, "initial_interval", self.initial_interval, allow_zero=False)
        if _number(s, "multiplier", self.multiplier) < 1:
            raise _fail(s, "multiplier", "must be 1 or greater", self.multiplier)
        _at_most(s, "multiplier", self.multiplier, MAX_MULTIPLIER)
        if _duration(s, "max_interval", self.max_interval, allow_zero=False) < (
            self.initial_interval
        ):
            raise _fail(
                s,
                "max_interval",
                "must be at least initial_interval",
                self.max_interval,
            )
        if self.jitter not in JITTER_MODES:
            raise _fail(
                s,
                "jitter",
                "must be one of none, full, equal, decorrelated",
                self.jitter,
            )
        if self.max_inline_wait is not None:
            _duration(s, "max_inline_wait", self.max_inline_wait, allow_zero=True)
        object.__setattr__(
            self,
            "retry_status_codes",
            _status_codes(s, "retry_status_codes", self.retry_status_codes),
        )
        for name in ("retry_exceptions", "ignore_exceptions"):
            object.__setattr__(self, name, _names(s, name, getattr(self, name)))


@dataclass(frozen=True)
class TimeoutConfig(_Section):
    """Per-attempt timeout and an optional deadline across all attempts.

    The called function reads its remaining budget from
    `current_attempt().timeout`. `timeout_exceptions` lists further exception
    classes (dotted names) that count as timeouts, besides `TimeoutError` and
    any class whose name contains "Timeout".
    """

    section: ClassVar[str] = "timeout"

    timeout_duration: float = 10.0
    overall_deadline: float | None = None
    timeout_exceptions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        s = self.section
        super().__post_init__()
        _duration(s, "timeout_duration", self.timeout_duration, allow_zero=False)
        if self.overall_deadline is not None:
            _duration(s, "overall_deadline", self.overall_deadline, allow_zero=False)
        object.__setattr__(
            self,
            "timeout_exceptions",
            _names(s, "timeout_exceptions", self.timeout_exceptions),
        )


_SECTIONS: dict[str, type[_Section]] = {
    "circuit_breaker": CircuitBreakerConfig,
    "bulkhead": BulkheadConfig,
    "rate_limiter": RateLimiterConfig,
    "retry": RetryConfig,
    "timeout": TimeoutConfig,
}


@dataclass(frozen=True)
class PolicyConfig:
    """The resilience policy of one downstream target.

    A section that is None switches its stage off, except `timeout`, which
    always applies with its defaults. `version` identifies a saved revision
    so cached pipelines know when to rebuild; it is not validated.
    """

    circuit_breaker: CircuitBreakerConfig | None = None
    bulkhead: BulkheadConfig | None = None
    rate_limiter: RateLimiterConfig | None = None
    retry: RetryConfig | None = None
    timeout: TimeoutConfig = field(default_factory=TimeoutConfig)
    on_state_store_error: StateStorePolicy = "allow"
    version: int | None = None

    def __post_init__(self) -> None:
        if self.on_state_store_error not in STATE_STORE_POLICIES:
            raise ValueError(
                "on_state_store_error must be allow or reject, "
                f"got {self.on_state_store_error!r}"
            )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PolicyConfig:
        """Build a policy from a dict such as a stored JSON document.

        Raises ValueError naming the first unknown or invalid field.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"policy must be an object, got {data!r}")
        known = {*_SECTIONS, "on_state_store_error", "version"}
        for key in data:
            if key not in known:
                raise ValueError(
                    f"{key} is not a known policy field; "
                    f"expected one of {', '.join(sorted(known))}"
                )
        sections: dict[str, Any] = {}
        for name, section_type in _SECTIONS.items():
            value = data.get(name)
            if value is not None:
                sections[name] = section_type.from_dict(value)
        return cls(
            **sections,
            on_state_store_error=data.get("on_state_store_error", "allow"),
            version=data.get("version"),
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the policy with every default filled in; off stages are None."""
        result: dict[str, Any] = {}
        for name in _SECTIONS:
            section: _Section | None = getattr(self, name)
            result[name] = None if section is None else section.to_dict()
        result["on_state_store_error"] = self.on_state_store_error
        result["version"] = self.version
        return result
