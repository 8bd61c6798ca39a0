"""Routes of the review page."""

from __future__ import annotations

import csv
import io
import logging
from datetime import UTC, datetime
from functools import cache
from urllib.parse import urlsplit

from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf.csrf import CSRFError
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import aliased

from ..db import Database
from ..models import Alert, Feedback, HookCallRecord
from . import throttle
from .auth import authenticate, end_sessions
from .chart import bar_chart
from .forms import DISPOSITIONS, DispositionForm, LoginForm, LogoutForm
from .queries import (
    OUTCOME_FILTERS,
    AlertFilter,
    as_utc,
    feedback_on_its_card,
    filter_choices,
    group_members,
    list_alerts,
    summarize,
)

log = logging.getLogger(__name__)

MAX_PAGE = 100_000  # deeper pages are clamped (an offset past 64-bit range would crash the database)
bp = Blueprint("review", __name__, url_prefix="/review")


@cache
def _markdown():
    """Card detail is service-made GFM; raw HTML is escaped, unsafe link schemes are refused.
    Built on the first alert detail page: markdown-it is not imported at start-up."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")


def _db() -> Database:
    return current_app.extensions["cds"].database


@bp.app_template_global()
def logout_form() -> LogoutForm:
    return LogoutForm()


@bp.app_template_filter("when")
def _when(value: datetime | None) -> str:
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


@bp.after_request
def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = "default-src 'self'; style-src 'self' 'unsafe-inline'"
    return response


@bp.before_request
def _csrf_for_review_forms() -> None:
    if current_app.config.get("WTF_CSRF_ENABLED", True):
        current_app.extensions["csrf"].protect()  # a no-op for GET and HEAD


@bp.errorhandler(CSRFError)
def _csrf_error(error: CSRFError):
    flash("The form had expired or was not sent from this page. Please try again.", "error")
    return render_template("review/base.html"), 400


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/review") and not urlsplit(target).netloc and "\\" not in target:
        return target
    return url_for("review.alerts")


@bp.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm()
    if form.validate_on_submit():
        database, settings = _db(), throttle.ThrottleSettings.from_config(current_app.config)
        username, address = form.username.data or "", request.remote_addr
        limits = {throttle.account_key(username): settings.account_limit,
                  throttle.address_key(address): settings.address_limit}
        wait = throttle.seconds_locked(database, list(limits))
        if wait:
            log.warning("review login refused while locked: account %s, address %s, %.0f s left",
                        _account_tag(username), address, wait)
            return _throttled(form, wait)
        user = authenticate(database, username, form.password.data or "")
        if user is not None:
            throttle.clear(database, throttle.account_key(username))
            login_user(user)
            return redirect(_safe_next(request.args.get("next")))
        locked = throttle.record_failure(database, limits, settings)
        log.info("review login failed: account %s, address %s", _account_tag(username), address)
        if locked:
            log.warning("review login locked for %.0f s after repeated failures: %s (account %s, address %s)",
                        settings.lock_seconds, " and ".join(k.split(":")[0] for k in locked),
                        _account_tag(username), address)
            return _throttled(form, settings.lock_seconds)
        flash("Unknown username or wrong password.", "error")
    return render_template("review/login.html", form=form), 200 if request.method == "GET" else 401


def _account_tag(username: str) -> str:
    """How logs name an account: a short hash, never the typed username."""
    return throttle.digest(username)[:12]


def _throttled(form: LoginForm, wait: float):
    minutes = max(1, round(wait / 60))
    flash(f"Too many failed sign-ins. Sign-in is locked; try again in about {minutes} "
          f"minute{'s' if minutes != 1 else ''}.", "error")
    response = current_app.make_response((render_template("review/login.html", form=form), 429))
    response.headers["Retry-After"] = str(max(1, int(wait + 0.999)))
    return response


@bp.post("/logout")
@login_required
def logout():
    if LogoutForm().validate_on_submit():
        end_sessions(_db(), current_user.reviewer_id)  # ends this session server side, everywhere
        logout_user()
    return redirect(url_for("review.login"))


@bp.get("/")
@login_required
def alerts():
    flt = AlertFilter.from_args(request.args)
    page = min(max(request.args.get("page", 1, type=int) or 1, 1), MAX_PAGE)
    size = int(current_app.config["REVIEW_PAGE_SIZE"])
    with _db().session() as session:
        groups = list_alerts(session, flt, limit=size + 1, offset=(page - 1) * size)
        choices = filter_choices(session)
    return render_template("review/list.html", groups=groups[:size], flt=flt, choices=choices,
                           outcomes=OUTCOME_FILTERS, page=page, has_next=len(groups) > size)


CSV_COLUMNS = ["alert_id", "calls_grouped", "first_seen_utc", "last_seen_utc", "latest_card_uuid",
               "order", "drug", "route", "indication_family", "indication_codes", "policy", "section",
               "indicator", "summary", "outcome_any_call", "disposition", "disposition_note"]


@bp.get("/alerts.csv")
@login_required
def alerts_csv():
    """One row per alert group (same patient, order and decision), as on the page."""
    flt = AlertFilter.from_args(request.args)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    with _db().session() as session:
        for group in list_alerts(session, flt):
            alert, held = group.latest, group.disposition
            codes = " ".join(f"{c.get('code')}" for c in alert.indication_codes)
            writer.writerow([_cell(v) for v in (
                alert.id, group.calls, _when(group.first_seen), _when(group.last_seen), alert.card_uuid,
                alert.order_id, alert.drug_label, alert.route, alert.indication_family_label, codes,
                alert.policy_id, alert.policy_section, alert.indicator, alert.summary,
                group.outcome or "no feedback", held.disposition if held else None,
                held.disposition_note if held else None)])
    return Response(out.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": "attachment; filename=alerts.csv"})


def _cell(value: object) -> str:
    """Neutralise spreadsheet formulas in exported text."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@bp.route("/alerts/<int:alert_id>", methods=["GET", "POST"])
