"""Schema migrations keep every row: a database filled at the previous revision is upgraded to head
on SQLite and PostgreSQL, and every row of every table reads back the same."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel, select

from unlearn.store.db import get_engine, migrate, session_scope
from unlearn.store.models import DeletionRequest

T0 = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)


def _at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


# One or more rows in every table of revision 0001, linked as the service links them.
ROWS_0001: dict[str, list[dict]] = {
    "model": [{"name": "digits-mlp", "family": "classifier", "description": "MLP", "thresholds": {"test_acc": 0.8},
               "created_at": _at(0)}],
    "trainingrecord": [{"id": i, "model_name": "digits-mlp", "sample_id": f"digits-{i:04d}", "subject_hash": h,
                        "label": i % 10, "split": split}
                       for i, (h, split) in enumerate([("a" * 64, "train"), ("a" * 64, "train"), (None, "holdout")])],
    "deletionrequest": [
        {"id": "r" * 32, "tenant": "acme", "external_id": "ticket-1", "subject_hash": "a" * 64, "model_name": None,
         "scope_type": "subject", "scope": {"type": "subject", "labels_known": True}, "kind": "privacy",
         "method": "auto", "params": {}, "status": "completed", "reason": None, "due_at": _at(30 * 1440),
         "received_at": _at(1), "updated_at": _at(5), "completed_at": _at(5)},
        {"id": "s" * 32, "tenant": "acme", "external_id": None, "subject_hash": None, "model_name": "digits-mlp",
         "scope_type": "class", "scope": {"type": "class", "label": 3}, "kind": "corrective", "method": "ssd",
         "params": {"alpha": 10}, "status": "queued", "reason": None, "due_at": _at(70 * 1440),  # extended
         "received_at": _at(2), "updated_at": _at(2), "completed_at": None}],
    "unlearningjob": [{"id": "j" * 32, "model_name": "digits-mlp", "base_version_id": "v" * 32, "method": "retrain",
                       "params": {}, "kind": "privacy", "scope": {"type": "samples"}, "queue": "gpu", "stage": "done",
                       "progress": 1.0, "message": "done", "attempts": 1, "max_attempts": 3, "lease_until": None,
                       "worker": "w1@host", "error": None, "result_version_id": "w" * 32, "created_at": _at(2),
                       "enqueued_at": _at(2), "started_at": _at(3), "finished_at": _at(5)}],
    "requesttarget": [
        {"id": 1, "request_id": "r" * 32, "model_name": "digits-mlp", "forget_ids": ["digits-0000", "digits-0001"],
         "job_id": "j" * 32, "status": "done", "version_id": "w" * 32, "created_at": _at(1)},
        {"id": 2, "request_id": "s" * 32, "model_name": "digits-mlp", "forget_ids": [], "job_id": None,
         "status": "pending", "version_id": None, "created_at": _at(2)}],
    "modelversion": [
        {"id": "v" * 32, "model_name": "digits-mlp", "version": 1, "family": "classifier", "parent_id": None,
         "method": "train", "params": {}, "params_hash": "", "forget_hash": "e" * 64, "excluded_ids": [],
         "request_ids": [], "artifact_path": "/artifacts/digits-mlp/v1", "weights_sha256": "1" * 64, "verdict": None,
         "metrics": {}, "method_info": {}, "status": "retired", "tainted": True, "job_id": None,
         "created_at": _at(0)},
        {"id": "w" * 32, "model_name": "digits-mlp", "version": 2, "family": "classifier", "parent_id": "v" * 32,
         "method": "retrain", "params": {"epochs": 60}, "params_hash": "2" * 64, "forget_hash": "f" * 64,
         "excluded_ids": ["digits-0000", "digits-0001"], "request_ids": ["r" * 32],
         "artifact_path": "/artifacts/digits-mlp/jobs/j/attempt-1", "weights_sha256": "3" * 64, "verdict": "pass",
         "metrics": {"verdict": "pass", "criteria": [{"name": "C1", "value": 0.5}]}, "method_info": {"seconds": 1.5},
         "status": "promoted", "tainted": False, "job_id": "j" * 32, "created_at": _at(4)}],
    "alias": [{"model_name": "digits-mlp", "alias": "champion", "version_id": "w" * 32, "updated_at": _at(5)}],
    "certificate": [{"request_id": "r" * 32, "body": {"request": "r" * 32, "models": [{"name": "digits-mlp"}]},
                     "signature": "c2lnbmF0dXJl", "key_id": "k" * 16, "issued_at": _at(5)}],
    "compliancecheck": [{"id": "c" * 32, "model_name": "digits-mlp", "version_id": "w" * 32, "trigger": "schedule",
                         "passed": True, "regression": False, "forgotten": 2, "report": {"version": 2},
                         "reopened_request_ids": [], "checked_at": _at(60)}],
    "auditevent": [
        {"id": 1, "at": _at(1), "actor": "api", "entity_type": "request", "entity_id": "r" * 32, "from_state": None,
         "to_state": "received", "reason": None, "data": {"models": ["digits-mlp"], "samples": 2}},
        {"id": 2, "at": _at(4), "actor": "op", "entity_type": "request", "entity_id": "s" * 32,
         "from_state": "queued", "to_state": "queued", "reason": "due date extended by 40 days: complexity",
         "data": {"due_at": _at(70 * 1440).isoformat()}}],
    "apikey": [{"id": "a" * 32, "key_hash": "9" * 64, "tenant": "acme", "role": "operator", "created_at": _at(0),
                "revoked": False}],
    "idempotencyrecord": [{"id": 1, "tenant": "acme", "key": "idem-1", "body_sha256": "8" * 64, "status_code": 202,
                           "response": {"id": "r" * 32, "status": "received"}, "created_at": _at(1)}],
    "workerheartbeat": [{"worker": "w1@host", "hostname": "host", "queues": "gpu,cpu", "device": "cuda:0",
                         "current_job_id": None, "gpu_memory_mb": 512.5, "gpu_memory_total_mb": 81920.0,
                         "seen_at": _at(6), "started_at": _at(0)}],
}


def _snapshot(url: str) -> tuple[dict[str, list[dict]], dict[str, list]]:
    """Every row of every table (ordered by primary key), and each table's indexes, as read back."""
    engine = get_engine(url)
    meta = sa.MetaData()
    meta.reflect(engine)
    rows, indexes = {}, {}
    inspector = sa.inspect(engine)
    with engine.connect() as conn:
        for name, table in meta.tables.items():
            if name == "alembic_version":
                continue
            rows[name] = [dict(r._mapping) for r in conn.execute(sa.select(table).order_by(*table.primary_key))]
            indexes[name] = sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]))
                                   for i in inspector.get_indexes(name))
    return rows, indexes


