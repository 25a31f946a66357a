"""The orchestrator's guarantees, driven in process with Python steps.

The enqueue functions are replaced by a queue that the test drains, so each
test decides when a "worker" runs a task; no broker is involved. Steps are
Python functions registered here, so no HTTP is involved either.
"""

import logging
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from resilience import services as resilience
from resilience.models import Policy, Target
from sagas import actions, services, sweeper
from sagas.models import (
    RunStatus,
    RunStatusChange,
    SagaDefinition,
    SagaRun,
    StepRun,
    StepStatus,
    StepStatusChange,
)
from sagas.registry import StepRejected, saga_step

pytestmark = pytest.mark.django_db(transaction=True)

calls: list[tuple[str, str]] = []
behaviour: dict[str, Callable[[], Any]] = {}


@saga_step
def recorded(payload: Any, *, idempotency_key: str, run_id: str) -> dict[str, str]:
    """Record the key and do what the test set for this key's step and part."""
    calls.append((payload["name"], idempotency_key))
    action = behaviour.get(idempotency_key.split(":", 1)[1])
    if action is not None:
        action()
    return {"done": payload["name"]}


def fail_definitely() -> None:
    raise StepRejected("card declined")


def fail_unknown() -> None:
    raise ConnectionResetError("peer went away after the request was sent")


def step(name: str) -> dict[str, Any]:
    function = "tests.sagas.test_durability.recorded"
    return {
        "name": name,
        "target": "python",
        "action": {"function": function, "payload": {"name": name}},
        "compensation": {"function": function, "payload": {"name": f"undo-{name}"}},
        "retry": {"max_attempts": 1},
        "compensation_retry": {"max_attempts": 2, "initial_interval": 0.01},
    }


class Queue:
    """Stands in for the broker: tasks wait here until the test runs them."""

    def __init__(self) -> None:
        self.tasks: list[tuple[str, Any]] = []
        # The countdown of every message sent, in order, None for "now".
        self.countdowns: list[float | None] = []

    def run_one(self) -> None:
        kind, args = self.tasks.pop(0)
        if kind == "step":
            services.execute_step(*args)
        else:
            services.compensate_next(*args)

    def drain(self, limit: int = 100) -> None:
        for _ in range(limit):
            if not self.tasks:
                return
            self.run_one()
        raise AssertionError(f"tasks still queued after {limit}: {self.tasks}")


@pytest.fixture
def queue(monkeypatch: pytest.MonkeyPatch, settings: Any) -> Iterator[Queue]:
    # Each step goes through the queue, so a test decides when it runs.
    settings.SAGA_INLINE_SECONDS = 0
    queued = Queue()

    def enqueue_step(run_id: Any, index: int, countdown: float | None = None) -> None:
        queued.tasks.append(("step", (run_id, index)))
        queued.countdowns.append(countdown)

    def enqueue_compensation(run_id: Any, countdown: float | None = None) -> None:
        queued.tasks.append(("compensation", (run_id,)))
        queued.countdowns.append(countdown)

    for module in (services, sweeper):
        monkeypatch.setattr(module, "enqueue_step", enqueue_step)
        monkeypatch.setattr(module, "enqueue_compensation", enqueue_compensation)
    monkeypatch.setattr(actions, "enqueue_step", enqueue_step)
    monkeypatch.setattr(actions, "enqueue_compensation", enqueue_compensation)
    calls.clear()
    behaviour.clear()
    yield queued


def start(names: list[str]) -> SagaRun:
    definition = SagaDefinition.objects.create(
        name=f"saga-{len(names)}-{timezone.now().timestamp()}".replace(".", "-")[:64],
        input_schema=[],
        steps=[step(name) for name in names],
    )
    return services.start_run(definition, {})


def statuses(run: SagaRun) -> list[str]:
    return list(run.steps.order_by("index").values_list("status", flat=True))


def test_run_completes_and_history_is_kept(queue: Queue) -> None:
    run = start(["a", "b", "c"])

    queue.drain()

    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    assert statuses(run) == ["succeeded"] * 3
    history = list(
        RunStatusChange.objects.filter(run=run).values_list("from_status", "to_status")
    )
    assert history == [
        ("", "pending"),
        ("pending", "running"),
        ("running", "completed"),
    ]
    assert StepStatusChange.objects.filter(step__run=run).count() == 6


