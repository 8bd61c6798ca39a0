from __future__ import annotations

import json
import logging

from sqlalchemy import select, text

from cds_service import create_app
from cds_service.models import Alert, HookCallRecord

from .review_support import LIDOCAINE, call, hook_request


def _calls(app):
    with app.extensions["cds"].database.session() as session:
        return list(session.scalars(select(HookCallRecord)))


def test_a_call_with_a_card_is_recorded_with_its_decision(storage_app):
    client = storage_app.test_client()
    body = hook_request("M79.7", LIDOCAINE, patient="pat-42")
    card = call(client, body)[0]
    (record,) = _calls(storage_app)
    assert record.hook_instance == body["hookInstance"]
    assert (record.service_id, record.hook, record.patient_id) == ("iv-anesthetics-order-sign", "order-sign",
                                                                   "pat-42")
    order_id = body["context"]["draftOrders"]["entry"][0]["resource"]["id"]
    assert record.order_ids == [f"MedicationRequest/{order_id}"]
    assert record.card_count == 1 and record.latency_ms > 0
    with storage_app.extensions["cds"].database.session() as session:
        alert = session.scalar(select(Alert))
        assert alert.card_uuid == card["uuid"]
        assert (alert.drug, alert.indication_family, alert.policy_id) == (
            "lidocaine", "fibromyalgia", "bcbsks-iv-anesthetics")
        assert alert.policy_section == "chronic_pain"
        assert alert.indication_codes[0]["code"] == "M79.7"
        assert "IV" in alert.route or alert.route
        assert (alert.summary, alert.indicator) == (card["summary"], card["indicator"])
        assert alert.card == card


def test_a_call_without_a_card_is_not_recorded_by_default(storage_app):
    assert call(storage_app.test_client(), hook_request("R52")) == []
    assert _calls(storage_app) == []


def test_audit_all_calls_records_calls_without_cards(database_url):
    app = create_app({"AUTH_ENABLED": False, "DATABASE_URL": database_url, "SECRET_KEY": "s",
                      "AUDIT_ALL_CALLS": True})
    call(app.test_client(), hook_request("R52"))
    (record,) = _calls(app)
    assert record.card_count == 0


def test_tokens_and_patient_names_are_never_stored(storage_app):
    body = hook_request(token="SECRET-ACCESS-TOKEN-123")
    body["prefetch"]["patient"] = {"resourceType": "Patient", "id": "pat1",
                                   "name": [{"family": "Zylberstein", "given": ["Quentina"]}]}
    call(storage_app.test_client(), body)
    assert storage_app.extensions["cds"].database.writer.settle()  # the rows are in (not an empty dump)
    assert len(_calls(storage_app)) == 1
    with storage_app.extensions["cds"].database.engine.connect() as conn:
        dump = json.dumps([
            [list(map(str, row)) for row in conn.execute(text(f"SELECT * FROM {table}"))]
            for table in ("hook_call", "alert")
        ])
    assert "SECRET-ACCESS-TOKEN-123" not in dump
    assert "Zylberstein" not in dump and "Quentina" not in dump


def test_a_recording_failure_still_answers_with_cards_and_is_counted(database_url, caplog):
    storage_app = create_app({"TESTING": True, "AUTH_ENABLED": False, "DATABASE_URL": database_url,
                              "SECRET_KEY": "s", "AUDIT_JOURNAL": True})
    with storage_app.extensions["cds"].database.engine.begin() as conn:
        conn.execute(text("DROP TABLE alert"))
    recorder = storage_app.extensions["cds"].recorder
    body = hook_request(patient="pat-secret-99")
    with caplog.at_level(logging.ERROR):
        cards = call(storage_app.test_client(), body)  # answered once in the audit journal
        assert storage_app.extensions["cds"].database.writer.settle()  # the write has now failed
    assert len(cards) == 1
    assert (recorder.failures, recorder.spooled, recorder.lost) == (1, 1, 0)
    # Kept, not lost: the audit record, and the coverage assertions given with the answer.
    assert storage_app.extensions["cds"].replayer.spool.pending() == 2
    assert "audit record failed" in caplog.text
    assert "pat-secret-99" not in caplog.text


def test_audit_disabled_keeps_no_storage(tmp_path):
    app = create_app({"AUTH_ENABLED": False, "AUDIT_ENABLED": False})
    assert app.extensions["cds"].database is None
    assert call(app.test_client(), hook_request())
