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
