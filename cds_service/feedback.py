"""``POST /cds-services/<id>/feedback`` (CDS Hooks 2.0 §Feedback)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, current_app, g, jsonify, request
from sqlalchemy import select

from .errors import ApiError, Issue
from .models import Alert, Feedback
from .services import SERVICES

bp = Blueprint("cds_feedback", __name__)

OUTCOMES = ("accepted", "overridden")
UUID_PATTERN = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


@dataclass(frozen=True)
class FeedbackItem:
    card: str
    outcome: str
    accepted_suggestions: tuple[str, ...]
    reason: dict[str, str] | None
    user_comment: str | None
    outcome_timestamp: datetime

    def normalized(self) -> dict[str, Any]:
        return {
            "card": self.card,
            "outcome": self.outcome,
            "acceptedSuggestions": sorted(self.accepted_suggestions),
            "reason": self.reason,
            "userComment": self.user_comment,
            "outcomeTimestamp": self.outcome_timestamp.astimezone(UTC).isoformat(),
        }

    def idempotency_key(self, service_id: str) -> str:
        text = json.dumps([service_id, self.normalized()], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def parse_rfc3339(value: Any) -> datetime | None:
    """An RFC 3339 date-time with a time zone offset, or None."""
    if not isinstance(value, str) or "T" not in value.upper():
        return None
    try:
        parsed = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
        return parsed.astimezone(UTC) if parsed.tzinfo is not None else None
    except (ValueError, OverflowError):  # e.g. year 1 with a positive offset falls before year 1 UTC
        return None


def _nonempty_str(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _item_issues(index: int, item: Any) -> list[Issue]:
    where = f"feedback[{index}]"

    def issue(field: str, message: str) -> Issue:
        return Issue(f"{where}.{field}: {message}", expression=(f"{where}.{field}",))

    if not isinstance(item, dict):
        return [Issue(f"{where}: must be an object", expression=(where,))]
    issues = []
    card = item.get("card")
    if not isinstance(card, str) or not UUID_PATTERN.fullmatch(card):
        issues.append(issue("card", "the card's uuid (a UUID string) is required"))
    outcome = item.get("outcome")
    if outcome not in OUTCOMES:
        issues.append(issue("outcome", "must be 'accepted' or 'overridden'"))
    accepted = item.get("acceptedSuggestions")
    if outcome == "accepted" and (not isinstance(accepted, list) or not accepted):
        issues.append(issue("acceptedSuggestions", "required (a non-empty array) when accepted"))
    if "acceptedSuggestions" in item and (not isinstance(accepted, list) or not accepted or not all(
            isinstance(s, dict) and _nonempty_str(s.get("id")) for s in accepted)):
        issues.append(issue("acceptedSuggestions", "a non-empty array of objects with an 'id'"))
    override = item.get("overrideReason")
    if "overrideReason" in item:
        if not isinstance(override, dict):
            issues.append(issue("overrideReason", "must be an object"))
        else:
            reason, comment = override.get("reason"), override.get("userComment")
            if reason is None and comment is None:
                issues.append(issue("overrideReason", "needs a reason, a userComment, or both"))
            if "reason" in override and not (isinstance(reason, dict) and _nonempty_str(reason.get("code"))
                                           and _nonempty_str(reason.get("system"))):
                issues.append(issue("overrideReason.reason", "a Coding with 'system' and 'code'"))
            elif "reason" in override and "display" in reason and not isinstance(reason["display"], str):
                issues.append(issue("overrideReason.reason.display", "must be a string"))
            if "userComment" in override and not isinstance(comment, str):
                issues.append(issue("overrideReason.userComment", "must be a string"))
    if parse_rfc3339(item.get("outcomeTimestamp")) is None:
        issues.append(issue("outcomeTimestamp", "an RFC 3339 date-time with a time zone is required"))
    return issues


def parse_feedback(body: Any) -> list[FeedbackItem]:
    if not isinstance(body, dict) or not isinstance(body.get("feedback"), list) or not body["feedback"]:
        raise ApiError.single(400, "The body must be a JSON object with a non-empty 'feedback' array.",
                              expression=("feedback",))
    issues = [i for n, item in enumerate(body["feedback"]) for i in _item_issues(n, item)]
    if issues:
        raise ApiError(400, issues)
    items = []
    for raw in body["feedback"]:
        override = raw.get("overrideReason") or {}
        reason = override.get("reason")
        items.append(FeedbackItem(
            card=raw["card"].lower(),  # UUIDs compare case-insensitively; cards are issued lower case
            outcome=raw["outcome"],
            accepted_suggestions=tuple(s["id"] for s in raw.get("acceptedSuggestions") or []),
            reason={k: reason[k] for k in ("system", "code", "display") if reason.get(k)} if reason else None,
            user_comment=override.get("userComment"),
            outcome_timestamp=parse_rfc3339(raw["outcomeTimestamp"]),  # type: ignore[arg-type]
        ))
    return items


def store_feedback(database: Any, service_id: str, items: list[FeedbackItem], client_iss: str | None) -> int:
    """Insert items not seen before; returns how many were new."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    now = datetime.now(UTC)
    new = 0
    with database.session() as session:
        insert = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
        cards = {i.card for i in items}
        rows = session.execute(select(Alert.card_uuid, Alert.card).where(Alert.card_uuid.in_(cards)))
        offered = {card_uuid: card for card_uuid, card in rows}
        known = set(offered)
        for item in items:
            reason = dict(item.reason or {})
            if reason and not reason.get("display"):  # the sandbox sends no display
                reason["display"] = _offered_display(offered.get(item.card), reason)
            stmt = insert(Feedback).values(
                idempotency_key=item.idempotency_key(service_id),
                received_at=now,
                service_id=service_id,
                card_uuid=item.card,
                unknown_card=item.card not in known,
                outcome=item.outcome,
                accepted_suggestions=list(item.accepted_suggestions),
                override_system=reason.get("system"),
                override_code=reason.get("code"),
                override_display=reason.get("display"),
                user_comment=item.user_comment,
                outcome_timestamp=item.outcome_timestamp,
                client_iss=client_iss,
            ).on_conflict_do_nothing(index_elements=["idempotency_key"]).returning(Feedback.id)
            new += session.execute(stmt).first() is not None
    return new


def _offered_display(card: dict | None, reason: dict[str, str]) -> str | None:
    """The display of the override reason as our card offered it, when the client left it out."""
    for offered in (card or {}).get("overrideReasons") or []:
        if offered.get("system") == reason.get("system") and offered.get("code") == reason.get("code"):
            return offered.get("display")
    return None


@bp.post("/cds-services/<service_id>/feedback")
def receive_feedback(service_id: str):
    if service_id not in SERVICES:
        raise ApiError.single(404, f"Unknown CDS service '{service_id}'. "
                                   "GET /cds-services lists the services offered.")
    body = request.get_json(silent=True)
    items = parse_feedback(body)
    database = current_app.extensions["cds"].database
    if database is None:
        raise ApiError.single(503, "Feedback storage is not configured on this service.",
                              code="transient")
    client = g.get("cds_client") or {}
    from .metrics import counting_feedback_failures  # not at import time: see cds_service.metrics
    with counting_feedback_failures():
        stored = store_feedback(database, service_id, items, client.get("iss"))
    return jsonify({"received": len(items), "stored": stored})
