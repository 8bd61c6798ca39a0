"""Filters, the alert list and the summary figures."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, aliased, selectinload

from ..models import Alert, Feedback, HookCallRecord

OUTCOME_FILTERS = {"accepted": "Accepted", "overridden": "Overridden", "none": "No feedback"}


@dataclass(frozen=True)
class AlertGroup:
    """One alert on the review page: the calls for one patient, draft order and decision.

    Each call keeps its own Alert row and card uuid (the audit trail); the group shows the newest
    card, how many calls there were, and the feedback and disposition of any of its cards.
    """

    latest: Alert  # the newest call's row (its card is the one shown)
    calls: int
    first_seen: datetime
    last_seen: datetime
    outcome: str | None  # newest feedback outcome on any card of the group
    feedback_id: int | None  # that feedback's row
    disposition: Alert | None  # the member row holding the group's newest disposition


def _grouped_calls(flt: AlertFilter):
    """Per (client, patient, group key): call count, first/last seen and the newest row, for calls
    matching ``flt``. A patient's and an order's ids mean something only within the EHR (the JWT
    ``iss``) that sent them: two clients' calls are two alerts."""
    query = (select(HookCallRecord.client_iss.label("client_iss"),
                    HookCallRecord.patient_id.label("patient_id"), Alert.group_key.label("group_key"),
                    func.count(Alert.id).label("calls"), func.min(Alert.created_at).label("first_seen"),
                    func.max(Alert.created_at).label("last_seen"), func.max(Alert.id).label("latest_id"))
             .join(HookCallRecord, Alert.hook_call_id == HookCallRecord.id))
    return flt.apply_to_calls(query).group_by(HookCallRecord.client_iss, HookCallRecord.patient_id,
                                              Alert.group_key).subquery("grp")


def _members(grp):
    """Alias of the alert rows of the group ``grp`` (any date), for correlated subqueries."""
    member, call = aliased(Alert), aliased(HookCallRecord)
    return member, call, ((member.group_key == grp.c.group_key) & (call.patient_id == grp.c.patient_id)
                          & call.client_iss.is_not_distinct_from(grp.c.client_iss))


def feedback_on_its_card(call) -> Any:
    """Feedback from the service and client that were given the card: another's naming the same
    uuid (stored as on an unknown card) says nothing about this alert."""
    return (Feedback.service_id == call.service_id) & Feedback.client_iss.is_not_distinct_from(call.client_iss)


def _latest_feedback(grp, column):
    member, call, same_group = _members(grp)
    return (select(column).join(member, member.card_uuid == Feedback.card_uuid)
            .join(call, member.hook_call_id == call.id).where(same_group, feedback_on_its_card(call))
            .order_by(Feedback.outcome_timestamp.desc(), Feedback.id.desc()).limit(1).scalar_subquery())


def _disposition_holder(grp):
    member, call, same_group = _members(grp)
    return (select(member.id).join(call, member.hook_call_id == call.id)
            .where(same_group, member.disposition.is_not(None))
            .order_by(member.disposition_at.desc(), member.id.desc()).limit(1).scalar_subquery())


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

    def apply_to_calls(self, query: Select) -> Select:
        """The per-call filters (everything but the outcome, which belongs to the group)."""
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
        return query


def list_alerts(session: Session, flt: AlertFilter, limit: int | None = None,
                offset: int = 0) -> list[AlertGroup]:
    """Alert groups with a call matching the filter, newest last call first.

    Date, drug, family and policy filters select calls (counts and first/last seen are over the
    matching calls); the outcome filter and the disposition are over the whole group.
    """
    grp = _grouped_calls(flt)
    outcome = _latest_feedback(grp, Feedback.outcome)
    query = (select(Alert, grp.c.calls, grp.c.first_seen, grp.c.last_seen, outcome.label("outcome"),
                    _latest_feedback(grp, Feedback.id).label("feedback_id"),
                    _disposition_holder(grp).label("disposition_id"))
             .join(grp, Alert.id == grp.c.latest_id))
    if flt.outcome == "none":
        query = query.where(outcome.is_(None))
    elif flt.outcome:
        query = query.where(outcome == flt.outcome)
    query = query.order_by(grp.c.last_seen.desc(), Alert.id.desc()).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    rows = session.execute(query).all()
    holders = _by_id(session, {row.disposition_id for row in rows if row.disposition_id is not None})
    return [AlertGroup(row.Alert, row.calls, as_utc(row.first_seen), as_utc(row.last_seen), row.outcome,
                       row.feedback_id, holders.get(row.disposition_id)) for row in rows]


def group_members(session: Session, alert: Alert) -> list[Alert]:
    """Every call's row of the alert's group, oldest first (the audit trail of one alert)."""
    return list(session.scalars(
        select(Alert).options(selectinload(Alert.hook_call))
        .join(HookCallRecord, Alert.hook_call_id == HookCallRecord.id)
        .where(Alert.group_key == alert.group_key, HookCallRecord.patient_id == alert.hook_call.patient_id,
               HookCallRecord.client_iss.is_not_distinct_from(alert.hook_call.client_iss))
        .order_by(Alert.id)))


def _by_id(session: Session, ids: set[int]) -> dict[int, Alert]:
    found: dict[int, Alert] = {}
    ordered = sorted(ids)
    for start in range(0, len(ordered), 500):
        for alert in session.scalars(select(Alert).where(Alert.id.in_(ordered[start:start + 500]))):
            found[alert.id] = alert
    return found


def as_utc(value: datetime) -> datetime:
    """Aggregates come back naive from SQLite; the stored times are UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


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
    """Figures per alert group (one per order and decision), not per call."""
    groups = list_alerts(session, flt)
    feedback_ids = sorted({g.feedback_id for g in groups if g.feedback_id is not None})
    latest: dict[int, Feedback] = {}
    for chunk_start in range(0, len(feedback_ids), 500):
        chunk = feedback_ids[chunk_start:chunk_start + 500]
        latest.update((fb.id, fb) for fb in session.scalars(select(Feedback).where(Feedback.id.in_(chunk))))
    summary = Summary(total=len(groups), with_feedback=sum(g.feedback_id is not None for g in groups))
    weeks = Counter(week_start(g.first_seen) for g in groups)
    summary.per_week = [(w.isoformat(), n) for w, n in sorted(weeks.items())]
    reasons: Counter[str] = Counter()
    family_counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for group in groups:
        family = group.latest.indication_family_label or "(no indication family)"
        family_counts[family][0] += 1
        fb = latest.get(group.feedback_id) if group.feedback_id is not None else None
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
