"""Replay protection: remember each accepted ``(iss, jti)`` until its token expires.

Two stores:

* :class:`InMemoryReplayCache` lives in one process. It is the only store when the service has
  no database (``AUDIT_ENABLED=false``); then a token replayed to *another* worker process or
  instance within its lifetime is not detected (docs/security.md).
* :class:`DatabaseReplayCache` keeps seen tokens in the service's database (SQLite or
  PostgreSQL), shared by every worker, restart and host using that database. One atomic
  ``INSERT … ON CONFLICT`` on a unique key decides, so two workers cannot both accept one token.

:class:`SharedCooldown` uses the same database for "not again before" times that must hold
across workers (the JWKS refetch cooldown).
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from sqlalchemy import delete
from sqlalchemy.exc import SQLAlchemyError

from .db import Database
from .models import SeenToken
from .models import SharedCooldown as SharedCooldownRow

log = logging.getLogger(__name__)

PURGE_INTERVAL_S = 60.0  # expired rows are deleted at most this often per process


class ReplayCache(Protocol):
    def check_and_remember(self, key: tuple[str, str], expires_at: float) -> bool:
        """Record ``key`` until ``expires_at``; False if it was already recorded and unexpired."""
        ...


class ReplayStoreUnavailable(Exception):
    """The shared store could not be reached, and falling back to memory is not allowed."""


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


def token_key(key: tuple[str, str]) -> str:
    """A fixed-length database key for ``(iss, jti)``; ``iss`` is length-prefixed, so no two
    pairs share a key whatever characters they hold."""
    iss, jti = key
    material = f"{len(iss)}:{iss}{jti}".encode("utf-8", "surrogatepass")
    return hashlib.sha256(material).hexdigest()


def _insert(dialect: str):
    """The dialect's INSERT … ON CONFLICT (only that dialect is imported: PostgreSQL's costs ~30 ms)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert

        return insert
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert

        return insert
    raise ValueError(f"the shared replay store supports SQLite and PostgreSQL, not {dialect}")


class DatabaseReplayCache:
    """Seen tokens in the service's database, checked after a local in-process cache.

    The local cache answers repeats within this process without a database round trip, and
    is the fallback while the database cannot be reached (when ``fallback_to_memory``).
    """

    def __init__(self, database: Database, local: InMemoryReplayCache, *, fallback_to_memory: bool = True,
                 clock: Callable[[], float] = time.time) -> None:
        self._database = database
        self._local = local
        self._fallback = fallback_to_memory
        self._clock = clock
        self._insert = _insert(database.engine.dialect.name)
        self._purge_lock = threading.Lock()
        self._next_purge = 0.0
        self.unavailable_count = 0  # calls decided without the database (logged each time)

    def check_and_remember(self, key: tuple[str, str], expires_at: float) -> bool:
        if not self._local.check_and_remember(key, expires_at):
            return False
        now = self._clock()
        try:
            return self._remember(token_key(key), expires_at, now)
        except SQLAlchemyError as exc:
            self.unavailable_count += 1
            if not self._fallback:
                log.error("jti replay store unavailable (%s); refusing the token", type(exc).__name__)
                raise ReplayStoreUnavailable from None
            log.error("jti replay store unavailable (%s); accepted on the in-process cache only",
                      type(exc).__name__)
            return True

    def _remember(self, key: str, expires_at: float, now: float) -> bool:
        table = SeenToken.__table__
        statement = self._insert(table).values(token_key=key, expires_at=expires_at)
        # A row for this key blocks the insert unless it has expired (then it is taken over).
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.token_key],
            set_={"expires_at": statement.excluded.expires_at},
            where=table.c.expires_at <= now,
        ).returning(table.c.token_key)  # a row back = inserted or taken over; none = seen
        with self._database.session(settle=False) as session:
            accepted = session.execute(statement).first() is not None
        self._maybe_purge(now)
        return accepted

    def _maybe_purge(self, now: float) -> None:
        """Delete expired rows, at most once per PURGE_INTERVAL_S in this process."""
        if now < self._next_purge or not self._purge_lock.acquire(blocking=False):
            return
        try:
            self._next_purge = now + PURGE_INTERVAL_S
            with self._database.session(settle=False) as session:
                session.execute(delete(SeenToken).where(SeenToken.expires_at <= now))
        except SQLAlchemyError as exc:
            log.warning("purging expired jtis failed (%s)", type(exc).__name__)
        finally:
            self._purge_lock.release()


class Cooldown(Protocol):
    def claim(self, name: str, seconds: float) -> bool:
        """True (and start the cooldown) unless ``name`` is still cooling down."""
        ...


class LocalCooldown:
    """A cooldown held in this process only."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._not_before: dict[str, float] = {}

    def claim(self, name: str, seconds: float) -> bool:
        with self._lock:
            now = self._clock()
            if now < self._not_before.get(name, float("-inf")):
                return False
            self._not_before[name] = now + seconds
            return True


class SharedCooldown:
    """A cooldown held in the database: one claim per period across all workers and instances.

    When the database cannot be reached, a local cooldown decides (so each process still
    waits its period).
    """

    def __init__(self, database: Database, clock: Callable[[], float] = time.time) -> None:
        self._database = database
        self._clock = clock
        self._insert = _insert(database.engine.dialect.name)
        self._local = LocalCooldown()

    def claim(self, name: str, seconds: float) -> bool:
        now = self._clock()
        table = SharedCooldownRow.__table__
        statement = self._insert(table).values(name=name[:64], not_before=now + seconds)
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.name], set_={"not_before": statement.excluded.not_before},
            where=table.c.not_before <= now,
        ).returning(table.c.name)
        try:
            with self._database.session(settle=False) as session:
                return session.execute(statement).first() is not None
        except SQLAlchemyError as exc:
            log.warning("shared cooldown unavailable (%s); using this process's", type(exc).__name__)
            return self._local.claim(name, seconds)
