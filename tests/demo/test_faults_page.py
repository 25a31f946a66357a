"""The faults page shows faults and state; only operators change faults."""

from django.contrib.auth.models import User
from django.test import Client

from demo.models import FaultSetting


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_login_required(seeded: None) -> None:
    response = Client().get("/faults/")

    assert response.status_code == 302
    assert "/login/" in response["Location"]


def test_reader_sees_values_read_only(seeded: None, reader: User) -> None:
    FaultSetting.objects.filter(service="payment").update(error_rate=0.3)

    response = logged_in(reader).get("/faults/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "0.3" in html
    assert 'name="error_rate"' not in html
    assert "sku-empty" in html
    assert "needs the operator role" in html


def test_reader_post_rejected(seeded: None, reader: User) -> None:
    response = logged_in(reader).post(
        "/faults/", {"service": "order", "error_rate": "1", "latency_ms": "0"}
    )

    assert response.status_code == 302
    assert FaultSetting.objects.get(service="order").error_rate == 0.0


def test_operator_changes_faults(seeded: None, operator: User) -> None:
    client = logged_in(operator)

    response = client.post(
        "/faults/",
        {"service": "inventory", "error_rate": "0.5", "latency_ms": "200"},
        follow=True,
    )

    assert response.redirect_chain == [("/faults/", 302)]
    setting = FaultSetting.objects.get(service="inventory")
    assert setting.error_rate == 0.5
    assert setting.latency_ms == 200
    assert "Faults of inventory set: error rate 0.5, latency 200 ms." in (
        response.content.decode()
    )


def test_invalid_value_shown(seeded: None, operator: User) -> None:
    response = logged_in(operator).post(
        "/faults/", {"service": "order", "error_rate": "2", "latency_ms": "0"}
    )

    assert response.status_code == 400
    html = response.content.decode()
    assert "error_rate: Ensure this value is less than or equal to 1.0." in html
    assert "(got &#x27;2&#x27;)" in html
    assert FaultSetting.objects.get(service="order").error_rate == 0.0
