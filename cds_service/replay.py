"""Replay protection: remember each accepted ``(iss, jti)`` until its token expires.

The cache lives in the memory of one process. Under gunicorn with several workers each
worker has its own cache, so a token replayed to a *different* worker within its lifetime
is not detected. No shared store ships with the service; one can be plugged in by
implementing :class:`ReplayCache` (e.g. Redis ``SET key 1 NX EXAT exp``) and setting
``app.extensions["cds_auth"].replay_cache``.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)


class ReplayCache(Protocol):
    def check_and_remember(self, key: tuple[str, str], expires_at: float) -> bool:
        """Record ``key`` until ``expires_at``; False if it was already recorded and unexpired."""
        ...


class InMemoryReplayCache:
    """Thread-safe, bounded, in-process replay cache.

    When full of unexpired entries, the entry that expires soonest is dropped (and a warning
    logged) rather than refusing new tokens: only tokens that passed signature checks get
    here, so filling the cache takes a trusted client sending more than ``max_entries``
    calls within one token lifetime.
    """

    def __init__(self, max_entries: int, clock: Callable[[], float] = time.time) -> None:
        if max_entries < 1:
            raise ValueError("JTI_CACHE_SIZE must be at least 1")
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._expiry: dict[tuple[str, str], float] = {}
        self._heap: list[tuple[float, tuple[str, str]]] = []

    def __len__(self) -> int:
        return len(self._expiry)

    def _purge(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            expires_at, key = heapq.heappop(self._heap)
            if self._expiry.get(key) == expires_at:
                del self._expiry[key]

    def check_and_remember(self, key: tuple[str, str], expires_at: float) -> bool:
        with self._lock:
            now = self._clock()
            self._purge(now)
            if key in self._expiry:
                return False
            while len(self._expiry) >= self._max:
                dropped_at, dropped = heapq.heappop(self._heap)
                if self._expiry.get(dropped) == dropped_at:
                    del self._expiry[dropped]
                    log.warning("jti replay cache full (%d entries); dropped the entry expiring "
                                "soonest", self._max)
            self._expiry[key] = expires_at
            heapq.heappush(self._heap, (expires_at, key))
            return True
