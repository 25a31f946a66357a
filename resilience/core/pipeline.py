"""The resilience pipeline of one downstream target.

Stages run in this order: rate limiter, bulkhead, circuit breaker, retry,
timeout, call. Their state lives in Redis, so every worker process on every
host shares one limiter, bulkhead and breaker per target. A call runs two
scripts in the common case: one admits it through all three stages and
waits for the reply, and one records the outcome and releases the bulkhead
permit. The record is usually written without waiting for its reply (see
`Pipeline._record`), so the call waits for one round trip.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import redis

from .classify import (
    FAILURE,
    IGNORED,
    SUCCESS,
    Outcome,
    classify_exception,
    classify_value,
    status_code_of,
)
from .clock import Clock
from .config import PolicyConfig
from .context import Attempt, reset_attempt, set_attempt
from .errors import CallNotPermitted, RetryLater
from .retry import backoff_delay
from .stages import Bulkhead, CircuitBreaker, RateLimiter, decode, parse_event
from .store import STATE_STORE_ERRORS, TargetKeys, bulk, bulks, store_for, to_bytes

logger = logging.getLogger(__name__)

T = TypeVar("T")
TransitionHook = Callable[[str, dict[str, Any]], None]
EventHook = Callable[[str, str, dict[str, Any]], None]

# Maximum sleep between two polls of a full bulkhead, in seconds.
BULKHEAD_POLL_INTERVAL = 0.02
# Added to the expected length of a call to get its default bulkhead lease.
LEASE_MARGIN = 10.0
# Minimum seconds between two warnings about an unreachable state store.
STATE_STORE_WARNING_INTERVAL = 60.0

# Quiet levels of an admission: the outcomes of the call that can be
# recorded without waiting for the reply, because recording them cannot
# cause a breaker transition unless the breaker changes before the record
# runs.
QUIET_NONE = 0
QUIET_SUCCESS = 1
QUIET_ALL = 2

_last_state_store_warning: dict[str, float] = {}
_warning_lock = threading.Lock()

# Encoded values that most calls send, so they are not encoded per call.
_EMPTY = bulk("")
_ZERO = bulk(0)
_ONE = bulk(1)


class _CallIds:
    """Unique call ids: a random prefix per process and a counter.

    The ids name bulkhead leases and rate-limit permits, so they must be
    unique across every process sharing the Redis state. A forked child
    draws a new prefix, because it inherits the parent's counter.
    """

    def __init__(self) -> None:
        self.renew()
        os.register_at_fork(after_in_child=self.renew)

    def renew(self) -> None:
        self._prefix = uuid.uuid4().hex[:16]
        self._counter = itertools.count()

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):x}"


_call_ids = _CallIds()


class _StateStoreDown(Exception):
    """Redis could not be reached; the caller applies on_state_store_error."""


@dataclass
class CallResult:
    """How a protected call ended, for callers that do not want exceptions.

    `outcome` is "rejected" when a stage rejected the call, and
    `rejected_by` names that stage. It is "failed" when the last attempt
    raised, or returned a response whose status the breaker records as a
    failure (by default 5xx) or that was still retryable (for example a
    429). Otherwise it is "succeeded", which includes other 4xx responses.
    `error` is a one-line description.
    """

    outcome: str
    rejected_by: str | None = None
    value: Any = None
    error: str | None = None
    exception: BaseException | None = None
    attempts: int = 0
    duration_ms: float = 0.0
    status_code: int | None = None


class Pipeline:
    """Rate limiter, bulkhead, circuit breaker, retry and timeout for a target.

    `clock` None uses the Redis server's TIME for every timing rule;
    a clock passed in (tests) supplies the time and its `sleep` for waits.
    `on_transition(target, event)` receives each breaker transition and
    `on_event(target, name, attributes)` the decisions worth a span event.
    """

    def __init__(
        self,
        target: str,
        policy: PolicyConfig,
        redis_client: redis.Redis,
        clock: Clock | None = None,
        on_transition: TransitionHook | None = None,
        on_event: EventHook | None = None,
        key_prefix: str = "rcp",
        rng: random.Random | None = None,
    ) -> None:
        self.target = target
        self.policy = policy
        self.redis = redis_client
        self.clock = clock
        self.on_transition = on_transition
        self.on_event = on_event
        self.keys = TargetKeys.for_target(key_prefix, target)
        self.rng = rng or random.Random()
        self.state_store_errors = 0
        self.breaker = CircuitBreaker(self)
        self.bulkhead = Bulkhead(self)
        self.rate_limiter = RateLimiter(self)
        self._store = store_for(redis_client)
        self._breaker_args = self._build_breaker_args()
        self._lease = self._lease_duration()
        self._encode_fixed_arguments()

    # -- configuration ---------------------------------------------------

    def _build_breaker_args(self) -> list[Any]:
        cb = self.policy.circuit_breaker
        if cb is None:
            return []
        return [
            cb.sliding_window_type,
            cb.sliding_window_size,
            cb.effective_minimum_number_of_calls,
            cb.failure_rate_threshold,
            cb.slow_call_rate_threshold,
            cb.wait_duration_in_open_state,
            cb.exponential_backoff_multiplier,
            cb.max_wait_duration_in_open_state or 0,
            cb.permitted_number_of_calls_in_half_open_state,
            cb.max_wait_duration_in_half_open_state,
            "1" if cb.automatic_transition_from_open_to_half_open_enabled else "0",
        ]

    def _encode_fixed_arguments(self) -> None:
        """Encode the keys and policy values that every call sends unchanged.

        Each entry point takes the keys, then the policy as one string (see
        read_cfg in lua/lib.lua), then its own arguments. These byte strings
        hold that prefix, so a call encodes only its own values.
        """
        keys = self.keys.as_list()
        prefix = bulks([len(keys), *keys])
        on = bool(self._breaker_args)
        # The retries' admission asks only the breaker.
        self._admit_fixed = {
            True: prefix + bulk(self._policy_text(on, True)),
            False: prefix + bulk(self._policy_text(on, False)),
        }
        self._admit_count = len(keys) + 2 + 6
        # A record without an outcome only releases the bulkhead permit.
        self._record_fixed = {
            True: prefix + bulk(self._policy_text(True, True)),
            False: prefix + bulk(self._policy_text(False, True)),
        }
        self._record_count = len(keys) + 2 + 4
        self._breaker_fixed = prefix + bulk(self._policy_text(on, True))
        self._breaker_fixed_count = len(keys) + 2

    def _policy_text(self, breaker_on: bool, limits: bool) -> bytes:
        """Return the policy string that the Lua code parses in read_cfg."""
        values: list[Any] = ["1" if breaker_on else "0"]
        values += self._breaker_args or ["count_based", *[0] * 10]
        rl = self.policy.rate_limiter if limits else None
        bh = self.policy.bulkhead if limits else None
        if rl is None:
            values += ["0", 0, 1]
        else:
            values += ["1", rl.limit_for_period, rl.limit_refresh_period]
        if bh is None:
            values += ["0", 0, 0]
        else:
            values += ["1", bh.max_concurrent_calls, self._lease]
        return b" ".join(to_bytes(value) for value in values)

    def _lease_duration(self) -> float:
        """Return how long a bulkhead permit lives if it is never released.

        Unless set, it is the overall deadline, or every attempt's timeout
        plus the longest backoffs, plus LEASE_MARGIN.
        """
        bulkhead = self.policy.bulkhead
        if bulkhead is not None and bulkhead.permit_lease_duration is not None:
            return bulkhead.permit_lease_duration
        timeout = self.policy.timeout
        if timeout.overall_deadline is not None:
            return timeout.overall_deadline + LEASE_MARGIN
        retry = self.policy.retry
        attempts = 1 if retry is None else retry.max_attempts
        waits = 0.0 if retry is None else (attempts - 1) * retry.max_interval
        # NOTE: a function that ignores current_attempt().timeout can outlive
        # this lease, and the bulkhead then admits one call too many until it
        # returns.
        return timeout.timeout_duration * attempts + waits + LEASE_MARGIN

    # -- clock -----------------------------------------------------------

    def _script_now(self) -> str:
        # With an empty string as `now`, the scripts read Redis TIME.
        return "" if self.clock is None else repr(self.clock.now())

    def _encoded_now(self) -> bytes:
        return _EMPTY if self.clock is None else bulk(repr(self.clock.now()))

    def _elapsed_clock(self) -> float:
        # Local durations and deadlines of one call only need a monotonic
        # clock; the shared rules use the scripts' clock.
        return time.monotonic() if self.clock is None else self.clock.now()

    def _sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        if self.clock is None:
            time.sleep(seconds)
        else:
            self.clock.sleep(seconds)

    # -- hooks -----------------------------------------------------------

    def _emit(self, name: str, **attributes: Any) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(self.target, name, attributes)
        except Exception:
            logger.exception("%s: on_event hook failed for %s", self.target, name)

    def _publish_transitions(self, raw_events: list[Any]) -> None:
        for raw in raw_events:
            event = parse_event(raw)
            logger.info(
                "%s: circuit breaker %s -> %s (%s)",
                self.target,
                event["from_state"],
                event["to_state"],
                event["reason"],
            )
            if self.on_transition is None:
                continue
            try:
                self.on_transition(self.target, event)
            except Exception:
                logger.exception("%s: on_transition hook failed", self.target)

    # -- state store -----------------------------------------------------

    def _run(self, name: str, count: int, payload: bytes) -> Any:
        try:
            return self._store.run(name, count, payload)
        except STATE_STORE_ERRORS as exc:
            self._state_store_failed(exc)
            raise _StateStoreDown from exc

    def _state_store_failed(self, exc: Exception) -> None:
        self.state_store_errors += 1
        self._emit("state_store.error", error=type(exc).__name__)
        now = time.monotonic()
        with _warning_lock:
            last = _last_state_store_warning.get(self.target)
            if last is not None and now - last < STATE_STORE_WARNING_INTERVAL:
                return
            _last_state_store_warning[self.target] = now
        logger.warning(
            "%s: state store unreachable, applying on_state_store_error=%s "
            "(%d errors so far in this pipeline): %s",
            self.target,
            self.policy.on_state_store_error,
            self.state_store_errors,
            exc,
        )

    # -- admission and recording -----------------------------------------

    def _admit(self, call_id: str, first: bool, cost: int) -> tuple[int, int]:
        """Admit one attempt and return its breaker generation and quiet level.

        1. The first attempt goes through rate limiter, bulkhead and breaker
           in one script; later attempts (retries) only through the breaker.
        2. A 'wait' reply means a stage with a wait budget is full: sleep
           (up to the hint, BULKHEAD_POLL_INTERVAL at most for the bulkhead)
           and ask again until the budget is spent.
        3. A 'reject' reply raises CallNotPermitted.
        """
        rl = self.policy.rate_limiter if first else None
        bh = self.policy.bulkhead if first else None
        if rl is None and bh is None and not self._breaker_args:
            return 0, QUIET_ALL
        started = self._elapsed_clock()
        waited: set[str] = set()
        fixed = self._admit_fixed[first]
        encoded_id = bulk(call_id) + (_ONE if cost == 1 else bulk(cost))
        while True:
            payload = fixed + self._encoded_now() + encoded_id
            elapsed = self._elapsed_clock() - started
            rl_budget = 0.0 if rl is None else rl.timeout_duration - elapsed
            bh_budget = 0.0 if bh is None else bh.max_wait_duration - elapsed
            payload += bulk(rl_budget) if rl_budget > 0 else _ZERO
            payload += bulk(bh_budget) if bh_budget > 0 else _ZERO
            payload += _ONE if waited else _ZERO

            reply = self._run("admit", self._admit_count, payload)
            if type(reply) is not bytes:
                self._publish_transitions(reply[1:])
                reply = reply[0]
            fields = reply.decode().split("|")
            code, stage, state = fields[0], fields[1], fields[2]
            if code == "ok":
                for name in waited:
                    waited_ms = (self._elapsed_clock() - started) * 1000
                    self._emit(f"{name}.waited", waited_ms=waited_ms)
                return int(fields[3]), int(fields[5])
            if code == "reject":
                self._reject(stage, state)
            hint = float(fields[4])
            if stage == "bulkhead":
                hint = min(max(hint, 0.001), BULKHEAD_POLL_INTERVAL)
            waited.add(stage)
            self._sleep(hint)

    def _reject(self, stage: str, state: str) -> None:
        if stage == "circuit_breaker":
            message = f"circuit breaker of {self.target!r} is {state.upper()}"
        elif stage == "bulkhead":
            state = "full"
            message = f"bulkhead of {self.target!r} is full"
        else:
            state = "exhausted"
            message = f"rate limiter of {self.target!r} has no permits left"
        logger.debug("%s: call rejected by %s", self.target, stage)
        self._emit(f"{stage.replace('circuit_', '')}.rejected", state=state)
        raise CallNotPermitted(stage, self.target, state, message)

    def _record(
        self,
        generation: int | None,
        code: str | None,
        permit: str,
        quiet: int = QUIET_NONE,
    ) -> None:
        """Record an attempt's outcome and release `permit` (if not empty).

        A state store error here is logged and counted, not raised, because
        the call already ran; an unreleased permit frees up when its lease
        expires.

        Write-behind: when recording cannot cause a breaker transition, as
        the admission's `quiet` level states, the record is written without
        waiting for its reply. Redis still runs it at once, so the permit is
        released and the outcome counted before any later command of this
        thread, whose admissions therefore see it. The reply (its lease
        check, or an error) is handled when the thread next uses the state
        store. A record that can transition waits for its reply, so
        on_transition hears of the transition before the call returns.
        """
        record = self._breaker_args and generation is not None and code is not None
        if not record and not permit:
            return
        payload = self._record_fixed[bool(record)] + self._encoded_now()
        payload += bulk(permit) if permit else _EMPTY
        if record:
            payload += bulk(generation) + bulk(code)
        else:
            payload += _EMPTY + _EMPTY
        if (
            not record
            or quiet == QUIET_ALL
            or (quiet == QUIET_SUCCESS and code in (SUCCESS, IGNORED))
        ):
            # NOTE: the breaker can still change between the admission and
            # the record (another worker trips it, or a policy changes its
            # window). A transition this record then causes reaches
            # on_transition when this thread next uses the state store.
            on_reply = functools.partial(self._record_replied, permit)
            self._store.run_deferred("record", self._record_count, payload, on_reply)
            return
        try:
            reply = self._run("record", self._record_count, payload)
        except _StateStoreDown:
            return
        self._check_record_reply(permit, reply)

    def _record_replied(self, permit: str, reply: Any) -> None:
        """Handle the reply of a record written without waiting for it.

        None means this process closed the connection before reading the
        reply, after the record had been sent.
        """
        if reply is None:
            return
        if isinstance(reply, STATE_STORE_ERRORS):
            self._state_store_failed(reply)
        elif isinstance(reply, Exception):
            logger.error("%s: recording an outcome failed: %s", self.target, reply)
        else:
            self._check_record_reply(permit, reply)

    def _check_record_reply(self, permit: str, reply: Any) -> None:
        # The reply is an integer, or a list of it and the transition events.
        events = []
        if type(reply) is not int:
            reply, events = reply[0], reply[1:]
        if permit and not reply:
            logger.warning(
                "%s: bulkhead permit lease expired before the call ended; "
                "raise bulkhead.permit_lease_duration",
                self.target,
            )
        self._publish_transitions(events)

    def _admit_or_degrade(
        self, call_id: str, first: bool, cost: int
    ) -> tuple[int | None, int]:
        """Admit, or apply on_state_store_error when Redis is unreachable.

        Returns the generation, or None when the call proceeds unrecorded,
        and the quiet level for its record.
        """
        try:
            return self._admit(call_id, first, cost)
        except _StateStoreDown:
            if self.policy.on_state_store_error == "reject":
                raise CallNotPermitted(
                    "state_store",
                    self.target,
                    "unreachable",
                    f"state store of {self.target!r} is unreachable",
                ) from None
            return None, QUIET_ALL

    # -- public entry points -----------------------------------------------

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn` through the pipeline and return its value.

        Raises CallNotPermitted when a stage rejects, RetryLater when the
        next backoff exceeds retry.max_inline_wait, or the last attempt's
        exception. A final response with a failing status (for example 503)
        is returned, not raised: check its `status_code`.
        """
        result = self._execute(fn, args, kwargs)
        if result.exception is not None:
            raise result.exception
        value: T = result.value
        return value

    def execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> CallResult:
        """Run `fn` through the pipeline and describe how it ended.

        Never raises for a rejected or failed call; RetryLater still
        propagates, because the caller must reschedule the call.
        """
        return self._execute(fn, args, kwargs)

    def resume(
        self, later: RetryLater, fn: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> CallResult:
        """Run the attempt that `later` postponed, then any retries after it.

        The resumed call is admitted through every stage again, as a new
        call is. Its first run gave back the bulkhead permit when it raised
        RetryLater, and the breaker or the rate limiter may have changed
        during the wait. The retry budget and the backoff carry on from
        where the first run stopped.
        """
        return self._execute(fn, args, kwargs, later.attempt, later.delay)

    def guard(self, cost: int = 1) -> Guard:
        """Return a context manager that protects the block it wraps."""
        return Guard(self, cost)

    # -- the call loop -----------------------------------------------------

    def _execute(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        first_attempt: int = 1,
        previous_delay: float | None = None,
    ) -> CallResult:
        """Run the attempts of one call.

        1. Admit through rate limiter, bulkhead and breaker at once.
        2. For each attempt: run the function with its timeout in the
           context, classify the outcome and decide whether to retry.
        3. Record the outcome; the last record also releases the bulkhead
           permit, so the common case stays at two round trips.
        4. Before each retry, sleep the backoff (or raise RetryLater), then
           ask the breaker again: a rejection there ends the retries.
        """
        started = self._elapsed_clock()
        timeout = self.policy.timeout
        deadline = None
        if timeout.overall_deadline is not None:
            deadline = started + timeout.overall_deadline
        permit = _call_ids.next() if self.policy.bulkhead is not None else ""
        retry = self.policy.retry
        max_attempts = 1 if retry is None else retry.max_attempts

        try:
            generation, quiet = self._admit_or_degrade(
                permit or _call_ids.next(), True, 1
            )
        except CallNotPermitted as exc:
            return self._rejected(exc, started, 0)

        number = first_attempt
        while True:
            attempt_timeout = timeout.timeout_duration
            if deadline is not None:
                attempt_timeout = min(attempt_timeout, deadline - self._elapsed_clock())
            value, error, duration = self._attempt(
                fn, args, kwargs, number, attempt_timeout, generation, permit
            )
            outcome = self._classify(value, error, duration)

            delay = None
            if outcome.retryable and number < max_attempts and retry is not None:
                delay = outcome.retry_after
                if delay is None:
                    delay = backoff_delay(retry, number, previous_delay, self.rng)
                if deadline is not None and self._elapsed_clock() + delay >= deadline:
                    # No retry can start before the overall deadline.
                    delay = None
            later = (
                delay is not None
                and retry is not None
                and retry.max_inline_wait is not None
                and delay > retry.max_inline_wait
            )
            ends = delay is None or later
            self._record(
                generation, outcome.breaker_code, permit if ends else "", quiet
            )

            if delay is None:
                return self._finished(value, error, outcome, started, number)
            if later:
                raise RetryLater(delay, number + 1, error if error else value)
            self._emit("retry.scheduled", attempt=number + 1, delay=delay)
            logger.debug("%s: retry %d in %.3f s", self.target, number + 1, delay)
            self._sleep(delay)
            previous_delay = delay
            number += 1
            if self._breaker_args and generation is not None:
                try:
                    generation, quiet = self._admit_or_degrade(
                        permit or "retry", False, 1
                    )
                except CallNotPermitted as exc:
                    self._record(None, None, permit)
                    exc.__cause__ = error
                    return self._rejected(exc, started, number - 1)

    def _attempt(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        number: int,
        attempt_timeout: float,
        generation: int | None,
        permit: str,
    ) -> tuple[Any, BaseException | None, float]:
        """Run one attempt and return (value, exception, duration in seconds)."""
        token = set_attempt(Attempt(number, max(0.0, attempt_timeout), self.target))
        began = self._elapsed_clock()
        value: Any = None
        error: BaseException | None = None
        try:
            value = fn(*args, **kwargs)
        except Exception as exc:
            error = exc
        except BaseException:
            # KeyboardInterrupt and the like: hand back the permits without
            # recording anything, then let it propagate.
            self._record(generation, IGNORED, permit)
            raise
        finally:
            reset_attempt(token)
        return value, error, self._elapsed_clock() - began

    def _classify(
        self, value: Any, error: BaseException | None, duration: float
    ) -> Outcome:
        policy = self.policy
        if error is not None:
            outcome = classify_exception(
                error, policy.circuit_breaker, policy.retry, policy.timeout
            )
        else:
            now = self.clock.now() if self.clock is not None else time.time()
            outcome = classify_value(value, policy.circuit_breaker, policy.retry, now)
        cb = policy.circuit_breaker
        # A call is slow only when strictly longer than the threshold.
        timed = cb is not None and outcome.breaker_code in (SUCCESS, FAILURE)
        if timed and duration > cb.slow_call_duration_threshold:  # type: ignore[union-attr]
            slow_code = "S" + outcome.breaker_code
            return Outcome(slow_code, outcome.retryable, outcome.retry_after)
        return outcome

    def _finished(
        self,
        value: Any,
        error: BaseException | None,
        outcome: Outcome,
        started: float,
        attempts: int,
    ) -> CallResult:
        duration_ms = (self._elapsed_clock() - started) * 1000
        if error is not None:
            return CallResult(
                "failed",
                None,
                None,
                f"{type(error).__name__}: {error}",
                error,
                attempts,
                duration_ms,
                None,
            )
        status = status_code_of(value)
        failed = outcome.breaker_code in (FAILURE, "SF") or outcome.retryable
        return CallResult(
            "failed" if failed else "succeeded",
            None,
            value,
            f"HTTP {status}" if failed and status is not None else None,
            None,
            attempts,
            duration_ms,
            status,
        )

    def _rejected(
        self, exc: CallNotPermitted, started: float, attempts: int
    ) -> CallResult:
        duration_ms = (self._elapsed_clock() - started) * 1000
        return CallResult(
            "rejected", exc.stage, None, str(exc), exc, attempts, duration_ms, None
        )

    # -- snapshots and admin -----------------------------------------------

    def read_snapshot(self) -> tuple[dict[str, Any], list[Any]]:
        """Return the snapshot script's document and the raw recent events."""
        payload = self._breaker_fixed + bulk(self._script_now())
        reply = self._script_or_raise("snapshot", 1, payload)
        document: dict[str, Any] = json.loads(decode(reply[0]))
        # A snapshot can apply a due timer (automatic half-open, half-open
        # max wait), which hooks must hear about like any transition.
        self._publish_transitions(document.pop("new_events", None) or [])
        return document, list(reply[1:])

    def breaker_action(self, action: str) -> list[dict[str, Any]]:
        """Apply an operator action to the breaker and return its events."""
        if not self._breaker_args:
            raise ValueError(
                f"target {self.target!r} has no circuit breaker configured"
            )
        payload = self._breaker_fixed + bulk(self._script_now()) + bulk(action)
        reply = self._script_or_raise("admin", 2, payload)
        self._publish_transitions(list(reply))
        return [parse_event(raw) for raw in reply]

    def _script_or_raise(self, name: str, values: int, payload: bytes) -> Any:
        # `values` is the number of per-call values after the fixed prefix.
        count = self._breaker_fixed_count + values
        try:
            return self._store.run(name, count, payload)
        except STATE_STORE_ERRORS as exc:
            self._state_store_failed(exc)
            raise


class Guard:
    """Protects a with-block: admission on enter, outcome recorded on exit.

    The block runs once, because a with-block cannot be re-run, so there is
    no retry inside it. Call `set_result(response)` to have a returned
    response's status code classified; an exception leaving the block is
    classified and propagates.
    """

    def __init__(self, pipeline: Pipeline, cost: int = 1) -> None:
        self.pipeline = pipeline
        self.cost = cost
        self.result: Any = None
        self._permit = ""
        self._generation: int | None = None
        self._quiet = QUIET_NONE
        self._began = 0.0
        self._token: Any = None

    def set_result(self, value: Any) -> None:
        self.result = value

    def __enter__(self) -> Guard:
        pipeline = self.pipeline
        if pipeline.policy.bulkhead is not None:
            self._permit = _call_ids.next()
        self._generation, self._quiet = pipeline._admit_or_degrade(
            self._permit or _call_ids.next(), True, self.cost
        )
        timeout = pipeline.policy.timeout
        budget = timeout.timeout_duration
        if timeout.overall_deadline is not None:
            budget = min(budget, timeout.overall_deadline)
        self._token = set_attempt(Attempt(1, budget, pipeline.target))
        self._began = pipeline._elapsed_clock()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        pipeline = self.pipeline
        reset_attempt(self._token)
        duration = pipeline._elapsed_clock() - self._began
        if exc is not None and not isinstance(exc, Exception):
            pipeline._record(self._generation, IGNORED, self._permit)
            return
        outcome = pipeline._classify(self.result, exc, duration)
        pipeline._record(
            self._generation, outcome.breaker_code, self._permit, self._quiet
        )
