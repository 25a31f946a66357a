"""Records written without waiting for their reply, against real Redis.

A record whose outcome cannot trip the breaker goes out on the thread's
connection and the call returns. Its reply is read with the thread's next
command. These tests check the ordering this keeps, the records that must
wait, and what happens when the reply is an error or the connection breaks.
"""

from __future__ import annotations

import gc
import multiprocessing
import select
import threading
from typing import Any

import pytest
import redis
from helpers import boom, ok, run_calls
from test_store import needs_functions

from resilience.core import Pipeline
from resilience.core.store import LIBRARY, store_for

BULKHEAD_OF_ONE = {
    "bulkhead": {"max_concurrent_calls": 1},
    "rate_limiter": {"limit_for_period": 1000},
    "circuit_breaker": {"sliding_window_size": 50, "minimum_number_of_calls": 50},
}


def small_window(size: int) -> dict[str, Any]:
    return {
        "bulkhead": {"max_concurrent_calls": 1},
        "circuit_breaker": {
            "sliding_window_size": size,
            "minimum_number_of_calls": size,
            "failure_rate_threshold": 50,
        },
    }


def unread(pipeline: Pipeline) -> int:
    return store_for(pipeline.redis).unread_replies()


def address_of(connection: Any) -> str:
    """Return the client address that CLIENT KILL takes for a connection."""
    host, port = connection._sock.getsockname()[:2]
    return f"{host}:{port}"


def wait_for_reply(pipeline: Pipeline) -> None:
    """Block until the reply of the thread's deferred record has arrived."""
    connection = store_for(pipeline.redis)._unread().connection
    readable, _, _ = select.select([connection._sock], [], [], 5)
    assert readable


def test_success_record_is_deferred(make_pipeline: Any) -> None:
    pipeline = make_pipeline(BULKHEAD_OF_ONE)
    assert pipeline.execute(ok).outcome == "succeeded"
    assert unread(pipeline) == 1
    # Each admission goes out after the previous call's record on the same
    # connection, so the bulkhead of one permit is free every time.
    assert run_calls(pipeline, [ok] * 20) == ["succeeded"] * 20
    snapshot = pipeline.breaker.snapshot()
    assert unread(pipeline) == 0
    assert snapshot["buffered_calls"] == 21
    assert pipeline.bulkhead.snapshot()["in_use"] == 0
    assert pipeline.state_store_errors == 0


def test_failure_record_waits_for_reply(make_pipeline: Any) -> None:
    pipeline = make_pipeline(BULKHEAD_OF_ONE)
    assert pipeline.execute(boom).outcome == "failed"
    assert unread(pipeline) == 0


def test_earlier_records_seen_by_admission(make_pipeline: Any) -> None:
    pipeline = make_pipeline(small_window(3))
    # The deferred success counts before the next admission, so the second
    # failure makes 2 of 3 calls and trips the breaker.
    assert run_calls(pipeline, [ok, boom, boom]) == ["succeeded", "failed", "failed"]
    assert run_calls(pipeline, [ok]) == ["rejected"]


def test_success_that_trips_waits(make_pipeline: Any, recorder: Any) -> None:
    pipeline = make_pipeline(small_window(2))
    run_calls(pipeline, [boom])
    # At the minimum number of calls, 1 failure of 2 is the 50 % threshold:
    # this success trips the breaker, so the hook hears of it at once.
    assert run_calls(pipeline, [ok]) == ["succeeded"]
    assert unread(pipeline) == 0
    assert recorder.transitions[-1]["to_state"] == "open"


@needs_functions
def test_missing_library_resends_record(
    make_pipeline: Any, redis_client: redis.Redis
) -> None:
    pipeline = make_pipeline(BULKHEAD_OF_ONE)

    def delete_library() -> str:
        # The admission found the library; the record will not.
        redis_client.execute_command("FUNCTION", "DELETE", LIBRARY)
        return "ok"

    assert pipeline.execute(delete_library).outcome == "succeeded"
    assert unread(pipeline) == 1
    # The next admission reads the error, loads the library, sends the
    # record again and then itself, so the bulkhead permit is free.
    assert pipeline.execute(ok).outcome == "succeeded"
    assert pipeline.breaker.snapshot()["buffered_calls"] == 2
    assert pipeline.bulkhead.snapshot()["in_use"] == 0
    assert pipeline.state_store_errors == 0


