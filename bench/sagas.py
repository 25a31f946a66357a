"""The saga engine's own cost against plain Celery chains on the same workers.

Run with ``python -m bench.sagas`` (part of ``make bench``); REDIS_URL
selects the server, and the benchmark uses and flushes the database three
after REDIS_URL's (``--redis-db`` to choose another). It starts an isolated
control plane (fresh SQLite file, or a PostgreSQL database of its own when
DATABASE_URL names a PostgreSQL server) with ``--workers`` Celery workers of
``--concurrency`` pool processes, then in alternating rounds:

- starts ``--runs`` sagas of three no-op Python steps, each with a no-op
  compensation, through ``sagas.services.start_run`` (what POST /api/runs/
  calls, without the HTTP request), and waits until all are completed. Every
  status change is stored as in production. A saga's latency is its
  ``finished_at - created_at`` in the database;
- sends as many Celery chains of three no-op tasks (``bench.celery_tasks``)
  to the same workers. A chain's latency runs from ``apply_async`` to the
  time its last task ran.

Throughput is the count divided by the time from the first start to the
last finish. The script prints ``name: value`` lines with the raw numbers
and the two ratios ``saga_throughput_vs_celery_chain`` and
``saga_p50_latency_vs_celery_chain``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controlplane.launcher import BASE_DIR
from controlplane.launcher import redis_url as find_redis
from tests.chaos import isolated_cluster, own_redis_url

SAGA_NAME = "bench-noop"
NOOP = {"function": "sagas.builtin_steps.noop"}
STEPS = [
    {"name": name, "target": "bench", "action": NOOP, "compensation": NOOP}
    for name in ("first", "second", "third")
]
WAIT_SECONDS = 300.0


@dataclass
class Sample:
    """Latencies in seconds of one batch, and the span it took."""

    latencies: list[float] = field(default_factory=list)
    spans: float = 0.0

    def add(self, latencies: list[float], span: float) -> None:
        self.latencies += latencies
        self.spans += span

    @property
    def per_second(self) -> float:
        return len(self.latencies) / self.spans

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def saga_batch(definition: Any, count: int) -> tuple[list[float], float]:
    """Start `count` sagas, wait for them and return (latencies, span)."""
    from sagas.models import TERMINAL_RUN_STATUSES, RunStatus, SagaRun
    from sagas.services import start_run

    ids = [start_run(definition, {}).pk for _ in range(count)]
    runs = SagaRun.objects.filter(pk__in=ids)
    deadline = time.monotonic() + WAIT_SECONDS
    while runs.exclude(status__in=TERMINAL_RUN_STATUSES).exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"sagas not finished after {WAIT_SECONDS}s")
        time.sleep(0.02)

    rows = list(runs.values_list("status", "created_at", "finished_at"))
    failed = [status for status, _, _ in rows if status != RunStatus.COMPLETED]
    if failed:
        raise RuntimeError(f"{len(failed)} bench sagas did not complete: {failed}")
    times = [(created, done) for _, created, done in rows if done is not None]
    latencies = [(done - created).total_seconds() for created, done in times]
    span = max(done for _, done in times) - min(created for created, _ in times)
    return latencies, span.total_seconds()


def chain_batch(count: int) -> tuple[list[float], float]:
    """Send `count` chains of three no-op tasks and return (latencies, span)."""
    from celery import chain

    from bench.celery_tasks import noop

    sent = []
    for _ in range(count):
        started = time.time()
        result = chain(noop.s(), noop.s(), noop.s()).apply_async()
        sent.append((started, result))
    finished = [(started, float(r.get(timeout=WAIT_SECONDS))) for started, r in sent]
    latencies = [done - started for started, done in finished]
    span = max(done for _, done in finished) - min(s for s, _ in finished)
    return latencies, span


def measure(runs: int, rounds: int, warmup: int, solo: int) -> dict[str, Sample]:
    """Define the bench saga, warm the workers up and run the rounds."""
    from sagas.models import SagaDefinition

    definition, _ = SagaDefinition.objects.update_or_create(
        name=SAGA_NAME,
        defaults={"description": "Three no-op steps.", "steps": STEPS},
    )
    saga_batch(definition, warmup)
    chain_batch(warmup)

    samples = {name: Sample() for name in ("saga", "chain", "saga_solo", "chain_solo")}
    for _ in range(rounds):
        samples["saga"].add(*saga_batch(definition, runs))
        samples["chain"].add(*chain_batch(runs))
    # One at a time: the latency of the engine itself, without queueing.
    for _ in range(solo):
        samples["saga_solo"].add(*saga_batch(definition, 1))
        samples["chain_solo"].add(*chain_batch(1))
    return samples


def report(samples: dict[str, Sample], options: argparse.Namespace) -> None:
    saga, chained = samples["saga"], samples["chain"]
    lines = {
        "python": platform.python_version(),
        "workers": options.workers,
        "concurrency": options.concurrency,
        "sagas": len(saga.latencies),
        "chains": len(chained.latencies),
        "saga_per_s": f"{saga.per_second:.1f}",
        "chain_per_s": f"{chained.per_second:.1f}",
        "saga_p50_ms": f"{saga.percentile(0.5) * 1000:.1f}",
        "saga_p95_ms": f"{saga.percentile(0.95) * 1000:.1f}",
        "chain_p50_ms": f"{chained.percentile(0.5) * 1000:.1f}",
        "chain_p95_ms": f"{chained.percentile(0.95) * 1000:.1f}",
        "saga_solo_p50_ms": f"{samples['saga_solo'].percentile(0.5) * 1000:.1f}",
        "chain_solo_p50_ms": f"{samples['chain_solo'].percentile(0.5) * 1000:.1f}",
        "saga_throughput_vs_celery_chain": (
            f"{saga.per_second / chained.per_second:.2f}"
        ),
        "saga_p50_latency_vs_celery_chain": (
            f"{saga.percentile(0.5) / chained.percentile(0.5):.2f}"
        ),
    }
    for name, value in lines.items():
        print(f"{name}: {value}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100, help="sagas per round")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds")
    parser.add_argument("--warmup", type=int, default=20, help="sagas to warm up")
    parser.add_argument(
        "--solo", type=int, default=20, help="sagas and chains sent one at a time"
    )
    parser.add_argument("--workers", type=int, default=2, help="Celery workers")
    parser.add_argument(
        "--concurrency", type=int, default=2, help="pool processes per worker"
    )
    parser.add_argument(
        "--redis-db", type=int, help="Redis database number to use and flush"
    )
    options = parser.parse_args()

    with (
        find_redis(_data_dir()) as base,
        isolated_cluster(
            own_redis_url(base, options.redis_db, offset=3),
            options.concurrency,
            options.workers,
            worker_options=["-I", "bench.celery_tasks"],
        ) as cluster,
    ):
        _setup_django(cluster.env)
        samples = measure(options.runs, options.rounds, options.warmup, options.solo)
    report(samples, options)
    return 0


def _data_dir() -> Path:
    path = BASE_DIR / "var" / "bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _setup_django(env: dict[str, str]) -> None:
    """Point this process at the cluster's database and Redis, then set up."""
    for name in ("CONTROLPLANE_DATA_DIR", "REDIS_URL", "DJANGO_SETTINGS_MODULE"):
        os.environ[name] = env[name]
    if "DATABASE_URL" in env:
        os.environ["DATABASE_URL"] = env["DATABASE_URL"]
    else:
        os.environ.pop("DATABASE_URL", None)
    import django

    django.setup()
    import controlplane.celery  # noqa: F401  (binds shared tasks to the app)


if __name__ == "__main__":
    sys.exit(main())
