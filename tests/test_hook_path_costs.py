"""What the common hook path does not pay for: the review pages' session."""

from __future__ import annotations

from pathlib import Path

from cds_service.http_policy import NoSessionForHooks

REQUESTS = Path(__file__).resolve().parent.parent / "fhir_fixtures" / "hook-requests"
SERVICE = "/cds-services/iv-anesthetics-order-sign"


def test_hook_calls_open_no_session_and_set_no_cookie(app, client):
    assert isinstance(app.session_interface, NoSessionForHooks)
    response = client.post(SERVICE, data=(REQUESTS / "26-etodolac-oral-sandbox-shape.json").read_bytes(),
                           content_type="application/json", headers={"Cookie": "session=not-a-review-session"})
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
    assert "cookie" not in {v.strip().lower() for v in response.headers.get("Vary", "").split(",")}


def test_review_pages_still_get_a_signed_session(client):
    response = client.get("/review/login")
    assert response.status_code == 200
    assert "session=" in response.headers.get("Set-Cookie", "")  # the login form's CSRF token lives there