def test_connection_killed_during_call(
    make_pipeline: Any, redis_client: redis.Redis
) -> None:
    pipeline = make_pipeline(BULKHEAD_OF_ONE)
    store = store_for(redis_client)

    def kill_own_connection() -> str:
        # The admission left its connection idle for the record to reuse.
        assert redis_client.client_kill(address_of(store._idle[-1]))
        return "ok"

    assert pipeline.execute(kill_own_connection).outcome == "succeeded"
    # The record saw the closed connection and went out on a new one.
    assert pipeline.execute(ok).outcome == "succeeded"
    assert pipeline.breaker.snapshot()["buffered_calls"] == 2
    assert pipeline.bulkhead.snapshot()["in_use"] == 0
    assert pipeline.state_store_errors == 0


def test_connection_killed_with_reply_unread(
    make_pipeline: Any, redis_client: redis.Redis
) -> None:
    pipeline = make_pipeline(BULKHEAD_OF_ONE)
    assert pipeline.execute(ok).outcome == "succeeded"
    wait_for_reply(pipeline)
    connection = store_for(redis_client)._unread().connection
    assert redis_client.client_kill(address_of(connection))
    # The reply that arrived is still read; the admission written after the
    # kill fails and is repeated on a new connection.
    assert pipeline.execute(ok).outcome == "succeeded"
    assert pipeline.breaker.snapshot()["buffered_calls"] == 2
    assert pipeline.bulkhead.snapshot()["in_use"] == 0
    assert pipeline.state_store_errors == 0


def test_lost_reply_counts_as_store_error(
    make_pipeline: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # A target of its own, because the warning is logged once a minute each.
    pipeline = make_pipeline(BULKHEAD_OF_ONE, target="lost-reply")
    pipeline._record_replied("permit", redis.ConnectionError("connection reset"))
    assert pipeline.state_store_errors == 1
    assert "state store unreachable" in caplog.text


def test_other_thread_reads_only_its_own(make_pipeline: Any) -> None:
    pipeline = make_pipeline(BULKHEAD_OF_ONE)
    store = store_for(pipeline.redis)
    assert pipeline.execute(ok).outcome == "succeeded"
    mine = store._unread().connection
    seen: dict[str, Any] = {}

    def other() -> None:
        seen["before"] = store.unread_replies()
        seen["outcome"] = pipeline.execute(ok).outcome
        seen["connection"] = store._unread().connection
        store.flush()

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert seen["before"] == 0
    assert seen["outcome"] == "succeeded"
    assert seen["connection"] is not mine
    assert unread(pipeline) == 1
    assert pipeline.execute(ok).outcome == "succeeded"
    assert pipeline.breaker.snapshot()["buffered_calls"] == 3
    assert pipeline.state_store_errors == 0


def test_finished_thread_returns_connection(make_pipeline: Any) -> None:
    pipeline = make_pipeline(BULKHEAD_OF_ONE)
    store = store_for(pipeline.redis)
    finished: dict[str, Any] = {}

    def call_and_end() -> None:
        assert pipeline.execute(ok).outcome == "succeeded"
        finished["connection"] = store._unread().connection

    thread = threading.Thread(target=call_and_end)
    thread.start()
    thread.join()
    gc.collect()
    assert any(c is finished["connection"] for c in store._idle)
    assert pipeline.bulkhead.snapshot()["in_use"] == 0
    assert pipeline.breaker.snapshot()["buffered_calls"] == 1


def _call_in_child(pipeline: Pipeline) -> None:
    # The parent's unread reply is on an inherited socket, not ours to read.
    assert store_for(pipeline.redis).unread_replies() == 0
    assert pipeline.execute(ok).outcome == "succeeded"
    store_for(pipeline.redis).flush()
    assert pipeline.state_store_errors == 0


def test_forked_child_skips_parent_reply(make_pipeline: Any) -> None:
    pipeline = make_pipeline(BULKHEAD_OF_ONE)
    assert pipeline.execute(ok).outcome == "succeeded"
    assert unread(pipeline) == 1
    child = multiprocessing.get_context("fork").Process(
        target=_call_in_child, args=(pipeline,)
    )
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert unread(pipeline) == 1
    assert pipeline.execute(ok).outcome == "succeeded"
    assert pipeline.breaker.snapshot()["buffered_calls"] == 3
    assert pipeline.state_store_errors == 0
