"""Tables for the audit trail, CDS Hooks feedback and the pharmacist review page.

Nothing here holds an access token, a JWT or a patient name: only the patient id as the EHR
sent it, codes, and the cards the service itself produced.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from .json_text import ascii_json


class Base(DeclarativeBase):
    pass


class HookCallRecord(Base):
    """One call of a hook service (every call with a card; all calls with AUDIT_ALL_CALLS)."""

    __tablename__ = "hook_call"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Idempotency key of the record (a UUID made when the call is recorded): a record replayed
    # from the spool twice is stored once. NULL for rows written before revision 0003.
    record_key: Mapped[str | None] = mapped_column(String(36), unique=True, index=True)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    hook_instance: Mapped[str] = mapped_column(String(100), index=True)
    service_id: Mapped[str] = mapped_column(String(100))
    hook: Mapped[str] = mapped_column(String(50))
    client_iss: Mapped[str | None] = mapped_column(String(500))
    patient_id: Mapped[str] = mapped_column(String(200))
    order_ids: Mapped[list] = mapped_column(JSON)
    card_count: Mapped[int] = mapped_column(Integer)
    latency_ms: Mapped[float] = mapped_column(Float)

    alerts: Mapped[list[Alert]] = relationship(back_populates="hook_call")


class Alert(Base):
    """One card returned, with the decision behind it.

    Every call keeps its own row (the audit trail). The review page shows one alert per
    *group*: the calls for the same patient (``hook_call.patient_id``) with the same ``group_key``
    (same draft order and decision), see :meth:`key_for` and ``review/queries.py``.
    """

    __tablename__ = "alert"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hook_call_id: Mapped[int] = mapped_column(ForeignKey("hook_call.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    card_uuid: Mapped[str] = mapped_column(String(100), unique=True)
    order_id: Mapped[str] = mapped_column(String(500))
    drug: Mapped[str | None] = mapped_column(String(50), index=True)
    drug_label: Mapped[str | None] = mapped_column(String(200))
    route: Mapped[str] = mapped_column(Text)
    indication_codes: Mapped[list] = mapped_column(JSON)
    indication_family: Mapped[str | None] = mapped_column(String(100), index=True)
    indication_family_label: Mapped[str | None] = mapped_column(String(200))
    policy_id: Mapped[str] = mapped_column(String(100), index=True)
    policy_section: Mapped[str | None] = mapped_column(String(100))
    decision_kind: Mapped[str] = mapped_column(String(50))
    summary: Mapped[str] = mapped_column(String(300))
    indicator: Mapped[str] = mapped_column(String(20))
    card: Mapped[dict] = mapped_column(JSON)  # the card exactly as returned to the EHR
    disposition: Mapped[str | None] = mapped_column(String(50))
    disposition_note: Mapped[str | None] = mapped_column(Text)
    disposition_by: Mapped[str | None] = mapped_column(String(100))
    disposition_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The draft order and decision this card is about; with the patient id it groups the calls.
    group_key: Mapped[str] = mapped_column(String(64), index=True)

    hook_call: Mapped[HookCallRecord] = relationship(back_populates="alerts")

    @staticmethod
    def key_for(order_id: str, drug: str | None, policy_id: str, policy_section: str | None,
                indication_family: str | None, decision_kind: str) -> str:
        """SHA-256 (hex) of the order and decision; migration 0004 backfills with a frozen copy."""
        parts = [order_id, drug, policy_id, policy_section, indication_family, decision_kind]
        # ascii_json writes exactly json.dumps(parts, separators=(",", ":")), the frozen copy's text.
        return hashlib.sha256(ascii_json(parts).encode()).hexdigest()


class Feedback(Base):
    """One CDS Hooks feedback item; stored once per idempotency key."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    service_id: Mapped[str] = mapped_column(String(100))
    card_uuid: Mapped[str] = mapped_column(String(100), index=True)
    unknown_card: Mapped[bool] = mapped_column(Boolean, default=False)
    outcome: Mapped[str] = mapped_column(String(20))
    accepted_suggestions: Mapped[list] = mapped_column(JSON)
    override_system: Mapped[str | None] = mapped_column(String(500))
    override_code: Mapped[str | None] = mapped_column(String(200))
    override_display: Mapped[str | None] = mapped_column(String(500))
    user_comment: Mapped[str | None] = mapped_column(Text)
    outcome_timestamp: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    client_iss: Mapped[str | None] = mapped_column(String(500))


class Reviewer(Base):
    __tablename__ = "reviewer"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Part of the login session id; bumped at logout (and password reset) to end all sessions.
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class SeenToken(Base):
    """A JWT ``(iss, jti)`` already accepted, kept until the token expires (replay protection).

    ``token_key`` is a SHA-256 of ``iss`` and ``jti`` (fixed length, whatever the client sends);
    its uniqueness is what lets only one worker or instance accept a token.
    """

    __tablename__ = "seen_token"

    token_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[float] = mapped_column(Float, index=True)  # seconds since the epoch


class SharedCooldown(Base):
    """A named "not again before" time shared by all workers (e.g. JWKS refreshes)."""

    __tablename__ = "shared_cooldown"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    not_before: Mapped[float] = mapped_column(Float)  # seconds since the epoch


class LoginThrottle(Base):
    """Failed review-page logins per account or client address, shared by all workers and hosts.

    ``key`` is ``account:<sha256 of the username>`` or ``address:<sha256 of the address>``; times
    are Unix seconds.
    """

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    window_start: Mapped[float] = mapped_column(Float)
    locked_until: Mapped[float | None] = mapped_column(Float)


class CoverageAssertionRecord(Base):
    """One coverage assertion given in a CRD coverage-information system action (found-11).

    One row per (assertion id, order): the same Coverage reuses one id within a response, so
    an id can name several orders. ``extension`` is the repetition exactly as returned.
    """

    __tablename__ = "coverage_assertion"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    assertion_id: Mapped[str] = mapped_column(String(100), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    hook_instance: Mapped[str] = mapped_column(String(100), index=True)
    service_id: Mapped[str] = mapped_column(String(100))
    client_iss: Mapped[str | None] = mapped_column(String(500))
    patient_id: Mapped[str] = mapped_column(String(200))
    order_ref: Mapped[str] = mapped_column(String(500))
    coverage_ref: Mapped[str] = mapped_column(String(500))
    policy_id: Mapped[str] = mapped_column(String(100))
    policy_version: Mapped[str] = mapped_column(String(200))
    decision_kind: Mapped[str] = mapped_column(String(50))
    covered: Mapped[str] = mapped_column(String(50))
    crd_version: Mapped[str] = mapped_column(String(20))
    extension: Mapped[dict] = mapped_column(JSON)
