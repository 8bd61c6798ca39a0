"""Issue 9 §7: the review login resists guessing, logout means logout, the cookie is SameSite=Lax."""

from __future__ import annotations

import logging
import time

import pytest

from cds_service import create_app
from cds_service.review.auth import create_reviewer

PASSWORD = "correct horse battery"
LOCK_SECONDS = 1.5


def _app(database_url, **config):
    app = create_app({"TESTING": True, "AUTH_ENABLED": False, "DATABASE_URL": database_url,
                      "SECRET_KEY": "test-secret", "WTF_CSRF_ENABLED": False,
                      "REVIEW_LOGIN_LOCK_SECONDS": LOCK_SECONDS, **config})
    create_reviewer(app.extensions["cds"].database, "pharm", PASSWORD)
    return app


def _login(client, password=PASSWORD, username="pharm", address="10.0.0.1"):
    return client.post("/review/login", data={"username": username, "password": password},
                       environ_base={"REMOTE_ADDR": address})


def test_fifty_wrong_passwords_lock_the_account_after_five_even_for_the_right_password(database_url, caplog):
    client = _app(database_url).test_client()
    caplog.set_level(logging.INFO, logger="cds_service.review.views")
    statuses = [_login(client, f"guess number {n}").status_code for n in range(50)]
    assert statuses[:4] == [401] * 4 and set(statuses[4:]) == {429}
    locked = _login(client)  # the right password during the lock is refused too
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) >= 1
    assert "Too many failed sign-ins" in locked.get_data(as_text=True)
    assert client.get("/review/").status_code == 302
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "review login locked" in logged and "refused while locked" in logged
    assert "pharm" not in logged and "guess number" not in logged and PASSWORD not in logged
    time.sleep(LOCK_SECONDS + 0.2)
    assert _login(client).status_code == 302  # the lock expired
    assert client.get("/review/").status_code == 200


def test_a_successful_login_clears_the_account_count(database_url):
    client = _app(database_url).test_client()
    for _ in range(4):
        assert _login(client, "wrong password!").status_code == 401
    assert _login(client).status_code == 302
    assert [_login(client, "wrong password!").status_code for _ in range(5)] == [401] * 4 + [429]


def test_failures_from_one_address_over_many_accounts_lock_that_address_only(database_url):
    client = _app(database_url, REVIEW_LOGIN_MAX_FAILURES_PER_ADDRESS=3).test_client()
    statuses = [_login(client, "wrong password!", username=f"user{n}").status_code for n in range(3)]
    assert statuses == [401, 401, 429]
    assert _login(client).status_code == 429  # a real account from the locked address
    assert _login(client, address="10.0.0.2").status_code == 302  # from another address


def test_failure_counts_are_shared_by_workers_on_one_database(database_url):
    first, second = _app(database_url), _app(database_url)  # two workers (or hosts), one database
    a, b = first.test_client(), second.test_client()
    assert [_login(a, "wrong password!").status_code for _ in range(3)] == [401] * 3
    assert [_login(b, "wrong password!").status_code for _ in range(2)] == [401, 429]
    assert _login(a).status_code == 429


def _session_cookie(client) -> str:
    cookie = client.get_cookie("session")
    assert cookie is not None
    return cookie.value


def test_a_session_cookie_captured_before_logout_opens_nothing_after_logout(database_url):
    app = _app(database_url)
    client = app.test_client()
    assert _login(client).status_code == 302
    captured = _session_cookie(client)
    replay = app.test_client()
    replay.set_cookie("session", captured)
    assert replay.get("/review/").status_code == 200  # the captured cookie works before logout
    assert client.post("/review/logout").status_code == 302
    for path in ("/review/", "/review/alerts.csv", "/review/summary"):
        response = replay.get(path)
        assert response.status_code == 302 and "/review/login" in response.headers["Location"], path
    assert _login(client).status_code == 302 and client.get("/review/").status_code == 200
    assert replay.get("/review/alerts.csv").status_code == 302  # a new login does not revive it


def test_a_password_reset_ends_open_sessions(database_url):
    app = _app(database_url)
    client = app.test_client()
    assert _login(client).status_code == 302
    create_reviewer(app.extensions["cds"].database, "pharm", "a brand new password")
    assert client.get("/review/").status_code == 302


@pytest.mark.parametrize("secure", [False, True])
def test_the_session_cookie_is_samesite_lax_httponly_and_secure_when_configured(database_url, secure,
                                                                               monkeypatch):
    if secure:
        monkeypatch.setenv("CDS_SESSION_COOKIE_SECURE", "true")
    response = _login(_app(database_url).test_client())
    [cookie] = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("session=")]
    attributes = [part.strip() for part in cookie.split(";")]
    assert "SameSite=Lax" in attributes and "HttpOnly" in attributes
    assert ("Secure" in attributes) is secure


def test_spent_throttle_rows_are_deleted_so_the_table_stays_small(database_url):
    from sqlalchemy import func, select

    from cds_service.models import LoginThrottle

    app = _app(database_url, REVIEW_LOGIN_WINDOW_SECONDS=0.5)
    client = app.test_client()
    for n in range(3):
        _login(client, "wrong password!", username=f"nobody{n}")
    time.sleep(0.6)
    _login(client, "wrong password!", username="someone-else", address="10.0.0.9")
    with app.extensions["cds"].database.session() as session:
        assert session.scalar(select(func.count()).select_from(LoginThrottle)) == 2  # the last failure's keys
