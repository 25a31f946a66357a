"""Fixtures shared by the whole suite."""

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.stack import Stack, running_stack, suite_redis_url


def pytest_configure(config: pytest.Config) -> None:
    from django.conf import settings

    # The span exporter's thread would write to the test database outside
    # any test's transaction; tracing tests turn it back on where needed.
    settings.TRACING_DATABASE_EXPORT = False

    # Start from an empty REDIS_URL database: a message or a throttle key
    # left by an earlier session would change what the sweeper does.
    if os.environ.get("REDIS_URL"):
        import redis

        redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The whole control plane, started once for the session's stack tests."""
    tmp_dir: Path = tmp_path_factory.mktemp("stack")
    with running_stack(tmp_dir, suite_redis_url(1)) as running:
        yield running


@pytest.fixture(autouse=True)
def fresh_policy_cache() -> Iterator[None]:
    """Forget cached policies, so one test's database never leaks into another.

    Every test database starts policies at version 1, so a copy cached by an
    earlier test would look current to the version check.
    """
    from resilience.services import invalidate_policy

    invalidate_policy()
    yield
    invalidate_policy()


@pytest.fixture
def operator(db: Any) -> Any:
    """A user in the operator group, who may write."""
    from django.conf import settings
    from django.contrib.auth.models import Group, User

    user = User.objects.create_user("olivia", password="operator-pass")
    group, _ = Group.objects.get_or_create(name=settings.OPERATOR_GROUP)
    user.groups.add(group)
    return user


@pytest.fixture
def reader(db: Any) -> Any:
    """A logged-in user without the operator role, who may only read."""
    from django.contrib.auth.models import User

    return User.objects.create_user("rafael", password="reader-pass")


@pytest.fixture
def operator_client(operator: Any) -> Any:
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(operator)
    return client


@pytest.fixture
def reader_client(reader: Any) -> Any:
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(reader)
    return client
