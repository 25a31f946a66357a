"""Chaos run: many order sagas under injected faults and killed workers.

``python -m tests.chaos --runs 100 --workers 3`` (``make chaos``); ``--mode
choreography`` runs the choreographed order saga instead of the orchestrated
one, with the same faults, kills and checks:

1. Start an isolated control plane. Its database is a fresh SQLite file in
   a temporary data folder, or a PostgreSQL database of its own when
   ``DATABASE_URL`` names a PostgreSQL server. It gets its own Redis
   database, gunicorn on a free port, Celery beat and ``--workers`` Celery
   workers, each in a process group of its own. Leases last 3 s and the
   sweeper runs every second, so a lost worker's step resumes within seconds.
2. Start ``--runs`` order sagas through the API at ``--rate`` per second,
   each with an ``Idempotency-Key``. Meanwhile the demo services fail up to
   30 % of their requests with 503 and add up to 200 ms of latency, both
   changed every few seconds.
3. Meanwhile kill a random worker's process group with SIGKILL every 1 to
   4 seconds and start a replacement, at least ``--min-kills`` times.
4. Clear the faults and wait until every run is terminal.
5. Check each run against the demo services' records and print
   ``name: value`` lines. The exit status is 1 when a run is stuck, an
   effect was applied twice, a run left the services unbalanced or, with
   ``--mode tcc``, a transaction's participants disagree (``in_doubt``).

``--mode tcc`` starts ``order-tcc`` Try-Confirm-Cancel transactions in
place of ``order`` sagas.

Every process started here is stopped on exit, Ctrl-C and SIGTERM included.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from controlplane.launcher import (
    BASE_DIR,
    STOP_GRACE_SECONDS,
    _children,
    _stop,
    _wait_for_web,
    free_port,
)
from controlplane.launcher import redis_url as find_redis
from tests.stack import (
    REDIS_DATABASES,
    TERMINAL,
    flush_unused,
    fresh_database,
    redis_url_with_db,
)

logger = logging.getLogger("tests.chaos")

SERVICES = ["order", "inventory", "payment", "shipping"]
PRODUCTS = ["sku-1", "sku-2", "sku-3", "sku-4", "sku-5"]

# Per service: the records path of GET /demo/<service>/<records>/<reference>/,
# the status a completed run leaves and the statuses a compensated run may
# leave (None: the service never saw the reference).
RECORDS = {
    "order": ("orders", "confirmed", {None, "cancelled"}),
    "inventory": ("reservations", "reserved", {None, "released"}),
    "payment": ("payments", "charged", {None, "refunded"}),
    "shipping": ("shipments", "scheduled", {None, "cancelled"}),
}

# The participants of order-tcc: each keeps a branch per transaction at
# GET /demo/<service>/tcc/<reference>/.
TCC_SERVICES = ["order", "inventory", "payment"]

# The saga each --mode starts.
SAGAS = {
    "orchestrated": "order",
    "choreography": "order-choreography",
    "tcc": "order-tcc",
}

# Runs per page of GET /api/runs/, the API's maximum.
PAGE_SIZE = 500

# Attempts to start one run when the web server is slow or returns 5xx.
# The Idempotency-Key makes a repeated POST start the run once.
START_ATTEMPTS = 5


@dataclass
class ChaosOptions:
    runs: int = 100
    workers: int = 3
    concurrency: int = 2
    rate: float = 3.0
    min_kills: int = 5
    kill_interval: tuple[float, float] = (1.0, 4.0)
    fault_interval: tuple[float, float] = (3.0, 8.0)
    max_error_rate: float = 0.3
    max_latency_ms: int = 200
    drain_timeout: float = 300.0
    lease_seconds: float = 3.0
    sweep_interval: float = 1.0
    seed: int | None = None
    mode: str = "orchestrated"


@dataclass
class ChaosReport:
    runs: int = 0
    terminal: int = 0
    stuck: int = 0
    duplicate_effects: int = 0
    unbalanced_runs: int = 0
    completed: int = 0
    compensated: int = 0
    compensation_failed: int = 0
    committed: int = 0
    aborted: int = 0
    needs_attention: int = 0
    in_doubt: int = 0
    kills: int = 0
    elapsed_s: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return (
            self.stuck == 0
            and self.duplicate_effects == 0
            and self.unbalanced_runs == 0
            and self.in_doubt == 0
            and self.terminal == self.runs
        )

    def lines(self) -> list[str]:
        names = [
            "runs",
            "terminal",
            "stuck",
            "duplicate_effects",
            "unbalanced_runs",
            "completed",
            "compensated",
            "compensation_failed",
            "committed",
            "aborted",
            "needs_attention",
            "in_doubt",
            "kills",
        ]
        lines = [f"{name}: {getattr(self, name)}" for name in names]
        lines.append(f"elapsed_s: {self.elapsed_s:.1f}")
        return lines


class Cluster:
    """Web server, beat and numbered Celery workers, each its own process group.

    Each child writes its output to ``<data dir>/logs/<name>.log``. A
    worker's hostname carries its slot and generation, so a replacement
    never reuses the name of the worker it replaces.
    """

    def __init__(
        self,
        env: dict[str, str],
        data_dir: Path,
        port: int,
        concurrency: int,
        worker_options: list[str] | None = None,
    ) -> None:
        self.env = env
        self.data_dir = data_dir
        self.port = port
        self.concurrency = concurrency
        self.worker_options = worker_options or []
        self.log_dir = data_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.generations: dict[int, int] = {}
        # Set to keep the data folder and its logs after the cluster stops.
        self.keep = False

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(self, name: str, command: list[str]) -> subprocess.Popen[bytes]:
        with (self.log_dir / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                command,
                env=self.env,
                cwd=BASE_DIR,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes[name] = process
        return process

    def start(self, workers: int, beat: bool = True) -> None:
        """Migrate and seed the database, then start every process."""
        with (self.log_dir / "manage.log").open("ab") as log:
            for args in (
                ["migrate", "--no-input", "-v", "0"],
                ["seed_demo", "--base-url", self.base_url],
            ):
                subprocess.run(
                    [sys.executable, str(BASE_DIR / "manage.py"), *args],
                    env=self.env,
                    stdout=log,
                    check=True,
                )
        commands = _children(self.port, self.data_dir)
        self.spawn("web", commands["web"])
        if beat:
            self.spawn("beat", commands["beat"])
        for slot in range(workers):
            self.start_worker(slot)
        _wait_for_web(self.port, self.processes)

    def start_worker(self, slot: int) -> None:
        generation = self.generations.get(slot, -1) + 1
        self.generations[slot] = generation
        command = [
            str(Path(sys.executable).parent / "celery"),
            "-A",
            "controlplane",
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            str(self.concurrency),
            "--hostname",
            f"chaos{slot}g{generation}-{self.port}@%h",
            "--without-gossip",
            "--without-mingle",
            *self.worker_options,
        ]
        self.spawn(f"worker{slot}", command)

    def kill_worker(self, slot: int) -> None:
        """SIGKILL a worker's whole process group: main process and pool."""
        process = self.processes[f"worker{slot}"]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(STOP_GRACE_SECONDS)

    def lost(self) -> list[str]:
        """Return the names of children that exited without being killed."""
        return [name for name, p in self.processes.items() if p.poll() is not None]

    def stop(self) -> None:
        for name, process in reversed(list(self.processes.items())):
            _stop(process, name)


