"""Step functions that ship with the control plane, for tests and benchmarks."""

from typing import Any

from sagas.registry import StepRejected, saga_step


@saga_step
def noop(payload: Any, *, idempotency_key: str, run_id: str) -> dict[str, Any]:
    """Do nothing and echo the key, to measure the engine's own cost."""
    return {"idempotency_key": idempotency_key}


@saga_step
def reject(payload: Any, *, idempotency_key: str, run_id: str) -> None:
    """Fail definitely, so the saga compensates the steps before it."""
    raise StepRejected(f"rejected by request: {payload!r}")
