"""Property test: the Redis breaker against a small in-memory reference model."""

from __future__ import annotations

import uuid
from collections import deque
from typing import Any

import redis
from conftest import REDIS_URL, delete_prefix
from helpers import Boom, Harmless
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
)

from resilience.core import CallNotPermitted, Guard, ManualClock, Pipeline, PolicyConfig

WINDOW = 4
MINIMUM = 3
PERMITTED = 2
SLOW_AFTER = 2.0
WAIT = 10.0
POLICY = {
    "circuit_breaker": {
        "sliding_window_size": WINDOW,
        "minimum_number_of_calls": MINIMUM,
        "failure_rate_threshold": 50,
        "slow_call_rate_threshold": 50,
        "slow_call_duration_threshold": SLOW_AFTER,
        "wait_duration_in_open_state": WAIT,
        "exponential_backoff_multiplier": 2.0,
        "max_wait_duration_in_open_state": 30.0,
        "permitted_number_of_calls_in_half_open_state": PERMITTED,
        "ignore_exceptions": ["helpers.Harmless"],
    }
}


class ReferenceBreaker:
    """The breaker rules written plainly, one process, no Redis."""

    def __init__(self) -> None:
        self.state = "closed"
        self.generation = 0
        self.window: deque[tuple[bool, bool]] = deque(maxlen=WINDOW)
        self.not_permitted = 0
        self.open_until = 0.0
        self.reopens = 0
        self.probes_admitted = 0
        self.probes: list[tuple[bool, bool]] = []

    def transition(self, to: str, now: float) -> None:
        previous = self.state
        self.state = to
        self.generation += 1
        if to == "open":
            self.reopens = self.reopens + 1 if previous == "half_open" else 1
            self.open_until = now + min(30.0, WAIT * 2.0 ** (self.reopens - 1))
            return
        if to != "half_open":
            self.reopens = 0
        self.window.clear()
        self.not_permitted = 0
        if to == "half_open":
            self.probes_admitted = 0
            self.probes = []

    def admit(self, now: float) -> int | None:
        if self.state == "open" and now > self.open_until:
            self.transition("half_open", now)
        if self.state in ("closed", "metrics_only", "disabled"):
            return self.generation
        if self.state == "half_open" and self.probes_admitted < PERMITTED:
            self.probes_admitted += 1
            return self.generation
        self.not_permitted += 1
        return None

    @staticmethod
    def exceeded(calls: list[tuple[bool, bool]]) -> bool:
        failed = sum(1 for f, _ in calls if f)
        slow = sum(1 for _, s in calls if s)
        return failed * 100 >= 50 * len(calls) or slow * 100 >= 50 * len(calls)

    def record(
        self, generation: int, outcome: str, duration: float, now: float
    ) -> None:
        late = generation != self.generation
        if self.state in ("disabled", "forced_open"):
            return
        if outcome == "ignored":
            if self.state == "half_open" and not late and self.probes_admitted > 0:
                self.probes_admitted -= 1
            return
        call = (outcome == "failure", duration > SLOW_AFTER)
        if self.state == "half_open":
            if late:
                return
            self.probes.append(call)
            if len(self.probes) >= min(MINIMUM, PERMITTED):
                self.transition("open" if self.exceeded(self.probes) else "closed", now)
            return
        self.window.append(call)
        counts = self.state == "closed" and not late and len(self.window) >= MINIMUM
        if counts and self.exceeded(list(self.window)):
            self.transition("open", now)

    def buffered(self) -> int:
        return len(self.probes) if self.state == "half_open" else len(self.window)


class BreakerMachine(RuleBasedStateMachine):
    calls = Bundle("calls")

    def __init__(self) -> None:
        super().__init__()
        self.client = redis.Redis.from_url(REDIS_URL)
        self.prefix = f"test-core-model-{uuid.uuid4().hex[:12]}"
        self.clock = ManualClock(1_000_000.0)
        self.pipeline = Pipeline(
            "model",
            PolicyConfig.from_dict(POLICY),
            self.client,
            clock=self.clock,
            key_prefix=self.prefix,
        )
        self.model = ReferenceBreaker()

    def teardown(self) -> None:
        delete_prefix(self.client, self.prefix)
        self.client.close()

    @rule(target=calls)
    def start_call(self) -> Any:
        guard = Guard(self.pipeline)
        expected = self.model.admit(self.clock.now())
        try:
            guard.__enter__()
        except CallNotPermitted:
            assert expected is None
            return None
        assert expected is not None
        return (guard, expected, self.clock.now())

    @rule(
        call=consumes(calls), outcome=st.sampled_from(["success", "failure", "ignored"])
    )
    def finish_call(self, call: Any, outcome: str) -> None:
        if call is None:
            return
        guard, generation, started = call
        error = {"success": None, "failure": Boom("x"), "ignored": Harmless("x")}[
            outcome
        ]
        guard.__exit__(None if error is None else type(error), error, None)
        now = self.clock.now()
        self.model.record(generation, outcome, now - started, now)

    @rule(seconds=st.sampled_from([0.5, 2.0, 2.5, WAIT, 0.000001, 20.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(action=st.sampled_from(["force_open", "disable", "metrics_only", "reset"]))
    def admin(self, action: str) -> None:
        getattr(self.pipeline.breaker, action)()
        target = {
            "force_open": "forced_open",
            "disable": "disabled",
            "metrics_only": "metrics_only",
            "reset": "closed",
        }[action]
        self.model.transition(target, self.clock.now())

    @invariant()
    def same_state(self) -> None:
        snapshot = self.pipeline.breaker.snapshot()
        assert snapshot["state"] == self.model.state
        assert snapshot["buffered_calls"] == self.model.buffered()
        assert snapshot["not_permitted_calls"] == self.model.not_permitted


BreakerMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None
)
TestBreakerModel = BreakerMachine.TestCase
