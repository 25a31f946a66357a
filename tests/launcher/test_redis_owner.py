"""One control plane per Redis database.

The claim's rules run against the suite's REDIS_URL database. The last
tests start a real worker, and a launcher, of another control plane
(another SQLite database) on the session stack's Redis database, and
expect each to exit before it takes any task.
"""

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from controlplane import ownership
from controlplane.launcher import BASE_DIR, free_port, port_free
from tests.stack import Stack, suite_redis_url


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    client.delete(ownership.OWNER_KEY)
    yield client
    client.delete(ownership.OWNER_KEY)


def test_free_database_is_claimed_with_expiry(client: redis.Redis) -> None:
    ownership.claim(client, "sqlite3:/a")

    assert client.get(ownership.OWNER_KEY) == b"sqlite3:/a"
    ttl = client.ttl(ownership.OWNER_KEY)
    assert 0 < ttl <= ownership.OWNER_TTL_SECONDS


def test_same_database_claims_again(client: redis.Redis) -> None:
    ownership.claim(client, "sqlite3:/a")
    client.expire(ownership.OWNER_KEY, 5)

    ownership.claim(client, "sqlite3:/a")

    assert client.ttl(ownership.OWNER_KEY) > 5


def test_other_database_is_rejected(client: redis.Redis) -> None:
    ownership.claim(client, "sqlite3:/a")

    with pytest.raises(ownership.RedisInUse, match="another database"):
        ownership.claim(client, "postgresql://db:5432/b")
    assert client.get(ownership.OWNER_KEY) == b"sqlite3:/a"


def test_release_deletes_only_own_claim(client: redis.Redis) -> None:
    ownership.claim(client, "sqlite3:/a")

    ownership.release(client, "sqlite3:/other")
    assert client.exists(ownership.OWNER_KEY)

    ownership.release(client, "sqlite3:/a")
    assert not client.exists(ownership.OWNER_KEY)


@pytest.mark.stack
def test_worker_of_other_database_exits(stack: Stack, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "REDIS_URL": suite_redis_url(1),
        "CONTROLPLANE_DATA_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "controlplane.settings",
    }
    env.pop("DATABASE_URL", None)
    command = [sys.executable, "-m", "celery", "-A", "controlplane"]
    command += ["worker", "--pool", "solo", "--loglevel", "INFO"]

    finished = subprocess.run(
        command, env=env, cwd=BASE_DIR, capture_output=True, timeout=120
    )

    output = finished.stdout.decode() + finished.stderr.decode()
    assert finished.returncode == ownership.EXIT_REDIS_IN_USE, output
    assert "in use by a control plane with another database" in output
    assert str(tmp_path) in output
    assert stack.get("/api/runs/").status_code == 200


@pytest.mark.stack
def test_second_launcher_stops_before_starting(stack: Stack, tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": suite_redis_url(1),
        "CONTROLPLANE_DATA_DIR": str(tmp_path),
    }
    env.pop("DATABASE_URL", None)
    command = [sys.executable, "-m", "controlplane.launcher", "run", "--port"]

    finished = subprocess.run(
        [*command, str(port)], env=env, cwd=BASE_DIR, capture_output=True, timeout=60
    )

    output = finished.stdout.decode() + finished.stderr.decode()
    assert finished.returncode == ownership.EXIT_REDIS_IN_USE, output
    assert "in use by a control plane with another database" in output
    assert not (tmp_path / "controlplane.sqlite3").exists()
    assert port_free(port)
