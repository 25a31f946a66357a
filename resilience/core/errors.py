"""Exceptions raised by the resilience pipeline."""

from __future__ import annotations


class CallNotPermitted(Exception):
    """A stage rejected the call before it reached the downstream function.

    `stage` is "rate_limiter", "bulkhead", "circuit_breaker" or, when Redis is
    unreachable and on_state_store_error is "reject", "state_store". `state` is the
    breaker state for the breaker and a short reason for the other stages.
    """

    def __init__(self, stage: str, target: str, state: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage
        self.target = target
        self.state = state
        self.message = message

    def __reduce__(self) -> tuple[type, tuple[str, str, str, str]]:
        # Exception pickles only self.args (the message), and __init__ needs
        # all four, so Celery's result backend and pickle would fail without it.
        return type(self), (self.stage, self.target, self.state, self.message)


class RetryLater(Exception):
    """The next retry must wait longer than `max_inline_wait`.

    A Celery task catches it and reschedules itself with `countdown=delay`.
    `attempt` is the number of the attempt that should run next (1-based,
    counting the first call). `last_error` is what the previous attempt
    raised or returned, or None.
    """

    def __init__(self, delay: float, attempt: int, last_error: object = None) -> None:
        super().__init__(f"retry attempt {attempt} in {delay:.3f} s")
        self.delay = delay
        self.attempt = attempt
        self.last_error = last_error

    def __reduce__(self) -> tuple[type, tuple[float, int, object]]:
        # Exception pickles only self.args (the message), and __init__ needs
        # the delay and the attempt.
        return type(self), (self.delay, self.attempt, self.last_error)
