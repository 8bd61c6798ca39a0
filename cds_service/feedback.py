"""``POST /cds-services/<id>/feedback`` (CDS Hooks 2.0 §Feedback)."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Blueprint, current_app, g, jsonify, request
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .errors import ApiError, Issue
from .hook_request import parse_body
from .http_policy import require_identity_encoding
from .models import Alert, Feedback, HookCallRecord
from .services import SERVICES
from .storage_safety import storable

log = logging.getLogger(__name__)
bp = Blueprint("cds_feedback", __name__)

FEEDBACK = "feedback"  # spool record kind
RETRY_AFTER_SECONDS = 30
OUTCOMES = ("accepted", "overridden")
# Years whose times convert to UTC and back on every offset (the OpenAPI pattern says the same).
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})\Z")
YEAR_PATTERN = re.compile(r"(?:[1-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])-")
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
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()

    @classmethod
    def from_normalized(cls, data: dict[str, Any]) -> FeedbackItem:
        return cls(card=data["card"], outcome=data["outcome"],
                   accepted_suggestions=tuple(data["acceptedSuggestions"]), reason=data["reason"],
                   user_comment=data["userComment"],
                   outcome_timestamp=datetime.fromisoformat(data["outcomeTimestamp"]))


def parse_rfc3339(value: Any) -> datetime | None:
    """An RFC 3339 date-time with a time zone offset in years 1000-9998, or None (what
    ``datetime.fromisoformat`` reads beyond RFC 3339, a week date or a time without seconds, is not one)."""
    if not isinstance(value, str) or not RFC3339.match(value) or not YEAR_PATTERN.match(value):
        return None
    try:
        parsed = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
        return parsed.astimezone(UTC) if parsed.tzinfo is not None else None
    except (ValueError, OverflowError):  # e.g. year 1 with a positive offset falls before year 1 UTC
        return None


def _nonempty_str(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _item_issues(index: int, item: Any, max_comment: int) -> list[Issue]:
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
            elif isinstance(comment, str) and len(comment) > max_comment:
                issues.append(issue("overrideReason.userComment",
                                    f"longer than the limit of {max_comment} characters"))
    if parse_rfc3339(item.get("outcomeTimestamp")) is None:
        issues.append(issue("outcomeTimestamp", "an RFC 3339 date-time with a time zone is required"))
    return issues


def parse_feedback(body: Any, max_items: int = 100, max_comment: int = 2000) -> list[FeedbackItem]:
    if not isinstance(body, dict) or not isinstance(body.get("feedback"), list) or not body["feedback"]:
        raise ApiError.single(400, "The body must be a JSON object with a non-empty 'feedback' array.",
                              expression=("feedback",))
    if len(body["feedback"]) > max_items:
        raise ApiError.single(400, f"At most {max_items} feedback items are accepted per request.",
                              expression=("feedback",))
    issues = [i for n, item in enumerate(body["feedback"]) for i in _item_issues(n, item, max_comment)]
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


CARD_WAIT_S = 0.5  # how long feedback waits for a card another worker answered to be committed
_CARD_POLL_S = 0.025


def store_feedback(database: Any, service_id: str, items: list[FeedbackItem], client_iss: str | None,
                   max_unknown_per_day: int = 1000, received_at: datetime | None = None,
                   card_wait: float = 0.0) -> int:
    """Insert items not seen before; returns how many were new.

    ``card_wait``: with the audit journal a call is answered a moment before its card is in the
    database, and feedback answered by another worker can come in that moment (this worker's own
    calls are settled by ``Database.session``); so a card not found yet is looked for again for up
    to ``card_wait`` seconds before the feedback is kept as for an unknown card (without its
    comment). Only feedback naming a card not yet stored waits."""
    if card_wait > 0:
        _wait_for_cards(database, {i.card for i in items}, card_wait)
    with database.session() as session:
        return write_feedback(session, service_id, items, client_iss, received_at or datetime.now(UTC),
                              max_unknown_per_day)


def write_feedback(session: Session, service_id: str, items: list[FeedbackItem], client_iss: str | None,
                   received_at: datetime, max_unknown_per_day: int) -> int:
    """Insert items not seen before (idempotency key); feedback on unknown cards kept minimal and capped."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    cards = {i.card for i in items}
    # A card is known to this feedback only when this service gave it to this client: another
    # service's or client's card is feedback on a card it was never shown (docs/review.md).
    rows = session.execute(select(Alert.card_uuid, Alert.card)
                           .join(HookCallRecord, Alert.hook_call_id == HookCallRecord.id)
                           .where(Alert.card_uuid.in_(cards), HookCallRecord.service_id == service_id,
                                  HookCallRecord.client_iss.is_not_distinct_from(client_iss)))
    offered = {card_uuid: card for card_uuid, card in rows}
    unknown_room = _unknown_room(session, service_id, received_at, max_unknown_per_day) \
        if any(i.card not in offered for i in items) else 0
    new = 0
    for item in items:
        known = item.card in offered
        if not known:
            if unknown_room <= 0:
                log.warning("feedback for an unknown card not stored: over FEEDBACK_MAX_UNKNOWN_PER_DAY")
                continue
            unknown_room -= 1
        reason = dict(item.reason or {})
        if not known:  # a card this service never issued: keep no free text
            reason.pop("display", None)
        elif reason and not reason.get("display"):  # the sandbox sends no display
            reason["display"] = _offered_display(offered.get(item.card), reason)
        values = storable(Feedback, {
            "idempotency_key": item.idempotency_key(service_id),
            "received_at": received_at,
            "service_id": service_id,
            "card_uuid": item.card,
            "unknown_card": not known,
            "outcome": item.outcome,
            "accepted_suggestions": list(item.accepted_suggestions),
            "override_system": reason.get("system"),
            "override_code": reason.get("code"),
            "override_display": reason.get("display"),
            "user_comment": item.user_comment if known else None,
            "outcome_timestamp": item.outcome_timestamp,
            "client_iss": client_iss,
        })
        stmt = (insert(Feedback).values(**values)
                .on_conflict_do_nothing(index_elements=["idempotency_key"]).returning(Feedback.id))
        new += session.execute(stmt).first() is not None
    return new


