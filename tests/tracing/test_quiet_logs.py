"""An idle control plane logs no line per periodic task or live refresh.

Beat runs the sweeper and the outbox relay every few seconds, and each open
dashboard page refreshes itself every second. At the default INFO level
none of that reaches the log, while ordinary requests still do.
"""

import time

import pytest

from tests.stack import Stack

pytestmark = pytest.mark.stack


def test_periodic_work_not_logged_at_info(stack: Stack) -> None:
    log_path = stack.data_dir / "stack.log"
    # The relay runs every 2 s and the sweeper every 5 s.
    time.sleep(6)
    refresh = stack.get("/healthz/?live-check=1", headers={"X-Live-Refresh": "1"})
    assert refresh.status_code == 200
    stack.get("/healthz/?plain-check=1")
    time.sleep(1)

    log = log_path.read_text(errors="replace")

    assert "Sending due task" not in log
    assert "controlplane.relay_outbox[" not in log
    assert "sagas.resume_stalled_runs[" not in log
    assert "live-check=1" not in log
    assert "GET /healthz/?plain-check=1" in log