@login_required
def alert_detail(alert_id: int):
    """One alert group, reached from any of its calls' rows: the newest card, every call, all feedback."""
    with _db().session() as session:
        alert = session.get(Alert, alert_id)
        if alert is None:
            abort(404)
        members = group_members(session, alert)
        latest = members[-1]
        held = max((m for m in members if m.disposition and m.disposition_at), default=None,
                   key=lambda m: (as_utc(m.disposition_at), m.id))
        form = DispositionForm(disposition=held.disposition if held else None,
                               note=held.disposition_note if held else None)
        if form.validate_on_submit():
            latest.disposition = form.disposition.data  # the group's disposition: its newest is shown
            latest.disposition_note = (form.note.data or "").strip() or None
            latest.disposition_by = current_user.username
            latest.disposition_at = datetime.now(UTC)
            flash("Disposition saved.", "info")
            return redirect(url_for("review.alert_detail", alert_id=latest.id))
        if form.is_submitted() and form.errors:
            flash("The disposition was not saved: " + "; ".join(
                f"{k}: {', '.join(v)}" for k, v in form.errors.items()), "error")
        cards = [m.card_uuid for m in members]
        call = aliased(HookCallRecord)
        feedback = list(session.scalars(
            select(Feedback).join(Alert, Alert.card_uuid == Feedback.card_uuid)
            .join(call, Alert.hook_call_id == call.id)
            .where(Feedback.card_uuid.in_(cards), feedback_on_its_card(call))
            .order_by(Feedback.outcome_timestamp, Feedback.id)))
        detail_html = Markup(_markdown().render(str(latest.card.get("detail", ""))))
        return render_template("review/detail.html", alert=latest, call=latest.hook_call,
                               members=members, held=held, feedback=feedback, form=form,
                               detail_html=detail_html, dispositions=dict(DISPOSITIONS))


@bp.get("/summary")
@login_required
def summary():
    flt = AlertFilter.from_args(request.args)
    with _db().session() as session:
        data = summarize(session, flt)
        choices = filter_choices(session)
    pct = lambda v: f"{v:.0%}"  # noqa: E731
    charts = {
        "week": bar_chart("Alerts per week", data.per_week),
        "reason": bar_chart("Overrides by reason, share of alerts with feedback",
                            [(r, rate) for r, _, rate in data.by_reason], pct, 1.0),
        "family": bar_chart("Override rate by indication family",
                            [(f, rate) for f, _, with_fb, _, rate in data.by_family if with_fb], pct, 1.0),
    }
    failures = getattr(current_app.extensions["cds"].recorder, "failures", 0)
    return render_template("review/summary.html", data=data, charts=charts, flt=flt, choices=choices,
                           outcomes=OUTCOME_FILTERS, recorder_failures=failures)
