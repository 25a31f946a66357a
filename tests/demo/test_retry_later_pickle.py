"""A consumer's RetryLater survives pickling with its countdown.

Celery pickles the exception a task raises once its retries are over, and
an exception it cannot rebuild is logged as an UnpickleableExceptionWrapper.
"""

import pickle

from demo.consumers import RetryLater


def test_retry_later_round_trip() -> None:
    original = RetryLater("Fault injected: the inventory service fails.", 2.0)

    copy = pickle.loads(pickle.dumps(original))

    assert type(copy) is RetryLater
    assert str(copy) == "Fault injected: the inventory service fails."
    assert copy.countdown == 2.0
