"""A process-wide registry of pipelines, for the decorator and helpers.

`configure()` is called once per process (for example when a Celery worker
starts). Pipelines are cached per target and rebuilt when the policy
provider returns a different policy: another `version`, or, for policies
without a version, a policy that is not equal. Rebuilding keeps the shared
state in Redis; only a change of the breaker's window type or size resets
its window.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

import redis

from .clock import Clock
from .config import PolicyConfig
from .pipeline import EventHook, Guard, Pipeline, TransitionHook

P = ParamSpec("P")
T = TypeVar("T")
PolicyProvider = Callable[[str], PolicyConfig | None]


@dataclass
class _Registry:
    redis: redis.Redis
    policy_provider: PolicyProvider
    clock: Clock | None
    on_transition: TransitionHook | None
    on_event: EventHook | None
    key_prefix: str
    pipelines: dict[str, Pipeline] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


_registry: _Registry | None = None


def configure(
    redis: redis.Redis,
    policy_provider: PolicyProvider,
    clock: Clock | None = None,
    on_transition: TransitionHook | None = None,
    on_event: EventHook | None = None,
    key_prefix: str = "rcp",
) -> None:
    """Set the Redis client, policy source and hooks used by this process.

    `policy_provider(target)` is called on every lookup, so it should cache;
    returning None means the default policy (only the timeout stage).
    Calling configure again drops every cached pipeline.
    """
    global _registry
    _registry = _Registry(
        redis, policy_provider, clock, on_transition, on_event, key_prefix
    )


def get_pipeline(target: str) -> Pipeline:
    """Return the pipeline of `target`, rebuilding it if its policy changed."""
    registry = _registry
    if registry is None:
        raise RuntimeError(
            "resilience core is not configured; call "
            "resilience.core.configure(redis=..., policy_provider=...) first"
        )
    policy = registry.policy_provider(target) or PolicyConfig()
    with registry.lock:
        cached = registry.pipelines.get(target)
        if cached is not None and _same_policy(cached.policy, policy):
            return cached
        pipeline = Pipeline(
            target,
            policy,
            registry.redis,
            clock=registry.clock,
            on_transition=registry.on_transition,
            on_event=registry.on_event,
            key_prefix=registry.key_prefix,
        )
        registry.pipelines[target] = pipeline
        return pipeline


def _same_policy(old: PolicyConfig, new: PolicyConfig) -> bool:
    if old.version is not None or new.version is not None:
        return old.version == new.version
    return old == new


def call(target: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run `fn(*args, **kwargs)` through the pipeline of `target`."""
    return get_pipeline(target).call(fn, *args, **kwargs)


def protect(target: str) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Decorate a function so every call runs through `target`'s pipeline."""

    def decorate(fn: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            return get_pipeline(target).call(fn, *args, **kwargs)

        return wrapper

    return decorate


@contextmanager
def protected(target: str, cost: int = 1) -> Iterator[Guard]:
    """Protect a with-block with `target`'s pipeline.

    Admission happens on entry and the outcome is recorded on exit. The
    block runs once: there is no retry inside a with-block.
    """
    with get_pipeline(target).guard(cost) as guard:
        yield guard
