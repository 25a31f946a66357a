"""A target's base URL must not reach link-local, metadata or private hosts.

Loopback stays allowed because the demo services listen on 127.0.0.1.
"""

import time

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from resilience import policies
from resilience.models import Target
from tests.policies.conftest import field_errors

REJECTED = [
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://[fd00:ec2::254]/", "metadata"),
    ("http://metadata.google.internal/computeMetadata/v1/", "metadata"),
    ("http://metadata-alias.example.com/", "metadata"),
    ("http://169.254.10.1:8080/", "link-local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://[::ffff:169.254.169.254]/", "metadata"),
    ("http://10.0.0.5/", "private"),
    ("http://172.16.3.4/", "private"),
    ("http://192.168.0.10/", "private"),
    ("http://intranet.example.com/", "private"),
    ("http://mixed.example.com/", "private"),
    ("http://0.0.0.0:8000/", "unspecified"),
    ("http://no-such-host.example.com/", "does not resolve"),
    ("ftp://127.0.0.1/", "http and https"),
    ("http://127.0.0.1:99999/", "port must be a number from 1 to 65535"),
    ("http://127.0.0.1:0/", "port must be a number from 1 to 65535"),
    ("http://127.0.0.1:8000/?key=1", "no query or fragment"),
    ("http://127.0.0.1:8000/#top", "no query or fragment"),
]
ALLOWED = [
    "http://127.0.0.1:8000/demo/payment",
    "http://127.0.0.2/",
    "http://[::1]:8000/",
    "http://localhost:8000/",
    "https://payments.example.com/v1",
]


@pytest.mark.parametrize(("url", "reason"), REJECTED)
def test_unsafe_base_url_rejected(
    operator_client: APIClient, url: str, reason: str
) -> None:
    response = operator_client.post(
        "/api/targets/", {"name": "svc", "base_url": url}, format="json"
    )

    assert response.status_code == 400, response.content
    error = field_errors(response)["base_url"]
    assert reason in error["message"]
    assert error["value"] == url
    assert not Target.objects.exists()


@pytest.mark.parametrize("url", ALLOWED)
def test_public_and_loopback_urls_allowed(operator_client: APIClient, url: str) -> None:
    response = operator_client.post(
        "/api/targets/", {"name": "svc", "base_url": url}, format="json"
    )

    assert response.status_code == 201, response.content


@override_settings(RESILIENCE_ALLOW_PRIVATE_TARGETS=True)
@pytest.mark.parametrize(
    "url",
    ["http://10.0.0.5/", "http://169.254.169.254/", "http://intranet.example.com/"],
)
def test_setting_allows_private_targets(operator_client: APIClient, url: str) -> None:
    response = operator_client.post(
        "/api/targets/", {"name": "svc", "base_url": url}, format="json"
    )

    assert response.status_code == 201, response.content


def test_slow_resolution_times_out(
    operator_client: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def hang(host: str) -> list[str]:
        time.sleep(1.0)
        return ["127.0.0.1"]

    monkeypatch.setattr(policies, "resolve_host", hang)
    monkeypatch.setattr(policies, "RESOLVE_TIMEOUT_SECONDS", 0.1)

    started = time.monotonic()
    response = operator_client.post(
        "/api/targets/",
        {"name": "svc", "base_url": "http://slow.example.com/"},
        format="json",
    )

    assert time.monotonic() - started < 0.9
    assert response.status_code == 400
    assert "did not resolve within" in field_errors(response)["base_url"]["message"]
