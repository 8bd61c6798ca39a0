"""Retention: delete audit records, alerts and feedback older than a number of days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select

from .db import Database
from .models import Alert, Feedback, HookCallRecord


def purge(database: Database, days: int, now: datetime | None = None) -> dict[str, int]:
    if days < 1:
        raise ValueError("the retention must be at least one day")
    cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
    with database.session() as session:
        old_calls = select(HookCallRecord.id).where(HookCallRecord.recorded_at < cutoff)
        alerts = session.execute(delete(Alert).where(Alert.hook_call_id.in_(old_calls))).rowcount
        calls = session.execute(delete(HookCallRecord).where(HookCallRecord.recorded_at < cutoff)).rowcount
        feedback = session.execute(delete(Feedback).where(Feedback.received_at < cutoff)).rowcount
    return {"hook calls": calls or 0, "alerts": alerts or 0, "feedback": feedback or 0}