@contextlib.contextmanager
def isolated_cluster(
    redis_url: str,
    concurrency: int,
    workers: int,
    extra_env: dict[str, str] | None = None,
    worker_options: list[str] | None = None,
    beat: bool = True,
    keep: bool = False,
) -> Iterator[Cluster]:
    """Start a control plane with a fresh database and data folder.

    The data folder is removed afterwards unless ``keep`` is set or the
    block raised, so the logs of a failed run stay for inspection.
    """
    flush_unused(redis_url)
    data_dir = Path(tempfile.mkdtemp(prefix="chaos-", dir=_scratch_dir()))
    port = free_port()
    env = {
        **os.environ,
        "CONTROLPLANE_DATA_DIR": str(data_dir),
        "REDIS_URL": redis_url,
        "DEMO_BASE_URL": f"http://127.0.0.1:{port}",
        "DJANGO_SETTINGS_MODULE": "controlplane.settings",
        **(extra_env or {}),
    }
    with fresh_database() as database_url:
        if database_url:
            env["DATABASE_URL"] = database_url
        else:
            env.pop("DATABASE_URL", None)
        cluster = Cluster(env, data_dir, port, concurrency, worker_options)
        try:
            cluster.start(workers, beat=beat)
            yield cluster
        except BaseException:
            print(f"logs kept in {data_dir / 'logs'}", file=sys.stderr)
            raise
        finally:
            cluster.stop()
    if keep or cluster.keep:
        print(f"data and logs kept in {data_dir}", file=sys.stderr)
    else:
        shutil.rmtree(data_dir, ignore_errors=True)


def _scratch_dir() -> Path:
    path = BASE_DIR / "var" / "chaos"
    path.mkdir(parents=True, exist_ok=True)
    return path


