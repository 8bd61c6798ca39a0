from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import func, select, text, update

from cds_service import cli, create_app
from cds_service.db import Database, alembic_config
from cds_service.models import Alert, Feedback, HookCallRecord, Reviewer
from cds_service.retention import purge

from .review_support import ORDER_SIGN, call, hook_request, override


def test_migrations_run_at_start_and_again_are_a_no_op(database_url):
    create_app({"DATABASE_URL": database_url, "SECRET_KEY": "s"})
    database = Database(database_url)
    database.upgrade()


    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    with database.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head
    assert head is not None and head != "0001"


def test_default_database_is_sqlite_in_the_instance_folder_in_wal_mode(tmp_path):
    from cds_service.db import database_url

    url = database_url({"DATABASE_URL": ""}, str(tmp_path))
    assert url == f"sqlite:///{tmp_path / 'cds-audit.sqlite3'}"
    database = Database(url)
    database.upgrade()
    with database.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_purge_deletes_records_older_than_the_retention(database_url):
    app = create_app({"AUTH_ENABLED": False, "DATABASE_URL": database_url, "SECRET_KEY": "s"})
    client = app.test_client()
    old, new = call(client, hook_request())[0], call(client, hook_request())[0]
    client.post(f"/cds-services/{ORDER_SIGN}/feedback", json={"feedback": [override(old["uuid"])]})
    database = app.extensions["cds"].database
    long_ago = datetime.now(UTC) - timedelta(days=400)
    with database.session() as session:
        old_call = session.scalar(select(Alert.hook_call_id).where(Alert.card_uuid == old["uuid"]))
        session.execute(update(HookCallRecord).where(HookCallRecord.id == old_call)
                        .values(recorded_at=long_ago))
        session.execute(update(Feedback).values(received_at=long_ago))
    assert purge(database, 365) == {"hook calls": 1, "alerts": 1, "feedback": 1}
    with database.session() as session:
        assert session.scalars(select(Alert.card_uuid)).all() == [new["uuid"]]
    with pytest.raises(ValueError):
        purge(database, 0)


def test_cli_creates_a_reviewer_with_a_hashed_password_and_purges(database_url, monkeypatch, capsys):
    monkeypatch.setenv("CDS_DATABASE_URL", database_url)
    monkeypatch.setenv("CDS_SECRET_KEY", "s")
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))
    assert cli.main(["create-reviewer", "pharm", "--password-stdin"]) == 0
    with Database(database_url).session() as session:
        reviewer = session.scalar(select(Reviewer))
        assert reviewer.username == "pharm"
        assert "a long enough password" not in reviewer.password_hash
        assert reviewer.password_hash.startswith(("scrypt:", "pbkdf2:"))
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    with pytest.raises(SystemExit, match="at least"):
        cli.main(["create-reviewer", "other", "--password-stdin"])
    assert cli.main(["db-upgrade"]) == 0
    assert cli.main(["purge", "--days", "30"]) == 0
    assert "purged records older than 30 days" in capsys.readouterr().out
    with Database(database_url).session() as session:
        assert session.scalar(select(func.count()).select_from(Reviewer)) == 1


def test_secret_key_is_generated_once_and_kept_in_the_instance_folder(tmp_path):
    from cds_service.secret import instance_secret

    first = instance_secret(str(tmp_path))
    assert len(first) == 64 and instance_secret(str(tmp_path)) == first
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600


def test_the_instance_folder_can_be_moved_out_of_the_checkout(tmp_path, monkeypatch):
    """Found with the real sandbox: a trial wrote its SQLite file and secret into the repository."""
    monkeypatch.delenv("CDS_SPOOL_DIR", raising=False)
    monkeypatch.delenv("CDS_DATABASE_URL", raising=False)
    monkeypatch.setenv("CDS_INSTANCE_PATH", str(tmp_path / "trial"))
    app = create_app({"AUTH_ENABLED": False, "DATABASE_URL": "", "SECRET_KEY": ""})
    assert app.instance_path == str(tmp_path / "trial")
    assert (tmp_path / "trial" / "cds-audit.sqlite3").exists()
