"""One thread per process that takes work off the request threads, in batches.

The log writer (:mod:`.logs`) and the per-call metrics (:mod:`.metrics`) both hand their work to
a :class:`BatchWorker`: a request thread only puts an item on a queue, and the worker's thread
hands every item waiting to ``handle`` as one batch, in order. The thread starts with the first
item put in a process, so a forked child starts its own (the parent's thread and queue do not
exist there). :meth:`BatchWorker.drain` waits until what was put so far is handled;
:meth:`BatchWorker.stop` also ends the thread. Items still queued when a process is killed
outright are lost: nothing durable goes through here.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from contextlib import suppress
from typing import Any


class _Marker:
    def __init__(self, stop: bool) -> None:
        self.stop = stop
        self.done = threading.Event()


class BatchWorker:
    def __init__(self, name: str, handle: Callable[[list[Any]], None]) -> None:
        self.name = name
        self._handle = handle
        self._items: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pid = -1
        self._start = threading.Lock()

    def put(self, item: Any) -> None:
        if self._pid != os.getpid():
            self._start_thread()
        self._items.put(item)

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
            self._items.put(marker)
            marker.done.wait(timeout)

    def _start_thread(self) -> None:
        with self._start:
            if self._pid == os.getpid():
                return
            self._items = queue.SimpleQueue()  # a forked child: the parent's queue is not ours
            self._thread = threading.Thread(target=self._run, args=(self._items,), name=self.name, daemon=True)
            self._thread.start()
            self._pid = os.getpid()

    def _run(self, items: queue.SimpleQueue[Any]) -> None:
        while True:
            waiting = [items.get()]
            while True:  # everything already waiting is one batch
                try:
                    waiting.append(items.get_nowait())
                except queue.Empty:
                    break
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