def _unknown_room(session: Session, service_id: str, now: datetime, per_day: int) -> int:
    stored = session.scalar(select(func.count()).select_from(Feedback).where(
        Feedback.service_id == service_id, Feedback.unknown_card.is_(True),
        Feedback.received_at >= now - timedelta(days=1)))
    return per_day - (stored or 0)


def feedback_payload(service_id: str, items: list[FeedbackItem], client_iss: str | None,
                     received_at: datetime) -> dict[str, Any]:
    """A feedback request as plain data for the spool."""
    return {"service_id": service_id, "client_iss": client_iss, "received_at": received_at.isoformat(),
            "items": [i.normalized() for i in items]}


_pause = time.sleep  # between polls (a test makes the other worker commit here)
_CARD_WAITERS = threading.BoundedSemaphore(2)  # feedback requests of this process waiting at once


def _wait_for_cards(database: Any, cards: set[str], wait: float) -> None:
    """Poll for ``cards`` (this process's own writes are settled by the session that stores the
    feedback). At most two requests of a process wait at a time, so feedback naming cards never
    issued cannot hold up many threads; a third does not wait."""
    if not _CARD_WAITERS.acquire(blocking=False):
        return
    try:
        _poll_for_cards(database, cards, wait)
    finally:
        _CARD_WAITERS.release()


def _poll_for_cards(database: Any, cards: set[str], wait: float) -> None:
    deadline = time.monotonic() + wait
    while True:
        with database.session(settle=False) as session:
            found = set(session.scalars(select(Alert.card_uuid).where(Alert.card_uuid.in_(cards))))
        if found >= cards or time.monotonic() >= deadline:
            return
        _pause(_CARD_POLL_S)


def replay_feedback(database: Any, max_unknown_per_day: int, payload: dict[str, Any]) -> None:
    items = [FeedbackItem.from_normalized(i) for i in payload["items"]]
    store_feedback(database, payload["service_id"], items, payload["client_iss"], max_unknown_per_day,
                   datetime.fromisoformat(payload["received_at"]))


def _offered_display(card: dict | None, reason: dict[str, str]) -> str | None:
    """The display of the override reason as our card offered it, when the client left it out."""
    for offered in (card or {}).get("overrideReasons") or []:
        if offered.get("system") == reason.get("system") and offered.get("code") == reason.get("code"):
            return offered.get("display")
    return None


@bp.post("/cds-services/<service_id>/feedback", strict_slashes=False)
def receive_feedback(service_id: str):
    if service_id not in SERVICES:
        raise ApiError.single(404, f"Unknown CDS service '{service_id}'. "
                                   "GET /cds-services lists the services offered.")
    config = current_app.config
    require_identity_encoding(request.headers.get("Content-Encoding"))
    # The hook's own reader: any Content-Type (as for hook calls), UTF-8 only, and a body nested
    # too deeply or not JSON at all is a 400 that says so, never a 500.
    body = parse_body(request.get_data(cache=False))
    items = parse_feedback(body, int(config["FEEDBACK_MAX_ITEMS"]), int(config["FEEDBACK_MAX_COMMENT_CHARS"]))
    state = current_app.extensions["cds"]
    if state.database is None:
        raise ApiError.single(503, "Feedback storage is not configured on this service.",
                              code="transient")
    client_iss = (g.get("cds_client") or {}).get("iss")
    received_at = datetime.now(UTC)
    replayer = state.replayer
    try:
        if replayer is not None and replayer.spool.pending():  # any process's spooled records first,
            replayer.replay_now()  # so that feedback finds the cards of hook calls spooled before it
        from .metrics import counting_feedback_failures  # not at import time: see cds_service.metrics
        with counting_feedback_failures():
            stored = store_feedback(state.database, service_id, items, client_iss,
                                    int(config["FEEDBACK_MAX_UNKNOWN_PER_DAY"]), received_at,
                                    card_wait=CARD_WAIT_S if getattr(state.recorder, "journal", None) else 0.0)
    except Exception as exc:  # the database is unavailable or refused the write
        log.error("feedback write failed: %s", type(exc).__name__)
        payload = feedback_payload(service_id, items, client_iss, received_at)
        if replayer is not None and replayer.keep(FEEDBACK, payload):
            return jsonify({"received": len(items), "stored": 0, "spooled": len(items)})
        raise ApiError(503, [Issue("Feedback cannot be stored right now; send it again later.",
                                   "transient")],
                       headers={"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
    if replayer is not None:
        replayer.after_success()
    return jsonify({"received": len(items), "stored": stored})