def test_terminal_run_never_moves_back(queue: Queue) -> None:
    run = start(["a"])
    queue.drain()

    moved = services.transition_run(
        run.pk, [RunStatus.RUNNING], RunStatus.COMPENSATING, "late"
    )

    run.refresh_from_db()
    assert moved is False
    assert run.status == RunStatus.COMPLETED


def test_keys_are_stable_per_step_and_part(queue: Queue) -> None:
    behaviour["c:action"] = fail_definitely
    run = start(["a", "b", "c"])

    queue.drain()

    assert calls == [
        ("a", f"{run.pk}:a:action"),
        ("b", f"{run.pk}:b:action"),
        ("c", f"{run.pk}:c:action"),
        ("undo-b", f"{run.pk}:b:compensation"),
        ("undo-a", f"{run.pk}:a:compensation"),
    ]


def test_definite_failure_compensates_in_reverse(queue: Queue) -> None:
    behaviour["c:action"] = fail_definitely
    run = start(["a", "b", "c"])

    queue.drain()

    run.refresh_from_db()
    assert run.status == RunStatus.COMPENSATED
    assert statuses(run) == ["compensated", "compensated", "failed"]
    assert run.needs_attention is False


def test_unknown_outcome_is_compensated_too(queue: Queue) -> None:
    behaviour["b:action"] = fail_unknown
    run = start(["a", "b", "c"])

    queue.drain()

    run.refresh_from_db()
    failed = run.steps.get(name="b")
    assert run.status == RunStatus.COMPENSATED
    assert failed.outcome_unknown is True
    assert statuses(run) == ["compensated", "compensated", "pending"]
    assert ("undo-b", f"{run.pk}:b:compensation") in calls


def test_failed_compensation_needs_attention(queue: Queue) -> None:
    behaviour["c:action"] = fail_definitely
    behaviour["b:compensation"] = fail_unknown
    run = start(["a", "b", "c"])

    queue.drain()

    run.refresh_from_db()
    assert run.status == RunStatus.COMPENSATION_FAILED
    assert run.needs_attention is True
    # The other compensations still ran.
    assert statuses(run) == ["compensated", "compensation_failed", "failed"]
    assert run.steps.get(name="b").compensation_attempts == 2


def test_retry_compensates_the_failed_step_again(queue: Queue) -> None:
    behaviour["c:action"] = fail_definitely
    behaviour["b:compensation"] = fail_unknown
    run = start(["a", "b", "c"])
    queue.drain()
    del behaviour["b:compensation"]

    actions.retry(run, "olivia")
    queue.drain()

    run.refresh_from_db()
    assert run.status == RunStatus.COMPENSATED
    assert statuses(run) == ["compensated", "compensated", "failed"]
    assert calls.count(("undo-a", f"{run.pk}:a:compensation")) == 1


def test_resolve_needs_a_note_and_is_kept(queue: Queue) -> None:
    behaviour["b:action"] = fail_definitely
    behaviour["a:compensation"] = fail_unknown
    run = start(["a", "b"])
    queue.drain()
    user = User.objects.create_user("olivia")

    with pytest.raises(actions.ActionNotAllowed, match="note"):
        actions.resolve(run, user, "  ")
    actions.resolve(run, user, "refunded by hand in the payment console")

    run.refresh_from_db()
    assert run.status == RunStatus.COMPENSATION_FAILED
    assert run.needs_attention is False
    assert run.resolved_by == user
    last = RunStatusChange.objects.filter(run=run).last()
    assert last is not None
    assert "refunded by hand" in last.reason


def test_cancel_compensates_completed_steps(queue: Queue) -> None:
    run = start(["a", "b", "c"])
    services.execute_step(run.pk, 0)

    actions.cancel(run, "olivia")
    queue.drain()

    run.refresh_from_db()
    assert run.status == RunStatus.COMPENSATED
    assert statuses(run) == ["compensated", "pending", "pending"]
    with pytest.raises(actions.ActionNotAllowed, match="compensated"):
        actions.cancel(run, "olivia")


