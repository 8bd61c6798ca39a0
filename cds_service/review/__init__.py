"""The pharmacist review page under ``/review`` (login required; accounts come from the CLI)."""

from __future__ import annotations

from flask import Flask
from flask_login import LoginManager
from flask_wtf import CSRFProtect

from . import assertions  # noqa: F401  (adds /review/assertions to bp: CRD coverage assertions)
from .auth import load_reviewer
from .views import bp

__all__ = ["init_review"]


def init_review(app: Flask) -> None:
    """Register /review when storage is on (it needs the database and a session secret)."""
    if app.extensions["cds"].database is None:
        return
    # Flask's defaults hold these keys (SAMESITE = None), so setdefault would do nothing.
    if app.config.get("SESSION_COOKIE_SAMESITE") is None:
        app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    # CSRF checks only for /review: the CDS Hooks endpoints are JSON APIs called by EHRs.
    app.config.setdefault("WTF_CSRF_CHECK_DEFAULT", False)
    CSRFProtect(app)  # checked for /review requests in views._csrf_for_review_forms
    login = LoginManager()
    login.login_view = "review.login"
    login.login_message = "Please sign in to see the review page."
    login.user_loader(load_reviewer)
    login.init_app(app)
    app.register_blueprint(bp)

