"""One control plane per Redis database: a worker rejects a database in use.

The Celery queue, the resilience core's state and the sweeper's keys all
live in REDIS_URL's database. Two control planes with different databases
on one Redis database would quietly run each other's tasks: a worker loads
a run its database does not have and skips it, and the demo services apply
each other's events. So each worker's main process claims the Redis
database for its own database with a key that expires unless renewed, and
a worker whose database differs from a live claim's exits before it takes
any task. Workers of one control plane, on any number of hosts, share the
claim.

Celery has no such check: its queues are shared by design, so this is
written here.
"""

import logging
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

OWNER_KEY = "rcp:owner"
OWNER_TTL_SECONDS = 30
RENEW_SECONDS = 10
# Exit status of a worker that found its Redis database claimed; the
# launcher does not restart a worker that exits with it. 78 is EX_CONFIG
# of BSD's sysexits.h: a configuration error.
EXIT_REDIS_IN_USE = 78

# Set the claim when it is free or already ours, and return the claim's
# database either way.
_CLAIM = """
local current = redis.call('GET', KEYS[1])
if current == false or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return ARGV[1]
end
return current
"""
# Delete the claim only when it is ours.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisInUse(RuntimeError):
    """Another control plane's database has claimed the Redis database."""


def database_identity() -> str:
    """Name the default database so that every host names it the same way."""
    database = settings.DATABASES["default"]
    engine = str(database["ENGINE"]).rsplit(".", 1)[-1]
    if engine == "sqlite3":
        return f"sqlite3:{Path(str(database['NAME'])).resolve()}"
    host = database.get("HOST") or "localhost"
    port = database.get("PORT") or ""
    return f"{engine}://{host}:{port}/{database['NAME']}"


def claim(client: redis.Redis, identity: str) -> None:
    """Claim the Redis database for ``identity``, or raise RedisInUse."""
    owner = client.eval(_CLAIM, 1, OWNER_KEY, identity, OWNER_TTL_SECONDS)
    owner = owner.decode() if isinstance(owner, bytes) else str(owner)
    if owner != identity:
        raise RedisInUse(in_use_message(owner, identity))


def in_use_message(owner: str | bytes, identity: str) -> str:
    """Say that ``owner``'s control plane uses the Redis database, and what to do."""
    if isinstance(owner, bytes):
        owner = owner.decode()
    url = _without_password(settings.REDIS_URL)
    return (
        f"REDIS_URL {url} is in use by a control plane with another database "
        f"({owner}); this one's is {identity}. Give each control plane its own "
        "Redis database, for example by changing the number at the end of "
        "REDIS_URL."
    )


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def release(client: redis.Redis, identity: str) -> None:
    """Delete the claim if it is ``identity``'s."""
    client.eval(_RELEASE, 1, OWNER_KEY, identity)


def connect_worker_signals() -> None:
    """Claim the Redis database when a worker starts, and renew the claim."""
    from celery import signals

    signals.worker_init.connect(_on_worker_init, weak=False)
    signals.worker_shutdown.connect(_on_worker_shutdown, weak=False)


def redis_client() -> redis.Redis:
    return redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=5.0, socket_connect_timeout=5.0
    )


def _on_worker_init(**kwargs: Any) -> None:
    identity = database_identity()
    try:
        claim(redis_client(), identity)
    except RedisInUse as exc:
        logger.error("worker not started: %s", exc)
        # Celery's signal dispatch logs and swallows an Exception, so only
        # SystemExit stops the worker here.
        raise SystemExit(EXIT_REDIS_IN_USE) from exc
    thread = threading.Thread(
        target=_renew, args=(identity,), name="redis-owner", daemon=True
    )
    thread.start()


def _renew(identity: str) -> None:
    client = redis_client()
    while True:
        threading.Event().wait(RENEW_SECONDS)
        try:
            claim(client, identity)
        except RedisInUse as exc:
            # The claim expired or was flushed and another control plane took
            # it. Stopping this worker would strand its own runs, so it keeps
            # running and logs an error on every renewal.
            logger.error("redis database shared: %s", exc)
        except redis.RedisError as exc:
            logger.warning("redis owner claim not renewed: %s", exc)


def _on_worker_shutdown(**kwargs: Any) -> None:
    try:
        release(redis_client(), database_identity())
    except redis.RedisError as exc:
        logger.warning("redis owner claim not released: %s", exc)