def test_stale_worker_result_is_rejected(
    queue: Queue, caplog: pytest.LogCaptureFixture
) -> None:
    run = start(["a", "b"])

    def lose_lease() -> None:
        # The sweeper gave the step to another worker while this one ran.
        StepRun.objects.filter(run=run, name="a").update(
            lease_token=99, lease_expires_at=timezone.now() + timedelta(seconds=60)
        )

    behaviour["a:action"] = lose_lease
    queue.tasks.clear()
    with caplog.at_level(logging.WARNING, logger="sagas.services"):
        services.execute_step(run.pk, 0)

    stale = run.steps.get(name="a")
    assert stale.status == StepStatus.RUNNING
    assert stale.lease_token == 99
    assert "stale result rejected" in caplog.text
    assert queue.tasks == []


def test_expired_lease_is_resumed_by_sweeper(queue: Queue) -> None:
    run = start(["a", "b"])
    queue.tasks.clear()
    services.transition_run(run.pk, [RunStatus.PENDING], RunStatus.RUNNING, "test")
    StepRun.objects.filter(run=run, index=0).update(
        status=StepStatus.RUNNING,
        lease_token=1,
        action_claims=1,
        lease_expires_at=timezone.now() - timedelta(seconds=1),
    )

    resumed = sweeper.resume_stalled_runs()
    queue.drain()

    run.refresh_from_db()
    assert resumed == 1
    assert run.status == RunStatus.COMPLETED
    assert run.steps.get(index=0).lease_token == 2


def test_step_that_keeps_killing_workers_is_given_up(queue: Queue) -> None:
    run = start(["a", "b"])
    queue.run_one()
    # Step b's message was delivered three times and each worker died.
    StepRun.objects.filter(run=run, index=1).update(
        status=StepStatus.RUNNING,
        lease_token=5,
        action_claims=3,
        lease_expires_at=timezone.now() - timedelta(seconds=1),
    )

    sweeper.resume_stalled_runs()
    queue.drain()

    run.refresh_from_db()
    given_up = run.steps.get(index=1)
    assert given_up.status == StepStatus.COMPENSATED
    assert given_up.outcome_unknown is True
    assert "given up after 3 claims" in given_up.error
    assert run.status == RunStatus.COMPENSATED


def test_unregistered_function_fails_step(queue: Queue) -> None:
    definition = SagaDefinition.objects.create(
        name="unregistered",
        steps=[
            {
                "name": "x",
                "target": "python",
                "action": {"function": "os.system", "payload": "true"},
            }
        ],
    )
    run = services.start_run(definition, {})

    queue.drain()

    run.refresh_from_db()
    assert run.status == RunStatus.COMPENSATED
    assert "not a registered saga step" in run.steps.get().error


def test_compensation_waits_while_breaker_open(queue: Queue) -> None:
    target = Target.objects.create(name="guarded", base_url="http://127.0.0.1:9")
    Policy.objects.create(
        target=target, config={"circuit_breaker": {"minimum_number_of_calls": 5}}
    )
    breaker = resilience.pipeline("guarded").breaker
    breaker.reset()
    definition = SagaDefinition.objects.create(
        name="guarded-saga",
        steps=[{**step("a"), "target": "guarded"}, step("b")],
    )
    behaviour["b:action"] = fail_definitely
    run = services.start_run(definition, {})
    queue.run_one()
    breaker.force_open()
    queue.drain()

    run.refresh_from_db()
    waiting = run.steps.get(name="a")
    assert run.status == RunStatus.COMPENSATING
    assert waiting.status == StepStatus.COMPENSATING
    assert waiting.compensation_attempts == 0
    assert waiting.compensation_claims == 0
    assert "next try at" in waiting.compensation_error

    breaker.reset()
    StepRun.objects.filter(pk=waiting.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    SagaRun.objects.filter(pk=run.pk).update(
        updated_at=timezone.now() - timedelta(minutes=5)
    )
    sweeper.resume_stalled_runs()
    queue.drain()

    run.refresh_from_db()
    assert run.status == RunStatus.COMPENSATED
    assert run.steps.get(name="a").status == StepStatus.COMPENSATED


def test_sweeper_completes_run_whose_worker_died(queue: Queue) -> None:
    run = start(["a", "b"])
    queue.drain()
    # The worker stored the last step's result and died before the run's
    # own change: put the run back as it would have been left.
    SagaRun.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING)
    StepRun.objects.filter(run=run).update(
        finished_at=timezone.now() - timedelta(minutes=1)
    )

    resumed = sweeper.resume_stalled_runs()

    run.refresh_from_db()
    assert resumed == 1
    assert run.status == RunStatus.COMPLETED
    last = run.status_changes.last()
    assert last is not None
    assert "completed by the sweeper" in last.reason


