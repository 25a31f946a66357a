"""Clocks for the resilience core.

Every timing rule (open wait, window buckets, leases, rate-limit periods) is
decided by one clock. In production that is the Redis server's `TIME`, read
inside the Lua scripts, so workers with skewed clocks still agree. Tests pass
a `ManualClock`, whose `now()` is sent to the scripts instead and whose
`sleep()` moves time forward without sleeping.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """A source of epoch seconds and a matching sleep."""

    def now(self) -> float:
        """Return the current time in seconds since the epoch."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait for `seconds` as measured by this clock."""
        ...


class SystemClock:
    """The local wall clock and `time.sleep`."""

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class ManualClock:
    """A clock moved only by `advance`, `set` and `sleep`, which never blocks."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move the clock forward by `seconds` and return the new time."""
        if seconds < 0:
            raise ValueError(f"seconds must be 0 or greater, got {seconds!r}")
        with self._lock:
            self._now += seconds
            return self._now

    def set(self, now: float) -> None:
        """Set the clock to `now` epoch seconds (backwards is allowed)."""
        with self._lock:
            self._now = float(now)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.advance(seconds)
