"""Small callables used as protected functions in the core tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from resilience.core import ManualClock, Pipeline


class Boom(Exception):
    """A failure of the downstream function."""


class Harmless(Exception):
    """An exception the breaker is configured to ignore."""


@dataclass
class Response:
    """A minimal stand-in for requests.Response."""

    status_code: int
    headers: dict[str, str] = field(default_factory=dict)


def ok() -> str:
    return "ok"


def boom() -> None:
    raise Boom("downstream failed")


def harmless() -> None:
    raise Harmless("not the downstream's fault")


def taking(clock: ManualClock, seconds: float, fn: Callable[[], Any] = ok) -> Any:
    """Return a function that lets `seconds` pass on the clock, then runs fn."""

    def run() -> Any:
        clock.advance(seconds)
        return fn()

    return run


def run_calls(pipeline: Pipeline, fns: list[Callable[[], Any]]) -> list[str]:
    return [pipeline.execute(fn).outcome for fn in fns]
