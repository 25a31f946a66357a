"""Each process drops a cached policy on a pub/sub message, or within 0.5 s.

The subscriber runs against the suite's real Redis. Rows are changed with
a queryset update, as another process would change them, so only the
message or the version check can tell this process.
"""

import json
import os
import threading
import time
from typing import Any

import pytest

from resilience import policies, services
from resilience.models import Policy, Target
from tests.policies.conftest import VALID_POLICY


def wait_until(condition: Any, timeout: float) -> float:
    """Poll until condition() is true; return the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.01)
    raise AssertionError(f"condition not met within {timeout} s")


@pytest.fixture
def stored(target: Target, operator: Any) -> Policy:
    config = policies.normalize(VALID_POLICY)
    policy, _ = policies.save_policy(target, config, operator)
    return policy


def change_elsewhere(policy: Policy, limit: int) -> int:
    config = dict(policy.config)
    config["rate_limiter"] = {**config["rate_limiter"], "limit_for_period": limit}
    version = policy.version + 1
    Policy.objects.filter(pk=policy.pk).update(config=config, version=version)
    return version


def limit_of(name: str) -> int:
    limiter = services.load_policy(name).rate_limiter
    assert limiter is not None
    return limiter.limit_for_period


def test_message_drops_cached_policy(
    stored: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only the message can refresh the copy while the version check waits.
    monkeypatch.setattr(services, "POLICY_VERSION_CHECK_SECONDS", 60.0)
    assert limit_of("payment") == 100
    redis = services.redis_client()
    wait_until(lambda: redis.pubsub_numsub(services.POLICY_CHANNEL)[0][1] > 0, 5)
    # The subscriber empties the cache once it has subscribed; cache again.
    time.sleep(0.2)
    assert limit_of("payment") == 100

    version = change_elsewhere(stored, 7)
    assert limit_of("payment") == 100
    redis.publish(
        services.POLICY_CHANNEL, json.dumps({"target": "payment", "version": version})
    )

    assert wait_until(lambda: limit_of("payment") == 7, 1.0) < 1.0
    assert services.load_policy("payment").version == version


def test_version_check_catches_lost_message(stored: Policy) -> None:
    assert limit_of("payment") == 100

    change_elsewhere(stored, 3)

    assert wait_until(lambda: limit_of("payment") == 3, 1.0) <= (
        services.POLICY_VERSION_CHECK_SECONDS + 0.2
    )


def test_saved_change_published_on_commit(
    stored: Policy, operator: Any, on_commit: Any
) -> None:
    redis = services.redis_client()
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(services.POLICY_CHANNEL)
    config = policies.normalize({**VALID_POLICY, "bulkhead": {}})

    with on_commit():
        policy, _ = policies.save_policy(stored.target, config, operator)

    deadline = time.monotonic() + 2
    message = None
    while time.monotonic() < deadline and message is None:
        message = pubsub.get_message(timeout=0.1)
    pubsub.close()
    assert message is not None
    assert json.loads(message["data"]) == {"target": "payment", "version": 2}
    assert policy.version == 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_starts_own_subscriber(stored: Policy) -> None:
    services.load_policy("payment")
    read_end, write_end = os.pipe()

    pid = os.fork()
    if pid == 0:
        # Only the subscriber thread is checked here: the child must not
        # touch the parent's database connection.
        services._ensure_subscriber()
        names = [t.name for t in threading.enumerate()]
        ok = services._subscriber_pid == os.getpid() and "policy-subscriber" in names
        os.write(write_end, b"1" if ok else b"0")
        os._exit(0)

    os.close(write_end)
    result = os.read(read_end, 1)
    os.waitpid(pid, 0)
    os.close(read_end)
    assert result == b"1"
