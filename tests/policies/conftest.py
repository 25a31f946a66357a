"""Fixtures of the policy tests: users by role, a target, and a fake resolver.

Host names never reach a real DNS server here: ``fake_dns`` maps names to
addresses, and any other name does not resolve.
"""

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from rest_framework.test import APIClient

from resilience import policies
from resilience.models import Target

# Addresses that the fake resolver returns for the tests' host names.
FAKE_HOSTS: dict[str, list[str]] = {
    "localhost": ["127.0.0.1", "::1"],
    "payments.example.com": ["93.184.215.14"],
    "metadata-alias.example.com": ["169.254.169.254"],
    "intranet.example.com": ["10.1.2.3"],
    "mixed.example.com": ["93.184.215.14", "192.168.1.10"],
}

VALID_POLICY: dict[str, Any] = {
    "circuit_breaker": {
        "sliding_window_size": 20,
        "minimum_number_of_calls": 10,
        "failure_rate_threshold": 50,
    },
    "rate_limiter": {"limit_for_period": 100, "limit_refresh_period": 1.0},
    "retry": {"max_attempts": 3, "initial_interval": 0.2},
    "timeout": {"timeout_duration": 5.0},
}


@pytest.fixture(autouse=True)
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    hosts = dict(FAKE_HOSTS)

    def resolve(host: str) -> list[str]:
        if host not in hosts:
            raise OSError(f"[Errno -2] Name or service not known: {host}")
        return hosts[host]

    monkeypatch.setattr(policies, "resolve_host", resolve)
    return hosts


@pytest.fixture
def anonymous_client(db: Any) -> APIClient:
    return APIClient()


@pytest.fixture
def target(db: Any) -> Target:
    return Target.objects.create(name="payment", base_url="http://127.0.0.1:9/pay")


@pytest.fixture
def on_commit(
    django_capture_on_commit_callbacks: Any,
) -> Iterator[Callable[[], Any]]:
    """Run the callbacks registered with on_commit, as a real commit would."""

    def capture() -> Any:
        return django_capture_on_commit_callbacks(execute=True)

    yield capture


def field_errors(response: Any) -> dict[str, dict[str, Any]]:
    """Return a problem response's field errors keyed by their dotted path."""
    body = response.json()
    return {error["field"]: error for error in body.get("errors", [])}
