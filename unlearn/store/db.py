"""Engine and sessions. The schema is owned by Alembic migrations (`unlearn/store/migrations`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

MIGRATIONS = Path(__file__).parent / "migrations"
IN_LIST_MAX = 1000  # ids per IN (…) list: well under SQLite's 32,766 bound parameters


def id_chunks(ids: Sequence[str], size: int = IN_LIST_MAX) -> Iterator[Sequence[str]]:
    """`ids` in slices of at most `size`, in order: one IN (…) query per slice for a job's thousands of ids."""
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


@lru_cache(maxsize=8)
def get_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(conn, _record):  # several threads and processes share one file
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def migrate(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to the newest schema, or to `revision` (idempotent)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    with get_engine(url).connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            # SQLite alters a column by copying its table and dropping the old one, which rows of other
            # tables still point at; the pragma is ignored inside a transaction, so it goes first and
            # the whole database is checked before the migration commits.
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
        try:
            with conn.begin():
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
                if sqlite and conn.exec_driver_sql("PRAGMA foreign_key_check").first() is not None:
                    raise RuntimeError("the migration left rows pointing at rows that do not exist")
        finally:
            if sqlite:
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.commit()


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    with Session(get_engine(url), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