class ApiClient:
    """The cluster's REST API, logged in as the demo operator."""

    def __init__(self, base_url: str, saga: str = "order") -> None:
        self.base_url = base_url
        self.saga = saga
        self.session = requests.Session()
        response = self.session.post(
            f"{base_url}/api/auth/token/",
            json={"username": "demo", "password": "demo"},
            timeout=10,
        )
        response.raise_for_status()
        self.session.headers["Authorization"] = f"Token {response.json()['token']}"

    def get(self, path: str) -> requests.Response:
        return self.session.get(self.base_url + path, timeout=10)

    def set_fault(self, service: str, error_rate: float, latency_ms: int) -> None:
        response = self.session.put(
            f"{self.base_url}/api/faults/{service}/",
            json={"error_rate": error_rate, "latency_ms": latency_ms},
            timeout=10,
        )
        response.raise_for_status()

    def start_run(self, data: dict[str, Any]) -> str:
        """Start a run of the saga and return its id, retrying with the same key."""
        key = str(uuid.uuid4())
        error = ""
        for _ in range(START_ATTEMPTS):
            try:
                response = self.session.post(
                    f"{self.base_url}/api/runs/",
                    json={"saga": self.saga, "input": data},
                    headers={"Idempotency-Key": key},
                    timeout=15,
                )
            except requests.RequestException as exc:
                error = str(exc)
            else:
                if response.status_code == 201:
                    return str(response.json()["id"])
                error = f"HTTP {response.status_code}: {response.text[:300]}"
            time.sleep(1.0)
        raise RuntimeError(f"starting a run failed {START_ATTEMPTS} times: {error}")

    def run_statuses(self, count: int) -> dict[str, str]:
        """Return the status of each of the latest `count` runs, by id."""
        statuses: dict[str, str] = {}
        for offset in range(0, count, PAGE_SIZE):
            response = self.get(f"/api/runs/?limit={PAGE_SIZE}&offset={offset}")
            response.raise_for_status()
            page = response.json()["results"]
            statuses.update({str(r["id"]): r["status"] for r in page})
            if len(page) < PAGE_SIZE:
                break
        return statuses

    def record_status(self, service: str, reference: str) -> str | None:
        records = RECORDS[service][0]
        response = self.get(f"/demo/{service}/{records}/{reference}/")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return str(response.json()["status"])

    def branch_state(self, service: str, reference: str) -> str | None:
        """Return the state of a TCC participant's branch, None if it has none."""
        response = self.get(f"/demo/{service}/tcc/{reference}/")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return str(response.json()["state"])


class Chaos:
    """One chaos run against a started cluster."""

    def __init__(
        self, cluster: Cluster, options: ChaosOptions, rng: random.Random
    ) -> None:
        self.cluster = cluster
        self.options = options
        self.rng = rng
        self.api = ApiClient(cluster.base_url, SAGAS[options.mode])
        self.run_ids: list[str] = []
        self.kills = 0
        self.faults_on = False

    def random_input(self, number: int) -> dict[str, Any]:
        amount = self.rng.randint(100, 50000) / 100
        return {
            "customer_id": f"chaos-{number}",
            "product_id": self.rng.choice(PRODUCTS),
            "quantity": self.rng.randint(1, 3),
            "amount": f"{amount:.2f}",
        }

    def change_faults(self) -> None:
        self.faults_on = True
        for service in SERVICES:
            error_rate = round(self.rng.uniform(0, self.options.max_error_rate), 3)
            latency_ms = self.rng.randint(0, self.options.max_latency_ms)
            self.api.set_fault(service, error_rate, latency_ms)
        logger.info("faults changed")

    def clear_faults(self) -> None:
        if not self.faults_on:
            return
        self.faults_on = False
        for service in SERVICES:
            self.api.set_fault(service, 0.0, 0)
        logger.info("faults cleared")

    def kill_random_worker(self) -> None:
        slot = self.rng.randrange(self.options.workers)
        self.cluster.kill_worker(slot)
        self.kills += 1
        self.cluster.start_worker(slot)
        logger.info("killed worker %s and started a replacement", slot)

    def next_kill_in(self) -> float:
        return self.rng.uniform(*self.options.kill_interval)

    def next_faults_in(self) -> float:
        return self.rng.uniform(*self.options.fault_interval)

    def start_phase(self) -> None:
        """Start every run at the set rate while faults change and workers die.

        Kills go on after the last start until ``min_kills`` were made.
        """
        now = time.monotonic()
        next_start = now
        next_kill = now + self.next_kill_in()
        next_faults = now + self.next_faults_in()
        self.change_faults()
        while len(self.run_ids) < self.options.runs or (
            self.kills < self.options.min_kills
        ):
            self._check_children()
            now = time.monotonic()
            if len(self.run_ids) < self.options.runs and now >= next_start:
                data = self.random_input(len(self.run_ids))
                self.run_ids.append(self.api.start_run(data))
                next_start += 1.0 / self.options.rate
                if len(self.run_ids) == self.options.runs:
                    self.clear_faults()
            if now >= next_kill:
                self.kill_random_worker()
                next_kill = now + self.next_kill_in()
            if len(self.run_ids) < self.options.runs and now >= next_faults:
                self.change_faults()
                next_faults = now + self.next_faults_in()
            upcoming = [next_kill]
            if len(self.run_ids) < self.options.runs:
                upcoming += [next_start, next_faults]
            time.sleep(max(0.0, min(upcoming) - time.monotonic()))

    def drain(self) -> dict[str, str]:
        """Wait until every run is terminal or the drain timeout passes."""
        deadline = time.monotonic() + self.options.drain_timeout
        statuses: dict[str, str] = {}
        while True:
            self._check_children()
            statuses = self.api.run_statuses(len(self.run_ids))
            waiting = [r for r in self.run_ids if statuses.get(r) not in TERMINAL]
            if not waiting or time.monotonic() > deadline:
                return statuses
            time.sleep(1.0)

    def _check_children(self) -> None:
        lost = self.cluster.lost()
        if lost:
            raise RuntimeError(
                f"{', '.join(lost)} exited by itself; see {self.cluster.log_dir}"
            )


