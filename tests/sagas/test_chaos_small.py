"""A small chaos run: sagas finish once and balanced while workers are killed.

The same run as ``make chaos`` (see ``tests/chaos.py``) at a size that fits
the test suite: 12 order sagas on 2 workers, at least 2 of them killed with
SIGKILL mid-run, under random 503s and latency from the demo services.
"""

import pytest

from tests.chaos import ChaosOptions, run_chaos
from tests.stack import suite_redis_url

pytestmark = pytest.mark.stack


def test_chaos_runs_end_balanced_once() -> None:
    options = ChaosOptions(runs=12, workers=2, rate=2.0, min_kills=2, drain_timeout=75)

    report = run_chaos(options, suite_redis_url(2))

    details = "\n".join(report.lines() + report.problems)
    assert report.runs == 12, details
    assert report.kills >= 2, details
    assert report.stuck == 0, details
    assert report.terminal == report.runs, details
    assert report.duplicate_effects == 0, details
    assert report.unbalanced_runs == 0, details
