"""The policies pages list, show and change policies with the API's rules."""

import json
from typing import Any

from django.contrib.auth.models import User
from django.test import Client

from resilience import policies
from resilience.models import Policy, Target
from tests.policies.conftest import VALID_POLICY


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def form(**sections: Any) -> dict[str, str]:
    data = {name: "" for name in policies.SECTIONS}
    for name, value in sections.items():
        data[name] = value if isinstance(value, str) else json.dumps(value)
    data.setdefault("on_state_store_error", "allow")
    return data


def test_list_shows_targets_and_versions(reader: User, target: Target) -> None:
    Target.objects.create(name="shipping", base_url="http://127.0.0.1:9/ship")
    policies.save_policy(target, policies.normalize(VALID_POLICY), None)

    response = logged_in(reader).get("/policies/")

    text = response.content.decode()
    assert response.status_code == 200
    assert "v1" in text
    assert "rate 100 per 1 s" in text
    assert "shipping" in text
    assert 'href="/policies/payment/"' in text


def test_invalid_form_keeps_input_and_names_field(
    operator: User, target: Target
) -> None:
    bad = '{"failure_rate_threshold": 150}'

    response = logged_in(operator).post(
        "/policies/payment/", form(circuit_breaker=bad, retry="{not json")
    )

    text = response.content.decode()
    assert response.status_code == 400
    assert "invalid JSON" in text
    assert not Policy.objects.exists()

    response = logged_in(operator).post("/policies/payment/", form(circuit_breaker=bad))
    text = response.content.decode()
    assert response.status_code == 400
    assert "circuit_breaker.failure_rate_threshold" in text
    assert "Must be a percentage in (0, 100], got 150.0." in text
    assert "{&quot;failure_rate_threshold&quot;: 150}" in text
    assert not Policy.objects.exists()


def test_operator_saves_and_sees_history(operator: User, target: Target) -> None:
    client = logged_in(operator)

    saved = client.post(
        "/policies/payment/", form(rate_limiter={"limit_for_period": 5})
    )
    page = client.get("/policies/payment/")

    assert saved.status_code == 302
    policy = Policy.objects.get()
    assert policy.version == 1
    assert policy.config["rate_limiter"]["limit_for_period"] == 5
    text = page.content.decode()
    assert "v1" in text
    assert "rate_limiter" in text
    assert "olivia" in text


def test_reader_cannot_post(reader: User, target: Target) -> None:
    response = logged_in(reader).post(
        "/policies/payment/", form(rate_limiter={"limit_for_period": 5})
    )

    assert response.status_code == 403
    assert not Policy.objects.exists()


def test_nav_links_to_policies(reader: User) -> None:
    response = logged_in(reader).get("/policies/")

    assert 'href="/policies/"' in response.content.decode()
