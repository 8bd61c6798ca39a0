"""Request text that the databases cannot take, or that could forge a log line, never costs a record."""

from __future__ import annotations

import logging
import stat
import uuid
from pathlib import Path

from sqlalchemy import select, text

from cds_service import create_app
from cds_service.models import Alert, Feedback, HookCallRecord
from cds_service.storage_safety import log_safe, storable_text

from .review_support import ORDER_SIGN, call, hook_request, override

FEEDBACK_URL = f"/cds-services/{ORDER_SIGN}/feedback"


def _app(database_url: str, tmp_path: Path, **extra):
    return create_app({"TESTING": True, "AUTH_ENABLED": False, "DATABASE_URL": database_url,
                       "SECRET_KEY": "s", "SPOOL_DIR": str(tmp_path / "spool"),
                       "SPOOL_RETRY_SECONDS": 3600, **extra})


def _rows(app, model):
    with app.extensions["cds"].database.session() as session:
        return list(session.scalars(select(model)))


def test_nul_in_patient_id_and_hook_instance_is_audited_the_same_on_both_databases(storage_app):
    body = hook_request(patient="pat\x00-7")
    body["hookInstance"] = "d7b1\x00e5"
    assert len(call(storage_app.test_client(), body)) == 1
    (record,) = _rows(storage_app, HookCallRecord)
    assert (record.patient_id, record.hook_instance, record.card_count) == ("pat\ufffd-7", "d7b1\ufffde5", 1)
    assert len(_rows(storage_app, Alert)) == 1


def test_lone_surrogates_and_overlong_values_are_audited_cut_to_their_column(storage_app):
    body = hook_request(patient="\ud800" + "p" * 300)
    body["hookInstance"] = "h" * 500
    assert len(call(storage_app.test_client(), body)) == 1
    (record,) = _rows(storage_app, HookCallRecord)
    assert record.patient_id == "?" + "p" * 199
    assert record.hook_instance == "h" * 100


def test_feedback_with_nul_and_surrogates_is_stored_not_a_500(storage_app):
    client = storage_app.test_client()
    card = call(client, hook_request())[0]
    item = override(card["uuid"], comment="seen by Dr\x00 X \udc00")
    response = client.post(FEEDBACK_URL, json={"feedback": [item]})
    assert response.status_code == 200, response.get_data(as_text=True)
    (row,) = _rows(storage_app, Feedback)
    assert row.user_comment == "seen by Dr\ufffd X ?"


def test_a_newline_in_hook_instance_cannot_forge_a_log_line(database_url, tmp_path, caplog):
    app = _app(database_url, tmp_path)
    with app.extensions["cds"].database.engine.begin() as conn:
        conn.execute(text("DROP TABLE alert"))
    body = hook_request()
    body["hookInstance"] = "abc\nERROR cds_service.audit: FORGED"
    with caplog.at_level(logging.INFO):
        assert len(call(app.test_client(), body)) == 1
        assert app.extensions["cds"].database.writer.settle()  # the journaled write has failed
    messages = [r.getMessage() for r in caplog.records]
    assert any("audit record failed" in m for m in messages)
    assert not any("\n" in m for m in messages)
    assert any("abc\\nERROR" in m for m in messages)


def test_failed_feedback_writes_log_no_sql_parameters_or_comment(database_url, tmp_path, caplog):
    app = _app(database_url, tmp_path)
    with app.extensions["cds"].database.engine.begin() as conn:
        conn.execute(text("DROP TABLE feedback"))
    item = override(str(uuid.uuid4()), comment="patient Quentina Zylberstein")
    with caplog.at_level(logging.DEBUG):
        response = app.test_client().post(FEEDBACK_URL, json={"feedback": [item]})
    assert response.status_code == 200
    assert response.get_json()["spooled"] == 1
    assert "Quentina" not in caplog.text and "feedback write failed" in caplog.text


def test_engine_errors_hide_sql_parameters(database_url, tmp_path):
    app = _app(database_url, tmp_path)
    try:
        with app.extensions["cds"].database.engine.connect() as conn:
            conn.execute(text("SELECT * FROM no_such_table WHERE x = :secret"), {"secret": "Quentina"})
    except Exception as exc:
        assert "Quentina" not in str(exc)
        assert "hidden" in str(exc)
    else:
        raise AssertionError("the query should have failed")


def test_sqlite_database_its_wal_and_the_spool_are_private(tmp_path):
    db = tmp_path / "data" / "audit.sqlite3"
    app = _app(f"sqlite:///{db}", tmp_path)
    call(app.test_client(), hook_request())
    files = [db, Path(f"{db}-wal"), Path(f"{db}-shm"), *(tmp_path / "spool").glob("cds-spool-*.sqlite3")]
    assert len(files) == 4 and all(f.exists() for f in files)
    assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in files} == {f.name: 0o600 for f in files}


def test_an_existing_world_readable_sqlite_file_is_made_private(tmp_path):
    db = tmp_path / "old.sqlite3"
    db.touch(mode=0o644)
    db.chmod(0o644)
    _app(f"sqlite:///{db}", tmp_path)
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


def test_log_safe_escapes_control_characters_and_caps_length():
    assert log_safe("a\nb\r\x00c") == "a\\nb\\r\\x00c"
    assert log_safe("x" * 500) == "x" * 100 + "…"
    assert log_safe("plain-uuid-1234") == "plain-uuid-1234"
    assert storable_text("ok\x00", 2) == "ok"
