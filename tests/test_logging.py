"""One structured log line per hook call, with level and format from configuration, and no PHI."""

from __future__ import annotations

import json
import logging

import pytest

from cds_service import create_app
from cds_service.logs import JsonFormatter, TextFormatter

from .review_support import ORDER_SIGN, hook_request

SERVICE = f"/cds-services/{ORDER_SIGN}"
FIELDS = {"time", "level", "logger", "message", "hookInstance", "service", "path", "latency_ms", "cards",
          "decisions", "policy"}


def _service_handler():
    (handler,) = [h for h in logging.getLogger("cds_service").handlers if h.get_name() == "cds_service"]
    return handler


def _hook_lines(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "cds_service.hooks"]


@pytest.fixture()
def app():
    return create_app({"TESTING": True, "AUTH_ENABLED": False, "AUDIT_ENABLED": False, "LOG_FORMAT": "json"})


def test_a_hook_call_logs_one_json_line_with_its_fields_and_no_phi(app, caplog):
    body = hook_request("F33.1", patient="pat-SECRET-4711", token="ACCESS-TOKEN-XYZ")
    body["prefetch"]["patient"] = {"resourceType": "Patient", "id": "pat-SECRET-4711",
                                   "name": [{"family": "Zylberstein", "given": ["Quentina"]}]}
    with caplog.at_level(logging.INFO, logger="cds_service.hooks"):
        response = app.test_client().post(SERVICE, json=body)
    assert response.status_code == 200
    (record,) = _hook_lines(caplog)
    line = _service_handler().format(record)
    data = json.loads(line)
    assert set(data) == FIELDS
    assert (data["hookInstance"], data["service"], data["path"]) == (body["hookInstance"], ORDER_SIGN, "in_scope")
    assert data["cards"] == len(response.get_json()["cards"]) == 1
    assert data["decisions"] == ["warning"] and data["policy"] == "bcbsks-iv-anesthetics"
    assert data["latency_ms"] > 0
    for secret in ("pat-SECRET-4711", "ACCESS-TOKEN-XYZ", "Zylberstein", "Quentina", "F33.1"):
        assert secret not in line


def test_an_out_of_scope_call_is_logged_as_the_fast_path(app, caplog):
    body = hook_request("M54.5", drug=("5640", "ibuprofen"))
    with caplog.at_level(logging.INFO, logger="cds_service.hooks"):
        app.test_client().post(SERVICE, json=body)
    data = json.loads(JsonFormatter().format(_hook_lines(caplog)[0]))
    assert (data["path"], data["cards"], data["decisions"], data["policy"]) == ("out_of_scope", 0, [], None)


def test_a_hook_instance_that_is_not_an_id_is_not_logged(app, caplog):
    body = hook_request()
    body["hookInstance"] = "Quentina Zylberstein, born 1961"
    with caplog.at_level(logging.INFO, logger="cds_service.hooks"):
        app.test_client().post(SERVICE, json=body)
    line = JsonFormatter().format(_hook_lines(caplog)[0])
    assert json.loads(line)["hookInstance"] == "(not an id)" and "Zylberstein" not in line


def test_log_format_text_and_log_level_come_from_configuration(caplog):
    app = create_app({"TESTING": True, "AUTH_ENABLED": False, "AUDIT_ENABLED": False,
                      "LOG_FORMAT": "text", "LOG_LEVEL": "WARNING"})
    handler = _service_handler()
    assert isinstance(handler.formatter, TextFormatter)
    assert logging.getLogger("cds_service").level == logging.WARNING
    with caplog.at_level(logging.NOTSET):
        app.test_client().post(SERVICE, json=hook_request())
    assert _hook_lines(caplog) == []
    record = logging.LogRecord("cds_service.hooks", logging.INFO, __file__, 1, "hook call", None, None)
    record.fields = {"service": ORDER_SIGN, "cards": 1}
    assert handler.format(record).endswith(f"hook call service={ORDER_SIGN} cards=1")


def test_repeated_app_creation_keeps_one_service_handler():
    for _ in range(3):
        create_app({"TESTING": True, "AUTH_ENABLED": False, "AUDIT_ENABLED": False})
    assert isinstance(_service_handler().formatter, JsonFormatter)


@pytest.mark.parametrize(("key", "value"), [("LOG_FORMAT", "xml"), ("LOG_LEVEL", "LOUD")])
def test_a_bad_log_setting_is_refused_at_start_up(key, value):
    with pytest.raises(ValueError, match=key):
        create_app({"AUTH_ENABLED": False, "AUDIT_ENABLED": False, key: value})


def test_the_line_writer_writes_every_line_whole_from_many_threads_and_drains_at_close(tmp_path):
    import threading

    from cds_service.logs import LineWriter

    path = tmp_path / "log.txt"
    with path.open("w", encoding="utf-8") as stream:
        writer = LineWriter(stream)
        writer.setFormatter(JsonFormatter())
        logger = logging.getLogger("cds_service.test_line_writer")
        logger.propagate, logger.level = False, logging.INFO
        logger.addHandler(writer)

        def log_lines(n: int) -> None:
            for i in range(200):
                logger.info("line", extra={"fields": {"thread": n, "i": i, "padding": "x" * 500}})

        threads = [threading.Thread(target=log_lines, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        writer.close()  # as logging.shutdown() does at exit: everything queued is written
        logger.removeHandler(writer)
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 1600
    assert {(line["thread"], line["i"]) for line in lines} == {(n, i) for n in range(8) for i in range(200)}


def test_a_forked_child_writes_its_lines_with_its_own_writer(tmp_path):
    import os
    import threading

    from cds_service.logs import LineWriter

    path = tmp_path / "log.txt"
    with path.open("w", encoding="utf-8") as stream:
        writer = LineWriter(stream)
        logger = logging.getLogger("cds_service.test_line_writer_fork")
        logger.propagate, logger.level = False, logging.INFO
        logger.addHandler(writer)
        logger.info("parent before fork")
        while "parent before fork" not in path.read_text(encoding="utf-8"):  # written, not buffered
            threading.Event().wait(0.01)
        pid = os.fork()
        if pid == 0:  # the child: its first line starts its own writer; close() drains it
            try:
                logger.info("child line")
                writer.close()
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        writer.close()
        logger.removeHandler(writer)
    assert sorted(path.read_text(encoding="utf-8").splitlines()) == ["child line", "parent before fork"]
