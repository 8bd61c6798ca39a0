"""Reviewer accounts: hashed passwords (werkzeug.security), created with the CLI only."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import current_app
from flask_login import UserMixin
from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from ..db import Database
from ..models import Reviewer

MIN_PASSWORD_LENGTH = 10
# Compared against when the username is unknown, so both cases take as long.
_DUMMY_HASH = generate_password_hash("not-a-real-password")


class ReviewerUser(UserMixin):
    def __init__(self, reviewer_id: int, username: str) -> None:
        self.id = str(reviewer_id)
        self.username = username


def load_reviewer(user_id: str) -> ReviewerUser | None:
    database: Database = current_app.extensions["cds"].database
    if not user_id.isdigit():
        return None
    with database.session() as session:
        reviewer = session.get(Reviewer, int(user_id))
        return ReviewerUser(reviewer.id, reviewer.username) if reviewer else None


def authenticate(database: Database, username: str, password: str) -> ReviewerUser | None:
    with database.session() as session:
        reviewer = session.scalar(select(Reviewer).where(Reviewer.username == username))
        if reviewer is None:
            check_password_hash(_DUMMY_HASH, password)
            return None
        if not check_password_hash(reviewer.password_hash, password):
            return None
        return ReviewerUser(reviewer.id, reviewer.username)


def create_reviewer(database: Database, username: str, password: str) -> None:
    """Create or reset a reviewer's password."""
    if not username or len(username) > 100 or not username.isprintable() or " " in username:
        raise ValueError("the username must be 1-100 printable characters without spaces")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    with database.session() as session:
        reviewer = session.scalar(select(Reviewer).where(Reviewer.username == username))
        if reviewer is None:
            reviewer = Reviewer(username=username, created_at=datetime.now(UTC), password_hash="")
            session.add(reviewer)
        reviewer.password_hash = generate_password_hash(password)
