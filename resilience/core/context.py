"""The attempt being run, exposed to the called function via a contextvar."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass


@dataclass(frozen=True)
class Attempt:
    """One execution of a protected call.

    `number` is 1-based and counts the first call. `timeout` is the seconds
    this attempt may take: the per-attempt timeout or the time left before
    the overall deadline, whichever is smaller. Pass it to the HTTP client,
    because the pipeline cannot interrupt a running function.
    """

    number: int
    timeout: float
    target: str


_current: contextvars.ContextVar[Attempt | None] = contextvars.ContextVar(
    "resilience_current_attempt", default=None
)


def current_attempt() -> Attempt | None:
    """Return the attempt being run in this context, or None outside a call."""
    return _current.get()


def set_attempt(attempt: Attempt | None) -> contextvars.Token[Attempt | None]:
    return _current.set(attempt)


def reset_attempt(token: contextvars.Token[Attempt | None]) -> None:
    _current.reset(token)
