"""Bulk insert of training records, the same on SQLite and PostgreSQL."""

import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import func, select

from unlearn.contracts import SampleRecord
from unlearn.store.bulk import insert_training_records
from unlearn.store.db import migrate, session_scope
from unlearn.store.models import Model, TrainingRecord


def _records(start: int, stop: int) -> list[SampleRecord]:
    return [SampleRecord(sample_id=f"s-{i:05d}", subject_hash=f"{i % 7:064x}", label=i % 10,
                         split="holdout" if i % 5 == 0 else "train") for i in range(start, stop)]


def _count(url: str) -> int:
    with session_scope(url) as s:
        return s.exec(select(func.count()).select_from(TrainingRecord)).one()


def test_bulk_insert_writes_every_field_skips_resent_rows_and_rolls_back(empty_database):
    url = empty_database
    migrate(url)
    with session_scope(url) as s:
        s.add(Model(name="m", family="classifier"))
        s.flush()
        assert insert_training_records(s, "m", _records(0, 1200)) == 1200
    with session_scope(url) as s:
        row = s.exec(select(TrainingRecord).where(TrainingRecord.sample_id == "s-00010")).one()
        assert (row.model_name, row.subject_hash, row.label, row.split) == ("m", f"{3:064x}", 0, "holdout")
    # A re-sent batch overlapping the stored one inserts only its new rows.
    with session_scope(url) as s:
        assert insert_training_records(s, "m", _records(1000, 1500), skip_existing=True) == 300
    assert _count(url) == 1500
    # Without skipping, a duplicate fails the transaction and nothing of the batch is kept.
    with pytest.raises(IntegrityError), session_scope(url) as s:
        insert_training_records(s, "m", _records(1499, 1600))
    assert _count(url) == 1500
