"""Every dashboard page renders for a logged-in user and needs a login."""

from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client

from controlplane.seed import seed
from resilience.models import Target
from sagas.models import SagaDefinition, SagaRun

PAGES = [
    "/",
    "/runs/",
    "/runs/start/",
    "/runs/start/?saga=order",
    "/runs/start/?saga=order-choreography",
    "/breakers/",
    "/bulkheads/",
    "/faults/",
    "/idempotency/",
    "/outbox/",
]


@pytest.fixture
def seeded(db: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sagas.services.enqueue_step", lambda *args: None)
    seed("http://127.0.0.1:9")


@pytest.fixture
def demo_client(seeded: None) -> Client:
    client = Client()
    client.force_login(User.objects.get(username="demo"))
    return client


@pytest.mark.parametrize("path", PAGES)
def test_page_renders(demo_client: Client, path: str) -> None:
    response = demo_client.get(path)

    assert response.status_code == 200, response.content[:2000]


@pytest.mark.parametrize("path", PAGES)
def test_page_needs_login(seeded: None, path: str) -> None:
    response = Client().get(path)

    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_run_detail_renders(demo_client: Client) -> None:
    definition = SagaDefinition.objects.get(name="order")
    run = SagaRun.objects.create(definition=definition, steps_snapshot=definition.steps)

    response = demo_client.get(f"/runs/{run.pk}/")

    assert response.status_code == 200
    assert str(run.pk) in response.content.decode()


@pytest.mark.parametrize(
    ("saga", "status", "flagged", "shown"),
    [
        ("order", "compensation_failed", True, True),
        ("order", "paused", True, False),
        ("order-choreography", "completed", True, True),
        ("order-choreography", "completed", False, False),
        ("order-tcc", "needs_attention", True, True),
    ],
)
def test_resolve_form_shown_when_resolvable(
    demo_client: Client, saga: str, status: str, flagged: bool, shown: bool
) -> None:
    definition = SagaDefinition.objects.get(name=saga)
    run = SagaRun.objects.create(
        definition=definition,
        steps_snapshot=definition.steps,
        status=status,
        needs_attention=flagged,
    )

    response = demo_client.get(f"/runs/{run.pk}/")

    assert response.status_code == 200
    assert ('id="resolve-run"' in response.content.decode()) is shown


def test_start_form_rejects_bad_quantity(demo_client: Client) -> None:
    form = {
        "saga": "order",
        "customer_id": "c",
        "product_id": "sku-1",
        "quantity": "0",
        "amount": "1.00",
    }

    response = demo_client.post("/runs/start/", form)

    assert response.status_code == 400
    assert "greater than or equal to 1" in response.content.decode()
    assert SagaRun.objects.count() == 0


def test_start_form_starts_run(demo_client: Client) -> None:
    form = {
        "saga": "order",
        "customer_id": "c",
        "product_id": "sku-1",
        "quantity": "2",
        "amount": "1.00",
    }

    response = demo_client.post("/runs/start/", form)

    run = SagaRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/runs/{run.pk}/"
    assert run.input == {
        "customer_id": "c",
        "product_id": "sku-1",
        "quantity": 2,
        "amount": "1.00",
    }


def test_breaker_action_needs_operator(seeded: None) -> None:
    reader = User.objects.create_user("rafael", password="reader-pass")
    client = Client()
    client.force_login(reader)

    response = client.post("/breakers/payment/force-open/", follow=True)

    assert "needs the operator role" in response.content.decode()


def test_breaker_force_open_from_page(demo_client: Client) -> None:
    response = demo_client.post("/breakers/payment/force-open/", follow=True)

    page = response.content.decode()
    assert "force-open done" in page
    assert 'data-state="forced_open"' in page
    demo_client.post("/breakers/payment/reset/")


def test_load_data_command_fills_pages(demo_client: Client) -> None:
    call_command("generate_load_data", targets=3, runs=30, stdout=StringIO())

    assert Target.objects.filter(name__startswith="load-").count() == 3
    assert SagaRun.objects.count() == 30
    assert demo_client.get("/runs/?status=completed").status_code == 200
    assert demo_client.get("/breakers/").status_code == 200


def test_load_data_rejects_negative_counts(db: Any) -> None:
    with pytest.raises(CommandError, match="must be 0 or more"):
        call_command("generate_load_data", targets=-1, runs=1, stdout=StringIO())


def test_dashboard_resolve_rejects_long_note(demo_client: Client) -> None:
    definition = SagaDefinition.objects.get(name="order")
    run = SagaRun.objects.create(
        definition=definition,
        steps_snapshot=definition.steps,
        status="compensation_failed",
        needs_attention=True,
    )

    response = demo_client.post(
        f"/runs/{run.pk}/resolve/", {"note": "b" * 2001}, follow=True
    )

    assert "The note must be at most 2000 characters, got 2001." in (
        response.content.decode()
    )
    run.refresh_from_db()
    assert run.needs_attention is True
    assert run.resolved_at is None
