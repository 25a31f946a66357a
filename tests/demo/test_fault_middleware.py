"""Injected faults delay and fail demo requests, never state/ or other paths."""

from typing import Any

import pytest
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory
from rest_framework.test import APIClient

from demo import faults
from demo.faults import FaultInjectionMiddleware
from demo.models import FaultSetting, Payment
from tests.demo.conftest import SERVICE_CALLS, post


def set_fault(service: str, error_rate: float = 0.0, latency_ms: int = 0) -> None:
    FaultSetting.objects.filter(service=service).update(
        error_rate=error_rate, latency_ms=latency_ms
    )
    faults.clear_cache()


@pytest.mark.parametrize("service", list(SERVICE_CALLS))
def test_rate_one_fails_every_request(client: APIClient, service: str) -> None:
    action_path, body, undo_path = SERVICE_CALLS[service]
    set_fault(service, error_rate=1.0)

    responses = [post(client, action_path, body) for _ in range(20)]
    responses.append(post(client, undo_path))

    assert {r.status_code for r in responses} == {503}
    problem = responses[0].json()
    assert problem["code"] == "fault_injected"
    assert problem["status"] == 503
    assert service in problem["detail"]
    assert responses[0]["Content-Type"] == "application/problem+json"


def test_state_never_failed(client: APIClient) -> None:
    set_fault("payment", error_rate=1.0)

    response = client.get("/demo/payment/state/")

    assert response.status_code == 200


def test_failed_request_applies_nothing(client: APIClient) -> None:
    set_fault("payment", error_rate=1.0)

    post(client, *SERVICE_CALLS["payment"][:2], key="k-1")
    set_fault("payment", error_rate=0.0)
    retry = post(client, *SERVICE_CALLS["payment"][:2], key="k-1")

    assert retry.status_code == 201
    assert "Idempotent-Replayed" not in retry
    assert Payment.objects.count() == 1


def test_other_service_unaffected(client: APIClient) -> None:
    set_fault("payment", error_rate=1.0)

    response = post(client, *SERVICE_CALLS["order"][:2])

    assert response.status_code == 201


def test_rate_zero_fails_none(client: APIClient) -> None:
    responses = [
        post(
            client,
            "/demo/order/orders/",
            {**SERVICE_CALLS["order"][1], "reference": f"r-{n}"},
        )
        for n in range(20)
    ]

    assert {r.status_code for r in responses} == {201}


def test_share_of_failures_follows_rate(
    client: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    draws = iter([0.1, 0.3, 0.5, 0.7, 0.9])
    monkeypatch.setattr(
        FaultInjectionMiddleware, "random", staticmethod(lambda: next(draws))
    )
    set_fault("shipping", error_rate=0.5)

    codes = [client.post("/demo/shipping/shipments/", {}).status_code for _ in range(5)]

    assert codes == [503, 503, 400, 400, 400]


def test_latency_delays_request(
    client: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    delays: list[float] = []
    monkeypatch.setattr(FaultInjectionMiddleware, "sleep", staticmethod(delays.append))
    set_fault("order", latency_ms=250)

    post(client, *SERVICE_CALLS["order"][:2])
    client.get("/demo/order/state/")

    assert delays == [0.25]


def respond_ok(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


@pytest.mark.parametrize(
    "path",
    ["/api/runs/", "/faults/", "/demo/", "/demo/unknown/x/", "/demo/order/state/"],
)
def test_other_paths_untouched_without_query(
    seeded: None, path: str, django_assert_num_queries: Any
) -> None:
    set_fault("order", error_rate=1.0)
    middleware = FaultInjectionMiddleware(respond_ok)

    with django_assert_num_queries(0):
        response = middleware(RequestFactory().post(path))

    assert response.status_code == 200


def test_setting_change_applies_to_next_request(seeded: None) -> None:
    middleware = FaultInjectionMiddleware(respond_ok)
    request = RequestFactory().post("/demo/order/orders/")

    before = middleware(request)
    FaultSetting.objects.filter(service="order").update(error_rate=1.0)
    after = middleware(request)

    assert before.status_code == 200
    assert after.status_code == 503
