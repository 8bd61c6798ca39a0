"""Reviewer accounts: hashed passwords (werkzeug.security), created with the CLI only.

A login session names the reviewer *and* their session version (``"<id>.<version>"``). Logout
(and a password reset) bumps the version in the database, and every request checks it, so a
session cookie captured before logout no longer opens anything.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache

from flask import current_app
from flask_login import UserMixin
from sqlalchemy import select, update
from werkzeug.security import check_password_hash, generate_password_hash

from ..db import Database
from ..models import Reviewer

MIN_PASSWORD_LENGTH = 10


@cache
def _dummy_hash() -> str:
    """Compared against when the username is unknown, so both cases take as long. Made on the
    first sign-in, not at import: one scrypt hash costs ~0.1 s of every start-up otherwise."""
    return generate_password_hash("not-a-real-password")


class ReviewerUser(UserMixin):
    def __init__(self, reviewer_id: int, username: str, session_version: int) -> None:
        self.reviewer_id = reviewer_id
        self.id = f"{reviewer_id}.{session_version}"
        self.username = username


def load_reviewer(user_id: str) -> ReviewerUser | None:
    """The signed-in reviewer, or None when the session's version was ended (logout) or is malformed."""
    database: Database = current_app.extensions["cds"].database
    reviewer_id, _, version = user_id.partition(".")
    if not (reviewer_id.isdigit() and version.isdigit()):
        return None
    with database.session() as session:
        reviewer = session.get(Reviewer, int(reviewer_id))
        if reviewer is None or reviewer.session_version != int(version):
            return None
        return ReviewerUser(reviewer.id, reviewer.username, reviewer.session_version)


def end_sessions(database: Database, reviewer_id: int) -> None:
    """Invalidate every session of this reviewer, on every worker and host."""
    with database.session() as session:
        session.execute(update(Reviewer).where(Reviewer.id == reviewer_id)
                        .values(session_version=Reviewer.session_version + 1))


def authenticate(database: Database, username: str, password: str) -> ReviewerUser | None:
    dummy = _dummy_hash()  # made (once) before the lookup, so the first sign-in costs the same either way
    with database.session() as session:
        reviewer = session.scalar(select(Reviewer).where(Reviewer.username == username))
        if reviewer is None:
            check_password_hash(dummy, password)
            return None
        if not check_password_hash(reviewer.password_hash, password):
            return None
        return ReviewerUser(reviewer.id, reviewer.username, reviewer.session_version)


def create_reviewer(database: Database, username: str, password: str) -> None:
    """Create or reset a reviewer's password (a reset also ends their open sessions)."""
    if not username or len(username) > 100 or not username.isprintable() or " " in username:
        raise ValueError("the username must be 1-100 printable characters without spaces")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    with database.session() as session:
        reviewer = session.scalar(select(Reviewer).where(Reviewer.username == username))
        if reviewer is None:
            reviewer = Reviewer(username=username, created_at=datetime.now(UTC), password_hash="",
                                session_version=0)
            session.add(reviewer)
        else:
            reviewer.session_version += 1
        reviewer.password_hash = generate_password_hash(password)