def _upgrade_filled(url: str, revision: str, rows: dict[str, list[dict]]) -> tuple[dict, dict]:
    """Migrate to `revision`, fill every one of its tables with `rows`, upgrade to the head: the rows before
    and after, the indexes checked unchanged."""
    migrate(url, revision)
    engine = get_engine(url)
    meta = sa.MetaData()
    meta.reflect(engine)
    assert set(rows) == set(meta.tables) - {"alembic_version"}  # every table of the revision is filled
    with engine.begin() as conn:
        for name, table_rows in rows.items():
            conn.execute(meta.tables[name].insert(), table_rows)
    before, indexes_before = _snapshot(url)

    migrate(url)

    after, indexes_after = _snapshot(url)
    assert indexes_after == indexes_before
    return before, after


def test_upgrading_a_filled_0001_database_keeps_every_row(empty_database):
    url = empty_database
    before, after = _upgrade_filled(url, "0001", ROWS_0001)
    for request in after["deletionrequest"]:  # no deadline was extended before this revision recorded it
        assert request.pop("original_due_at") == request["due_at"]
    for key in after["apikey"]:  # keys created before 0003 have no label
        assert key.pop("label") is None
    for model in after["model"]:  # models registered before 0004 have no budget of their own
        assert model.pop("cost_budget_s") is None
    _pop_new_columns(after)
    assert after == before
    with session_scope(url) as s:  # and the service reads them: the extended request's cap starts at its due date
        extended = s.get(DeletionRequest, "s" * 32)
        assert extended.original_due_at == extended.due_at == _at(70 * 1440)


def _rows_0002() -> dict[str, list[dict]]:
    """Every table of revision 0002 filled: 0001's rows, the requests with their first due dates."""
    rows = {name: [dict(r) for r in table] for name, table in ROWS_0001.items()}
    for request in rows["deletionrequest"]:
        request["original_due_at"] = request["due_at"] - timedelta(days=40 if request["id"] == "s" * 32 else 0)
    rows["apikey"].append({"id": "b" * 32, "key_hash": "7" * 64, "tenant": "globex", "role": "submitter",
                           "created_at": _at(3), "revoked": True})
    return rows


def test_upgrading_a_filled_0002_database_keeps_every_row_and_leaves_keys_unlabelled(empty_database):
    url = empty_database
    rows = _rows_0002()
    before, after = _upgrade_filled(url, "0002", rows)
    assert [key.pop("label") for key in after["apikey"]] == [None, None]
    assert [model.pop("cost_budget_s") for model in after["model"]] == [None]
    _pop_new_columns(after)
    assert after == before
    with session_scope(url) as s:  # and the service reads them, and a key can be labelled now
        from unlearn.store.models import ApiKey

        key = s.get(ApiKey, "a" * 32)
        assert (key.tenant, key.role, key.label) == ("acme", "operator", None)
        key.label = "Jane Roe, privacy desk"
        s.add(key)
    with session_scope(url) as s:
        assert s.get(ApiKey, "a" * 32).label == "Jane Roe, privacy desk"


