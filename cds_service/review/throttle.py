"""Failed-login throttle for the review page, kept in the service's database.

Counts live in the ``login_throttle`` table, so every worker process and every host that shares
the database sees the same counts (flask-limiter has no SQL storage). One row per account
(hashed username) and one per client address (hashed). A failure is one atomic upsert; when a
count reaches its limit within the window, the key is locked for ``REVIEW_LOGIN_LOCK_SECONDS``
and its count starts again. While either key is locked, every login for it is refused, with the
right password too.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, delete, select, update

from ..db import Database
from ..models import LoginThrottle


@dataclass(frozen=True)
class ThrottleSettings:
    account_limit: int  # failures per account within the window before a lock
    address_limit: int  # failures per client address within the window before a lock
    window_seconds: float
    lock_seconds: float

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ThrottleSettings:
        return cls(int(config["REVIEW_LOGIN_MAX_FAILURES"]),
                   int(config["REVIEW_LOGIN_MAX_FAILURES_PER_ADDRESS"]),
                   float(config["REVIEW_LOGIN_WINDOW_SECONDS"]), float(config["REVIEW_LOGIN_LOCK_SECONDS"]))


def digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def account_key(username: str) -> str:
    return "account:" + digest(username)


def address_key(address: str | None) -> str:
    return "address:" + digest(address or "unknown")


def seconds_locked(database: Database, keys: list[str], now: float | None = None) -> float:
    """How long the longest lock among ``keys`` still runs (0 when none is locked)."""
    now = time.time() if now is None else now
    with database.session() as session:
        until = session.scalar(select(LoginThrottle.locked_until)
                               .where(LoginThrottle.key.in_(keys), LoginThrottle.locked_until > now)
                               .order_by(LoginThrottle.locked_until.desc()).limit(1))
    return max(0.0, until - now) if until is not None else 0.0


def record_failure(database: Database, limits: Mapping[str, int], settings: ThrottleSettings,
                   now: float | None = None) -> list[str]:
    """Count one failure for each key (key -> its limit); returns the keys this failure locked."""
    now = time.time() if now is None else now
    locked = []
    if database.engine.dialect.name == "postgresql":  # only the dialect in use is imported
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    table = LoginThrottle.__table__
    expired = table.c.window_start < now - settings.window_seconds
    with database.session() as session:
        for key, limit in limits.items():
            stmt = insert(table).values(key=key, failures=1, window_start=now, locked_until=None)
            stmt = stmt.on_conflict_do_update(index_elements=[table.c.key], set_={
                "failures": case((expired, 1), else_=table.c.failures + 1),
                "window_start": case((expired, now), else_=table.c.window_start),
            }).returning(table.c.failures)
            if session.execute(stmt).scalar_one() >= limit:
                session.execute(update(table).where(table.c.key == key).values(
                    failures=0, window_start=now, locked_until=now + settings.lock_seconds))
                locked.append(key)
        # Keep the table small: rows whose window and lock have both run out count for nothing.
        session.execute(delete(table).where(
            table.c.window_start < now - settings.window_seconds,
            (table.c.locked_until.is_(None)) | (table.c.locked_until < now)))
    return locked


def clear(database: Database, key: str) -> None:
    """Forget an account's failures after it signs in (an address's count is never cleared)."""
    with database.session() as session:
        session.execute(delete(LoginThrottle).where(LoginThrottle.key == key))
