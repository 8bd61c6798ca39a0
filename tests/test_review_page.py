from __future__ import annotations

import csv
import io
import re

import pytest

from cds_service import create_app
from cds_service.review.auth import create_reviewer

from .review_support import LIDOCAINE, ORDER_SIGN, accepted, call, hook_request, override

PASSWORD = "correct horse battery"


@pytest.fixture()
def review_app(database_url):
    app = create_app({"TESTING": True, "AUTH_ENABLED": False, "DATABASE_URL": database_url,
                      "SECRET_KEY": "test-secret"})
    create_reviewer(app.extensions["cds"].database, "pharm", PASSWORD)
    client = app.test_client()
    crps = call(client, hook_request("G90.511"))[0]
    fibro = call(client, hook_request("M79.7", LIDOCAINE))[0]
    call(client, hook_request("F32.9"))
    feedback = {"feedback": [override(crps["uuid"], comment="PA approved <b>yesterday</b>"),
                             accepted(fibro["uuid"])]}
    assert client.post(f"/cds-services/{ORDER_SIGN}/feedback", json=feedback).status_code == 200
    return app


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)


def _table(response) -> str:
    return response.get_data(as_text=True).split("<tbody>")[1]


def _login(client, password=PASSWORD):
    token = _csrf(client.get("/review/login").get_data(as_text=True))
    return client.post("/review/login", data={"csrf_token": token, "username": "pharm",
                                              "password": password})


def test_review_pages_require_login(review_app):
    client = review_app.test_client()
    for path in ("/review/", "/review/summary", "/review/alerts.csv", "/review/alerts/1"):
        response = client.get(path)
        assert response.status_code == 302 and "/review/login" in response.headers["Location"]


def test_wrong_password_is_refused_and_login_without_csrf_token_fails(review_app):
    client = review_app.test_client()
    assert _login(client, "wrong password!").status_code == 401
    assert client.get("/review/").status_code == 302
    no_token = client.post("/review/login", data={"username": "pharm", "password": PASSWORD})
    assert no_token.status_code == 400 and "Please try again" in no_token.get_data(as_text=True)
    assert client.get("/review/").status_code == 302


def test_alert_list_is_newest_first_and_filters_by_outcome_family_and_drug(review_app):
    client = review_app.test_client()
    assert _login(client).status_code == 302
    page = _table(client.get("/review/"))
    assert page.index("Depression") < page.index("Fibromyalgia") < page.index("Complex regional")
    overridden = _table(client.get("/review/?outcome=overridden"))
    assert "Complex regional" in overridden and "Fibromyalgia" not in overridden
    none = _table(client.get("/review/?outcome=none"))
    assert "Depression" in none and "Complex regional" not in none
    by_drug = _table(client.get("/review/?drug=lidocaine"))
    assert "Fibromyalgia" in by_drug and "Depression" not in by_drug
    assert "Depression" in _table(client.get("/review/?family=depression"))
    assert "No alerts match" in client.get("/review/?date_to=2000-01-01").get_data(as_text=True)


def test_detail_shows_card_and_feedback_and_saves_a_disposition(review_app):
    client = review_app.test_client()
    _login(client)
    listing = client.get("/review/?outcome=overridden").get_data(as_text=True)
    link = re.search(r'href="(/review/alerts/\d+)"', listing).group(1)
    detail = client.get(link).get_data(as_text=True)
    assert "G90.511" in detail and "Prior authorization or coverage exception on file" in detail
    assert "PA approved &lt;b&gt;yesterday&lt;/b&gt;" in detail
    assert "<script>" not in detail  # the fixture's display text carries a <script> tag
    assert "<blockquote>" in detail  # the card's markdown is rendered
    assert client.post(link, data={"disposition": "follow-up", "note": "call Dr X"}).status_code == 400
    saved = client.post(link, data={"csrf_token": _csrf(detail), "disposition": "follow-up",
                                     "note": "call Dr X"}, follow_redirects=True).get_data(as_text=True)
    assert "Disposition saved" in saved and "call Dr X" in saved and "by pharm" in saved


def test_csv_export_follows_the_filter(review_app):
    client = review_app.test_client()
    _login(client)
    response = client.get("/review/alerts.csv?outcome=accepted")
    assert response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [(r["indication_family"], r["outcome_any_call"]) for r in rows] == [("Fibromyalgia", "accepted")]


def test_summary_shows_svg_charts_and_the_numbers(review_app):
    client = review_app.test_client()
    _login(client)
    page = client.get("/review/summary").get_data(as_text=True)
    assert page.count("<svg") == 3 and 'role="img"' in page
    assert "3 alerts; 2 with feedback; 1 overridden" in page
    assert "Prior authorization or coverage exception on file" in page and "50%" in page


def test_open_redirect_after_login_is_refused(review_app):
    client = review_app.test_client()
    token = _csrf(client.get("/review/login").get_data(as_text=True))
    response = client.post("/review/login?next=https://evil.example/", data={
        "csrf_token": token, "username": "pharm", "password": PASSWORD})
    assert response.headers["Location"] == "/review/"


def test_an_absurd_page_number_is_clamped_not_a_500(review_app):
    client = review_app.test_client()
    assert _login(client).status_code == 302
    response = client.get("/review/?page=99999999999999999999")
    assert response.status_code == 200
    assert "No alerts match" in response.get_data(as_text=True) or "<tbody>" in response.get_data(as_text=True)
