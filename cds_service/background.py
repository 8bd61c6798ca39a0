"""One thread per process that takes work off the request threads, in batches.

The log writer (:mod:`.logs`) and the per-call metrics (:mod:`.metrics`) both hand their work to
a :class:`BatchWorker`: a request thread only appends an item to a queue, and the worker's thread
hands every item waiting to ``handle`` as one batch, in order, every ``interval`` seconds. A put
does not wake the worker: waking it for every item cost each hook call two thread wake-ups (a log
line and the metrics) and the GIL hand-offs that follow, more than the work itself. The thread
starts with the first item put in a process, so a forked child starts its own (the parent's thread and queue do not
exist there). :meth:`BatchWorker.drain` waits until what was put so far is handled;
:meth:`BatchWorker.stop` also ends the thread. Items still queued when a process is killed
outright are lost: nothing durable goes through here.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from typing import Any


class _Marker:
    def __init__(self, stop: bool) -> None:
        self.stop = stop
        self.done = threading.Event()


INTERVAL_S = 0.05


class BatchWorker:
    def __init__(self, name: str, handle: Callable[[list[Any]], None], interval: float = INTERVAL_S) -> None:
        self.name = name
        self._handle = handle
        self.interval = interval
        self._items: deque[Any] = deque()  # append and popleft are atomic
        self._wake = threading.Event()  # set by drain() and stop(), not by put()
        self._thread: threading.Thread | None = None
        self._pid = -1
        self._start = threading.Lock()

    def put(self, item: Any) -> None:
        if self._pid != os.getpid():
            self._start_thread()
        self._items.append(item)

    def drain(self, timeout: float) -> None:
        """Return once every item put so far in this process is handled (or after ``timeout``)."""
        self._mark(_Marker(stop=False), timeout)

    def stop(self, timeout: float) -> None:
        """Handle what is queued, then end the thread (a later ``put`` starts a new one)."""
        self._mark(_Marker(stop=True), timeout)
        self._thread, self._pid = None, -1

    def _mark(self, marker: _Marker, timeout: float) -> None:
        thread = self._thread
        if self._pid == os.getpid() and thread is not None and thread.is_alive():
            self._items.append(marker)
            self._wake.set()
            marker.done.wait(timeout)

    def _start_thread(self) -> None:
        with self._start:
            if self._pid == os.getpid():
                return
            self._items, self._wake = deque(), threading.Event()  # a forked child: not the parent's
            self._thread = threading.Thread(target=self._run, args=(self._items, self._wake), name=self.name,
                                            daemon=True)
            self._thread.start()
            self._pid = os.getpid()

    def _run(self, items: deque[Any], wake: threading.Event) -> None:
        while True:
            wake.wait(self.interval)
            wake.clear()  # before taking the items: a marker put after this is seen now or next time
            waiting = []
            while items:  # everything waiting is one batch
                waiting.append(items.popleft())
            batch: list[Any] = []
            for item in waiting:
                if not isinstance(item, _Marker):
                    batch.append(item)
                    continue
                self._handle_batch(batch)
                batch = []
                item.done.set()
                if item.stop:
                    return
            self._handle_batch(batch)

    def _handle_batch(self, batch: list[Any]) -> None:
        if batch:
            with suppress(Exception):  # the worker must outlive a bad item; nowhere to report it
                self._handle(batch)
