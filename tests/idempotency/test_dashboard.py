"""The /idempotency/ page: filters in the URL, links to runs and traces."""

from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from controlplane.models import DownstreamKey
from tests.idempotency.conftest import make_record

RUN_ID = "6f1c2a0e-8f0b-4c4e-9a43-4c3f5e2d1b7a"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_page_requires_login() -> None:
    response = Client().get("/idempotency/")

    assert response.status_code == 302
    assert "/login/" in response["Location"]


def test_page_links_run_and_trace(reader: User, operator: User) -> None:
    make_record(
        operator, "order-1", status="completed", run_id=RUN_ID, trace_id=TRACE_ID
    )

    response = logged_in(reader).get("/idempotency/")

    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="live-idempotency" data-live' in html
    assert f'href="/runs/{RUN_ID}/"' in html
    assert f'href="/traces/{TRACE_ID}/"' in html
    assert "order-1" in html


def test_filters_kept_in_form(reader: User, operator: User) -> None:
    make_record(operator, "order-1")
    make_record(operator, "other-2")

    response = logged_in(reader).get("/idempotency/?key_contains=order&status=")

    html = response.content.decode()
    assert 'name="key_contains" value="order"' in html
    assert "order-1" in html
    assert "other-2" not in html


def test_invalid_filter_shows_error(reader: User) -> None:
    response = logged_in(reader).get("/idempotency/?created_after=soon")

    assert response.status_code == 400
    assert "created_after" in response.content.decode()


def test_run_filter_lists_downstream_keys(reader: User) -> None:
    now = timezone.now()
    for step, target in [("reserve", "inventory"), ("charge", "payment")]:
        DownstreamKey.objects.create(
            run_id=RUN_ID,
            step_name=step,
            part="action",
            target=target,
            key=f"{RUN_ID}:{step}:action",
            first_sent_at=now,
            last_sent_at=now,
            last_status_code=200,
        )

    response = logged_in(reader).get(f"/idempotency/?run={RUN_ID}")

    html = response.content.decode()
    assert f"{RUN_ID}:reserve:action" in html
    assert f"{RUN_ID}:charge:action" in html
    assert "inventory" in html
    assert "payment" in html
