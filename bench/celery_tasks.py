"""A no-op Celery task for the plain-chain baseline of ``bench.sagas``.

Workers import it through ``-I bench.celery_tasks``; it is not part of the
control plane's own tasks.
"""

import time
from typing import Any

from celery import shared_task


# The chain baseline reads each chain's result, so it is stored even though
# the control plane ignores task results by default.
@shared_task(name="bench.noop", ignore_result=False)
def noop(previous: Any = None) -> float:
    """Do nothing and return the wall-clock time it ran at, in seconds."""
    return time.time()
