"""The whole control plane started as subprocesses, for end-to-end tests.

``Stack`` runs ``python -m controlplane.launcher run`` exactly as ``make run``
does (gunicorn, a real Celery worker process, Celery beat, the demo services
over real HTTP), on a free port, with a fresh SQLite database in a temporary
folder and its own Redis database number, and talks to it over HTTP.
"""

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
import requests

from controlplane.launcher import BASE_DIR, free_port

TERMINAL = {
    "completed",
    "compensated",
    "compensation_failed",
    "committed",
    "aborted",
    "needs_attention",
}
RELAY_CRASH_FILE = "crash-relay-before-publish"


# Redis numbers its databases 0 to 15 unless configured otherwise.
REDIS_DATABASES = 16


def redis_url_with_db(url: str, database: int) -> str:
    """Return the same Redis server's URL with another database number."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", "", ""))


def suite_redis_url(offset: int) -> str:
    """Return REDIS_URL with its database number raised by ``offset``.

    The suite owns three databases: REDIS_URL's (the resilience core's
    tests), the next one (the session's stack) and the one after (the
    control planes that tests start of their own, one at a time). Numbers
    wrap after 15, so REDIS_URL ending in /15 gives 15, 0 and 1. Every
    stack flushes its database, so without REDIS_URL the test fails rather
    than guess a Redis to flush.
    """
    base = os.environ.get("REDIS_URL")
    if not base:
        raise RuntimeError(
            "REDIS_URL is not set: run the suite with `make test`, which finds "
            "or starts a Redis, or set REDIS_URL to a Redis you may flush."
        )
    database = (int(urlsplit(base).path.strip("/") or 0) + offset) % REDIS_DATABASES
    return redis_url_with_db(base, database)


# Commands a Celery worker blocks in while it waits for a task.
CONSUMER_COMMANDS = {"brpop", "blpop", "bzpopmin"}


def flush_unused(redis_url: str) -> None:
    """Empty the Redis database, unless a worker of another process uses it.

    A worker still blocked on the database's queue belongs to a control
    plane that is running (a killed one's connections are closed), whose
    queue and state the flush would destroy and whose worker would then
    take this stack's tasks.
    """
    client = redis.Redis.from_url(redis_url)
    database = client.connection_pool.connection_kwargs.get("db", 0)
    consumers = [
        entry
        for entry in client.client_list()
        if str(entry.get("db")) == str(database)
        and entry.get("cmd") in CONSUMER_COMMANDS
    ]
    if consumers:
        raise RuntimeError(
            f"Redis database {database} at {redis_url} has {len(consumers)} "
            "consumer(s) waiting on a queue, so a control plane runs on it; "
            "stop it or set REDIS_URL to another database."
        )
    client.flushdb()


class Stack:
    """A running control plane and an API session logged in as the demo user."""

    def __init__(
        self,
        base_url: str,
        process: subprocess.Popen[bytes],
        data_dir: Path,
        redis_url: str = "",
    ) -> None:
        self.base_url = base_url
        self.process = process
        self.data_dir = data_dir
        # The Redis database of this stack's broker and shared state.
        self.redis_url = redis_url
        self.api = requests.Session()
        token = self.api.post(
            f"{base_url}/api/auth/token/",
            json={"username": "demo", "password": "demo"},
            timeout=10,
        ).json()["token"]
        self.api.headers["Authorization"] = f"Token {token}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        return self.api.get(self.url(path), **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        return self.api.post(self.url(path), **kwargs)

    def put(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        return self.api.put(self.url(path), **kwargs)

    def pid(self, name: str) -> int:
        """Return the pid of a child of the launcher: web, worker or beat."""
        return int((self.data_dir / "pids" / f"{name}.pid").read_text())

    def arm_relay_crash(self) -> Path:
        """Make the outbox relay exit before its next publish; return the file.

        The relay deletes the file as it exits, so it crashes once.
        """
        path = self.data_dir / RELAY_CRASH_FILE
        path.touch()
        return path

    def service_state(self, service: str) -> dict[str, Any]:
        response = requests.get(self.url(f"/demo/{service}/state/"), timeout=10)
        response.raise_for_status()
        return dict(response.json())

    def set_fault(self, service: str, error_rate: float, latency_ms: int = 0) -> None:
        response = self.put(
            f"/api/faults/{service}/",
            json={"error_rate": error_rate, "latency_ms": latency_ms},
        )
        assert response.status_code == 200, response.text

    def start_run(self, saga: str, data: dict[str, Any]) -> dict[str, Any]:
        response = self.post(
            "/api/runs/",
            json={"saga": saga, "input": data},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    def wait_for_run(self, run_id: str, timeout: float = 90.0) -> dict[str, Any]:
        """Poll the run until it is terminal; fail with its state if not."""
        deadline = time.monotonic() + timeout
        run: dict[str, Any] = {}
        while time.monotonic() < deadline:
            run = self.get(f"/api/runs/{run_id}/").json()
            if run["status"] in TERMINAL:
                return run
            time.sleep(0.2)
        raise AssertionError(f"run {run_id} not terminal after {timeout}s: {run}")


@contextlib.contextmanager
def fresh_database() -> Iterator[str | None]:
    """Yield the URL of an empty PostgreSQL database, or None for SQLite.

    With a PostgreSQL ``DATABASE_URL``, the stack gets a database of its own
    next to the one in the URL, dropped afterwards; otherwise it uses a
    SQLite file in its data folder.
    """
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        yield None
        return
    import psycopg

    # Unique per call: the session's stack and a chaos run may both hold one.
    name = f"controlplane_stack_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    parts = urlsplit(url)
    admin_url = urlunsplit((parts.scheme, parts.netloc, "/postgres", "", ""))
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def running_stack(
    tmp_dir: Path, redis_url: str, extra_env: dict[str, str] | None = None
) -> Iterator[Stack]:
    """Start the control plane, yield it, and stop every process after.

    ``extra_env`` adds settings for this stack only, such as a crash point.
    """
    flush_unused(redis_url)
    with fresh_database() as database_url:
        env = {
            **os.environ,
            "CONTROLPLANE_DATA_DIR": str(tmp_dir),
            "REDIS_URL": redis_url,
            "WORKER_CONCURRENCY": "4",
            # Short leases and sweeps, so a lost worker's step resumes in
            # seconds rather than the production defaults' 15 s.
            "SAGA_LEASE_SECONDS": "3",
            "SAGA_SWEEP_INTERVAL": "1",
            # Creating this file makes the outbox relay exit before its next
            # publish (see Stack.arm_relay_crash).
            "OUTBOX_RELAY_CRASH_FILE": str(tmp_dir / RELAY_CRASH_FILE),
        }
        env.update(extra_env or {})
        if database_url:
            env["DATABASE_URL"] = database_url
        yield from _launch(tmp_dir, env)


@contextlib.contextmanager
def private_stack(tmp_dir: Path, extra_env: dict[str, str]) -> Iterator[Stack]:
    """Start a stack with settings of its own, for one test module.

    It runs on the third of the suite's Redis databases (see
    ``suite_redis_url``), which serves one such stack at a time, and flushes
    it again when it stops, so none of its keys reach later tests.
    """
    redis_url = suite_redis_url(2)
    try:
        with running_stack(tmp_dir, redis_url, extra_env) as stack:
            yield stack
    finally:
        redis.Redis.from_url(redis_url).flushdb()


def _launch(tmp_dir: Path, env: dict[str, str]) -> Iterator[Stack]:
    port = free_port()
    log = (tmp_dir / "stack.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "controlplane.launcher", "run", "--port", str(port)],
        cwd=BASE_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(base_url, process, tmp_dir / "stack.log")
        yield Stack(base_url, process, tmp_dir, env["REDIS_URL"])
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def _wait_until_up(base_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"launcher exited: {log.read_text()[-4000:]}")
        # The banner is printed once the web server is up and seeding is done.
        if "Dashboard:" in log.read_text():
            with contextlib.suppress(requests.RequestException):
                if requests.get(base_url + "/healthz/", timeout=2).ok:
                    return
        time.sleep(0.3)
    raise RuntimeError(f"control plane did not start: {log.read_text()[-4000:]}")
