"""Exit 78 when another control plane's database has claimed REDIS_URL.

``make run`` calls it before it migrates, seeds or starts anything, so a
second control plane on a Redis database in use changes nothing. The
workers check the same claim when they start (see controlplane.ownership),
which covers workers started by hand on other hosts.
"""

from typing import Any

import redis
from django.core.management.base import BaseCommand

from controlplane import ownership


class Command(BaseCommand):
    help = "Check that REDIS_URL is not claimed by another control plane."

    def handle(self, *args: Any, **options: Any) -> None:
        client = ownership.redis_client()
        try:
            owner = client.get(ownership.OWNER_KEY)
        except redis.RedisError as exc:
            self.stderr.write(f"Redis owner claim not checked: {exc}")
            return
        identity = ownership.database_identity()
        if isinstance(owner, bytes):
            owner = owner.decode()
        if owner is not None and owner != identity:
            self.stderr.write(ownership.in_use_message(owner, identity))
            raise SystemExit(ownership.EXIT_REDIS_IN_USE)
