"""Bulk writes of training records: a team registers a million of them in one go.

A row-at-a-time INSERT through the ORM costs a round trip and an object per record; PostgreSQL's
`COPY … FROM STDIN` streams them in one statement (psycopg 3's `Cursor.copy`), and SQLite takes an
`executemany` of one prepared INSERT. Both run inside the caller's transaction, so a registration that
fails later rolls its records back with everything else.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice

from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from unlearn.contracts import SampleRecord

COLUMNS = ("model_name", "sample_id", "subject_hash", "label", "split", "caption")
_BATCH = 50_000


def _rows(model_name: str, records: Iterable[SampleRecord]) -> Iterator[tuple]:
    for r in records:
        yield (model_name, r.sample_id, r.subject_hash, r.label, r.split, r.caption)


def _batches(rows: Iterator[tuple], size: int = _BATCH) -> Iterator[list[tuple]]:
    while batch := list(islice(rows, size)):
        yield batch


def insert_training_records(session: Session, model_name: str, records: Iterable[SampleRecord], *,
                            skip_existing: bool = False) -> int:
    """Insert `records` as `TrainingRecord` rows of `model_name` in the session's transaction; returns
    how many rows were inserted.

    Each record's `subject_hash` must already be hashed (`identity.hash_subject`): raw subjects are never
    written. `skip_existing`: a record whose (model, sample id) is already stored is skipped, so that a
    re-sent batch inserts nothing twice; otherwise a duplicate raises `sqlalchemy.exc.IntegrityError`.
    The model row must exist (foreign key)."""
    conn = session.connection()
    try:
        return _insert(conn, _rows(model_name, records), skip_existing)
    except conn.dialect.dbapi.IntegrityError as exc:  # the driver's own, raised past SQLAlchemy
        raise IntegrityError("bulk insert of training records", None, exc) from exc


def _insert(conn: Connection, rows: Iterator[tuple], skip_existing: bool) -> int:
    cols = ", ".join(COLUMNS)
    if conn.dialect.name == "postgresql":
        cur = conn.connection.driver_connection.cursor()
        table = "trainingrecord"
        if skip_existing:
            cur.execute("CREATE TEMP TABLE IF NOT EXISTS _records_in (LIKE trainingrecord INCLUDING DEFAULTS) "
                        "ON COMMIT DROP")
            cur.execute("TRUNCATE _records_in")
            table = "_records_in"
        n = 0
        with cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
                n += 1
        if skip_existing:
            cur.execute(f"INSERT INTO trainingrecord ({cols}) SELECT DISTINCT ON (model_name, sample_id) {cols} "
                        f"FROM _records_in ON CONFLICT (model_name, sample_id) DO NOTHING")
            n = cur.rowcount
        return n
    verb = "INSERT OR IGNORE" if skip_existing else "INSERT"
    cur = conn.connection.driver_connection.cursor()
    before = conn.connection.driver_connection.total_changes
    for batch in _batches(rows):
        cur.executemany(f"{verb} INTO trainingrecord ({cols}) VALUES (?, ?, ?, ?, ?, ?)", batch)
    return conn.connection.driver_connection.total_changes - before


__all__ = ["insert_training_records"]
