"""The launcher's pid files exist while it runs and are deleted when it stops.

A control plane of its own is started here, in a fresh data folder and on
a Redis database of its own (see ``tests.stack.private_stack``), because
the session's stack must keep running. A second launcher on
the same data folder is rejected and must leave the first one's pid files
alone.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from controlplane.launcher import BASE_DIR, free_port
from tests.stack import private_stack

pytestmark = pytest.mark.stack

NAMES = ("launcher", "web", "worker", "beat")


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_pid_files_removed_on_stop(tmp_path: Path) -> None:
    pid_dir = tmp_path / "pids"

    with private_stack(tmp_path, {}) as stack:
        pids = {name: int((pid_dir / f"{name}.pid").read_text()) for name in NAMES}
        assert pids["launcher"] == stack.process.pid
        for name, pid in pids.items():
            assert process_alive(pid), f"{name} pid {pid} is not running"

        second = subprocess.run(
            [sys.executable, "-m", "controlplane.launcher", "run"],
            cwd=BASE_DIR,
            env={
                **os.environ,
                "CONTROLPLANE_DATA_DIR": str(tmp_path),
                "REDIS_URL": stack.redis_url,
                "PORT": str(free_port()),
            },
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 1, second.stderr
        assert "Another `make run` is using" in second.stderr
        for name in NAMES:
            assert (pid_dir / f"{name}.pid").exists(), f"{name}.pid removed"

    assert stack.process.returncode == 0
    assert sorted(path.name for path in pid_dir.iterdir()) == []
    for name, pid in pids.items():
        assert not process_alive(pid), f"{name} pid {pid} still running"
