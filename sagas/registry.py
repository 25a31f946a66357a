"""Python functions that saga steps may run in the worker.

A definition names a function by its dotted path
(``{"function": "sagas.builtin_steps.noop"}``), but only functions that
registered themselves with ``@saga_step`` can run: a saga definition is
edited over the API, so it must not be able to name ``os.system``. The
modules listed in ``SAGA_STEP_MODULES`` are imported when Django starts, in
the web process and in every worker.

A step function takes the rendered payload and keyword arguments
``idempotency_key`` (the same on every retry and redelivery of that step)
and ``run_id``, and returns a JSON-serialisable output. Raising
``StepRejected`` is a definite failure that had no effect, so the step is
not compensated; any other exception leaves the outcome unknown and the
step is compensated too.
"""

from collections.abc import Callable
from typing import Any

StepFunction = Callable[..., Any]

_registry: dict[str, StepFunction] = {}


class StepRejected(Exception):
    """A step function refused its input and changed nothing."""


def saga_step(function: StepFunction) -> StepFunction:
    """Register a function so saga definitions may name it."""
    _registry[f"{function.__module__}.{function.__qualname__}"] = function
    return function


def lookup(path: str) -> StepFunction | None:
    """Return the registered function at a dotted path, or None."""
    return _registry.get(path)


def registered() -> list[str]:
    return sorted(_registry)