def waiting_step(name: str, max_attempts: int) -> dict[str, Any]:
    """A step whose retries back off 5 s, more than SAGA_MAX_INLINE_WAIT."""
    retry = {"max_attempts": max_attempts, "initial_interval": 5, "jitter": "none"}
    return {**step(name), "retry": retry}


def start_waiting(name: str, max_attempts: int) -> SagaRun:
    definition = SagaDefinition.objects.create(
        name=f"waits-{timezone.now().timestamp()}".replace(".", "-"),
        steps=[waiting_step(name, max_attempts), step("next")],
    )
    return services.start_run(definition, {})


def wake(step_run: StepRun) -> None:
    """Let the wait pass: the wake-up time is the step's lease end."""
    StepRun.objects.filter(pk=step_run.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )


def test_long_retry_wait_parks_step_in_database(queue: Queue) -> None:
    behaviour["a:action"] = fail_unknown
    run = start_waiting("a", max_attempts=3)

    queue.run_one()

    parked = run.steps.get(name="a")
    assert parked.status == StepStatus.WAITING
    assert parked.attempts == 1
    assert parked.resume_attempt == 2
    assert parked.resume_delay == 5.0
    assert parked.outcome_unknown is True
    assert parked.action_claims == 0
    assert parked.lease_expires_at is not None
    wait = (parked.lease_expires_at - timezone.now()).total_seconds()
    assert 4.0 < wait <= 5.0
    assert "next try at" in parked.error
    # The wake-up message is delayed by the backoff, not sent at once.
    assert queue.tasks == [("step", (run.pk, 0))]
    assert queue.countdowns == [None, pytest.approx(5.0 + services.WAKE_MARGIN)]


def test_step_is_not_resumed_before_its_wait_ends(queue: Queue) -> None:
    behaviour["a:action"] = fail_unknown
    run = start_waiting("a", max_attempts=3)
    queue.run_one()

    queue.run_one()  # the delayed message, delivered early
    assert sweeper.resume_stalled_runs() == 0

    assert run.steps.get(name="a").status == StepStatus.WAITING
    assert calls == [("a", f"{run.pk}:a:action")]


def test_resumed_step_continues_its_retry_budget(queue: Queue) -> None:
    behaviour["a:action"] = fail_unknown
    run = start_waiting("a", max_attempts=2)
    queue.run_one()
    parked = run.steps.get(name="a")
    queue.tasks.clear()

    wake(parked)
    assert sweeper.resume_stalled_runs() == 1
    queue.drain()

    run.refresh_from_db()
    failed = run.steps.get(name="a")
    assert run.status == RunStatus.COMPENSATED
    assert failed.status == StepStatus.COMPENSATED
    numbers = list(failed.tries.filter(kind="action").values_list("number", flat=True))
    assert numbers == [1, 2]
    assert failed.resume_attempt is None
    history = list(
        StepStatusChange.objects.filter(step=failed)
        .order_by("at", "pk")
        .values_list("to_status", flat=True)
    )
    assert history[:4] == ["running", "waiting", "running", "failed"]
    # Every attempt sent the same key, and the undo ran once.
    keys = {key for name, key in calls if name == "a"}
    assert keys == {f"{run.pk}:a:action"}
    assert calls.count(("undo-a", f"{run.pk}:a:compensation")) == 1


def test_step_that_succeeds_after_wait_moves_on(queue: Queue) -> None:
    failures = iter([fail_unknown])

    def fail_once() -> None:
        next(failures, lambda: None)()

    behaviour["a:action"] = fail_once
    run = start_waiting("a", max_attempts=3)
    queue.run_one()
    queue.tasks.clear()

    wake(run.steps.get(name="a"))
    sweeper.resume_stalled_runs()
    queue.drain()

    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    done = run.steps.get(name="a")
    assert done.status == StepStatus.SUCCEEDED
    assert done.attempts == 2
    assert done.action_claims == 1


