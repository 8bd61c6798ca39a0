"""The production HTTP server behind ``cds-service serve``: waitress, one or several processes.

Why waitress (docs/serving.md has the measurements): its main thread reads every request, headers
*and* body, asynchronously and buffers it (large bodies spill to a temporary file); only a complete
request is handed to an application thread. A slow, idle or half-sent connection therefore costs a
socket and a buffer, never one of the ``--threads``. On top of waitress this module adds:

* a **request read deadline**: a request whose headers and body have not fully arrived within
  ``SERVE_REQUEST_READ_TIMEOUT`` seconds of its first byte is dropped (waitress itself only drops
  connections that go *silent*, so a client sending one byte a second would be kept forever);
* **OperationOutcome bodies** for the errors waitress answers itself (header too large, body too
  large, malformed request line, ...), so every error the service returns is FHIR, not text/plain;
* **several worker processes** sharing one listening socket (``--workers``): the parent binds the
  socket, forks the workers, restarts a worker that dies and stops them all on SIGTERM/SIGINT.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask, ThreadedTaskDispatcher

from .errors import _ISSUE_CODE_BY_STATUS, Issue, operation_outcome

log = logging.getLogger(__name__)

RESTART_DELAY = 1.0  # seconds before a worker that died is started again
SEND_BYTES = 64 * 1024  # see make_server


class OutcomeErrorTask(ErrorTask):
    """Waitress's own error answers (400, 413, 431, 500 ...) as a FHIR OperationOutcome."""

    def execute(self) -> None:
        error = self.request.error
        status = int(error.code)
        code = _ISSUE_CODE_BY_STATUS.get(status) or {431: "too-costly"}.get(status, "processing")
        issue = Issue(f"{error.reason}: {error.body}", code)
        body = json.dumps(operation_outcome([issue])).encode()
        self.status = f"{status} {error.reason}"
        self.response_headers.extend([("Content-Type", "application/fhir+json"),
                                      ("Content-Length", str(len(body)))])
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class DeadlineChannel(HTTPChannel):
    """A connection that remembers when the request now being read started to arrive."""

    error_task_class = OutcomeErrorTask
    request_started: float | None = None

    def writable(self) -> bool:
        """Not writable while a task is running and its output is below ``send_bytes``.

        waitress's ``handle_write`` sends nothing in that state (it waits for the task, which
        pulls the server's trigger when it is done), but its ``writable`` still says yes. The
        socket is writable at once, so the main loop spun on ``select`` until the task ended,
        fighting the request threads for the GIL: measured with one worker and one thread, the
        main thread used a whole core and an in-scope call 10 ms (bench/README.md). The answer is
        the same as waitress's in every state in which ``handle_write`` would do something."""
        if (self.requests and self.total_outbufs_len < self.adj.send_bytes
                and not (self.will_close or self.close_when_flushed)):
            return False
        return bool(super().writable())

    def received(self, data: bytes) -> bool:
        if data and self.request is None:
            self.request_started = time.monotonic()
        result = super().received(data)
        if self.request is None:  # nothing partly read any more
            self.request_started = None
        return result


class DeadlineServer(TcpWSGIServer):
    """waitress's TCP server, plus the read deadline checked at every maintenance pass."""

    channel_class = DeadlineChannel
    read_timeout: float = 15.0

    def maintenance(self, now: float) -> None:
        super().maintenance(now)  # idle connections (channel_timeout)
        cutoff = time.monotonic() - self.read_timeout
        for channel in list(self.active_channels.values()):
            started = getattr(channel, "request_started", None)
            if started is not None and started < cutoff:
                channel.will_close = True


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    threads: int = 8
    request_read_timeout: float = 15.0  # headers and body of one request, from its first byte
    idle_timeout: float = 30.0  # a connection with no request and no traffic for this long closes
    max_connections: int = 1000  # per worker; more wait in the listen backlog
    max_header_bytes: int = 64 * 1024
    max_body_bytes: int = 5 * 1024 * 1024
    backlog: int = 2048
    on_stop: Callable[[], None] | None = None  # called in each serving process once it has stopped

    @classmethod
    def from_config(cls, config: Mapping[str, Any], **cli: Any) -> ServeOptions:
        """Server settings from the app's config; an app without them (``--app``, e.g. the bare
        app of bench/throughput.py) gets the service's defaults, so both run the same server."""
        from .config import DEFAULTS

        def setting(key: str) -> Any:
            return config.get(key, DEFAULTS[key])

        return cls(
            request_read_timeout=float(setting("SERVE_REQUEST_READ_TIMEOUT")),
            idle_timeout=float(setting("SERVE_IDLE_TIMEOUT")),
            max_connections=int(setting("SERVE_MAX_CONNECTIONS")),
            max_header_bytes=int(setting("SERVE_MAX_HEADER_BYTES")),
            max_body_bytes=int(setting("MAX_CONTENT_LENGTH") or cls.max_body_bytes),
            **cli,
        )


