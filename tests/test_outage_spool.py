"""Nothing is lost while the database is down: records wait in the local spool and are written once."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from cds_service import create_app
from cds_service.db import Database
from cds_service.models import Alert, CoverageAssertionRecord, Feedback, HookCallRecord

from .review_support import ORDER_SIGN, call, hook_request, override
from .servers import free_port, running_server

FEEDBACK_URL = f"/cds-services/{ORDER_SIGN}/feedback"
UNREACHABLE = "postgresql+psycopg://cds@127.0.0.1:9/nowhere"  # nothing listens on the discard port


def _counts(database: Database) -> tuple[int, ...]:
    """Rows of hook_call, alert, feedback and coverage_assertion."""
    with database.session() as session:
        return tuple(session.scalar(select(func.count()).select_from(m))  # type: ignore[return-value]
                     for m in (HookCallRecord, Alert, Feedback, CoverageAssertionRecord))


@contextmanager
def _outage(database: Database) -> Iterator[None]:
    """Point the app's database at a server that refuses connections, then back."""
    real = database.engine, database._sessions
    broken = Database(UNREACHABLE)
    database.engine, database._sessions = broken.engine, broken._sessions
    try:
        yield
    finally:
        database.engine, database._sessions = real
        broken.engine.dispose()


def test_records_spooled_during_an_outage_are_written_once_when_the_database_is_back(database_url, tmp_path):
    app = create_app({"TESTING": True, "AUTH_ENABLED": False, "DATABASE_URL": database_url, "AUDIT_JOURNAL": True,
                      "SECRET_KEY": "s", "SPOOL_DIR": str(tmp_path), "SPOOL_RETRY_SECONDS": 3600})
    state = app.extensions["cds"]
    client = app.test_client()
    with _outage(state.database):
        cards = [call(client, hook_request())[0] for _ in range(3)]  # answered with cards all the same
        assert state.database.writer.settle()  # their journaled writes have failed and been spooled
        for card in cards:
            response = client.post(FEEDBACK_URL, json={"feedback": [override(card["uuid"], comment="PA ok")]})
            assert response.status_code == 200 and response.get_json()["spooled"] == 1
    assert state.recorder.spooled == 3 and state.recorder.lost == 0
    # Per call, its audit record and its coverage assertions (given with the answer, kept since
    # the audit journal took them); and the three feedback posts.
    assert state.replayer.spool.pending() == 9
    assert state.replayer.replay_now() == 9
    assert _counts(state.database) == (3, 3, 3, 3)
    rows = {r.card_uuid: r for r in _rows(state.database)}
    assert all(rows[c["uuid"]].user_comment == "PA ok" and not rows[c["uuid"]].unknown_card for c in cards)
    # A crash between the database's commit and the spool's delete replays a record again: no double.
    spool = state.replayer.spool
    with _outage(state.database):
        call(client, hook_request())
        assert state.database.writer.settle()
        client.post(FEEDBACK_URL, json={"feedback": [override(cards[0]["uuid"], comment="again")]})
    payloads = _spooled(spool)
    assert spool.replay(state.replayer.handlers) == 3
    for kind, payload in payloads:
        spool.put(kind, payload)
    assert spool.replay(state.replayer.handlers) == 3
    assert _counts(state.database) == (4, 4, 4, 4)


def test_feedback_that_can_be_neither_stored_nor_spooled_gets_503_with_retry_after(database_url, tmp_path):
    app = create_app({"TESTING": True, "AUTH_ENABLED": False, "DATABASE_URL": database_url, "AUDIT_JOURNAL": True,
                      "SECRET_KEY": "s", "SPOOL_DIR": str(tmp_path), "SPOOL_MAX_RECORDS": 0})
    with _outage(app.extensions["cds"].database):
        response = app.test_client().post(FEEDBACK_URL, json={"feedback": [override(str(uuid.uuid4()))]})
        assert len(call(app.test_client(), hook_request())) == 1  # the EHR still gets its card
        assert app.extensions["cds"].database.writer.settle()
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    assert response.get_json()["resourceType"] == "OperationOutcome"
    recorder = app.extensions["cds"].recorder
    # Neither the database nor the full spool took the audit record: it stays in the audit
    # journal (stored by the next process to start), so nothing is lost.
    assert (recorder.failures, recorder.spooled, recorder.lost) == (1, 0, 0)
    assert [len(p.read_text().splitlines()) for p in tmp_path.glob("cds-journal-*.jsonl")] == [1]


def test_a_spooled_record_the_database_refuses_does_not_block_the_others(tmp_path):
    app = create_app({"TESTING": True, "AUTH_ENABLED": False, "DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}",
                      "SECRET_KEY": "s", "SPOOL_DIR": str(tmp_path), "SPOOL_RETRY_SECONDS": 3600})
    replayer = app.extensions["cds"].replayer
    replayer.spool.put("feedback", {"service_id": ORDER_SIGN, "items": "not a list of items"})
    client = app.test_client()
    with _outage(app.extensions["cds"].database):
        call(client, hook_request())
        assert app.extensions["cds"].database.writer.settle()
    for _ in range(5):
        replayer.replay_now()
    assert _counts(app.extensions["cds"].database)[0] == 1
    assert replayer.spool.pending() == 1 and replayer.spool.stuck() == 1  # kept for an operator


def _rows(database: Database) -> list[Feedback]:
    with database.session() as session:
        return list(session.scalars(select(Feedback)))


def _spooled(spool) -> list[tuple[str, dict]]:
    import json
    import sqlite3

    with sqlite3.connect(spool.path) as conn:
        return [(k, json.loads(p)) for k, p in conn.execute("SELECT kind, payload FROM spool ORDER BY id")]


