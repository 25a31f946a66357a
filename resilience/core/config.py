"""Policy configuration: one dataclass per stage and the policy that contains them.

Durations are seconds as floats, rates are percentages from 0 to 100. Every
check runs when a config is built, so an invalid policy is rejected when it is
saved rather than at the first call that needs the value.
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


def _fail(section: str, name: str, rule: str, value: object) -> ValueError:
    return ValueError(f"{section}.{name} {rule}, got {value!r}")


def _positive(section: str, name: str, value: float) -> None:
    if not value > 0:
        raise _fail(section, name, "must be greater than 0", value)


def _non_negative(section: str, name: str, value: float) -> None:
    if not value >= 0:
        raise _fail(section, name, "must be 0 or greater", value)


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
        if high and int(high) < int(low):
            raise _fail(section, name, "ranges must not be empty", entry)
        entries.append(text)
    return tuple(entries)


def _names(section: str, name: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise _fail(section, name, "must be a list of exception class names", value)
    names = tuple(str(entry) for entry in value)
    for entry in names:
        if not entry:
            raise _fail(section, name, "must not contain an empty name", value)
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
        for name in (
            "sliding_window_size",
            "minimum_number_of_calls",
            "permitted_number_of_calls_in_half_open_state",
        ):
            if _integer(s, name, getattr(self, name)) < 1:
                raise _fail(s, name, "must be 1 or greater", getattr(self, name))
        for name in ("failure_rate_threshold", "slow_call_rate_threshold"):
            _percentage(s, name, _number(s, name, getattr(self, name)))
        for name in ("slow_call_duration_threshold", "wait_duration_in_open_state"):
            _positive(s, name, _number(s, name, getattr(self, name)))
        multiplier = _number(
            s, "exponential_backoff_multiplier", self.exponential_backoff_multiplier
        )
        if multiplier < 1:
            raise _fail(
                s, "exponential_backoff_multiplier", "must be 1 or greater", multiplier
            )
        if self.max_wait_duration_in_open_state is not None:
            cap = _number(
                s,
                "max_wait_duration_in_open_state",
                self.max_wait_duration_in_open_state,
            )
            if cap < self.wait_duration_in_open_state:
                raise _fail(
                    s,
                    "max_wait_duration_in_open_state",
                    "must be at least wait_duration_in_open_state",
                    cap,
                )
        _non_negative(
            s,
            "max_wait_duration_in_half_open_state",
            _number(
                s,
                "max_wait_duration_in_half_open_state",
                self.max_wait_duration_in_half_open_state,
            ),
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
        if _integer(s, "max_concurrent_calls", self.max_concurrent_calls) < 1:
            raise _fail(
                s,
                "max_concurrent_calls",
                "must be 1 or greater",
                self.max_concurrent_calls,
            )
        _non_negative(
            s,
            "max_wait_duration",
            _number(s, "max_wait_duration", self.max_wait_duration),
        )
        if self.permit_lease_duration is not None:
            _positive(
                s,
                "permit_lease_duration",
                _number(s, "permit_lease_duration", self.permit_lease_duration),
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
        if _integer(s, "limit_for_period", self.limit_for_period) < 1:
            raise _fail(
                s, "limit_for_period", "must be 1 or greater", self.limit_for_period
            )
        _positive(
            s,
            "limit_refresh_period",
            _number(s, "limit_refresh_period", self.limit_refresh_period),
        )
        _non_negative(
            s, "timeout_duration", _number(s, "timeout_duration", self.timeout_duration)
        )


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
        if _integer(s, "max_attempts", self.max_attempts) < 1:
            raise _fail(s, "max_attempts", "must be 1 or greater", self.max_attempts)
        _positive(
            s, "initial_interval", _number(s, "initial_interval", self.initial_interval)
        )
        if _number(s, "multiplier", self.multiplier) < 1:
            raise _fail(s, "multiplier", "must be 1 or greater", self.multiplier)
        if _number(s, "max_interval", self.max_interval) < self.initial_interval:
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
            _non_negative(
                s,
                "max_inline_wait",
                _number(s, "max_inline_wait", self.max_inline_wait),
            )
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
        _positive(
            s, "timeout_duration", _number(s, "timeout_duration", self.timeout_duration)
        )
        if self.overall_deadline is not None:
            _positive(
                s,
                "overall_deadline",
                _number(s, "overall_deadline", self.overall_deadline),
            )
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
