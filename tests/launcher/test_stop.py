"""Stopping a child: SIGTERM to the child alone, then kill what is left.

A Celery worker stops warmly only when its pool processes do not get the
SIGTERM too, so the grandchild here must never see one, and must still be
gone once the child has exited.
"""

import subprocess
import sys
import time
from pathlib import Path

from controlplane.launcher import _stop

CHILD = """
import signal, subprocess, sys, time
from pathlib import Path

folder = Path(sys.argv[1])
grandchild = subprocess.Popen([sys.executable, "-c", sys.argv[2], str(folder)])
(folder / "grandchild.pid").write_text(str(grandchild.pid))

def stop(signum, frame):
    (folder / "child-term").write_text("")
    time.sleep(0.3)
    sys.exit(0)

signal.signal(signal.SIGTERM, stop)
(folder / "ready").write_text("")
time.sleep(60)
"""

GRANDCHILD = """
import signal, sys, time
from pathlib import Path

def stop(signum, frame):
    (Path(sys.argv[1]) / "grandchild-term").write_text("")
    sys.exit(0)

signal.signal(signal.SIGTERM, stop)
time.sleep(60)
"""


def wait_for(path: Path) -> None:
    deadline = time.monotonic() + 10
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_only_child_gets_sigterm(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path), GRANDCHILD],
        start_new_session=True,
    )
    wait_for(tmp_path / "ready")
    wait_for(tmp_path / "grandchild.pid")
    grandchild_pid = int((tmp_path / "grandchild.pid").read_text())

    _stop(child, "child")

    assert child.returncode == 0
    assert (tmp_path / "child-term").exists()
    assert not (tmp_path / "grandchild-term").exists()
    assert _ends(grandchild_pid)


def _ends(pid: int) -> bool:
    """Wait until the process is gone or a zombie; SIGKILL lands shortly."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            return True
        if "State:\tZ" in status:
            return True
        time.sleep(0.05)
    return False