def check_balance(api: ApiClient, run_id: str, status: str) -> list[str]:
    """Return what a terminal run left wrong in the demo services' records."""
    problems = []
    for service, (_, done, undone) in RECORDS.items():
        record = api.record_status(service, run_id)
        if status == "completed" and record != done:
            problems.append(f"{service} is {record}, expected {done}")
        if status == "compensated" and record not in undone:
            expected = " or ".join(sorted(s or "never seen" for s in undone))
            problems.append(f"{service} is {record}, expected {expected}")
    return problems


def check_tcc(api: ApiClient, run_id: str, status: str) -> tuple[list[str], bool]:
    """Return what a terminal TCC run left wrong, and whether it is in doubt.

    A transaction is in doubt when its participants disagree (one confirmed
    and another cancelled) or a branch is still only tried, which leaves a
    hold on a run that will send nothing more. It is unbalanced when its
    participants agree with each other but not with its outcome.
    """
    branches = {s: api.branch_state(s, run_id) for s in TCC_SERVICES}
    states = set(branches.values())
    described = ", ".join(f"{s} is {state}" for s, state in branches.items())
    in_doubt = "tried" in states or {"confirmed", "cancelled"} <= states
    if in_doubt:
        return [described], True
    expected: dict[str, set[str | None]] = {
        "committed": {"confirmed"},
        "aborted": {"cancelled", None},
    }
    if status in expected and not states <= expected[status]:
        return [described], False
    return [], False


def describe_run(api: ApiClient, run_id: str) -> str:
    """Summarise a run's steps and history for a failure report."""
    run = api.get(f"/api/runs/{run_id}/").json()
    steps = "; ".join(
        f"{s['name']}={s['status']} claims={s.get('action_claims')}"
        f"/{s.get('compensation_claims')} unknown={s.get('outcome_unknown')}"
        for s in run.get("steps", [])
    )
    steps += "; ".join(
        f"{p['name']}: "
        + ", ".join(f"{name}={phase['status']}" for name, phase in p["phases"].items())
        for p in run.get("participants") or []
    )
    history = " > ".join(h["to_status"] for h in run.get("history", []))
    events = " > ".join(e["event_type"] for e in run.get("events", []))
    return (
        f"run {run_id} {run.get('status')}: {steps} | history: {history}"
        f" | events: {events}"
    )


def evaluate(chaos: Chaos, statuses: dict[str, str], report: ChaosReport) -> None:
    """Fill the report from the runs' statuses and the services' records."""
    api = chaos.api
    report.runs = len(chaos.run_ids)
    report.kills = chaos.kills
    for run_id in chaos.run_ids:
        status = statuses.get(run_id, "missing")
        if status not in TERMINAL:
            report.stuck += 1
            report.problems.append("stuck: " + describe_run(api, run_id))
            continue
        report.terminal += 1
        setattr(report, status, getattr(report, status) + 1)
        if chaos.options.mode == "tcc":
            problems, in_doubt = check_tcc(api, run_id, status)
            if in_doubt:
                report.in_doubt += 1
                report.problems.append(
                    f"in doubt: {', '.join(problems)}; " + describe_run(api, run_id)
                )
                continue
        else:
            problems = check_balance(api, run_id, status)
        if problems:
            report.unbalanced_runs += 1
            report.problems.append(
                f"unbalanced: {', '.join(problems)}; " + describe_run(api, run_id)
            )
    for service in SERVICES:
        response = api.get(f"/demo/{service}/state/")
        response.raise_for_status()
        duplicates = int(response.json()["duplicate_effects"])
        report.duplicate_effects += duplicates
        if duplicates:
            report.problems.append(f"{service}: {duplicates} duplicate effects")


