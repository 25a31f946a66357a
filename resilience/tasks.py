"""Celery task that runs one protected call in a worker."""

from typing import Any

from celery import shared_task

from resilience import samples, services


@shared_task(name="resilience.protected_call", ignore_result=False)
def protected_call(
    target: str, method: str, path: str, body: Any = None
) -> dict[str, Any]:
    return services.protected_call(target, method, path, body)


@shared_task(name="resilience.sample_breakers")
def sample_breakers() -> int:
    return samples.sample_breakers()
