"""Database engine, sessions and migrations (SQLite by default, PostgreSQL by URL)."""

from __future__ import annotations

import ast
import json
import os
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from .group_commit import GroupCommitWriter

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_S = 30
PG_CONNECT_TIMEOUT_S = 5  # a database that does not answer sends records to the spool, not the EHR waiting


def database_url(config: dict, instance_path: str) -> str:
    """``DATABASE_URL`` when set, else a SQLite file in the instance folder."""
    url = str(config.get("DATABASE_URL") or "")
    if url:
        if url.startswith("postgresql://") or url.startswith("postgres://"):
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        return url
    Path(instance_path).mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(instance_path) / 'cds-audit.sqlite3'}"


def json_text(value: object) -> str:
    """JSON columns' serializer: orjson (a 5 KB card in a tenth of the standard library's time),
    the standard library for what orjson refuses (integers beyond 64 bits, non-string keys)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return json.dumps(value)


def make_engine(url: str) -> Engine:
    """An engine that never puts SQL parameters (request text, comments) into errors or logs."""
    if url.startswith("sqlite"):
        _private_sqlite_file(url)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S}, hide_parameters=True,
                               json_serializer=json_text, json_deserializer=orjson.loads)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5, hide_parameters=True,
                         json_serializer=json_text, json_deserializer=orjson.loads,
                         pool_timeout=PG_CONNECT_TIMEOUT_S,
                         connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S})


def _private_sqlite_file(url: str) -> None:
    """Create the database file 0600 before SQLite does (its -wal and -shm files copy its mode)."""
    from sqlalchemy.engine import make_url

    from .spool import create_private_file

    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        create_private_file(Path(database))


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._writers = _SqliteWriterLock(self.engine)
        self.writer = GroupCommitWriter(self)  # audit rows and coverage assertions, group-committed

    def write_lock(self) -> AbstractContextManager[None]:
        """Held around a batch of audit writes: with SQLite, the worker processes take turns on a
        file lock (woken at once when it is released) instead of polling SQLite's busy handler,
        whose sleeps of up to 100 ms made the tail latency; a no-op for PostgreSQL."""
        return self._writers.held()

    @contextmanager
    def session(self, settle: bool = True) -> Iterator[Session]:
        """A session committed on success and rolled back on error.

        With ``settle``, it first waits (up to a few seconds) for the audit writes this process
        has queued (the audit journal answers before they commit), so a reader in this process
        sees every call it answered; ``settle=False`` for reads on the hook call's own path."""
        if settle:
            self.writer.settle()
        with self._sessions() as session, session.begin():
            yield session

    def transaction(self) -> AbstractContextManager[Connection]:
        """A Core connection in a transaction, committed on success and rolled back on error
        (the group-commit writer's: no ORM session for inserts of plain rows)."""
        return self.engine.begin()

    def upgrade(self) -> None:
        upgrade(self.url, self.engine)


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, engine: Engine | None = None) -> None:
    """Bring the schema to the newest migration (idempotent).

    A database already at the newest revision is left alone without importing alembic (about
    0.3 s of a worker's start): one plain query of ``alembic_version`` against the revision ids
    read from the migration files. Anything else (empty, older, unknown) goes through alembic.
    """
    engine = engine or make_engine(url)
    if _at_head(engine):
        return
    from alembic import command

    cfg = alembic_config(url)
    with _migration_lock(engine), engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")


def migration_heads(directory: Path = MIGRATIONS_DIR / "versions") -> set[str]:
    """The revisions no other migration names as its ``down_revision`` (read, not imported)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in directory.glob("*.py"):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                name, value = node.targets[0].id, node.value
                values = value.elts if isinstance(value, ast.Tuple | ast.List) else [value]
                found = {v.value for v in values if isinstance(v, ast.Constant) and isinstance(v.value, str)}
                if name == "revision":
                    revisions |= found
                elif name == "down_revision":
                    parents |= found
    return revisions - parents


def _at_head(engine: Engine) -> bool:
    heads = migration_heads()
    try:
        with engine.connect() as conn:
            stored = {row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version"))}
    except Exception:  # no table yet, or unreadable: let alembic decide
        return False
    return bool(heads) and stored == heads


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """Serialise schema upgrades when several workers start at once."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT pg_advisory_lock(742001)")
            try:
                yield
            finally:
                conn.exec_driver_sql("SELECT pg_advisory_unlock(742001)")
                conn.commit()
        return
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    import fcntl

    from .spool import create_private_file

    lock_path = Path(f"{database}.migrate-lock")
    create_private_file(lock_path)
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class _SqliteWriterLock:
    """An exclusive ``flock`` on ``<database>.write-lock``, opened once per process (a descriptor
    inherited across fork would share its lock with the parent)."""

    def __init__(self, engine: Engine) -> None:
        database = engine.url.database
        self.path = (Path(f"{database}.write-lock") if engine.dialect.name == "sqlite" and database
                     and database != ":memory:" and not database.startswith("file:") else None)
        self._fd: int | None = None
        self._pid = 0
        self._threads = threading.Lock()

    def held(self) -> AbstractContextManager[None]:
        return nullcontext() if self.path is None else self._held()

    @contextmanager
    def _held(self) -> Iterator[None]:
        import fcntl

        with self._threads:
            if self._fd is None or self._pid != os.getpid():
                from .spool import create_private_file

                create_private_file(self.path)
                self._fd, self._pid = os.open(self.path, os.O_RDWR), os.getpid()
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