def _rows_0003() -> dict[str, list[dict]]:
    """Every table of revision 0003 filled: 0002's rows, the keys labelled, and requests in every open and
    final status a chain of methods leaves (a rejected candidate among the versions)."""
    rows = _rows_0002()
    for key in rows["apikey"]:
        key["label"] = f"holder of {key['id'][:4]}"
    base = rows["deletionrequest"][0]
    for i, status in enumerate(("running", "verifying", "rejected", "failed")):
        rows["deletionrequest"].append({**base, "id": f"{i}" * 32, "status": status, "completed_at": None,
                                        "reason": "verifier (ssd): forget_acc" if status == "rejected" else None})
    rows["modelversion"].append({**rows["modelversion"][1], "id": "x" * 32, "version": 3, "method": "ssd",
                                 "params_hash": "4" * 64, "status": "rejected", "verdict": "fail",
                                 "method_info": {"seconds": 0.5}})
    return rows


def test_upgrading_a_filled_0003_database_keeps_every_row_and_gives_models_no_budget_of_their_own(empty_database):
    url = empty_database
    rows = _rows_0003()
    before, after = _upgrade_filled(url, "0003", rows)
    assert [model.pop("cost_budget_s") for model in after["model"]] == [None]
    _pop_new_columns(after)
    assert after == before
    with session_scope(url) as s:  # the service reads them, a model takes a budget, a request may wait for review
        from unlearn.store.models import Model

        s.get(Model, "digits-mlp").cost_budget_s = 120.0
        s.get(DeletionRequest, "0" * 32).status = "needs_review"
    with session_scope(url) as s:
        assert s.get(Model, "digits-mlp").cost_budget_s == 120.0
        assert s.get(DeletionRequest, "0" * 32).status == "needs_review"
    # a request waiting for review has no status the previous revision knows: the downgrade refuses
    with pytest.raises(RuntimeError, match="needs_review"):
        migrate_down(url, "0003")


def _pop_stored(after: dict[str, list[dict]]) -> None:
    """Versions registered before 0005 are stored whole: no stored hash or size of their own."""
    for version in after["modelversion"]:
        assert (version.pop("stored_sha256"), version.pop("stored_bytes")) == (None, None)


def _pop_caption(after: dict[str, list[dict]]) -> None:
    """Records registered before 0006 have no caption."""
    assert {record.pop("caption") for record in after["trainingrecord"]} == {None}


def _pop_new_columns(after: dict[str, list[dict]]) -> None:
    _pop_stored(after)
    _pop_caption(after)


def _rows_0004() -> dict[str, list[dict]]:
    """Every table of revision 0004 filled: 0003's rows, a model with its own budget."""
    rows = _rows_0003()
    rows["model"][0]["cost_budget_s"] = 90.0
    return rows


def test_upgrading_a_filled_0004_database_keeps_every_row_and_stores_old_versions_whole(empty_database):
    url = empty_database
    rows = _rows_0004()
    before, after = _upgrade_filled(url, "0004", rows)
    _pop_new_columns(after)
    assert after == before
    # A version stored as a delta (stored hash other than its weights hash, 26 GB apart from a 7B model's
    # whole copy: a BigInteger) is read back; the previous revision would take it for corrupt: no downgrade.
    with session_scope(url) as s:
        from unlearn.store.models import ModelVersion

        v = s.get(ModelVersion, "x" * 32)
        v.stored_sha256, v.stored_bytes = "5" * 64, 26 * 10**9
    with session_scope(url) as s:
        assert (s.get(ModelVersion, "x" * 32).stored_sha256, s.get(ModelVersion, "x" * 32).stored_bytes) == (
            "5" * 64, 26 * 10**9)
    migrate_down(url, "0005")  # past the caption first: SQLite keeps a refused batch step's table
    with pytest.raises(RuntimeError, match="stored as deltas"):
        migrate_down(url, "0004")
    with session_scope(url) as s:  # a version stored whole (stored hash = weights hash) does not stand in the way
        v = s.get(ModelVersion, "x" * 32)
        v.stored_sha256 = v.weights_sha256
    migrate_down(url, "0004")
    assert "stored_sha256" not in {c["name"] for c in sa.inspect(get_engine(url)).get_columns("modelversion")}


def test_upgrading_a_filled_0005_database_gives_its_records_no_caption_and_downgrading_drops_them(empty_database):
    url = empty_database
    rows = _rows_0004()
    for version in rows["modelversion"]:
        version["stored_sha256"], version["stored_bytes"] = version["weights_sha256"], 1234
    before, after = _upgrade_filled(url, "0005", rows)
    _pop_caption(after)
    assert after == before
    with session_scope(url) as s:  # a text-to-image model's record carries its caption now
        from unlearn.store.models import TrainingRecord

        record = s.exec(select(TrainingRecord).order_by(TrainingRecord.id)).first()
        record.caption, first = "a red circle on a white background", record.id
        s.add(record)
    with session_scope(url) as s:
        assert s.get(TrainingRecord, first).caption == "a red circle on a white background"
    migrate_down(url, "0005")
    assert _snapshot(url)[0] == before


def migrate_down(url: str, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    from unlearn.store.db import MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with get_engine(url).connect() as conn, conn.begin():
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def test_the_migrations_build_the_schema_the_models_declare(empty_database):
    migrate(empty_database)
    with get_engine(empty_database).connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []
