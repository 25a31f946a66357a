"""gunicorn's logger, without an access line per dashboard live refresh.

Every open dashboard page asks for itself again each second with the
``X-Live-Refresh`` header (see ``static/controlplane/live.js``), which
printed one access line per page per second. Those requests are logged
only when gunicorn's log level is debug; a refresh that fails is always
logged.
"""

import logging
from typing import Any

from gunicorn.glogging import Logger

LIVE_REFRESH_HEADER = "HTTP_X_LIVE_REFRESH"


class AccessLogger(Logger):
    def access(
        self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any
    ) -> None:
        routine = environ.get(LIVE_REFRESH_HEADER) and _status_code(resp) < 400
        if routine and not self.error_log.isEnabledFor(logging.DEBUG):
            return
        super().access(resp, req, environ, request_time)


def _status_code(resp: Any) -> int:
    status = str(getattr(resp, "status", "") or "")
    head = status.split(" ", 1)[0]
    return int(head) if head.isdigit() else 0