# --- a real outage: PostgreSQL stopped under a running `cds-service serve` -------------------

def _pg_bin() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return str(Path(found[-1]).parent) if found else None


class StoppablePostgres:
    """A throwaway cluster like .ci/postgres.sh makes, that the test can stop and start."""

    def __init__(self, bin_dir: str) -> None:
        self.bin = bin_dir
        self.dir = Path(tempfile.mkdtemp(prefix="cds-pg-outage-"))
        self.port = free_port()
        self.run_as = "postgres"
        try:
            subprocess.run(["id", "postgres"], check=True, capture_output=True)
        except subprocess.CalledProcessError:
            self.run_as = "nobody"
        shutil.chown(self.dir, self.run_as)
        self.dir.chmod(0o700)
        self._pg("initdb", "-D", f"{self.dir}/data", "-U", "cds", "--auth=trust", "--encoding=UTF8", "--no-sync")
        self.start()
        self._pg("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "cds", "cds_outage")
        self.url = f"postgresql://cds@127.0.0.1:{self.port}/cds_outage"

    def _pg(self, tool: str, *args: str) -> None:
        argv = [f"{self.bin}/{tool}", *args]
        if os.getuid() == 0:
            argv = ["runuser", "-u", self.run_as, "--", *argv]
        subprocess.run(argv, check=True, capture_output=True, stdin=subprocess.DEVNULL, timeout=120)

    def start(self) -> None:
        self._pg("pg_ctl", "-D", f"{self.dir}/data", "-l", f"{self.dir}/server.log", "-w", "-t", "60", "-o",
                 f"-h 127.0.0.1 -p {self.port} -k {self.dir} -c fsync=off -c max_connections=100", "start")

    def stop(self) -> None:
        self._pg("pg_ctl", "-D", f"{self.dir}/data", "-m", "fast", "-w", "-t", "60", "stop")

    def remove(self) -> None:
        with suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture()
def stoppable_postgres():
    bin_dir = _pg_bin()
    if bin_dir is None or (os.getuid() == 0 and shutil.which("runuser") is None):
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL is not installed on CI: .ci/run installs it")
        pytest.skip("PostgreSQL (initdb) is not installed")
    cluster = StoppablePostgres(bin_dir)
    try:
        yield cluster
    finally:
        cluster.remove()


ROUND = 10  # hook calls (each with a card) and feedback items per phase
# hook calls, alerts, feedback, coverage assertions: with PostgreSQL the audit journal is off by
# default (AUDIT_JOURNAL=auto), so a call answered while the database was down carries no
# coverage information (an assertion that cannot be kept is not given); its audit record is spooled.
EXPECTED = (3 * ROUND, 3 * ROUND, 3 * ROUND, 2 * ROUND)


def test_stopping_postgresql_under_a_running_server_loses_and_doubles_nothing(stoppable_postgres, tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ, CDS_AUTH_ENABLED="false", CDS_DATABASE_URL=stoppable_postgres.url,
               CDS_SECRET_KEY="outage-test", CDS_SPOOL_DIR=str(tmp_path / "spool"), CDS_SPOOL_RETRY_SECONDS="1")
    argv = [sys.executable, "-m", "cds_service.cli", "serve", "--port", str(port), "--workers", "2"]
    sent_cards: list[str] = []
    http = requests.Session()

    def phase(label: str) -> tuple[int, float]:
        """Send ROUND hook calls, each with feedback on its card; (feedback spooled, slowest call s)."""
        spooled, slowest = 0, 0.0
        for _ in range(ROUND):
            started = time.monotonic()
            response = http.post(f"{base}/cds-services/{ORDER_SIGN}", json=hook_request(), timeout=15)
            slowest = max(slowest, time.monotonic() - started)
            assert response.status_code == 200, (label, response.text)
            (card,) = response.json()["cards"]
            sent_cards.append(card["uuid"])
            feedback = http.post(f"{base}{FEEDBACK_URL}", timeout=15,
                                 json={"feedback": [override(card["uuid"], comment=f"{label} comment")]})
            assert feedback.status_code == 200, (label, feedback.text)
            spooled += feedback.json().get("spooled", 0)
        return spooled, slowest

    with running_server(argv, f"{base}/cds-services", tmp_path / "server.log", env=env):
        phase("before")
        stoppable_postgres.stop()
        spooled_during, slowest_during = phase("during")
        stoppable_postgres.start()
        phase("after")
        database = Database(stoppable_postgres.url.replace("postgresql://", "postgresql+psycopg://"))
        deadline = time.monotonic() + 60
        while _counts(database) != EXPECTED and time.monotonic() < deadline:
            time.sleep(0.5)
        counts = _counts(database)
        with database.session() as session:
            stored_cards = set(session.scalars(select(Alert.card_uuid)))
            linked = session.scalar(select(func.count()).select_from(Feedback).where(
                Feedback.unknown_card.is_(False), Feedback.user_comment.is_not(None)))
        database.engine.dispose()
    log = (tmp_path / "server.log").read_text(errors="replace")
    print(f"outage test: sent {3 * ROUND} hook calls and feedback items ({ROUND} while PostgreSQL was "
          f"stopped; slowest hook call then {slowest_during:.2f} s); stored hook calls, alerts, "
          f"feedback, coverage assertions = {counts}")
    assert spooled_during == ROUND  # the outage was real: feedback went to the spool
    assert log.count("kept in the spool for replay") >= ROUND and "record lost" not in log
    assert counts == EXPECTED  # nothing lost, nothing doubled
    assert stored_cards == set(sent_cards)
    assert linked == 3 * ROUND  # every feedback item found its card, comment kept
