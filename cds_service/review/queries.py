"""Filters, the alert list and the summary figures."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from ..models import Alert, Feedback

OUTCOME_FILTERS = {"accepted": "Accepted", "overridden": "Overridden", "none": "No feedback"}


def latest_outcome():
    """The outcome of the newest feedback for the alert's card (NULL when there is none)."""
    return (select(Feedback.outcome)
            .where(Feedback.card_uuid == Alert.card_uuid)
            .order_by(Feedback.outcome_timestamp.desc(), Feedback.id.desc())
            .limit(1).correlate(Alert).scalar_subquery())


def _date(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


@dataclass(frozen=True)
class AlertFilter:
    date_from: date | None = None
    date_to: date | None = None
    drug: str = ""
    family: str = ""
    policy: str = ""
    outcome: str = ""

    @classmethod
    def from_args(cls, args: Any) -> AlertFilter:
        outcome = args.get("outcome", "")
        return cls(_date(args.get("date_from")), _date(args.get("date_to")),
                   args.get("drug", "")[:50], args.get("family", "")[:100],
                   args.get("policy", "")[:100], outcome if outcome in OUTCOME_FILTERS else "")

    def as_args(self) -> dict[str, str]:
        values = {"date_from": self.date_from.isoformat() if self.date_from else "",
                  "date_to": self.date_to.isoformat() if self.date_to else "",
                  "drug": self.drug, "family": self.family, "policy": self.policy,
                  "outcome": self.outcome}
        return {k: v for k, v in values.items() if v}

    def apply(self, query: Select) -> Select:
        if self.date_from:
            start = datetime.combine(self.date_from, datetime.min.time(), UTC)
            query = query.where(Alert.created_at >= start)
        if self.date_to:
            end = datetime.combine(self.date_to + timedelta(days=1), datetime.min.time(), UTC)
            query = query.where(Alert.created_at < end)
        if self.drug:
            query = query.where(Alert.drug == self.drug)
        if self.family:
            query = query.where(Alert.indication_family == self.family)
        if self.policy:
            query = query.where(Alert.policy_id == self.policy)
        if self.outcome == "none":
            query = query.where(latest_outcome().is_(None))
        elif self.outcome:
            query = query.where(latest_outcome() == self.outcome)
        return query


def list_alerts(session: Session, flt: AlertFilter, limit: int | None = None,
                offset: int = 0) -> list[tuple[Alert, str | None]]:
    query = flt.apply(select(Alert, latest_outcome().label("outcome")))
    query = query.order_by(Alert.created_at.desc(), Alert.id.desc()).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return [(alert, outcome) for alert, outcome in session.execute(query)]


def filter_choices(session: Session) -> dict[str, list[tuple[str, str]]]:
    def distinct(value_col, label_col) -> list[tuple[str, str]]:
        rows = session.execute(select(value_col, label_col).where(value_col.is_not(None)).distinct())
        return sorted({(v, lab or v) for v, lab in rows}, key=lambda pair: pair[1])

    return {
        "drug": distinct(Alert.drug, Alert.drug_label),
        "family": distinct(Alert.indication_family, Alert.indication_family_label),
        "policy": distinct(Alert.policy_id, Alert.policy_id),
    }


def week_start(moment: datetime) -> date:
    day = moment.date()
    return day - timedelta(days=day.weekday())


@dataclass
class Summary:
    total: int = 0
    with_feedback: int = 0
    overridden: int = 0
    per_week: list[tuple[str, int]] = field(default_factory=list)
    by_reason: list[tuple[str, int, float]] = field(default_factory=list)  # reason, count, rate
    by_family: list[tuple[str, int, int, int, float]] = field(default_factory=list)


def summarize(session: Session, flt: AlertFilter) -> Summary:
    alerts = list_alerts(session, flt)
    cards = [a.card_uuid for a, _ in alerts]
    latest: dict[str, Feedback] = {}
    for chunk_start in range(0, len(cards), 500):
        chunk = cards[chunk_start:chunk_start + 500]
        for fb in session.scalars(select(Feedback).where(Feedback.card_uuid.in_(chunk))):
            seen = latest.get(fb.card_uuid)
            if seen is None or (fb.outcome_timestamp, fb.id) > (seen.outcome_timestamp, seen.id):
                latest[fb.card_uuid] = fb
    summary = Summary(total=len(alerts), with_feedback=len(latest))
    weeks = Counter(week_start(a.created_at) for a, _ in alerts)
    summary.per_week = [(w.isoformat(), n) for w, n in sorted(weeks.items())]
    reasons: Counter[str] = Counter()
    family_counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for alert, _ in alerts:
        family = alert.indication_family_label or "(no indication family)"
        family_counts[family][0] += 1
        fb = latest.get(alert.card_uuid)
        if fb is None:
            continue
        family_counts[family][1] += 1
        if fb.outcome == "overridden":
            summary.overridden += 1
            family_counts[family][2] += 1
            reasons[fb.override_display or fb.override_code or "(comment only)"] += 1
    denominator = summary.with_feedback or 1
    summary.by_reason = [(r, n, n / denominator) for r, n in reasons.most_common()]
    summary.by_family = [(f, total, fb, over, (over / fb) if fb else 0.0)
                         for f, (total, fb, over) in sorted(family_counts.items())]
    return summary
