"""The audit journal: a call is answered once its records are in a file; nothing is lost or doubled.

Processes that "die" here are forked children that leave with ``os._exit`` before their writer
could commit, so their journal file is left behind with its lock released, as after SIGKILL
(tests/test_crash_durability.py kills a real server with kill -9).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from cds_service import create_app
from cds_service.audit_journal import Journal, journal_prefix
from cds_service.models import Alert, CoverageAssertionRecord, HookCallRecord

from .review_support import call, hook_request

URL = "sqlite:////tmp/journal-test.db"


def _in_dead_child(work) -> None:
    """Run ``work`` in a forked process that then ends without any clean-up (no atexit)."""
    pid = os.fork()
    if pid == 0:
        signal.alarm(30)  # a child that hangs is killed, and the test fails instead of waiting
        code = 1
        try:
            work()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def _files(folder: Path) -> list[Path]:
    return sorted(folder.glob("cds-journal-*.jsonl"))


def test_a_line_is_in_the_file_before_append_returns_and_the_file_goes_once_all_have_committed(tmp_path):
    journal = Journal(tmp_path, URL)
    segment = journal.append({"call": {"record_key": "a"}, "assertions": []})
    (path,) = _files(tmp_path)
    assert path.read_bytes() == b'{"journal":1,"record":{"call":{"record_key":"a"},"assertions":[]}}\n'
    assert path.stat().st_mode & 0o777 == 0o600  # it holds what the audit database holds
    journal.close()
    assert _files(tmp_path) == [path]  # a line not yet committed keeps the file
    journal.committed(segment)
    assert _files(tmp_path) == []


def test_the_files_of_a_process_that_died_are_replayed_oldest_first_and_deleted(tmp_path):
    def write_and_die() -> None:
        journal = Journal(tmp_path, URL)
        journal.append({"n": 1})
        journal.append({"n": 2})

    _in_dead_child(write_and_die)
    _in_dead_child(write_and_die)
    replayed: list[list[dict]] = []
    assert Journal(tmp_path, URL).recover(replayed.append) == 4
    assert replayed == [[{"n": 1}, {"n": 2}], [{"n": 1}, {"n": 2}]]
    assert _files(tmp_path) == []


def test_a_live_process_file_and_another_databases_files_are_left_alone(tmp_path):
    live = Journal(tmp_path, URL)
    live.append({"n": 1})
    _in_dead_child(lambda: Journal(tmp_path, "sqlite:////tmp/other.db").append({"n": 2}))
    replayed: list[list[dict]] = []
    assert Journal(tmp_path, URL).recover(replayed.append) == 0
    assert replayed == []
    assert len(_files(tmp_path)) == 2
    assert journal_prefix(URL) != journal_prefix("sqlite:////tmp/other.db")


def test_a_file_whose_replay_fails_is_kept_for_the_next_start_and_start_up_goes_on(tmp_path, caplog):
    _in_dead_child(lambda: Journal(tmp_path, URL).append({"n": 1}))

    def refuse(records: list[dict]) -> None:
        raise RuntimeError("database refused")

    assert Journal(tmp_path, URL).recover(refuse) == 0  # logged, not raised: the service starts
    assert "not stored (RuntimeError); kept for the next start" in caplog.text
    assert len(_files(tmp_path)) == 1
    assert Journal(tmp_path, URL).recover(lambda records: None) == 1
    assert _files(tmp_path) == []


def test_a_last_line_cut_short_is_skipped_with_a_warning(tmp_path, caplog):
    _in_dead_child(lambda: Journal(tmp_path, URL).append({"n": 1}))
    (path,) = _files(tmp_path)
    with path.open("ab") as file:
        file.write(b'{"journal":1,"record":{"n": 2, "cut')  # a power loss mid-write: never answered
    replayed: list[list[dict]] = []
    assert Journal(tmp_path, URL).recover(replayed.append) == 1
    assert replayed == [[{"n": 1}]]
    assert "incomplete" in caplog.text


def test_a_file_older_than_a_few_seconds_whose_lines_all_committed_is_replaced(tmp_path, monkeypatch):
    import cds_service.audit_journal as module

    journal = Journal(tmp_path, URL)
    journal.committed(journal.append({"n": 1}))
    (first,) = _files(tmp_path)
    monkeypatch.setattr(module, "SEGMENT_MAX_AGE_S", 0.0)
    journal.append({"n": 2})
    (second,) = _files(tmp_path)
    assert second != first and second.read_bytes() == b'{"journal":1,"record":{"n":2}}\n'


def _app(tmp_path: Path, **config):
    return create_app({"TESTING": True, "AUTH_ENABLED": False, "SECRET_KEY": "s",
                       "DATABASE_URL": f"sqlite:///{tmp_path / 'audit.db'}", "SPOOL_DIR": str(tmp_path),
                       **config})


def _stored(app) -> tuple[int, int, int]:
    with app.extensions["cds"].database.session() as session:
        return tuple(session.scalar(select(func.count()).select_from(m))  # type: ignore[return-value]
                     for m in (HookCallRecord, Alert, CoverageAssertionRecord))


def test_calls_answered_by_a_process_that_died_before_its_writes_committed_are_stored_at_the_next_start(tmp_path):
    _app(tmp_path)  # the schema, made before the "worker" forks
    answered: list[str] = []
    read_end, write_end = os.pipe()

    def answer_and_die() -> None:
        app = _app(tmp_path)
        app.extensions["cds"].database.writer.submit = lambda *works, on_done: None  # never commits
        for _ in range(3):
            (card,) = call(app.test_client(), hook_request())
            os.write(write_end, card["uuid"].encode() + b"\n")

    _in_dead_child(answer_and_die)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        answered = pipe.read().split()
    assert len(answered) == 3 and len(_files(tmp_path)) == 1

    restarted = _app(tmp_path)  # recovers the dead process's journal before it serves
    assert _stored(restarted) == (3, 3, 3)
    with restarted.extensions["cds"].database.session() as session:
        assert set(session.scalars(select(Alert.card_uuid))) == set(answered)
    assert _files(tmp_path) == []


def test_a_replayed_line_whose_transaction_had_committed_is_not_stored_twice(tmp_path):
    _app(tmp_path)

    def answer_commit_and_die() -> None:
        app = _app(tmp_path)
        journal = app.extensions["cds"].recorder.journal
        journal.committed = lambda segment: None  # died between the commit and forgetting the line
        call(app.test_client(), hook_request())
        assert app.extensions["cds"].database.writer.settle()

    _in_dead_child(answer_commit_and_die)
    assert len(_files(tmp_path)) == 1
    restarted = _app(tmp_path)
    assert _stored(restarted) == (1, 1, 1)
    assert _files(tmp_path) == []


def test_without_the_journal_a_call_is_answered_only_after_its_records_committed(tmp_path):
    app = _app(tmp_path, AUDIT_JOURNAL="false")
    writer = app.extensions["cds"].database.writer
    assert app.extensions["cds"].recorder.journal is None
    writer.settle = lambda timeout=5.0: True  # a read that does not wait: what it sees was committed
    call(app.test_client(), hook_request())
    assert _stored(app) == (1, 1, 1)
    assert _files(tmp_path) == []


def test_a_reader_in_the_process_sees_every_call_it_answered(tmp_path):
    app = _app(tmp_path)
    for _ in range(5):
        call(app.test_client(), hook_request())
    assert _stored(app) == (5, 5, 5)  # Database.session() settles this process's writes first


def test_a_line_that_could_not_be_written_is_not_owed_and_later_lines_go_to_a_new_file(tmp_path, monkeypatch):
    import cds_service.audit_journal as module

    def full_disk_once() -> None:
        journal = Journal(tmp_path, URL)
        journal.append({"n": 1})
        real_write = os.write
        module.os.write = lambda fd, data: real_write(fd, data[:25])  # a full disk, mid-record
        try:
            with pytest.raises(OSError):
                journal.append({"n": 2})
        finally:
            module.os.write = real_write
        journal.append({"n": 3})
        assert len(_files(tmp_path)) == 2  # {"n": 3} went to a new file

    _in_dead_child(full_disk_once)
    replayed: list[list[dict]] = []
    assert Journal(tmp_path, URL).recover(replayed.append) == 2
    assert replayed == [[{"n": 1}], [{"n": 3}]]  # the cut {"n": 2} was never owed


def test_whole_lines_glued_to_a_cut_line_are_kept(tmp_path):
    _in_dead_child(lambda: Journal(tmp_path, URL).append({"n": 1}))
    (path,) = _files(tmp_path)
    with path.open("ab") as file:  # a cut line, and two threads' whole lines written after it
        file.write(b'{"journal":1,"record":{"n":2,"cu' + b'{"journal":1,"record":{"n":3,"s":"{\\"journal\\":1"}}'
                   + b'{"journal":1,"record":{"n":4}}\n')
    replayed: list[list[dict]] = []
    assert Journal(tmp_path, URL).recover(replayed.append) == 3
    assert replayed == [[{"n": 1}, {"n": 3, "s": '{"journal":1'}, {"n": 4}]]


def test_feedback_waits_briefly_for_a_card_another_worker_answered_but_has_not_committed_yet(
        tmp_path, monkeypatch):
    from cds_service import feedback
    from cds_service.models import Feedback

    from .review_support import override

    this_worker, other_worker = _app(tmp_path), _app(tmp_path)
    writer = other_worker.extensions["cds"].database.writer
    real_submit, held = writer.submit, []
    writer.submit = lambda *works, on_done: held.append((works, on_done))  # not committed yet
    (card,) = call(other_worker.test_client(), hook_request())

    def commit_while_feedback_waits(seconds: float) -> None:  # the other worker commits now
        while held:
            works, on_done = held.pop()
            real_submit(*works, on_done=on_done)
        assert writer.settle()
        time.sleep(seconds)

    monkeypatch.setattr(feedback, "_pause", commit_while_feedback_waits)
    response = this_worker.test_client().post("/cds-services/iv-anesthetics-order-sign/feedback",
                                              json={"feedback": [override(card["uuid"], comment="PA on file")]})
    assert response.status_code == 200
    with this_worker.extensions["cds"].database.session() as session:
        (stored,) = session.scalars(select(Feedback)).all()
    assert not stored.unknown_card and stored.user_comment == "PA on file"


def test_the_journal_is_on_by_default_for_sqlite_and_off_for_postgresql():
    from cds_service.audit_journal import journal_wanted

    assert journal_wanted("auto", "sqlite") and not journal_wanted("auto", "postgresql")
    assert journal_wanted("true", "postgresql") and not journal_wanted(False, "sqlite")
    with pytest.raises(ValueError):
        journal_wanted("sometimes", "sqlite")


def test_a_server_stopped_with_sigterm_commits_what_it_answered_and_leaves_no_journal_file(tmp_path):
    import json
    import sys

    import requests

    from .servers import free_port, running_server

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(CDS_AUTH_ENABLED="false", CDS_SECRET_KEY="s", CDS_SPOOL_DIR=str(tmp_path),
               CDS_DATABASE_URL=f"sqlite:///{tmp_path / 'audit.db'}", CDS_LOG_LEVEL="WARNING")
    argv = [sys.executable, "-m", "cds_service.cli", "serve", "--port", str(port), "--workers", "2"]
    with running_server(argv, f"{base}/readyz", tmp_path / "serve.log", env=env) as server:
        http = requests.Session()
        for _ in range(20):
            response = http.post(f"{base}/cds-services/iv-anesthetics-order-sign", data=json.dumps(hook_request()),
                                 headers={"Content-Type": "application/json"}, timeout=10)
            assert response.status_code == 200 and response.json()["cards"]
        assert _files(tmp_path)  # the workers' journal files, while they run
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    assert _files(tmp_path) == []
    assert "left by a process that stopped" not in (tmp_path / "serve.log").read_text()
    assert _stored(_app(tmp_path)) == (20, 20, 20)


def test_a_large_file_is_replaced_even_while_some_of_its_lines_are_still_uncommitted(tmp_path, monkeypatch):
    import cds_service.audit_journal as module

    monkeypatch.setattr(module, "SEGMENT_MAX_BYTES", 10)
    journal = Journal(tmp_path, URL)
    waiting = journal.append({"n": 1})  # under steady load some line is always still waiting
    (first,) = _files(tmp_path)
    journal.committed(journal.append({"n": 2}))  # too large: a new file
    assert len(_files(tmp_path)) == 2
    journal.committed(waiting)  # the old file's last line: the old file goes
    assert first not in _files(tmp_path) and len(_files(tmp_path)) == 1


def test_a_process_starting_up_never_finds_a_new_file_before_its_owner_has_locked_it(tmp_path, monkeypatch):
    import fcntl

    import cds_service.audit_journal as module

    real_flock = fcntl.flock
    raced: list[int] = []

    def flock_after_a_recovery(fd, operation):
        if not raced:  # the owner's lock of its new file: another process recovers just before
            raced.append(-1)
            raced[0] = Journal(tmp_path, URL).recover(lambda records: None)
        return real_flock(fd, operation)

    journal = Journal(tmp_path, URL)
    monkeypatch.setattr(module.fcntl, "flock", flock_after_a_recovery)
    journal.append({"n": 1})
    monkeypatch.setattr(module.fcntl, "flock", real_flock)
    assert raced == [0]
    (path,) = _files(tmp_path)
    assert path.read_bytes() == b'{"journal":1,"record":{"n":1}}\n'  # still there, with its line
