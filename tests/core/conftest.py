"""Fixtures for the resilience core tests, which run against a real Redis.

REDIS_URL selects the server and database (default 127.0.0.1, database 15).
Each test uses its own key prefix and deletes only keys under it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from resilience.core import ManualClock, Pipeline, PolicyConfig

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")


def delete_prefix(client: redis.Redis, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def key_prefix(redis_client: redis.Redis) -> Iterator[str]:
    prefix = f"test-core-{uuid.uuid4().hex[:12]}"
    yield prefix
    delete_prefix(redis_client, prefix)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_000_000.0)


class Recorder:
    """Collects the pipeline's hook calls."""

    def __init__(self) -> None:
        self.transitions: list[dict[str, Any]] = []
        self.events: list[tuple[str, dict[str, Any]]] = []

    def on_transition(self, target: str, event: dict[str, Any]) -> None:
        self.transitions.append(event)

    def on_event(self, target: str, name: str, attributes: dict[str, Any]) -> None:
        self.events.append((name, attributes))

    def event_names(self) -> list[str]:
        return [name for name, _ in self.events]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


MakePipeline = Callable[..., Pipeline]


@pytest.fixture
def make_pipeline(
    redis_client: redis.Redis,
    key_prefix: str,
    clock: ManualClock,
    recorder: Recorder,
) -> MakePipeline:
    """Build a pipeline for `target` from a policy dict, on the manual clock."""

    def build(policy: dict[str, Any], target: str = "svc", **kwargs: Any) -> Pipeline:
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("on_transition", recorder.on_transition)
        kwargs.setdefault("on_event", recorder.on_event)
        return Pipeline(
            target,
            PolicyConfig.from_dict(policy),
            redis_client,
            key_prefix=key_prefix,
            **kwargs,
        )

    return build
