"""The pipeline benchmark still runs against the core as it is.

Its policy and calls must stay within what the core accepts, or `make
bench` fails. So a tiny run checks that, and the printed names, but never
a figure.
"""

import os
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent.parent
NAMES = (
    "ping_median_us",
    "pipeline_median_us",
    "pybreaker_redis_median_us",
    "pipeline_overhead_vs_ping",
    "pipeline_overhead_vs_pybreaker_redis",
)


def test_pipeline_benchmark_prints_its_figures() -> None:
    command = [sys.executable, "-m", "bench.pipeline", "--rounds", "1"]
    command += ["--calls", "20"]

    finished = subprocess.run(
        command,
        cwd=BASE_DIR,
        env={**os.environ},
        capture_output=True,
        timeout=120,
    )

    output = finished.stdout.decode()
    assert finished.returncode == 0, finished.stderr.decode()[-2000:]
    printed = {line.split(":")[0] for line in output.splitlines() if ": " in line}
    for name in NAMES:
        assert name in printed
