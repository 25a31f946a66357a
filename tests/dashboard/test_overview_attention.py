"""The overview counts runs flagged as needing attention apart from statuses.

A run's ``needs_attention`` flag and the ``needs_attention`` status (a
Try-Confirm-Cancel outcome) are different things: a paused run is flagged
while its status is ``paused``.
"""

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from controlplane.seed import seed
from sagas.models import RunStatus, SagaDefinition, SagaRun


@pytest.fixture
def demo_client(db: Any, monkeypatch: pytest.MonkeyPatch) -> Client:
    monkeypatch.setattr("sagas.services.enqueue_step", lambda *args: None)
    seed("http://127.0.0.1:9")
    client = Client()
    client.force_login(User.objects.get(username="demo"))
    return client


def make_run(status: str, needs_attention: bool) -> SagaRun:
    definition = SagaDefinition.objects.get(name="order")
    return SagaRun.objects.create(
        definition=definition,
        steps_snapshot=definition.steps,
        status=status,
        needs_attention=needs_attention,
    )


def status_tile(page: str, status: str) -> int:
    match = re.search(
        rf'class="count status-{status}" href="/runs/\?status={status}"[^>]*>'
        r"<strong>(\d+)</strong>",
        page,
    )
    assert match is not None, f"no tile for status {status}"
    return int(match[1])


def attention_figure(page: str) -> tuple[str, int]:
    match = re.search(
        r'<a id="attention-count"[^>]* href="([^"]+)"[^>]*><strong>(\d+)</strong>',
        page,
    )
    assert match is not None, "no needs-attention figure"
    return match[1], int(match[2])


def test_flagged_runs_counted_apart(demo_client: Client) -> None:
    paused = make_run(RunStatus.PAUSED, needs_attention=True)
    make_run(RunStatus.NEEDS_ATTENTION, needs_attention=False)
    make_run(RunStatus.COMPLETED, needs_attention=False)

    page = demo_client.get("/").content.decode()

    assert status_tile(page, "needs_attention") == 1
    assert status_tile(page, "paused") == 1
    assert status_tile(page, "completed") == 1
    link, flagged = attention_figure(page)
    assert flagged == 1
    assert link == "/runs/?needs_attention=true"
    listed = demo_client.get(link).content.decode()
    assert re.findall(r'data-run="([^"]+)"', listed) == [str(paused.pk)]


def test_old_flagged_runs_counted(demo_client: Client) -> None:
    old = make_run(RunStatus.COMPENSATION_FAILED, needs_attention=True)
    SagaRun.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - timedelta(days=2)
    )

    page = demo_client.get("/").content.decode()

    assert status_tile(page, "compensation_failed") == 0
    assert attention_figure(page)[1] == 1
    assert "<strong>1</strong> run needs attention" in page