def run_chaos(options: ChaosOptions, redis_url: str) -> ChaosReport:
    """Start a cluster on the Redis URL, run the chaos and return the report."""
    rng = random.Random(options.seed)
    report = ChaosReport()
    extra_env = {
        "SAGA_LEASE_SECONDS": str(options.lease_seconds),
        "SAGA_SWEEP_INTERVAL": str(options.sweep_interval),
        # A killed worker's event deliveries are sent again after 10 s
        # rather than the default 30 s, like the short leases above.
        "OUTBOX_REDELIVER_AFTER_SECONDS": "10",
    }
    with isolated_cluster(
        redis_url, options.concurrency, options.workers, extra_env
    ) as cluster:
        chaos = Chaos(cluster, options, rng)
        started = time.monotonic()
        try:
            chaos.start_phase()
        finally:
            # Faults must not outlast the start phase, not even after an error.
            with contextlib.suppress(requests.RequestException):
                chaos.clear_faults()
        statuses = chaos.drain()
        report.elapsed_s = time.monotonic() - started
        evaluate(chaos, statuses, report)
        cluster.keep = not report.passed
    return report


def own_redis_url(base: str, database: int | None, offset: int = 2) -> str:
    """Return the URL of a Redis database of our own on the base URL's server.

    Without a database number it is the base URL's plus ``offset``, so the
    chaos run (2), the benchmark (3) and the test suite's stack (1) never
    flush one another's data on a shared server.
    """
    if database is None:
        base_database = int(urlsplit(base).path.strip("/") or 0)
        database = (base_database + offset) % REDIS_DATABASES
    return redis_url_with_db(base, database)


def parse_args(argv: list[str] | None) -> tuple[ChaosOptions, int | None]:
    parser = argparse.ArgumentParser(
        prog="python -m tests.chaos", description=__doc__.splitlines()[0]
    )
    defaults = ChaosOptions()

    parser.add_argument("--runs", type=int, default=defaults.runs, help="sagas")
    parser.add_argument(
        "--workers", type=int, default=defaults.workers, help="Celery workers"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=defaults.concurrency,
        help="pool processes per worker",
    )
    parser.add_argument(
        "--rate", type=float, default=defaults.rate, help="runs started per second"
    )
    parser.add_argument(
        "--min-kills",
        type=int,
        default=defaults.min_kills,
        help="worker kills to make at least, even after the last start",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=defaults.drain_timeout,
        help="seconds to wait for every run to end after the last start",
    )
    parser.add_argument(
        "--seed", type=int, help="random seed of the inputs, faults and kill times"
    )
    parser.add_argument(
        "--mode",
        choices=list(SAGAS),
        default=defaults.mode,
        help="orchestrated: order sagas; choreography: order-choreography; "
        "tcc: order-tcc transactions",
    )
    parser.add_argument(
        "--redis-db",
        type=int,
        help="Redis database number to use and flush (default: REDIS_URL's + 2)",
    )
    args = parser.parse_args(argv)

    if args.runs < 1 or args.workers < 1 or args.rate <= 0:
        parser.error("--runs and --workers must be at least 1, --rate above 0")

    options = ChaosOptions(
        runs=args.runs,
        workers=args.workers,
        concurrency=args.concurrency,
        rate=args.rate,
        min_kills=args.min_kills,
        drain_timeout=args.drain_timeout,
        seed=args.seed,
        mode=args.mode,
    )
    return options, args.redis_db


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s chaos %(message)s")
    options, database = parse_args(argv)
    if options.seed is None:
        options.seed = random.randrange(2**32)
    logger.info("seed %s", options.seed)
    # SIGTERM unwinds like Ctrl-C, so the finally blocks stop every child.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        with find_redis(_scratch_dir()) as base:
            report = run_chaos(options, own_redis_url(base, database))
    except KeyboardInterrupt:
        print("interrupted; every process was stopped", file=sys.stderr)
        return 130
    for problem in report.problems:
        print(problem, file=sys.stderr)
    print("\n".join(report.lines()), flush=True)
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
