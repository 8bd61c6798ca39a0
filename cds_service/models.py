"""Tables for the audit trail, CDS Hooks feedback and the pharmacist review page.

Nothing here holds an access token, a JWT or a patient name: only the patient id as the EHR
sent it, codes, and the cards the service itself produced.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class HookCallRecord(Base):
    """One call of a hook service (every call with a card; all calls with AUDIT_ALL_CALLS)."""

    __tablename__ = "hook_call"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
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
    """One card returned, with the decision behind it."""

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

    hook_call: Mapped[HookCallRecord] = relationship(back_populates="alerts")


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
