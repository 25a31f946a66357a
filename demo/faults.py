"""Fault injection for the demo services: added latency and 503 responses.

``FaultInjectionMiddleware`` acts on requests under ``/demo/<service>/``
except ``/demo/<service>/state/``, which tests and the dashboard read
while faults are on. Every other path passes untouched, with no database
query.

The setting is read from the database on every request (one query by a
unique key), so a change made through the API or the dashboard applies to
the next request in every web process. A cache would let another process
respond with the old setting for a while, which made a fault set just
before a saga start miss the saga's first steps.
"""

import logging
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.http import HttpRequest, HttpResponse, JsonResponse

from demo.models import SERVICES, FaultSetting

logger = logging.getLogger(__name__)

# Seconds a process may reuse a setting it read; 0 reads it every time.
CACHE_SECONDS = 0.0

_DEMO_PATH = re.compile(r"^/demo/(?P<service>[a-z]+)/(?P<rest>.*)$")


@dataclass(frozen=True)
class Fault:
    error_rate: float
    latency_ms: int


_cache: dict[str, tuple[float, Fault]] = {}
_cache_lock = threading.Lock()


def get_setting(service: str) -> FaultSetting:
    """Return a service's fault setting, creating it at zero if missing."""
    setting, _ = FaultSetting.objects.get_or_create(service=service)
    return setting


def clear_cache(service: str | None = None) -> None:
    """Forget this process's cached settings (one service, or all)."""
    with _cache_lock:
        if service is None:
            _cache.clear()
        else:
            _cache.pop(service, None)


def current_fault(service: str, now: float) -> Fault:
    """Return the service's fault, read from the database at most every 0.5 s."""
    with _cache_lock:
        cached = _cache.get(service)
    if cached is not None and now < cached[0]:
        return cached[1]

    row = FaultSetting.objects.filter(service=service).first()
    fault = Fault(row.error_rate, row.latency_ms) if row else Fault(0.0, 0)
    with _cache_lock:
        _cache[service] = (now + CACHE_SECONDS, fault)
    return fault


class FaultInjectionMiddleware:
    """Delay and fail requests to the demo services as their settings specify.

    ``clock``, ``sleep`` and ``random`` are class attributes so that tests
    can replace them.
    """

    clock: Callable[[], float] = staticmethod(time.monotonic)
    sleep: Callable[[float], None] = staticmethod(time.sleep)
    random: Callable[[], float] = staticmethod(random.random)

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        match = _DEMO_PATH.match(request.path_info)
        if (
            match is None
            or match["service"] not in SERVICES
            or match["rest"] == "state/"
        ):
            return self.get_response(request)

        service = match["service"]
        fault = current_fault(service, self.clock())
        if fault.latency_ms:
            self.sleep(fault.latency_ms / 1000)
        # random() is in [0, 1), so a rate of 1.0 fails every request and
        # a rate of 0 none.
        if fault.error_rate and self.random() < fault.error_rate:
            logger.debug("service=%s %s fault injected", service, request.path_info)
            return _unavailable(service, fault)
        return self.get_response(request)


def _unavailable(service: str, fault: Fault) -> JsonResponse:
    body = {
        "type": "/api/problems/fault_injected",
        "title": "Service unavailable.",
        "status": 503,
        "detail": (
            f"Fault injected: the {service} service fails "
            f"{fault.error_rate:.0%} of its requests with 503. Change it at "
            f"/api/faults/{service}/ or on the faults page."
        ),
        "code": "fault_injected",
    }
    return JsonResponse(body, status=503, content_type="application/problem+json")