def bind(options: ServeOptions) -> socket.socket:
    family = socket.AF_INET6 if ":" in options.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((options.host, options.port))
    sock.listen(options.backlog)
    return sock


class OncePerInterval(logging.Filter):
    """Lets one record through per ``interval`` seconds.

    waitress logs "Task queue depth is N" at WARNING for *every* request that has to wait for a
    free thread: under load, one line per request, written by the thread that serves every
    socket, which cost that thread more than reading the request did. One a minute still tells
    an operator that requests queue (the latency histogram on /metrics says by how much)."""

    def __init__(self, interval: float = 60.0) -> None:
        super().__init__()
        self.interval = interval
        self._next = 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + self.interval
        return True


def _quiet_queue_warnings() -> None:
    queue_log = logging.getLogger("waitress.queue")
    if not any(isinstance(f, OncePerInterval) for f in queue_log.filters):
        queue_log.addFilter(OncePerInterval())


def _adjustments(sock: socket.socket, options: ServeOptions) -> Adjustments:
    return Adjustments(
        sockets=[sock],
        threads=options.threads,
        channel_timeout=int(max(1, options.idle_timeout)),
        # maintenance runs this often; it enforces both the idle timeout and the read deadline
        cleanup_interval=int(max(1, min(options.request_read_timeout, options.idle_timeout) / 4)),
        connection_limit=options.max_connections,
        max_request_header_size=options.max_header_bytes,
        max_request_body_size=options.max_body_bytes,
        backlog=options.backlog,
        # A task thread hands its answer to the main loop instead of sending it itself (waitress's
        # default, 1, made every request thread call send(), release the GIL and wait to get it
        # back while the main loop ran); with DeadlineChannel.writable the main loop sends it once
        # the task is done. An answer larger than this is still sent by the task as it is written.
        send_bytes=SEND_BYTES,
        ident="cds-service",
        # No client address or URL in waitress's own log lines; the app logs what it needs.
        log_untrusted_proxy_headers=False,
        expose_tracebacks=False,
    )


def make_server(app: Callable, sock: socket.socket, options: ServeOptions) -> DeadlineServer:
    _quiet_queue_warnings()
    with warnings.catch_warnings():  # send_bytes is deprecated in waitress 3 (still honoured)
        warnings.filterwarnings("ignore", "send_bytes", DeprecationWarning)
        adj = _adjustments(sock, options)
    dispatcher = ThreadedTaskDispatcher()
    dispatcher.set_thread_count(adj.threads)
    server = DeadlineServer(app, {}, True, sock, dispatcher=dispatcher, adj=adj, bind_socket=False,
                            sockinfo=(sock.family, sock.type, sock.proto, sock.getsockname()))
    server.read_timeout = options.request_read_timeout
    return server


def _run_one(app: Callable, sock: socket.socket, options: ServeOptions) -> None:
    server = make_server(app, sock, options)

    def _stop(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    try:
        server.run()  # returns on SystemExit/KeyboardInterrupt after letting running tasks finish
    finally:
        if options.on_stop is not None:  # a forked worker ends with os._exit: no atexit handlers
            options.on_stop()


def serve(app_factory: Callable[[], Callable], options: ServeOptions, app: Callable | None = None) -> None:
    """Serve until SIGTERM/SIGINT. One worker serves ``app`` in this process; several are forked,
    each building its own app with ``app_factory`` (no database connection crosses a fork)."""
    sock = bind(options)
    print(f"cds-service: serving on http://{options.host}:{sock.getsockname()[1]} with waitress "
          f"({options.workers} worker(s) x {options.threads} threads)", file=sys.stderr, flush=True)
    if options.workers <= 1:
        _run_one(app if app is not None else app_factory(), sock, options)
        return
    _supervise(app_factory, sock, options)


def _start_worker(app_factory: Callable[[], Callable], sock: socket.socket, options: ServeOptions) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when workers stop
        _run_one(app_factory(), sock, options)
    except BaseException:
        log.exception("worker failed")
        code = 1
    finally:
        os._exit(code)


def _supervise(app_factory: Callable[[], Callable], sock: socket.socket, options: ServeOptions) -> None:
    stopping = False

    def _stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    workers = {_start_worker(app_factory, sock, options) for _ in range(options.workers)}
    try:
        while not stopping:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                pid, status = 0, 0
            if pid in workers:
                workers.discard(pid)
                print(f"cds-service: worker {pid} exited ({status}); starting another",
                      file=sys.stderr, flush=True)
                time.sleep(RESTART_DELAY)
                if not stopping:
                    workers.add(_start_worker(app_factory, sock, options))
            else:
                time.sleep(0.2)
    finally:
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while workers and time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid:
                workers.discard(pid)
            else:
                time.sleep(0.05)
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        sock.close()
