"""`cds-service serve` as shipped: slow, idle and half-sent connections never stop the service,
and the errors the server answers itself are OperationOutcomes (issue 9 §1, §2).

Loopback only, bounded in time. Against the old gunicorn gthread setup (1 worker, 8 threads) the
first test fails: every normal request timed out behind 8 slow connections.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from .conftest import FIXTURES
from .servers import free_port, running_server

CRPS = (FIXTURES / "hook-requests" / "01-crps-ketamine-reasoncode.json").read_bytes()
SERVICE = "/cds-services/iv-anesthetics-order-sign"
BIN = Path(sys.executable).parent
SLOW = 200  # connections held open at once
NORMAL = 10  # normal requests sent while they are held
LIMIT = 1.0  # seconds each normal request may take


def _serve(tmp_path: Path, **settings: str) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "CDS_AUTH_ENABLED": "false", **{f"CDS_{k}": v for k, v in settings.items()}}
    base = f"http://127.0.0.1:{port}"
    argv = [str(BIN / "cds-service"), "serve", "--port", str(port)]
    with running_server(argv, f"{base}/cds-services", tmp_path / "serve.log", env=env, cwd=tmp_path):
        yield base


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    yield from _serve(tmp_path_factory.mktemp("serve"))


def _post(base: str, timeout: float = 10) -> requests.Response:
    return requests.post(base + SERVICE, data=CRPS, headers={"Content-Type": "application/json"},
                         timeout=timeout)


class SlowClients:
    """``count`` connections: a third trickle their headers one byte per round, a third send full
    headers and trickle the body, a third connect and send nothing."""

    def __init__(self, base: str, count: int) -> None:
        port = int(base.rsplit(":", 1)[1])
        self.head = (f"POST {SERVICE} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(CRPS)}\r\n").encode()
        self.sockets = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(count)]
        for index, sock in enumerate(self.sockets):
            if index % 3 == 1:
                sock.sendall(self.head + b"\r\n" + CRPS[:10])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, daemon=True)

    def _trickle(self) -> None:
        step = 0
        while not self._stop.is_set():
            for index, sock in enumerate(self.sockets):
                byte = {0: self.head[step % len(self.head):][:1], 1: b" "}.get(index % 3)
                if byte:
                    with contextlib.suppress(OSError):
                        sock.send(byte)
            step += 1
            self._stop.wait(0.5)

    def __enter__(self) -> SlowClients:
        self._thread.start()
        return self

    def still_open(self) -> int:
        """Connections the server has neither answered nor closed."""
        count = 0
        for sock in self.sockets:
            sock.settimeout(0.01)
            try:
                if sock.recv(1):
                    continue  # answered: not held
            except TimeoutError:
                count += 1
            except OSError:
                pass
        return count

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for sock in self.sockets:
            sock.close()


def test_normal_requests_are_answered_within_a_second_while_200_slow_connections_are_held(server):
    assert _post(server).status_code == 200  # warm: first call loads what it loads lazily
    with SlowClients(server, SLOW) as slow:
        time.sleep(1.5)  # let every slow connection be accepted and start trickling
        latencies = []
        for _ in range(NORMAL):
            started = time.perf_counter()
            response = _post(server, timeout=LIMIT * 5)
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 200
            assert response.json()["cards"][0]["indicator"] == "warning"
        held = slow.still_open()
    print(f"\n{held} slow connections held; normal requests took max {max(latencies):.3f} s")
    assert max(latencies) < LIMIT, latencies
    assert held >= SLOW * 0.95  # the server held them open, it did not shed them to keep up


@pytest.fixture()
def short_deadline_server(tmp_path) -> Iterator[str]:
    yield from _serve(tmp_path, SERVE_REQUEST_READ_TIMEOUT="2")


def test_a_request_trickling_in_is_dropped_at_the_read_deadline(short_deadline_server):
    port = int(short_deadline_server.rsplit(":", 1)[1])
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=0.25) as sock:
        closed_after = None
        for byte in (b"POST " + SERVICE.encode() + b" HTTP/1.1\r\n" + b"X" * 200):
            try:
                sock.send(bytes([byte]))
                if sock.recv(1) == b"":
                    closed_after = time.monotonic() - started
                    break
            except TimeoutError:
                pass
            except OSError:
                closed_after = time.monotonic() - started
                break
    assert closed_after is not None, "the server kept a request that never finished arriving"
    assert 1.5 < closed_after < 6


def test_a_header_too_large_for_the_server_gets_an_operation_outcome(server):
    huge_token = "Bearer " + "e" * (128 * 1024)  # e.g. a JWT with an enormous kid
    response = requests.get(server + "/cds-services", headers={"Authorization": huge_token}, timeout=10)
    assert response.status_code == 431
    assert response.headers["Content-Type"].startswith("application/fhir+json")
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "too-costly"


def test_a_malformed_request_line_gets_an_operation_outcome(server):
    port = int(server.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"POST /cds-services HTTP/1.1\r\nContent-Length: nope\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"400"
    assert b"application/fhir+json" in head
    assert b'"resourceType": "OperationOutcome"' in body


def test_waitress_queue_depth_warnings_are_let_through_once_a_minute_not_once_a_request():
    import logging

    from cds_service.serving import OncePerInterval, _quiet_queue_warnings

    _quiet_queue_warnings()
    _quiet_queue_warnings()  # once per logger, however many servers are made
    queue_log = logging.getLogger("waitress.queue")
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append
    queue_log.addHandler(handler)
    try:
        for depth in range(200):
            queue_log.warning("Task queue depth is %d", depth)
    finally:
        queue_log.removeHandler(handler)
    assert len(seen) <= 1  # at most one: an earlier test may have used this minute's line
    assert sum(1 for f in queue_log.filters if type(f).__name__ == "OncePerInterval") == 1
    fresh = OncePerInterval(interval=60)
    record = logging.LogRecord("waitress.queue", logging.WARNING, __file__, 1, "Task queue depth is 3", (), None)
    assert [fresh.filter(record) for _ in range(3)] == [True, False, False]


def test_the_main_loop_does_not_wait_on_a_socket_while_a_task_is_still_writing_its_answer():
    """waitress's own writable() says yes while a task runs with its answer buffered, although
    handle_write then sends nothing: the main loop spun on select, taking the GIL from the task."""
    from cds_service.serving import ServeOptions, bind, make_server

    options = ServeOptions(port=0, threads=1)
    server = make_server(lambda environ, start_response: [], bind(options), options)
    ours, theirs = socket.socketpair()
    try:
        channel = server.channel_class(server, ours, ("127.0.0.1", 1), server.adj, map={})
        assert not channel.writable()  # nothing to send
        channel.requests = [object()]  # a task is running ...
        channel.outbufs[-1].append(b"HTTP/1.1 200 OK\r\n")  # ... and has written part of its answer
        channel.total_outbufs_len = 17
        assert not channel.writable()  # the task thread pulls the trigger when it is done
        channel.requests = []  # done: the main loop sends the answer
        assert channel.writable()
        channel.requests = [object()]
        channel.close_when_flushed = True  # closing is still the main loop's
        assert channel.writable()
    finally:
        ours.close()
        theirs.close()
        server.close()
