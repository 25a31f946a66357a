"""Keys that saga steps send downstream are stored once per key."""

import uuid
from datetime import timedelta
from typing import Any

from django.utils import timezone

from controlplane.idempotency import record_downstream_key
from controlplane.models import DownstreamKey


def test_repeated_send_counts_on_one_row(db: Any) -> None:
    run_id = uuid.uuid4()
    key = f"{run_id}:reserve:action"
    first = timezone.now()
    later = first + timedelta(seconds=3)

    record_downstream_key(run_id, "reserve", "action", "inventory", key, 503, first)
    record_downstream_key(run_id, "reserve", "action", "inventory", key, 200, later)

    row = DownstreamKey.objects.get()
    assert row.key == key
    assert row.target == "inventory"
    assert row.sends == 2
    assert row.first_sent_at == first
    assert row.last_sent_at == later
    assert row.last_status_code == 200


def test_action_and_compensation_are_two_keys(db: Any) -> None:
    run_id = uuid.uuid4()
    now = timezone.now()

    for part in ("action", "compensation"):
        key = f"{run_id}:charge:{part}"
        record_downstream_key(run_id, "charge", part, "payment", key, 200, now)

    parts = set(DownstreamKey.objects.values_list("part", flat=True))
    assert parts == {"action", "compensation"}
