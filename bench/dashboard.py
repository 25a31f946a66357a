"""Server-side time of the dashboard's runs and breakers pages under load.

Run with ``python -m bench.dashboard`` (``make bench`` runs it with a Redis
in REDIS_URL). It builds a fresh SQLite database in a temporary folder,
fills it with ``generate_load_data`` (1,000 targets and 100,000 runs by
default; BENCH_TARGETS and BENCH_RUNS override), then renders each page
through Django's test client, so the time is the server's alone, and prints
the median of BENCH_REPEATS requests as ``name: value`` lines.
"""

import os
import statistics
import tempfile
import time

TARGETS = int(os.environ.get("BENCH_TARGETS", "1000"))
RUNS = int(os.environ.get("BENCH_RUNS", "100000"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "15"))


def median_ms(client: object, path: str) -> float:
    timings = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        response = client.get(path)  # type: ignore[attr-defined]
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (path, response.status_code)
    return statistics.median(timings)


def main() -> None:
    data_dir = tempfile.mkdtemp(prefix="bench-dashboard-")
    os.environ["CONTROLPLANE_DATA_DIR"] = data_dir
    os.environ.pop("DATABASE_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.test import Client

    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    call_command("generate_load_data", targets=TARGETS, runs=RUNS, verbosity=0)
    print(f"load_data_s: {time.perf_counter() - started:.1f}")
    user = User.objects.create_superuser("bench", password="bench-password")
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    from sagas.models import SagaRun

    run_id = SagaRun.objects.values_list("pk", flat=True).first()

    print(f"targets: {TARGETS}")
    print(f"runs: {RUNS}")
    print(f"dashboard_runs_page_ms: {median_ms(client, '/runs/'):.1f}")
    filtered = median_ms(client, "/runs/?status=compensated&saga=order")
    print(f"dashboard_runs_filtered_page_ms: {filtered:.1f}")
    print(f"dashboard_breakers_page_ms: {median_ms(client, '/breakers/'):.1f}")
    print(f"dashboard_overview_page_ms: {median_ms(client, '/'):.1f}")
    for name, path in [
        ("bulkheads", "/bulkheads/"),
        ("policies", "/policies/"),
        ("idempotency", "/idempotency/"),
        ("run_detail", f"/runs/{run_id}/"),
    ]:
        print(f"dashboard_{name}_page_ms: {median_ms(client, path):.1f}")


if __name__ == "__main__":
    main()
