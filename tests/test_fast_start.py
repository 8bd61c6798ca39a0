"""Start-up work skipped when it decides nothing: alembic for a database already at head."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import text

from cds_service.db import Database, alembic_config, migration_heads

ROOT = Path(__file__).resolve().parent.parent


def test_heads_read_from_the_migration_files_are_alembics_heads(tmp_path):
    url = f"sqlite:///{tmp_path / 'a.sqlite3'}"
    assert migration_heads() == set(ScriptDirectory.from_config(alembic_config(url)).get_heads())


def _start_imports_alembic(url: str) -> bool:
    code = ("import sys; from cds_service import create_app; "
            f"create_app({{'AUTH_ENABLED': False, 'DATABASE_URL': {url!r}, 'SECRET_KEY': 'x'}}); "
            "print('alembic' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1] == "True"


def test_a_database_at_head_starts_without_alembic_and_an_older_one_is_upgraded(tmp_path):
    url = f"sqlite:///{tmp_path / 'audit.sqlite3'}"
    assert _start_imports_alembic(url)  # empty database: alembic creates the schema
    assert not _start_imports_alembic(url)  # at head: one query, no alembic


def test_a_database_behind_head_is_still_upgraded_by_alembic(tmp_path):
    url = f"sqlite:///{tmp_path / 'audit.sqlite3'}"
    database = Database(url)
    cfg = alembic_config(url)
    first = sorted(migration_heads() | {"0001"})[0]
    with database.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, first)
    assert _start_imports_alembic(url)  # behind: alembic runs the missing migrations
    with database.engine.connect() as conn:
        assert {r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version"))} == migration_heads()


def test_knowledge_files_failing_their_schema_still_raise_jsonschemas_error():
    import jsonschema
    import pytest

    from cds_service.knowledge import _validate

    with pytest.raises(jsonschema.ValidationError) as caught:
        _validate({"families": "not a list"}, "indications.schema.json")
    assert caught.value.message  # worded by jsonschema, as before
    bundled = json.loads((ROOT / "cards" / "indications.json").read_text(encoding="utf-8"))
    _validate(bundled, "indications.schema.json")  # the bundled file passes


# Imported on first use, not by start-up or the first in-scope card (each costs 30-100 ms of a cold
# start; bench/coldstart.py): the FHIR client's HTTP stack, the jsonschema validators that only word
# a failure, PyJWT with authentication off, the review page's Markdown renderer, the R4B ValueSet
# model (value sets are checked with schemas/valueset.schema.json).
DEFERRED = ("requests", "urllib3", "jsonschema", "jwt", "cds_service.trust", "cds_service.replay",
            "markdown_it", "alembic", "fhir.resources.R4B.valueset")


_FIRST_CARD_PROBE = """
import json, sys
from cds_service import create_app
from cds_service.review.auth import _dummy_hash

deferred, url, body = json.loads(sys.argv[1]), sys.argv[2], open(sys.argv[3], "rb").read()
app = create_app({"AUTH_ENABLED": False, "DATABASE_URL": url, "SECRET_KEY": "x", "LOG_LEVEL": "WARNING"})
at_start = [m for m in deferred if m in sys.modules]
response = app.test_client().post("/cds-services/iv-anesthetics-order-sign", data=body,
                                  content_type="application/json")
print(json.dumps({"start": at_start, "card": [m for m in deferred if m in sys.modules],
                  "cards": len(response.get_json()["cards"]), "hashed": _dummy_hash.cache_info().currsize}))
"""


def test_start_up_and_the_first_card_import_none_of_the_deferred_modules(tmp_path):
    url = f"sqlite:///{tmp_path / 'audit.sqlite3'}"
    body = ROOT / "fhir_fixtures" / "hook-requests" / "13-depression-ketamine-f33.json"
    assert _start_imports_alembic(url)  # creates the schema; the start probed below finds it at head
    out = subprocess.run([sys.executable, "-c", _FIRST_CARD_PROBE, json.dumps(DEFERRED), url, str(body)],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"start": [], "card": [], "cards": 1, "hashed": 0}


_NEEDED_PROBE = """
import json, sys
from cds_service import create_app

app = create_app({"AUTH_ENABLED": False, "AUDIT_ENABLED": False, "LOG_LEVEL": "WARNING"})
invalid = app.test_client().post("/cds-services/iv-anesthetics-order-sign", json={"hook": "order-sign"})
jwt_with_auth_off = "jwt" in sys.modules
secured = create_app({"AUTH_ENABLED": True, "PUBLIC_BASE_URL": "https://cds.example.org", "AUDIT_ENABLED": False,
                      "LOG_LEVEL": "WARNING"})
refused = secured.test_client().get("/cds-services", headers={"Authorization": "Bearer x.y.z"})
print(json.dumps({"invalid": invalid.status_code, "issues": len(invalid.get_json()["issue"]),
                  "jsonschema": "jsonschema" in sys.modules, "jwt_with_auth_off": jwt_with_auth_off,
                  "refused": refused.status_code, "jwt": "jwt" in sys.modules}))
"""


def test_the_deferred_modules_still_load_when_they_are_needed():
    """An invalid envelope is still worded by jsonschema; with auth on, a token is checked with PyJWT."""
    out = subprocess.run([sys.executable, "-c", _NEEDED_PROBE], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"invalid": 400, "issues": result["issues"], "jsonschema": True, "jwt_with_auth_off": False,
                      "refused": 401, "jwt": True}
    assert result["issues"] >= 1
