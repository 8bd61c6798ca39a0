"""Start a real server process for a test, wait for real readiness, and always stop all of it.

Every test that starts a server goes through :func:`running_server`:

* the process starts in a new session (its own process group), so stopping it also stops
  the workers it forked (gunicorn's master and workers, for instance);
* readiness means an HTTP answer that the caller accepts from a URL of the server, not an
  open port: a master that accepts connections while its workers still import is not ready,
  and any request error (refused, reset, read time-out) just means "try again";
* the group is stopped on every exit path (ready, failed to start, test failure): SIGTERM,
  then SIGKILL for whatever is still alive after a grace period.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import requests

STARTUP_LIMIT = 90.0  # seconds; generous, because CI machines are shared and noisy
STOP_GRACE = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerFailedToStart(RuntimeError):
    pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_process_group(process: subprocess.Popen, grace: float = STOP_GRACE) -> None:
    """SIGTERM the whole group, wait, then SIGKILL what is left; reap the leader."""
    pgid = process.pid  # start_new_session=True makes the leader's pid the group id
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        stop = time.monotonic() + wait
        while time.monotonic() < stop:
            if process.poll() is not None and not _group_alive(pgid):
                break
            time.sleep(0.05)
        else:
            continue
        break
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=grace)


def _tail(path: Path, limit: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return "(no log)"


@contextmanager
def running_server(
    argv: Sequence[str],
    ready_url: str,
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    is_ready: Callable[[requests.Response], bool] = lambda r: r.status_code == 200,
    startup_limit: float = STARTUP_LIMIT,
) -> Iterator[subprocess.Popen]:
    """Run ``argv`` until the block ends; yield once ``ready_url`` answers as ``is_ready`` wants."""
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            list(argv), env=dict(env) if env is not None else None, cwd=cwd,
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    try:
        stop = time.monotonic() + startup_limit
        while True:
            if process.poll() is not None:
                raise ServerFailedToStart(
                    f"{argv[0]} exited with {process.returncode} before it was ready:\n{_tail(log_path)}")
            try:
                if is_ready(requests.get(ready_url, timeout=5)):
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > stop:
                raise ServerFailedToStart(
                    f"{argv[0]} not ready after {startup_limit:.0f} s:\n{_tail(log_path)}")
            time.sleep(0.1)
        yield process
    finally:
        stop_process_group(process)
