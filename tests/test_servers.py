"""The test-server helper waits for real readiness and stops the whole process group."""

from __future__ import annotations

import os
import sys
import time

import pytest

from .servers import ServerFailedToStart, free_port, running_server

# A parent that forks a child (like gunicorn's master and workers) and accepts connections on
# the port without ever answering HTTP, writing the child's pid to a file.
_FORKING_SILENT_SERVER = """
import os, socket, sys, time
port, pidfile = int(sys.argv[1]), sys.argv[2]
child = os.fork()
if child == 0:
    time.sleep(600)
    os._exit(0)
open(pidfile, "w").write(str(child))
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port)); s.listen(16)
held = []
while True:
    conn, _ = s.accept()
    held.append(conn)  # accepted, never answered: a read time-out for the client
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except OSError:
        return False


def test_a_server_that_accepts_but_never_answers_is_not_ready_and_its_children_are_stopped(tmp_path):
    port, pidfile = free_port(), tmp_path / "child.pid"
    argv = [sys.executable, "-c", _FORKING_SILENT_SERVER, str(port), str(pidfile)]
    with pytest.raises(ServerFailedToStart, match="not ready"), running_server(
            argv, f"http://127.0.0.1:{port}/", tmp_path / "log", startup_limit=7):
        pytest.fail("must not be reported ready")
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the forked child outlived the test"


def test_the_whole_group_is_stopped_when_the_test_body_fails(tmp_path):
    port, pidfile = free_port(), tmp_path / "child.pid"
    server = f"import http.server as h, os, sys\nif os.fork() == 0:\n    import time; time.sleep(600)\n" \
             f"open({str(pidfile)!r}, 'w').write('ok')\n" \
             f"h.HTTPServer(('127.0.0.1', {port}), h.SimpleHTTPRequestHandler).serve_forever()\n"
    with pytest.raises(AssertionError, match="boom"), running_server(
            [sys.executable, "-c", server], f"http://127.0.0.1:{port}/", tmp_path / "log", cwd=tmp_path) as proc:
        leader = proc.pid
        raise AssertionError("boom")
    assert not _alive(leader)
    children = [p for p in os.listdir("/proc") if p.isdigit() and _alive(int(p))
                and _pgid(int(p)) == leader]
    assert children == []


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None
