"""The pipeline's exceptions survive pickling with every attribute.

Celery pickles the exception a task raises to store or log it, and an
exception whose ``__init__`` takes more than its message fails to unpickle
unless it defines ``__reduce__``.
"""

import pickle

from resilience.core import CallNotPermitted, RetryLater


def test_retry_later_round_trip() -> None:
    original = RetryLater(4.5, 3, last_error=ValueError("HTTP 503"))

    copy = pickle.loads(pickle.dumps(original))

    assert type(copy) is RetryLater
    assert copy.delay == 4.5
    assert copy.attempt == 3
    assert isinstance(copy.last_error, ValueError)
    assert str(copy.last_error) == "HTTP 503"
    assert str(copy) == str(original)


def test_retry_later_without_error() -> None:
    copy = pickle.loads(pickle.dumps(RetryLater(0.25, 2)))

    assert copy.delay == 0.25
    assert copy.attempt == 2
    assert copy.last_error is None


def test_call_not_permitted_round_trip() -> None:
    original = CallNotPermitted(
        "circuit_breaker", "payment", "open", "Breaker 'payment' is open."
    )

    copy = pickle.loads(pickle.dumps(original))

    assert type(copy) is CallNotPermitted
    assert copy.stage == "circuit_breaker"
    assert copy.target == "payment"
    assert copy.state == "open"
    assert copy.message == "Breaker 'payment' is open."
    assert str(copy) == str(original)