def test_cancel_while_waiting_compensates_possible_effect(queue: Queue) -> None:
    behaviour["a:action"] = fail_unknown
    run = start_waiting("a", max_attempts=3)
    queue.run_one()
    queue.tasks.clear()

    actions.cancel(run, User.objects.create(username="op-wait"))
    queue.drain()

    run.refresh_from_db()
    cancelled = run.steps.get(name="a")
    assert run.status == RunStatus.COMPENSATED
    assert cancelled.status == StepStatus.COMPENSATED
    assert run.steps.get(name="next").status == StepStatus.PENDING
    assert ("undo-a", f"{run.pk}:a:compensation") in calls


def start_pausing(names: list[str], pausing: str) -> SagaRun:
    steps = [
        {**step(name), "on_failure": "pause"} if name == pausing else step(name)
        for name in names
    ]
    definition = SagaDefinition.objects.create(
        name=f"pauses-{timezone.now().timestamp()}".replace(".", "-"), steps=steps
    )
    return services.start_run(definition, {})


def test_failed_step_pauses_run_for_operator(queue: Queue) -> None:
    behaviour["b:action"] = fail_definitely
    run = start_pausing(["a", "b", "c"], pausing="b")

    queue.drain()

    run.refresh_from_db()
    assert run.status == RunStatus.PAUSED
    assert run.needs_attention is True
    assert "card declined" in run.error
    assert statuses(run) == ["succeeded", "failed", "pending"]
    assert not [name for name, _ in calls if name.startswith("undo-")]
    # Nothing wakes a paused run: it waits for the operator.
    assert sweeper.resume_stalled_runs() == 0


def test_retry_sends_paused_step_again_with_same_key(queue: Queue) -> None:
    behaviour["b:action"] = fail_definitely
    run = start_pausing(["a", "b", "c"], pausing="b")
    queue.drain()
    del behaviour["b:action"]

    actions.retry(run, User.objects.create(username="op-pause"))
    queue.drain()

    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    assert run.needs_attention is False
    b_keys = [key for name, key in calls if name == "b"]
    assert b_keys == [f"{run.pk}:b:action"] * 2
    history = list(
        StepStatusChange.objects.filter(step__run=run, step__name="b")
        .order_by("at", "pk")
        .values_list("to_status", "reason")
    )
    assert ("pending", "retried by op-pause") in history


def test_cancel_paused_run_compensates(queue: Queue) -> None:
    behaviour["b:action"] = fail_unknown
    run = start_pausing(["a", "b", "c"], pausing="b")
    queue.drain()

    actions.cancel(run, User.objects.create(username="op-cancel"))
    queue.drain()

    run.refresh_from_db()
    assert run.status == RunStatus.COMPENSATED
    undone = [name for name, _ in calls if name.startswith("undo-")]
    assert undone == ["undo-b", "undo-a"]


def test_retry_refused_unless_paused_or_compensation_failed(queue: Queue) -> None:
    run = start(["a"])
    queue.drain()

    with pytest.raises(actions.ActionNotAllowed, match="this one is completed"):
        actions.retry(run, User.objects.create(username="op-late"))


def test_worker_runs_next_steps_itself_within_budget(
    queue: Queue, settings: Any
) -> None:
    settings.SAGA_INLINE_SECONDS = 60
    run = start(["a", "b", "c"])

    queue.run_one()

    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    assert queue.tasks == []
    tokens = list(run.steps.order_by("index").values_list("lease_token", flat=True))
    assert tokens == [1, 1, 1]


def test_redelivered_message_moves_past_succeeded_steps(
    queue: Queue, settings: Any
) -> None:
    run = start(["a", "b", "c"])
    queue.run_one()
    queue.tasks.clear()  # the message for b was lost with its worker
    settings.SAGA_INLINE_SECONDS = 60

    services.execute_step(run.pk, 0)  # a's message, delivered again

    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    assert [name for name, _ in calls] == ["a", "b", "c"]
